//! A peer's download loop: ask the coordinator for work, fetch and verify blocks from the
//! holders it names, serve every verified block, finish archives, keep serving for a while.
//!
//! The loop keeps up to [`DOWNLOAD_SLOTS`] block downloads in flight and at most one `work`
//! call. Each `work` call carries everything learnt since the previous one (blocks verified,
//! sources that failed) and asks for as many assignments as there are free slots, so the
//! coordinator's view is never more than one round trip behind. Reports are sent as soon as
//! they exist: a block this peer has just verified is one other peers can fetch from it.
//!
//! When the coordinator stops answering, the loop fails over: to the lowest-id peer of the
//! roster that still answers, which then coordinates on its own server; a peer that can reach
//! nobody stays put. The rules, and what a new coordinator rebuilds, are in `FAILOVER.md`
//! beside this file.
//!
//! Shutdown: the cancellation token stops new work; downloads in flight are dropped (their
//! blocks were never written unless verified), and the coordinator is told the peer is leaving
//! when it can be reached. Partial archives of a run that stopped early (Ctrl-C, or a transfer
//! that failed) are kept under their hidden names, since every block in them was verified: the
//! next run resumes from them, and the caller hears of each one ([`PeerEvent::Kept`]). They are
//! removed only when the output itself failed (a full disk is freed), or when they hold no
//! block yet.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::image::manifest::{BlockIdx, Digest, SwarmManifest};
use crate::swarm::SwarmError;
use crate::swarm::coordinator::Coordinator;
use crate::swarm::received::Receiving;
use crate::swarm::scheduler::SchedConfig;
use crate::swarm::scheduler::{FailKind, PeerId};
use crate::swarm::store::{SavedCheck, Store, StoreError, partial_path};
use crate::transport::client::{Client, ClientError};
use crate::transport::server::{self, ServerState};
use crate::transport::wire::{
    self, Assignment, Completed, Failed, JoinInfo, RosterEntry, WorkRequest,
};

/// Block downloads a peer may keep in flight. The coordinator decides how many of them it
/// fills, by how far the peer is ahead of or behind the others (`SchedConfig::downloads` and
/// `pace_slots`) and by the block size (`SchedConfig::for_block_size`): from 4 to 8 with 1 MiB
/// blocks, 5 to 11 with 512 KiB blocks, 8 to all 16 with 256 KiB or smaller.
pub const DOWNLOAD_SLOTS: u32 = 16;
/// While seeding after its own archives are done, how often a peer checks in.
pub const SEEDING_CHECK_IN: Duration = Duration::from_millis(1000);
/// How long a peer keeps retrying an unreachable coordinator before giving up.
pub const COORDINATOR_GIVE_UP: Duration = Duration::from_secs(60);
/// How long the coordinator may fail to answer before the peers move to a successor.
pub const FAILOVER_AFTER: Duration = Duration::from_secs(3);
/// How often a peer refreshes its copy of the roster.
pub const ROSTER_REFRESH: Duration = Duration::from_secs(2);
/// How long a peer with no usable roster looks on mDNS for a coordinator of its swarm.
pub const FAILOVER_BROWSE: Duration = Duration::from_secs(2);
/// How long a failover probe waits for a candidate to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Roster entries probed at once, lowest ids first, and at most in one failover.
pub const PROBE_BATCH: usize = 8;
pub const PROBE_MAX: usize = 32;
/// How long a peer that coordinates keeps answering after the swarm is done, so that every
/// seeding peer hears it at a check-in (every [`SEEDING_CHECK_IN`]) before it goes.
pub const COORDINATOR_LINGER: Duration = Duration::from_millis(2500);
/// How many times an archive damaged on disk is repaired before the peer gives up.
pub const MAX_REPAIRS: u32 = 3;
/// Pause between retries of a failed `work` call.
pub const WORK_RETRY: Duration = Duration::from_millis(500);

/// How a peer runs.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Base URL of the coordinator (`http://host:port`).
    pub coordinator: String,
    pub swarm: Digest,
    /// Archives (manifest indexes) this peer wants.
    pub archives: Vec<usize>,
    pub out_dir: PathBuf,
    pub listen: SocketAddr,
    pub seed_time: Duration,
    /// A name for status displays (the host name).
    pub name: String,
    /// How each archive is checked before it is renamed into place.
    pub saved_check: SavedCheck,
    /// The HTTP client, shared with the caller so that the connection that fetched the
    /// manifest carries the first `work` call.
    pub client: Client,
}

