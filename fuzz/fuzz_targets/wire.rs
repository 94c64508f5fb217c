//! Arbitrary bytes as the JSON bodies that cross the network. First each body type on its own,
//! as a server or client decodes it: a decoded `BitSet` must keep its invariants (no bit at or
//! past its length) and encode back to a set equal to itself. Then the bytes as a stream of
//! `WorkRequest`s, each one a `work` call to a real `Coordinator` holding a small swarm (see
//! `dfpull_fuzz::Session`): whatever the block indexes, bit set sizes, peer ids or flags, the
//! coordinator answers or refuses, never panics, and what it answers makes sense.
//!
//! The auth header parser gets the bytes too, as text: it reads a header from the network
//! before anything else does.
#![no_main]

use dfpull::swarm::bitset::BitSet;
use dfpull::swarm::scheduler::SchedConfig;
use dfpull::transport::auth::Secret;
use dfpull::transport::wire::{JoinInfo, SwarmList, SwarmStatus, WorkReply, WorkRequest};
use dfpull_fuzz::{Session, runtime};
use libfuzzer_sys::fuzz_target;

/// Most calls one input makes.
const MAX_CALLS: usize = 64;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = serde_json::from_slice::<BitSet>(data) {
        check_bitset(&set);
    }
    if let Ok(join) = serde_json::from_slice::<JoinInfo>(data) {
        check_bitset(&join.wants);
        check_bitset(&join.has);
    }
    let _ = serde_json::from_slice::<WorkReply>(data);
    let _ = serde_json::from_slice::<SwarmStatus>(data);
    let _ = serde_json::from_slice::<SwarmList>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let secret = Secret::new("fuzz");
        let _ = secret.verify_request(Some(text), "POST", "/v1/swarms", b"{}");
        let _ = secret.verify_response(Some(text), "0123456789abcdef", 200, b"{}");
    }

    let _rt = runtime().enter();
    let mut session = Session::new(SchedConfig::default());
    let requests = serde_json::Deserializer::from_slice(data).into_iter::<WorkRequest>();
    for (i, req) in requests.take(MAX_CALLS).enumerate() {
        let Ok(req) = req else { break };
        session.call(req, i % 3 != 2);
    }
    session.finish();
});

fn check_bitset(set: &BitSet) {
    let ones: Vec<usize> = set.iter_ones().collect();
    assert_eq!(ones.len(), set.count());
    assert!(ones.iter().all(|&i| i < set.len() && set.get(i)));
    assert!(!set.get(set.len()));
    assert_eq!(set.any(), !ones.is_empty());
    let json = serde_json::to_vec(set).expect("a bit set encodes");
    let back: BitSet = serde_json::from_slice(&json).expect("and decodes again");
    assert!(back == *set);
}
