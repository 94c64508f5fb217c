//! One measured run: one tool moving one image from the origin (host 0) to every peer of a fresh
//! lab, timed from the moment the peers start until the last one holds a complete copy, then
//! every copy checked against the input's sha256.
//!
//! What "holds a complete copy" means, per tool, is the tool's own notion of done, observed
//! from outside within one polling interval ([`POLL`]):
//! - dfpull: the archive appears under its final name (the peer renames it into place only
//!   after every block and the whole archive verified);
//! - HTTP fan-out: curl exits 0;
//! - BitTorrent: aria2c runs its `--on-bt-download-complete` hook (every piece SHA-1 checked).
//!
//! The origin is made ready before the clock starts (dfpull's seeder has scanned the image and
//! advertises it, the web server listens, the tracker knows the seeding aria2c), so the time is
//! the transfer, discovery included, and not the preparation.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::lab::{Lab, LabSpec};
use crate::procs::{Exit, Proc};
use crate::report::Record;
use crate::{Link, Scenario, Tool};

/// How often completion is checked (and so the resolution of every time measured).
const POLL: Duration = Duration::from_millis(10);
/// How often the link counters are sampled for the run's timeline.
const SAMPLE: Duration = Duration::from_millis(500);
/// How long an origin may take to get ready (dfpull scans the image first).
const ORIGIN_READY: Duration = Duration::from_secs(180);
/// How long dfpull processes may take to exit by themselves once every peer is done: the
/// default `--seed-time` (60 s) plus slack. They should leave at once, since every peer the
/// coordinator knows has finished.
const DFPULL_EXIT: Duration = Duration::from_secs(90);
/// Grace between SIGTERM and SIGKILL for the processes the benchmark stops itself.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Ports of the baselines' servers.
const HTTP_PORT: u16 = 8000;
const TRACKER_PORT: u16 = 6969;
const BT_PORT: u16 = 6881;
/// BitTorrent piece size: 4 MiB, as Kraken and the reference measurements use (2^22).
const PIECE_LOG2: u32 = 22;
/// The name every copy has, whatever the tool.
pub const IMAGE_NAME: &str = "image.tar";

/// A generated image, shared by every run of one size.
#[derive(Debug, Clone)]
pub struct Image {
    pub path: PathBuf,
    pub size: u64,
    /// sha256 of the file, computed by the benchmark itself.
    pub sha256: String,
}

/// Everything one run needs.
pub struct RunSpec<'a> {
    pub scenario: &'a Scenario,
    pub tool: Tool,
    pub run: u32,
    pub image: &'a Image,
    pub dfpull: &'a Path,
    /// Where this run's copies go; removed afterwards unless `keep`.
    pub work: PathBuf,
    /// Where this run's logs go; kept.
    pub logs: PathBuf,
    pub keep: bool,
}

/// Runs one tool once and returns what was measured; a failure is recorded, not raised.
pub fn run(spec: &RunSpec) -> Record {
    let mut record = Record::new(spec);
    record.load_before = load_average();
    if let Err(e) = std::fs::create_dir_all(&spec.logs) {
        record.fail(format!("creating {}: {e}", spec.logs.display()));
        return record;
    }
    // A run kept by an earlier `--keep` would hand its copies to this one as done at once.
    match std::fs::remove_dir_all(&spec.work) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            record.fail(format!("removing {}: {e}", spec.work.display()));
            return record;
        }
        _ => {}
    }
    if let Err(e) = execute(spec, &mut record) {
        record.fail(e);
    }
    record.load_after = load_average();
    if !spec.keep {
        let _ = std::fs::remove_dir_all(&spec.work);
    }
    record
}

/// The state of one peer as the polling loop sees it.
enum PeerState {
    Running,
    Done(Instant),
    Failed(String),
}

/// The lab and the paths of one run.
struct Ctx<'a> {
    spec: &'a RunSpec<'a>,
    lab: Lab,
    loopback: bool,
    peer_dirs: Vec<PathBuf>,
}

