//! The coordinator: the pure [`Scheduler`] of each swarm, wrapped with the bookkeeping that
//! needs addresses and clocks.
//!
//! It owns, per swarm: the manifest (as registered by its seeder), the scheduler, and for every
//! host the address its block server answers on and when it last called in. It holds nothing
//! that the peers cannot tell it again: a peer it does not know gets `resync` and re-sends its
//! whole state, so a restarted coordinator rebuilds its view within one call per peer.
//!
//! Because its view is rebuilt from check-ins, a coordinator that has just started (a restart,
//! or a peer taking over from a coordinator that died) only knows the hosts that have called
//! in so far. It therefore never says the swarm is done before it has been up for
//! [`PEER_SILENCE`]: by then every live host has called in, and one that has not is treated
//! as gone anyway. Without that, a successor that had only heard from itself would tell its
//! own finished peer loop that every peer is done, and the peer would leave, taking the new
//! coordinator with it.
//!
//! Each host reports with every call the block bytes it has served ([`WorkRequest::uploaded_bytes`]);
//! the coordinator keeps the latest figure per host for the status. A host that does not report
//! it (its own seeder, or an older version) is shown with the bytes of the blocks others
//! verified from it. A peer that finished and leaves keeps its row in the status, marked
//! [`PeerStatus::left`]: the summary counts it as a peer of the swarm, and its uploads are part
//! of how the swarm was delivered.
//!
//! A `work` call that can be given nothing right now (every holder of what the peer lacks is
//! busy) waits up to [`LONG_POLL`] for another peer's report to change that, instead of making
//! the peer poll in a tight loop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::image::manifest::{BlockTable, Digest, SwarmManifest};
use crate::swarm::scheduler::{PeerId, SchedConfig, SchedStats, Scheduler};
use crate::transport::wire::{
    Assignment, JoinInfo, ManifestBody, PeerStatus, RosterEntry, SwarmList, SwarmStatus,
    SwarmSummary, WorkReply, WorkRequest,
};

/// How long a `work` call with nothing to assign waits for the swarm to change.
pub const LONG_POLL: Duration = Duration::from_millis(250);
/// A host that has not called in for this long is dropped from its swarm.
pub const PEER_SILENCE: Duration = Duration::from_secs(6);

/// Errors a coordinator answers with (mapped to HTTP statuses by the server).
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("no swarm {0}")]
    UnknownSwarm(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
}

#[derive(Debug)]
struct Host {
    /// Where its block server answers; `None` for this coordinator's own seeder.
    addr: Option<SocketAddr>,
    name: String,
    origin: bool,
    last_seen: Instant,
    wanted: u32,
    /// Block bytes it says it has served (its latest report), if it reports them.
    uploaded_bytes: Option<u64>,
    /// Bytes of the blocks others verified from it, for a host that does not report.
    verified_up: u64,
}

struct Swarm {
    manifest: Arc<SwarmManifest>,
    manifest_body: ManifestBody,
    /// Block lengths, for the bytes verified from each host.
    table: BlockTable,
    sched: Scheduler,
    hosts: HashMap<PeerId, Host>,
    /// Peers (not seeders) that have reported holding everything they want, including those
    /// that have left since; one that re-syncs with less is taken out again.
    finished: std::collections::HashSet<PeerId>,
    /// The last status of finished peers that have left (see the module docs).
    departed: HashMap<PeerId, PeerStatus>,
    origin_port: u16,
}

/// Coordinates any number of swarms. Shared by the HTTP handlers.
pub struct Coordinator {
    swarms: Mutex<HashMap<Digest, Swarm>>,
    changed: Notify,
    config: SchedConfig,
    /// Until then the view may lack hosts that have not called in yet: no `swarm_done`.
    settled_at: Instant,
}

impl Coordinator {
    pub fn new(config: SchedConfig) -> Arc<Coordinator> {
        Arc::new(Coordinator {
            swarms: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            config,
            settled_at: Instant::now() + PEER_SILENCE,
        })
    }

