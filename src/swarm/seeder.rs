//! A seeder: serves the blocks of its archives, coordinates the swarm (embedded) or registers
//! with a standalone coordinator, and waits for peers.
//!
//! With an embedded coordinator the seeder's own blocks are one more source in the scheduler,
//! flagged as the origin so that it is spread as little as possible. With `--coordinator URL`
//! the seeder uploads its manifest there and then checks in like a peer that holds everything,
//! so the remote coordinator learns its address from the connection and keeps it alive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::image::Backing;
use crate::image::manifest::{Digest, SwarmManifest};
use crate::swarm::SwarmError;
use crate::swarm::coordinator::{Coordinator, PEER_SILENCE};
use crate::swarm::scheduler::{PeerId, SchedConfig};
use crate::swarm::store::Store;
use crate::transport::client::Client;
use crate::transport::server::{self, ServerState};
use crate::transport::wire::{JoinInfo, WorkRequest};

/// How often a seeder with a remote coordinator checks in (well inside the coordinator's
/// silence limit).
pub const ORIGIN_CHECK_IN: Duration = Duration::from_secs(2);
/// How often `--exit-after` looks at the number of finished peers.
pub const EXIT_AFTER_POLL: Duration = Duration::from_millis(200);
/// After `--exit-after` is reached, how long the seeder (and its embedded coordinator) stays up
/// so that seeding peers hear that the swarm is done at their next check-in.
pub const EXIT_GRACE: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone)]
pub struct SeedSettings {
    pub listen: SocketAddr,
    /// A remote coordinator's base URL; `None` runs one embedded.
    pub coordinator: Option<String>,
    pub exit_after: Option<u32>,
    pub name: String,
}

/// A seeder that is up: its address, and the handles to stop and wait for it.
pub struct Seeder {
    pub swarm: Digest,
    pub local: SocketAddr,
    pub state: ServerState,
    pub coordinator: Option<Arc<Coordinator>>,
    settings: SeedSettings,
    server: tokio::task::JoinHandle<()>,
    cancel: CancellationToken,
    manifest: Arc<SwarmManifest>,
}

impl Seeder {
    /// Opens the archives and starts serving.
    pub async fn start(
        manifest: SwarmManifest,
        backing: Backing,
        settings: SeedSettings,
        cancel: CancellationToken,
    ) -> Result<Seeder, SwarmError> {
        let swarm = manifest.swarm_id();
        let manifest = Arc::new(manifest);
        // Our own token: stopping this seeder must not cancel the caller's other work.
        let cancel = cancel.child_token();
        let store = {
            let m = manifest.clone();
            tokio::task::spawn_blocking(move || Store::origin(&m, backing))
                .await
                .expect("store task")
        };
        let state = ServerState::default();
        state.serve_swarm(swarm, &manifest, Arc::new(store));
        let coordinator = settings
            .coordinator
            .is_none()
            .then(|| Coordinator::new_with_swarm(SchedConfig::default()));
        if let Some(c) = &coordinator {
            state.set_coordinator(c.clone());
        }
        let (local, server) = server::start(settings.listen, state.clone(), cancel.child_token())
            .await
            .map_err(|e| {
                SwarmError::Transfer(format!("cannot listen on {}: {e}", settings.listen))
            })?;
        if let Some(c) = &coordinator {
            c.add_swarm((*manifest).clone());
            c.add_local_origin(&swarm, PeerId(rand::random()), local.port());
        }
        Ok(Seeder {
            swarm,
            local,
            state,
            coordinator,
            settings,
            server,
            cancel,
            manifest,
        })
    }

    /// Bytes this seeder has uploaded so far.
    pub fn bytes_served(&self) -> u64 {
        self.state.counters.bytes_served.load(Ordering::Relaxed)
    }

