//! Which interfaces we speak mDNS on and publish, and in what order a browser tries the
//! addresses it found.
//!
//! Publishing: IPv4 addresses of interfaces that are up, not link-local, and not one of the
//! container or VM bridges a host typically carries (their addresses mean nothing to other
//! hosts). `DFPULL_MDNS_INTERFACE` replaces that guess with a list of interface names. Loopback
//! is always kept: mdns-sd only announces an address on the interface whose subnet holds it, so
//! 127.0.0.1 goes out on `lo` alone and reaches nothing but processes on this host.
//!
//! Ranking: loopback first when the service runs on this host, then addresses on one of our own
//! subnets, then other private ones, then the rest; link-local never.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::DiscoveryError;

/// Environment variable that names the interfaces to use, comma-separated, instead of the guess.
pub const INTERFACE_ENV: &str = "DFPULL_MDNS_INTERFACE";

/// Name prefixes of interfaces whose addresses other hosts cannot reach: container and VM
/// bridges and the host ends of veth pairs.
const VIRTUAL_PREFIXES: &[&str] = &[
    "docker", "br-", "veth", "virbr", "podman", "cni", "lxcbr", "lxdbr",
];

/// One address of one local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalAddr {
    pub name: String,
    pub ip: IpAddr,
    pub netmask: IpAddr,
}

impl LocalAddr {
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        match (self.ip, self.netmask, addr) {
            (IpAddr::V4(ip), IpAddr::V4(mask), IpAddr::V4(a)) => {
                let m = u32::from(mask);
                u32::from(ip) & m == u32::from(a) & m
            }
            (IpAddr::V6(ip), IpAddr::V6(mask), IpAddr::V6(a)) => {
                let m = u128::from(mask);
                u128::from(ip) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

impl From<&if_addrs::Interface> for LocalAddr {
    fn from(i: &if_addrs::Interface) -> Self {
        let netmask = match &i.addr {
            if_addrs::IfAddr::V4(a) => IpAddr::V4(a.netmask),
            if_addrs::IfAddr::V6(a) => IpAddr::V6(a.netmask),
        };
        LocalAddr {
            name: i.name.clone(),
            ip: i.ip(),
            netmask,
        }
    }
}

/// The addresses of this host's interfaces that are up.
pub(crate) fn local_addrs() -> Vec<LocalAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .iter()
        .filter(|i| i.is_oper_up())
        .map(LocalAddr::from)
        .collect()
}

/// Which interfaces we use: the built-in guess or an explicit list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Guess,
    Named(Vec<String>),
}

impl Scope {
    /// Reads [`INTERFACE_ENV`]. Naming an interface this host does not have is an error, so a
    /// typo does not silently leave the service unreachable.
    pub(crate) fn from_env() -> Result<Scope, DiscoveryError> {
        let scope = Scope::parse(&std::env::var(INTERFACE_ENV).unwrap_or_default());
        let present: Vec<String> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.name)
            .collect();
        scope.check_present(&present)?;
        Ok(scope)
    }

    fn check_present(&self, present: &[String]) -> Result<(), DiscoveryError> {
        let Scope::Named(names) = self else {
            return Ok(());
        };
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !present.contains(n))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut available = present.to_vec();
        available.sort();
        available.dedup();
        Err(DiscoveryError::UnknownInterface {
            missing: missing.join(", "),
            available: available.join(", "),
        })
    }

    pub(crate) fn parse(raw: &str) -> Scope {
        let names: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            Scope::Guess
        } else {
            Scope::Named(names)
        }
    }

    /// Whether we speak mDNS on, and publish, the address `ip` of interface `name`.
    pub(crate) fn uses(&self, name: &str, ip: IpAddr) -> bool {
        let IpAddr::V4(v4) = ip else {
            return false;
        };
        if v4.is_loopback() {
            return true;
        }
        if v4.is_link_local() || v4.is_unspecified() {
            return false;
        }
        match self {
            Scope::Guess => !VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p)),
            Scope::Named(names) => names.iter().any(|n| n == name),
        }
    }

    /// Whether `addr` is one that other hosts can reach us on.
    pub(crate) fn publishes_to_lan(&self, addr: &LocalAddr) -> bool {
        !addr.ip.is_loopback() && self.uses(&addr.name, addr.ip)
    }
}

/// One address a service was found at, and whether it arrived over a loopback interface (which
/// only carries packets from this host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SeenAddr {
    pub ip: IpAddr,
    pub via_loopback: bool,
}

