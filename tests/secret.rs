//! Access control: with `--secret`, only hosts that know it get a manifest or a block, answers
//! from hosts that do not know it are refused, and `name@sha256:DIGEST` pins the image.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[path = "common/procs.rs"]
mod procs;

use procs::{Kill, free_port, run_with_timeout, wait_listening};

const EXE: &str = env!("CARGO_BIN_EXE_dfpull");

/// A seeder on loopback, without mDNS, with `secret` (none when empty).
fn seeder(archive: &Path, secret: &str) -> (Kill, String) {
    let port = free_port();
    let mut cmd = Command::new(EXE);
    cmd.args([
        "seed",
        archive.to_str().unwrap(),
        "--no-mdns",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .env_remove("DFPULL_SECRET")
    .stderr(Stdio::null());
    if !secret.is_empty() {
        cmd.env("DFPULL_SECRET", secret);
    }
    let child = Kill(cmd.spawn().unwrap());
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr, Duration::from_secs(20));
    (child, addr)
}

fn peer(args: &[&str], secret: &str, out: &Path) -> Output {
    let mut cmd = Command::new(EXE);
    cmd.args([
        "--json",
        "peer",
        "--load",
        "none",
        "--seed-time",
        "1s",
        "--out",
        out.to_str().unwrap(),
    ])
    .args(args)
    .env_remove("DFPULL_SECRET")
    .stdin(Stdio::null());
    if !secret.is_empty() {
        cmd.env("DFPULL_SECRET", secret);
    }
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// A raw HTTP GET with no proof of the secret: the status line and the body.
fn raw_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.lines().next().unwrap_or_default().to_string();
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[test]
fn only_holders_of_the_secret_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    let digest = dfpull::image::synth::demo_archive(&archive, 2 << 20, "secret-app:1").unwrap();
    let (_seeder, addr) = seeder(&archive, "s3cret");

    // A stranger: 401, and neither a swarm list nor a manifest nor a block.
    let (status, body) = raw_get(&addr, "/v1/swarms");
    assert!(status.contains("401"), "{status}");
    assert!(
        !body.contains("secret-app"),
        "the swarm list leaked: {body}"
    );
    let (status, _) = raw_get(&addr, &format!("/v1/swarms/{}/blocks/0", "0".repeat(64)));
    assert!(status.contains("401"), "{status}");

    // A peer without the secret, and one with the wrong one: refused, nothing saved.
    for secret in ["", "wrong"] {
        let out = dir.path().join(format!("no-{secret}"));
        let o = peer(&["--seed", &addr], secret, &out);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "secret {secret:?}: {stderr}");
        assert!(stderr.contains("secret"), "the error says why: {stderr}");
        assert!(!out.join("app.tar").exists());
    }

    // The right secret: the archive arrives intact.
    let out = dir.path().join("ok");
    let o = peer(&["--seed", &addr], "s3cret", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        dfpull::image::manifest::Digest::of(&std::fs::read(out.join("app.tar")).unwrap()),
        digest
    );
}

#[test]
fn a_spoofing_seeder_without_the_secret_cannot_make_a_peer_save_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.tar");
    dfpull::image::synth::demo_archive(&fake, 1 << 20, "secret-app:1").unwrap();
    // The spoofer offers the same image name with other content, under its own secret.
    let (_spoofer, addr) = seeder(&fake, "not-the-secret");
    let out = dir.path().join("out");
    let o = peer(&["secret-app:1", "--seed", &addr], "s3cret", &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a peer joined a swarm that does not know the secret: {stderr}"
    );
    assert!(!out.join("fake.tar").exists() && !out.join("app.tar").exists());
    assert!(
        std::fs::read_dir(&out).map_or(true, |d| d.count() == 0),
        "something was written"
    );

    // And one with no secret at all answers unsigned: refused too.
    let (_open, addr) = seeder(&fake, "");
    let o = peer(&["secret-app:1", "--seed", &addr], "s3cret", &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("not signed"), "{stderr}");
}

#[test]
fn a_pinned_digest_selects_the_image_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    dfpull::image::synth::demo_archive(&archive, 1 << 20, "pinned:1").unwrap();
    let inspect = Command::new(EXE)
        .args(["--json", "inspect", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let text = String::from_utf8_lossy(&inspect.stdout);
    // The image ID is the first image's `id` in inspect's JSON.
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let id = find_key(&v, "id").expect("inspect shows the image id");
    let (_seeder, addr) = seeder(&archive, "");

    let out = dir.path().join("ok");
    let o = peer(&[&format!("pinned@{id}"), "--seed", &addr], "", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("app.tar").exists());

    let wrong = format!("pinned@sha256:{}", "ab".repeat(32));
    let out = dir.path().join("wrong");
    let o = peer(&[&wrong, "--seed", &addr], "", &out);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.join("app.tar").exists());
}

fn find_key(v: &serde_json::Value, key: &str) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(s)) = m.get(key)
                && s.starts_with("sha256:")
            {
                return Some(s.clone());
            }
            m.values().find_map(|x| find_key(x, key))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}
