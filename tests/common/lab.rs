//! A lab of real hosts on one machine, for tests and benchmarks that need a network between
//! processes: each host is a Linux network namespace with its own IPv4 address, wired by a veth
//! pair to one bridge per lab, optionally shaped like a real link.
//!
//! ```text
//!   host 0 (netns dfl7-NAME-h0)        host 1 (netns dfl7-NAME-h1)        ...
//!     eth0 10.213.7.1/24                 eth0 10.213.7.2/24
//!     tc: upload rate (+ delay)          tc: upload rate (+ delay)
//!      |                                  |
//!     dfl7h0  tc: download rate          dfl7h1  tc: download rate
//!      +-------------- bridge dfl7br (root namespace, no address) ------------+
//! ```
//!
//! What a host has: `lo` up, `eth0` with `10.213.SLOT.(host+1)/24`, a route for 224.0.0.0/4 so
//! multicast (mDNS) works, IPv6 link-local as the kernel gives it, and no other route: nothing in
//! a host can reach beyond the lab. The root namespace gets an `unreachable` route for the lab's
//! /24, so a test that forgets to enter a host fails at once instead of sending lab-addressed
//! packets out of the machine's real interface.
//!
//! Isolation between labs: every lab leases a *slot* (0..250) by binding an abstract Unix socket
//! named after it. The kernel releases the lease when the owning process dies, however it dies,
//! so "I could bind slot N" means "whatever is left of slot N belongs to a dead process". Slot N
//! names everything: subnet 10.213.N.0/24, bridge `dflNbr`, veths `dflNhI` (at most 10 bytes,
//! within the 15-byte limit on interface names), namespaces `dflN-PREFIX-hI`. Labs therefore run
//! in parallel within a process and across processes, and [`Lab::new`] sweeps the leftovers of
//! crashed runs (any prefix, including its own) before it builds.
//!
//! Running code in a host: [`Lab::command`] runs a program inside it (`ip netns exec`), and
//! [`Lab::in_host`] runs a closure on a thread that has entered the host's namespace. A socket
//! keeps the namespace it was created in, so a listener or stream made in `in_host` can be used
//! from any thread afterwards: no helper processes are needed for socket-level tests.
//!
//! Faults and measurements: [`Lab::cut`] and [`Lab::restore`] take a host off the network and
//! back, silently (its link stays up); [`Lab::kill_all`] ends every process in a host;
//! [`Lab::tx_bytes`] and [`Lab::rx_bytes`] count what crossed a host's link.
//!
//! Needs root, iproute2 (`ip`, `tc`, `bridge`), and iptables where br_netfilter is loaded (Docker loads it
//! and sets the FORWARD policy to DROP, which silently drops bridged traffic, multicast too: each
//! lab inserts `-i BR -o BR -j ACCEPT` and removes it again). Delay needs the kernel's netem
//! qdisc, which not every kernel has: check [`Lab::delay_available`].
//!
//! Environment: `DFPULL_REQUIRE_NETNS=1` turns a lab that cannot run into a test failure instead
//! of a skip (CI sets it); `DFPULL_LAB_KEEP=1` leaves a lab in place after the test for
//! inspection (the next lab's sweep removes it).

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that makes an unavailable lab a failure instead of a skip.
pub const REQUIRE_ENV: &str = "DFPULL_REQUIRE_NETNS";
/// Environment variable that keeps labs in place after the test, for inspection.
pub const KEEP_ENV: &str = "DFPULL_LAB_KEEP";

/// Number of slots, hence of labs that can exist at once on the machine.
const SLOTS: u16 = 250;
/// Hosts per lab: addresses .1 to .250 of the lab's /24.
pub const MAX_HOSTS: usize = 250;
/// The first two octets of every lab subnet; the slot is the third.
const NET: [u8; 2] = [10, 213];
/// Interface name of every host's side of its link.
pub const HOST_IF: &str = "eth0";
/// Where `ip netns` keeps the namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// What to build: the number of hosts and how their links are shaped. Every host gets the same
/// link, shaped in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Number of hosts, 1 to [`MAX_HOSTS`].
    pub hosts: usize,
    /// Rate of each host's link in Mbit/s (10^6 bit/s, counting Ethernet frames), applied to
    /// upload (egress of the host's `eth0`) and download (egress of the bridge-side veth).
    /// `None`: unshaped, as fast as the CPU moves packets.
    pub rate_mbit: Option<u32>,
    /// One-way delay added to everything a host sends (netem on its `eth0`), so the round trip
    /// between two hosts is twice this. Needs netem: see [`Lab::delay_available`].
    pub delay_ms: Option<u32>,
}

