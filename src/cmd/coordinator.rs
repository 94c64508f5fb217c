//! `dfpull coordinator`: a standalone coordinator. Seeders started with `--coordinator URL`
//! register their swarms with it; peers find it on mDNS (or are given its URL).

use crate::cli::{CoordinatorArgs, GlobalArgs};
use crate::swarm::coordinator::Coordinator;
use crate::swarm::scheduler::SchedConfig;
use crate::transport::server::{self, ServerState};

pub fn run(args: CoordinatorArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    super::runtime()?.block_on(async {
        let cancel = super::interrupt_token();
        let state = ServerState::with_coordinator(Coordinator::new(SchedConfig::default()));
        let (local, task) = server::start(args.listen, state, cancel.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let _advert = if args.no_mdns {
            None
        } else {
            Some(super::advertise(
                crate::discovery::Role::Coordinator,
                local.port(),
                None,
                &[],
            )?)
        };
        tracing::info!("coordinator listening on {local}; press Ctrl-C to stop");
        let _ = task.await;
        Ok(())
    })
}
