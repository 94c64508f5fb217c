//! Proves the network-namespace lab (tests/common/lab.rs) does what multi-host tests rely on:
//! hosts reach each other, links are held to their rate in both directions, multicast crosses
//! the bridge, a cut host is off the network until restored, byte counters count, processes die
//! on request, and nothing is left behind, not even by a run that crashed.

mod common;

use common::lab::{Lab, LabSpec};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(10);

/// Accepts one connection, failing after `PATIENCE` instead of hanging the test run.
fn accept(listener: &TcpListener) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return stream;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept on {:?}: {e}", listener.local_addr()),
        }
    }
}

fn connect(lab: &Lab, from: usize, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    lab.in_host(from, || TcpStream::connect_timeout(&to, timeout))
}

/// Runs every flow `(from, to)` at once, each sending `bytes`, and returns the time from the
/// first connect to the last byte read by the last receiver.
fn transfer(lab: &Lab, flows: &[(usize, usize)], bytes: usize) -> Duration {
    const PORT: u16 = 7000;
    let mut listeners = BTreeMap::new();
    for &(_, to) in flows {
        listeners.entry(to).or_insert_with(|| {
            let addr = lab.socket_addr(to, PORT);
            lab.in_host(to, || TcpListener::bind(addr))
                .unwrap_or_else(|e| panic!("bind {addr} in host {to}: {e}"))
        });
    }
    let payload = vec![0x5a_u8; bytes];
    let start = Instant::now();
    thread::scope(|scope| {
        let readers: Vec<_> = flows
            .iter()
            .map(|(_, to)| {
                let listener = &listeners[to];
                scope.spawn(move || {
                    let mut stream = accept(listener);
                    stream.set_read_timeout(Some(PATIENCE)).unwrap();
                    let mut buf = vec![0; 64 * 1024];
                    let mut total = 0;
                    loop {
                        match stream.read(&mut buf).expect("receiving") {
                            0 => return total,
                            n => total += n,
                        }
                    }
                })
            })
            .collect();
        for &(from, to) in flows {
            let payload = &payload;
            scope.spawn(move || {
                let dest = lab.socket_addr(to, PORT);
                let mut stream = connect(lab, from, dest, PATIENCE)
                    .unwrap_or_else(|e| panic!("host {from} connecting to {dest}: {e}"));
                stream.write_all(payload).expect("sending");
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown");
            });
        }
        for reader in readers {
            assert_eq!(reader.join().unwrap(), bytes, "bytes received");
        }
    });
    start.elapsed()
}

fn mbit_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e6
}

/// Waits until `child`, started with `Lab::command`, has entered `host`.
fn wait_entered(lab: &Lab, host: usize, child: &Child) {
    let deadline = Instant::now() + PATIENCE;
    while !lab.pids(host).contains(&child.id()) {
        assert!(
            Instant::now() < deadline,
            "pid {} never entered host {host}",
            child.id()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn killed_by_sigkill(child: &mut Child) -> bool {
    child.wait().expect("wait").signal() == Some(9)
}

/// Whether `pid` is gone or a zombie.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn forward_rules_for(bridge: &str) -> usize {
    let out = Command::new("iptables")
        .args(["-w", "-S", "FORWARD"])
        .output()
        .expect("iptables -S");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|rule| rule.split_whitespace().any(|word| word == bridge))
        .count()
}

fn unreachable_route_exists(subnet: Ipv4Addr) -> bool {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "type", "unreachable"])
        .output()
        .expect("ip route");
    String::from_utf8_lossy(&out.stdout).contains(&format!("{subnet}/24"))
}

#[test]
fn hosts_reach_each_other_over_tcp() {
    if !Lab::require_or_skip("hosts_reach_each_other_over_tcp") {
        return;
    }
    let lab = Lab::new("lab-tcp", LabSpec::hosts(3));
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        let port = 7200 + to as u16;
        let addr = lab.socket_addr(to, port);
        assert!(!lab.listening(to, port));
        let listener = lab.in_host(to, || TcpListener::bind(addr)).unwrap();
        assert!(lab.wait_listening(to, port, PATIENCE));
        assert!(
            !lab.listening(from, port),
            "host {from} sees the listener of host {to}: namespaces are not separate"
        );

        let mut client = connect(&lab, from, addr, PATIENCE).unwrap();
        let mut server = accept(&listener);
        let peer = server.peer_addr().unwrap();
        assert_eq!(peer.ip(), lab.addr(from), "the client's source address");

        client.write_all(b"ping").unwrap();
        let mut got = [0; 4];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        server.write_all(b"pong").unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
    }
}

