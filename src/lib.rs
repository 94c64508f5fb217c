//! dfpull moves container images to many hosts at once, peer to peer.
//!
//! A **seeder** ([`cmd::seed`]) scans image archives ([`image`]) into a [`SwarmManifest`]:
//! tar headers inline, member contents as objects split into sha256-verified blocks, identical
//! members stored once. It serves those blocks over HTTP ([`transport`]), runs a
//! **coordinator** ([`swarm::coordinator`], embedded or standalone via [`cmd::coordinator`]) and
//! advertises both on mDNS ([`discovery`]). A **peer** ([`cmd::peer`]) finds the swarm, fetches
//! the manifest, and repeatedly asks the coordinator for work: the pure scheduler
//! ([`swarm::scheduler`]) answers with blocks to fetch and the holder to fetch each from. Every
//! block is verified before it is written into the peer's partial archive and from then on
//! served to other peers ([`swarm::store`]). A finished archive is verified whole, renamed into
//! place and loaded into docker, podman or containerd ([`image::load`]). Option defaults may
//! come from a YAML file ([`config`]), read before the command line is parsed.
//!
//! [`SwarmManifest`]: image::manifest::SwarmManifest

pub mod cli;
pub mod cmd;
pub mod config;
pub mod discovery;
pub mod exit;
pub mod image;
pub mod logging;
pub mod swarm;
mod sys;
pub mod transport;
pub mod ui;
pub mod units;

use exit::Exit;

/// Runs one parsed command line to completion and returns its exit code. Errors are printed
/// here, on one line, with their whole chain of causes.
pub fn run(cli: cli::Cli) -> Exit {
    logging::init(&cli.global);
    transport::auth::set_secret(cli.global.secret.as_deref());
    match cmd::dispatch(cli) {
        Ok(()) => Exit::Success,
        Err(e) if exit::is_broken_pipe(&e) => Exit::Success,
        Err(e) => {
            let code = exit::classify(&e);
            logging::error_line(&format!("{e:#}"));
            code
        }
    }
}
