//! Finding swarms on the LAN with mDNS service discovery, no addresses configured.
//!
//! Each role a process plays (seeder, coordinator, peer) is advertised as one instance of
//! [`SERVICE_TYPE`]; the TXT record carries the role, the swarm id and a few small extras
//! ([`Advert`]). Browsing ([`Discovery::browse`]) returns what was found as [`Found`] values,
//! addresses ordered best first.
//!
//! A process runs exactly one mdns-sd daemon: several would each bind UDP 5353 and split the
//! traffic between them. [`Discovery::new`] therefore hands out handles to one shared daemon,
//! started by the first call and stopped when the last handle (or [`AdvertHandle`]) is gone.
//!
//! # What goes out, and on which interfaces
//! mdns-sd, left alone, speaks on every interface that is up, loopback included, and
//! announces on each one the addresses of that interface's subnets: IPv6 link-local and ULA
//! over IPv6, and it talks to containers on docker bridges. We hold both the daemon and each
//! advert to one interface predicate: IPv4 only, not link-local, not a container or VM bridge
//! (`docker*`, `br-*`, `veth*`, `virbr*`, ...), loopback kept; or exactly the interfaces named
//! in [`INTERFACE_ENV`] (plus loopback). The daemon re-reads the interfaces every 5 s, so
//! addresses follow DHCP and interfaces coming and going.
//!
//! # Same host, and hosts with nothing but loopback
//! What mdns-sd does, read from its sources (0.21.7) and checked by the tests:
//! - It binds one socket per IP family to port 5353 with `SO_REUSEADDR` and `SO_REUSEPORT`,
//!   joins 224.0.0.251 on each selected interface and leaves `IP_MULTICAST_LOOP` on. Linux
//!   gives a copy of every multicast datagram to each socket bound to the port, and the loop
//!   flag makes a host receive what it sent itself, so two processes on one host hear each
//!   other on eth0 with nothing else on the wire.
//! - Loopback interfaces are selected by default ([`mdns_sd::IfKind::LoopbackV4`] only names
//!   them, for enabling or disabling). Multicast over `lo` works on Linux although `lo` lacks
//!   the MULTICAST flag, because the daemon picks the outgoing interface with
//!   `IP_MULTICAST_IF` rather than by route; this holds in a namespace whose only interface is
//!   `lo`, with no route at all.
//! - An address is only ever announced on the interface whose subnet contains it, and every
//!   address received is tagged with the interface it came in on. So publishing 127.0.0.1 is
//!   safe: it goes out on `lo` alone, only this host hears it, and the browser can tell it was
//!   heard there.
//!
//! So a process on this host finds the service at 127.0.0.1 even when no other interface
//! exists. A browser that sees one of its own addresses (or anything heard on loopback) knows
//! the service runs on this host and puts 127.0.0.1 first, adding it if it was not announced.
//! Across hosts, addresses on one of our own subnets come first, then other private ones.
//!
//! # Speed
//! Names are unique by construction (host, role, pid and a random suffix), so adverts skip the
//! three probes of RFC 6762 section 8.1 (about 750 ms) and are announced at once. A plain mDNS
//! browse then takes 20-100 ms (a 10-50 ms query jitter, a 10-50 ms answer delay) except in
//! the two seconds after an advert appears, when the once-a-second multicast rate limit holds
//! the answer back for a whole second. Each browse therefore also sends a one-shot query,
//! which responders answer by unicast at once; see the `oneshot` module. Measured here: about
//! 1 ms on one host or across two namespaces, against 1050 ms without it.

mod addrs;
mod browse;
mod oneshot;
mod txt;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, IfPredicate, ServiceDaemon, ServiceInfo};
use serde::Serialize;
use tokio::sync::watch;

pub use addrs::INTERFACE_ENV;
pub use txt::{KEY_OMITTED, SWARM_ID_MAX, TXT_BUDGET};

use addrs::Scope;
use browse::Board;

/// The DNS-SD service type every dfpull role is advertised under.
pub const SERVICE_TYPE: &str = "_dfpull._tcp.local.";

/// How long dropping an advert waits for its goodbye packet to be sent.
const GOODBYE_WAIT: Duration = Duration::from_millis(500);

/// How long stopping the daemon waits for it to send goodbyes and exit.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Least time between two one-shot queries of a process.
const QUERY_GAP: Duration = Duration::from_secs(1);

/// What an advertised service does in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves the images from their origin; embeds a coordinator unless told otherwise.
    Seed,
    /// A standalone coordinator.
    Coordinator,
    /// A peer that fetches blocks and serves the ones it holds.
    Peer,
}

