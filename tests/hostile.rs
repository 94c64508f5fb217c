//! Hostile input against a real seeder on loopback: floods of idle connections, slow-loris
//! clients, garbage and oversized requests, malformed manifests and announcements. The seeder
//! answers each with an error (never a panic), keeps serving, and legitimate peers finish.
//!
//! The attacker connects from 127.0.0.2 and the peers from 127.0.0.1 (all of 127/8 is this
//! host), as an attacker and its victims would be different hosts on a LAN.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/procs.rs"]
mod procs;

use procs::{Kill, free_port, wait_listening};

const EXE: &str = env!("CARGO_BIN_EXE_dfpull");

/// A TCP connection from 127.0.0.2.
fn attacker(to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// Sends raw bytes and returns the status line of the answer ("" if the connection closed).
fn exchange(to: SocketAddr, bytes: &[u8]) -> String {
    let mut s = attacker(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_seeder_under_attack_still_serves_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    let digest = dfpull::image::synth::demo_archive(&archive, 8 << 20, "hostile:1").unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut seeder = Kill(
        Command::new(EXE)
            .args([
                "seed",
                archive.to_str().unwrap(),
                "--no-mdns",
                "--listen",
                &format!("0.0.0.0:{port}"),
            ])
            .stderr(std::fs::File::create(dir.path().join("seeder.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_listening(&addr.to_string(), Duration::from_secs(20));

    // A few slow-loris connections (inside the per-address cap, so only the head timeout can
    // end them), then 1000 idle connections, all held open through the whole test.
    let loris_started = Instant::now();
    let loris: Vec<TcpStream> = (0..20)
        .filter_map(|_| {
            let mut s = attacker(addr).ok()?;
            s.write_all(b"GET /v1/swarms HTTP/1.1\r\nHost: x\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(loris.len(), 20);
    let mut held = Vec::new();
    for _ in 0..1000 {
        if let Ok(s) = attacker(addr) {
            held.push(s);
        }
    }

    // Garbage, oversized and malformed requests: each gets an error answer or a closed
    // connection, never a crash.
    let garbage = exchange(addr, b"\x16\x03\x01garbage that is not HTTP\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.contains(" 400"),
        "garbage: {garbage:?}"
    );
    let big_head = format!(
        "GET /v1/swarms HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let answer = exchange(addr, big_head.as_bytes());
    assert!(
        answer.is_empty() || answer.contains(" 431") || answer.contains(" 400"),
        "oversized head: {answer:?}"
    );
    let id = "0".repeat(64);
    let big_body = format!(
        "POST /v1/swarms/{id}/work HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    let answer = exchange(addr, big_body.as_bytes());
    assert!(
        answer.contains(" 413") || answer.contains(" 404") || answer.is_empty(),
        "oversized body: {answer:?}"
    );
    for (what, req) in [
        (
            "malformed manifest",
            format!(
                "PUT /v1/swarms/{id}/manifest HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{{\"version"
            ),
        ),
        (
            "manifest of another id",
            format!(
                "PUT /v1/swarms/{id}/manifest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}"
            ),
        ),
        (
            "malformed announcement",
            format!(
                "POST /v1/swarms/{id}/work HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{{\"peer\":\"zz\""
            ),
        ),
        (
            "bad swarm id",
            "GET /v1/swarms/zz/manifest HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "bad block number",
            format!("GET /v1/swarms/{id}/blocks/-1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ),
        ("truncated request", "GET /v1/swa".to_string()),
    ] {
        let answer = exchange(addr, req.as_bytes());
        assert!(
            answer.is_empty() || answer.contains(" 4"),
            "{what}: {answer:?}"
        );
    }

    // Legitimate peers from another address finish while all that is going on.
    let started = Instant::now();
    let peers: Vec<_> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("p{i}"));
            let mut cmd = Command::new(EXE);
            cmd.args([
                "peer",
                "--seed",
                &format!("127.0.0.1:{port}"),
                "--load",
                "none",
                "--seed-time",
                "1s",
            ])
            .args(["--listen", "127.0.0.1:0", "--out", out.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            (out, cmd.spawn().unwrap())
        })
        .collect();
    for (out, child) in peers {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "a peer failed under attack: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            dfpull::image::manifest::Digest::of(&std::fs::read(out.join("app.tar")).unwrap()),
            digest
        );
    }
    eprintln!(
        "peers finished in {:.2}s with {} idle and {} slow connections open",
        started.elapsed().as_secs_f64(),
        held.len(),
        loris.len()
    );
    assert!(seeder.0.try_wait().unwrap().is_none(), "the seeder died");

    // The slow-loris connections are closed by the server once the head timeout passes, not
    // before (they were accepted) and not much after.
    let mut s = loris.into_iter().next().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    let closed_after = loris_started.elapsed();
    assert!(
        n == 0 || String::from_utf8_lossy(&buf[..n]).contains(" 408"),
        "a slow-loris client was served"
    );
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(25)).contains(&closed_after),
        "a slow-loris connection was closed after {closed_after:?}, not by the head timeout"
    );
    drop(held);
    let log = std::fs::read_to_string(dir.path().join("seeder.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

/// Reads a request head (requests to these hosts carry no body that matters); false when the
/// client went away first.
fn read_request_head(s: &mut TcpStream) -> bool {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A hostile host on loopback: answers every request with `head` and then, if `endless`, a
/// chunked body that never ends (until the client hangs up). Returns its base URL.
fn hostile_host(head: &'static str, endless: bool) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                if !read_request_head(&mut s) {
                    return;
                }
                if s.write_all(head.as_bytes()).is_err() || !endless {
                    return;
                }
                let chunk = [b' '; 1 << 20];
                let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                while s.write_all(&frame).is_ok() {}
            });
        }
    });
    base
}

/// A host on loopback that answers every request with `reply`. Returns its base URL.
fn replying_host(reply: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let reply = std::sync::Arc::new(reply);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let reply = reply.clone();
            std::thread::spawn(move || {
                if read_request_head(&mut s) {
                    let _ = s.write_all(&reply);
                }
            });
        }
    });
    base
}

#[tokio::test]
async fn a_gzip_manifest_is_capped_once_inflated_and_a_bad_one_refused() {
    use dfpull::image::manifest::Digest;
    use dfpull::transport::client::{Client, ClientError, MAX_MANIFEST_BODY};

    let gzip_reply = |body: &[u8]| {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(body);
        reply
    };
    let client = Client::new();
    let swarm = Digest::of(b"any swarm");
    let invalid = |e: ClientError, what: &str| {
        assert!(
            matches!(&e, ClientError::Invalid { message, .. } if message.contains(what)),
            "{e}"
        );
    };

    // A few hundred kilobytes that inflate past the manifest cap: refused, not allocated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..(MAX_MANIFEST_BODY >> 20) + 1 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let base = replying_host(gzip_reply(&bomb));
    let e = client.manifest(&base, &swarm).await.unwrap_err();
    invalid(
        e,
        &format!("larger than {MAX_MANIFEST_BODY} bytes once inflated"),
    );

    // Bytes that are not gzip at all.
    let base = replying_host(gzip_reply(b"{\"not\": \"gzip\"}"));
    let e = client.manifest(&base, &swarm).await.unwrap_err();
    invalid(e, "bad gzip body");
}

#[tokio::test]
async fn a_hostile_host_cannot_make_a_peer_allocate_without_bound() {
    use dfpull::image::manifest::Digest;
    use dfpull::transport::client::{Client, ClientError, MAX_MANIFEST_BODY, MAX_REPLY_BODY};

    let client = Client::new();
    let swarm = Digest::of(b"any swarm");
    let deadline = Duration::from_secs(60);
    let chunked = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                   transfer-encoding: chunked\r\n\r\n";
    let too_large = |e: &ClientError, max: usize| {
        assert!(
            matches!(e, ClientError::Invalid { message, .. }
                if message.contains(&format!("larger than {max} bytes"))),
            "{e}"
        );
    };

    // An endless manifest, status and work reply: each read stops at its cap.
    let endless = hostile_host(chunked, true);
    let e = tokio::time::timeout(deadline, client.manifest(&endless, &swarm))
        .await
        .expect("the manifest read stops")
        .unwrap_err();
    too_large(&e, MAX_MANIFEST_BODY);
    let e = tokio::time::timeout(deadline, client.status(&endless, &swarm))
        .await
        .expect("the status read stops")
        .unwrap_err();
    too_large(&e, MAX_REPLY_BODY);
    let e = tokio::time::timeout(deadline, client.list_swarms(&endless))
        .await
        .expect("the swarm list read stops")
        .unwrap_err();
    too_large(&e, MAX_REPLY_BODY);

    // A manifest announced as a terabyte is refused before any of it is read.
    let announced = hostile_host(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
         content-length: 1099511627776\r\n\r\n",
        false,
    );
    let e = tokio::time::timeout(deadline, client.manifest(&announced, &swarm))
        .await
        .expect("the manifest read stops")
        .unwrap_err();
    too_large(&e, MAX_MANIFEST_BODY);

    // An endless block is cut just past its length, so the store's length check refuses it.
    let url = format!("{endless}/v1/swarms/{}/blocks/0", swarm.hex());
    let mut got = 0;
    tokio::time::timeout(deadline, client.block(&url, 1000, |c| got += c.len()))
        .await
        .expect("the block read stops")
        .unwrap();
    assert_eq!(got, 1001);
}
