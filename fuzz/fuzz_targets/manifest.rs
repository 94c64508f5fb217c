//! Arbitrary bytes as a `SwarmManifest` in JSON, as a peer or coordinator receives one. Decoding
//! may fail and `validate` may refuse; neither may panic. A manifest `validate` accepts must be
//! safe for everything later code does with it without checks of its own: `BlockTable::new`,
//! `get` on every block, `lookup` in and out of range, `placements`, `archive_objects`, the
//! swarm id. The mapping between blocks and objects must also be right, and a decoded manifest
//! must survive an encode and decode unchanged (the swarm id hashes the encoding).
#![no_main]

use dfpull::image::manifest::{BlockIdx, BlockTable, ObjectIdx, SwarmManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = serde_json::from_slice::<SwarmManifest>(data) else {
        return;
    };
    let json = serde_json::to_vec(&m).expect("a decoded manifest encodes");
    let back: SwarmManifest = serde_json::from_slice(&json).expect("and decodes again");
    assert_eq!(back, m);
    assert_eq!(back.swarm_id(), m.swarm_id());
    if m.validate().is_err() {
        return;
    }
    check_valid(&m);
});

fn check_valid(m: &SwarmManifest) {
    let table = BlockTable::new(m);
    let total: u64 = m.objects.iter().map(|o| o.blocks.len() as u64).sum();
    assert_eq!(u64::from(table.len()), total);
    assert_eq!(table.block_size(), m.block_size);

    // Every block maps to its object and back.
    let mut next = 0u32;
    for (i, o) in m.objects.iter().enumerate() {
        let oi = ObjectIdx(i as u32);
        let range = table.blocks_of(oi);
        assert_eq!(range.start, next);
        assert_eq!(u64::from(range.end - range.start), o.blocks.len() as u64);
        next = range.end;
        for (k, b) in range.clone().enumerate() {
            let r = table.get(BlockIdx(b));
            assert_eq!((r.object, r.index as usize), (oi, k));
            assert_eq!(r.offset, k as u64 * m.block_size);
            assert!(r.len > 0 && u64::from(r.len) <= m.block_size);
            assert!(r.offset + u64::from(r.len) <= o.size);
            assert_eq!(r.digest, o.blocks[k]);
            assert_eq!(table.lookup(oi, k as u32), Some(BlockIdx(b)));
        }
        assert_eq!(table.lookup(oi, range.end - range.start), None);
        assert_eq!(table.lookup(oi, u32::MAX), None);
        assert_eq!(m.object(oi).size, o.size);
    }
    let n = m.objects.len() as u32;
    assert_eq!(table.lookup(ObjectIdx(n), 0), None);
    assert_eq!(table.lookup(ObjectIdx(u32::MAX), 0), None);
    assert_eq!(table.is_empty(), total == 0);
    let _ = m.object_bytes();

    for a in &m.archives {
        let mut end = 0u64;
        for (o, at) in a.placements(m) {
            assert!(at >= end, "placements are in archive order");
            end = at + m.object(o).size;
            assert!(end <= a.size, "an object placed past the archive's end");
        }
        let objects = m.archive_objects(a);
        let mut seen = std::collections::HashSet::new();
        assert!(objects.iter().all(|o| o.0 < n && seen.insert(*o)));
        let _ = a.tags().count();
        for img in &a.images {
            for o in std::iter::once(&img.config)
                .chain(&img.layers)
                .chain(&img.extra)
            {
                let _ = m.object(*o);
            }
        }
    }
}
