//! The pure scheduler: which block each peer fetches next, and from whom.
//!
//! It owns the coordinator's whole view of one swarm: which host holds which block, what is in
//! flight from whom since when, which sources each peer avoids. It does no I/O, reads no clock
//! (time is passed in) and draws its randomness from its own seeded generator, so a test can
//! replay any schedule.
//!
//! # Why the policy looks like this
//! One origin with uplink `R` and `N` peers with uplink `R` each cannot finish faster than
//! `F / R` (Kumar & Ross): the origin must push every byte once. The schedule that reaches that
//! bound keeps the origin's uplink busy with bytes no peer has yet, and every peer's uplink busy
//! forwarding those bytes to the others (mutualcast). Hence:
//!
//! * **Origin spreading.** While some wanted block is held by no peer, the origin serves only
//!   such blocks, a different one to each peer (a block already in flight from the origin is
//!   handed out again only when nothing else is left). Every block enters the swarm about once
//!   and the peers spread it; the origin uploads about one copy in total. Once every wanted
//!   block is somewhere in the swarm the origin is an ordinary holder again, used when no peer
//!   holder has a free slot or when it is clearly less busy than the peers holding a block
//!   (the tail: at most one block in [`ORIGIN_TAIL_SHARE`]).
//! * **Origin share.** Each peer gets at most an equal share of the origin's slots, and at
//!   most half of its own download slots from it, so the first peers to ask do not spend their
//!   whole downlink on the origin and every peer has fresh blocks to forward.
//! * **Idle holders first, then rarest first.** A candidate block is ranked by the load of its
//!   least-loaded free holder, then by holders, copies in flight and at random. Rarest first
//!   makes a block one peer got from the origin the next thing the others take; ranking by load
//!   first keeps a rare block behind a busy holder from crowding out an idle holder's uplink.
//! * **Capped upload slots**, chosen from the least-loaded holder, a peer before the origin.
//! * **Endgame**: a peer whose every missing block is in flight may fetch another copy from a
//!   different source, so one slow or dead source does not hold up its last blocks.
//! * **Pacing**: a peer behind the others may have more transfers in flight, one ahead fewer,
//!   so that the last peer is not much later than the rest.
//!
//! The simulation in the tests (equal links, transfers sharing them fairly, no TCP) finishes
//! 128 MiB in 1.04, 1.18 and 1.21 times `F / R` with 4, 8 and 16 peers, the origin sending 1.03
//! to 1.09 copies. The state machine behind it is in `STATE.md` beside this file.
//!
//! Cost: `assign` combines bit sets a word at a time (sources x blocks / 64) and sorts the
//! peer's obtainable blocks: about 20 microseconds for 4096 blocks and 48 peers in a release
//! build. The other calls touch one block or one peer's transfers.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::image::manifest::BlockIdx;
use crate::swarm::bitset::BitSet;

/// A host in a swarm, chosen at random by the host itself when it starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a peer could not get a block from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// The source sent bytes whose sha256 does not match the manifest.
    Corrupt,
    /// The source could not be reached, refused, or answered with an error.
    Unreachable,
    /// The transfer took too long.
    Timeout,
}

/// The scheduler's tunables. See [`SchedConfig::default`] for the reasoning behind each value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedConfig {
    /// Most uploads a peer serves at once.
    pub uploads_per_source: u32,
    /// Most uploads an origin serves at once.
    pub origin_uploads: u32,
    /// An assignment not reported back within this long is dropped (as a timeout).
    pub assignment_timeout: Duration,
    /// Most copies of one block in flight to one peer during its endgame (1 disables it).
    pub endgame_copies: u32,
    /// Distinct peers that must report corrupt data from a source before nobody is sent to it.
    pub corrupt_strikes: u32,
    /// How long a peer avoids a source it could not reach or that timed out.
    pub unreachable_backoff: Duration,
    /// Transfers a peer level with the others may have in flight (0: as many as it asks for).
    pub downloads: u32,
    /// Pacing: how many transfers more a peer behind the others may have, and how many fewer a
    /// peer ahead of them.
    pub pace_slots: u32,
    /// Pacing: blocks of lag (or lead) against the mean of the peers still fetching per extra
    /// (or withheld) transfer.
    pub pace_step: u32,
}

/// Once every block is seeded, an origin serves blocks as an ordinary holder whenever it has at
/// least two uploads in progress fewer than the least busy peer holding the block, for at most
/// one block in this many of the swarm. Its uplink would otherwise idle while the last blocks
/// crawl through peers' uplinks shared 11 ways: with it, 16 peers of 256 MiB at 100 Mbit/s
/// finished in 24.19-24.48 s instead of 24.31-24.57 s (4 pairs of runs alternated, each pair
/// 0.07-0.38 s faster), 24 peers in 25.30 s instead of 25.63 s, and the origin sent 1.03-1.04
/// copies instead of 1.00. Without the budget the extra copies grow with the number of peers
/// (0.06 at 24 peers); with it they stay under 1/20.
pub const ORIGIN_TAIL_SHARE: u64 = 20;

impl Default for SchedConfig {
    /// Values measured with the swarm simulation in this module's tests (peers with 6
    /// download slots, like dfpull's peer loop; 1 MiB blocks on 100 Mbit/s links):
    ///
    /// * `uploads_per_source: 8`: at least as many as a downloader's slots, so a source is
    ///   almost never the reason a free download slot stays empty and no uplink idles while
    ///   someone waits. With 4, the downlinks carried more transfers than the uplinks and the
    ///   swarm lagged (256 MiB to 16 peers: 1.17 x the bound instead of 1.07, and the origin
    ///   had to fill in: 1.12 copies instead of 1.00). The cost is latency per hop: a block
    ///   crossing an uplink shared 8 ways takes 8 block times, which is what the tail is made
    ///   of.
    /// * `origin_uploads: 4`: few enough that each fresh block crosses the origin's uplink
    ///   quickly (a quarter of it each), so peers hold something to trade with early and the
    ///   last fresh blocks arrive early enough to spread; enough that the origin's uplink stays
    ///   full (a peer takes at most half its download slots from origins). Measured with the
    ///   swarm benchmark (16 peers, 256 MiB, 100 Mbit/s, one run each): time / bound 1.36 with
    ///   2, 1.24 with 3, 1.19 and 1.21 with 4, 1.20 with 5, 1.25 with 6, 1.27 with 8. The
    ///   simulation below, which has no per-request cost and no TCP, prefers 8 (1.15 against
    ///   1.19 with 4 at 16 peers and 128 blocks): the real network decides.
    /// * `assignment_timeout: 30 s`: a backstop for reports that never come (a peer that died
    ///   mid-transfer); peers report failures themselves. A 1 MiB block on a 10 Mbit/s uplink
    ///   shared 8 ways takes about 7 s, so 30 s only fires on something broken.
    /// * `endgame_copies: 2`: a second copy of a straggling block rescues a peer stuck behind a
    ///   slow source; more copies would only waste uplinks at the end.
    /// * `corrupt_strikes: 2`: one report could come from the reporter's own bad memory or disk;
    ///   two peers seeing bad data from the same source is the source's fault.
    /// * `unreachable_backoff: 5 s`: long enough not to hammer a host that is restarting or
    ///   firewalled, short enough that a hiccup costs a small part of a typical transfer.
    /// * `downloads: 6`, `pace_slots: 2`, `pace_step: 3`: **pacing**. The swarm is done when its
    ///   last peer is, and a peer that fell behind (it found the swarm late, or drew slow
    ///   sources) cannot catch up at the pace of the others: every downlink is as fast as the
    ///   origin's uplink. So a peer 3 blocks behind the mean of the peers still fetching may
    ///   have 7 transfers in flight, 6 blocks behind 8; a peer as far ahead 5 or 4. More
    ///   transfers win a peer a larger share of its sources' uplinks (competing TCP flows share
    ///   a link about equally), at the expense of the peers ahead, who can afford it. Measured
    ///   with the swarm benchmark (16 peers, 256 MiB, 100 Mbit/s, runs alternated): the last
    ///   peer finished 0.2-0.45 s after the median one instead of 0.5-1.7 s.
    fn default() -> SchedConfig {
        SchedConfig {
            uploads_per_source: 8,
            origin_uploads: 4,
            assignment_timeout: Duration::from_secs(30),
            endgame_copies: 2,
            corrupt_strikes: 2,
            unreachable_backoff: Duration::from_secs(5),
            downloads: 6,
            pace_slots: 2,
            pace_step: 3,
        }
    }
}

impl SchedConfig {
    /// The block size the slot counts of [`SchedConfig::default`] were measured with.
    pub const REFERENCE_BLOCK: u64 = 1 << 20;

    /// This configuration for a swarm of `block_size` blocks. Its counts are meant for
    /// [`REFERENCE_BLOCK`](Self::REFERENCE_BLOCK)s; smaller blocks get more transfers at once
    /// (every count times the square root of how many times smaller the block is, at most
    /// twice as many) and a pacing step of as many bytes (up to 4 times as many blocks); larger
    /// blocks keep the counts as they are.
    ///
    /// Why: each block costs a request and a `work` round trip, about 70-100 ms under load on a
    /// 100 Mbit/s swarm, against 0.5 s to move 1 MiB through a link shared 6 ways: with smaller
    /// blocks and the same counts, the slots stand empty more often. Measured with the swarm
    /// benchmark (16 peers, 256 MiB, 100 Mbit/s): 256 KiB blocks with the 1 MiB counts held
    /// 8.9 MiB/s per peer in the steady state instead of 10.9 (1.28-1.35 x the bound instead of
    /// 1.18-1.20 x); with twice the transfers 11.0 MiB/s, and the faster start made it 1.14 x. Twice
    /// the uploads but only 4 origin uploads left the origin's link idle between blocks
    /// (1.32 x): the counts have to grow together. 512 KiB blocks with these counts (11, 6, 8,
    /// 3 and 6 blocks) took 1.14-1.15 x over 3 runs, against 1.18-1.19 x with 1 MiB blocks.
    pub fn for_block_size(&self, block_size: u64) -> SchedConfig {
        if block_size == 0 || block_size >= Self::REFERENCE_BLOCK {
            return self.clone();
        }
        let times = (Self::REFERENCE_BLOCK / block_size).min(4) as f64;
        let more = |n: u32| (f64::from(n) * times.sqrt()).round() as u32;
        SchedConfig {
            uploads_per_source: more(self.uploads_per_source),
            origin_uploads: more(self.origin_uploads),
            downloads: more(self.downloads),
            pace_slots: more(self.pace_slots),
            pace_step: (f64::from(self.pace_step) * times) as u32,
            ..self.clone()
        }
    }
}