/// Something a running peer tells its caller.
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// Blocks verified so far for an archive: (archive, done bytes, total bytes, peers).
    Progress {
        archive: usize,
        done: u64,
        total: u64,
        peers: u32,
    },
    /// An archive was complete, checked (see [`SavedCheck`]) and renamed into place.
    Saved {
        archive: usize,
        path: PathBuf,
        seconds: f64,
    },
    /// The peer's own archives are all saved; it now only serves.
    Seeding,
    /// The run stopped before the archive was saved; its partial file stays at `path` (a
    /// hidden name, never the final one) holding `done` bytes of verified blocks, and the next
    /// run resumes from it.
    Kept {
        archive: usize,
        path: PathBuf,
        done: u64,
    },
}

/// What a finished peer reports.
#[derive(Debug, Clone, Default)]
pub struct PeerSummary {
    pub saved: Vec<(usize, PathBuf)>,
    pub bytes_downloaded: u64,
    pub bytes_uploaded: u64,
    pub corrupt_blocks: u64,
    pub seconds_to_complete: f64,
}

/// A finished `work` call: the request, the `sync_gen` it was sent at, and the answer.
type WorkCall = (WorkRequest, u64, Result<wire::WorkReply, ClientError>);

struct FetchDone {
    block: BlockIdx,
    from: PeerId,
    result: Result<usize, FetchError>,
}

#[derive(Debug)]
enum FetchError {
    Source(FailKind, String),
    Store(StoreError),
}

/// Runs a peer until its archives are saved and its seeding time is over (or the swarm is
/// done, or `cancel` fires). `events` receives progress as it happens.
pub async fn run(
    settings: PeerSettings,
    manifest: Arc<SwarmManifest>,
    events: tokio::sync::mpsc::Sender<PeerEvent>,
    cancel: CancellationToken,
) -> Result<PeerSummary, SwarmError> {
    let started = Instant::now();
    let store = {
        let (m, a, dir, check) = (
            manifest.clone(),
            settings.archives.clone(),
            settings.out_dir.clone(),
            settings.saved_check,
        );
        let mut store = tokio::task::spawn_blocking(move || Store::peer(&m, &a, &dir))
            .await
            .expect("store task")
            .map_err(store_error)?;
        store.set_saved_check(check);
        store
    };
    let store = Arc::new(store);
    store.spawn_checker();
    let state = ServerState::default();
    state.serve_swarm(settings.swarm, &manifest, store.clone());
    let server_cancel = cancel.child_token();
    let (local, server_task) = server::start(settings.listen, state.clone(), server_cancel.clone())
        .await
        .map_err(|e| SwarmError::Transfer(format!("cannot listen on {}: {e}", settings.listen)))?;
    tracing::debug!("serving blocks on {local}");

    let client = settings.client.clone();
    let mut lp = Loop {
        id: PeerId(rand::random()),
        settings,
        manifest,
        store,
        client,
        port: local.port(),
        events,
        fetches: JoinSet::new(),
        in_flight: HashMap::new(),
        completed: Vec::new(),
        failed: Vec::new(),
        joined: false,
        sync_gen: 0,
        summary: PeerSummary::default(),
        finished: HashSet::new(),
        peers: 0,
        starved: false,
        repairs: 0,
        lost_seen: 0,
        home: String::new(),
        roster: Vec::new(),
        roster_at: None,
        probed_at: None,
        state: state.clone(),
        advert: None,
        origin_host: String::new(),
    };
    lp.origin_host = coordinator_host(&lp.settings.coordinator).to_string();
    lp.home = lp.settings.coordinator.clone();
    let result = lp.drive(&cancel, started).await;
    lp.fetches.abort_all();
    lp.leave_partials(&result).await;
    lp.leave().await;
    server_cancel.cancel();
    let _ = server_task.await;
    lp.summary.bytes_uploaded = state
        .counters
        .bytes_served
        .load(std::sync::atomic::Ordering::Relaxed);
    result.map(|()| lp.summary)
}

