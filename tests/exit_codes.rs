//! Every documented exit code (`dfpull::exit`) that a cheap, local situation produces, through
//! the real binary: success, usage, bad input, nothing found, transfer, load and output
//! failures, and Ctrl-C. Swarms here are a real seeder on loopback without mDNS (or a fake
//! coordinator that cannot hand out its manifest); the loader that fails is a `docker` script
//! that exits 1, found first on `PATH`.
//!
//! Not covered: 1 (internal error) has no cheap trigger by design.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dfpull::exit::Exit;

/// How long any one dfpull run in these tests may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A `dfpull` command with a clean environment: no `DFPULL_*` from the caller, no config file.
fn dfpull(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfpull"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DFPULL_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs to completion, killing it after [`RUN_TIMEOUT`].
fn run(mut cmd: Command) -> Output {
    let child = cmd.spawn().expect("start dfpull");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(out) => out.expect("wait for dfpull"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("dfpull did not finish within {RUN_TIMEOUT:?}");
        }
    }
}

/// Asserts the exit code and that the failure, if any, was explained on one stderr line.
fn assert_exit(out: &Output, want: Exit, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(want.code())),
        "{what}: expected {want:?}; stderr:\n{stderr}"
    );
    if want != Exit::Success {
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("dfpull: error: ") || l.starts_with("error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{what}: one error line expected:\n{stderr}"
        );
    }
}

fn archive(dir: &Path) -> PathBuf {
    let path = dir.join("app.tar");
    dfpull::image::synth::demo_archive(&path, 64 << 10, "dfpull-exit-test:1").unwrap();
    path
}

/// A seeder on loopback (no mDNS), killed when dropped.
struct Seeder {
    child: Child,
    port: u16,
}

impl Seeder {
    fn start(archive: &Path) -> Seeder {
        let mut child = dfpull(&[
            "--json",
            "seed",
            archive.to_str().unwrap(),
            "--no-mdns",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("start the seeder");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // The `serving` event says the port.
        let port = stdout
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .find(|v| v["event"] == "serving")
            .and_then(|v| v["port"].as_u64())
            .expect("the seeder said which port it serves on") as u16;
        Seeder { child, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn success_is_0() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive(dir.path());
    let out = run(dfpull(&["inspect", tar.to_str().unwrap()]));
    assert_exit(&out, Exit::Success, "inspect of a good archive");
    assert!(!out.stdout.is_empty());
}

#[test]
fn usage_errors_are_2() {
    let out = run(dfpull(&["peer", "--seed-time", "soon"]));
    assert_exit(&out, Exit::Usage, "a bad flag value");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "peer:\n  out: /x\n  seed_tme: 1m\n").unwrap();
    let mut cmd = dfpull(&["peer"]);
    cmd.env("DFPULL_CONFIG", &config);
    let out = run(cmd);
    assert_exit(&out, Exit::Usage, "an unknown config key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`seed_tme`"), "{stderr}");
    assert!(stderr.contains(config.to_str().unwrap()), "{stderr}");
}

#[test]
fn a_source_that_is_not_an_archive_is_3() {
    let dir = tempfile::tempdir().unwrap();
    let not_tar = dir.path().join("notes.tar");
    std::fs::write(&not_tar, "this is not a tar archive\n".repeat(40)).unwrap();
    let out = run(dfpull(&["inspect", not_tar.to_str().unwrap()]));
    assert_exit(&out, Exit::BadInput, "inspect of a text file");
}

#[test]
fn no_swarm_on_the_network_is_4() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(dfpull(&[
        "peer",
        "--swarm",
        "00000000deadbeef",
        "--discover-timeout",
        "1s",
        "--load",
        "none",
        "--out",
        dir.path().to_str().unwrap(),
    ]));
    assert_exit(&out, Exit::NotFound, "peer with no such swarm on the LAN");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_swarm_that_cannot_deliver_is_5() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Seeder::start(&archive(dir.path()));
    // A coordinator that lists the seeder's swarm but cannot hand out its manifest.
    let list = http_get(&seeder.addr(), "/v1/swarms");
    drop(seeder);
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    std::thread::spawn(move || serve_only(fake, "/v1/swarms", list));

    let out_dir = dir.path().join("out");
    let out = run(dfpull(&[
        "peer",
        "--coordinator",
        &fake_addr,
        "--load",
        "none",
        "--seed-time",
        "0s",
        "--out",
        out_dir.to_str().unwrap(),
    ]));
    assert_exit(&out, Exit::Transfer, "peer of a swarm without a manifest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("manifest"), "{stderr}");
}

#[test]
fn a_loader_that_fails_is_6() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Seeder::start(&archive(dir.path()));
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(
        &docker,
        "#!/bin/sh\necho 'Error: this engine refuses every image' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();

    let out_dir = dir.path().join("out");
    let mut cmd = dfpull(&[
        "peer",
        "--seed",
        &seeder.addr(),
        "--load",
        "docker",
        "--seed-time",
        "0s",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    cmd.env("PATH", path);
    let out = run(cmd);
    assert_exit(&out, Exit::Load, "peer whose docker load fails");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this engine refuses every image"),
        "{stderr}"
    );
    // The archive was saved all the same: only loading failed.
    assert!(out_dir.join("app.tar").is_file(), "{stderr}");
}

#[test]
fn an_output_that_cannot_be_written_is_7() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Seeder::start(&archive(dir.path()));
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = run(dfpull(&[
        "peer",
        "--seed",
        &seeder.addr(),
        "--load",
        "none",
        "--seed-time",
        "0s",
        "--out",
        file.to_str().unwrap(),
    ]));
    assert_exit(&out, Exit::Output, "peer --out pointing at a regular file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn ctrl_c_is_130() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = dfpull(&[
        "-v",
        "peer",
        "--swarm",
        "00000000deadbeef",
        "--discover-timeout",
        "60s",
        "--load",
        "none",
        "--out",
        dir.path().to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    // Its first line (the loader choice, or a debug line) comes from inside the command, after
    // the Ctrl-C handler is in place; a signal before that would kill it instead.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "dfpull peer said nothing before exiting");
    let started = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(i32::from(Exit::Interrupted.code())),
        "{status:?}; stderr:\n{first}{rest}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        started.elapsed()
    );
}

/// The body of `GET path` from an HTTP server at `addr`.
fn http_get(addr: &str, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP reply")
        + 4;
    let head = String::from_utf8_lossy(&reply[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    reply[head_end..].to_vec()
}

/// A minimal HTTP server: `body` as JSON for `GET path`, 503 for everything else.
fn serve_only(listener: TcpListener, path: &'static str, body: Vec<u8>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            continue;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut discard = vec![0; length];
        let _ = reader.read_exact(&mut discard);
        let asked = request.split_whitespace().nth(1).unwrap_or_default();
        let reply = if request.starts_with("GET ") && asked == path {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        } else {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_vec()
        };
        let _ = conn.write_all(&reply);
    }
}
