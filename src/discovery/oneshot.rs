//! One-shot queries, so a browse started next to a fresh advert resolves at once.
//!
//! RFC 6762 section 6 forbids multicasting a record more than once a second, and mdns-sd
//! applies that to every multicast answer. An advert is announced when registered and again
//! about 1.1 s later, so a browser that queries in the two seconds after a seeder starts (the
//! usual case: seeder and peers launched together) has its answer suppressed and waits for the
//! next query, one second on. Measured here: about 1050 ms instead of 80.
//!
//! A query sent from a port other than 5353 is a "legacy" one-shot query (section 5.1): the
//! responder answers it by unicast (section 6.7), at once, and outside the rate limit. So each
//! browse also sends one such query on every interface in scope, parses the answers (PTR plus
//! SRV, TXT and address records as additionals) and adds what it learns to the board. The
//! entries it makes live a few seconds unless the daemon confirms them, which it does within
//! about a second; from then on the daemon tracks them, goodbyes included.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SERVICE_TYPE;
use super::addrs::{Scope, SeenAddr, local_addrs};
use super::browse::{Board, Sighting, instance_name};

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const MDNS_PORT: u16 = 5353;

/// How long to listen for answers. Responders answer within milliseconds; by the time this
/// ends the daemon's own browse has caught up.
const LISTEN: Duration = Duration::from_millis(1500);

/// How long an instance known only from a one-shot answer is listed. The daemon confirms a
/// live one within about 1.1 s (the rate limit's second); one it never heard of cannot report
/// its goodbye, so an advert withdrawn right after answering is gone from the list by then.
const UNCONFIRMED: Duration = Duration::from_secs(3);

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_TXT: u16 = 16;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// Sends one query on every interface in `scope` and feeds the answers to `board`, on a
/// thread of its own. Failures only cost speed, so they are logged, not returned.
pub(crate) fn spawn(scope: Scope, board: Arc<Board>) {
    let started = std::thread::Builder::new()
        .name("dfpull-mdns-query".into())
        .spawn(move || {
            if let Err(e) = query(&scope, &board) {
                tracing::debug!("one-shot mDNS query: {e}");
            }
        });
    if let Err(e) = started {
        tracing::debug!("cannot start the one-shot mDNS query: {e}");
    }
}

fn query(scope: &Scope, board: &Board) -> io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
    let id: u16 = rand::random();
    let packet = encode_query(id, SERVICE_TYPE);
    let group = SocketAddr::V4(SocketAddrV4::new(GROUP, MDNS_PORT));
    let mut sent = 0;
    for local in local_addrs() {
        let IpAddr::V4(ip) = local.ip else { continue };
        if !scope.uses(&local.name, local.ip) {
            continue;
        }
        // The interface is chosen explicitly, not by route: a host with only loopback has no
        // route to the group at all.
        let out = socket
            .set_multicast_if_v4(&ip)
            .and_then(|()| socket.send_to(&packet, &group.into()));
        match out {
            Ok(_) => sent += 1,
            Err(e) => tracing::debug!(interface = %local.name, "one-shot mDNS query: {e}"),
        }
    }
    if sent == 0 {
        return Ok(());
    }

    let socket: UdpSocket = socket.into();
    let deadline = Instant::now() + LISTEN;
    let mut records = Records::default();
    let mut buf = vec![0u8; 9000];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        socket.set_read_timeout(Some(left))?;
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if records
            .add(&buf[..len], id, from.ip().is_loopback())
            .is_none()
        {
            continue;
        }
        for sighting in records.sightings(Instant::now()) {
            board.apply_sighting(sighting);
        }
    }
}

