//! One module per subcommand. Each turns its raw arguments into validated settings and runs.

pub mod completions;
pub mod coordinator;
pub mod demo;
pub mod inspect;
pub mod peer;
pub mod seed;
pub mod status;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Seed(a) => seed::run(a, &g),
        Command::Peer(a) => peer::run(a, &g),
        Command::Coordinator(a) => coordinator::run(a, &g),
        Command::Status(a) => status::run(a, &g),
        Command::Inspect(a) => inspect::run(a, &g),
        Command::Demo(a) => demo::run(a, &g),
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(a),
    }
}

/// The async runtime commands run on: a few workers (the work is mostly waiting on sockets;
/// hashing goes to the blocking pool).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("dfpull")
        .enable_all()
        .build()?)
}

/// A token cancelled by the first Ctrl-C (or SIGTERM); a second one exits at once with 130.
/// Must be called inside the runtime.
pub(crate) fn interrupt_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let next = async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        next.await;
        tracing::warn!("interrupted; stopping (press Ctrl-C again to exit at once)");
        t.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(crate::exit::Exit::Interrupted.code() as i32);
    });
    token
}

/// The error for a command stopped by Ctrl-C.
pub(crate) fn interrupted() -> anyhow::Error {
    crate::exit::coded(crate::exit::Exit::Interrupted, "interrupted")
}

/// This host's name, for status displays.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".to_string())
}

/// Advertises a role on mDNS; the advert lasts as long as the returned handle. With a swarm,
/// its short id and image names go in the TXT record (left out when they do not fit).
pub(crate) fn advertise(
    role: crate::discovery::Role,
    port: u16,
    swarm: Option<&crate::image::manifest::Digest>,
    images: &[String],
) -> anyhow::Result<crate::discovery::AdvertHandle> {
    use anyhow::Context as _;
    let discovery = crate::discovery::Discovery::new().context("cannot start mDNS")?;
    let mut advert = crate::discovery::Advert::new(role, port);
    advert.swarm = swarm.map(|s| s.hex()[..crate::discovery::SWARM_ID_MAX.min(64)].to_string());
    if !images.is_empty() {
        advert.txt.push(("images".to_string(), images.join(",")));
    }
    discovery
        .advertise(&advert)
        .context("cannot advertise on mDNS")
}
