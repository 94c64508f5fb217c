//! Faults in real swarms: network namespaces on one bridge, 100 Mbit/s links, one `dfpull`
//! process per host, discovery by mDNS (no address is given to any peer). Each test injects one
//! fault mid-transfer and ends with every surviving peer holding an archive byte-identical to
//! the seeder's input, or with the faulty peer failing with the documented error and exit code.
//!
//! The tests take turns (a process-wide lock): they share two cores, and a swarm starved of CPU
//! by its neighbours could trip the very time-outs (failover after 3 s of silence, a host
//! dropped after 6 s) whose effects they check. Each has an overall deadline; processes are
//! killed and the lab removed however a test ends.
//!
//! Without root (no lab) every test says SKIPPED on stderr, or fails when
//! `DFPULL_REQUIRE_NETNS=1`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::lab::{Lab, LabSpec};
use dfpull::image::manifest::{BlockIdx, BlockTable, Digest, SwarmManifest};
use dfpull::swarm::bitset::BitSet;
use dfpull::swarm::scheduler::PeerId;
use dfpull::transport::wire::{self, JoinInfo, SwarmStatus, WorkRequest};
use serde_json::Value;

const RATE_MBIT: u32 = 100;
/// No test may run longer than this, whatever goes wrong.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);
const ARCHIVE: &str = "app.tar";
const SEED_PORT: u16 = 7000;

static TURN: Mutex<()> = Mutex::new(());

/// One `dfpull` process in a lab host, its stdout (JSON lines) and stderr kept in files.
struct Proc {
    label: String,
    host: usize,
    child: Child,
    status: Option<ExitStatus>,
    json: PathBuf,
    log: PathBuf,
    /// A peer's `--out`.
    out: Option<PathBuf>,
}