/// A standard query for the PTR records of `name`, without the unicast-response bit (the
/// source port already asks for a unicast answer).
fn encode_query(id: u16, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&TYPE_PTR.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// Records gathered from the answers so far (an answer may span several packets).
#[derive(Debug, Default)]
struct Records {
    /// Instance full names, lowercase, in the order first seen.
    instances: Vec<String>,
    /// Full name -> (port, target host, TTL).
    srv: HashMap<String, (u16, String, u32)>,
    txt: HashMap<String, Vec<(String, String)>>,
    addrs: HashMap<String, BTreeSet<SeenAddr>>,
}

impl Records {
    /// Adds the records of one answer packet; `None` if it is not an answer to query `id`.
    fn add(&mut self, packet: &[u8], id: u16, via_loopback: bool) -> Option<()> {
        let mut r = Reader { packet, pos: 0 };
        if r.u16()? != id || r.u16()? & 0x8000 == 0 {
            return None;
        }
        let questions = r.u16()?;
        let records = r.u16()? as usize + r.u16()? as usize + r.u16()? as usize;
        for _ in 0..questions {
            r.name()?;
            r.skip(4)?;
        }
        for _ in 0..records {
            let owner = r.name()?.to_ascii_lowercase();
            let rtype = r.u16()?;
            let class = r.u16()? & 0x7fff;
            let ttl = r.u32()?;
            let len = r.u16()? as usize;
            let end = r.pos.checked_add(len).filter(|&e| e <= packet.len())?;
            // A TTL of 0 is a goodbye; the daemon handles those.
            if class == CLASS_IN && ttl > 0 {
                match rtype {
                    TYPE_PTR if owner == SERVICE_TYPE => {
                        let instance = r.name()?.to_ascii_lowercase();
                        if !self.instances.contains(&instance) {
                            self.instances.push(instance);
                        }
                    }
                    TYPE_SRV => {
                        r.skip(4)?;
                        let port = r.u16()?;
                        let target = r.name()?.to_ascii_lowercase();
                        self.srv.insert(owner, (port, target, ttl));
                    }
                    TYPE_TXT => {
                        self.txt.insert(owner, decode_txt(&packet[r.pos..end]));
                    }
                    TYPE_A if len == 4 => {
                        let b = &packet[r.pos..end];
                        let ip = IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
                        self.addrs
                            .entry(owner)
                            .or_default()
                            .insert(SeenAddr { ip, via_loopback });
                    }
                    _ => {}
                }
            }
            r.pos = end;
        }
        Some(())
    }

    /// Every instance known completely: PTR, SRV, TXT and at least one address.
    fn sightings(&self, now: Instant) -> Vec<Sighting> {
        self.instances
            .iter()
            .filter_map(|fullname| {
                let (port, target, ttl) = self.srv.get(fullname)?;
                let props = self.txt.get(fullname)?.clone();
                let seen: Vec<SeenAddr> = self.addrs.get(target)?.iter().copied().collect();
                Some(Sighting {
                    instance: instance_name(fullname),
                    port: *port,
                    props,
                    seen,
                    expires: now + Duration::from_secs(u64::from(*ttl)).min(UNCONFIRMED),
                })
            })
            .collect()
    }
}

/// TXT rdata: length-prefixed `key=value` strings.
fn decode_txt(mut data: &[u8]) -> Vec<(String, String)> {
    let mut props = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let len = usize::from(len).min(rest.len());
        let (entry, tail) = rest.split_at(len);
        data = tail;
        let text = String::from_utf8_lossy(entry);
        let (key, value) = text.split_once('=').unwrap_or((&text, ""));
        if !key.is_empty() {
            props.push((key.to_owned(), value.to_owned()));
        }
    }
    props
}