impl Role {
    /// The name used in TXT records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seed => "seed",
            Role::Coordinator => "coordinator",
            Role::Peer => "peer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DiscoveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seed" => Ok(Role::Seed),
            "coordinator" => Ok(Role::Coordinator),
            "peer" => Ok(Role::Peer),
            other => Err(DiscoveryError::UnknownRole(other.to_owned())),
        }
    }
}

/// A service to advertise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// What the service does.
    pub role: Role,
    /// TCP port it serves HTTP on (not 0: advertise after binding).
    pub port: u16,
    /// Short id of the swarm, 1 to [`SWARM_ID_MAX`] hex digits.
    pub swarm: Option<String>,
    /// Small extras, e.g. image names. Keys are lowercase ASCII letters, digits, `-`, `_` or
    /// `.`; `role`, `swarm` and `omitted` are reserved. Extras are carried whole or not at all
    /// within [`TXT_BUDGET`], in this order; a browser sees [`KEY_OMITTED`] set to the number
    /// left out. Fetch anything large over HTTP instead.
    pub txt: Vec<(String, String)>,
}

impl Advert {
    /// An advert with no swarm id and no extras.
    pub fn new(role: Role, port: u16) -> Advert {
        Advert {
            role,
            port,
            swarm: None,
            txt: Vec::new(),
        }
    }
}

/// A service found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Instance name, unique on the LAN (the same as [`AdvertHandle::instance`]).
    pub instance: String,
    /// What the service does.
    pub role: Role,
    /// Where to reach it, best first; never empty, never link-local. 127.0.0.1 leads when the
    /// service runs on this host.
    pub addrs: Vec<IpAddr>,
    /// TCP port of its HTTP server.
    pub port: u16,
    /// Swarm id, lowercase hex, if it advertised one.
    pub swarm: Option<String>,
    /// The extras of its TXT record (without role and swarm).
    pub txt: BTreeMap<String, String>,
}

impl Found {
    /// Base URL at the best address, e.g. `http://192.0.2.7:7341`.
    pub fn url(&self) -> String {
        let ip = self
            .addrs
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        format!("http://{}", SocketAddr::new(ip, self.port))
    }

    /// Base URLs at every address, best first, for callers that fall back on failure.
    pub fn urls(&self) -> impl Iterator<Item = String> + '_ {
        self.addrs
            .iter()
            .map(|ip| format!("http://{}", SocketAddr::new(*ip, self.port)))
    }
}