impl Ctx<'_> {
    fn peers(&self) -> usize {
        self.spec.scenario.peers
    }

    /// The host of peer `i` (0-based): its own host, or the origin's on loopback.
    fn peer_host(&self, i: usize) -> usize {
        if self.loopback { 0 } else { i + 1 }
    }

    /// The address peers use to reach the origin's servers.
    fn origin_addr(&self) -> Ipv4Addr {
        if self.loopback {
            Ipv4Addr::LOCALHOST
        } else {
            self.lab.addr(0)
        }
    }

    fn copy(&self, i: usize) -> PathBuf {
        self.peer_dirs[i].join(IMAGE_NAME)
    }

    fn log(&self, name: &str) -> Result<File, String> {
        let path = self.spec.logs.join(name);
        File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))
    }
}

/// What runs on the origin for one tool.
#[derive(Default)]
struct Origin {
    /// The process that serves the data (dfpull's seeder, the web server, the seeding aria2c).
    server: Option<Proc>,
    /// Helpers (the tracker).
    helpers: Vec<Proc>,
    /// dfpull seeder's JSON events after `serving`.
    events: Option<mpsc::Receiver<serde_json::Value>>,
    /// The torrent, for the peers.
    torrent: Option<PathBuf>,
    hook: Option<PathBuf>,
}