struct Reader<'a> {
    packet: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        self.pos = self
            .pos
            .checked_add(n)
            .filter(|&p| p <= self.packet.len())?;
        Some(())
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.packet.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.packet.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A domain name, following compression pointers, as `a.b.c.` (labels are taken as text;
    /// ours never contain dots).
    fn name(&mut self) -> Option<String> {
        let mut name = String::new();
        let mut at = self.pos;
        let mut resume = None;
        for _ in 0..128 {
            let len = *self.packet.get(at)?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    self.pos = resume.unwrap_or(at + 1);
                    if name.is_empty() {
                        name.push('.');
                    }
                    return (name.len() <= 255).then_some(name);
                }
                0x00 => {
                    let label = self.packet.get(at + 1..at + 1 + usize::from(len))?;
                    name.push_str(&String::from_utf8_lossy(label));
                    name.push('.');
                    at += 1 + usize::from(len);
                }
                0xc0 => {
                    let low = *self.packet.get(at + 1)?;
                    resume.get_or_insert(at + 2);
                    at = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                }
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an answer the way a responder lays it out: PTR in the answers, SRV, TXT and A
    /// as additionals, names compressed against the question.
    fn answer(
        id: u16,
        instance: &str,
        port: u16,
        txt: &[&str],
        addrs: &[[u8; 4]],
        ttl: u32,
    ) -> Vec<u8> {
        let mut p = encode_query(id, SERVICE_TYPE);
        p[2] = 0x84; // response, authoritative
        p[7] = 1; // one answer
        p[11] = 2 + addrs.len() as u8; // additionals
        let name = |p: &mut Vec<u8>, labels: &[&str], tail: Option<u16>| {
            for l in labels {
                p.push(l.len() as u8);
                p.extend_from_slice(l.as_bytes());
            }
            match tail {
                Some(ptr) => p.extend_from_slice(&(0xc000 | ptr).to_be_bytes()),
                None => p.push(0),
            }
        };
        let record = |p: &mut Vec<u8>, rtype: u16, rdata: Vec<u8>| {
            p.extend_from_slice(&rtype.to_be_bytes());
            p.extend_from_slice(&(0x8000 | CLASS_IN).to_be_bytes());
            p.extend_from_slice(&ttl.to_be_bytes());
            p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            p.extend_from_slice(&rdata);
        };
        // PTR: owner = the question's name (offset 12), rdata = instance + pointer to it.
        name(&mut p, &[], Some(12));
        let mut rdata = Vec::new();
        name(&mut rdata, &[instance], None);
        rdata.pop();
        rdata.extend_from_slice(&0xc00cu16.to_be_bytes());
        record(&mut p, TYPE_PTR, rdata);
        // SRV: owner spelled out in full, target host.local.
        name(&mut p, &[instance, "_dfpull", "_tcp", "local"], None);
        let mut rdata = vec![0, 0, 0, 0];
        rdata.extend_from_slice(&port.to_be_bytes());
        name(&mut rdata, &["h1", "local"], None);
        record(&mut p, TYPE_SRV, rdata);
        name(&mut p, &[instance, "_dfpull", "_tcp", "local"], None);
        let mut rdata = Vec::new();
        for s in txt {
            rdata.push(s.len() as u8);
            rdata.extend_from_slice(s.as_bytes());
        }
        record(&mut p, TYPE_TXT, rdata);
        for a in addrs {
            name(&mut p, &["h1", "local"], None);
            record(&mut p, TYPE_A, a.to_vec());
        }
        p
    }

    #[test]
    fn query_asks_for_the_service_ptr() {
        let q = encode_query(0x1234, SERVICE_TYPE);
        assert_eq!(&q[..4], &[0x12, 0x34, 0, 0]);
        assert_eq!(&q[12..20], b"\x07_dfpull");
        assert_eq!(&q[q.len() - 4..], &[0, 12, 0, 1]);
    }

    #[test]
    fn an_answer_becomes_a_sighting() {
        let mut records = Records::default();
        let packet = answer(
            7,
            "Seed-1",
            7341,
            &["role=seed", "swarm=ab12", "flag"],
            &[[192, 0, 2, 7], [10, 0, 0, 7]],
            10,
        );
        assert!(records.add(&packet, 7, false).is_some());
        let now = Instant::now();
        let s = records.sightings(now);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].instance, "seed-1");
        assert_eq!(s[0].port, 7341);
        assert_eq!(
            s[0].props,
            [("role", "seed"), ("swarm", "ab12"), ("flag", "")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let ips: Vec<IpAddr> = s[0].seen.iter().map(|a| a.ip).collect();
        assert_eq!(
            ips,
            ["10.0.0.7", "192.0.2.7"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert_eq!(s[0].expires, now + UNCONFIRMED);
    }

    #[test]
    fn strangers_goodbyes_and_garbage_are_ignored() {
        let mut records = Records::default();
        let packet = answer(7, "s", 1, &["role=seed"], &[[192, 0, 2, 7]], 10);
        assert!(
            records.add(&packet, 8, false).is_none(),
            "answer to another query"
        );
        let goodbye = answer(7, "s", 1, &["role=seed"], &[[192, 0, 2, 7]], 0);
        assert!(records.add(&goodbye, 7, false).is_some());
        assert!(records.sightings(Instant::now()).is_empty());
        for cut in 0..packet.len() {
            let _ = records.add(&packet[..cut], 7, false);
        }
        // A pointer loop must end, not hang.
        let mut looped = packet.clone();
        looped[12] = 0xc0;
        looped[13] = 12;
        assert!(Records::default().add(&looped, 7, false).is_none());
    }

    #[test]
    fn txt_strings_split_on_the_first_equals() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            decode_txt(b"\x05a=b=c\x00\x03k=v"),
            pairs(&[("a", "b=c"), ("k", "v")])
        );
        // A length running past the end is clamped rather than trusted.
        assert_eq!(decode_txt(b"\x09x=1"), pairs(&[("x", "1")]));
    }
}