    /// A coordinator born with its swarm (a seeder's embedded one): no host can predate it, so
    /// its view is complete from the start and it may say the swarm is done at once.
    pub fn new_with_swarm(config: SchedConfig) -> Arc<Coordinator> {
        Arc::new(Coordinator {
            swarms: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            config,
            settled_at: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Swarm>> {
        self.swarms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a swarm (idempotent). Returns its id.
    pub fn add_swarm(&self, manifest: SwarmManifest) -> Digest {
        let id = manifest.swarm_id();
        let mut swarms = self.lock();
        swarms.entry(id).or_insert_with(|| {
            let table = BlockTable::new(&manifest);
            let blocks = table.len();
            let manifest_body = ManifestBody::new(&manifest);
            let config = self.config.for_block_size(manifest.block_size);
            Swarm {
                manifest: Arc::new(manifest),
                manifest_body,
                table,
                sched: Scheduler::new(
                    blocks,
                    config,
                    u64::from_le_bytes(id.0[..8].try_into().unwrap()),
                ),
                hosts: HashMap::new(),
                finished: Default::default(),
                departed: HashMap::new(),
                origin_port: 0,
            }
        });
        id
    }

    /// Adds this process's own seeder as the origin of a swarm; its blocks are served by the
    /// same HTTP server on `port`.
    pub fn add_local_origin(&self, swarm: &Digest, id: PeerId, port: u16) {
        let mut swarms = self.lock();
        let s = swarms
            .get_mut(swarm)
            .expect("swarm registered before its origin");
        s.sched.add_origin(id);
        s.origin_port = port;
        s.hosts.insert(
            id,
            Host {
                addr: None,
                name: "seeder".into(),
                origin: true,
                last_seen: far_future(),
                wanted: 0,
                uploaded_bytes: None,
                verified_up: 0,
            },
        );
    }

    pub fn manifest_body(&self, swarm: &Digest) -> Option<ManifestBody> {
        self.lock().get(swarm).map(|s| s.manifest_body.clone())
    }

    pub fn manifest(&self, swarm: &Digest) -> Option<Arc<SwarmManifest>> {
        self.lock().get(swarm).map(|s| s.manifest.clone())
    }

    pub fn list(&self) -> SwarmList {
        let swarms = self.lock();
        let mut list: Vec<SwarmSummary> = swarms.iter().map(|(id, s)| summary(id, s)).collect();
        list.sort_by(|a, b| a.archives.cmp(&b.archives));
        SwarmList { swarms: list }
    }

    pub fn status(&self, swarm: &Digest) -> Option<SwarmStatus> {
        let swarms = self.lock();
        let s = swarms.get(swarm)?;
        let stats = s.sched.stats();
        let mut peers: Vec<PeerStatus> = s
            .hosts
            .iter()
            .map(|(id, h)| host_status(s, &stats, *id, h))
            .chain(
                s.departed
                    .iter()
                    .filter(|(id, _)| !s.hosts.contains_key(id))
                    .map(|(_, p)| p.clone()),
            )
            .collect();
        peers.sort_by_key(|p| (!p.origin, p.left, p.name.clone()));
        Some(SwarmStatus {
            summary: summary(swarm, s),
            peers,
        })
    }

    /// Peers (not seeders) of a swarm that have finished.
    pub fn finished_peers(&self, swarm: &Digest) -> u32 {
        self.lock()
            .get(swarm)
            .map_or(0, |s| s.finished.len() as u32)
    }

    /// True when every peer this coordinator knows has what it wants, and it has been up long
    /// enough to know every live peer (see the module docs).
    pub fn swarm_done(&self, swarm: &Digest) -> bool {
        Instant::now() >= self.settled_at
            && self.lock().get(swarm).is_some_and(|s| s.sched.all_done())
    }

    /// Handles one `work` call. `remote` is the address the request came from.
    pub async fn work(
        &self,
        swarm: &Digest,
        req: WorkRequest,
        remote: Option<IpAddr>,
    ) -> Result<WorkReply, CoordError> {
        let deadline = Instant::now() + LONG_POLL;
        let mut first = true;
        loop {
            // Register interest before looking, so a report landing in between wakes us.
            let notified = self.changed.notified();
            let reply = self.work_once(swarm, &req, remote, first)?;
            first = false;
            // Hold the call only for an idle peer: one with downloads running reports again as each
            // completes, and holding it would also hold back those reports.
            let want_more = req.slots > 0
                && req.in_flight == 0
                && !req.leaving
                && !reply.resync
                && !reply.swarm_done;
            if !reply.assignments.is_empty() || !want_more || Instant::now() >= deadline {
                return Ok(reply);
            }
            let is_done = self
                .lock()
                .get(swarm)
                .is_some_and(|s| s.sched.is_done(req.peer));
            if is_done {
                return Ok(reply);
            }
            let _ = tokio::time::timeout_at(deadline.into(), notified).await;
        }
    }

    fn work_once(
        &self,
        swarm: &Digest,
        req: &WorkRequest,
        remote: Option<IpAddr>,
        report: bool,
    ) -> Result<WorkReply, CoordError> {
        let now = Instant::now();
        let mut swarms = self.lock();
        let s = swarms
            .get_mut(swarm)
            .ok_or_else(|| CoordError::UnknownSwarm(swarm.hex()))?;
        let blocks = s.sched.num_blocks();
        let mut changed = false;

        if report {
            if let Some(join) = &req.join {
                check_join(join, blocks)?;
                let addr = match (remote, req.port) {
                    (Some(ip), port) if port != 0 => Some(SocketAddr::new(ip, port)),
                    _ => None,
                };
                if join.origin {
                    s.sched.add_origin(req.peer);
                } else {
                    s.sched.join(req.peer, &join.wants, &join.has);
                }
                // A re-join keeps what the host had uploaded (a resync is not a restart).
                let (uploaded_bytes, verified_up) = s
                    .hosts
                    .get(&req.peer)
                    .map_or((None, 0), |h| (h.uploaded_bytes, h.verified_up));
                s.hosts.insert(
                    req.peer,
                    Host {
                        addr,
                        name: join.name.clone(),
                        origin: join.origin,
                        last_seen: now,
                        wanted: join.wants.count() as u32,
                        uploaded_bytes,
                        verified_up,
                    },
                );
                s.departed.remove(&req.peer);
                changed = true;
            }
            let Some(host) = s.hosts.get_mut(&req.peer) else {
                return Ok(resync());
            };
            host.last_seen = now;
            if let Some(n) = req.uploaded_bytes {
                // The counter only grows; a late call must not take it back.
                host.uploaded_bytes = Some(host.uploaded_bytes.map_or(n, |old| old.max(n)));
            }
            for c in &req.completed {
                if c.block.0 < blocks {
                    s.sched.completed(req.peer, c.block, c.from);
                    if c.from != req.peer
                        && let Some(source) = s.hosts.get_mut(&c.from)
                    {
                        source.verified_up += u64::from(s.table.get(c.block).len);
                    }
                    changed = true;
                }
            }
            for f in &req.failed {
                if f.block.0 < blocks {
                    s.sched.failed(req.peer, f.block, f.from, f.kind);
                    changed = true;
                }
            }
            if req.leaving {
                remove_host(s, req.peer);
                changed = true;
            }
            // Forget hosts that went silent (killed, cut off): their uploads are re-queued.
            let silent: Vec<PeerId> = s
                .hosts
                .iter()
                .filter(|(_, h)| now.saturating_duration_since(h.last_seen) > PEER_SILENCE)
                .map(|(id, _)| *id)
                .collect();
            for id in silent {
                tracing::info!(peer = ?id, "dropping a silent host from the swarm");
                remove_host(s, id);
                changed = true;
            }
            if s.sched.expire(now) > 0 {
                changed = true;
            }
        } else if !s.hosts.contains_key(&req.peer) {
            return Ok(resync());
        }

        let is_origin = s.hosts.get(&req.peer).is_some_and(|h| h.origin);
        if !is_origin && !req.leaving {
            if s.sched.is_done(req.peer) {
                s.finished.insert(req.peer);
            } else if req.join.is_some() {
                // It re-synced holding less than everything (blocks damaged on its disk): it
                // is fetching again, so no longer counts as finished.
                s.finished.remove(&req.peer);
            }
        }
        let picked = if req.leaving || is_origin {
            Vec::new()
        } else {
            s.sched.assign(req.peer, req.slots, now)
        };
        let origin_port = s.origin_port;
        let assignments = picked
            .into_iter()
            .filter_map(|a| {
                let h = s.hosts.get(&a.source)?;
                Some(Assignment {
                    block: a.block,
                    source: a.source,
                    addr: h.addr,
                    source_port: h.addr.map_or(origin_port, |a| a.port()),
                })
            })
            .collect();
        let peers = s.hosts.values().filter(|h| !h.origin).count() as u32;
        let roster = if req.want_roster {
            let mut r: Vec<RosterEntry> = s
                .hosts
                .iter()
                .filter(|(_, h)| !h.origin)
                .filter_map(|(id, h)| {
                    Some(RosterEntry {
                        id: *id,
                        addr: h.addr?,
                    })
                })
                .collect();
            r.sort_by_key(|e| e.id);
            r
        } else {
            Vec::new()
        };
        let reply = WorkReply {
            resync: false,
            assignments,
            swarm_done: now >= self.settled_at && s.sched.all_done(),
            peers,
            roster,
        };
        drop(swarms);
        if changed {
            self.changed.notify_waiters();
        }
        Ok(reply)
    }
}

/// A host as `dfpull status` shows it.
fn host_status(s: &Swarm, stats: &SchedStats, id: PeerId, h: &Host) -> PeerStatus {
    let (held, wanted) = if h.origin {
        (h.wanted, h.wanted)
    } else {
        s.sched.peer_progress(id)
    };
    PeerStatus {
        id,
        name: h.name.clone(),
        addr: h.addr,
        origin: h.origin,
        held,
        wanted,
        uploads: stats.uploads_by(id),
        uploaded_bytes: h.uploaded_bytes.unwrap_or(h.verified_up),
        left: false,
    }
}

/// Takes a host out of the swarm (it left, or went silent). A finished peer's last status is
/// kept for `dfpull status`.
fn remove_host(s: &mut Swarm, id: PeerId) {
    if s.finished.contains(&id)
        && let Some(h) = s.hosts.get(&id)
    {
        let mut last = host_status(s, &s.sched.stats(), id, h);
        last.left = true;
        s.departed.insert(id, last);
    }
    s.sched.leave(id);
    s.hosts.remove(&id);
}

fn resync() -> WorkReply {
    WorkReply {
        resync: true,
        assignments: vec![],
        swarm_done: false,
        peers: 0,
        roster: vec![],
    }
}

fn check_join(join: &JoinInfo, blocks: u32) -> Result<(), CoordError> {
    if join.wants.len() != blocks as usize || join.has.len() != blocks as usize {
        return Err(CoordError::BadRequest(format!(
            "join sets have {} and {} bits, the swarm has {blocks} blocks",
            join.wants.len(),
            join.has.len()
        )));
    }
    Ok(())
}

fn summary(id: &Digest, s: &Swarm) -> SwarmSummary {
    let m = &s.manifest;
    SwarmSummary {
        id: *id,
        images: m
            .archives
            .iter()
            .flat_map(|a| a.tags().map(str::to_string))
            .collect(),
        archives: m.archives.iter().map(|a| a.name.clone()).collect(),
        bytes: m.object_bytes(),
        blocks: s.sched.num_blocks(),
        // Peers that finished and left still count as peers of the swarm.
        peers: (s
            .hosts
            .iter()
            .filter(|(id, h)| !h.origin && !s.finished.contains(id))
            .count()
            + s.finished.len()) as u32,
        peers_done: s.finished.len() as u32,
    }
}

/// A `last_seen` for hosts that never go silent (the coordinator's own seeder).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::{
        ArchiveInfo, BlockIdx, ImageInfo, MANIFEST_VERSION, ObjectIdx, ObjectInfo, Segment,
    };
    use crate::swarm::bitset::BitSet;
    use crate::transport::wire::Completed;

    const BS: u64 = 64 << 10;

    /// A swarm of one object in three blocks, the last one short.
    fn manifest() -> SwarmManifest {
        let data: Vec<u8> = (0..BS * 2 + 1000).map(|i| (i % 251) as u8).collect();
        SwarmManifest {
            version: MANIFEST_VERSION,
            block_size: BS,
            objects: vec![ObjectInfo {
                digest: Digest::of(&data),
                size: data.len() as u64,
                blocks: data.chunks(BS as usize).map(Digest::of).collect(),
            }],
            archives: vec![ArchiveInfo {
                name: "app.tar".into(),
                digest: Digest::of(&data),
                size: data.len() as u64,
                source: "app.tar".into(),
                images: vec![ImageInfo {
                    tags: vec!["app:1".into()],
                    id: Digest::of(b"config"),
                    config: ObjectIdx(0),
                    layers: vec![],
                    extra: vec![],
                }],
                segments: vec![Segment::Object(ObjectIdx(0))],
            }],
        }
    }

    fn call(peer: u64, uploaded_bytes: Option<u64>) -> WorkRequest {
        WorkRequest {
            peer: PeerId(peer),
            port: 7000 + peer as u16,
            join: None,
            completed: vec![],
            failed: vec![],
            slots: 0,
            in_flight: 0,
            leaving: false,
            want_roster: false,
            uploaded_bytes,
        }
    }

    fn join(peer: u64, uploaded_bytes: Option<u64>) -> WorkRequest {
        WorkRequest {
            join: Some(JoinInfo {
                wants: BitSet::full(3),
                has: BitSet::new(3),
                origin: false,
                name: format!("peer-{peer}"),
            }),
            ..call(peer, uploaded_bytes)
        }
    }

    /// `peer` reports blocks `blocks`, all from `from`.
    fn got(peer: u64, from: u64, blocks: &[u32], uploaded_bytes: Option<u64>) -> WorkRequest {
        WorkRequest {
            completed: blocks
                .iter()
                .map(|&b| Completed {
                    block: BlockIdx(b),
                    from: PeerId(from),
                })
                .collect(),
            ..call(peer, uploaded_bytes)
        }
    }

    fn row(st: &SwarmStatus, id: u64) -> Option<&PeerStatus> {
        st.peers.iter().find(|p| p.id == PeerId(id))
    }

    #[test]
    fn each_swarm_schedules_with_counts_for_its_own_block_size() {
        let c = Coordinator::new(SchedConfig::default());
        let small = c.add_swarm(manifest());
        let big = c.add_swarm(SwarmManifest {
            block_size: 1 << 20,
            objects: vec![ObjectInfo {
                blocks: vec![Digest::of(b"whole")],
                ..manifest().objects[0].clone()
            }],
            ..manifest()
        });
        assert_ne!(small, big);
        let swarms = c.lock();
        let downloads = |id: &Digest| swarms[id].sched.config().downloads;
        assert_eq!(downloads(&small), 12, "64 KiB blocks: twice the transfers");
        assert_eq!(downloads(&big), SchedConfig::default().downloads);
    }

    #[tokio::test]
    async fn status_keeps_the_bytes_each_host_uploaded_and_the_peers_that_left() {
        let c = Coordinator::new_with_swarm(SchedConfig::default());
        let swarm = c.add_swarm(manifest());
        c.add_local_origin(&swarm, PeerId(1), 7000);
        let ip = Some(IpAddr::from([10, 0, 0, 2]));
        let work = |req: WorkRequest| c.work(&swarm, req, ip);

        // Peer 2 gets everything from the origin, which does not report: it is credited with
        // the bytes verified from it.
        work(join(2, Some(0))).await.unwrap();
        work(got(2, 1, &[0, 1, 2], Some(0))).await.unwrap();
        // Peer 3, an older version that does not report, gets two blocks from peer 2, which
        // says it sent more (an endgame copy cut short, say).
        work(join(3, None)).await.unwrap();
        work(got(3, 2, &[0, 2], None)).await.unwrap();
        work(got(2, 2, &[], Some(BS + 1000 + 5000))).await.unwrap();
        // A late call with an older figure does not take it back.
        work(got(2, 2, &[], Some(BS))).await.unwrap();
        let st = c.status(&swarm).unwrap();
        assert_eq!(row(&st, 1).unwrap().uploaded_bytes, 2 * BS + 1000);
        assert_eq!(row(&st, 2).unwrap().uploaded_bytes, BS + 1000 + 5000);
        assert_eq!(row(&st, 3).unwrap().uploaded_bytes, 0);
        assert!(st.peers.iter().all(|p| !p.left));

        // Peer 2 is done and leaves: kept, with its last figures. Peer 3 leaves unfinished: gone.
        work(WorkRequest {
            leaving: true,
            ..call(2, Some(BS + 1000 + 6000))
        })
        .await
        .unwrap();
        work(WorkRequest {
            leaving: true,
            ..call(3, None)
        })
        .await
        .unwrap();
        let st = c.status(&swarm).unwrap();
        let two = row(&st, 2).expect("a finished peer that left is still listed");
        assert!(two.left);
        assert_eq!((two.held, two.wanted), (3, 3));
        assert_eq!(two.uploaded_bytes, BS + 1000 + 6000);
        assert_eq!(two.uploads, 2);
        assert!(row(&st, 3).is_none(), "{st:?}");
        assert_eq!(st.peers.len(), 2);
        assert_eq!((st.summary.peers, st.summary.peers_done), (1, 1));
        assert!(!row(&st, 1).unwrap().left);
    }
}