#[test]
fn commands_run_inside_their_host() {
    if !Lab::require_or_skip("commands_run_inside_their_host") {
        return;
    }
    let lab = Lab::new("lab-cmd", LabSpec::hosts(2));
    for host in 0..2 {
        let out = lab
            .command(host, "ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mine = format!("{}/24", lab.addr(host));
        let other = format!("{}/24", lab.addr(1 - host));
        assert!(text.contains(&mine), "host {host} lacks {mine}: {text}");
        assert!(!text.contains(&other), "host {host} has {other}: {text}");
        assert!(
            !text.contains("docker0"),
            "host {host} sees the root namespace: {text}"
        );
    }
}

#[test]
fn shaping_limits_upload_and_download() {
    if !Lab::require_or_skip("shaping_limits_upload_and_download") {
        return;
    }
    const RATE: u32 = 20;
    let lab = Lab::new("lab-shape", LabSpec::hosts(3).rate_mbit(RATE));
    // tbf counts whole Ethernet frames; TCP payload is at most 1448 of each 1514-byte frame.
    let payload_ceiling = f64::from(RATE) * 1448.0 / 1514.0;
    // One flow is held by the sender's upload (and the receiver's download).
    let single = mbit_per_s(4_000_000, transfer(&lab, &[(0, 1)], 4_000_000));
    // Two senders, one receiver: unshaped download would let through twice the rate.
    let fan_in = mbit_per_s(4_000_000, transfer(&lab, &[(0, 1), (2, 1)], 2_000_000));
    // One sender, two receivers: unshaped upload would let out twice the rate.
    let fan_out = mbit_per_s(4_000_000, transfer(&lab, &[(1, 0), (1, 2)], 2_000_000));
    eprintln!(
        "shaped to {RATE} Mbit/s (payload ceiling {payload_ceiling:.1}): one flow \
         {single:.1} Mbit/s, two into one host {fan_in:.1}, one host to two {fan_out:.1}"
    );
    for (what, measured) in [
        ("one flow", single),
        ("fan-in", fan_in),
        ("fan-out", fan_out),
    ] {
        assert!(
            measured <= payload_ceiling * 1.1,
            "{what}: {measured:.1} Mbit/s through {RATE} Mbit/s links: shaping is not applied"
        );
        assert!(
            measured >= payload_ceiling * 0.5,
            "{what}: {measured:.1} Mbit/s, far below the {RATE} Mbit/s of the links"
        );
    }
}

#[test]
fn delay_adds_round_trip_time() {
    if !Lab::require_delay_or_skip("delay_adds_round_trip_time") {
        return;
    }
    const DELAY_MS: u32 = 25;
    let lab = Lab::new("lab-delay", LabSpec::hosts(2).delay_ms(DELAY_MS));
    let addr = lab.socket_addr(1, 7300);
    let _listener = lab.in_host(1, || TcpListener::bind(addr)).unwrap();
    // A connect takes one round trip: SYN delayed leaving host 0, SYN-ACK leaving host 1.
    let rtt = (0..3)
        .map(|_| {
            let start = Instant::now();
            connect(&lab, 0, addr, PATIENCE).unwrap();
            start.elapsed()
        })
        .min()
        .unwrap();
    let expected = Duration::from_millis(2 * u64::from(DELAY_MS));
    eprintln!("delay {DELAY_MS} ms each way: connect took {rtt:?}");
    assert!(rtt >= expected.mul_f64(0.9), "{rtt:?} < {expected:?}");
    assert!(
        rtt < expected + Duration::from_millis(100),
        "{rtt:?} >> {expected:?}"
    );
}

#[test]
fn multicast_reaches_every_other_host() {
    if !Lab::require_or_skip("multicast_reaches_every_other_host") {
        return;
    }
    let lab = Lab::new("lab-mcast", LabSpec::hosts(4));
    // The mDNS group (link-local) and an administratively scoped one.
    for group in [
        Ipv4Addr::new(224, 0, 0, 251),
        Ipv4Addr::new(239, 255, 70, 80),
    ] {
        let receivers: Vec<UdpSocket> = (1..lab.hosts())
            .map(|host| {
                let local = lab.addr(host);
                lab.in_host(host, || {
                    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5353))?;
                    socket.join_multicast_v4(&group, &local)?;
                    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
                    io::Result::Ok(socket)
                })
                .unwrap()
            })
            .collect();
        let sender_addr = lab.addr(0);
        let sender = lab
            .in_host(0, || UdpSocket::bind((sender_addr, 0)))
            .unwrap();
        let message = format!("dfpull lab {}", std::process::id());
        let mut heard: Vec<Option<SocketAddr>> = vec![None; receivers.len()];
        let mut buf = [0; 256];
        // UDP may lose the first datagram while neighbours resolve: retry a few times.
        for _ in 0..40 {
            sender.send_to(message.as_bytes(), (group, 5353)).unwrap();
            for (socket, heard) in receivers.iter().zip(&mut heard) {
                while heard.is_none() {
                    match socket.recv_from(&mut buf) {
                        Ok((n, from)) if &buf[..n] == message.as_bytes() => *heard = Some(from),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            if heard.iter().all(Option::is_some) {
                break;
            }
        }
        for (host, from) in (1..).zip(&heard) {
            let from = from.unwrap_or_else(|| panic!("host {host} never heard {group}"));
            assert_eq!(from.ip(), sender_addr, "source seen by host {host}");
        }
    }
}

#[test]
fn cut_takes_a_host_off_the_network_until_restored() {
    if !Lab::require_or_skip("cut_takes_a_host_off_the_network_until_restored") {
        return;
    }
    let lab = Lab::new("lab-cut", LabSpec::hosts(2));
    let (addr0, addr1) = (lab.socket_addr(0, 7400), lab.socket_addr(1, 7400));
    let _listener0 = lab.in_host(0, || TcpListener::bind(addr0)).unwrap();
    let listener1 = lab.in_host(1, || TcpListener::bind(addr1)).unwrap();
    let short = Duration::from_millis(700);

    let mut client = connect(&lab, 0, addr1, PATIENCE).expect("connect before the cut");
    let mut server = accept(&listener1);

    lab.cut(1);
    let cut_at = Instant::now();
    let link = lab
        .command(1, "ip")
        .args(["-o", "link", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains(" state UP "),
        "a cut host keeps its link: {link}"
    );
    assert!(
        connect(&lab, 0, addr1, short).is_err(),
        "reached a cut host"
    );
    assert!(
        connect(&lab, 1, addr0, short).is_err(),
        "a cut host reached out"
    );
    // Sent into the void; TCP keeps it and retransmits after the restore.
    client.write_all(b"sent while cut").unwrap();

    lab.restore(1);
    let restored_at = Instant::now();
    let deadline = restored_at + PATIENCE;
    while let Err(e) = connect(&lab, 0, addr1, short) {
        assert!(
            Instant::now() < deadline,
            "still unreachable after restore: {e}"
        );
    }
    let reconnected = restored_at.elapsed();
    server.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = [0; 14];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"sent while cut");
    eprintln!(
        "cut for {:?}; new connection {reconnected:?} after restore; data sent during the \
         cut arrived {:?} after restore",
        restored_at - cut_at,
        restored_at.elapsed()
    );
}

#[test]
fn byte_counters_follow_traffic() {
    if !Lab::require_or_skip("byte_counters_follow_traffic") {
        return;
    }
    const BYTES: usize = 4_000_000;
    let lab = Lab::new("lab-bytes", LabSpec::hosts(3));
    let counters = |lab: &Lab| -> Vec<(u64, u64)> {
        (0..lab.hosts())
            .map(|host| (lab.tx_bytes(host), lab.rx_bytes(host)))
            .collect()
    };
    let before = counters(&lab);
    transfer(&lab, &[(0, 1)], BYTES);
    let after = counters(&lab);
    let delta: Vec<(u64, u64)> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1))
        .collect();
    eprintln!("sent {BYTES} bytes host 0 -> host 1; (tx, rx) per host: {delta:?}");
    let payload = BYTES as u64;
    let (tx0, rx0) = delta[0];
    let (tx1, rx1) = delta[1];
    let (tx2, rx2) = delta[2];
    assert!(
        (payload..payload * 11 / 10).contains(&tx0),
        "sender tx {tx0}"
    );
    assert!(
        (payload..payload * 11 / 10).contains(&rx1),
        "receiver rx {rx1}"
    );
    assert!(rx0 < payload / 10, "sender rx (acks) {rx0}");
    assert!(tx1 < payload / 10, "receiver tx (acks) {tx1}");
    assert!(
        tx2 < 64 * 1024 && rx2 < 64 * 1024,
        "bystander ({tx2}, {rx2})"
    );
}

