//! Swarms on this host's loopback, no root needed: the demo (real processes, real mDNS), a
//! standalone coordinator reached by static addresses, and what a peer says when there is
//! nothing to fetch.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
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