struct Loop {
    id: PeerId,
    settings: PeerSettings,
    manifest: Arc<SwarmManifest>,
    store: Arc<Store>,
    client: Client,
    port: u16,
    events: tokio::sync::mpsc::Sender<PeerEvent>,
    fetches: JoinSet<FetchDone>,
    /// Downloads in flight, so the losing copy of an endgame block can be aborted.
    in_flight: HashMap<(BlockIdx, PeerId), tokio::task::AbortHandle>,
    completed: Vec<Completed>,
    failed: Vec<Failed>,
    /// Whether the coordinator holds our current wants and holdings. Cleared (and `sync_gen`
    /// bumped) whenever it must hear them again; only the reply to a join sent at the current
    /// generation sets it, so a reply to an older call cannot hide a newer loss.
    joined: bool,
    sync_gen: u64,
    summary: PeerSummary,
    finished: HashSet<usize>,
    peers: u32,
    /// The last `work` reply assigned nothing.
    starved: bool,
    repairs: u32,
    /// `Store::lost` when the coordinator last heard our full holdings.
    lost_seen: u64,
    /// Failover: the coordinator we started with, the serving peers as the coordinator last
    /// listed them and when, when we last probed for a successor, the server state (to run a
    /// coordinator ourselves), and our advert as coordinator once we are one.
    home: String,
    roster: Vec<RosterEntry>,
    roster_at: Option<Instant>,
    probed_at: Option<Instant>,
    state: ServerState,
    advert: Option<crate::discovery::AdvertHandle>,
    /// The host of the first coordinator: an embedded coordinator's seeder serves there.
    origin_host: String,
}

impl Loop {
    fn all_saved(&self) -> bool {
        self.finished.len() == self.settings.archives.len()
    }

    fn free_slots(&self) -> u32 {
        if self.all_saved() {
            0
        } else {
            DOWNLOAD_SLOTS.saturating_sub(self.fetches.len() as u32)
        }
    }

    /// The coordinator must hear our whole state again (see `joined`).
    fn resync(&mut self) {
        self.joined = false;
        self.sync_gen += 1;
    }