impl Proc {
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.json)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn last_event(&self, name: &str) -> Option<Value> {
        self.events().into_iter().rev().find(|e| e["event"] == name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fraction of its archive a peer holds, as it last reported.
    fn progress(&self) -> f64 {
        for e in self.events().iter().rev() {
            match e["event"].as_str() {
                Some("saved") => return 1.0,
                Some("progress") => {
                    let done = e["done_bytes"].as_f64().unwrap_or(0.0);
                    let total = e["total_bytes"].as_f64().unwrap_or(1.0).max(1.0);
                    return done / total;
                }
                _ => {}
            }
        }
        0.0
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// SIGKILL (`ip netns exec` execs dfpull, so the child is dfpull itself).
    fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().expect("wait"));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A lab, an archive, and the processes of one test.
struct Swarm {
    // Dropped in this order: processes, lab, files, then the turn.
    procs: Vec<Proc>,
    lab: Lab,
    dir: tempfile::TempDir,
    archive: PathBuf,
    size: u64,
    want: Digest,
    started: Instant,
    deadline: Instant,
    _turn: MutexGuard<'static, ()>,
}

impl Swarm {
    /// `hosts` hosts on 100 Mbit/s links and a generated image of `mb` MiB; `None` (after a loud
    /// SKIPPED line) when namespaces are unavailable.
    fn new(test: &str, hosts: usize, mb: u64) -> Option<Swarm> {
        if !Lab::require_or_skip(test) {
            return None;
        }
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join(ARCHIVE);
        let want =
            dfpull::image::synth::demo_archive(&archive, mb << 20, "dfpull-faults:1").unwrap();
        let size = std::fs::metadata(&archive).unwrap().len();
        let lab = Lab::new(test, LabSpec::hosts(hosts).rate_mbit(RATE_MBIT));
        let started = Instant::now();
        Some(Swarm {
            procs: Vec::new(),
            lab,
            dir,
            archive,
            size,
            want,
            started,
            deadline: started + TEST_TIMEOUT,
            _turn: turn,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&mut self, host: usize, label: &str, args: &[&str], out: Option<PathBuf>) -> usize {
        let json = self.path(&format!("{label}.json"));
        let log = self.path(&format!("{label}.log"));
        let child = self
            .lab
            .command(host, env!("CARGO_BIN_EXE_dfpull"))
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&json).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {label}: {e}"));
        self.procs.push(Proc {
            label: label.to_string(),
            host,
            child,
            status: None,
            json,
            log,
            out,
        });
        self.procs.len() - 1
    }

    /// Starts a seeder on `host` (port [`SEED_PORT`]) and waits until it serves. Returns its
    /// index and the swarm id.
    fn seeder(&mut self, host: usize, extra: &[&str]) -> (usize, Digest) {
        let archive = self.archive.to_str().unwrap().to_string();
        let listen = format!("0.0.0.0:{SEED_PORT}");
        let mut args = vec!["seed", &archive, "--listen", &listen];
        args.extend_from_slice(extra);
        let s = self.spawn(host, "seeder", &args, None);
        self.wait_for("the seeder to serve", |sw| {
            sw.procs[s].last_event("serving").is_some()
        });
        let serving = self.procs[s].last_event("serving").unwrap();
        let swarm: Digest = serde_json::from_value(serving["swarm"].clone())
            .unwrap_or_else(|e| panic!("no swarm id in {serving}: {e}"));
        (s, swarm)
    }

    /// Starts a peer on `host` that writes into `out` (a fresh directory under the test's when
    /// `None`).
    fn peer(&mut self, host: usize, label: &str, out: Option<PathBuf>, extra: &[&str]) -> usize {
        let out = out.unwrap_or_else(|| self.path(label));
        let out_s = out.to_str().unwrap().to_string();
        let mut args = vec!["peer", "--out", &out_s, "--load", "none"];
        args.extend_from_slice(extra);
        self.spawn(host, label, &args, Some(out))
    }

    /// Polls `cond` every 50 ms until it holds; panics with every log at the deadline.
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&mut Swarm) -> bool) {
        loop {
            if cond(self) {
                return;
            }
            if Instant::now() >= self.deadline {
                panic!(
                    "timed out after {:?} waiting for {what}\n{}",
                    self.started.elapsed(),
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, i: usize) -> ExitStatus {
        let what = format!("{} to exit", self.procs[i].label);
        self.wait_for(&what, |sw| sw.procs[i].exited().is_some());
        self.procs[i].status.unwrap()
    }

    /// Waits for every process in `which` to exit and checks that each exited 0 with an
    /// archive identical to the input and nothing else in its output directory.
    fn expect_finished(&mut self, which: &[usize]) {
        for &i in which {
            let status = self.wait_exit(i);
            assert!(
                status.success(),
                "{} exited with {status}\n{}",
                self.procs[i].label,
                self.report()
            );
        }
        for &i in which {
            let out = self.procs[i].out.clone().expect("a peer");
            self.expect_identical(&out.join(ARCHIVE));
            let files = list_dir(&out);
            assert_eq!(
                files,
                [ARCHIVE],
                "{} left other files in {}",
                self.procs[i].label,
                out.display()
            );
        }
    }

    fn expect_identical(&self, path: &Path) {
        let got = sha256_file(path);
        assert_eq!(got, self.want, "{} differs from the input", path.display());
    }

    /// What each process did, for failure messages.
    fn report(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            let log = p.log();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            s += &format!(
                "--- {} (host {}, {:?}, progress {:.2}, saved after {}s) last log lines:\n",
                p.label,
                p.host,
                p.status,
                p.progress(),
                p.last_event("saved")
                    .map_or(Value::Null, |e| e["seconds"].clone()),
            );
            for l in tail.into_iter().rev() {
                s += l;
                s.push('\n');
            }
        }
        s
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Reshapes what `host` sends to `rate` Mbit/s (what it receives stays as built).
    fn uplink_mbit(&self, host: usize, rate: u32) {
        let burst = (u64::from(rate) * 1_000_000 / 8 / 50)
            .max(64 * 1024)
            .to_string();
        let rate = format!("{rate}mbit");
        let status = self
            .lab
            .command(host, "tc")
            .args([
                "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate,
            ])
            .args(["burst", &burst, "latency", "100ms"])
            .status()
            .expect("tc");
        assert!(status.success(), "reshaping host {host}: {status}");
    }

    /// The seeder's address as the other hosts see it.
    fn seed_addr(&self, host: usize) -> SocketAddr {
        self.lab.socket_addr(host, SEED_PORT)
    }

    fn transfer(&self, i: usize) -> Value {
        self.procs[i].last_event("transfer").unwrap_or_else(|| {
            panic!(
                "{} printed no transfer event\n{}",
                self.procs[i].label,
                self.report()
            )
        })
    }

    /// When the last of `which` saved its archive, in seconds from its own start.
    fn saved_by(&self, which: &[usize]) -> f64 {
        which
            .iter()
            .filter_map(|&i| self.procs[i].last_event("saved")?["seconds"].as_f64())
            .fold(0.0, f64::max)
    }

    /// Processes whose log says they started coordinating.
    fn successors(&self) -> Vec<String> {
        self.procs
            .iter()
            .filter(|p| p.log().contains("taking over as the swarm's coordinator"))
            .map(|p| p.label.clone())
            .collect()
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // For looking into a run that passed: every process's last log lines.
        if std::env::var_os("DFPULL_FAULTS_REPORT").is_some_and(|v| v == "1") {
            eprintln!("{}", self.report());
        }
        if std::env::var_os("DFPULL_FAULTS_KEEP").is_some_and(|v| v == "1") {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!(
                "DFPULL_FAULTS_KEEP=1: logs kept in {}",
                dir.keep().display()
            );
        }
    }
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn sha256_file(path: &Path) -> Digest {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = dfpull::image::manifest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return h.finish();
        }
        h.update(&buf[..n]);
    }
}

/// A minimal blocking HTTP/1.1 exchange (one request per connection). Must run inside a lab
/// host: the root namespace cannot reach the lab.
fn http(method: &str, addr: SocketAddr, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let err = |e: std::io::Error| format!("{method} {addr}{path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(err)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(err)?;
    s.write_all(body).map_err(err)?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(err)?;
    let split = find(&reply, b"\r\n\r\n").ok_or_else(|| format!("{path}: no reply header"))?;
    let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{path}: bad status line in {head:?}"))?;
    let mut body = reply[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(data, b"\r\n") {
        let len = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if len == 0 || data.len() < eol + 2 + len {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + len]);
        data = &data[(eol + 4 + len).min(data.len())..];
    }
    out
}

/// Starts `peers` peers on hosts `first..first + peers`, each with its own output directory.
fn start_peers(sw: &mut Swarm, first: usize, peers: usize, extra: &[&str]) -> Vec<usize> {
    (first..first + peers)
        .map(|h| sw.peer(h, &format!("peer-{h}"), None, extra))
        .collect()
}

#[test]
fn a_quarter_of_the_peers_killed_mid_transfer_the_rest_finish() {
    let Some(mut sw) = Swarm::new("faults-kill", 9, 64) else {
        return;
    };
    let (seeder, _) = sw.seeder(0, &["--exit-after", "6"]);
    let peers = start_peers(&mut sw, 1, 8, &[]);
    let victims = [peers[2], peers[5]];
    sw.wait_for("the victims to hold 30% of the image", |sw| {
        victims.iter().all(|&v| sw.procs[v].progress() >= 0.3)
    });
    let at = sw.elapsed();
    for &v in &victims {
        sw.procs[v].kill();
        let out = sw.procs[v].out.clone().unwrap();
        assert!(
            !out.join(ARCHIVE).exists(),
            "{} had already finished when it was killed",
            sw.procs[v].label
        );
    }
    let survivors: Vec<usize> = peers
        .iter()
        .copied()
        .filter(|p| !victims.contains(p))
        .collect();
    sw.expect_finished(&survivors);
    let status = sw.wait_exit(seeder);
    assert!(status.success(), "the seeder exited with {status}");
    eprintln!(
        "faults: 2 of 8 peers killed at {at:.1}s (holding >= 30%); the other 6 saved by {:.1}s \
         and exited by {:.1}s",
        sw.saved_by(&survivors),
        sw.elapsed()
    );
}

#[test]
fn the_seeder_killed_once_every_block_is_in_the_swarm_the_peers_take_over_and_finish() {
    let Some(mut sw) = Swarm::new("faults-seeder", 7, 64) else {
        return;
    };
    // A seeder with a faster uplink has handed out every block while the peers still have
    // most of the image to trade among themselves: that part needs a new coordinator.
    sw.uplink_mbit(0, 4 * RATE_MBIT);
    let (seeder, swarm) = sw.seeder(0, &[]);
    let peers = start_peers(&mut sw, 1, 6, &[]);
    // The origin hands every block to one peer before any block twice, and its `uploads` are
    // blocks a peer verified: once they reach the block count, every block is in the swarm
    // (the last few still landing; a moment later they have).
    let addr = sw.seed_addr(0);
    let path = wire::status_path(&swarm);
    let mut blocks = 0;
    sw.wait_for("the origin to upload every block once", |sw| {
        let Ok((200, body)) = sw.lab.in_host(1, || http("GET", addr, &path, b"")) else {
            return false;
        };
        let status: SwarmStatus = serde_json::from_slice(&body).unwrap();
        blocks = status.summary.blocks;
        let origin = status
            .peers
            .iter()
            .find(|p| p.origin)
            .map_or(0, |p| p.uploads);
        origin >= u64::from(blocks)
    });
    std::thread::sleep(Duration::from_millis(800));
    let pending = peers
        .iter()
        .filter(|&&p| sw.procs[p].progress() < 1.0)
        .count();
    let at = sw.elapsed();
    sw.procs[seeder].kill();
    assert!(
        pending > 0,
        "every peer had finished before the seeder was killed: nothing was tested"
    );
    sw.expect_finished(&peers);
    let successors = sw.successors();
    assert_eq!(
        successors.len(),
        1,
        "exactly one peer should have taken over coordinating, not {successors:?}\n{}",
        sw.report()
    );
    eprintln!(
        "faults: seeder (and its coordinator) killed at {at:.1}s with {pending} of 6 peers \
         still fetching ({blocks} blocks); {} took over; all saved by {:.1}s, exited by {:.1}s",
        successors[0],
        sw.saved_by(&peers),
        sw.elapsed()
    );
}

#[test]
fn a_standalone_coordinator_killed_mid_transfer_the_peers_still_finish() {
    let Some(mut sw) = Swarm::new("faults-coord", 8, 64) else {
        return;
    };
    let coordinator = sw.spawn(
        0,
        "coordinator",
        &["coordinator", "--listen", "0.0.0.0:7341"],
        None,
    );
    assert!(
        sw.lab.wait_listening(0, 7341, Duration::from_secs(30)),
        "the coordinator does not listen\n{}",
        sw.report()
    );
    let url = format!("http://{}", sw.lab.socket_addr(0, 7341));
    let (seeder, _) = sw.seeder(1, &["--coordinator", &url]);
    // Peers started before the seeder registered would find a coordinator without a swarm.
    let coord = sw.lab.socket_addr(0, 7341);
    sw.wait_for("the seeder to register with the coordinator", |sw| {
        sw.lab
            .in_host(1, || http("GET", coord, &wire::swarms_path(), b""))
            .is_ok_and(|(status, body)| {
                status == 200 && String::from_utf8_lossy(&body).contains(ARCHIVE)
            })
    });
    let peers = start_peers(&mut sw, 2, 6, &[]);
    sw.wait_for("the peers to hold 25% of the image on average", |sw| {
        peers.iter().map(|&p| sw.procs[p].progress()).sum::<f64>() / 6.0 >= 0.25
    });
    let at = sw.elapsed();
    sw.procs[coordinator].kill();
    sw.expect_finished(&peers);
    let successors = sw.successors();
    assert_eq!(
        successors.len(),
        1,
        "successors: {successors:?}\n{}",
        sw.report()
    );
    assert!(
        sw.procs[seeder].log().contains("the coordinator moved to"),
        "the seeder never re-registered with the successor\n{}",
        sw.report()
    );
    eprintln!(
        "faults: standalone coordinator killed at {at:.1}s; {} took over, the seeder followed; \
         all 6 peers saved by {:.1}s, exited by {:.1}s",
        successors[0],
        sw.saved_by(&peers),
        sw.elapsed()
    );
}

#[test]
fn blocks_damaged_on_a_peers_disk_are_never_served_and_the_peer_repairs_them() {
    let Some(mut sw) = Swarm::new("faults-damage", 6, 64) else {
        return;
    };
    let (seeder, _) = sw.seeder(0, &["--exit-after", "5"]);
    let peers = start_peers(&mut sw, 1, 5, &[]);
    let victim = peers[0];
    sw.wait_for("the victim to hold 40% of the image", |sw| {
        sw.procs[victim].progress() >= 0.4
    });
    let partial = sw.procs[victim]
        .out
        .clone()
        .unwrap()
        .join(format!(".{ARCHIVE}.dfpull-partial"));
    // 32 small holes spread over the file: many land in blocks it holds and serves.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap_or_else(|e| panic!("{}: {e}", partial.display()));
    for i in 0..32u64 {
        let at = i * (sw.size / 32) + 4099;
        std::os::unix::fs::FileExt::write_all_at(&f, &[0x5a; 700], at).unwrap();
    }
    drop(f);
    let at = sw.elapsed();
    sw.expect_finished(&peers);
    let log = sw.procs[victim].log();
    assert!(
        log.contains("damaged on disk") || log.contains("did not verify whole"),
        "the damaged peer never noticed\n{}",
        sw.report()
    );
    for &p in &peers {
        let corrupt = sw.transfer(p)["corrupt_blocks"].as_u64().unwrap();
        assert_eq!(
            corrupt, 0,
            "{} received a corrupt block: a damaged block was served",
            sw.procs[p].label
        );
    }
    assert!(sw.wait_exit(seeder).success());
    let dropped_serving = log.matches("damaged on disk").count();
    let repairs = log.matches("did not verify whole").count();
    eprintln!(
        "faults: 32 holes punched in a peer's partial archive at {at:.1}s; {dropped_serving} \
         blocks caught when served, {repairs} whole-file repairs; no receiver saw a bad block; \
         all finished by {:.1}s",
        sw.elapsed()
    );
}

/// A peer that lies: it tells the coordinator it holds every block and answers every block
/// request with garbage of the right length.
struct Liar {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Liar {
    fn start(lab: &Lab, host: usize, coordinator: SocketAddr, swarm: Digest) -> Liar {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (m_stop, m_served) = (stop.clone(), served.clone());
        let threads = lab.in_host(host, move || {
            let (status, body) =
                http("GET", coordinator, &wire::manifest_path(&swarm), b"").unwrap();
            assert_eq!(status, 200, "manifest: {}", String::from_utf8_lossy(&body));
            let manifest: SwarmManifest = serde_json::from_slice(&body).unwrap();
            let table = Arc::new(BlockTable::new(&manifest));
            let listener = TcpListener::bind("0.0.0.0:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let (stop, served) = (m_stop.clone(), m_served.clone());
            let serve_table = table.clone();
            let server = std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (table, served) = (serve_table.clone(), served.clone());
                            std::thread::spawn(move || serve_garbage(conn, &table, &served));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            let stop = m_stop.clone();
            let n = table.len() as usize;
            let check_in = std::thread::spawn(move || {
                let req = WorkRequest {
                    peer: PeerId(u64::MAX - 7),
                    port,
                    join: Some(JoinInfo {
                        wants: BitSet::new(n),
                        has: BitSet::full(n),
                        origin: false,
                        name: "liar".into(),
                    }),
                    completed: vec![],
                    failed: vec![],
                    slots: 0,
                    in_flight: 0,
                    leaving: false,
                    want_roster: false,
                    uploaded_bytes: None,
                };
                let body = serde_json::to_vec(&req).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let _ = http("POST", coordinator, &wire::work_path(&swarm), &body);
                    std::thread::sleep(Duration::from_millis(1000));
                }
            });
            vec![server, check_in]
        });
        Liar {
            stop,
            served,
            threads,
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_garbage(mut conn: TcpStream, table: &BlockTable, served: &AtomicU64) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 2048];
    while find(&req, b"\r\n\r\n").is_none() {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let block = path
        .rsplit_once("/blocks/")
        .and_then(|(_, n)| n.parse::<u32>().ok())
        .filter(|&b| b < table.len());
    let Some(block) = block else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let len = table.get(BlockIdx(block)).len as usize;
    let garbage: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3])
        .collect();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    );
    if conn.write_all(head.as_bytes()).is_ok() && conn.write_all(&garbage).is_ok() {
        served.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_lying_peer_is_caught_and_avoided_and_nothing_corrupt_is_saved() {
    let Some(mut sw) = Swarm::new("faults-liar", 7, 64) else {
        return;
    };
    let (_seeder, swarm) = sw.seeder(0, &[]);
    let liar = Liar::start(&sw.lab, 1, sw.seed_addr(0), swarm);
    // The liar is known (and claims every block) before the first peer asks for work.
    let addr = sw.seed_addr(0);
    sw.wait_for("the liar to join", |sw| {
        sw.lab
            .in_host(2, || http("GET", addr, &wire::status_path(&swarm), b""))
            .is_ok_and(|(_, body)| String::from_utf8_lossy(&body).contains("\"liar\""))
    });
    let peers = start_peers(&mut sw, 2, 5, &[]);
    sw.expect_finished(&peers);
    let served = liar.served.load(Ordering::Relaxed);
    drop(liar);
    let corrupt: Vec<u64> = peers
        .iter()
        .map(|&p| sw.transfer(p)["corrupt_blocks"].as_u64().unwrap())
        .collect();
    let caught: u64 = corrupt.iter().sum();
    assert!(
        served > 0,
        "the liar was never asked for a block: nothing was tested"
    );
    assert!(caught > 0, "no receiver counted a corrupt block");
    // Every garbage block that reached a receiver was counted (one may be cut short when the
    // same block arrives from elsewhere first).
    assert!(
        caught <= served,
        "{caught} corrupt blocks counted, {served} served"
    );
    // Avoidance: a receiver that caught the liar is never sent there again, and two such
    // receivers ban it for everyone; so only what was assigned before those reports arrived
    // (a few download slots' worth per receiver) can have been fetched from it.
    for (&p, &c) in peers.iter().zip(&corrupt) {
        assert!(
            c <= 12,
            "{} fetched {c} blocks from the liar: it was not avoided",
            sw.procs[p].label
        );
    }
    assert!(
        served <= 40,
        "the liar served {served} blocks: it was not avoided"
    );
    eprintln!(
        "faults: a lying peer served {served} garbage blocks; receivers caught {caught} \
         ({corrupt:?}), fetched them elsewhere and all finished by {:.1}s",
        sw.elapsed()
    );
}

#[test]
fn a_peer_restarted_mid_download_resumes_from_its_verified_blocks() {
    let Some(mut sw) = Swarm::new("faults-resume", 5, 64) else {
        return;
    };
    let (seeder, _) = sw.seeder(0, &["--exit-after", "4"]);
    let peers = start_peers(&mut sw, 1, 4, &[]);
    let victim = peers[0];
    sw.wait_for("the victim to hold half of the image", |sw| {
        sw.procs[victim].progress() >= 0.5
    });
    let held = sw.procs[victim].progress();
    sw.procs[victim].kill();
    let out = sw.procs[victim].out.clone().unwrap();
    assert!(
        !out.join(ARCHIVE).exists(),
        "the victim had already finished"
    );
    assert!(
        out.join(format!(".{ARCHIVE}.dfpull-partial")).exists(),
        "SIGKILL left no partial archive"
    );
    let again = sw.peer(1, "peer-1-again", Some(out), &[]);
    let mut everyone = peers[1..].to_vec();
    everyone.push(again);
    sw.expect_finished(&everyone);
    assert!(sw.wait_exit(seeder).success());
    let log = sw.procs[again].log();
    let resumed: u64 = log
        .split("resuming: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("the second run does not say it resumed:\n{log}"));
    let downloaded = sw.transfer(again)["bytes_downloaded"].as_u64().unwrap();
    // It held at least `held` of the image when killed; it fetches at most the rest, plus the
    // second copies of its endgame (one per download slot at most, 1 MiB blocks).
    let limit = ((1.0 - held) * sw.size as f64) as u64
        + u64::from(dfpull::swarm::peer::DOWNLOAD_SLOTS) * (1 << 20);
    assert!(
        downloaded <= limit,
        "the second run downloaded {downloaded} bytes of {}, more than the {limit} it lacked",
        sw.size
    );
    eprintln!(
        "faults: peer killed holding {:.0}% of {} MiB; the second run resumed {resumed} blocks \
         and downloaded {:.1} MiB",
        held * 100.0,
        sw.size >> 20,
        downloaded as f64 / 1048576.0
    );
}

/// A small filesystem mounted for the length of a test.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// A tmpfs of `mib` MiB: it can reserve a file's space ahead (`fallocate`).
    fn tmpfs(path: &Path, mib: u64) -> SmallDisk {
        SmallDisk::mount(
            path,
            &["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"],
        )
    }

    /// An ext2 filesystem of `mib` MiB in the file `image`, on a loop device. Files on ext2
    /// have no extents, so their space cannot be reserved ahead: the disk fills while blocks
    /// are written.
    fn ext2(path: &Path, image: &Path, mib: u64) -> SmallDisk {
        std::fs::File::create(image)
            .and_then(|f| f.set_len(mib << 20))
            .unwrap();
        let status = Command::new("mkfs.ext2")
            .args(["-q", "-F"])
            .arg(image)
            .status()
            .expect("mkfs.ext2 (e2fsprogs)");
        assert!(status.success(), "mkfs.ext2 {}: {status}", image.display());
        SmallDisk::mount(path, &["-o", "loop", image.to_str().unwrap()])
    }

    fn mount(path: &Path, args: &[&str]) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(args)
            .arg(path)
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mount {args:?} {}: {status}",
            path.display()
        );
        SmallDisk(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs a 32 MiB swarm in which one peer writes to `disk` (8 MiB, mounted at `small`) and
/// checks that it fails with exit 7 and one line naming the file and the cause, leaves
/// nothing behind, and does not hold up the others. Returns the error line and the `progress`
/// events in which the failing peer held something.
fn a_peer_on_a_full_disk(sw: &mut Swarm, small: &Path, disk: SmallDisk) -> (String, Vec<Value>) {
    let before = list_dir(small); // ext2's lost+found
    let (seeder, _) = sw.seeder(0, &["--exit-after", "3"]);
    let peers = start_peers(sw, 1, 3, &[]);
    let full = sw.peer(4, "peer-full", Some(small.to_path_buf()), &[]);
    let status = sw.wait_exit(full);
    assert_eq!(
        status.code(),
        Some(7),
        "the peer with a full disk exited with {status}\n{}",
        sw.report()
    );
    let log = sw.procs[full].log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("dfpull: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "want one error line:\n{log}");
    assert!(
        errors[0].contains(small.to_str().unwrap()) && errors[0].contains("No space left"),
        "the error does not name the path and the cause: {}",
        errors[0]
    );
    assert_eq!(list_dir(small), before, "a full disk left files behind");
    let failed = sw.procs[full].last_event("failed");
    assert!(failed.is_some(), "no `failed` event on stdout");
    let fetched: Vec<Value> = sw.procs[full]
        .events()
        .into_iter()
        .filter(|e| e["event"] == "progress" && e["done_bytes"].as_u64() != Some(0))
        .collect();
    sw.expect_finished(&peers);
    assert!(sw.wait_exit(seeder).success());
    drop(disk);
    (errors[0].to_string(), fetched)
}

/// The peer reserves its archive's space before it fetches anything, so a disk too small for
/// it fails at once: exit 7, no block taken from the swarm, nothing left behind.
#[test]
fn a_peer_whose_disk_is_too_small_fails_at_once_with_exit_7_and_leaves_nothing_behind() {
    let Some(mut sw) = Swarm::new("faults-full", 5, 32) else {
        return;
    };
    let small = sw.path("small-disk");
    let (error, fetched) = a_peer_on_a_full_disk(&mut sw, &small, SmallDisk::tmpfs(&small, 8));
    assert!(
        fetched.is_empty(),
        "the peer fetched blocks before finding its disk too small: {fetched:?}"
    );
    let need = format!("the archive needs {:.1} MiB", sw.size as f64 / 1048576.0);
    assert!(
        error.contains(&need),
        "the error does not say how much room the archive needs ({need}): {error}"
    );
    eprintln!(
        "faults: a peer writing {} MiB into an 8 MiB tmpfs failed at once with exit 7 ({error}); \
         the 3 others finished by {:.1}s",
        sw.size >> 20,
        sw.elapsed()
    );
}

/// Where space cannot be reserved ahead (ext2), the disk fills while blocks arrive: the peer
/// still fails with exit 7 and removes its partial file.
#[test]
fn a_peer_whose_disk_fills_mid_run_fails_with_exit_7_and_leaves_nothing_behind() {
    let Some(mut sw) = Swarm::new("faults-fills", 5, 32) else {
        return;
    };
    let small = sw.path("small-disk");
    let image = sw.path("small-disk.ext2");
    let (error, fetched) =
        a_peer_on_a_full_disk(&mut sw, &small, SmallDisk::ext2(&small, &image, 8));
    assert!(
        !fetched.is_empty(),
        "the peer failed before it held anything: the disk did not fill mid-run"
    );
    let most = fetched
        .iter()
        .filter_map(|e| e["done_bytes"].as_u64())
        .max();
    eprintln!(
        "faults: a peer writing {} MiB into an 8 MiB ext2 held up to {} KiB, then failed with \
         exit 7 ({error}); the 3 others finished by {:.1}s",
        sw.size >> 20,
        most.unwrap_or(0) >> 10,
        sw.elapsed()
    );
}

#[test]
fn a_peer_cut_off_for_ten_seconds_finishes_once_back() {
    let Some(mut sw) = Swarm::new("faults-cut", 5, 64) else {
        return;
    };
    let (seeder, _) = sw.seeder(0, &["--exit-after", "4"]);
    let peers = start_peers(&mut sw, 1, 4, &[]);
    let victim = peers[1];
    let host = sw.procs[victim].host;
    sw.wait_for("the victim to hold 20% of the image", |sw| {
        sw.procs[victim].progress() >= 0.2
    });
    let held = sw.procs[victim].progress();
    sw.lab.cut(host);
    let at = sw.elapsed();
    std::thread::sleep(Duration::from_secs(10));
    sw.lab.restore(host);
    assert!(held < 1.0);
    sw.expect_finished(&peers);
    assert!(sw.wait_exit(seeder).success());
    // The coordinator never went away: a peer that was merely cut off must not have started
    // a coordinator of its own.
    assert_eq!(sw.successors(), Vec::<String>::new(), "{}", sw.report());
    eprintln!(
        "faults: a peer holding {:.0}% was cut off at {at:.1}s for 10 s; it saved after {:.1}s, \
         everyone exited by {:.1}s",
        held * 100.0,
        sw.saved_by(&[victim]),
        sw.elapsed()
    );
}
