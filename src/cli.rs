//! The whole command-line contract in one place.
//!
//! Every option can also be set through a `DFPULL_*` environment variable (shown in `--help`).
//! Raw flags are turned into validated per-command settings by the command modules in
//! [`crate::cmd`]; nothing here touches the network or the disk.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::ByteSize;

/// Move container images to many hosts at once, peer to peer.
///
/// A seeder splits image archives into sha256-verified blocks; peers found on the LAN over mDNS
/// fetch them from the seeder and from each other, save the archives and load them into the
/// local engine. The origin sends about one copy, whatever the number of hosts.
#[derive(Debug, Parser)]
#[command(
    name = "dfpull",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q: warnings and errors only, -qq: errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Shared secret of the swarm: every request must carry proof of it (an HMAC, never the
    /// secret itself) and every answer is signed with it; mDNS adverts then name no images.
    /// Prefer the environment variable or a config file to keep it out of `ps`.
    #[arg(
        long,
        global = true,
        env = "DFPULL_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Print machine-readable JSON lines on stdout; human output goes to stderr.
    #[arg(long, global = true, env = "DFPULL_JSON")]
    pub json: bool,

    /// Read option defaults from this YAML file instead of
    /// $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none).
    /// Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`).
    #[arg(long, global = true, env = "DFPULL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve images to the LAN (seeder, with an embedded coordinator by default).
    Seed(SeedArgs),
    /// Fetch images from the swarm, save the archives and load them.
    Peer(PeerArgs),
    /// Run a standalone coordinator.
    Coordinator(CoordinatorArgs),
    /// Show the swarms, images and peers visible on the LAN.
    Status(StatusArgs),
    /// Show what a source would put in the swarm.
    Inspect(InspectArgs),
    /// Run a real local swarm on this machine, for a first look.
    Demo(DemoArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Write man pages into a directory.
    #[command(hide = true)]
    Man(ManArgs),
}

/// Where a peer or status command finds the swarm when mDNS is not used.
#[derive(Debug, Args, Clone, Default)]
pub struct SwarmAddrArgs {
    /// Coordinator URL (skips mDNS discovery), e.g. http://10.0.0.1:7341.
    #[arg(long, env = "DFPULL_COORDINATOR", value_name = "URL")]
    pub coordinator: Option<String>,

    /// Seeder URL (skips mDNS discovery); its embedded coordinator is used.
    #[arg(
        long,
        env = "DFPULL_SEED",
        value_name = "URL",
        conflicts_with = "coordinator"
    )]
    pub seed: Option<String>,

    /// Join only the swarm whose id starts with this (hex, as `dfpull status` shows it), when
    /// several are on the LAN.
    #[arg(long, env = "DFPULL_SWARM", value_name = "ID", value_parser = parse_swarm_prefix)]
    pub swarm: Option<String>,

    /// How long to look for a swarm on mDNS before giving up.
    #[arg(long, env = "DFPULL_DISCOVER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub discover_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Image archives (plain, gzip or zstd tar) or image references (`name:tag`,
    /// `name@sha256:...`) taken from the local engine with `docker save`.
    #[arg(
        required = true,
        value_name = "SOURCE",
        env = "DFPULL_SOURCES",
        value_delimiter = ','
    )]
    pub sources: Vec<String>,

    /// Address to serve blocks on.
    #[arg(
        long,
        env = "DFPULL_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:0"
    )]
    pub listen: SocketAddr,

    /// Use this coordinator instead of the embedded one.
    #[arg(long, env = "DFPULL_COORDINATOR", value_name = "URL")]
    pub coordinator: Option<String>,

    /// Exit once this many peers have completed.
    #[arg(long, env = "DFPULL_EXIT_AFTER", value_name = "N")]
    pub exit_after: Option<u32>,

    /// Block size (e.g. 1MiB, 4M); `auto` picks it from the total size (see README).
    #[arg(
        long,
        env = "DFPULL_BLOCK_SIZE",
        value_name = "SIZE",
        default_value = "auto"
    )]
    pub block_size: BlockSizeArg,

    /// Where compressed archives and `docker save` output are spooled while serving.
    #[arg(long, env = "DFPULL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Do not advertise on mDNS (peers then need --seed or --coordinator).
    #[arg(long, env = "DFPULL_NO_MDNS")]
    pub no_mdns: bool,
}