    /// Block bytes our server has sent so far (the same counter a seeder reports).
    fn uploaded_bytes(&self) -> u64 {
        self.state
            .counters
            .bytes_served
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn request(&mut self, leaving: bool) -> WorkRequest {
        let join = (!self.joined).then(|| JoinInfo {
            wants: self.store.wanted().clone(),
            has: self.store.held_set(),
            origin: false,
            name: self.settings.name.clone(),
        });
        WorkRequest {
            peer: self.id,
            port: self.port,
            join,
            // A block dropped as damaged since it was verified is not reported as held.
            completed: std::mem::take(&mut self.completed)
                .into_iter()
                .filter(|c| self.store.has(c.block))
                .collect(),
            failed: std::mem::take(&mut self.failed),
            slots: if leaving { 0 } else { self.free_slots() },
            in_flight: self.fetches.len() as u32,
            leaving,
            want_roster: !leaving && self.roster_at.is_none_or(|t| t.elapsed() >= ROSTER_REFRESH),
            uploaded_bytes: Some(self.uploaded_bytes()),
        }
    }

    async fn drive(
        &mut self,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<(), SwarmError> {
        let mut work: Option<tokio::task::JoinHandle<WorkCall>> = None;
        let mut last_call = Instant::now() - SEEDING_CHECK_IN;
        let mut last_ok = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut seeding_since: Option<Instant> = None;
        // When the swarm was first said to be done, plus how long we stay to pass it on.
        let mut done_heard: Option<Instant> = None;
        // Archives already complete (a resumed run) are finished before anything else.
        self.finish_ready(started).await?;

        loop {
            if self.all_saved() && seeding_since.is_none() {
                seeding_since = Some(Instant::now());
                self.summary.seconds_to_complete = started.elapsed().as_secs_f64();
                let _ = self.events.send(PeerEvent::Seeding).await;
            }
            if let Some(since) = seeding_since
                && since.elapsed() >= self.settings.seed_time
            {
                tracing::info!("seeding time is over");
                return Ok(());
            }

            // Blocks found damaged on our disk are no longer held: tell the coordinator.
            let lost = self.store.lost();
            if lost != self.lost_seen {
                self.lost_seen = lost;
                self.resync();
            }
            let reports = !self.completed.is_empty() || !self.failed.is_empty();
            // A peer the coordinator just gave nothing, with downloads still running, waits for
            // one of them to finish (a report) before it asks again: no polling.
            let due = match seeding_since {
                Some(_) => last_call.elapsed() >= SEEDING_CHECK_IN,
                None => self.free_slots() > 0 && (!self.starved || self.fetches.is_empty()),
            };
            if work.is_none()
                && (reports || due || !self.joined)
                && retry_at.is_none_or(|t| Instant::now() >= t)
            {
                let req = self.request(false);
                let (client, base, swarm, generation) = (
                    self.client.clone(),
                    self.settings.coordinator.clone(),
                    self.settings.swarm,
                    self.sync_gen,
                );
                last_call = Instant::now();
                work = Some(tokio::spawn(async move {
                    let r = client.work(&base, &swarm, &req).await;
                    (req, generation, r)
                }));
            }

            let tick = tokio::time::sleep(Duration::from_millis(100));
            tokio::select! {
                _ = cancel.cancelled() => return Err(SwarmError::Transfer("interrupted".into())),
                Some(done) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    let Ok(done) = done else { continue };
                    self.on_fetch(done)?;
                    self.finish_ready(started).await?;
                }
                r = async { work.as_mut().expect("guarded").await }, if work.is_some() => {
                    work = None;
                    let (req, generation, reply) = r.expect("work task");
                    match reply {
                        Ok(reply) => {
                            last_ok = Instant::now();
                            retry_at = None;
                            if !reply.roster.is_empty() || req.want_roster {
                                self.roster = reply.roster.clone();
                                self.roster_at = Some(Instant::now());
                            }
                            if reply.resync {
                                tracing::debug!("coordinator asked for a resync");
                                self.resync();
                                continue;
                            }
                            if req.join.is_some() && generation == self.sync_gen {
                                self.joined = true;
                            }
                            self.peers = reply.peers;
                            if seeding_since.is_some() && reply.swarm_done {
                                // A peer that coordinates stays up until the others have had a
                                // check-in to hear it; leaving at once would send them looking
                                // for a successor among peers that are leaving too.
                                let leave_at = *done_heard.get_or_insert_with(|| {
                                    tracing::info!("every peer has finished");
                                    Instant::now() + self.linger()
                                });
                                if Instant::now() >= leave_at {
                                    return Ok(());
                                }
                            }
                            self.starved = reply.assignments.is_empty();
                            for a in reply.assignments {
                                self.spawn_fetch(a);
                            }
                        }
                        Err(e) => {
                            // Put the reports back; they are sent with the next call.
                            self.completed.extend(req.completed);
                            self.failed.extend(req.failed);
                            if req.join.is_some() {
                                self.joined = false;
                            }
                            if last_ok.elapsed() > COORDINATOR_GIVE_UP {
                                return Err(SwarmError::Transfer(format!("the coordinator is unreachable: {e}")));
                            }
                            if last_ok.elapsed() >= FAILOVER_AFTER
                                && self.probed_at.is_none_or(|t| t.elapsed() >= FAILOVER_AFTER)
                            {
                                self.probed_at = Some(Instant::now());
                                let moved = tokio::select! {
                                    moved = self.fail_over() => moved,
                                    _ = cancel.cancelled() => return Err(SwarmError::Transfer("interrupted".into())),
                                };
                                if moved {
                                    last_ok = Instant::now();
                                    continue;
                                }
                            }
                            tracing::warn!("work call failed, retrying: {e}");
                            retry_at = Some(Instant::now() + WORK_RETRY);
                        }
                    }
                }
                _ = tick => {}
            }
        }
    }

    /// Called when the coordinator has not answered for [`FAILOVER_AFTER`]. Probes the
    /// coordinator we started with and the roster (lowest ids first) and moves to:
    ///
    /// 1. a live coordinator of our swarm among them: the first one, if it came back (a peer
    ///    that was cut off), else the lowest-id peer that already took over;
    /// 2. otherwise, if some other peer answers (so the network works and the coordinator is
    ///    dead), the lowest-id peer that answers: every peer computes the same one from the
    ///    same roster, and if it is this peer, it starts coordinating on its own server;
    /// 3. otherwise a coordinator of our swarm advertised on mDNS (a peer that never got a
    ///    roster).
    ///
    /// When nothing answers, this peer is the one cut off: it stays where it is (taking over
    /// would split the swarm) and keeps retrying. Returns true when it moved.
    async fn fail_over(&mut self) -> bool {
        let swarm = self.settings.swarm;
        let home = self.home.clone();
        if probe(&self.client, &home, &swarm).await == Probe::Coordinator {
            return self.move_to(home);
        }
        let candidates: Vec<RosterEntry> = self.roster.iter().take(PROBE_MAX).copied().collect();
        let mut successor = None;
        let mut others_answer = false;
        for batch in candidates.chunks(PROBE_BATCH) {
            let probes = batch.iter().map(|e| {
                let client = self.client.clone();
                async move { probe(&client, &format!("http://{}", e.addr), &swarm).await }
            });
            let found = futures_util::future::join_all(probes).await;
            if let Some((e, _)) = batch
                .iter()
                .zip(&found)
                .find(|(_, p)| **p == Probe::Coordinator)
            {
                return self.move_to(format!("http://{}", e.addr));
            }
            for (e, p) in batch.iter().zip(&found) {
                if *p == Probe::Unreachable && e.id != self.id {
                    continue;
                }
                others_answer |= e.id != self.id;
                successor = successor.or(Some(*e));
            }
            if others_answer {
                break;
            }
        }
        match successor {
            Some(e) if others_answer => {
                if e.id == self.id {
                    self.become_coordinator();
                }
                self.move_to(format!("http://{}", e.addr))
            }
            _ => match self.browse_for_coordinator().await {
                Some(url) => self.move_to(url),
                None => {
                    tracing::warn!(
                        "the coordinator does not answer and neither does any other peer; \
                         staying put"
                    );
                    false
                }
            },
        }
    }

    /// Points the loop at another coordinator; false when it already was there.
    fn move_to(&mut self, base: String) -> bool {
        if base == self.settings.coordinator {
            return false;
        }
        tracing::warn!("the coordinator does not answer; moving to {base}");
        self.settings.coordinator = base;
        self.resync();
        true
    }

    /// How long a peer stays after hearing that every peer is done: long enough for the
    /// others to hear it from us when we coordinate, not at all otherwise.
    fn linger(&self) -> Duration {
        if self.state.coordinator().is_some() {
            COORDINATOR_LINGER
        } else {
            Duration::ZERO
        }
    }

    fn become_coordinator(&mut self) {
        if self.state.coordinator().is_some() {
            return;
        }
        let coordinator = Coordinator::new(SchedConfig::default());
        coordinator.add_swarm((*self.manifest).clone());
        self.state.set_coordinator(coordinator);
        let mut advert =
            crate::discovery::Advert::new(crate::discovery::Role::Coordinator, self.port);
        advert.swarm = Some(self.settings.swarm.hex());
        self.advert = crate::discovery::Discovery::new()
            .and_then(|d| d.advertise(&advert))
            .map_err(|e| tracing::warn!("cannot advertise as coordinator: {e}"))
            .ok();
        tracing::info!("taking over as the swarm's coordinator");
    }

    async fn browse_for_coordinator(&self) -> Option<String> {
        let want = self.settings.swarm.hex();
        let d = crate::discovery::Discovery::new().ok()?;
        let is_ours = |f: &crate::discovery::Found| {
            f.role == crate::discovery::Role::Coordinator
                && f.swarm.as_deref().is_some_and(|s| want.starts_with(s))
        };
        let found = d
            .browse(FAILOVER_BROWSE, |all| all.iter().any(is_ours))
            .await
            .ok()?;
        found.iter().find(|f| is_ours(f)).map(|f| f.url())
    }

    fn source_url(&self, a: &Assignment) -> String {
        let path = wire::block_path(&self.settings.swarm, a.block);
        match a.addr {
            Some(addr) => format!("http://{addr}{path}"),
            None => {
                // The coordinator's own seeder: same host as the coordinator, its port.
                format!("http://{}:{}{path}", self.origin_host, a.source_port)
            }
        }
    }

    fn spawn_fetch(&mut self, a: Assignment) {
        // A coordinator is a host on the LAN like any other: an assignment past the end of the
        // manifest is refused, not indexed.
        if a.block.0 >= self.store.table().len() {
            tracing::warn!(
                "the coordinator assigned block {}, which does not exist; ignored",
                a.block.0
            );
            return;
        }
        if self.store.has(a.block) || self.in_flight.contains_key(&(a.block, a.source)) {
            return;
        }
        let url = self.source_url(&a);
        let len = self.store.table().get(a.block).len as u64;
        let (client, store, block, from) =
            (self.client.clone(), self.store.clone(), a.block, a.source);
        let handle = self.fetches.spawn(async move {
            // Each chunk is hashed as it arrives (see `received.rs`), a few hundred KB at a
            // time at most, so the reactor is never held for long.
            let mut receiving = Receiving::new();
            let result = match client.block(&url, len, |c| receiving.push(c)).await {
                Err(e) => {
                    let kind = if e.is_unreachable() {
                        FailKind::Unreachable
                    } else {
                        FailKind::Timeout
                    };
                    Err(FetchError::Source(kind, e.to_string()))
                }
                Ok(()) => {
                    let data = receiving.finish();
                    // Writing runs on the blocking pool, off the reactor.
                    match tokio::task::spawn_blocking(move || {
                        store.write_block(block, &data).map(|_| data.len())
                    })
                    .await
                    {
                        Ok(Ok(n)) => Ok(n),
                        Ok(Err(
                            e @ (StoreError::Corrupt { .. } | StoreError::WrongLength { .. }),
                        )) => Err(FetchError::Source(FailKind::Corrupt, e.to_string())),
                        Ok(Err(e)) => Err(FetchError::Store(e)),
                        Err(e) => Err(FetchError::Source(FailKind::Timeout, e.to_string())),
                    }
                }
            };
            FetchDone {
                block,
                from,
                result,
            }
        });
        self.in_flight.insert((a.block, a.source), handle);
    }

    fn on_fetch(&mut self, done: FetchDone) -> Result<(), SwarmError> {
        self.in_flight.remove(&(done.block, done.from));
        match done.result {
            Ok(n) => {
                self.summary.bytes_downloaded += n as u64;
                self.completed.push(Completed {
                    block: done.block,
                    from: done.from,
                });
                // An endgame copy of the same block from another source is now wasted.
                let losers: Vec<_> = self
                    .in_flight
                    .keys()
                    .filter(|(b, _)| *b == done.block)
                    .copied()
                    .collect();
                for key in losers {
                    if let Some(h) = self.in_flight.remove(&key) {
                        h.abort();
                    }
                }
            }
            Err(FetchError::Source(kind, msg)) => {
                if kind == FailKind::Corrupt {
                    self.summary.corrupt_blocks += 1;
                    tracing::warn!(source = ?done.from, "rejected block {}: {msg}", done.block.0);
                } else {
                    tracing::debug!(source = ?done.from, "block {} failed: {msg}", done.block.0);
                }
                self.failed.push(Failed {
                    block: done.block,
                    from: done.from,
                    kind,
                });
            }
            Err(FetchError::Store(e)) => return Err(store_error(e)),
        }
        Ok(())
    }

    /// Sends progress, and finishes (verifies, renames) every archive that became complete.
    async fn finish_ready(&mut self, started: Instant) -> Result<(), SwarmError> {
        for &a in &self.settings.archives {
            if self.finished.contains(&a) {
                continue;
            }
            let (done, total) = self.store.archive_progress(a);
            let _ = self.events.try_send(PeerEvent::Progress {
                archive: a,
                done,
                total,
                peers: self.peers,
            });
        }
        let ready: Vec<usize> = self
            .store
            .complete_archives()
            .into_iter()
            .filter(|a| !self.finished.contains(a))
            .collect();
        for a in ready {
            let Some(path) = self.finish_archive(a).await? else {
                continue;
            };
            self.finished.insert(a);
            self.summary.saved.push((a, path.clone()));
            let _ = self
                .events
                .send(PeerEvent::Saved {
                    archive: a,
                    path,
                    seconds: started.elapsed().as_secs_f64(),
                })
                .await;
        }
        Ok(())
    }

    /// Verifies a complete archive whole and renames it into place. An archive whose bytes
    /// changed on disk after they were verified is repaired instead: the damaged blocks are
    /// dropped (and fetched again; `None`), or, when only tar headers and padding were hit,
    /// rewritten and the archive finished again at once.
    async fn finish_archive(&mut self, a: usize) -> Result<Option<PathBuf>, SwarmError> {
        loop {
            let (store, manifest) = (self.store.clone(), self.manifest.clone());
            let finished = tokio::task::spawn_blocking(move || match store.finish(&manifest, a) {
                Err(StoreError::ArchiveMismatch { .. }) => store.repair(&manifest, a).map(Err),
                other => other.map(Ok),
            })
            .await
            .expect("finish task")
            .map_err(store_error)?;
            let dropped = match finished {
                Ok(path) => return Ok(Some(path)),
                Err(dropped) => dropped,
            };
            self.repairs += 1;
            tracing::warn!(
                "{} did not verify whole; {dropped} damaged blocks will be fetched again",
                self.manifest.archives[a].name
            );
            if self.repairs > MAX_REPAIRS {
                return Err(SwarmError::Transfer(format!(
                    "{} keeps getting damaged on disk in {}",
                    self.manifest.archives[a].name,
                    self.settings.out_dir.display()
                )));
            }
            // The coordinator hears our corrected holdings with the next call.
            self.resync();
            if dropped > 0 {
                return Ok(None);
            }
        }
    }

    /// What a run leaves of the archives it did not save (see the module docs): the partial
    /// files, announced as [`PeerEvent::Kept`]; none when the output failed or for a partial
    /// that holds no verified block.
    async fn leave_partials(&self, result: &Result<(), SwarmError>) {
        if matches!(result, Err(SwarmError::Output { .. })) {
            self.store.discard_partials();
            return;
        }
        for &a in &self.settings.archives {
            if self.finished.contains(&a) {
                continue;
            }
            let path = partial_path(&self.settings.out_dir, &self.manifest.archives[a].name);
            if std::fs::symlink_metadata(&path).is_err() {
                continue;
            }
            let (done, _) = self.store.archive_progress(a);
            if done == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let _ = self
                .events
                .send(PeerEvent::Kept {
                    archive: a,
                    path,
                    done,
                })
                .await;
        }
    }

    /// Tells the coordinator this peer stops serving (best effort, short).
    async fn leave(&mut self) {
        let req = self.request(true);
        let call = self
            .client
            .work(&self.settings.coordinator, &self.settings.swarm, &req);
        let _ = tokio::time::timeout(Duration::from_secs(2), call).await;
    }
}

/// What a failover probe of a possible coordinator found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// It coordinates our swarm.
    Coordinator,
    /// It answered, but coordinates nothing of ours (a peer, or a coordinator that lost us).
    Reachable,
    Unreachable,
}

