//! The coordinator driven by structured calls rather than JSON text: a sequence of `work`
//! calls built from the fuzz input (`arbitrary`), so that mutations go into the swarm's state
//! (who joins with which sets, who reports which block from whom, who leaves or fails) instead
//! of into JSON syntax and base64. Ids are drawn from a few, so calls meet: a peer reports
//! blocks from a peer that left, a peer takes the seeder's id, an origin joins as a peer. The
//! scheduler's timing knobs may be zero, so timeouts and backoffs happen within one input.
//! Every reply is checked as in `wire` (see `dfpull_fuzz::Session`).
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use dfpull::image::manifest::BlockIdx;
use dfpull::swarm::bitset::BitSet;
use dfpull::swarm::scheduler::{FailKind, PeerId, SchedConfig};
use dfpull::transport::wire::{Completed, Failed, JoinInfo, WorkRequest};
use dfpull_fuzz::{Session, runtime};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    calls: Vec<Call>,
}

#[derive(Arbitrary, Debug)]
struct Config {
    uploads_per_source: u8,
    origin_uploads: u8,
    endgame_copies: u8,
    corrupt_strikes: u8,
    /// Assignments time out, and failed sources are avoided, for no time at all.
    instant: bool,
}

#[derive(Arbitrary, Debug)]
struct Call {
    peer: u8,
    port: u16,
    join: Option<Join>,
    completed: Vec<(u16, u8)>,
    failed: Vec<(u16, u8, u8)>,
    slots: u8,
    leaving: bool,
    want_roster: bool,
    from_loopback: bool,
}

#[derive(Arbitrary, Debug)]
struct Join {
    wants: Bits,
    has: Bits,
    origin: bool,
}

/// A bit set over the swarm's blocks, or over some other length.
#[derive(Arbitrary, Debug)]
enum Bits {
    All,
    Nothing,
    Ones(Vec<u16>),
    Range(u16, u16),
    OtherLength(u16, Vec<u16>),
}

/// Hosts the calls come from and name: 0 is the coordinator's own seeder.
fn id(n: u8) -> PeerId {
    PeerId(u64::from(n % 6))
}

fn bits(b: &Bits, blocks: usize) -> BitSet {
    match b {
        Bits::All => BitSet::full(blocks),
        Bits::Nothing => BitSet::new(blocks),
        Bits::Ones(v) => BitSet::from_ones(blocks, v.iter().map(|&i| i as usize % blocks)),
        Bits::Range(a, b) => BitSet::from_ones(
            blocks,
            (*a as usize..*b as usize).take_while(|&i| i < blocks),
        ),
        Bits::OtherLength(len, v) => {
            let len = *len as usize % 200;
            BitSet::from_ones(
                len,
                v.iter()
                    .filter(|&&i| (i as usize) < len)
                    .map(|&i| i as usize),
            )
        }
    }
}

fuzz_target!(|input: Input| {
    let c = &input.config;
    let config = SchedConfig {
        uploads_per_source: 1 + u32::from(c.uploads_per_source % 8),
        origin_uploads: 1 + u32::from(c.origin_uploads % 8),
        endgame_copies: 1 + u32::from(c.endgame_copies % 3),
        corrupt_strikes: 1 + u32::from(c.corrupt_strikes % 3),
        ..SchedConfig::default()
    };
    let config = if c.instant {
        SchedConfig {
            assignment_timeout: Duration::ZERO,
            unreachable_backoff: Duration::ZERO,
            ..config
        }
    } else {
        config
    };
    let _rt = runtime().enter();
    let mut session = Session::new(config);
    let blocks = session.blocks as usize;
    // Block indexes mostly in range, some past the end.
    let nblocks = session.blocks;
    let block = |b: u16| BlockIdx(u32::from(b) % (nblocks + 8));
    for call in input.calls.iter().take(64) {
        let req = WorkRequest {
            peer: id(call.peer),
            port: call.port,
            join: call.join.as_ref().map(|j| JoinInfo {
                wants: bits(&j.wants, blocks),
                has: bits(&j.has, blocks),
                origin: j.origin,
                name: String::new(),
            }),
            completed: call
                .completed
                .iter()
                .map(|&(b, from)| Completed {
                    block: block(b),
                    from: id(from),
                })
                .collect(),
            failed: call
                .failed
                .iter()
                .map(|&(b, from, kind)| Failed {
                    block: block(b),
                    from: id(from),
                    kind: [FailKind::Corrupt, FailKind::Unreachable, FailKind::Timeout]
                        [kind as usize % 3],
                })
                .collect(),
            slots: u32::from(call.slots % 16),
            in_flight: u32::from(call.slots / 16),
            leaving: call.leaving,
            want_roster: call.want_roster,
            uploaded_bytes: None,
        };
        session.call(req, call.from_loopback);
    }
    session.finish();
});
