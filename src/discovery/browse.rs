//! The list of services a process knows, and the one daemon subscription that feeds it.
//!
//! mdns-sd keeps a single listener per service type and daemon: a second `browse` call for the
//! same type silently replaces the first. So the process browses once, on a thread of its own
//! that drains the daemon's channel as events arrive (a receiver that falls behind is
//! disconnected) and folds them into the [`Board`]. One-shot queries ([`super::oneshot`]) add
//! what they learn to the same board. Every change publishes a new list on a watch channel that
//! any number of [`Discovery::browse`](super::Discovery::browse) calls read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use mdns_sd::{Receiver, RecvTimeoutError, ResolvedService, ScopedIp, ServiceEvent};
use tokio::sync::watch;

use super::addrs::{self, LocalAddr, SeenAddr};
use super::{Found, Role, SERVICE_TYPE, txt};

/// How often the browse thread wakes without events, to drop entries that expired.
const TICK: Duration = Duration::from_secs(1);

/// How long a withdrawn instance is not taken back from a one-shot answer that was already
/// on its way.
const TOMBSTONE: Duration = Duration::from_secs(10);

/// One instance as a one-shot answer described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sighting {
    pub instance: String,
    pub port: u16,
    pub props: Vec<(String, String)>,
    pub seen: Vec<SeenAddr>,
    /// When the answer's records expire, unless the daemon confirms the instance.
    pub expires: Instant,
}

/// What is known of one instance, merged over everything heard about it.
#[derive(Debug, Clone)]
struct Entry {
    instance: String,
    role: Role,
    port: u16,
    swarm: Option<String>,
    txt: BTreeMap<String, String>,
    seen: BTreeSet<SeenAddr>,
    /// `None` once the daemon resolved it: it then reports removal itself.
    expires: Option<Instant>,
}

/// Folds what is heard into the current list of services, in the order they were first found.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    entries: Vec<Entry>,
    withdrawn: HashMap<String, Instant>,
}

impl Collector {
    /// Applies one daemon event; returns whether the list changed.
    pub(crate) fn apply(&mut self, event: ServiceEvent, local: &[LocalAddr], now: Instant) -> bool {
        match event {
            ServiceEvent::ServiceResolved(service) => self.resolved(&service, local),
            ServiceEvent::ServiceRemoved(_, fullname) => {
                let instance = instance_name(&fullname);
                let before = self.entries.len();
                self.entries.retain(|e| e.instance != instance);
                self.withdrawn.insert(instance, now);
                before != self.entries.len()
            }
            _ => false,
        }
    }

    fn resolved(&mut self, service: &ResolvedService, local: &[LocalAddr]) -> bool {
        if service.ty_domain != SERVICE_TYPE {
            return false;
        }
        let loopback_ifs: Vec<&str> = local
            .iter()
            .filter(|l| l.ip.is_loopback())
            .map(|l| l.name.as_str())
            .collect();
        let seen: Vec<SeenAddr> = service
            .get_addresses()
            .iter()
            .map(|a| SeenAddr {
                ip: a.to_ip_addr(),
                via_loopback: heard_on(a, &loopback_ifs),
            })
            .collect();
        let props = service
            .get_properties()
            .iter()
            .map(|p| (p.key(), p.val_str()));
        let instance = instance_name(&service.fullname);
        self.withdrawn.remove(&instance);
        self.merge(instance, service.port, props, seen, None)
    }

    /// Applies a one-shot answer; returns whether the list changed.
    pub(crate) fn apply_sighting(&mut self, s: Sighting, now: Instant) -> bool {
        if self
            .withdrawn
            .get(&s.instance)
            .is_some_and(|at| now.duration_since(*at) < TOMBSTONE)
        {
            return false;
        }
        let props = s.props.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        self.merge(s.instance.clone(), s.port, props, s.seen, Some(s.expires))
    }