async fn probe(client: &Client, base: &str, swarm: &Digest) -> Probe {
    match tokio::time::timeout(PROBE_TIMEOUT, client.status(base, swarm)).await {
        Ok(Ok(_)) => Probe::Coordinator,
        Ok(Err(ClientError::Status { .. } | ClientError::Invalid { .. })) => Probe::Reachable,
        Ok(Err(_)) | Err(_) => Probe::Unreachable,
    }
}

fn store_error(e: StoreError) -> SwarmError {
    match e {
        StoreError::Write { path, source } => SwarmError::Output { path, source },
        StoreError::NotADirectory(path) => SwarmError::Output {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        },
        StoreError::Busy(path) => SwarmError::Output {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                "another dfpull process is writing it",
            ),
        },
        other => SwarmError::Transfer(other.to_string()),
    }
}

/// The host part of a base URL (`http://HOST:PORT` -> `HOST`, brackets kept for IPv6).
pub fn coordinator_host(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_base_urls() {
        assert_eq!(coordinator_host("http://10.0.0.1:7341"), "10.0.0.1");
        assert_eq!(coordinator_host("http://10.0.0.1:7341/"), "10.0.0.1");
        assert_eq!(coordinator_host("http://[::1]:80"), "[::1]");
        assert_eq!(coordinator_host("http://example"), "example");
    }
}
