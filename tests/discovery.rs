//! mDNS discovery between real processes: on this host, across two network-namespace hosts
//! with no address given, and on a host whose only interface is loopback; plus what actually
//! goes on the wire (which addresses, how big a packet), read by a sniffer socket bound to
//! 5353 like the daemons.
//!
//! The other side of each test is this test binary run again as a child process, selected by
//! [`CHILD_ENV`]: `advertise` advertises and serves its instance name to every TCP connection
//! until told to withdraw; `browse` looks for a swarm id and prints what it found as JSON.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::lab::{HOST_IF, Lab, LabSpec};
use dfpull::discovery::{Advert, Discovery, Found, INTERFACE_ENV, KEY_OMITTED, Role};

/// Selects the child's part: `advertise` or `browse`.
const CHILD_ENV: &str = "DFPULL_DISCOVERY_CHILD";
const ROLE_ENV: &str = "DFPULL_DISCOVERY_ROLE";
const SWARM_ENV: &str = "DFPULL_DISCOVERY_SWARM";
const TXT_ENV: &str = "DFPULL_DISCOVERY_TXT";
const WINDOW_ENV: &str = "DFPULL_DISCOVERY_WINDOW_MS";

/// How long any browse may take before the test calls it a failure.
const WINDOW: Duration = Duration::from_secs(10);
/// Bound on one resolution by a fresh process. Measured here: a few ms; without the one-shot
/// query about 1050 ms whenever the advert is younger than two seconds.
const FAST: Duration = Duration::from_millis(500);
/// Largest mDNS packet mdns-sd builds by default (one Ethernet frame).
const MAX_PACKET: usize = 1452;

// ---- the child process -------------------------------------------------------------------

/// Entry point of the child processes; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("advertise") => child_advertise(),
        Ok("browse") => child_browse(),
        Ok(other) => panic!("{CHILD_ENV}={other}: expected advertise or browse"),
        Err(_) => {}
    }
}

fn child_advertise() {
    let role: Role = std::env::var(ROLE_ENV).unwrap().parse().unwrap();
    let swarm = std::env::var(SWARM_ENV).ok();
    let txt: Vec<(String, String)> =
        serde_json::from_str(&std::env::var(TXT_ENV).unwrap_or_else(|_| "[]".into())).unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let discovery = Discovery::new().unwrap();
    let advert = discovery
        .advertise(&Advert {
            role,
            port,
            swarm,
            txt,
        })
        .unwrap();
    let instance = advert.instance().to_owned();
    let banner = instance.clone();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = writeln!(stream, "{banner}");
        }
    });
    println!("READY {instance} {port}");

    // Until the parent says so (or goes away).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    advert.withdraw().unwrap();
    println!("WITHDRAWN");
    discovery.shutdown();
}

fn child_browse() {
    let swarm = std::env::var(SWARM_ENV).unwrap();
    let window = Duration::from_millis(std::env::var(WINDOW_ENV).unwrap().parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let discovery = Discovery::new().unwrap();
    let started = Instant::now();
    let list = runtime
        .block_on(discovery.browse(window, |list| find(list, &swarm).is_some()))
        .unwrap();
    let elapsed = started.elapsed();
    match find(&list, &swarm) {
        Some(found) => {
            let (addr, banner) = first_banner(found).unwrap_or_default();
            let report = serde_json::json!({
                "found": found,
                "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
                "connected": addr,
                "banner": banner,
            });
            println!("FOUND {report}");
        }
        None => println!("NOTFOUND {}", serde_json::to_string(&list).unwrap()),
    }
}

// ---- helpers -----------------------------------------------------------------------------

fn find<'a>(list: &'a [Found], swarm: &str) -> Option<&'a Found> {
    list.iter().find(|f| f.swarm.as_deref() == Some(swarm))
}

fn random_swarm() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Connects to `addr` and reads the line its server sends.
fn banner_at(addr: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line.trim().to_owned())
}

/// The first address of `found` that answers, and what its server said.
fn first_banner(found: &Found) -> Option<(String, String)> {
    found.addrs.iter().find_map(|ip| {
        let addr = SocketAddr::new(*ip, found.port);
        Some((addr.to_string(), banner_at(addr)?))
    })
}