    fn merge<'a>(
        &mut self,
        instance: String,
        port: u16,
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
        seen: Vec<SeenAddr>,
        expires: Option<Instant>,
    ) -> bool {
        let Some(decoded) = txt::decode(props) else {
            tracing::debug!(%instance, "ignoring a service without a dfpull role");
            return false;
        };
        let known = self.entries.iter().position(|e| e.instance == instance);
        let is_new = known.is_none();
        let entry = match known {
            Some(i) => &mut self.entries[i],
            None => {
                self.entries.push(Entry {
                    instance,
                    role: decoded.role,
                    port,
                    swarm: None,
                    txt: BTreeMap::new(),
                    seen: BTreeSet::new(),
                    expires,
                });
                self.entries.last_mut().expect("just pushed")
            }
        };
        let before = (
            entry.role,
            entry.port,
            entry.swarm.clone(),
            entry.txt.clone(),
        );
        let addrs_before = entry.seen.len();
        // The newest news is right about everything but addresses: those are announced per
        // interface, and one answer may only carry the ones heard so far.
        entry.role = decoded.role;
        entry.port = port;
        entry.swarm = decoded.swarm;
        entry.txt = decoded.extras;
        entry.seen.extend(seen);
        entry.expires = match (entry.expires, expires) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        is_new
            || before
                != (
                    entry.role,
                    entry.port,
                    entry.swarm.clone(),
                    entry.txt.clone(),
                )
            || addrs_before != entry.seen.len()
    }

    /// Drops entries whose one-shot answer expired unconfirmed; returns whether any was.
    pub(crate) fn prune(&mut self, now: Instant) -> bool {
        self.withdrawn
            .retain(|_, at| now.duration_since(*at) < TOMBSTONE);
        let before = self.entries.len();
        self.entries.retain(|e| e.expires.is_none_or(|t| t > now));
        before != self.entries.len()
    }

    /// The services known now, each with at least one usable address.
    pub(crate) fn snapshot(&self, local: &[LocalAddr]) -> Vec<Found> {
        self.entries
            .iter()
            .filter_map(|e| {
                let seen: Vec<SeenAddr> = e.seen.iter().copied().collect();
                let addrs = addrs::rank(&seen, local);
                (!addrs.is_empty()).then(|| Found {
                    instance: e.instance.clone(),
                    role: e.role,
                    addrs,
                    port: e.port,
                    swarm: e.swarm.clone(),
                    txt: e.txt.clone(),
                })
            })
            .collect()
    }
}

/// Whether `addr` was heard on one of the loopback interfaces.
fn heard_on(addr: &ScopedIp, loopback_ifs: &[&str]) -> bool {
    match addr {
        ScopedIp::V4(v4) => v4
            .interface_ids()
            .iter()
            .any(|id| loopback_ifs.contains(&id.name.as_str())),
        ScopedIp::V6(v6) => loopback_ifs.contains(&v6.scope_id().name.as_str()),
        _ => false,
    }
}

/// `seed-1._dfpull._tcp.local.` -> `seed-1`.
pub(crate) fn instance_name(fullname: &str) -> String {
    let suffix = format!(".{SERVICE_TYPE}");
    fullname
        .strip_suffix(&suffix)
        .unwrap_or(fullname)
        .to_owned()
}

/// The collector and the channel its lists are published on.
#[derive(Debug)]
pub(crate) struct Board {
    collector: Mutex<Collector>,
    list: watch::Sender<Vec<Found>>,
    /// Whether a browse thread is draining the daemon.
    browsing: AtomicBool,
}