#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Images to fetch (`name:tag` as the swarm lists them); all that the swarm offers if none.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,

    #[command(flatten)]
    pub swarm: SwarmAddrArgs,

    /// Directory the archives are written to.
    #[arg(
        long,
        short,
        env = "DFPULL_OUT",
        value_name = "DIR",
        default_value = "."
    )]
    pub out: PathBuf,

    /// How to load each archive once saved.
    #[arg(
        long,
        env = "DFPULL_LOAD",
        value_name = "LOADER",
        default_value = "auto"
    )]
    pub load: LoadMode,

    /// containerd namespace to import into (`k8s.io` for the images Kubernetes sees).
    #[arg(
        long,
        env = "DFPULL_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = crate::image::load::Namespace::DEFAULT
    )]
    pub namespace: crate::image::load::Namespace,

    /// Keep serving blocks this long after our own images are done (unless every peer the
    /// coordinator knows has finished first).
    #[arg(long, env = "DFPULL_SEED_TIME", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub seed_time: Duration,

    /// Address to serve blocks to other peers on.
    #[arg(
        long,
        env = "DFPULL_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:0"
    )]
    pub listen: SocketAddr,

    /// Hash each archive whole against the manifest before saving it under its name. Without
    /// this, an archive is hashed whole only when another process opened it while it was being
    /// written (or it is on a network filesystem): otherwise every byte of it was verified
    /// before it was written, and a second pass would only read back the page cache.
    #[arg(long, env = "DFPULL_VERIFY_SAVED")]
    pub verify_saved: bool,
}

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "DFPULL_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:7341"
    )]
    pub listen: SocketAddr,

    /// Do not advertise on mDNS.
    #[arg(long, env = "DFPULL_NO_MDNS")]
    pub no_mdns: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub swarm: SwarmAddrArgs,

    /// How long to listen for swarms on mDNS.
    #[arg(long, env = "DFPULL_STATUS_WAIT", value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image archives or image references, as for `dfpull seed`.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,

    /// Block size, as for `dfpull seed`.
    #[arg(
        long,
        env = "DFPULL_BLOCK_SIZE",
        value_name = "SIZE",
        default_value = "auto"
    )]
    pub block_size: BlockSizeArg,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of peer processes.
    #[arg(long, env = "DFPULL_DEMO_PEERS", value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub peers: u32,

    /// Size of the generated image, in MB.
    #[arg(long, env = "DFPULL_DEMO_SIZE", value_name = "MB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub size: u64,

    /// How the last peer loads the image (the others do not load).
    #[arg(
        long,
        env = "DFPULL_LOAD",
        value_name = "LOADER",
        default_value = "auto"
    )]
    pub load: LoadMode,

    /// Keep the demo's files in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write dfpull.1 and one page per subcommand into.
    pub dir: PathBuf,
}

/// Which image loader a peer uses once an archive is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadMode {
    /// Docker if an engine answers, else podman, else containerd, else skip with a warning.
    Auto,
    /// `docker load`.
    Docker,
    /// `podman load`.
    Podman,
    /// `ctr images import` into the --namespace.
    Containerd,
    /// Only save the archive.
    None,
}

/// `--block-size`: `auto` or an explicit size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSizeArg {
    Auto,
    Fixed(ByteSize),
}

impl std::str::FromStr for BlockSizeArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(BlockSizeArg::Auto);
        }
        let size: ByteSize = s.parse()?;
        crate::image::manifest::check_block_size(size.0).map_err(|e| e.to_string())?;
        Ok(BlockSizeArg::Fixed(size))
    }
}

fn parse_swarm_prefix(s: &str) -> Result<String, String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    if hex.is_empty() || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a swarm id (hex digits, as `dfpull status` shows)"
        ));
    }
    Ok(hex)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 2m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_block_sizes_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert_eq!("auto".parse::<BlockSizeArg>().unwrap(), BlockSizeArg::Auto);
        assert_eq!(
            "4MiB".parse::<BlockSizeArg>().unwrap(),
            BlockSizeArg::Fixed(ByteSize(4 << 20))
        );
        assert!(
            "1000".parse::<BlockSizeArg>().is_err(),
            "not a power of two"
        );
    }
}