fn txt(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A running child; killed when dropped.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Helper {
    fn spawn(mut command: Command) -> Helper {
        command
            .args([
                "child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("spawning the child test process");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// An advertiser: `command` runs this test binary (possibly inside a namespace).
    fn advertise(
        mut command: Command,
        role: Role,
        swarm: &str,
        extras: &[(String, String)],
    ) -> Helper {
        command
            .env(CHILD_ENV, "advertise")
            .env(ROLE_ENV, role.as_str())
            .env(SWARM_ENV, swarm)
            .env(TXT_ENV, serde_json::to_string(extras).unwrap());
        Helper::spawn(command)
    }

    /// A browser looking for `swarm` for up to [`WINDOW`].
    fn browse(mut command: Command, swarm: &str) -> Helper {
        command
            .env(CHILD_ENV, "browse")
            .env(SWARM_ENV, swarm)
            .env(WINDOW_ENV, WINDOW.as_millis().to_string());
        Helper::spawn(command)
    }

    /// Waits for a line starting with `prefix` and returns the rest of it.
    fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                    self.seen.push(line);
                }
                Err(e) => panic!(
                    "child: no line starting with {prefix:?} ({e:?}); it printed: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for `READY instance port`.
    fn ready(&mut self) -> (String, u16) {
        let rest = self.expect("READY ", WINDOW);
        let (instance, port) = rest.split_once(' ').unwrap();
        (instance.to_owned(), port.parse().unwrap())
    }

    fn withdraw(&mut self) {
        let mut stdin = self.stdin.take().unwrap();
        writeln!(stdin, "withdraw").unwrap();
        self.expect("WITHDRAWN", WINDOW);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a browse child's `FOUND` report.
fn found_report(browser: &mut Helper) -> serde_json::Value {
    let deadline = WINDOW + Duration::from_secs(10);
    let start = Instant::now();
    loop {
        let line = browser
            .lines
            .recv_timeout(deadline.saturating_sub(start.elapsed()));
        match line {
            Ok(line) if line.starts_with("FOUND ") => {
                return serde_json::from_str(&line["FOUND ".len()..]).unwrap();
            }
            Ok(line) if line.starts_with("NOTFOUND ") => panic!("browser found nothing: {line}"),
            Ok(_) => {}
            Err(e) => panic!("browser gave no report: {e:?}"),
        }
    }
}

fn this_binary() -> Command {
    Command::new(std::env::current_exe().unwrap())
}

/// The IPv4 addresses of this host's interfaces that are up, by interface name.
fn own_v4() -> Vec<(String, Ipv4Addr)> {
    if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .filter(|i| i.is_oper_up())
        .filter_map(|i| match i.ip() {
            IpAddr::V4(v4) => Some((i.name, v4)),
            IpAddr::V6(_) => None,
        })
        .collect()
}

async fn browse_for(discovery: &Discovery, swarm: &str) -> (Found, Duration) {
    let started = Instant::now();
    let list = discovery
        .browse(WINDOW, |list| find(list, swarm).is_some())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let found = find(&list, swarm)
        .unwrap_or_else(|| panic!("swarm {swarm} not found in {WINDOW:?}; saw {list:#?}"))
        .clone();
    (found, elapsed)
}

// ---- same host ---------------------------------------------------------------------------

#[test]
fn another_process_on_this_host_is_found_with_its_details_and_a_usable_address() {
    let swarm = random_swarm();
    let extras = txt(&[("images", "alpine:3.20,nginx:1.27"), ("blocks", "4096")]);
    let mut seeder = Helper::advertise(this_binary(), Role::Seed, &swarm, &extras);
    let (instance, port) = seeder.ready();
    // A fresh process, started right after the advert: the case the one-shot query is for.
    let mut browser = Helper::browse(this_binary(), &swarm);
    let report = found_report(&mut browser);
    eprintln!("same host: {report}");

    let found = &report["found"];
    assert_eq!(found["instance"], instance.as_str());
    assert_eq!(found["role"], "seed");
    assert_eq!(found["port"], port);
    assert_eq!(found["swarm"], swarm.as_str());
    let want: BTreeMap<String, String> = extras.into_iter().collect();
    assert_eq!(found["txt"], serde_json::to_value(&want).unwrap());
    let ms = report["elapsed_ms"].as_f64().unwrap();
    assert!(ms < FAST.as_secs_f64() * 1000.0, "resolution took {ms} ms");

    // On this host: loopback first; everything else is one of our own reachable addresses.
    let addrs: Vec<IpAddr> = found["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(addrs[0], IpAddr::V4(Ipv4Addr::LOCALHOST));
    let own = own_v4();
    for addr in &addrs[1..] {
        let IpAddr::V4(v4) = addr else {
            panic!("IPv6 address {addr} published");
        };
        assert!(!v4.is_link_local() && !v4.is_loopback(), "{addr} published");
        let (name, _) = own
            .iter()
            .find(|(_, ip)| ip == v4)
            .unwrap_or_else(|| panic!("{addr} is not an address of this host"));
        assert!(
            !["docker", "br-", "veth"]
                .iter()
                .any(|p| name.starts_with(p)),
            "{addr} of container interface {name} published"
        );
    }

    // Every address reaches the advertiser's own listener.
    for addr in addrs {
        let target = SocketAddr::new(addr, port);
        let banner = banner_at(target).unwrap_or_else(|| panic!("cannot connect to {target}"));
        assert_eq!(banner, instance, "{target} is someone else's server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_advert_disappears_from_browsers() {
    let swarm = random_swarm();
    let mut child = Helper::advertise(this_binary(), Role::Coordinator, &swarm, &[]);
    let (instance, _) = child.ready();
    let discovery = Discovery::new().unwrap();
    let (found, _) = browse_for(&discovery, &swarm).await;
    assert_eq!(found.instance, instance);

    child.withdraw();
    let started = Instant::now();
    let list = discovery
        .browse(WINDOW, |list| find(list, &swarm).is_none())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    eprintln!("withdrawn advert gone after {elapsed:?}");
    assert!(
        find(&list, &swarm).is_none(),
        "{instance} still listed {WINDOW:?} after its goodbye"
    );
    // A goodbye the browser's daemon heard takes about 1 s; an advert it had only learnt of
    // from a one-shot answer is dropped 3 s after that answer at most.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

/// Sockets that receive every mDNS datagram, IPv4 and IPv6, on the interfaces of the current
/// network namespace that are up, as the daemons do (same port, same options).
struct Sniffer {
    v4: UdpSocket,
    v6: UdpSocket,
}

/// A datagram the sniffer sends itself over IPv6, to prove it would see IPv6 traffic.
const V6_PROBE: &[u8] = b"dfpull-test-sniffer-probe";

impl Sniffer {
    fn new() -> Sniffer {
        use socket2::{Domain, Protocol, Socket, Type};
        let open = |domain: Domain, bind: SocketAddr| {
            let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            if domain == Domain::IPV6 {
                socket.set_only_v6(true).unwrap();
            }
            socket.set_reuse_address(true).unwrap();
            socket.set_reuse_port(true).unwrap();
            socket.set_recv_buffer_size(1 << 20).unwrap();
            socket.bind(&bind.into()).unwrap();
            socket
        };
        let v4 = open(Domain::IPV4, "0.0.0.0:5353".parse().unwrap());
        let v6 = open(Domain::IPV6, "[::]:5353".parse().unwrap());
        let group_v4 = Ipv4Addr::new(224, 0, 0, 251);
        let group_v6: Ipv6Addr = "ff02::fb".parse().unwrap();
        let mut v6_joined = Vec::new();
        for i in if_addrs::get_if_addrs().unwrap() {
            if !i.is_oper_up() {
                continue;
            }
            match i.ip() {
                IpAddr::V4(ip) => v4.join_multicast_v4(&group_v4, &ip).unwrap(),
                IpAddr::V6(_) => {
                    let index = i.index.unwrap();
                    if !v6_joined.contains(&index) && v6.join_multicast_v6(&group_v6, index).is_ok()
                    {
                        v6_joined.push(index);
                    }
                }
            }
        }
        let sniffer = Sniffer {
            v4: v4.into(),
            v6: v6.into(),
        };
        // Positive control: a datagram sent to the group comes back to us. (Where no
        // interface can send IPv6 multicast, no daemon can publish over IPv6 either.)
        let probe = UdpSocket::bind("[::]:0").unwrap();
        let sent = v6_joined.iter().any(|&index| {
            socket2::SockRef::from(&probe)
                .set_multicast_if_v6(index)
                .is_ok()
                && probe
                    .send_to(V6_PROBE, SocketAddr::new(group_v6.into(), 5353))
                    .is_ok()
        });
        if sent {
            let seen = sniffer.take(Duration::from_millis(300));
            assert!(
                seen.iter().any(|p| p == V6_PROBE),
                "the IPv6 sniffer does not receive multicast here"
            );
        }
        sniffer
    }

    /// Everything received so far, once nothing more came for `quiet`.
    fn take(&self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut buf = vec![0u8; 9000];
        for socket in [&self.v4, &self.v6] {
            socket.set_read_timeout(Some(quiet)).unwrap();
            while let Ok(n) = socket.recv(&mut buf) {
                packets.push(buf[..n].to_vec());
            }
        }
        packets
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The addresses (A and AAAA records) in an mDNS response; `None` for a query or a packet
/// that does not parse.
fn published_addrs(packet: &[u8]) -> Option<Vec<IpAddr>> {
    let u16_at = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            packet.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    // Past the name at `i`: labels up to a zero byte or a compression pointer.
    let skip_name = |mut i: usize| -> Option<usize> {
        loop {
            let len = *packet.get(i)?;
            if len == 0 {
                return Some(i + 1);
            }
            if len & 0xc0 == 0xc0 {
                return Some(i + 2);
            }
            i += 1 + usize::from(len);
        }
    };
    if u16_at(2)? & 0x8000 == 0 {
        return None;
    }
    let records = u16_at(6)? + u16_at(8)? + u16_at(10)?;
    let mut i = 12;
    for _ in 0..u16_at(4)? {
        i = skip_name(i)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..records {
        i = skip_name(i)?;
        let rtype = u16_at(i)?;
        let len = u16_at(i + 8)?;
        let rdata = packet.get(i + 10..i + 10 + len)?;
        match (rtype, len) {
            (1, 4) => addrs.push(IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?)),
            (28, 16) => addrs.push(IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?)),
            _ => {}
        }
        i += 10 + len;
    }
    Some(addrs)
}

/// Every address published in the responses that name `instance`.
fn addrs_published_for(packets: &[Vec<u8>], instance: &str) -> BTreeSet<IpAddr> {
    packets
        .iter()
        .filter(|p| contains(p, instance.as_bytes()))
        .filter_map(|p| published_addrs(p))
        .flatten()
        .collect()
}

#[test]
fn only_reachable_addresses_go_on_the_wire() {
    let sniffer = Sniffer::new();
    let swarm = random_swarm();
    let mut seeder = Helper::advertise(this_binary(), Role::Peer, &swarm, &[]);
    let (instance, _) = seeder.ready();
    // The announcements (at once and about 1.1 s later), then a one-shot answer.
    let mut browser = Helper::browse(this_binary(), &swarm);
    found_report(&mut browser);
    thread::sleep(Duration::from_millis(1300));
    let published = addrs_published_for(&sniffer.take(Duration::from_millis(300)), &instance);
    eprintln!("published for {instance}: {published:?}");

    assert!(
        published.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "loopback is announced (on lo) for processes on this host"
    );
    let lan: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .filter(|i| i.is_oper_up() && !i.is_loopback() && !i.is_link_local())
        .filter(|i| {
            i.ip().is_ipv4()
                && !["docker", "br-", "veth"]
                    .iter()
                    .any(|p| i.name.starts_with(p))
        })
        .map(|i| i.ip())
        .collect();
    for ip in &lan {
        assert!(published.contains(ip), "LAN address {ip} missing");
    }
    for ip in &published {
        assert!(ip.is_ipv4(), "IPv6 address {ip} published");
        assert!(ip.is_loopback() || lan.contains(ip), "{ip} published");
    }
}

#[test]
fn the_interface_override_decides_what_is_published() {
    let sniffer = Sniffer::new();
    let swarm = random_swarm();
    let mut command = this_binary();
    command.env(INTERFACE_ENV, "lo");
    let mut seeder = Helper::advertise(command, Role::Seed, &swarm, &[]);
    let (instance, _) = seeder.ready();
    let mut browser = Helper::browse(this_binary(), &swarm);
    let report = found_report(&mut browser);
    thread::sleep(Duration::from_millis(1300));
    let published = addrs_published_for(&sniffer.take(Duration::from_millis(300)), &instance);

    assert_eq!(published, BTreeSet::from([IpAddr::V4(Ipv4Addr::LOCALHOST)]));
    assert_eq!(report["found"]["addrs"], serde_json::json!(["127.0.0.1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_txt_is_cut_to_whole_extras_and_the_advert_fits_one_packet() {
    let sniffer = Sniffer::new();
    let swarm = random_swarm();
    // 40 extras of 68 bytes each: about 2.7 KB asked for.
    let extras: Vec<(String, String)> = (0..40)
        .map(|i| (format!("img{i:02}"), format!("{i:02}{}", "x".repeat(60))))
        .collect();
    let mut child = Helper::advertise(this_binary(), Role::Seed, &swarm, &extras);
    let (instance, _) = child.ready();
    let discovery = Discovery::new().unwrap();
    let (found, _) = browse_for(&discovery, &swarm).await;

    assert_eq!(found.role, Role::Seed);
    assert_eq!(found.swarm.as_deref(), Some(swarm.as_str()));
    let omitted: usize = found.txt[KEY_OMITTED].parse().unwrap();
    let kept: Vec<(String, String)> = found
        .txt
        .iter()
        .filter(|(k, _)| k.as_str() != KEY_OMITTED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(
        !kept.is_empty() && omitted > 0,
        "kept {kept:?}, omitted {omitted}"
    );
    assert_eq!(kept.len() + omitted, extras.len());
    // The first ones, whole.
    assert_eq!(kept, extras[..kept.len()].to_vec());

    // Every packet that carried the advert's TXT stayed within one frame.
    let carrying: Vec<usize> = sniffer
        .take(Duration::from_millis(200))
        .iter()
        .filter(|p| contains(p, instance.as_bytes()) && contains(p, b"omitted="))
        .map(Vec::len)
        .collect();
    assert!(!carrying.is_empty(), "no packet with the advert was seen");
    assert!(
        carrying.iter().all(|&len| len <= MAX_PACKET),
        "packet sizes {carrying:?}"
    );
}

// ---- separate hosts (network namespaces) -------------------------------------------------

#[test]
fn a_seeder_on_another_host_is_found_with_no_address_given() {
    const TEST: &str = "a_seeder_on_another_host_is_found_with_no_address_given";
    if !Lab::require_or_skip(TEST) {
        return;
    }
    let lab = Lab::new("disc-2hosts", LabSpec::hosts(2));
    let sniffer = lab.in_host(1, Sniffer::new);
    let swarm = random_swarm();
    let extras = txt(&[("images", "busybox:1.36")]);
    let mut seeder = Helper::advertise(
        lab.command(0, std::env::current_exe().unwrap()),
        Role::Seed,
        &swarm,
        &extras,
    );
    let (instance, port) = seeder.ready();
    let mut browser = Helper::browse(lab.command(1, std::env::current_exe().unwrap()), &swarm);
    let report = found_report(&mut browser);
    eprintln!("across hosts: {report}");

    let found = &report["found"];
    assert_eq!(found["instance"], instance.as_str());
    assert_eq!(found["role"], "seed");
    assert_eq!(found["port"], port);
    assert_eq!(found["swarm"], swarm.as_str());
    assert_eq!(found["txt"]["images"], "busybox:1.36");
    // Exactly the seeder's LAN address: no loopback (another host), no IPv6 link-local.
    assert_eq!(found["addrs"], serde_json::json!([lab.addr(0).to_string()]));
    assert_eq!(
        report["banner"],
        instance.as_str(),
        "connected to the seeder"
    );
    let ms = report["elapsed_ms"].as_f64().unwrap();
    assert!(ms < FAST.as_secs_f64() * 1000.0, "resolution took {ms} ms");

    // On the wire between the hosts, both announcements carried that one address only.
    thread::sleep(Duration::from_millis(1300));
    let published = addrs_published_for(&sniffer.take(Duration::from_millis(300)), &instance);
    assert_eq!(published, BTreeSet::from([IpAddr::V4(lab.addr(0))]));
}

#[test]
fn processes_on_a_host_with_only_loopback_find_each_other() {
    const TEST: &str = "processes_on_a_host_with_only_loopback_find_each_other";
    if !Lab::require_or_skip(TEST) {
        return;
    }
    let lab = Lab::new("disc-loopback", LabSpec::hosts(1));
    let down = Command::new("ip")
        .args(["-n", lab.ns_name(0), "link", "set", HOST_IF, "down"])
        .status()
        .unwrap();
    assert!(down.success(), "taking {HOST_IF} down");

    let swarm = random_swarm();
    let mut seeder = Helper::advertise(
        lab.command(0, std::env::current_exe().unwrap()),
        Role::Seed,
        &swarm,
        &[],
    );
    let (instance, port) = seeder.ready();
    let mut browser = Helper::browse(lab.command(0, std::env::current_exe().unwrap()), &swarm);
    let report = found_report(&mut browser);
    eprintln!("loopback only: {report}");

    assert_eq!(report["found"]["instance"], instance.as_str());
    assert_eq!(report["found"]["addrs"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(report["found"]["port"], port);
    assert_eq!(report["banner"], instance.as_str());
}