impl Board {
    pub(crate) fn new() -> Board {
        Board {
            collector: Mutex::new(Collector::default()),
            list: watch::Sender::new(Vec::new()),
            browsing: AtomicBool::new(false),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Vec<Found>> {
        self.list.subscribe()
    }

    /// Claims the right to start the browse thread: true for exactly one caller while none
    /// runs.
    pub(crate) fn start_browsing(&self) -> bool {
        !self.browsing.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn stopped_browsing(&self) {
        self.browsing.store(false, Ordering::Release);
    }

    /// Runs `change` on the collector and publishes the list if anything changed.
    fn update(&self, change: impl FnOnce(&mut Collector, &[LocalAddr], Instant) -> bool) {
        let now = Instant::now();
        let local = addrs::local_addrs();
        let mut collector = self
            .collector
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = change(&mut collector, &local, now) | collector.prune(now);
        if changed {
            let list = collector.snapshot(&local);
            tracing::debug!(services = list.len(), "mDNS services changed");
            self.list.send_replace(list);
        }
    }

    pub(crate) fn apply_sighting(&self, sighting: Sighting) {
        self.update(|c, _, now| c.apply_sighting(sighting, now));
    }

    fn apply_events(&self, events: Vec<ServiceEvent>) {
        self.update(|c, local, now| {
            events
                .into_iter()
                .fold(false, |changed, e| c.apply(e, local, now) | changed)
        });
    }

    fn prune(&self) {
        let now = Instant::now();
        let mut collector = self
            .collector
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if collector.prune(now) {
            let list = collector.snapshot(&addrs::local_addrs());
            self.list.send_replace(list);
        }
    }
}

/// Drains the daemon's browse channel into `board` until the daemon closes it: at shutdown,
/// or if it dropped us for falling behind (the next browse then subscribes again).
pub(crate) fn run(events: Receiver<ServiceEvent>, board: &Board) {
    loop {
        match events.recv_timeout(TICK) {
            Ok(first) => {
                // Take everything already queued, so readers see one list per burst.
                let mut batch = vec![first];
                batch.extend(events.try_iter());
                board.apply_events(batch);
            }
            Err(RecvTimeoutError::Timeout) => board.prune(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    board.stopped_browsing();
    tracing::debug!("mDNS browse ended");
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::IpAddr;

    use mdns_sd::{InterfaceId, ScopedIpV4, ServiceInfo};

    use super::*;

    fn local() -> Vec<LocalAddr> {
        vec![
            LocalAddr {
                name: "lo".into(),
                ip: "127.0.0.1".parse().unwrap(),
                netmask: "255.0.0.0".parse().unwrap(),
            },
            LocalAddr {
                name: "eth0".into(),
                ip: "192.0.2.2".parse().unwrap(),
                netmask: "255.255.255.0".parse().unwrap(),
            },
        ]
    }

    /// A resolved event as the daemon would deliver it, with each address tagged with the
    /// interface it was heard on.
    fn resolved(
        instance: &str,
        port: u16,
        props: &[(&str, &str)],
        addrs: &[(&str, &str)],
    ) -> ServiceEvent {
        let info = ServiceInfo::new(SERVICE_TYPE, instance, "h.local.", "", port, props).unwrap();
        let mut service = info.as_resolved_service();
        service.addresses = addrs
            .iter()
            .map(|(ip, ifname)| {
                ScopedIp::V4(ScopedIpV4::new(
                    ip.parse().unwrap(),
                    InterfaceId {
                        name: ifname.to_string(),
                        index: 1,
                    },
                ))
            })
            .collect::<HashSet<_>>();
        ServiceEvent::ServiceResolved(Box::new(service))
    }

    fn removed(instance: &str) -> ServiceEvent {
        ServiceEvent::ServiceRemoved(SERVICE_TYPE.into(), format!("{instance}.{SERVICE_TYPE}"))
    }

    fn sighting(instance: &str, ip: &str, expires: Instant) -> Sighting {
        Sighting {
            instance: instance.into(),
            port: 7,
            props: vec![("role".into(), "seed".into())],
            seen: vec![SeenAddr {
                ip: ip.parse().unwrap(),
                via_loopback: false,
            }],
            expires,
        }
    }

    #[test]
    fn repeated_events_merge_addresses_and_take_the_newest_details() {
        let mut c = Collector::default();
        let (l, now) = (local(), Instant::now());
        let props = [("role", "seed"), ("swarm", "ab"), ("images", "a")];
        assert!(c.apply(
            resolved("s1", 7000, &props, &[("10.0.0.5", "eth1")]),
            &l,
            now
        ));
        assert!(c.apply(
            resolved("s1", 7001, &props, &[("192.0.2.7", "eth0")]),
            &l,
            now
        ));
        assert!(!c.apply(
            resolved("s1", 7001, &props, &[("192.0.2.7", "eth0")]),
            &l,
            now
        ));
        let list = c.snapshot(&l);
        assert_eq!(list.len(), 1);
        let f = &list[0];
        assert_eq!(f.instance, "s1");
        assert_eq!(f.port, 7001);
        assert_eq!(f.role, Role::Seed);
        assert_eq!(f.swarm.as_deref(), Some("ab"));
        assert_eq!(f.txt["images"], "a");
        // Own subnet first, then the other private address.
        assert_eq!(
            f.addrs,
            vec![
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "10.0.0.5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn removed_instances_disappear_and_others_stay() {
        let mut c = Collector::default();
        let (l, now) = (local(), Instant::now());
        c.apply(
            resolved("a", 1, &[("role", "seed")], &[("192.0.2.7", "eth0")]),
            &l,
            now,
        );
        c.apply(
            resolved("b", 2, &[("role", "peer")], &[("192.0.2.8", "eth0")]),
            &l,
            now,
        );
        assert!(c.apply(removed("a"), &l, now));
        let list = c.snapshot(&l);
        assert_eq!(
            list.iter().map(|f| f.instance.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert!(!c.apply(removed("a"), &l, now));
    }

    #[test]
    fn same_host_service_heard_on_loopback_and_eth0() {
        let mut c = Collector::default();
        let l = local();
        c.apply(
            resolved(
                "me",
                9,
                &[("role", "coordinator")],
                &[("127.0.0.1", "lo"), ("192.0.2.2", "eth0")],
            ),
            &l,
            Instant::now(),
        );
        let f = &c.snapshot(&l)[0];
        assert_eq!(f.addrs[0], "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(f.url(), "http://127.0.0.1:9");
    }

    #[test]
    fn foreign_services_and_unusable_addresses_are_left_out() {
        let mut c = Collector::default();
        let (l, now) = (local(), Instant::now());
        let printer = resolved("x", 1, &[("model", "printer")], &[("192.0.2.9", "eth0")]);
        assert!(!c.apply(printer, &l, now));
        // Known role but only a link-local address: kept in mind, not offered.
        let hidden = resolved("y", 1, &[("role", "peer")], &[("169.254.0.9", "eth0")]);
        assert!(c.apply(hidden, &l, now));
        assert!(c.snapshot(&l).is_empty());
    }

    #[test]
    fn one_shot_entries_expire_unless_the_daemon_confirms_them() {
        let mut c = Collector::default();
        let (l, now) = (local(), Instant::now());
        let soon = now + Duration::from_secs(10);
        assert!(c.apply_sighting(sighting("lone", "192.0.2.7", soon), now));
        assert!(c.apply_sighting(sighting("kept", "192.0.2.8", soon), now));
        c.apply(
            resolved("kept", 7, &[("role", "seed")], &[("192.0.2.8", "eth0")]),
            &l,
            now,
        );
        assert_eq!(c.snapshot(&l).len(), 2);

        assert!(!c.prune(now + Duration::from_secs(9)));
        assert!(c.prune(now + Duration::from_secs(11)));
        let list = c.snapshot(&l);
        assert_eq!(
            list.iter().map(|f| f.instance.as_str()).collect::<Vec<_>>(),
            ["kept"]
        );
    }

    #[test]
    fn a_late_one_shot_answer_does_not_revive_a_withdrawn_instance() {
        let mut c = Collector::default();
        let (l, now) = (local(), Instant::now());
        c.apply(
            resolved("s", 7, &[("role", "seed")], &[("192.0.2.8", "eth0")]),
            &l,
            now,
        );
        c.apply(removed("s"), &l, now);
        let later = now + Duration::from_millis(100);
        assert!(!c.apply_sighting(sighting("s", "192.0.2.8", later + TOMBSTONE), later));
        assert!(c.snapshot(&l).is_empty());
        // Once the daemon hears it again, it is back.
        c.apply(
            resolved("s", 7, &[("role", "seed")], &[("192.0.2.8", "eth0")]),
            &l,
            later,
        );
        assert_eq!(c.snapshot(&l).len(), 1);
    }
}