impl LabSpec {
    /// `hosts` hosts on unshaped links.
    pub fn hosts(hosts: usize) -> Self {
        LabSpec {
            hosts,
            rate_mbit: None,
            delay_ms: None,
        }
    }

    /// Shapes every link to `rate` Mbit/s in each direction.
    pub fn rate_mbit(mut self, rate: u32) -> Self {
        self.rate_mbit = Some(rate);
        self
    }

    /// Adds `delay` ms to everything each host sends.
    pub fn delay_ms(mut self, delay: u32) -> Self {
        self.delay_ms = Some(delay);
        self
    }
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec::hosts(2)
    }
}

/// A running lab. Dropping it kills every process left in its hosts and removes the namespaces,
/// links, bridge, firewall rule and route; that also happens while a failing test unwinds.
#[derive(Debug)]
pub struct Lab {
    slot: u16,
    spec: LabSpec,
    namespaces: Vec<String>,
    /// The slot lease; declared last so it is released only after `drop` has cleaned up.
    _lease: UnixListener,
}

impl Lab {
    /// Whether labs can be built here: root, namespaces, veth, bridge, tbf, and iptables when
    /// br_netfilter is active. Probed once per process; the error says what is missing.
    pub fn available() -> Result<(), String> {
        probe().base.clone()
    }

    /// Whether [`LabSpec::delay_ms`] can be honoured: the kernel has the netem qdisc.
    pub fn delay_available() -> Result<(), String> {
        Self::available()?;
        probe().netem.clone()
    }

    /// True when labs can be built. Otherwise prints a loud `SKIPPED:` line naming `test` and
    /// returns false, or panics when `DFPULL_REQUIRE_NETNS=1`.
    pub fn require_or_skip(test: &str) -> bool {
        match Self::available() {
            Ok(()) => true,
            Err(why) if required() => {
                panic!(
                    "{test}: {REQUIRE_ENV}=1 but the network-namespace lab is unavailable: {why}"
                )
            }
            Err(why) => {
                loud(&format!(
                    "SKIPPED: {test}: network-namespace lab unavailable: {why} \
                     (set {REQUIRE_ENV}=1 to make this a failure)"
                ));
                false
            }
        }
    }

    /// Like [`Lab::require_or_skip`], and also needs delay. A kernel without netem is a fact of
    /// the machine that no setup script can change, so that part skips (loudly) even when the
    /// lab is required.
    pub fn require_delay_or_skip(test: &str) -> bool {
        if !Self::require_or_skip(test) {
            return false;
        }
        match probe().netem.clone() {
            Ok(()) => true,
            Err(why) => {
                loud(&format!("SKIPPED: {test}: link delay unavailable: {why}"));
                false
            }
        }
    }

    /// Builds a lab. `prefix` names the test in namespace names (sanitised, shortened). Sweeps
    /// leftovers of crashed runs first. Panics with the failing command when something cannot be
    /// built; whatever was built by then is removed.
    pub fn new(prefix: &str, spec: LabSpec) -> Lab {
        if let Err(why) = Self::available() {
            panic!("network-namespace lab unavailable: {why}");
        }
        assert!(
            (1..=MAX_HOSTS).contains(&spec.hosts),
            "a lab has 1 to {MAX_HOSTS} hosts, not {}",
            spec.hosts
        );
        if spec.delay_ms.is_some() {
            if let Err(why) = probe().netem.clone() {
                panic!("LabSpec::delay_ms needs netem: {why} (check Lab::delay_available first)");
            }
        }
        let prefix = sanitise(prefix);
        sweep_stale();
        let (slot, lease) = lease_free_slot();
        let namespaces = (0..spec.hosts)
            .map(|host| format!("dfl{slot}-{prefix}-h{host}"))
            .collect();
        // Built inside a Lab value so that a failure half-way is cleaned up by Drop.
        let lab = Lab {
            slot,
            spec,
            namespaces,
            _lease: lease,
        };
        if let Err(e) = lab.build() {
            panic!("building lab {}: {e}", lab.bridge());
        }
        lab
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.spec.hosts
    }

    /// What this lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// The lab's subnet, a /24.
    pub fn subnet(&self) -> Ipv4Addr {
        subnet(self.slot)
    }