fn execute(spec: &RunSpec, record: &mut Record) -> Result<(), String> {
    let scenario = spec.scenario;
    let n = scenario.peers;
    let (lab_spec, loopback) = match scenario.link {
        Link::Shaped { mbit } => (LabSpec::hosts(n + 1).rate_mbit(mbit), false),
        Link::Loopback => (LabSpec::hosts(1), true),
    };
    let lab = Lab::new(&format!("bench-{}", spec.tool.key()), lab_spec);
    let peer_dirs: Vec<PathBuf> = (1..=n)
        .map(|i| spec.work.join(format!("peer-{i}")))
        .collect();
    for dir in &peer_dirs {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let ctx = Ctx {
        spec,
        lab,
        loopback,
        peer_dirs,
    };

    let mut origin = match spec.tool {
        Tool::Dfpull => dfpull_origin(&ctx)?,
        Tool::Http => http_origin(&ctx)?,
        Tool::Bt => bt_origin(&ctx)?,
    };

    // The clock starts once the origin is ready.
    let tx0 = (!loopback).then(|| ctx.lab.tx_bytes(0));
    let rx0: u64 = if loopback {
        0
    } else {
        (1..=n).map(|h| ctx.lab.rx_bytes(h)).sum()
    };
    let started = Instant::now();
    record.started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut peers = Vec::with_capacity(n);
    for i in 0..n {
        let mut command = match spec.tool {
            Tool::Dfpull => dfpull_peer(&ctx, i)?,
            Tool::Http => http_peer(&ctx, i)?,
            Tool::Bt => bt_peer(&ctx, &origin, i)?,
        };
        let (proc, _) =
            Proc::spawn(&mut command, &format!("peer {}", i + 1)).map_err(|e| e.to_string())?;
        peers.push(proc);
    }

    let deadline = started + timeout(scenario, spec.image.size);
    let mut done: Vec<Option<Instant>> = vec![None; n];
    let mut next_sample = started;
    let tx_done;
    loop {
        let now = Instant::now();
        if !loopback && now >= next_sample {
            let tx = ctx.lab.tx_bytes(0) - tx0.unwrap_or(0);
            let rx: u64 = (1..=n).map(|h| ctx.lab.rx_bytes(h)).sum::<u64>() - rx0;
            record
                .timeline
                .push([round3((now - started).as_secs_f64()), tx as f64, rx as f64]);
            next_sample += SAMPLE;
        }
        for i in 0..n {
            if done[i].is_some() {
                continue;
            }
            match peer_state(&ctx, spec.tool, i, &mut peers[i]) {
                PeerState::Running => {}
                PeerState::Done(at) => done[i] = Some(at),
                PeerState::Failed(why) => {
                    return Err(format!(
                        "peer {} failed: {why} (logs in {})",
                        i + 1,
                        spec.logs.display()
                    ));
                }
            }
        }
        if done.iter().all(Option::is_some) {
            tx_done = tx0.map(|t| ctx.lab.tx_bytes(0) - t);
            break;
        }
        if let Some(server) = origin.server.as_mut() {
            if let Some(exit) = server.poll() {
                return Err(format!(
                    "the origin's {} ended ({}) before every peer was done (logs in {})",
                    server.label,
                    exit.describe(),
                    spec.logs.display()
                ));
            }
        }
        if now >= deadline {
            let finished = done.iter().flatten().count();
            return Err(format!(
                "only {finished} of {n} peers done after {:.0} s (logs in {})",
                (now - started).as_secs_f64(),
                spec.logs.display()
            ));
        }
        thread::sleep(POLL);
    }

    let times: Vec<f64> = done
        .iter()
        .map(|d| d.expect("all done").duration_since(started).as_secs_f64())
        .collect();
    let last = times.iter().cloned().fold(0.0, f64::max);
    let last_done = started + Duration::from_secs_f64(last);
    record.peer_seconds = times.iter().map(|&t| Some(round3(t))).collect();
    record.seconds = Some(round3(last));
    if let Some(tx) = tx_done {
        record.origin_tx_bytes = Some(tx);
        record.origin_copies = Some(tx as f64 / spec.image.size as f64);
    }

    // Wind down. dfpull's processes leave by themselves once everyone is done, and how soon
    // they do is part of what is measured; the baselines' servers and aria2c (which seeds
    // forever with --seed-ratio=0.0) are stopped by the benchmark.
    let mut problems = Vec::new();
    let exits: Vec<Exit> = match spec.tool {
        Tool::Dfpull => {
            let deadline = Instant::now() + DFPULL_EXIT;
            let mut exits = Vec::new();
            for p in &mut peers {
                let left = deadline.saturating_duration_since(Instant::now());
                match p.wait_for(left) {
                    Some(exit) => exits.push(exit),
                    None => {
                        problems.push(format!(
                            "{} still ran {} s after the last peer was done",
                            p.label,
                            DFPULL_EXIT.as_secs()
                        ));
                        exits.push(p.stop(STOP_GRACE));
                    }
                }
            }
            let last_exit = exits.iter().map(|e| e.at).max().unwrap_or(last_done);
            record.exit_after_done_seconds = Some(round3(
                last_exit.saturating_duration_since(last_done).as_secs_f64(),
            ));
            exits
        }
        Tool::Http => peers.iter_mut().map(|p| p.stop(STOP_GRACE)).collect(),
        Tool::Bt => {
            for p in &mut peers {
                p.signal(libc::SIGTERM);
            }
            peers.iter_mut().map(|p| p.stop(STOP_GRACE)).collect()
        }
    };
    for (p, exit) in peers.iter().zip(&exits) {
        // aria2c seeds until stopped: SIGTERM makes it exit 7 ("unfinished downloads"), or
        // die of the signal when it arrives before its handler is set up.
        let stopped = exit.code == Some(7) || exit.signal == Some(libc::SIGTERM);
        let expected = exit.success() || (spec.tool == Tool::Bt && stopped);
        if !expected {
            problems.push(format!("{} ended with {}", p.label, exit.describe()));
        }
    }
    record.peer_max_rss_kib = exits.iter().map(|e| Some(e.max_rss_kib)).collect();
    record.peer_cpu_seconds = exits.iter().map(|e| Some(round3(e.cpu_seconds))).collect();

    if let Some(mut server) = origin.server.take() {
        let exit = if spec.tool == Tool::Dfpull {
            match server.wait_for(DFPULL_EXIT) {
                Some(exit) => exit,
                None => {
                    problems.push(format!(
                        "the seeder still ran {} s after the last peer was done (--exit-after {n})",
                        DFPULL_EXIT.as_secs()
                    ));
                    server.stop(STOP_GRACE)
                }
            }
        } else {
            server.stop(STOP_GRACE)
        };
        if spec.tool == Tool::Dfpull && !exit.success() {
            problems.push(format!("the seeder ended with {}", exit.describe()));
        }
        record.origin_max_rss_kib = Some(exit.max_rss_kib);
        record.origin_cpu_seconds = Some(round3(exit.cpu_seconds));
    }
    for mut helper in origin.helpers.drain(..) {
        helper.stop(STOP_GRACE);
    }
    if let Some(events) = origin.events.take() {
        record.origin_reported_upload_bytes = events
            .try_iter()
            .find(|v| v["event"] == "seeded")
            .and_then(|v| v["bytes_uploaded"].as_u64());
    }
    if spec.tool == Tool::Dfpull {
        record.peer_uploaded_bytes = (1..=n)
            .map(|i| {
                transfer_event(&spec.logs.join(format!("peer-{i}.json")))
                    .and_then(|v| v["bytes_uploaded"].as_u64())
            })
            .collect();
    }

    // Every copy byte for byte.
    let hashes = hash_files(&(0..n).map(|i| ctx.copy(i)).collect::<Vec<_>>());
    let mut verified = true;
    for (i, h) in hashes.iter().enumerate() {
        match h {
            Ok(h) if *h == spec.image.sha256 => {}
            Ok(h) => {
                verified = false;
                problems.push(format!(
                    "peer {}'s copy has sha256 {h}, the input {}",
                    i + 1,
                    spec.image.sha256
                ));
            }
            Err(e) => {
                verified = false;
                problems.push(format!("peer {}'s copy: {e}", i + 1));
            }
        }
    }
    record.verified = Some(verified);
    if problems.is_empty() {
        record.ok = true;
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Where peer `i` stands.
fn peer_state(ctx: &Ctx, tool: Tool, i: usize, proc: &mut Proc) -> PeerState {
    let marker = match tool {
        Tool::Dfpull => Some(ctx.copy(i)),
        Tool::Bt => Some(done_marker(&ctx.copy(i))),
        Tool::Http => None,
    };
    let seen = |m: &Option<PathBuf>| m.as_ref().is_some_and(|m| m.exists());
    if seen(&marker) {
        return PeerState::Done(Instant::now());
    }
    match proc.poll() {
        None => PeerState::Running,
        Some(exit) if tool == Tool::Http && exit.success() => PeerState::Done(exit.at),
        // It may have finished between the two looks.
        Some(_) if seen(&marker) => PeerState::Done(Instant::now()),
        Some(exit) => PeerState::Failed(format!("{} ended with {}", proc.label, exit.describe())),
    }
}

/// How long a run may take: three naive fan-outs plus a minute, so a tool that is merely slow
/// still finishes, and one that hangs is failed.
fn timeout(scenario: &Scenario, size: u64) -> Duration {
    match scenario.link {
        Link::Shaped { mbit } => {
            let naive = scenario.peers as f64 * size as f64 * 8.0 / (mbit as f64 * 1e6);
            Duration::from_secs_f64(60.0 + 3.0 * naive)
        }
        Link::Loopback => Duration::from_secs(600),
    }
}

// ---- dfpull ----

fn dfpull_origin(ctx: &Ctx) -> Result<Origin, String> {
    let spec = ctx.spec;
    let mut command = ctx.lab.command(0, spec.dfpull);
    command
        .arg("--json")
        .arg("seed")
        .arg(&spec.image.path)
        .args(["--exit-after", &ctx.peers().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(ctx.log("seeder.log")?);
    let (server, stdout) = Proc::spawn(&mut command, "dfpull seed").map_err(|e| e.to_string())?;
    let stdout = stdout.expect("piped");
    let mut copy = ctx.log("seeder.json")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(copy, "{line}");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let deadline = Instant::now() + ORIGIN_READY;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(v) if v["event"] == "serving" => break,
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "the seeder did not say it was serving within {} s (see {})",
                    ORIGIN_READY.as_secs(),
                    spec.logs.join("seeder.log").display()
                ));
            }
        }
    }
    Ok(Origin {
        server: Some(server),
        events: Some(rx),
        ..Origin::default()
    })
}

