//! Swarms on this host's loopback, no root needed: the demo (real processes, real mDNS), a
//! standalone coordinator reached by static addresses, what a peer says when there is nothing
//! to fetch, a peer interrupted with Ctrl-C that resumes when run again, and the bytes each
//! host uploaded as `dfpull status` reports them once a swarm is done.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/procs.rs"]
mod procs;

use procs::{Kill, free_port, run_with_timeout, wait_listening};

const EXE: &str = env!("CARGO_BIN_EXE_dfpull");

fn dfpull() -> Command {
    let mut c = Command::new(EXE);
    c.env_remove("DFPULL_JSON").stdin(Stdio::null());
    c
}

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn sha256(path: &Path) -> dfpull::image::manifest::Digest {
    dfpull::image::manifest::Digest::of(&std::fs::read(path).unwrap())
}

#[test]
fn demo_runs_a_real_swarm_and_reports_it() {
    let mut cmd = dfpull();
    cmd.args([
        "--json", "demo", "--peers", "3", "--size", "8", "--load", "none",
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(180));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let lines = json_lines(&out.stdout);
    let demo = lines
        .iter()
        .find(|v| v["event"] == "demo")
        .unwrap_or_else(|| panic!("no demo event: {lines:?}"));
    assert_eq!(demo["peers"], 3);
    assert!(demo["digest"].as_str().unwrap().starts_with("sha256:"));
    let copies = demo["origin_copies"].as_f64().unwrap();
    assert!(
        (0.99..3.0).contains(&copies),
        "origin sent {copies} copies to 3 peers"
    );
    assert!(demo["seconds"].as_f64().unwrap() > 0.0);
    let saved = lines.iter().filter(|v| v["event"] == "saved").count();
    assert_eq!(saved, 3, "every peer saved its copy: {lines:?}");
}

#[test]
fn standalone_coordinator_with_static_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    let digest = dfpull::image::synth::demo_archive(&archive, 3 << 20, "static-app:1").unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _coord = Kill(
        dfpull()
            .args([
                "coordinator",
                "--no-mdns",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seeder = dfpull();
    seeder
        .args([
            "--json",
            "seed",
            archive.to_str().unwrap(),
            "--no-mdns",
            "--coordinator",
            &url,
        ])
        .args(["--listen", "127.0.0.1:0", "--exit-after", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // The coordinator may take a moment to listen: the seeder retries by being started again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seeder = loop {
        let mut child = seeder.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let first = std::io::BufReader::new(stdout).lines().next();
        if matches!(&first, Some(Ok(l)) if l.contains("\"serving\"")) {
            break Kill(child);
        }
        let _ = child.wait();
        assert!(
            Instant::now() < deadline,
            "the seeder could not register: {first:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let peers: Vec<_> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("p{i}"));
            let mut cmd = dfpull();
            cmd.args([
                "--json",
                "peer",
                "static-app:1",
                "--coordinator",
                &url,
                "--load",
                "none",
            ])
            .args([
                "--out",
                out.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--seed-time",
                "20s",
            ]);
            (
                out,
                std::thread::spawn(move || run_with_timeout(cmd, Duration::from_secs(120))),
            )
        })
        .collect();
    for (out, t) in peers {
        let o = t.join().unwrap();
        assert!(
            o.status.success(),
            "peer failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(sha256(&out.join("app.tar")), digest);
        let lines = json_lines(&o.stdout);
        assert!(
            lines
                .iter()
                .any(|v| v["event"] == "saved" && v["digest"] == digest.to_string()),
            "{lines:?}"
        );
    }
    let status = seeder.0.wait().unwrap();
    assert!(
        status.success(),
        "the seeder exits 0 after --exit-after peers"
    );
}

#[test]
fn a_peer_names_what_the_swarm_offers_when_the_image_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    dfpull::image::synth::demo_archive(&archive, 1 << 20, "offered:1").unwrap();
    let port = free_port();
    let _seeder = Kill(
        dfpull()
            .args([
                "seed",
                archive.to_str().unwrap(),
                "--no-mdns",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("127.0.0.1:{port}");
    wait_listening(&url, Duration::from_secs(20));
    let mut cmd = dfpull();
    cmd.args([
        "peer",
        "missing:2",
        "--seed",
        &url,
        "--load",
        "none",
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("missing:2") && stderr.contains("offered:1"),
        "{stderr}"
    );
    assert!(!dir.path().join("o").join("app.tar").exists());
}

#[test]
fn no_swarm_on_the_lan_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = dfpull();
    // A swarm id nobody serves, so seeders of other tests on this host do not count.
    cmd.args([
        "peer",
        "--swarm",
        "00000000deadbeef",
        "--discover-timeout",
        "1s",
        "--load",
        "none",
    ])
    .args(["--out", dir.path().to_str().unwrap()]);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("no dfpull swarm found"), "{stderr}");
    assert_eq!(
        stderr
            .trim()
            .lines()
            .filter(|l| l.contains("error"))
            .count(),
        1,
        "one error line: {stderr}"
    );
}

/// JSON lines written so far to a file (a process's `--json` stdout).
fn events_in(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls `cond` every 50 ms until it holds; panics with `what` (and `explain()`) after
/// `timeout`.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            explain()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A seeder on 127.0.0.1 with its embedded coordinator (no mDNS), JSON lines in a file; killed
/// when dropped. Returns it, its port and its JSON file.
fn loopback_seeder(dir: &Path, archive: &Path) -> (Kill, u16, PathBuf) {
    let json = dir.join("seeder.json");
    let child = dfpull()
        .args(["--json", "seed", archive.to_str().unwrap()])
        .args(["--no-mdns", "--listen", "127.0.0.1:0"])
        .stdout(std::fs::File::create(&json).unwrap())
        .stderr(std::fs::File::create(dir.join("seeder.log")).unwrap())
        .spawn()
        .unwrap();
    let seeder = Kill(child);
    let mut port = 0;
    wait_until(
        "the seeder to serve",
        Duration::from_secs(60),
        || {
            port = events_in(&json)
                .iter()
                .find(|e| e["event"] == "serving")
                .and_then(|e| e["port"].as_u64())
                .unwrap_or(0) as u16;
            port != 0
        },
        || std::fs::read_to_string(dir.join("seeder.log")).unwrap_or_default(),
    );
    (seeder, port, json)
}

/// Sends SIGINT, as Ctrl-C does.
fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// A TCP relay from 127.0.0.2:PORT to 127.0.0.1:PORT that passes requests as they come and
/// sends the answers on at `rate` bytes per second in all, so that a transfer over loopback
/// lasts long enough to be interrupted half way. Same port, another loopback address: a
/// coordinator names its own seeder as the host of the URL the peer used with the seeder's
/// port, so block downloads go through the relay too. It stops accepting when dropped.
struct SlowRelay {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl SlowRelay {
    fn start(port: u16, rate: u64) -> SlowRelay {
        let listener = TcpListener::bind(("127.0.0.2", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // When the shared link is free again.
        let free_at = Arc::new(Mutex::new(Instant::now()));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || relay(c, s, None));
                let limit = (free_at.clone(), rate);
                std::thread::spawn(move || relay(server, client, Some(limit)));
            }
        });
        SlowRelay {
            addr: format!("127.0.0.2:{port}"),
            stop,
        }
    }
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until either end closes, at most `rate` bytes per second shared by
/// every copy with the same clock.
fn relay(mut from: TcpStream, mut to: TcpStream, limit: Option<(Arc<Mutex<Instant>>, u64)>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((free_at, rate)) = &limit {
            let until = {
                let mut free_at = free_at.lock().unwrap();
                let start = (*free_at).max(Instant::now());
                *free_at = start + Duration::from_secs_f64(n as f64 / *rate as f64);
                *free_at
            };
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[test]
fn a_peer_interrupted_with_ctrl_c_keeps_its_partial_archive_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    let digest = dfpull::image::synth::demo_archive(&archive, 24 << 20, "resume-app:1").unwrap();
    let (_seeder, port, _) = loopback_seeder(dir.path(), &archive);
    // 4 MiB/s: the 24 MiB take about 6 s through the relay.
    let relay = SlowRelay::start(port, 4 << 20);
    let out = dir.path().join("out");
    let partial = out.join(".app.tar.dfpull-partial");
    let (json, log) = (dir.path().join("first.json"), dir.path().join("first.log"));
    let mut first = Kill(
        dfpull()
            .args(["--json", "peer", "--seed", &relay.addr, "--load", "none"])
            .args(["--out", out.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .stdout(std::fs::File::create(&json).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let explain = || std::fs::read_to_string(&log).unwrap_or_default();
    // A quarter in: the Ctrl-C handler is long in place, and most of the image is missing.
    wait_until(
        "the first run to hold a quarter of the image",
        Duration::from_secs(60),
        || {
            events_in(&json).iter().any(|e| {
                e["event"] == "progress"
                    && e["done_bytes"].as_u64().unwrap() * 4 >= e["total_bytes"].as_u64().unwrap()
            })
        },
        explain,
    );
    interrupt(&first.0);
    let interrupted_at = Instant::now();
    let mut status = None;
    wait_until(
        "the interrupted peer to exit",
        Duration::from_secs(20),
        || {
            status = first.0.try_wait().unwrap();
            status.is_some()
        },
        explain,
    );
    let stderr = explain();
    assert_eq!(status.unwrap().code(), Some(130), "{stderr}");
    assert!(interrupted_at.elapsed() < Duration::from_secs(10));
    assert!(
        !out.join("app.tar").exists(),
        "the first run finished before it was interrupted: nothing was tested"
    );
    assert!(
        partial.is_file(),
        "Ctrl-C removed the partial archive: {stderr}"
    );
    let kept = events_in(&json)
        .into_iter()
        .find(|e| e["event"] == "kept")
        .unwrap_or_else(|| panic!("no `kept` event: {stderr}"));
    assert_eq!(kept["name"], "app.tar");
    assert_eq!(kept["partial"], partial.to_str().unwrap());
    let (kept_bytes, total) = (
        kept["done_bytes"].as_u64().unwrap(),
        kept["total_bytes"].as_u64().unwrap(),
    );
    assert!(0 < kept_bytes && kept_bytes < total, "{kept}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("interrupted: kept "))
        .collect();
    assert_eq!(said.len(), 1, "one line says what was kept: {stderr}");
    assert!(
        said[0].contains(" of app.tar in ")
            && said[0].contains(partial.to_str().unwrap())
            && said[0].ends_with("; run again to resume"),
        "{}",
        said[0]
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("dfpull: error: "))
            .count(),
        1,
        "{stderr}"
    );
    drop(relay);

    // Run again, straight to the seeder: it resumes from what the first run kept.
    let mut again = dfpull();
    again
        .args(["--json", "peer", "--seed", &format!("127.0.0.1:{port}")])
        .args(["--load", "none", "--seed-time", "0s"])
        .args(["--out", out.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let o = run_with_timeout(again, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the second run failed: {stderr}");
    assert!(stderr.contains("resuming: "), "{stderr}");
    let lines = json_lines(&o.stdout);
    let transfer = lines
        .iter()
        .find(|v| v["event"] == "transfer")
        .unwrap_or_else(|| panic!("no transfer event: {lines:?}"));
    let downloaded = transfer["bytes_downloaded"].as_u64().unwrap();
    // Only the blocks the first run had not verified are fetched again.
    assert!(
        downloaded <= total - kept_bytes,
        "the second run downloaded {downloaded} bytes; {kept_bytes} of {total} were kept"
    );
    assert_eq!(sha256(&out.join("app.tar")), digest);
    assert!(!partial.exists(), "the partial archive outlived the rename");
    eprintln!(
        "loopback: Ctrl-C kept {kept_bytes} of {total} bytes; the second run downloaded \
         {downloaded}"
    );
}

#[test]
fn status_of_a_finished_swarm_reports_the_bytes_each_host_uploaded() {
    const PEERS: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    let digest = dfpull::image::synth::demo_archive(&archive, 8 << 20, "uploads-app:1").unwrap();
    let (mut seeder, port, seeder_json) = loopback_seeder(dir.path(), &archive);
    let addr = format!("127.0.0.1:{port}");
    let peers: Vec<_> = (0..PEERS)
        .map(|i| {
            let out = dir.path().join(format!("p{i}"));
            let mut cmd = dfpull();
            cmd.args(["--json", "peer", "--seed", &addr, "--load", "none"])
                .args(["--out", out.to_str().unwrap(), "--listen", "127.0.0.1:0"])
                // They leave as soon as every peer is done, long before this.
                .args(["--seed-time", "60s"]);
            (
                out,
                std::thread::spawn(move || run_with_timeout(cmd, Duration::from_secs(120))),
            )
        })
        .collect();
    for (out, t) in peers {
        let o = t.join().unwrap();
        assert!(
            o.status.success(),
            "peer failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(sha256(&out.join("app.tar")), digest);
    }

    let mut cmd = dfpull();
    cmd.args(["--json", "status", "--seed", &addr]);
    let o = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let st = &lines[0];
    let bytes = st["summary"]["bytes"].as_u64().unwrap();
    assert_eq!(st["summary"]["peers_done"], PEERS, "{st}");
    let rows = st["peers"].as_array().unwrap();
    let (origin, peers): (Vec<_>, Vec<_>) = rows.iter().partition(|p| p["origin"] == true);
    assert_eq!(origin.len(), 1, "{st}");
    assert_eq!(
        peers.len() as u64,
        PEERS,
        "peers that finished and left are still listed: {st}"
    );
    assert!(peers.iter().all(|p| p["left"] == true), "{st}");
    let uploaded = |p: &serde_json::Value| p["uploaded_bytes"].as_u64().unwrap();
    let by_peers: u64 = peers.iter().map(|p| uploaded(p)).sum();
    assert!(
        peers.iter().any(|p| uploaded(p) > 0),
        "no peer uploaded anything: {st}"
    );
    // Every peer received every block once at least, and each one was served by someone.
    assert!(
        by_peers + uploaded(origin[0]) >= PEERS * bytes,
        "uploads of {by_peers} + {} bytes cannot have delivered {PEERS} x {bytes}: {st}",
        uploaded(origin[0])
    );

    // The table has them too.
    let mut cmd = dfpull();
    cmd.args(["status", "--seed", &addr]);
    let o = run_with_timeout(cmd, Duration::from_secs(60));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(table.contains(" UPLOADED"), "{table}");
    assert_eq!(table.matches("(left)").count() as u64, PEERS, "{table}");

    // The same with what the seeder itself counted as sent.
    interrupt(&seeder.0);
    let status = seeder.0.wait().unwrap();
    assert!(status.success(), "the seeder exited with {status}");
    let seeded = events_in(&seeder_json)
        .into_iter()
        .find(|e| e["event"] == "seeded")
        .expect("a seeded event");
    let by_origin = seeded["bytes_uploaded"].as_u64().unwrap();
    assert!(
        by_peers + by_origin >= PEERS * bytes,
        "uploads of {by_peers} + {by_origin} bytes cannot have delivered {PEERS} x {bytes}"
    );
    assert!(uploaded(origin[0]) <= by_origin, "{st}");
}