    /// The IPv4 address of `host`.
    pub fn addr(&self, host: usize) -> Ipv4Addr {
        self.check(host);
        let [a, b, c, _] = self.subnet().octets();
        Ipv4Addr::new(a, b, c, host as u8 + 1)
    }

    /// `host`'s address with `port`.
    pub fn socket_addr(&self, host: usize, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.addr(host), port))
    }

    /// Name of `host`'s network namespace, for `ip netns exec` and friends.
    pub fn ns_name(&self, host: usize) -> &str {
        self.check(host);
        &self.namespaces[host]
    }

    /// Name of the bridge-side end of `host`'s link, in the root namespace.
    pub fn link_name(&self, host: usize) -> String {
        self.check(host);
        veth_name(self.slot, host)
    }

    /// Name of the lab's bridge, in the root namespace.
    pub fn bridge(&self) -> String {
        bridge_name(self.slot)
    }

    /// A command that runs `program` inside `host` (through `ip netns exec`, which execs it: the
    /// child's pid is the program's). Add arguments, then spawn it as usual.
    pub fn command(&self, host: usize, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.ns_name(host)])
            .arg(program);
        command
    }

    /// Runs `f` on a new thread that has entered `host`'s network namespace, and returns what it
    /// returns (a panic in `f` is passed on). Sockets created in `f` stay in that namespace, so
    /// a listener bound or a stream connected here can be used from any thread afterwards;
    /// threads spawned by `f` start in the host too.
    pub fn in_host<T, F>(&self, host: usize, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = format!("{NETNS_DIR}/{}", self.ns_name(host));
        let netns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        thread::scope(|scope| {
            let worker = thread::Builder::new()
                .name(format!("lab-host-{host}"))
                .spawn_scoped(scope, move || {
                    if let Err(e) = enter_netns(&netns) {
                        panic!("entering {path}: {e}");
                    }
                    f()
                })
                .expect("spawning a lab thread");
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Bytes `host` has put on the network: Ethernet frames received by the bridge from its
    /// link, so headers and background chatter (ARP, IPv6 neighbour discovery) count, and so
    /// do frames sent while the host was cut (the bridge drops them after counting). Counts
    /// from the lab's creation.
    pub fn tx_bytes(&self, host: usize) -> u64 {
        self.link_counter(host, "rx_bytes")
    }

    /// Bytes the network has delivered to `host`, counted like [`Lab::tx_bytes`].
    pub fn rx_bytes(&self, host: usize) -> u64 {
        self.link_counter(host, "tx_bytes")
    }

    /// Takes `host` off the network without telling it: the bridge port of its link stops
    /// forwarding (port state "disabled"), so everything the host sends or would receive is
    /// dropped while its `eth0` keeps carrier, as when a switch or the path behind it fails.
    /// Processes and connections live on; TCP retransmits once the host is restored.
    ///
    /// Carrier is deliberately left alone: the kernel applies carrier changes from deferred
    /// work, rate-limited to one per second per link, and flushes neighbour caches when it does,
    /// which makes "back on the network" fuzzy for up to a second after a link comes up.
    pub fn cut(&self, host: usize) {
        self.set_port_state(host, "0");
    }

    /// Puts a cut host back on the network (port state "forwarding"), effective at once.
    pub fn restore(&self, host: usize) {
        self.set_port_state(host, "3");
    }

    fn set_port_state(&self, host: usize, state: &str) {
        let link = self.link_name(host);
        if let Err(e) = run(
            "bridge",
            &["link", "set", "dev", &link, "state", state],
            None,
        ) {
            panic!("setting the bridge port state of host {host} to {state}: {e}");
        }
    }

    /// Pids of the processes in `host` (not counting threads of this process that entered it).
    /// A child started with [`Lab::command`] appears once `ip netns exec` has entered the host.
    pub fn pids(&self, host: usize) -> Vec<u32> {
        match run("ip", &["netns", "pids", self.ns_name(host)], None) {
            Ok(listed) => listed
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect(),
            Err(e) => panic!("listing the processes of host {host}: {e}"),
        }
    }

    /// Sends SIGKILL to every process in `host` and waits until none is left. Children of the
    /// test stay zombies until waited for, as always.
    pub fn kill_all(&self, host: usize) {
        if let Err(e) = kill_namespace(self.ns_name(host)) {
            panic!("killing the processes of host {host}: {e}");
        }
    }

    /// Whether some socket in `host` listens on TCP `port` (any address). Reads the host's
    /// socket table instead of connecting, so the server under test sees no stray connection.
    pub fn listening(&self, host: usize, port: u16) -> bool {
        self.in_host(host, || {
            ["tcp", "tcp6"].iter().any(|table| {
                // /proc/thread-self/net is the namespace of this thread; /proc/self/net would
                // show the main thread's.
                let text = std::fs::read_to_string(format!("/proc/thread-self/net/{table}"))
                    .unwrap_or_default();
                text.lines().skip(1).any(|line| {
                    let mut fields = line.split_whitespace();
                    let local = fields.nth(1).unwrap_or("");
                    let state = fields.nth(1).unwrap_or("");
                    let local_port = local.rsplit(':').next().unwrap_or("");
                    state == "0A" && u16::from_str_radix(local_port, 16) == Ok(port)
                })
            })
        })
    }

    /// Waits up to `timeout` for [`Lab::listening`]; true when it came.
    pub fn wait_listening(&self, host: usize, port: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.listening(host, port) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn check(&self, host: usize) {
        assert!(
            host < self.spec.hosts,
            "host {host} is not in this lab of {} hosts",
            self.spec.hosts
        );
    }

    fn link_counter(&self, host: usize, counter: &str) -> u64 {
        let path = format!(
            "/sys/class/net/{}/statistics/{counter}",
            self.link_name(host)
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("parsing {path} ({text:?}): {e}"))
    }

    fn build(&self) -> Result<(), String> {
        let bridge = self.bridge();
        let subnet = format!("{}/24", self.subnet());
        run("ip", &["route", "add", "unreachable", &subnet], None)?;
        // No snooping: the bridge floods multicast like a plain switch, whatever IGMP says.
        let add_bridge = [
            "link",
            "add",
            "name",
            &bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ];
        run("ip", &add_bridge, None)?;
        keep_off_ipv6(&bridge)?;
        run("ip", &["link", "set", "dev", &bridge, "up"], None)?;
        for tool in firewall_tools() {
            run(tool, &firewall_rule("-I", &bridge), None)?;
        }
        for host in 0..self.hosts() {
            self.build_host(host, &bridge)?;
        }
        self.check_connectivity()
    }

    fn build_host(&self, host: usize, bridge: &str) -> Result<(), String> {
        let ns = self.ns_name(host);
        let link = self.link_name(host);
        run("ip", &["netns", "add", ns], None)?;
        run(
            "ip",
            &[
                "link", "add", "name", &link, "type", "veth", "peer", "name", HOST_IF, "netns", ns,
            ],
            None,
        )?;
        keep_off_ipv6(&link)?;
        run(
            "ip",
            &["link", "set", "dev", &link, "master", bridge, "up"],
            None,
        )?;
        let inside = format!(
            "link set dev lo up\n\
             addr add {}/24 dev {HOST_IF}\n\
             link set dev {HOST_IF} up\n\
             route add 224.0.0.0/4 dev {HOST_IF}\n",
            self.addr(host)
        );
        run("ip", &["-n", ns, "-batch", "-"], Some(&inside))?;

        let tbf = self.spec.rate_mbit.map(tbf_args);
        let netem = self
            .spec
            .delay_ms
            .map(|ms| format!("netem delay {ms}ms limit 100000"));
        let upload = match (&tbf, &netem) {
            (None, None) => String::new(),
            (Some(tbf), None) => format!("qdisc add dev {HOST_IF} root {tbf}\n"),
            (None, Some(netem)) => format!("qdisc add dev {HOST_IF} root {netem}\n"),
            // The layout netem's documentation gives for delay plus rate: delay first, then the
            // rate limit as netem's child.
            (Some(tbf), Some(netem)) => format!(
                "qdisc add dev {HOST_IF} root handle 1: {netem}\n\
                 qdisc add dev {HOST_IF} parent 1:1 handle 10: {tbf}\n"
            ),
        };
        if !upload.is_empty() {
            run("tc", &["-n", ns, "-batch", "-"], Some(&upload))?;
        }
        if let Some(tbf) = &tbf {
            let mut args = vec!["qdisc", "add", "dev", &link, "root"];
            args.extend(tbf.split(' '));
            run("tc", &args, None)?;
        }
        Ok(())
    }

    /// Proves every host reachable from host 0 before a test relies on it. A connection to a
    /// port nobody listens on is refused by the target's kernel, and a refusal can only arrive
    /// if the SYN crossed the bridge one way and the RST the other, so no helper program (or
    /// ping, which this machine lacks) is needed. A firewall drop shows up as a timeout.
    fn check_connectivity(&self) -> Result<(), String> {
        let targets: Vec<(usize, SocketAddr)> = (1..self.hosts())
            .map(|host| (host, self.socket_addr(host, 9)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        self.in_host(0, || {
            for (host, target) in targets {
                loop {
                    match TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                        Err(e) if Instant::now() >= deadline => {
                            return Err(format!(
                                "host 0 cannot reach host {host} at {target}: {e} \
                                 (is a firewall dropping bridged traffic? iptables -S FORWARD)"
                            ));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(50)),
                    }
                }
            }
            Ok(())
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1") {
            eprintln!(
                "{KEEP_ENV}=1: keeping lab {} ({})",
                self.bridge(),
                self.namespaces.join(" ")
            );
            return;
        }
        clear_slot(self.slot);
    }
}

/// What the machine can do, probed once per process.
struct Probe {
    base: Result<(), String>,
    netem: Result<(), String>,
}

fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| match probe_base() {
        Ok(netem) => Probe {
            base: Ok(()),
            netem,
        },
        Err(why) => Probe {
            base: Err(why.clone()),
            netem: Err(why),
        },
    })
}

/// Tries everything a lab does, inside a throw-away namespace: returns whether netem works, or
/// why no lab can be built.
fn probe_base() -> Result<Result<(), String>, String> {
    let euid = sys::geteuid();
    if euid != 0 {
        return Err(format!(
            "not root (euid {euid}): namespaces, links and qdiscs need root"
        ));
    }
    for tool in ["ip", "tc", "bridge"] {
        run(tool, &["-V"], None).map_err(|e| format!("{e} (install iproute2)"))?;
    }
    if bridge_netfilter_active() && !firewall_tools().contains(&"iptables") {
        let why = run("iptables", &["-w", "-S", "FORWARD"], None).err();
        return Err(format!(
            "br_netfilter is active, so bridged traffic crosses the iptables FORWARD chain, \
             but iptables cannot edit it: {} (install iptables)",
            why.unwrap_or_default()
        ));
    }
    let ns = format!("dflprobe-{}", std::process::id());
    let _ = run("ip", &["netns", "del", &ns], None);
    run("ip", &["netns", "add", &ns], None)?;
    let result = probe_in(&ns);
    let _ = run("ip", &["netns", "del", &ns], None);
    result
}

fn probe_in(ns: &str) -> Result<Result<(), String>, String> {
    let path = format!("{NETNS_DIR}/{ns}");
    let netns = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
    thread::spawn(move || enter_netns(&netns))
        .join()
        .map_err(|_| "a thread entering a namespace panicked".to_string())?
        .map_err(|e| format!("setns into {path}: {e}"))?;
    let links = "link add name probe0 type veth peer name probe1\n\
                 link add name probebr type bridge mcast_snooping 0\n\
                 link set dev probe0 master probebr\n";
    run("ip", &["-n", ns, "-batch", "-"], Some(links))?;
    let tbf = format!("qdisc add dev probe0 root {}", tbf_args(100));
    run("tc", &["-n", ns, "-batch", "-"], Some(&tbf))?;
    let netem = run(
        "tc",
        &[
            "-n", ns, "qdisc", "add", "dev", "probe1", "root", "netem", "delay", "1ms",
        ],
        None,
    )
    .map(drop)
    .map_err(|e| format!("this kernel has no netem qdisc ({e})"));
    Ok(netem)
}

/// Writes a line to stderr past the test harness's output capture (which only takes the print
/// macros), so skips and clean-up trouble show in every run, not just failing ones.
fn loud(line: &str) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{line}");
}

fn required() -> bool {
    std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1")
}

/// Arguments of a tbf qdisc at `rate` Mbit/s. The bucket holds 20 ms of traffic, and never less
/// than 64 KiB, one GSO super-packet (a smaller bucket makes tbf split or drop those). The
/// queue holds 100 ms, a switch-like buffer.
fn tbf_args(rate_mbit: u32) -> String {
    let bytes_per_sec = u64::from(rate_mbit) * 1_000_000 / 8;
    let burst = (bytes_per_sec / 50).max(64 * 1024);
    format!("tbf rate {rate_mbit}mbit burst {burst} latency 100ms")
}

fn subnet(slot: u16) -> Ipv4Addr {
    Ipv4Addr::new(NET[0], NET[1], slot as u8, 0)
}

fn bridge_name(slot: u16) -> String {
    format!("dfl{slot}br")
}

fn veth_name(slot: u16, host: usize) -> String {
    format!("dfl{slot}h{host}")
}

/// Keeps namespace names readable and legal: `[A-Za-z0-9_-]`, at most 32 bytes.
fn sanitise(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    if clean.is_empty() {
        "lab".into()
    } else {
        clean
    }
}

/// Binds the abstract socket that stands for `slot`. Abstract names vanish with their last
/// holder, so a crashed owner never leaves a stale lease behind.
fn lease(slot: u16) -> io::Result<UnixListener> {
    let name = UnixSocketAddr::from_abstract_name(format!("dfpull-netns-lab-slot-{slot}"))?;
    UnixListener::bind_addr(&name)
}

fn lease_free_slot() -> (u16, UnixListener) {
    // Start where the previous lab of this process stopped, offset by the pid, so that a slot
    // just released is not the first one tried again.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = NEXT.fetch_add(1, Ordering::Relaxed) as u32 + std::process::id() * 7;
    for i in 0..SLOTS as u32 {
        let slot = ((start + i) % SLOTS as u32) as u16;
        if let Ok(lease) = lease(slot) {
            // A free slot may still hold the remains of a dead owner.
            clear_slot(slot);
            return (slot, lease);
        }
    }
    panic!("all {SLOTS} lab slots are in use");
}

/// Removes what crashed runs left: every slot with resources but no living owner, and probe
/// namespaces of dead processes.
fn sweep_stale() {
    let mut slots = BTreeSet::new();
    for ns in list_netns() {
        if let Some(pid) = ns.strip_prefix("dflprobe-") {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = run("ip", &["netns", "del", &ns], None);
            }
        } else if let Some((slot, _)) = parse_slot(&ns) {
            slots.insert(slot);
        }
    }
    for link in list_links() {
        if let Some((slot, _)) = parse_slot(&link) {
            slots.insert(slot);
        }
    }
    for tool in firewall_tools() {
        let rules = run(tool, &["-w", "-S", "FORWARD"], None).unwrap_or_default();
        for word in rules.split_whitespace() {
            if let Some((slot, "br")) = parse_slot(word) {
                slots.insert(slot);
            }
        }
    }
    let routes = run("ip", &["-4", "route", "show", "type", "unreachable"], None);
    let prefix = format!("{}.{}.", NET[0], NET[1]);
    for line in routes.unwrap_or_default().lines() {
        let slot = line.split_whitespace().find_map(|word| {
            word.strip_prefix(&prefix)?
                .strip_suffix(".0/24")?
                .parse()
                .ok()
        });
        if let Some(slot) = slot {
            slots.insert(slot);
        }
    }
    for slot in slots {
        // Bindable means nobody alive owns the slot; hold the lease while clearing it.
        if let Ok(_lease) = lease(slot) {
            clear_slot(slot);
        }
    }
}

/// Splits `dflN...` names into the slot N and the rest (`br`, `h3`, `-prefix-h3`).
fn parse_slot(name: &str) -> Option<(u16, &str)> {
    let rest = name.strip_prefix("dfl")?;
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let slot: u16 = rest[..digits].parse().ok()?;
    let tail = &rest[digits..];
    let known = tail == "br"
        || tail.starts_with('-')
        || tail
            .strip_prefix('h')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (slot < SLOTS && known).then_some((slot, tail))
}

/// Removes everything of `slot`, tolerating what is already gone. Never panics: it runs in Drop,
/// possibly while a test unwinds.
fn clear_slot(slot: u16) {
    let namespaces: Vec<String> = list_netns()
        .into_iter()
        .filter(|ns| parse_slot(ns).is_some_and(|(s, tail)| s == slot && tail.starts_with('-')))
        .collect();
    for ns in &namespaces {
        if let Err(e) = kill_namespace(ns) {
            loud(&format!("lab clean-up: {e}"));
        }
    }
    // Deleting the root end destroys the pair at once; namespace destruction is asynchronous.
    for link in list_links() {
        if parse_slot(&link).is_some_and(|(s, tail)| s == slot && tail.starts_with('h')) {
            let _ = run("ip", &["link", "del", "dev", &link], None);
        }
    }
    for ns in &namespaces {
        if let Err(e) = run("ip", &["netns", "del", ns], None) {
            loud(&format!("lab clean-up: {e}"));
        }
    }
    let bridge = bridge_name(slot);
    if Path::new(&format!("/sys/class/net/{bridge}")).exists() {
        if let Err(e) = run("ip", &["link", "del", "dev", &bridge], None) {
            loud(&format!("lab clean-up: {e}"));
        }
    }
    for tool in firewall_tools() {
        // Once per rule: a crash between insert and delete can leave more than one.
        for _ in 0..16 {
            if run(tool, &firewall_rule("-D", &bridge), None).is_err() {
                break;
            }
        }
    }
    let subnet = format!("{}/24", subnet(slot));
    let _ = run("ip", &["route", "del", "unreachable", &subnet], None);
}

/// SIGKILLs every process in `ns` until none is left (a process may fork meanwhile).
fn kill_namespace(ns: &str) -> Result<(), String> {
    let own = std::process::id() as i32;
    for _ in 0..100 {
        let listed = run("ip", &["netns", "pids", ns], None)?;
        let pids: Vec<i32> = listed
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            // Never 0 or negative: kill(2) would take those as process groups or everyone.
            .filter(|&pid| pid > 0 && pid != own)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            sys::kill(pid, sys::SIGKILL);
        }
        thread::sleep(Duration::from_millis(10));
    }
    Err(format!("processes in {ns} survive SIGKILL"))
}