fn dfpull_peer(ctx: &Ctx, i: usize) -> Result<Command, String> {
    let mut command = ctx.lab.command(ctx.peer_host(i), ctx.spec.dfpull);
    command
        .args([
            "--json",
            "peer",
            "--load",
            "none",
            "--discover-timeout",
            "30s",
        ])
        .arg("--out")
        .arg(&ctx.peer_dirs[i])
        .stdin(Stdio::null())
        .stdout(ctx.log(&format!("peer-{}.json", i + 1))?)
        .stderr(ctx.log(&format!("peer-{}.log", i + 1))?);
    Ok(command)
}

/// The `transfer` event a dfpull peer prints at the end.
fn transfer_event(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "transfer")
}

// ---- HTTP fan-out ----

fn http_origin(ctx: &Ctx) -> Result<Origin, String> {
    let dir = ctx
        .spec
        .image
        .path
        .parent()
        .expect("the image is in a directory");
    let mut command = ctx.lab.command(0, "python3");
    command
        .args(["-m", "http.server", &HTTP_PORT.to_string(), "--bind"])
        .arg(ctx.origin_addr().to_string())
        .arg("--directory")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(ctx.log("http-server.log")?)
        .stderr(Stdio::from(ctx.log("http-server.err")?));
    let (server, _) =
        Proc::spawn(&mut command, "python3 -m http.server").map_err(|e| e.to_string())?;
    if !ctx.lab.wait_listening(0, HTTP_PORT, ORIGIN_READY) {
        return Err(format!("the web server did not listen on port {HTTP_PORT}"));
    }
    Ok(Origin {
        server: Some(server),
        ..Origin::default()
    })
}