/// Fetch `block` from `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// The block to fetch.
    pub block: BlockIdx,
    /// The host to fetch it from: a peer that holds it, or an origin.
    pub source: PeerId,
}

/// One source's upload counts, for status displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// The host.
    pub id: PeerId,
    /// True for an origin (holds every block), false for a peer.
    pub origin: bool,
    /// Banned for every peer after corrupt-data reports.
    pub banned: bool,
    /// Uploads in progress.
    pub uploading: u32,
    /// Uploads reported complete (verified by the receiver) since it joined.
    pub uploaded: u64,
}

/// A snapshot of the scheduler's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedStats {
    /// Blocks in the swarm.
    pub blocks: u32,
    /// Peers that are not origins.
    pub peers: u32,
    /// Origins (seeders).
    pub origins: u32,
    /// Peers that hold every block they want.
    pub peers_done: u32,
    /// Blocks some peer wants that no peer (only an origin) holds yet. While this is not zero
    /// the origin spreads: it serves only such blocks.
    pub unseeded: u32,
    /// Transfers in progress.
    pub in_flight: u32,
    /// Assignments handed out, endgame copies included.
    pub assigned: u64,
    /// Blocks verified by their receiver.
    pub completed: u64,
    /// Uploads completed by origins: with spreading working, about one copy of the swarm.
    pub origin_uploaded: u64,
    /// Extra copies of an in-flight block handed out in endgame.
    pub endgame_copies: u64,
    /// Transfers given to an origin after spreading because it was less busy than the peers
    /// holding the block (at most [`ORIGIN_TAIL_SHARE`] of the blocks).
    pub origin_tail: u64,
    /// Completions of a block the receiver already held: bytes sent twice.
    pub redundant: u64,
    /// Transfers dropped because the other copy of their block completed first.
    pub cancelled: u64,
    /// Corrupt-data reports.
    pub corrupt: u64,
    /// Unreachable-source reports.
    pub unreachable: u64,
    /// Timeouts reported by peers plus assignments expired by [`Scheduler::expire`].
    pub timeouts: u64,
    /// Every source, origins first, then by id.
    pub sources: Vec<SourceStats>,
}

impl SchedStats {
    /// Uploads `id` completed (0 for a host the scheduler does not know).
    pub fn uploads_by(&self, id: PeerId) -> u64 {
        self.sources
            .iter()
            .find(|s| s.id == id)
            .map_or(0, |s| s.uploaded)
    }
}

/// Index of a host in `Scheduler::hosts`.
type Slot = usize;

/// One copy of a block on its way to a peer.
#[derive(Debug, Clone)]
struct Flight {
    source: Slot,
    from_origin: bool,
    since: Instant,
}

#[derive(Debug)]
struct Host {
    id: PeerId,
    origin: bool,
    /// Banned for everyone after corrupt-data reports from several peers: no longer a source,
    /// no longer counted as a holder. It may still download.
    outcast: bool,
    wants: BitSet,
    has: BitSet,
    /// Blocks with at least one copy in `downloads`.
    in_flight: BitSet,
    /// Copies in flight to this host, by block.
    downloads: HashMap<u32, Vec<Flight>>,
    /// Uploads in progress from this host.
    uploading: u32,
    uploaded: u64,
    /// Wanted blocks, and how many of them it holds.
    wanted: u32,
    held_wanted: u32,
    /// Sources this host got corrupt data from: never assigned to it again.
    shunned: HashSet<PeerId>,
    /// Sources this host could not reach, avoided until the given time.
    backoff: HashMap<PeerId, Instant>,
}

impl Host {
    fn new(id: PeerId, origin: bool, num_blocks: usize) -> Host {
        Host {
            id,
            origin,
            outcast: false,
            wants: BitSet::new(num_blocks),
            has: if origin {
                BitSet::full(num_blocks)
            } else {
                BitSet::new(num_blocks)
            },
            in_flight: BitSet::new(num_blocks),
            downloads: HashMap::new(),
            uploading: 0,
            uploaded: 0,
            wanted: 0,
            held_wanted: 0,
            shunned: HashSet::new(),
            backoff: HashMap::new(),
        }
    }

    /// Copies in flight to this host.
    fn flying(&self) -> u32 {
        self.downloads.values().map(|c| c.len() as u32).sum()
    }

    /// The share of its wanted blocks this host holds.
    fn progress(&self) -> f64 {
        f64::from(self.held_wanted) / f64::from(self.wanted.max(1))
    }

    /// Counted in the per-block holder counts.
    fn is_holder(&self) -> bool {
        !self.origin && !self.outcast
    }

    /// Whether this host may be sent to `source` at `now` (ignoring slots).
    fn may_use(&self, source: &Host, now: Instant) -> bool {
        !source.outcast
            && !self.shunned.contains(&source.id)
            && self
                .backoff
                .get(&source.id)
                .is_none_or(|&until| now >= until)
    }
}

/// Per-block counters, kept up to date so that `assign` never has to scan every host.
#[derive(Debug)]
struct Blocks {
    /// Peers (not origins, not outcasts) holding the block.
    holders: Vec<u32>,
    /// Blocks with `holders > 0`.
    seeded: BitSet,
    /// Peers that want the block.
    wanted_by: Vec<u32>,
    /// Blocks with `wanted_by > 0 && holders == 0`: the origin spreads while this is not zero.
    unseeded_wanted: u32,
    /// Copies in flight to anyone, and how many of them from an origin.
    in_flight: Vec<u32>,
    origin_in_flight: Vec<u32>,
}

impl Blocks {
    fn new(n: usize) -> Blocks {
        Blocks {
            holders: vec![0; n],
            seeded: BitSet::new(n),
            wanted_by: vec![0; n],
            unseeded_wanted: 0,
            in_flight: vec![0; n],
            origin_in_flight: vec![0; n],
        }
    }

    fn add_holder(&mut self, b: usize) {
        self.holders[b] += 1;
        if self.holders[b] == 1 {
            self.seeded.set(b, true);
            if self.wanted_by[b] > 0 {
                self.unseeded_wanted -= 1;
            }
        }
    }

    fn remove_holder(&mut self, b: usize) {
        self.holders[b] -= 1;
        if self.holders[b] == 0 {
            self.seeded.set(b, false);
            if self.wanted_by[b] > 0 {
                self.unseeded_wanted += 1;
            }
        }
    }

    fn add_want(&mut self, b: usize) {
        self.wanted_by[b] += 1;
        if self.wanted_by[b] == 1 && self.holders[b] == 0 {
            self.unseeded_wanted += 1;
        }
    }

    fn remove_want(&mut self, b: usize) {
        self.wanted_by[b] -= 1;
        if self.wanted_by[b] == 0 && self.holders[b] == 0 {
            self.unseeded_wanted -= 1;
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    assigned: u64,
    completed: u64,
    origin_uploaded: u64,
    endgame_copies: u64,
    origin_tail: u64,
    redundant: u64,
    cancelled: u64,
    corrupt: u64,
    unreachable: u64,
    timeouts: u64,
}

/// A small deterministic generator (splitmix64): the scheduler needs cheap, reproducible
/// tie-breaking, not cryptographic quality.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * n as u64) >> 32) as u32
    }
}

/// The scheduler of one swarm. See the module documentation for the policy.
#[derive(Debug)]
pub struct Scheduler {
    num_blocks: u32,
    cfg: SchedConfig,
    rng: SplitMix64,
    /// The latest time any call passed in; failures reported without a time start their
    /// backoff from it.
    clock: Option<Instant>,
    hosts: Vec<Option<Host>>,
    free: Vec<Slot>,
    index: HashMap<PeerId, Slot>,
    blocks: Blocks,
    /// Source -> the distinct peers that reported corrupt data from it.
    strikes: HashMap<PeerId, HashSet<PeerId>>,
    banned: HashSet<PeerId>,
    counters: Counters,
}

impl Scheduler {
    /// A scheduler for a swarm of `num_blocks` blocks, with no host yet. `seed` drives every
    /// random tie-break, so equal seeds and equal calls give equal schedules.
    pub fn new(num_blocks: u32, cfg: SchedConfig, seed: u64) -> Scheduler {
        Scheduler {
            num_blocks,
            cfg,
            rng: SplitMix64(seed),
            clock: None,
            hosts: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            blocks: Blocks::new(num_blocks as usize),
            strikes: HashMap::new(),
            banned: HashSet::new(),
            counters: Counters::default(),
        }
    }

    /// Blocks in the swarm.
    pub fn num_blocks(&self) -> u32 {
        self.num_blocks
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }

    /// Whether the host is known, as a peer or as an origin.
    pub fn contains(&self, id: PeerId) -> bool {
        self.index.contains_key(&id)
    }

    /// Adds an origin: a host that holds every block and wants none. Idempotent; a host known
    /// as a peer becomes an origin (its downloads are dropped).
    pub fn add_origin(&mut self, id: PeerId) {
        if let Some(s) = self.slot(id) {
            if self.host(s).origin {
                return;
            }
            self.leave(id);
        }
        let mut host = Host::new(id, true, self.num_blocks as usize);
        host.outcast = self.banned.contains(&id);
        self.insert(host);
    }

    /// Adds a peer that wants `wants` and already holds `has`, or re-syncs one the scheduler
    /// knows: the peer's report replaces what the scheduler believed it wants and holds, its
    /// transfers still in flight are kept unless they are for a block it now holds or no
    /// longer wants. Calling it
    /// twice with the same sets is the same as calling it once. Bits past
    /// [`num_blocks`](Self::num_blocks) are ignored; an origin's join is ignored.
    pub fn join(&mut self, id: PeerId, wants: &BitSet, has: &BitSet) {
        let wants = self.fit(wants);
        let has = self.fit(has);
        let Some(p) = self.slot(id) else {
            let mut host = Host::new(id, false, self.num_blocks as usize);
            host.outcast = self.banned.contains(&id);
            let p = self.insert(host);
            self.resync(p, wants, has);
            return;
        };
        if !self.host(p).origin {
            self.resync(p, wants, has);
        }
    }