#[test]
fn kill_all_ends_the_processes_of_one_host_only() {
    if !Lab::require_or_skip("kill_all_ends_the_processes_of_one_host_only") {
        return;
    }
    let lab = Lab::new("lab-kill", LabSpec::hosts(2));
    let sleep = |host| {
        let child = lab.command(host, "sleep").arg("600").spawn().unwrap();
        wait_entered(&lab, host, &child);
        child
    };
    let mut doomed = [sleep(1), sleep(1)];
    let mut bystander = sleep(0);
    lab.kill_all(1);
    for child in &mut doomed {
        assert!(
            killed_by_sigkill(child),
            "pid {} survived kill_all",
            child.id()
        );
    }
    assert!(lab.pids(1).is_empty(), "left in host 1: {:?}", lab.pids(1));
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "kill_all(1) killed host 0's process"
    );
    // Dropping the lab kills what is left.
    drop(lab);
    assert!(killed_by_sigkill(&mut bystander));
}

#[test]
fn drop_removes_everything() {
    if !Lab::require_or_skip("drop_removes_everything") {
        return;
    }
    let lab = Lab::new("lab-drop", LabSpec::hosts(2).rate_mbit(50));
    // A second lab alive at the same time, same prefix: separate names and subnet.
    let other = Lab::new("lab-drop", LabSpec::hosts(2));
    assert_ne!(lab.subnet(), other.subnet());
    assert_ne!(lab.bridge(), other.bridge());
    assert_ne!(lab.ns_name(0), other.ns_name(0));

    let namespaces: Vec<String> = (0..2).map(|h| lab.ns_name(h).to_owned()).collect();
    let links: Vec<String> = (0..2).map(|h| lab.link_name(h)).collect();
    let (bridge, subnet) = (lab.bridge(), lab.subnet());
    assert!(namespaces.iter().all(|ns| netns_exists(ns)));
    assert!(link_exists(&bridge) && links.iter().all(|l| link_exists(l)));
    assert_eq!(forward_rules_for(&bridge), 1);
    assert!(unreachable_route_exists(subnet));

    drop(lab);
    for ns in &namespaces {
        assert!(!netns_exists(ns), "{ns} left behind");
    }
    for link in links.iter().chain([&bridge]) {
        assert!(!link_exists(link), "{link} left behind");
    }
    assert_eq!(forward_rules_for(&bridge), 0, "FORWARD rule left behind");
    assert!(!unreachable_route_exists(subnet), "route left behind");
    assert!(
        netns_exists(other.ns_name(0)),
        "dropping one lab touched another"
    );
}