fn http_peer(ctx: &Ctx, i: usize) -> Result<Command, String> {
    let url = format!("http://{}:{HTTP_PORT}/{IMAGE_NAME}", ctx.origin_addr());
    let max_time = timeout(ctx.spec.scenario, ctx.spec.image.size).as_secs();
    let mut command = ctx.lab.command(ctx.peer_host(i), "curl");
    command
        .args(["--silent", "--show-error", "--fail", "--max-time"])
        .arg(max_time.to_string())
        .arg("--output")
        .arg(ctx.copy(i))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(ctx.log(&format!("peer-{}.log", i + 1))?);
    Ok(command)
}

// ---- BitTorrent ----

/// aria2c settings for an isolated LAN: no DHT, no local peer discovery, seed forever (the
/// benchmark stops it), no preallocation, IPv4 only, quiet.
const ARIA2_COMMON: &[&str] = &[
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--seed-ratio=0.0",
    "--file-allocation=none",
    "--disable-ipv6=true",
    "--summary-interval=0",
    "--console-log-level=warn",
    "--download-result=hide",
    "--allow-overwrite=true",
    "--auto-file-renaming=false",
];

fn done_marker(copy: &Path) -> PathBuf {
    let mut name = copy.as_os_str().to_owned();
    name.push(".done");
    PathBuf::from(name)
}

fn bt_origin(ctx: &Ctx) -> Result<Origin, String> {
    let spec = ctx.spec;
    let bt_dir = spec.work.join("bt");
    std::fs::create_dir_all(&bt_dir).map_err(|e| format!("creating {}: {e}", bt_dir.display()))?;
    let addr = ctx.origin_addr();

    // The torrent names the tracker by address, which depends on the lab: made per run.
    let torrent = bt_dir.join("image.torrent");
    let announce = format!("http://{addr}:{TRACKER_PORT}/announce");
    run_quiet(
        Command::new("mktorrent")
            .args(["--no-date", "--piece-length", &PIECE_LOG2.to_string()])
            .args(["--announce", &announce, "--output"])
            .arg(&torrent)
            .arg(&spec.image.path),
    )?;
    let shown = run_quiet(Command::new("aria2c").arg("--show-files").arg(&torrent))?;
    let info_hash = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("Info Hash: "))
        .map(|h| h.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("no info hash in `aria2c --show-files` output:\n{shown}"))?;

    // Debian's opentracker only tracks whitelisted torrents; it reads the whitelist after
    // changing directory, so the path must be absolute.
    let whitelist = std::path::absolute(bt_dir.join("whitelist"))
        .map_err(|e| format!("the whitelist's path: {e}"))?;
    std::fs::write(&whitelist, format!("{info_hash}\n"))
        .map_err(|e| format!("writing the whitelist: {e}"))?;
    let mut tracker = ctx.lab.command(0, "opentracker");
    tracker
        .arg("-i")
        .arg(addr.to_string())
        .args([
            "-p",
            &TRACKER_PORT.to_string(),
            "-P",
            &TRACKER_PORT.to_string(),
        ])
        .arg("-w")
        .arg(&whitelist)
        .stdin(Stdio::null())
        .stdout(ctx.log("opentracker.log")?)
        .stderr(ctx.log("opentracker.err")?);
    let (tracker, _) = Proc::spawn(&mut tracker, "opentracker").map_err(|e| e.to_string())?;
    let mut helpers = vec![tracker];
    if !ctx.lab.wait_listening(0, TRACKER_PORT, ORIGIN_READY) {
        return Err(format!("opentracker did not listen on port {TRACKER_PORT}"));
    }

    let image_dir = spec
        .image
        .path
        .parent()
        .expect("the image is in a directory");
    let mut seeder = ctx.lab.command(0, "aria2c");
    seeder
        .args(ARIA2_COMMON)
        .args(["--bt-seed-unverified=true", "--check-integrity=false"])
        .arg(format!("--listen-port={BT_PORT}"))
        .arg("--dir")
        .arg(image_dir)
        .arg(&torrent)
        .stdin(Stdio::null())
        .stdout(ctx.log("origin-aria2c.log")?)
        .stderr(Stdio::from(ctx.log("origin-aria2c.err")?));
    let (mut server, _) = Proc::spawn(&mut seeder, "origin aria2c").map_err(|e| e.to_string())?;
    // Ready once the tracker counts it as a seeder, so the first announce of every peer
    // already lists it.
    let deadline = Instant::now() + ORIGIN_READY;
    loop {
        if scrape_complete(ctx, addr, &info_hash).unwrap_or(0) >= 1 {
            break;
        }
        if let Some(exit) = server.poll() {
            return Err(format!(
                "the origin's aria2c ended with {}",
                exit.describe()
            ));
        }
        if Instant::now() >= deadline {
            for h in &mut helpers {
                h.stop(STOP_GRACE);
            }
            return Err("the tracker never listed the origin as a seeder".into());
        }
        thread::sleep(Duration::from_millis(100));
    }

    let hook = bt_dir.join("done-hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\n# $3: path of the downloaded file\n: > \"$3.done\"\n",
    )
    .map_err(|e| format!("writing the hook: {e}"))?;
    set_executable(&hook)?;
    Ok(Origin {
        server: Some(server),
        helpers,
        torrent: Some(torrent),
        hook: Some(hook),
        ..Origin::default()
    })
}