    /// Removes a host. Its downloads are dropped, the transfers it was serving go back to
    /// their peers' candidates, and it is no longer a holder of anything.
    pub fn leave(&mut self, id: PeerId) {
        let Some(s) = self.index.remove(&id) else {
            return;
        };
        self.drop_uploads_of(s);
        let host = self.hosts[s].take().expect("indexed slot is occupied");
        for (b, flights) in &host.downloads {
            for f in flights {
                self.release(*b as usize, f);
            }
        }
        if host.is_holder() {
            for b in host.has.iter_ones() {
                self.blocks.remove_holder(b);
            }
        }
        if !host.origin {
            for b in host.wants.iter_ones() {
                self.blocks.remove_want(b);
            }
        }
        self.free.push(s);
    }

    /// `peer` verified `block`, fetched from `from`: it holds the block from now on and serves
    /// it. Every other copy of the block in flight to it is dropped (the peer aborts them).
    /// Reporting a block twice, or one the scheduler never assigned, is harmless.
    pub fn completed(&mut self, peer: PeerId, block: BlockIdx, from: PeerId) {
        let b = block.0 as usize;
        let Some(p) = self.slot(peer) else { return };
        if b >= self.num_blocks as usize || self.host(p).origin {
            return;
        }
        let src = self.slot(from);
        for f in self.take_flights(p, b) {
            if Some(f.source) != src {
                self.counters.cancelled += 1;
            }
            self.release(b, &f);
        }
        if let Some(s) = src.filter(|&s| s != p) {
            let source = self.host_mut(s);
            source.uploaded += 1;
            if source.origin {
                self.counters.origin_uploaded += 1;
            }
        }
        self.counters.completed += 1;
        let host = self.host_mut(p);
        if host.has.get(b) {
            self.counters.redundant += 1;
            return;
        }
        host.has.set(b, true);
        if host.wants.get(b) {
            host.held_wanted += 1;
        }
        if host.is_holder() {
            self.blocks.add_holder(b);
        }
    }

    /// `peer` could not get `block` from `from`. The block goes back to the peer's candidates
    /// at once. `Corrupt` bans the source for this peer and counts a strike against it; with
    /// [`corrupt_strikes`](SchedConfig::corrupt_strikes) strikes from distinct peers it is
    /// banned for everyone. `Unreachable` and `Timeout` make this peer avoid the source for
    /// [`unreachable_backoff`](SchedConfig::unreachable_backoff), counted from the latest time
    /// given to [`assign`](Self::assign) or [`expire`](Self::expire).
    pub fn failed(&mut self, peer: PeerId, block: BlockIdx, from: PeerId, kind: FailKind) {
        let b = block.0 as usize;
        let Some(p) = self.slot(peer) else { return };
        if let Some(s) = self.slot(from).filter(|_| b < self.num_blocks as usize) {
            self.drop_flight(p, b, s);
        }
        match kind {
            FailKind::Corrupt => {
                self.counters.corrupt += 1;
                self.host_mut(p).shunned.insert(from);
                let reporters = self.strikes.entry(from).or_default();
                reporters.insert(peer);
                if reporters.len() >= self.cfg.corrupt_strikes.max(1) as usize {
                    self.ban(from);
                }
            }
            FailKind::Unreachable | FailKind::Timeout => {
                if kind == FailKind::Timeout {
                    self.counters.timeouts += 1;
                } else {
                    self.counters.unreachable += 1;
                }
                if let Some(now) = self.clock {
                    let until = now + self.cfg.unreachable_backoff;
                    self.host_mut(p).backoff.insert(from, until);
                }
            }
        }
    }

    /// Hands `peer` up to `max` blocks to fetch, each with the source to fetch it from. Empty
    /// when nothing can be assigned right now (every holder of what it lacks is busy or
    /// avoided, or it has everything); the peer asks again soon.
    pub fn assign(&mut self, peer: PeerId, max: u32, now: Instant) -> Vec<Assignment> {
        self.tick(now);
        let Some(p) = self.slot(peer) else {
            return Vec::new();
        };
        if max == 0 || self.host(p).origin {
            return Vec::new();
        }
        self.host_mut(p).backoff.retain(|_, until| *until > now);
        let max = match self.download_cap(p) {
            Some(cap) => max.min(cap.saturating_sub(self.host(p).flying())),
            None => max,
        };
        if max == 0 {
            return Vec::new();
        }

        let me = self.host(p);
        let (mut sources, mut origins) = (Vec::new(), Vec::new());
        for (s, q) in self.hosts.iter().enumerate() {
            let Some(q) = q else { continue };
            if s == p || !me.may_use(q, now) {
                continue;
            }
            if q.origin {
                if q.uploading < self.cfg.origin_uploads {
                    origins.push(s);
                }
            } else if q.uploading < self.cfg.uploads_per_source {
                sources.push(s);
            }
        }

        let mut origin_room = self.origin_room(p, max);
        if origin_room == 0 {
            origins.clear();
        }

        let me = self.host(p);
        let mut cand = me.wants.clone();
        cand.difference_with(&me.has);
        cand.difference_with(&me.in_flight);
        if !cand.any() {
            return self.endgame(p, max, now, &sources, &origins, origin_room);
        }

        // What the origin may give.
        let n = self.num_blocks as usize;
        let from_origin = if origins.is_empty() {
            BitSet::new(n)
        } else {
            let mut ok = cand.clone();
            ok.difference_with(&self.origin_excluded(p));
            ok
        };
        // Each obtainable block gets a level, and is handed out level by level, rarest first
        // within a level:
        //   0           while the origin spreads: fresh blocks no origin is sending yet;
        //   1 + load    blocks whose least-loaded free peer source has `load` uploads;
        //   2 + cap     the origin as a fallback: any block once spreading is over, a second
        //               copy of a fresh block still in flight while it lasts.
        // Load before rarity: a rare block behind a busy holder would come at a fraction of
        // that holder's uplink while an idle holder's uplink sat unused. Measured in the
        // simulation below, pure rarest first left half the peers' uplinks idle at 16 peers.
        let cap = self.cfg.uploads_per_source as usize;
        let mut by_load = vec![BitSet::new(n); cap];
        for &s in &sources {
            let h = self.host(s);
            by_load[h.uploading as usize].union_with(&h.has);
        }
        // Once spreading is over, an origin with a free slot is one more holder of every
        // block, ranked by its load like the peers (its uplink would otherwise idle while the
        // last blocks crawl through busy peers' uplinks).
        if let Some(load) = self.origin_load(&origins).filter(|_| origin_room > 0) {
            by_load[(load as usize).min(cap - 1)].union_with(&from_origin);
        }
        let mut levels: Vec<(u64, BitSet)> = Vec::with_capacity(cap + 2);
        let mut rest = cand;
        let mut take = |level: u64, set: &BitSet| {
            let mut got = rest.clone();
            got.intersect_with(set);
            rest.difference_with(&got);
            levels.push((level, got));
        };
        if self.blocks.unseeded_wanted > 0 {
            let mut fresh = from_origin.clone();
            for b in from_origin.iter_ones() {
                if self.blocks.origin_in_flight[b] > 0 {
                    fresh.set(b, false);
                }
            }
            take(0, &fresh);
        }
        for (load, set) in by_load.iter().enumerate() {
            take(1 + load as u64, set);
        }
        take(2 + cap as u64, &from_origin);

        let mut order: Vec<(u64, u32)> = Vec::new();
        for (level, set) in &levels {
            for b in set.iter_ones() {
                let holders = u64::from(self.blocks.holders[b].min(0xffff));
                let flying = u64::from(self.blocks.in_flight[b].min(0xff));
                // Fresh blocks leave the origin in archive order: peers then receive them
                // roughly in order, which lets each hash its archive as it fills (and write it
                // mostly sequentially). Elsewhere ties are broken at random, to spread load.
                let tie = if *level == 0 {
                    b as u64
                } else {
                    self.rng.next_u64() >> 32
                };
                order.push((
                    (level << 56) | (holders << 40) | (flying << 32) | tie,
                    b as u32,
                ));
            }
        }
        // Only the head of the order is usually needed: sort it alone, the rest if we get there.
        let head = (max as usize * 4).max(16).min(order.len());
        if head < order.len() {
            order.select_nth_unstable(head);
        }
        order[..head].sort_unstable();

        let mut out = Vec::new();
        let mut sorted_rest = head == order.len();
        let mut i = 0;
        while i < order.len() && out.len() < max as usize {
            if i == head && !sorted_rest {
                order[head..].sort_unstable();
                sorted_rest = true;
            }
            let b = order[i].1 as usize;
            i += 1;
            let src =
                self.pick_source(&sources, &origins, b, from_origin.get(b) && origin_room > 0);
            if let Some(s) = src {
                if self.host(s).origin {
                    origin_room -= 1;
                }
                out.push(self.start(p, b, s, now));
            }
            let peers_full = sources
                .iter()
                .all(|&s| self.host(s).uploading >= self.cfg.uploads_per_source);
            let origins_full = origin_room == 0
                || origins
                    .iter()
                    .all(|&s| self.host(s).uploading >= self.cfg.origin_uploads);
            if peers_full && origins_full {
                break;
            }
        }
        out
    }