const CRASH_HELPER_ENV: &str = "DFPULL_LAB_CRASH_HELPER";

/// The crashed run of `a_crashed_run_is_swept_by_the_next_lab`: builds a lab, leaves a process
/// in it, says what it built, waits for its standard input to close and aborts, so that no
/// destructor runs. Does nothing when run by hand.
#[test]
#[ignore = "helper process, started by a_crashed_run_is_swept_by_the_next_lab"]
fn crashed_run_helper() {
    if std::env::var_os(CRASH_HELPER_ENV).is_none() {
        return;
    }
    let lab = Lab::new("lab-crash", LabSpec::hosts(2).rate_mbit(50));
    let orphan = lab.command(1, "sleep").arg("600").spawn().unwrap();
    wait_entered(&lab, 1, &orphan);
    println!(
        "LEFTOVER {} {} {} {}",
        lab.bridge(),
        lab.ns_name(0),
        lab.ns_name(1),
        orphan.id()
    );
    io::stdout().flush().unwrap();
    let _ = io::stdin().read_to_end(&mut Vec::new());
    std::process::abort();
}

#[test]
fn a_crashed_run_is_swept_by_the_next_lab() {
    if !Lab::require_or_skip("a_crashed_run_is_swept_by_the_next_lab") {
        return;
    }
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crashed_run_helper", "--ignored", "--nocapture"])
        .env(CRASH_HELPER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let leftover = io::BufReader::new(helper.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            said.push_str(&line);
            said.push('\n');
            Some(line.strip_prefix("LEFTOVER ")?.to_owned())
        });
    let leftover = leftover.unwrap_or_else(|| panic!("no LEFTOVER line from the helper: {said}"));
    let leftover: Vec<&str> = leftover.split_whitespace().collect();
    let [bridge, ns0, ns1, orphan] = leftover[..] else {
        panic!("malformed LEFTOVER line: {leftover:?}");
    };
    let orphan: u32 = orphan.parse().unwrap();
    assert!(link_exists(bridge) && netns_exists(ns0) && netns_exists(ns1));
    assert!(!dead(orphan));

    // Crash it. From here on any new lab, in this test or a concurrent one, sweeps the remains.
    drop(helper.stdin.take());
    let status = helper.wait().unwrap();
    assert_eq!(status.signal(), Some(6), "helper did not abort: {status}");

    let lab = Lab::new("lab-crash", LabSpec::hosts(1));
    let deadline = Instant::now() + PATIENCE;
    while !dead(orphan) {
        assert!(
            Instant::now() < deadline,
            "orphan {orphan} survived the sweep"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // The new lab may have leased the freed slot, and so reuse the bridge and first name.
    assert!(!netns_exists(ns1), "{ns1} survived the sweep");
    if lab.bridge() != bridge {
        assert!(!link_exists(bridge), "{bridge} survived the sweep");
        assert!(!netns_exists(ns0), "{ns0} survived the sweep");
        assert_eq!(forward_rules_for(bridge), 0);
    } else {
        assert_eq!(forward_rules_for(bridge), 1);
    }
}