fn bt_peer(ctx: &Ctx, origin: &Origin, i: usize) -> Result<Command, String> {
    let mut command = ctx.lab.command(ctx.peer_host(i), "aria2c");
    command
        .args(ARIA2_COMMON)
        .arg(format!("--listen-port={BT_PORT}"))
        .arg(format!(
            "--on-bt-download-complete={}",
            origin.hook.as_ref().expect("hook").display()
        ))
        .arg("--dir")
        .arg(&ctx.peer_dirs[i])
        .arg(origin.torrent.as_ref().expect("torrent"))
        .stdin(Stdio::null())
        .stdout(ctx.log(&format!("peer-{}.log", i + 1))?)
        .stderr(Stdio::from(ctx.log(&format!("peer-{}.err", i + 1))?));
    Ok(command)
}

/// Seeders the tracker counts for the torrent, from its scrape answer (bencoded:
/// `...8:completei<N>e...`), asked from inside the origin's host.
fn scrape_complete(ctx: &Ctx, addr: Ipv4Addr, info_hash: &str) -> Option<u64> {
    let escaped: String = (0..info_hash.len() / 2)
        .map(|i| format!("%{}", &info_hash[2 * i..2 * i + 2]))
        .collect();
    let request =
        format!("GET /scrape?info_hash={escaped} HTTP/1.0\r\nHost: {addr}:{TRACKER_PORT}\r\n\r\n");
    let answer = ctx.lab.in_host(0, move || -> std::io::Result<Vec<u8>> {
        let mut s =
            TcpStream::connect_timeout(&(addr, TRACKER_PORT).into(), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(request.as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    });
    let answer = String::from_utf8_lossy(&answer.ok()?).into_owned();
    let rest = &answer[answer.find("8:completei")? + "8:completei".len()..];
    rest[..rest.find('e')?].parse().ok()
}

// ---- helpers ----

/// Runs a command in the root namespace to completion; its stdout, or an error with stderr.
fn run_quiet(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn set_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// sha256 of each file, hex, two files at a time (the machine has two cores).
pub fn hash_files(paths: &[PathBuf]) -> Vec<Result<String, String>> {
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![None; paths.len()]);
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= paths.len() {
                        break;
                    }
                    let h = sha256_file(&paths[i]);
                    results.lock().expect("not poisoned")[i] = Some(h);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .map(|r| r.expect("every file hashed"))
        .collect()
}

pub fn sha256_file(path: &Path) -> Result<String, String> {
    use sha2::Digest as _;
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The one-minute load average, as a record of how busy the machine was.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