fn list_netns() -> Vec<String> {
    match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn list_links() -> Vec<String> {
    match std::fs::read_dir("/sys/class/net") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// With br_netfilter active, bridged frames go through the iptables FORWARD chain.
fn bridge_netfilter_active() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1")
}

/// The firewall front-ends that work here (the system's default variant of each; ip6tables
/// fails on a kernel without IPv6).
fn firewall_tools() -> Vec<&'static str> {
    static TOOLS: OnceLock<Vec<&'static str>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            ["iptables", "ip6tables"]
                .into_iter()
                .filter(|tool| run(tool, &["-w", "-S", "FORWARD"], None).is_ok())
                .collect()
        })
        .clone()
}

/// Keeps the root namespace's end of the lab (bridge, bridge-side veths) without an IPv6
/// link-local address, which the kernel would otherwise give it: with one, the root namespace
/// joins the lab's link (its neighbour discovery shows up in the hosts' byte counts, an mDNS
/// daemon of the machine could answer in the lab). Must run before the link goes up.
fn keep_off_ipv6(link: &str) -> Result<(), String> {
    let knob = format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6");
    match std::fs::write(&knob, "1") {
        Ok(()) => Ok(()),
        // No IPv6 in this kernel: nothing to keep off.
        Err(_) if !Path::new("/proc/sys/net/ipv6").exists() => Ok(()),
        Err(e) => Err(format!("writing 1 to {knob}: {e}")),
    }
}