/// Orders the addresses of one service, best first, and drops those never worth trying.
///
/// A service is on this host if it was heard over loopback or announced one of our own
/// addresses; then 127.0.0.1 comes first (added if missing). Loopback addresses heard on a
/// real network are someone else's and are dropped.
pub(crate) fn rank(seen: &[SeenAddr], local: &[LocalAddr]) -> Vec<IpAddr> {
    let is_own = |ip: IpAddr| local.iter().any(|l| l.ip == ip && !ip.is_loopback());
    let same_host = seen
        .iter()
        .any(|s| (s.via_loopback && s.ip.is_loopback()) || is_own(s.ip));

    let mut ranked: Vec<(u8, IpAddr)> = seen
        .iter()
        .filter(|s| usable(s.ip) && (!s.ip.is_loopback() || (s.via_loopback && same_host)))
        .map(|s| (tier(s.ip, local), s.ip))
        .collect();
    if same_host && !ranked.iter().any(|(_, ip)| ip.is_loopback()) {
        ranked.push((0, IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    ranked.sort();
    ranked.dedup();
    ranked.into_iter().map(|(_, ip)| ip).collect()
}

fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => !(is_v6_link_local(v6) || v6.is_unspecified() || v6.is_multicast()),
    }
}

fn tier(ip: IpAddr, local: &[LocalAddr]) -> u8 {
    if ip.is_loopback() {
        0
    } else if local.iter().any(|l| !l.ip.is_loopback() && l.contains(ip)) {
        1
    } else if is_private(ip) {
        2
    } else {
        3
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        // RFC 1918, plus the shared space of RFC 6598 (carrier NAT, overlay VPNs).
        IpAddr::V4(v4) => {
            v4.is_private() || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        // Unique local addresses, fc00::/7.
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn is_v6_link_local(v6: Ipv6Addr) -> bool {
    (v6.segments()[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn local(name: &str, ip: &str, mask: &str) -> LocalAddr {
        LocalAddr {
            name: name.into(),
            ip: v4(ip),
            netmask: v4(mask),
        }
    }

    fn host() -> Vec<LocalAddr> {
        vec![
            local("lo", "127.0.0.1", "255.0.0.0"),
            local("eth0", "192.0.2.2", "255.255.255.0"),
            local("docker0", "172.17.0.1", "255.255.0.0"),
        ]
    }

    fn seen(list: &[(&str, bool)]) -> Vec<SeenAddr> {
        list.iter()
            .map(|(ip, lo)| SeenAddr {
                ip: ip.parse().unwrap(),
                via_loopback: *lo,
            })
            .collect()
    }

    #[test]
    fn interface_guess_and_override() {
        let guess = Scope::parse("");
        assert_eq!(guess, Scope::Guess);
        let named = Scope::parse(" eth1, ,br-lan ");
        assert_eq!(named, Scope::Named(vec!["eth1".into(), "br-lan".into()]));

        let cases: &[(&Scope, &str, &str, bool)] = &[
            (&guess, "eth0", "192.0.2.2", true),
            (&guess, "wlan0", "10.1.2.3", true),
            (&guess, "lo", "127.0.0.1", true),
            (&guess, "eth0", "169.254.3.4", false),
            (&guess, "eth0", "fd00::2", false),
            (&guess, "eth0", "fe80::1", false),
            (&guess, "docker0", "172.17.0.1", false),
            (&guess, "br-1a2b3c", "172.18.0.1", false),
            (&guess, "veth12ab", "10.9.9.9", false),
            (&guess, "virbr0", "192.168.122.1", false),
            (&named, "eth0", "192.0.2.2", false),
            (&named, "eth1", "10.0.0.2", true),
            (&named, "br-lan", "192.168.1.2", true),
            (&named, "lo", "127.0.0.1", true),
            (&named, "br-lan", "169.254.1.1", false),
        ];
        for (scope, name, ip, want) in cases {
            assert_eq!(scope.uses(name, v4(ip)), *want, "{scope:?} {name} {ip}");
        }
    }

    #[test]
    fn override_naming_a_missing_interface_is_an_error() {
        let present = ["lo".to_string(), "eth0".to_string(), "eth0".to_string()];
        assert!(Scope::Guess.check_present(&present).is_ok());
        assert!(Scope::parse("eth0,lo").check_present(&present).is_ok());
        let err = Scope::parse("eth0,eht1")
            .check_present(&present)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DFPULL_MDNS_INTERFACE names eht1, which this host does not have (it has: eth0, lo)"
        );
    }

    #[test]
    fn remote_service_is_ordered_own_subnet_then_private_then_rest() {
        let got = rank(
            &seen(&[
                ("203.0.113.7", false),
                ("10.8.0.5", false),
                ("192.0.2.9", false),
                ("169.254.10.1", false),
                ("fe80::1", false),
                ("127.0.0.1", false),
            ]),
            &host(),
        );
        assert_eq!(
            got,
            vec![v4("192.0.2.9"), v4("10.8.0.5"), v4("203.0.113.7")]
        );
    }

    #[test]
    fn service_on_this_host_gets_loopback_first() {
        // Announced one of our own addresses: loopback is added in front.
        let got = rank(&seen(&[("192.0.2.2", false)]), &host());
        assert_eq!(got, vec![v4("127.0.0.1"), v4("192.0.2.2")]);

        // Heard over loopback only (a host whose only interface is lo).
        let got = rank(
            &seen(&[("127.0.0.1", true)]),
            &[local("lo", "127.0.0.1", "255.0.0.0")],
        );
        assert_eq!(got, vec![v4("127.0.0.1")]);

        // Both, as on a host with lo and eth0: no duplicate loopback.
        let got = rank(&seen(&[("192.0.2.2", false), ("127.0.0.1", true)]), &host());
        assert_eq!(got, vec![v4("127.0.0.1"), v4("192.0.2.2")]);
    }

    #[test]
    fn nothing_usable_gives_nothing() {
        assert!(rank(&seen(&[("169.254.1.1", false)]), &host()).is_empty());
        assert!(rank(&seen(&[("127.0.0.1", false)]), &host()).is_empty());
    }

    #[test]
    fn subnet_membership() {
        let eth = local("eth0", "10.1.2.3", "255.255.0.0");
        assert!(eth.contains(v4("10.1.200.1")));
        assert!(!eth.contains(v4("10.2.0.1")));
        assert!(!eth.contains("fd00::1".parse().unwrap()));
        assert!(is_private(v4("100.100.1.1")));
        assert!(!is_private(v4("100.128.0.1")));
        assert!(is_private("fd12::1".parse().unwrap()));
    }
}