/// Errors of advertising and browsing.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The daemon could not be created.
    #[error("cannot start the mDNS responder")]
    Start(#[source] mdns_sd::Error),
    /// The daemon refused or failed a request.
    #[error("the mDNS responder could not {action}")]
    Daemon {
        /// What was asked, e.g. "register the advert".
        action: &'static str,
        #[source]
        source: mdns_sd::Error,
    },
    /// The daemon thread is gone.
    #[error("the mDNS responder has stopped")]
    Stopped,
    /// The browse thread could not be started.
    #[error("cannot start the mDNS browse thread")]
    Thread(#[source] std::io::Error),
    /// [`INTERFACE_ENV`] names interfaces this host does not have.
    #[error("{INTERFACE_ENV} names {missing}, which this host does not have (it has: {available})")]
    UnknownInterface {
        /// The names not found, comma-separated.
        missing: String,
        /// The interfaces the host has, comma-separated.
        available: String,
    },
    /// An advert with port 0.
    #[error("cannot advertise port 0: bind the server first and advertise the port it got")]
    PortZero,
    /// A swarm id that is not 1 to [`SWARM_ID_MAX`] hex digits.
    #[error("swarm id {0:?} is not 1 to {SWARM_ID_MAX} hex digits")]
    InvalidSwarmId(String),
    /// A TXT extra whose key cannot be used.
    #[error("TXT key {key:?} cannot be used: {reason}")]
    InvalidTxtKey {
        /// The key given.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A role name that is not seed, coordinator or peer.
    #[error("unknown role {0:?} (expected seed, coordinator or peer)")]
    UnknownRole(String),
}

fn daemon_error(action: &'static str, source: mdns_sd::Error) -> DiscoveryError {
    match source {
        mdns_sd::Error::DaemonShutdown => DiscoveryError::Stopped,
        source => DiscoveryError::Daemon { action, source },
    }
}

/// The process's daemon and what its browsing found.
struct Shared {
    daemon: ServiceDaemon,
    scope: Scope,
    board: Arc<Board>,
    /// When the last one-shot query went out.
    last_query: Mutex<Option<Instant>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn predicate(&self, wanted: bool) -> IfKind {
        let scope = self.scope.clone();
        IfKind::Predicate(IfPredicate::new(move |i| {
            scope.uses(&i.name, i.ip()) == wanted
        }))
    }

    /// Sends a one-shot query unless one went out less than [`QUERY_GAP`] ago: callers that
    /// browse in a loop get the daemon's continuous browsing, not a query each.
    fn query_once(&self) {
        let mut last = self
            .last_query
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < QUERY_GAP) {
            return;
        }
        *last = Some(now);
        oneshot::spawn(self.scope.clone(), Arc::clone(&self.board));
    }

    /// A receiver of the current service list; starts the browse thread if none runs.
    fn subscribe(&self) -> Result<watch::Receiver<Vec<Found>>, DiscoveryError> {
        if self.board.start_browsing() {
            let started = self
                .daemon
                .browse(SERVICE_TYPE)
                .map_err(|e| daemon_error("start browsing", e))
                .and_then(|events| {
                    let board = Arc::clone(&self.board);
                    std::thread::Builder::new()
                        .name("dfpull-mdns-browse".into())
                        .spawn(move || browse::run(events, &board))
                        .map_err(DiscoveryError::Thread)
                });
            if let Err(e) = started {
                self.board.stopped_browsing();
                return Err(e);
            }
        }
        Ok(self.board.subscribe())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The daemon sends goodbyes for adverts still registered before it exits.
        match self.daemon.shutdown() {
            Ok(done) => {
                let _ = done.recv_timeout(SHUTDOWN_WAIT);
            }
            Err(e) => tracing::debug!("mDNS shutdown: {e}"),
        }
    }
}

/// The process-wide daemon, if one runs.
static SHARED: Mutex<Weak<Shared>> = Mutex::new(Weak::new());

/// A handle to this process's mDNS daemon, for advertising and browsing. Cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    shared: Arc<Shared>,
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("scope", &self.shared.scope)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Returns a handle to the process's daemon, starting it if none runs. Reads
    /// [`INTERFACE_ENV`] when starting.
    pub fn new() -> Result<Discovery, DiscoveryError> {
        let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = slot.upgrade() {
            return Ok(Discovery { shared });
        }
        let scope = Scope::from_env()?;
        let daemon = ServiceDaemon::new().map_err(DiscoveryError::Start)?;
        let shared = Arc::new(Shared {
            daemon,
            scope,
            board: Arc::new(Board::new()),
            last_query: Mutex::new(None),
        });
        // IPv6 and every interface outside the scope are dropped; loopback stays.
        shared
            .daemon
            .disable_interface(shared.predicate(false))
            .map_err(|e| daemon_error("select interfaces", e))?;
        *slot = Arc::downgrade(&shared);
        tracing::debug!(scope = ?shared.scope, "mDNS responder started");
        Ok(Discovery { shared })
    }

    /// Advertises `advert` until the returned handle is dropped or withdrawn.
    pub fn advertise(&self, advert: &Advert) -> Result<AdvertHandle, DiscoveryError> {
        if advert.port == 0 {
            return Err(DiscoveryError::PortZero);
        }
        let encoded = txt::encode(advert.role, advert.swarm.as_deref(), &advert.txt)?;
        let instance = instance_label(&host_name(), advert.role);
        if encoded.omitted > 0 {
            tracing::warn!(
                %instance,
                omitted = encoded.omitted,
                "TXT extras left out of the advert to keep it in one packet"
            );
        }
        let host = format!("{instance}.local.");
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            "",
            advert.port,
            &encoded.props[..],
        )
        .map_err(|e| daemon_error("build the advert", e))?
        .enable_addr_auto();
        info.set_interfaces(vec![self.shared.predicate(true)]);
        info.set_requires_probe(false);
        let fullname = info.get_fullname().to_owned();
        self.shared
            .daemon
            .register(info)
            .map_err(|e| daemon_error("register the advert", e))?;

        let lan: Vec<IpAddr> = addrs::local_addrs()
            .iter()
            .filter(|a| self.shared.scope.publishes_to_lan(a))
            .map(|a| a.ip)
            .collect();
        if lan.is_empty() {
            tracing::warn!(
                %instance,
                "no LAN address to advertise: only processes on this host will find it \
                 (set {INTERFACE_ENV} to choose interfaces)"
            );
        } else {
            tracing::debug!(
                %instance,
                port = advert.port,
                addrs = ?lan,
                txt_bytes = encoded.wire_len(),
                "advertising"
            );
        }
        Ok(AdvertHandle {
            shared: Arc::clone(&self.shared),
            fullname,
            instance,
            live: true,
        })
    }

    /// Collects the dfpull services on the LAN for up to `window`, returning early as soon as
    /// `stop_early` accepts the list (it is called with every new version of it, first with
    /// what is already known). Services found before the call are included; services that
    /// said goodbye or expired are not. Runs on Tokio, with the time driver enabled.
    pub async fn browse(
        &self,
        window: Duration,
        stop_early: impl Fn(&[Found]) -> bool,
    ) -> Result<Vec<Found>, DiscoveryError> {
        let mut list = self.shared.subscribe()?;
        self.shared.query_once();
        let deadline = tokio::time::Instant::now() + window;
        loop {
            {
                let now = list.borrow_and_update();
                if stop_early(&now) {
                    return Ok(now.clone());
                }
            }
            // The sender lives as long as `self`, so `changed` only ever waits.
            if tokio::time::timeout_at(deadline, list.changed())
                .await
                .is_err()
            {
                return Ok(list.borrow().clone());
            }
        }
    }

    /// Drops this handle. Once no other handle or advert uses it, the daemon stops, sending
    /// goodbyes for any advert still up; that waits for the daemon, 1 s at most.
    pub fn shutdown(self) {
        drop(self);
    }
}