fn firewall_rule<'a>(op: &'a str, bridge: &'a str) -> [&'a str; 9] {
    [
        "-w", op, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
    ]
}

/// Runs a command to completion; its stdout, or an error naming the command and its stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let shown = || format!("`{program} {}`", args.join(" "));
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", shown()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{}: writing stdin: {e}", shown()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", shown()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stdin_note = stdin
            .map(|s| format!(" with input {s:?}"))
            .unwrap_or_default();
        Err(format!(
            "{}{stdin_note} failed ({}): {}",
            shown(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Moves the calling thread into the network namespace `netns` refers to. Only this thread
/// moves: network namespaces are per thread.
fn enter_netns(netns: &File) -> io::Result<()> {
    if sys::setns(netns.as_raw_fd(), sys::CLONE_NEWNET) == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The three libc calls std does not wrap. Declared here rather than adding a dependency; libc
/// is linked into every Rust program on Linux anyway.
mod sys {
    use std::ffi::c_int;

    pub const CLONE_NEWNET: c_int = 0x4000_0000;
    pub const SIGKILL: c_int = 9;

    // SAFETY: the signatures match glibc's and musl's; none of the three takes a pointer, so
    // any argument values are memory-safe (bad ones only yield an error code).
    unsafe extern "C" {
        pub safe fn setns(fd: c_int, nstype: c_int) -> c_int;
        pub safe fn kill(pid: c_int, sig: c_int) -> c_int;
        pub safe fn geteuid() -> u32;
    }
}