    /// Serves until cancelled or, with `exit_after`, until that many peers have finished.
    pub async fn serve(self) -> Result<(), SwarmError> {
        let mut remote = match &self.settings.coordinator {
            Some(base) => Some(self.register(base).await?),
            None => None,
        };
        let mut exit_check = tokio::time::interval(EXIT_AFTER_POLL);
        let mut check_in = tokio::time::interval(ORIGIN_CHECK_IN);
        let mut last_ok = std::time::Instant::now();
        // When `exit_after` peers had finished.
        let mut reached: Option<std::time::Instant> = None;
        let result = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break Ok(()),
                _ = exit_check.tick(), if self.settings.exit_after.is_some() => {
                    let n = self.settings.exit_after.expect("guarded");
                    if self.finished_peers(remote.as_ref()).await >= n {
                        reached.get_or_insert_with(|| {
                            tracing::info!("{n} peers have finished; exiting");
                            std::time::Instant::now()
                        });
                    } else {
                        // A peer counted as finished found damage on its disk and fetches again.
                        reached = None;
                    }
                    // Peers killed mid-transfer stay in the coordinator's view until they have
                    // been silent for PEER_SILENCE, and until then the swarm is not done. Leaving
                    // at once would make the seeding peers, who never heard that it is, fail
                    // over to a successor only to be told so there: wait (bounded) until the
                    // coordinator says so, then long enough for them to hear it at a check-in.
                    if let Some(at) = reached
                        && (at.elapsed() >= PEER_SILENCE + EXIT_GRACE
                            || self.swarm_done(remote.as_ref()).await)
                    {
                        tokio::select! {
                            _ = tokio::time::sleep(EXIT_GRACE) => {}
                            _ = self.cancel.cancelled() => {}
                        }
                        break Ok(());
                    }
                }
                _ = check_in.tick(), if remote.is_some() => {
                    let (client, base, id) = remote.as_ref().expect("guarded");
                    match client.work(base, &self.swarm, &self.origin_request(*id, false)).await {
                        Ok(_) => last_ok = std::time::Instant::now(),
                        Err(e) => {
                            tracing::warn!("cannot reach the coordinator: {e}");
                            // The peers elect a successor and advertise it; register there.
                            if last_ok.elapsed() >= crate::swarm::peer::FAILOVER_AFTER
                                && let Some(url) = self.browse_for_coordinator(base).await
                                && let Ok(r) = self.register(&url).await
                            {
                                tracing::warn!("the coordinator moved to {url}");
                                remote = Some(r);
                                last_ok = std::time::Instant::now();
                            }
                        }
                    }
                }
            }
        };
        if let Some((client, base, id)) = &remote {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                client.work(base, &self.swarm, &self.origin_request(*id, true)),
            )
            .await;
        }
        self.cancel.cancel();
        let _ = self.server.await;
        result
    }

    /// A coordinator of this swarm other than `old`, advertised on mDNS.
    async fn browse_for_coordinator(&self, old: &str) -> Option<String> {
        let want = self.swarm.hex();
        let d = crate::discovery::Discovery::new().ok()?;
        let ours = |f: &crate::discovery::Found| {
            f.role == crate::discovery::Role::Coordinator
                && f.swarm.as_deref().is_some_and(|s| want.starts_with(s))
                && f.url() != old
        };
        let found = d
            .browse(crate::swarm::peer::FAILOVER_BROWSE, |all| {
                all.iter().any(ours)
            })
            .await
            .ok()?;
        found.iter().find(|f| ours(f)).map(|f| f.url())
    }

    async fn register(&self, base: &str) -> Result<(Client, String, PeerId), SwarmError> {
        let client = Client::new();
        client
            .put_manifest(base, &self.manifest)
            .await
            .map_err(|e| {
                SwarmError::NotFound(format!("cannot register with the coordinator: {e}"))
            })?;
        let id = PeerId(rand::random());
        client
            .work(base, &self.swarm, &self.origin_request(id, false))
            .await
            .map_err(|e| {
                SwarmError::NotFound(format!("cannot register with the coordinator: {e}"))
            })?;
        Ok((client, base.to_string(), id))
    }

    fn origin_request(&self, id: PeerId, leaving: bool) -> WorkRequest {
        let store = &self.state.served.read().unwrap_or_else(|e| e.into_inner())[&self.swarm].store;
        WorkRequest {
            peer: id,
            port: self.local.port(),
            // Sent every time: cheap, and a restarted coordinator then knows the origin at once.
            join: Some(JoinInfo {
                wants: store.wanted().clone(),
                has: store.held_set(),
                origin: true,
                name: self.settings.name.clone(),
            }),
            completed: vec![],
            failed: vec![],
            slots: 0,
            in_flight: 0,
            leaving,
            want_roster: false,
            uploaded_bytes: Some(self.bytes_served()),
        }
    }

    /// Whether every peer the coordinator knows has finished.
    async fn swarm_done(&self, remote: Option<&(Client, String, PeerId)>) -> bool {
        match (&self.coordinator, remote) {
            (Some(c), _) => c.swarm_done(&self.swarm),
            (None, Some((client, base, _))) => client
                .status(base, &self.swarm)
                .await
                .is_ok_and(|s| s.summary.peers == s.summary.peers_done),
            (None, None) => true,
        }
    }

    async fn finished_peers(&self, remote: Option<&(Client, String, PeerId)>) -> u32 {
        match (&self.coordinator, remote) {
            (Some(c), _) => c.finished_peers(&self.swarm),
            (None, Some((client, base, _))) => client
                .status(base, &self.swarm)
                .await
                .map_or(0, |s| s.summary.peers_done),
            (None, None) => 0,
        }
    }
}