/// A live advert. Dropping it withdraws the advert (a goodbye packet tells browsers at once).
#[derive(Debug)]
pub struct AdvertHandle {
    shared: Arc<Shared>,
    fullname: String,
    instance: String,
    live: bool,
}

impl AdvertHandle {
    /// The instance name browsers see in [`Found::instance`].
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Withdraws the advert and waits until its goodbye has been sent.
    pub fn withdraw(mut self) -> Result<(), DiscoveryError> {
        self.live = false;
        self.unregister()
    }

    fn unregister(&self) -> Result<(), DiscoveryError> {
        let done = self
            .shared
            .daemon
            .unregister(&self.fullname)
            .map_err(|e| daemon_error("withdraw the advert", e))?;
        done.recv_timeout(GOODBYE_WAIT)
            .map(drop)
            .map_err(|_| DiscoveryError::Stopped)
    }
}

impl Drop for AdvertHandle {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        if let Err(e) = self.unregister() {
            tracing::debug!(instance = %self.instance, "withdrawing advert: {e}");
        }
    }
}

/// This host's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// A DNS label unique on the LAN: `host-role-pid-random`, at most 63 bytes.
fn instance_label(host: &str, role: Role) -> String {
    let mut clean: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    clean = clean.trim_matches('-').to_owned();
    if clean.is_empty() {
        clean = "host".into();
    }
    format!(
        "{clean}-{role}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_labels_are_clean_unique_and_short() {
        let a = instance_label("My_Host.example.com", Role::Seed);
        let b = instance_label("My_Host.example.com", Role::Seed);
        assert!(a.starts_with("my-host-example-com-seed-"), "{a}");
        assert_ne!(a, b, "two adverts of one process must not share a name");
        let long = instance_label(&"x".repeat(200), Role::Coordinator);
        assert!(long.len() <= 63, "{long}");
        assert!(instance_label("\n", Role::Peer).starts_with("host-peer-"));
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }

    #[test]
    fn urls_put_the_best_address_first() {
        let f = Found {
            instance: "x".into(),
            role: Role::Seed,
            addrs: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            port: 7341,
            swarm: None,
            txt: BTreeMap::new(),
        };
        assert_eq!(f.url(), "http://10.0.0.2:7341");
        assert_eq!(
            f.urls().collect::<Vec<_>>(),
            ["http://10.0.0.2:7341", "http://[fd00::2]:7341"]
        );
    }

    #[test]
    fn roles_round_trip_and_errors_read_well() {
        for r in [Role::Seed, Role::Coordinator, Role::Peer] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!(
            "tracker".parse::<Role>().unwrap_err().to_string(),
            "unknown role \"tracker\" (expected seed, coordinator or peer)"
        );
        let err = DiscoveryError::Daemon {
            action: "register the advert",
            source: mdns_sd::Error::Again,
        };
        assert_eq!(
            err.to_string(),
            "the mDNS responder could not register the advert"
        );
    }
}