    /// Drops every assignment older than [`assignment_timeout`](SchedConfig::assignment_timeout)
    /// as if its peer had reported a timeout (the peer avoids that source for a while). Returns
    /// how many it dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.tick(now);
        let timeout = self.cfg.assignment_timeout;
        let mut stale = Vec::new();
        for (p, host) in self.hosts.iter().enumerate() {
            let Some(host) = host else { continue };
            for (&b, flights) in &host.downloads {
                for f in flights {
                    if now.saturating_duration_since(f.since) >= timeout {
                        stale.push((p, b as usize, f.source));
                    }
                }
            }
        }
        for &(p, b, s) in &stale {
            self.drop_flight(p, b, s);
            let id = self.host(s).id;
            let until = now + self.cfg.unreachable_backoff;
            self.host_mut(p).backoff.insert(id, until);
            self.counters.timeouts += 1;
        }
        stale.len()
    }

    /// True if `peer` is a known peer holding every block it wants.
    pub fn is_done(&self, peer: PeerId) -> bool {
        self.slot(peer).is_some_and(|p| {
            let h = self.host(p);
            !h.origin && h.held_wanted == h.wanted
        })
    }

    /// True if every peer (origins aside) holds every block it wants; true for a swarm with
    /// no peer at all.
    pub fn all_done(&self) -> bool {
        self.hosts
            .iter()
            .flatten()
            .all(|h| h.origin || h.held_wanted == h.wanted)
    }

    /// `(wanted blocks held, wanted blocks)` for a peer; `(0, 0)` for an unknown host or an
    /// origin.
    pub fn peer_progress(&self, peer: PeerId) -> (u32, u32) {
        match self.slot(peer).map(|p| self.host(p)) {
            Some(h) if !h.origin => (h.held_wanted, h.wanted),
            _ => (0, 0),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SchedStats {
        let hosts = || self.hosts.iter().flatten();
        let mut sources: Vec<SourceStats> = hosts()
            .map(|h| SourceStats {
                id: h.id,
                origin: h.origin,
                banned: h.outcast,
                uploading: h.uploading,
                uploaded: h.uploaded,
            })
            .collect();
        sources.sort_by_key(|s| (!s.origin, s.id));
        let c = &self.counters;
        SchedStats {
            blocks: self.num_blocks,
            peers: hosts().filter(|h| !h.origin).count() as u32,
            origins: hosts().filter(|h| h.origin).count() as u32,
            peers_done: hosts()
                .filter(|h| !h.origin && h.held_wanted == h.wanted)
                .count() as u32,
            unseeded: self.blocks.unseeded_wanted,
            in_flight: self.blocks.in_flight.iter().sum(),
            assigned: c.assigned,
            completed: c.completed,
            origin_uploaded: c.origin_uploaded,
            endgame_copies: c.endgame_copies,
            origin_tail: c.origin_tail,
            redundant: c.redundant,
            cancelled: c.cancelled,
            corrupt: c.corrupt,
            unreachable: c.unreachable,
            timeouts: c.timeouts,
            sources,
        }
    }

    // ---- policy helpers ----

    /// Endgame: every block `p` still wants is in flight. Hand out extra copies, each from a
    /// source not already sending that block, in rounds (every block gets a second copy
    /// before any gets a third), longest in flight first within a round.
    fn endgame(
        &mut self,
        p: Slot,
        max: u32,
        now: Instant,
        sources: &[Slot],
        origins: &[Slot],
        mut origin_room: u32,
    ) -> Vec<Assignment> {
        let copies = self.cfg.endgame_copies.max(1) as usize;
        let mut waiting: Vec<(Instant, u32)> = self
            .host(p)
            .downloads
            .iter()
            .map(|(&b, fl)| (fl.iter().map(|f| f.since).min().unwrap_or(now), b))
            .collect();
        waiting.sort_unstable();
        let mut out = Vec::new();
        for round in 1..copies {
            for &(_, b) in &waiting {
                if out.len() >= max as usize {
                    return out;
                }
                let b = b as usize;
                let flights = &self.host(p).downloads[&(b as u32)];
                if flights.len() > round {
                    continue;
                }
                // Never two copies from one source.
                let busy: Vec<Slot> = flights.iter().map(|f| f.source).collect();
                let others = |slots: &[Slot]| -> Vec<Slot> {
                    slots
                        .iter()
                        .copied()
                        .filter(|s| !busy.contains(s))
                        .collect()
                };
                let (peers, origins) = (others(sources), others(origins));
                let origin_ok = origin_room > 0 && self.origin_may_serve(p, b);
                let src = self.pick_source(&peers, &origins, b, origin_ok);
                if let Some(s) = src {
                    if self.host(s).origin {
                        origin_room -= 1;
                    }
                    self.counters.endgame_copies += 1;
                    out.push(self.start(p, b, s, now));
                }
            }
        }
        out
    }

    /// Pacing (see [`SchedConfig::default`]): how many transfers `p` may have in flight, from
    /// its progress against the mean progress of the peers still fetching (each as a share of
    /// what it wants), in blocks of its own. `None` when the peer's own ask decides.
    fn download_cap(&self, p: Slot) -> Option<u32> {
        let cfg = &self.cfg;
        if cfg.downloads == 0 {
            return None;
        }
        let (mut sum, mut fetching) = (0.0, 0u32);
        for h in self.hosts.iter().flatten() {
            if !h.origin && h.held_wanted < h.wanted {
                sum += h.progress();
                fetching += 1;
            }
        }
        let me = self.host(p);
        if fetching < 2 || cfg.pace_step == 0 {
            return Some(cfg.downloads);
        }
        let lag = (sum / f64::from(fetching) - me.progress()) * f64::from(me.wanted);
        let steps = (lag / f64::from(cfg.pace_step)).trunc() as i64;
        let pace = i64::from(cfg.pace_slots);
        let cap = i64::from(cfg.downloads) + steps.clamp(-pace, pace);
        Some(cap.max(1) as u32)
    }

    /// How many more transfers from origins `p` may have: an equal share of the origins' slots
    /// among the peers still fetching, and at most half of the peer's download slots (those
    /// in use plus the `max` it asks for now). Without it the first peers to ask would fill
    /// every origin slot and spend their whole downlink on the origin, with no room left to
    /// take blocks from the other peers; with it every peer gets a trickle of fresh blocks to
    /// forward, which is what keeps every uplink busy.
    fn origin_room(&self, p: Slot, max: u32) -> u32 {
        let (mut slots, mut fetching) = (0u32, 0u32);
        for h in self.hosts.iter().flatten() {
            if h.origin && !h.outcast {
                slots += self.cfg.origin_uploads;
            } else if !h.origin && h.held_wanted < h.wanted {
                fetching += 1;
            }
        }
        let me = self.host(p);
        let mine = me.downloads.values().flatten();
        let (total, from_origin) = mine.fold((0u32, 0u32), |(t, o), f| {
            (t + 1, o + u32::from(f.from_origin))
        });
        // Alone, a peer has nobody else to take blocks from: all its slots may go to origins.
        let half = if fetching > 1 {
            ((total + max) / 2).max(1)
        } else {
            total + max
        };
        slots
            .div_ceil(fetching.max(1))
            .min(half)
            .saturating_sub(from_origin)
    }

    /// Blocks the origin must not give `p` now. While the origin spreads, that is every block
    /// some peer holds, except (for a peer that shuns some sources) blocks only shunned peers
    /// hold: the origin is then its only way to get them.
    fn origin_excluded(&self, p: Slot) -> BitSet {
        let n = self.num_blocks as usize;
        if self.blocks.unseeded_wanted == 0 {
            return BitSet::new(n);
        }
        let me = self.host(p);
        if me.shunned.is_empty() {
            return self.blocks.seeded.clone();
        }
        let mut reachable = BitSet::new(n);
        let usable = self.hosts.iter().enumerate().filter_map(|(s, q)| {
            q.as_ref()
                .filter(|q| s != p && q.is_holder() && !me.shunned.contains(&q.id))
        });
        for q in usable {
            reachable.union_with(&q.has);
        }
        reachable
    }

    /// Single-block form of [`origin_excluded`](Self::origin_excluded).
    fn origin_may_serve(&self, p: Slot, b: usize) -> bool {
        if self.blocks.unseeded_wanted == 0 || !self.blocks.seeded.get(b) {
            return true;
        }
        let me = self.host(p);
        !self.hosts.iter().enumerate().any(|(s, q)| {
            q.as_ref().is_some_and(|q| {
                s != p && q.is_holder() && q.has.get(b) && !me.shunned.contains(&q.id)
            })
        })
    }

    /// The uploads in progress of the least-loaded free origin, when it may serve as an
    /// ordinary holder in the tail: `None` while the origin spreads (it then gives only fresh
    /// blocks, at their own level) and once it has served its [`ORIGIN_TAIL_SHARE`] of the
    /// blocks this way.
    fn origin_load(&self, origins: &[Slot]) -> Option<u32> {
        let budget = u64::from(self.num_blocks) / ORIGIN_TAIL_SHARE;
        if self.blocks.unseeded_wanted > 0 || self.counters.origin_tail >= budget {
            return None;
        }
        origins
            .iter()
            .map(|&s| self.host(s).uploading)
            .filter(|&u| u < self.cfg.origin_uploads)
            .min()
    }

    /// The source of block `b`: its least-loaded free peer holder, or an origin (when
    /// `origin_ok`) if no peer holder is free or, once spreading is over, if the origin has at
    /// least two uploads in progress fewer than that peer (see [`ORIGIN_TAIL_SHARE`]). Ties and
    /// near ties go to the peer, which keeps the origin's upload near one copy.
    fn pick_source(
        &mut self,
        peers: &[Slot],
        origins: &[Slot],
        b: usize,
        origin_ok: bool,
    ) -> Option<Slot> {
        let peer = self.least_loaded(peers, self.cfg.uploads_per_source, |h| h.has.get(b));
        if !origin_ok {
            return peer;
        }
        let peer_load = peer.map(|s| self.host(s).uploading);
        match (peer_load, self.origin_load(origins)) {
            (None, _) => self.least_loaded(origins, self.cfg.origin_uploads, |_| true),
            (Some(peer_load), Some(origin_load)) if origin_load + 1 < peer_load => {
                let origin = self.least_loaded(origins, self.cfg.origin_uploads, |_| true);
                self.counters.origin_tail += u64::from(origin.is_some());
                origin.or(peer)
            }
            _ => peer,
        }
    }

    /// Among `slots` with fewer than `cap` uploads that pass `holds`, the one with the fewest
    /// uploads in progress; ties broken at random.
    fn least_loaded(
        &mut self,
        slots: &[Slot],
        cap: u32,
        holds: impl Fn(&Host) -> bool,
    ) -> Option<Slot> {
        let mut best: Option<(u32, Slot)> = None;
        let mut ties = 0;
        for &s in slots {
            let h = self.host(s);
            if h.uploading >= cap || !holds(h) {
                continue;
            }
            match best {
                Some((load, _)) if h.uploading > load => {}
                Some((load, _)) if h.uploading == load => {
                    ties += 1;
                    if self.rng.below(ties + 1) == 0 {
                        best = Some((load, s));
                    }
                }
                _ => {
                    best = Some((h.uploading, s));
                    ties = 0;
                }
            }
        }
        best.map(|(_, s)| s)
    }

    // ---- bookkeeping ----

    fn tick(&mut self, now: Instant) {
        self.clock = Some(self.clock.map_or(now, |c| c.max(now)));
    }

    fn slot(&self, id: PeerId) -> Option<Slot> {
        self.index.get(&id).copied()
    }

    fn host(&self, s: Slot) -> &Host {
        self.hosts[s].as_ref().expect("live slot")
    }

    fn host_mut(&mut self, s: Slot) -> &mut Host {
        self.hosts[s].as_mut().expect("live slot")
    }

    fn insert(&mut self, host: Host) -> Slot {
        let id = host.id;
        let s = match self.free.pop() {
            Some(s) => {
                self.hosts[s] = Some(host);
                s
            }
            None => {
                self.hosts.push(Some(host));
                self.hosts.len() - 1
            }
        };
        self.index.insert(id, s);
        s
    }

    /// A set of exactly `num_blocks` bits with the bits of `set` that fit.
    fn fit(&self, set: &BitSet) -> BitSet {
        let n = self.num_blocks as usize;
        if set.len() == n {
            set.clone()
        } else {
            BitSet::from_ones(n, set.iter_ones().take_while(|&b| b < n))
        }
    }

    /// Makes peer `p`'s wants and holdings `wants` and `has`, keeping every counter in step.
    fn resync(&mut self, p: Slot, wants: BitSet, has: BitSet) {
        let host = self.host_mut(p);
        let old_wants = std::mem::replace(&mut host.wants, wants);
        let old_has = std::mem::replace(&mut host.has, has);
        host.wanted = host.wants.count() as u32;
        let mut held = host.wants.clone();
        held.intersect_with(&host.has);
        host.held_wanted = held.count() as u32;
        let (new_wants, new_has, holder) = (host.wants.clone(), host.has.clone(), host.is_holder());

        let diff = |a: &BitSet, b: &BitSet| {
            let mut d = a.clone();
            d.difference_with(b);
            d
        };
        for b in diff(&old_wants, &new_wants).iter_ones() {
            self.blocks.remove_want(b);
        }
        for b in diff(&new_wants, &old_wants).iter_ones() {
            self.blocks.add_want(b);
        }
        if holder {
            for b in diff(&old_has, &new_has).iter_ones() {
                self.blocks.remove_holder(b);
            }
            for b in diff(&new_has, &old_has).iter_ones() {
                self.blocks.add_holder(b);
            }
        }
        // Transfers for blocks it now holds, or no longer wants, are over.
        let mut needed = new_wants;
        needed.difference_with(&new_has);
        let stale: Vec<usize> = self
            .host(p)
            .downloads
            .keys()
            .map(|&b| b as usize)
            .filter(|&b| !needed.get(b))
            .collect();
        for b in stale {
            for f in self.take_flights(p, b) {
                self.release(b, &f);
            }
        }
    }

    /// Records a new transfer of block `b` from `s` to `p`.
    fn start(&mut self, p: Slot, b: usize, s: Slot, now: Instant) -> Assignment {
        let source = self.host_mut(s);
        source.uploading += 1;
        let (from_origin, id) = (source.origin, source.id);
        self.blocks.in_flight[b] += 1;
        if from_origin {
            self.blocks.origin_in_flight[b] += 1;
        }
        let host = self.host_mut(p);
        host.in_flight.set(b, true);
        host.downloads.entry(b as u32).or_default().push(Flight {
            source: s,
            from_origin,
            since: now,
        });
        self.counters.assigned += 1;
        Assignment {
            block: BlockIdx(b as u32),
            source: id,
        }
    }

    /// Frees the source slot and block counters of a transfer already taken out of its
    /// peer's `downloads`.
    fn release(&mut self, b: usize, f: &Flight) {
        self.blocks.in_flight[b] -= 1;
        if f.from_origin {
            self.blocks.origin_in_flight[b] -= 1;
        }
        if let Some(source) = self.hosts[f.source].as_mut() {
            source.uploading -= 1;
        }
    }

    /// Takes every copy of block `b` in flight to `p` out of its downloads.
    fn take_flights(&mut self, p: Slot, b: usize) -> Vec<Flight> {
        let host = self.host_mut(p);
        host.in_flight.set(b, false);
        host.downloads.remove(&(b as u32)).unwrap_or_default()
    }

    /// Drops the copy of block `b` in flight from `s` to `p`, if there is one.
    fn drop_flight(&mut self, p: Slot, b: usize, s: Slot) {
        let host = self.host_mut(p);
        let Some(flights) = host.downloads.get_mut(&(b as u32)) else {
            return;
        };
        let Some(i) = flights.iter().position(|f| f.source == s) else {
            return;
        };
        let f = flights.swap_remove(i);
        if flights.is_empty() {
            host.downloads.remove(&(b as u32));
            host.in_flight.set(b, false);
        }
        self.release(b, &f);
    }

    /// Drops every transfer `s` is serving; their blocks go back to their peers' candidates.
    fn drop_uploads_of(&mut self, s: Slot) {
        let mut dropped = Vec::new();
        for (p, host) in self.hosts.iter_mut().enumerate() {
            let Some(host) = host.as_mut().filter(|_| p != s) else {
                continue;
            };
            host.downloads.retain(|&b, flights| {
                flights.retain(|f| {
                    let keep = f.source != s;
                    if !keep {
                        dropped.push((b as usize, f.clone()));
                    }
                    keep
                });
                if flights.is_empty() {
                    host.in_flight.set(b as usize, false);
                }
                !flights.is_empty()
            });
        }
        for (b, f) in dropped {
            self.release(b, &f);
        }
    }

    /// Bans `id` for everyone: it is no longer a source nor a holder, and what it was sending
    /// is re-queued (its receivers will most likely find it corrupt anyway).
    fn ban(&mut self, id: PeerId) {
        if !self.banned.insert(id) {
            return;
        }
        let Some(s) = self.slot(id) else { return };
        let host = self.host_mut(s);
        let was_holder = host.is_holder();
        host.outcast = true;
        if was_holder {
            let has = host.has.clone();
            for b in has.iter_ones() {
                self.blocks.remove_holder(b);
            }
        }
        self.drop_uploads_of(s);
    }
}

#[cfg(test)]
impl Scheduler {
    /// Recomputes every counter from scratch and compares; checks the caps and the per-peer
    /// state rules written in STATE.md.
    fn check_invariants(&self) {
        let n = self.num_blocks as usize;
        let mut blocks = Blocks::new(n);
        let hosts: Vec<(Slot, &Host)> = self
            .hosts
            .iter()
            .enumerate()
            .filter_map(|(s, h)| h.as_ref().map(|h| (s, h)))
            .collect();
        for &(_, h) in &hosts {
            if !h.origin {
                for b in h.wants.iter_ones() {
                    blocks.add_want(b);
                }
            }
            if h.is_holder() {
                for b in h.has.iter_ones() {
                    blocks.add_holder(b);
                }
            }
        }
        let mut uploading = vec![0u32; self.hosts.len()];
        for &(_, h) in &hosts {
            let mut keys = BitSet::new(n);
            let mut held = h.wants.clone();
            held.intersect_with(&h.has);
            assert_eq!(h.held_wanted as usize, held.count(), "{:?} held", h.id);
            assert_eq!(h.wanted as usize, h.wants.count(), "{:?} wanted", h.id);
            for (&b, flights) in &h.downloads {
                let b = b as usize;
                keys.set(b, true);
                assert!(!flights.is_empty());
                assert!(!h.has.get(b), "{:?} has block {b} and fetches it", h.id);
                assert!(flights.len() <= self.cfg.endgame_copies.max(1) as usize);
                for (i, f) in flights.iter().enumerate() {
                    assert!(
                        flights[..i].iter().all(|g| g.source != f.source),
                        "two copies of block {b} from one source"
                    );
                    let src = self.host(f.source);
                    assert_eq!(f.from_origin, src.origin);
                    assert!(src.has.get(b), "source lacks block {b}");
                    uploading[f.source] += 1;
                    blocks.in_flight[b] += 1;
                    if f.from_origin {
                        blocks.origin_in_flight[b] += 1;
                    }
                }
            }
            assert_eq!(keys, h.in_flight, "{:?} in-flight set", h.id);
        }
        for &(s, h) in &hosts {
            assert_eq!(h.uploading, uploading[s], "{:?} upload count", h.id);
            let cap = if h.origin {
                self.cfg.origin_uploads
            } else {
                self.cfg.uploads_per_source
            };
            assert!(h.uploading <= cap, "{:?} over its upload cap", h.id);
            assert_eq!(self.index[&h.id], s);
        }
        assert_eq!(self.index.len(), hosts.len());
        assert_eq!(blocks.holders, self.blocks.holders);
        assert_eq!(blocks.seeded, self.blocks.seeded);
        assert_eq!(blocks.wanted_by, self.blocks.wanted_by);
        assert_eq!(blocks.unseeded_wanted, self.blocks.unseeded_wanted);
        assert_eq!(blocks.in_flight, self.blocks.in_flight);
        assert_eq!(blocks.origin_in_flight, self.blocks.origin_in_flight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: PeerId = PeerId(0xFEED);

    fn id(i: usize) -> PeerId {
        PeerId(100 + i as u64)
    }

    fn set(n: u32, ones: &[u32]) -> BitSet {
        BitSet::from_ones(n as usize, ones.iter().map(|&b| b as usize))
    }

    fn all(n: u32) -> BitSet {
        BitSet::full(n as usize)
    }

    fn none(n: u32) -> BitSet {
        BitSet::new(n as usize)
    }

    fn blocks_of(v: &[Assignment]) -> Vec<u32> {
        v.iter().map(|a| a.block.0).collect()
    }

    fn cfg() -> SchedConfig {
        SchedConfig::default()
    }

    /// Peers 0..holders.len() hold nothing but what `holders` says (peer i holds the blocks in
    /// `holders[i]`); the returned asker wants every block.
    fn swarm(n: u32, holders: &[&[u32]], cfg: SchedConfig, seed: u64) -> (Scheduler, PeerId) {
        let mut s = Scheduler::new(n, cfg, seed);
        for (i, h) in holders.iter().enumerate() {
            s.join(id(i), &none(n), &set(n, h));
        }
        let asker = id(99);
        s.join(asker, &all(n), &none(n));
        (s, asker)
    }

    #[test]
    fn rarest_first_orders_by_holder_count() {
        // (blocks held by each peer, the order the asker must get them in)
        let cases: &[(&[&[u32]], &[u32])] = &[
            (&[&[0, 1, 2], &[0, 1], &[0]], &[2, 1, 0]),
            (&[&[3, 2, 1, 0], &[3, 2, 1], &[3, 2], &[3]], &[0, 1, 2, 3]),
            (&[&[0, 1, 2, 3], &[0, 2, 3], &[0, 3], &[3]], &[1, 2, 0, 3]),
        ];
        for (holders, want) in cases {
            for seed in 0..8 {
                let (mut s, asker) = swarm(4, holders, cfg(), seed);
                let got = s.assign(asker, 4, Instant::now());
                assert_eq!(blocks_of(&got), *want, "seed {seed}, holders {holders:?}");
                s.check_invariants();
            }
        }
    }

    #[test]
    fn rarest_first_breaks_ties_at_random() {
        let mut first = HashSet::new();
        for seed in 0..32 {
            let (mut s, asker) = swarm(3, &[&[0, 1, 2], &[1, 2]], cfg(), seed);
            let got = s.assign(asker, 3, Instant::now());
            assert_eq!(got[0].block, BlockIdx(0), "block 0 has one holder");
            first.insert(got[1].block);
        }
        assert_eq!(
            first.len(),
            2,
            "blocks 1 and 2 tie and should both come second"
        );
    }

    #[test]
    fn holder_with_fewest_uploads_is_chosen() {
        for seed in 0..16 {
            // Peer 0 holds blocks 0..3, peer 1 only block 0.
            let (mut s, asker) = swarm(3, &[&[0, 1, 2], &[0]], cfg(), seed);
            let now = Instant::now();
            // Two other peers take blocks 1 and 2, which only peer 0 has: it is now busier.
            for (i, b) in [(10, 1), (11, 2)] {
                s.join(id(i), &set(3, &[b]), &none(3));
                assert_eq!(s.assign(id(i), 1, now)[0].source, id(0));
            }
            s.join(asker, &set(3, &[0]), &none(3));
            let got = s.assign(asker, 1, now);
            assert_eq!(
                got,
                [Assignment {
                    block: BlockIdx(0),
                    source: id(1)
                }]
            );
            s.check_invariants();
        }
    }

    #[test]
    fn peers_are_preferred_to_the_origin() {
        for seed in 0..16 {
            let (mut s, asker) = swarm(2, &[&[0, 1]], cfg(), seed);
            s.add_origin(ORIGIN);
            let got = s.assign(asker, 2, Instant::now());
            assert!(got.iter().all(|a| a.source == id(0)), "{got:?}");
        }
    }

    #[test]
    fn once_spreading_is_over_an_idle_origin_relieves_busy_peers_within_its_budget() {
        // 40 blocks, all seeded by peer 0: the origin's budget is 40 / 20 = 2 blocks.
        let n = 40;
        let (mut s, _) = swarm(n, &[&(0..n).collect::<Vec<_>>()], cfg(), 3);
        s.add_origin(ORIGIN);
        assert_eq!(s.stats().unseeded, 0);
        let now = Instant::now();
        // Each new peer wants one block and asks for one transfer; `want` is who should serve.
        // Peer 0 has 0 uploads, then 1: the idle origin is not two fewer, peer 0 serves. At 2
        // the origin (0) serves; at 2 against 1, peer 0; at 3 against 1 the origin again, and
        // its budget is spent; at 3 against 2, peer 0; at 4 against 2 the origin would be two
        // fewer, but the budget keeps it out.
        let steps = [
            (1, id(0)),
            (2, id(0)),
            (3, ORIGIN),
            (4, id(0)),
            (5, ORIGIN),
            (6, id(0)),
            (7, id(0)),
        ];
        for (i, (b, want)) in steps.into_iter().enumerate() {
            let p = id(10 + i);
            s.join(p, &set(n, &[b]), &none(n));
            let got = s.assign(p, 1, now);
            assert_eq!(
                got,
                [Assignment {
                    block: BlockIdx(b),
                    source: want
                }],
                "step {i}"
            );
            s.check_invariants();
        }
        assert_eq!(s.stats().origin_tail, 2);
    }

    #[test]
    fn upload_slots_are_capped_per_source() {
        // (peer cap, origin cap, origin present)
        for (cap, ocap, with_origin) in [(1, 1, false), (2, 1, false), (2, 3, true), (4, 8, true)] {
            let c = SchedConfig {
                uploads_per_source: cap,
                origin_uploads: ocap,
                ..cfg()
            };
            let n = 64;
            let (mut s, _) = swarm(n, &[&(0..n).collect::<Vec<_>>()], c, 7);
            if with_origin {
                s.add_origin(ORIGIN);
            }
            let now = Instant::now();
            let mut got = Vec::new();
            for i in 10..30 {
                s.join(id(i), &all(n), &none(n));
                got.extend(s.assign(id(i), 3, now));
            }
            let from = |who: PeerId| got.iter().filter(|a| a.source == who).count() as u32;
            assert_eq!(from(id(0)), cap);
            assert_eq!(from(ORIGIN), if with_origin { ocap } else { 0 });
            s.check_invariants();
            // A completion frees exactly one slot.
            let a = got.iter().find(|a| a.source == id(0)).unwrap();
            let who = (10..30)
                .map(id)
                .find(|&p| s.host(s.slot(p).unwrap()).in_flight.get(a.block.0 as usize))
                .unwrap();
            s.completed(who, a.block, id(0));
            let more: Vec<_> = (30..40)
                .flat_map(|i| {
                    s.join(id(i), &all(n), &none(n));
                    s.assign(id(i), 3, now)
                })
                .collect();
            // The peer that just completed is a source now too, with `cap` free slots.
            assert_eq!(more.iter().filter(|a| a.source == id(0)).count(), 1);
            assert!(more.iter().filter(|a| a.source == who).count() as u32 <= cap);
            s.check_invariants();
        }
    }

    #[test]
    fn nothing_to_assign_gives_an_empty_answer() {
        let n = 4;
        let mut s = Scheduler::new(n, cfg(), 1);
        s.join(id(0), &all(n), &none(n));
        let now = Instant::now();
        assert!(s.assign(id(0), 4, now).is_empty(), "no source at all");
        assert!(s.assign(id(5), 4, now).is_empty(), "unknown peer");
        s.add_origin(ORIGIN);
        assert!(s.assign(id(0), 0, now).is_empty(), "no free slot");
        assert!(
            s.assign(ORIGIN, 4, now).is_empty(),
            "an origin fetches nothing"
        );
        let got = s.assign(id(0), 4, now);
        assert!(!got.is_empty() && got.iter().all(|a| a.source == ORIGIN));
    }

    /// A discrete-event model of a swarm: one origin and `peers` peers, every link `rate`
    /// bytes/s up and down. Transfers share each uplink and each downlink max-min fairly (what
    /// competing TCP flows converge to). A peer keeps `download_slots` transfers going: it asks
    /// at the start and, like the coordinator's long poll, again whenever the swarm changes. A
    /// transfer starts `latency` after it is assigned (request round trip).
    struct Sim {
        peers: usize,
        blocks: u32,
        block_bytes: f64,
        rate: f64,
        download_slots: u32,
        latency: f64,
        cfg: SchedConfig,
        seed: u64,
    }

    #[derive(Debug)]
    struct SimResult {
        /// When the last peer finished, and the physical bound F / R, in seconds.
        finish: f64,
        bound: f64,
        /// Bytes the origin sent, in copies of the swarm.
        origin_copies: f64,
        /// Blocks the origin was assigned to send, in order.
        origin_log: Vec<u32>,
        /// Origin assignments made while spreading of a block some peer already held.
        spread_violations: usize,
        stats: SchedStats,
    }

    struct Flow {
        src: usize,
        dst: usize,
        block: u32,
        left: f64,
        starts: f64,
        rate: f64,
    }

    impl Sim {
        fn new(peers: usize, blocks: u32) -> Sim {
            Sim {
                peers,
                blocks,
                block_bytes: (1 << 20) as f64,
                rate: 100e6 / 8.0,
                download_slots: 4,
                latency: 0.002,
                cfg: SchedConfig::default(),
                seed: 42,
            }
        }

        fn run(&self) -> SimResult {
            let hosts = self.peers + 1;
            // Host 0 is the origin.
            let hid = |h: usize| if h == 0 { ORIGIN } else { id(h) };
            let slot_of = |p: PeerId| if p == ORIGIN { 0 } else { p.0 as usize - 100 };
            let base = Instant::now();
            let at = |t: f64| base + Duration::from_secs_f64(t);
            let n = self.blocks;
            let mut s = Scheduler::new(n, self.cfg.clone(), self.seed);
            s.add_origin(ORIGIN);
            for h in 1..hosts {
                s.join(hid(h), &all(n), &none(n));
            }
            let mut held: Vec<BitSet> = (0..hosts).map(|_| none(n)).collect();
            let mut flows: Vec<Flow> = Vec::new();
            let mut rng = SplitMix64(self.seed ^ 0x5151);
            let bound = n as f64 * self.block_bytes / self.rate;
            let (mut t, mut origin_bytes, mut steps) = (0.0f64, 0.0f64, 0u64);
            let (mut origin_log, mut spread_violations) = (Vec::new(), 0);
            loop {
                // Everyone with a free download slot asks, in random order.
                let mut order: Vec<usize> = (1..hosts).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u32 + 1) as usize);
                }
                for h in order {
                    let busy = flows.iter().filter(|f| f.dst == h).count() as u32;
                    let free = self.download_slots.saturating_sub(busy);
                    let spreading = s.blocks.unseeded_wanted > 0;
                    for a in s.assign(hid(h), free, at(t)) {
                        if a.source == ORIGIN {
                            origin_log.push(a.block.0);
                            let b = a.block.0 as usize;
                            if spreading && held.iter().any(|h| h.get(b)) {
                                spread_violations += 1;
                            }
                        }
                        flows.push(Flow {
                            src: slot_of(a.source),
                            dst: h,
                            block: a.block.0,
                            left: self.block_bytes,
                            starts: t + self.latency,
                            rate: 0.0,
                        });
                    }
                }
                steps += 1;
                if steps % 64 == 0 {
                    s.check_invariants();
                }
                if s.all_done() {
                    break;
                }
                share_max_min(&mut flows, t, hosts, self.rate);
                let next = flows
                    .iter()
                    .map(|f| {
                        if f.starts > t {
                            f.starts
                        } else {
                            t + f.left / f.rate
                        }
                    })
                    .fold(f64::INFINITY, f64::min);
                assert!(next.is_finite(), "stalled at {t:.3}s: {:?}", s.stats());
                assert!(next < 10.0 * bound, "no progress: {:?}", s.stats());
                for f in flows.iter_mut().filter(|f| f.starts <= t) {
                    let sent = (f.rate * (next - t)).min(f.left);
                    f.left -= sent;
                    if f.src == 0 {
                        origin_bytes += sent;
                    }
                }
                t = next;
                let done: Vec<(usize, usize, u32)> = flows
                    .iter()
                    .filter(|f| f.starts <= t && f.left <= 1e-6 * self.block_bytes)
                    .map(|f| (f.src, f.dst, f.block))
                    .collect();
                for (src, dst, b) in done {
                    if held[dst].get(b as usize) {
                        continue;
                    }
                    held[dst].set(b as usize, true);
                    // The peer aborts any other copy of the block it was fetching.
                    flows.retain(|f| !(f.dst == dst && f.block == b));
                    s.completed(hid(dst), BlockIdx(b), hid(src));
                }
                assert_eq!(s.expire(at(t)), 0, "nothing is slow enough to time out");
            }
            SimResult {
                finish: t,
                bound,
                origin_copies: origin_bytes / (n as f64 * self.block_bytes),
                origin_log,
                spread_violations,
                stats: s.stats(),
            }
        }
    }

    /// Max-min fair rates (progressive filling) over every host's uplink and downlink.
    fn share_max_min(flows: &mut [Flow], t: f64, hosts: usize, rate: f64) {
        let mut room = vec![rate; 2 * hosts]; // uplinks, then downlinks
        let mut users = vec![0u32; 2 * hosts];
        let mut open: Vec<usize> = Vec::new();
        for (i, f) in flows.iter_mut().enumerate() {
            f.rate = 0.0;
            if f.starts <= t {
                users[f.src] += 1;
                users[hosts + f.dst] += 1;
                open.push(i);
            }
        }
        while !open.is_empty() {
            let (link, share) = (0..2 * hosts)
                .filter(|&l| users[l] > 0)
                .map(|l| (l, room[l] / users[l] as f64))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            open.retain(|&i| {
                let f = &mut flows[i];
                let (up, down) = (f.src, hosts + f.dst);
                if up != link && down != link {
                    return true;
                }
                f.rate = share;
                for l in [up, down] {
                    room[l] -= share;
                    users[l] -= 1;
                }
                false
            });
        }
    }

    #[test]
    fn origin_sends_every_block_once_before_any_twice() {
        // (peers, blocks)
        for (peers, blocks) in [(1, 10), (3, 7), (5, 64), (16, 40), (16, 200)] {
            let r = Sim::new(peers, blocks).run();
            let log = &r.origin_log;
            assert!(log.len() >= blocks as usize, "{peers} peers: {log:?}");
            let mut first: Vec<u32> = log[..blocks as usize].to_vec();
            first.sort_unstable();
            assert_eq!(
                first,
                (0..blocks).collect::<Vec<_>>(),
                "{peers} peers, {blocks} blocks: a block went out twice before another once"
            );
            assert_eq!(r.spread_violations, 0, "the origin sent a block a peer had");
        }
    }

    #[test]
    fn simulated_swarm_finishes_near_the_physical_bound() {
        // 128 MiB in 1 MiB blocks, 100 Mbit/s everywhere, as many download slots per peer as
        // dfpull's peer loop has (paced by the scheduler).
        for peers in [4, 8, 16] {
            let sim = Sim {
                download_slots: crate::swarm::peer::DOWNLOAD_SLOTS,
                ..Sim::new(peers, 128)
            };
            let r = sim.run();
            let ratio = r.finish / r.bound;
            println!(
                "{peers:2} peers: {:.2} s, bound {:.2} s, ratio {ratio:.3}, origin sent {:.3} copies, \
                 {} endgame copies",
                r.finish, r.bound, r.origin_copies, r.stats.endgame_copies
            );
            assert_eq!(r.stats.peers_done, peers as u32, "every peer finishes");
            let st = &r.stats;
            let uploaded: u64 = st.sources.iter().map(|x| x.uploaded).sum();
            assert_eq!(
                uploaded, st.completed,
                "every completion credited to its source"
            );
            assert_eq!(st.uploads_by(ORIGIN), st.origin_uploaded);
            assert!(
                st.origin_tail <= 128 / ORIGIN_TAIL_SHARE,
                "the origin served {} blocks by load in the tail, over its budget",
                st.origin_tail
            );
            assert_eq!(st.completed - st.redundant, peers as u64 * 128);
            assert!(
                r.origin_copies <= 1.1,
                "origin sent {:.3} copies",
                r.origin_copies
            );
            assert!(ratio <= 1.3, "{peers} peers took {ratio:.3} x the bound");
        }
    }

    #[test]
    fn smaller_blocks_get_more_transfers_at_once() {
        let c = cfg();
        let counts = |c: &SchedConfig| {
            (
                c.uploads_per_source,
                c.origin_uploads,
                c.downloads,
                c.pace_slots,
                c.pace_step,
            )
        };
        let reference = counts(&c);
        assert_eq!(reference, (8, 4, 6, 2, 3));
        for bs in [1 << 20, 4 << 20, 64 << 20] {
            assert_eq!(counts(&c.for_block_size(bs)), reference, "{bs}");
        }
        // The counts measured with 256 KiB blocks: twice the transfers, the same pacing step
        // in bytes; and with 512 KiB blocks (the `auto` size of a small swarm).
        assert_eq!(counts(&c.for_block_size(256 << 10)), (16, 8, 12, 4, 12));
        assert_eq!(counts(&c.for_block_size(512 << 10)), (11, 6, 8, 3, 6));
        // At most twice the transfers, however small the blocks.
        assert_eq!(counts(&c.for_block_size(64 << 10)), (16, 8, 12, 4, 12));
        let scaled = c.for_block_size(256 << 10);
        assert_eq!(scaled.assignment_timeout, c.assignment_timeout);
        assert_eq!(scaled.endgame_copies, c.endgame_copies);
        // A scheduler built with it hands a lone peer the origin's 8 slots.
        let mut s = Scheduler::new(64, scaled, 5);
        s.add_origin(ORIGIN);
        s.join(id(0), &all(64), &none(64));
        assert_eq!(s.assign(id(0), 16, Instant::now()).len(), 8);
        s.check_invariants();
    }

    #[test]
    fn pacing_gives_a_peer_behind_more_transfers_and_one_ahead_fewer() {
        // 256 blocks. Peers 0 and 1 hold 30 different blocks each, peer 2 holds 15 of peer 0's,
        // peer 3 holds nothing: the mean progress of the four is 18.75 blocks.
        let n = 256;
        let range = |a: u32, b: u32| (a..b).collect::<Vec<_>>();
        let holdings = [range(0, 30), range(30, 60), range(0, 15), Vec::new()];
        // Without pacing the first peer gets all it asks for (the others then run out of free
        // sources, which says nothing about pacing).
        for (downloads, want) in [(6, &[4, 4, 7, 8][..]), (0, &[8][..])] {
            let c = SchedConfig { downloads, ..cfg() };
            let mut s = Scheduler::new(n, c, 5);
            s.add_origin(ORIGIN);
            for (i, has) in holdings.iter().enumerate() {
                s.join(id(i), &all(n), &set(n, has));
            }
            let now = Instant::now();
            // 11.25 blocks ahead: 3 steps of 3, capped at 2; 3.75 behind: 1 step; 18.75
            // behind: capped at 2.
            for (i, &w) in want.iter().enumerate() {
                assert_eq!(
                    s.assign(id(i), 8, now).len(),
                    w,
                    "downloads {downloads}, peer {i}"
                );
                // The cap counts what is already in flight.
                assert!(s.assign(id(i), 8, now).is_empty() || downloads == 0);
            }
            s.check_invariants();
        }
        // Alone, a peer has nobody to keep pace with: the level number of transfers.
        let mut s = Scheduler::new(n, cfg(), 5);
        s.add_origin(ORIGIN);
        s.join(id(0), &all(n), &none(n));
        assert_eq!(
            s.assign(id(0), 8, Instant::now()).len(),
            4,
            "the origin's 4 slots"
        );
        let c = SchedConfig {
            origin_uploads: 16,
            ..cfg()
        };
        let mut s = Scheduler::new(n, c, 5);
        s.add_origin(ORIGIN);
        s.join(id(0), &all(n), &none(n));
        assert_eq!(s.assign(id(0), 16, Instant::now()).len(), 6);
    }

    #[test]
    fn each_peer_gets_a_share_of_the_origin() {
        // (peers, slots each peer asks for, origin slots, most origin transfers per peer)
        for (peers, slots, ocap, share) in [(4, 6, 8, 2), (2, 6, 8, 3), (16, 6, 8, 1), (4, 2, 8, 1)]
        {
            let c = SchedConfig {
                origin_uploads: ocap,
                ..cfg()
            };
            let n = 256;
            let mut s = Scheduler::new(n, c, 3);
            s.add_origin(ORIGIN);
            for i in 0..peers {
                s.join(id(i), &all(n), &none(n));
            }
            let now = Instant::now();
            let mut total = 0;
            for i in 0..peers {
                let got = s.assign(id(i), slots, now);
                // Nothing but the origin holds anything yet.
                assert!(got.iter().all(|a| a.source == ORIGIN));
                let expect = share.min(ocap as usize - total);
                assert_eq!(got.len(), expect, "{peers} peers, peer {i}");
                total += got.len();
            }
            s.check_invariants();
            // Different peers got different fresh blocks.
            assert_eq!(
                s.blocks
                    .origin_in_flight
                    .iter()
                    .filter(|&&c| c == 1)
                    .count(),
                total
            );
        }
    }

    #[test]
    fn an_idle_holder_comes_before_a_rarer_block_behind_a_busy_one() {
        for seed in 0..8 {
            // Block 0 has one holder (peer 0), block 1 two (peers 1 and 2).
            let (mut s, asker) = swarm(2, &[&[0], &[1], &[1]], cfg(), seed);
            let now = Instant::now();
            // Peer 0 gets busy serving block 0 to three others.
            for i in 10..13 {
                s.join(id(i), &set(2, &[0]), &none(2));
                assert_eq!(s.assign(id(i), 1, now)[0].source, id(0));
            }
            let got = s.assign(asker, 2, now);
            assert_eq!(blocks_of(&got), [1, 0], "seed {seed}");
            assert!([id(1), id(2)].contains(&got[0].source));
            // With equal loads, rarity decides again.
            let (mut s, asker) = swarm(2, &[&[0], &[1], &[1]], cfg(), seed);
            assert_eq!(blocks_of(&s.assign(asker, 2, now)), [0, 1]);
        }
    }

    #[test]
    fn endgame_doubles_up_only_when_everything_is_in_flight() {
        for copies in [1, 2, 3] {
            let c = SchedConfig {
                endgame_copies: copies,
                ..cfg()
            };
            let (mut s, p) = swarm(2, &[&[0, 1], &[0, 1]], c, 11);
            s.add_origin(ORIGIN);
            let now = Instant::now();
            let first = s.assign(p, 1, now)[0];
            let second = s.assign(p, 1, now)[0];
            assert_ne!(first.block, second.block, "a candidate beats a second copy");
            let extra = s.assign(p, 8, now);
            assert_eq!(s.stats().endgame_copies, extra.len() as u64);
            // Each block may have `copies` copies in flight, from distinct sources: the other
            // peer, then the origin.
            assert_eq!(extra.len(), 2 * (copies as usize - 1), "{copies} copies");
            for e in &extra {
                let same = [first, second].into_iter().find(|a| a.block == e.block);
                assert_ne!(same.unwrap().source, e.source, "two copies from one source");
            }
            let sources_of = |b: BlockIdx| -> Vec<PeerId> {
                std::iter::once(if b == first.block { first } else { second })
                    .chain(extra.iter().copied().filter(|e| e.block == b))
                    .map(|a| a.source)
                    .collect()
            };
            if copies > 1 {
                assert_ne!(
                    sources_of(first.block)[1],
                    ORIGIN,
                    "a peer before the origin"
                );
            }
            assert!(
                s.assign(p, 8, now).is_empty(),
                "no more than {copies} copies"
            );
            s.check_invariants();

            // The first copy home wins; the others are dropped, a late one is harmless.
            let from = sources_of(first.block);
            s.completed(p, first.block, *from.last().unwrap());
            assert_eq!(s.stats().cancelled, copies as u64 - 1);
            assert_eq!(s.peer_progress(p), (1, 2));
            s.completed(p, first.block, from[0]);
            assert_eq!(s.peer_progress(p), (1, 2));
            assert_eq!(s.stats().redundant, 1);
            s.check_invariants();
        }
    }

    #[test]
    fn no_endgame_while_a_block_is_still_unassigned() {
        // Block 2 has no holder and there is no origin: it cannot be assigned, so the peer is
        // not in its endgame and gets no second copies of blocks 0 and 1.
        let (mut s, p) = swarm(3, &[&[0, 1], &[0, 1]], cfg(), 5);
        let now = Instant::now();
        assert_eq!(s.assign(p, 8, now).len(), 2);
        assert!(s.assign(p, 8, now).is_empty());
        assert_eq!(s.stats().endgame_copies, 0);
    }

    #[test]
    fn corrupt_source_is_banned_for_its_peer_then_for_everyone() {
        let n = 4;
        let c = SchedConfig {
            corrupt_strikes: 2,
            ..cfg()
        };
        let bad = id(0);
        let (mut s, p1) = swarm(n, &[&[0, 1, 2, 3]], c, 9);
        s.add_origin(ORIGIN);
        let (p2, p3) = (id(50), id(51));
        s.join(p2, &all(n), &none(n));
        s.join(p3, &all(n), &none(n));
        let now = Instant::now();

        let a = s.assign(p1, 1, now)[0];
        assert_eq!(a.source, bad);
        s.failed(p1, a.block, bad, FailKind::Corrupt);
        let again = s.assign(p1, 4, now);
        assert!(!again.is_empty());
        assert!(again.iter().all(|x| x.source != bad), "{again:?}");
        // The same peer striking twice is still one strike.
        s.failed(p1, again[0].block, bad, FailKind::Corrupt);
        assert!(!s.stats().sources.iter().any(|x| x.banned));
        let b = s.assign(p2, 1, now)[0];
        assert_eq!(b.source, bad, "other peers still use it");
        s.check_invariants();

        s.failed(p2, b.block, bad, FailKind::Corrupt);
        let st = s.stats();
        assert!(st.sources.iter().any(|x| x.id == bad && x.banned));
        assert_eq!(st.corrupt, 3);
        // Its blocks no longer count: the origin spreads them again.
        assert_eq!(st.unseeded, n);
        let got = s.assign(p3, 4, now);
        assert!(!got.is_empty());
        assert!(got.iter().all(|x| x.source == ORIGIN), "{got:?}");
        s.check_invariants();
    }

    #[test]
    fn unreachable_source_is_avoided_then_retried() {
        for kind in [FailKind::Unreachable, FailKind::Timeout] {
            let (mut s, p) = swarm(2, &[&[0, 1]], cfg(), 2);
            let t0 = Instant::now();
            let backoff = cfg().unreachable_backoff;
            let a = s.assign(p, 1, t0)[0];
            assert_eq!(a.source, id(0));
            s.failed(p, a.block, id(0), kind);
            assert!(s.assign(p, 4, t0).is_empty(), "{kind:?}");
            let almost = t0 + backoff - Duration::from_millis(1);
            assert!(s.assign(p, 4, almost).is_empty(), "{kind:?}");
            // Others are not affected.
            let q = id(60);
            s.join(q, &all(2), &none(2));
            assert_eq!(s.assign(q, 1, almost)[0].source, id(0));
            let got = s.assign(p, 4, t0 + backoff);
            assert_eq!(got.len(), 2, "{kind:?}: retried after the backoff");
            assert!(got.iter().all(|x| x.source == id(0)));
            s.check_invariants();
        }
    }

    #[test]
    fn expiry_frees_the_slot_and_backs_off_the_source() {
        let c = SchedConfig {
            uploads_per_source: 1,
            ..cfg()
        };
        let timeout = c.assignment_timeout;
        let (mut s, p) = swarm(2, &[&[0, 1]], c, 4);
        let q = id(61);
        s.join(q, &all(2), &none(2));
        let t0 = Instant::now();
        let a = s.assign(p, 1, t0)[0];
        assert!(s.assign(q, 1, t0).is_empty(), "the only source is busy");
        let almost = t0 + timeout - Duration::from_millis(1);
        assert_eq!(s.expire(almost), 0);
        assert!(s.assign(q, 1, almost).is_empty());
        assert_eq!(s.expire(t0 + timeout), 1);
        assert_eq!(s.stats().timeouts, 1);
        let b = s.assign(q, 1, t0 + timeout)[0];
        assert_eq!(b.source, id(0), "the slot is free again");
        s.completed(q, b.block, id(0));
        // The peer whose assignment expired avoids that source for a while: it gets what the
        // other peer now holds, not the block only the avoided source has.
        let got = s.assign(p, 2, t0 + timeout);
        assert_eq!(
            got,
            [Assignment {
                block: b.block,
                source: q
            }]
        );
        let later = t0 + timeout + cfg().unreachable_backoff;
        let got = s.assign(p, 2, later);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source, id(0));
        // A report for the expired assignment is still taken: the peer holds the block.
        s.completed(p, a.block, id(0));
        assert_eq!(s.peer_progress(p).0, 1);
        s.check_invariants();
    }

    #[test]
    fn leaving_source_requeues_its_transfers() {
        let n = 3;
        let (mut s, p) = swarm(n, &[&[0, 1, 2]], cfg(), 6);
        s.add_origin(ORIGIN);
        let now = Instant::now();
        let got = s.assign(p, 3, now);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|a| a.source == id(0)));
        assert_eq!(s.stats().unseeded, 0);
        s.leave(id(0));
        let st = s.stats();
        assert_eq!(st.in_flight, 0);
        assert_eq!(st.unseeded, n, "its blocks are in no peer now");
        s.check_invariants();
        let again = s.assign(p, 6, now);
        assert!(!again.is_empty());
        assert!(again.iter().all(|a| a.source == ORIGIN));
        // A late report from the departed source is harmless.
        s.completed(p, BlockIdx(0), id(0));
        assert_eq!(s.peer_progress(p), (1, 3));
        s.check_invariants();
        // A leaving downloader frees the slots it held.
        s.leave(p);
        assert!(s.stats().sources.iter().all(|x| x.uploading == 0));
        assert!(!s.contains(p));
        s.check_invariants();
    }

    #[test]
    fn join_is_idempotent_and_resyncs() {
        let n = 8;
        let (mut s, p) = swarm(n, &[&[0, 1, 2, 3]], cfg(), 8);
        s.add_origin(ORIGIN);
        s.join(p, &all(n), &set(n, &[4]));
        let now = Instant::now();
        let got = s.assign(p, 3, now);
        assert_eq!(got.len(), 3);
        let snapshot = |s: &Scheduler| (s.stats(), s.peer_progress(p), s.blocks.holders.clone());
        let before = snapshot(&s);
        s.join(p, &all(n), &set(n, &[4]));
        s.join(id(0), &none(n), &set(n, &[0, 1, 2, 3]));
        s.add_origin(ORIGIN);
        assert_eq!(snapshot(&s), before);
        s.check_invariants();

        // A re-sync that reports a block in flight as held ends that transfer.
        let b = got[0].block.0;
        s.join(p, &all(n), &set(n, &[4, b]));
        assert_eq!(s.peer_progress(p), (2, n));
        assert_eq!(s.stats().in_flight, before.0.in_flight - 1);
        assert_eq!(s.blocks.holders[b as usize], before.2[b as usize] + 1);
        // One that wants less.
        s.join(p, &set(n, &[4, b]), &set(n, &[4, b]));
        assert!(s.is_done(p));
        assert_eq!(s.stats().in_flight, 0);
        s.check_invariants();
        assert!(s.all_done());
    }

    #[test]
    fn a_restarted_scheduler_rebuilds_from_joins() {
        // The coordinator forgot everything; peers re-send their state.
        let n = 16;
        let mut s = Scheduler::new(n, cfg(), 12);
        s.add_origin(ORIGIN);
        s.join(id(0), &all(n), &all(n));
        s.join(id(1), &all(n), &set(n, &[0, 1, 2]));
        assert_eq!(s.stats().unseeded, 0);
        assert!(s.is_done(id(0)) && !s.is_done(id(1)));
        let got = s.assign(id(1), 4, Instant::now());
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|a| a.source == id(0) && a.block.0 > 2));
    }
}
