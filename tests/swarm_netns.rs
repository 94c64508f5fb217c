//! The swarm across real hosts: network namespaces on one bridge, 100 Mbit/s shaped links, one
//! `dfpull` process per host, discovery by mDNS only (no address is given to any peer).
//!
//! `DFPULL_NETNS_PEERS` (default 6) and `DFPULL_NETNS_MB` (default 64) change the scale, for
//! measuring by hand; the figures are printed either way.

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::lab::{Lab, LabSpec};

const RATE_MBIT: u32 = 100;
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sha256_file(path: &Path) -> String {
    let mut h = dfpull::image::manifest::Hasher::new();
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    h.update(&data);
    h.finish().to_string()
}

fn docker_available() -> bool {
    let ok = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("DFPULL_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("DFPULL_REQUIRE_DOCKER=1 but no Docker engine answers");
    }
    if !ok {
        eprintln!("SKIPPED (part): no Docker engine answers; no peer loads the image");
    }
    ok
}

/// Kills what is left of the processes on drop (a failing assertion mid-test).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn six_peers_over_mdns_get_identical_archives_and_the_origin_sends_about_one_copy() {
    if !Lab::require_or_skip("swarm_netns") {
        return;
    }
    let peers = env_or("DFPULL_NETNS_PEERS", 6) as usize;
    let mb = env_or("DFPULL_NETNS_MB", 64);
    let load = docker_available();
    let tag = format!("dfpull-netns-{}:latest", std::process::id());

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    dfpull::image::synth::demo_archive(&archive, mb << 20, &tag).unwrap();
    let size = std::fs::metadata(&archive).unwrap().len();
    let want = sha256_file(&archive);

    let lab = Lab::new("swarm", LabSpec::hosts(peers + 1).rate_mbit(RATE_MBIT));
    let exe = env!("CARGO_BIN_EXE_dfpull");
    let mut procs = Procs(Vec::new());

    let mut seeder = lab.command(0, exe);
    seeder
        .args([
            "--json",
            "seed",
            archive.to_str().unwrap(),
            "--exit-after",
            &peers.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("seeder.log")).unwrap());
    let mut child = seeder.spawn().expect("start the seeder");
    let stdout = child.stdout.take().unwrap();
    procs.0.push(child);
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let serving = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the seeder says it is serving");
    assert_eq!(serving["event"], "serving", "{serving}");
    let tx_before = lab.tx_bytes(0);

    let started = Instant::now();
    let outs: Vec<PathBuf> = (1..=peers)
        .map(|i| dir.path().join(format!("peer-{i}")))
        .collect();
    for (i, out) in outs.iter().enumerate() {
        let host = i + 1;
        let loader = if load && host == peers {
            "docker"
        } else {
            "none"
        };
        let mut peer = lab.command(host, exe);
        peer.args([
            "--json",
            "peer",
            "--out",
            out.to_str().unwrap(),
            "--load",
            loader,
            "--seed-time",
            "60s",
        ])
        .stdout(std::fs::File::create(dir.path().join(format!("peer-{host}.json"))).unwrap())
        .stderr(std::fs::File::create(dir.path().join(format!("peer-{host}.log"))).unwrap());
        procs.0.push(peer.spawn().expect("start a peer"));
    }

    // Every peer exits 0; note when each archive appeared under its final name.
    let deadline = started + TEST_TIMEOUT;
    let mut done_at = vec![None; peers + 1];
    loop {
        for (i, out) in outs.iter().enumerate() {
            if done_at[i + 1].is_none() && out.join("app.tar").exists() {
                done_at[i + 1] = Some(started.elapsed().as_secs_f64());
            }
        }
        let all_exited = procs.0[1..]
            .iter_mut()
            .all(|c| c.try_wait().unwrap().is_some());
        if all_exited {
            break;
        }
        if Instant::now() > deadline {
            let logs = std::fs::read_to_string(dir.path().join("peer-1.log")).unwrap_or_default();
            panic!("the swarm did not finish within {TEST_TIMEOUT:?}; peer 1 log:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (host, c) in procs.0.iter_mut().enumerate().skip(1) {
        let status = c.wait().unwrap();
        let log = std::fs::read_to_string(dir.path().join(format!("peer-{host}.log")))
            .unwrap_or_default();
        assert!(status.success(), "peer {host} exited with {status}:\n{log}");
    }
    let seeder_status = procs.0[0].wait().unwrap();
    assert!(
        seeder_status.success(),
        "the seeder exited with {seeder_status}"
    );

    // Byte-identical copies, nothing partial left behind.
    for out in &outs {
        assert_eq!(
            sha256_file(&out.join("app.tar")),
            want,
            "{} differs from the input",
            out.display()
        );
        let leftovers: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "unexpected files in {}: {leftovers:?}",
            out.display()
        );
    }

    // The origin's interface sent about one copy, not one per peer.
    let origin_sent = lab.tx_bytes(0) - tx_before;
    let copies = origin_sent as f64 / size as f64;
    let last = done_at.iter().flatten().cloned().fold(0.0, f64::max);
    let bound = size as f64 * 8.0 / (RATE_MBIT as f64 * 1e6);
    eprintln!(
        "swarm_netns: {peers} peers, {:.1} MiB at {RATE_MBIT} Mbit/s: all saved after {last:.2}s, \
         bound {bound:.2}s, ratio {:.2}; origin sent {copies:.2} copies",
        size as f64 / 1048576.0,
        last / bound
    );
    assert!(
        copies <= 1.5,
        "the origin sent {copies:.2} copies of the image"
    );

    if load {
        let out = std::process::Command::new("docker")
            .args(["image", "inspect", &tag])
            .output()
            .unwrap();
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &tag])
            .output();
        assert!(
            out.status.success(),
            "docker does not know {tag} after the peer loaded it"
        );
    }
}
