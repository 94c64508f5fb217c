//! mDNS discovery between real processes: on this host, across two network-namespace hosts
//! with no address given, and on a host whose only interface is loopback.
//!
//! The other side of each test is this test binary run again as a child process, selected by
//! [`CHILD_ENV`]: `advertise` advertises and serves its instance name to every TCP connection
//! until told to withdraw; `browse` looks for a swarm id and prints what it found as JSON.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::lab::{HOST_IF, Lab, LabSpec};
use dfpull::discovery::{Advert, Discovery, Found, KEY_OMITTED, Role};

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

/// This host's IPv4 addresses, by interface name.
fn own_v4() -> Vec<(String, Ipv4Addr)> {
    if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
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

/// Joins the mDNS group on every IPv4 interface of this host and keeps every datagram.
fn sniff_mdns() -> mpsc::Receiver<Vec<u8>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5353).into())
        .unwrap();
    let group = Ipv4Addr::new(224, 0, 0, 251);
    for (_, ip) in own_v4() {
        let _ = socket.join_multicast_v4(&group, &ip);
    }
    let socket: UdpSocket = socket.into();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0u8; 9000];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_txt_is_cut_to_whole_extras_and_the_advert_fits_one_packet() {
    let packets = sniff_mdns();
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
    let mut carrying = Vec::new();
    while let Ok(packet) = packets.recv_timeout(Duration::from_millis(200)) {
        if contains(&packet, instance.as_bytes()) && contains(&packet, b"omitted=") {
            carrying.push(packet.len());
        }
    }
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
