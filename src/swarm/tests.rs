//! In-process swarm tests on loopback: a seeder and several peers in one runtime, real HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::image::Backing;
use crate::image::manifest::{
    ArchiveInfo, Digest, ImageInfo, MANIFEST_VERSION, ObjectIdx, ObjectInfo, Segment, SwarmManifest,
};
use crate::swarm::peer::{self, PeerSettings};
use crate::swarm::received::Received;
use crate::swarm::seeder::{SeedSettings, Seeder};
use crate::swarm::store::SavedCheck;

const BS: u64 = 64 << 10;

fn object(data: &[u8]) -> ObjectInfo {
    ObjectInfo {
        digest: Digest::of(data),
        size: data.len() as u64,
        blocks: data.chunks(BS as usize).map(Digest::of).collect(),
    }
}

/// Writes an archive of inline bytes and three objects (one appearing twice) and returns its
/// manifest. The bytes need not be a real tar: the swarm moves segments, not tar semantics.
fn make_archive(dir: &Path, seed: u8) -> (SwarmManifest, PathBuf) {
    let mut x = seed as u64 | 1;
    let mut rand_bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let objs = [
        rand_bytes(700_001),
        rand_bytes(BS as usize * 3),
        rand_bytes(0),
    ];
    let segs = vec![
        Segment::Inline(rand_bytes(512)),
        Segment::Object(ObjectIdx(0)),
        Segment::Inline(vec![0; 319]),
        Segment::Object(ObjectIdx(1)),
        Segment::Object(ObjectIdx(2)),
        Segment::Object(ObjectIdx(0)),
        Segment::Inline(vec![0; 1024]),
    ];
    let mut bytes = Vec::new();
    for s in &segs {
        match s {
            Segment::Inline(b) => bytes.extend_from_slice(b),
            Segment::Object(o) => bytes.extend_from_slice(&objs[o.0 as usize]),
        }
    }
    let path = dir.join("source.tar");
    std::fs::write(&path, &bytes).unwrap();
    let manifest = SwarmManifest {
        version: MANIFEST_VERSION,
        block_size: BS,
        objects: objs.iter().map(|o| object(o)).collect(),
        archives: vec![ArchiveInfo {
            name: "app.tar".into(),
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            source: path.display().to_string(),
            images: vec![ImageInfo {
                tags: vec!["app:1".into()],
                id: Digest::of(b"config"),
                config: ObjectIdx(2),
                layers: vec![ObjectIdx(0), ObjectIdx(1)],
                extra: vec![],
            }],
            segments: segs,
        }],
    };
    manifest.validate().unwrap();
    (manifest, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_swarm_delivers_identical_archives_and_origin_sends_about_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, source) = make_archive(dir.path(), 7);
    let cancel = CancellationToken::new();
    let seeder = Seeder::start(
        manifest.clone(),
        Backing::open(std::slice::from_ref(&source)).unwrap(),
        SeedSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            coordinator: None,
            exit_after: Some(4),
            name: "seed".into(),
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", seeder.local.port());
    let swarm = seeder.swarm;
    let counters = seeder.state.counters.clone();
    let seed_task = tokio::spawn(seeder.serve());

    // The manifest goes out gzip-compressed to a client that accepts it, plain to one that
    // does not; dfpull's client asks for gzip and gets the same manifest.
    let url = format!("{base}{}", crate::transport::wire::manifest_path(&swarm));
    let http = reqwest::Client::new();
    let plain = http.get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    let gz = http.get(&url).header("accept-encoding", "br, gzip;q=0.5");
    let gz = gz.send().await.unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz = gz.bytes().await.unwrap();
    assert!(
        gz.len() < plain.len(),
        "{} against {}",
        gz.len(),
        plain.len()
    );
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut inflated).unwrap();
    assert_eq!(inflated, plain);
    let client = crate::transport::client::Client::new();
    assert_eq!(
        client.manifest(&base, &swarm).await.unwrap().swarm_id(),
        swarm
    );

    let manifest = Arc::new(manifest);
    let mut peers = Vec::new();
    for i in 0..4 {
        let out = dir.path().join(format!("peer{i}"));
        let settings = PeerSettings {
            coordinator: base.clone(),
            swarm,
            archives: vec![0],
            out_dir: out.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            seed_time: Duration::from_secs(5),
            name: format!("peer{i}"),
            client: crate::transport::client::Client::new(),
            // Half the peers hash their archive whole, half trust their block checks.
            saved_check: if i % 2 == 0 {
                SavedCheck::Whole
            } else {
                SavedCheck::Blocks
            },
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        peers.push((
            out,
            tokio::spawn(peer::run(
                settings,
                manifest.clone(),
                tx,
                cancel.child_token(),
            )),
        ));
    }
    let want = std::fs::read(&source).unwrap();
    for (out, task) in peers {
        let summary = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(summary.saved.len(), 1);
        let got = std::fs::read(out.join("app.tar")).unwrap();
        assert!(got == want, "archive differs from the source");
        assert!(!crate::swarm::store::partial_path(&out, "app.tar").exists());
    }
    tokio::time::timeout(Duration::from_secs(10), seed_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let served = counters
        .bytes_served
        .load(std::sync::atomic::Ordering::Relaxed);
    let one_copy = manifest.object_bytes();
    eprintln!("origin served {served} bytes for {one_copy} bytes of objects");
    assert!(
        served >= one_copy,
        "origin sent less than one copy: {served} < {one_copy}"
    );
    // On unshaped loopback the origin's uplink is never the bottleneck, so the scheduler may
    // fall back to it when every peer's upload slots are busy; without origin spreading it
    // would send one copy per peer (4 here). The tight bound is checked on shaped links.
    assert!(
        served as f64 <= 3.0 * one_copy as f64,
        "origin sent {served} bytes, 3 or more copies of {one_copy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_block_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = make_archive(dir.path(), 9);
    let store = crate::swarm::store::Store::peer(&manifest, &[0], &dir.path().join("out")).unwrap();
    let table = store.table().clone();
    let r = table.get(crate::image::manifest::BlockIdx(0));
    let mut data = vec![0u8; r.len as usize];
    assert!(matches!(
        store.write_block(crate::image::manifest::BlockIdx(0), &Received::of(&data)),
        Err(crate::swarm::store::StoreError::Corrupt { .. })
    ));
    assert!(!store.has(crate::image::manifest::BlockIdx(0)));
    assert!(
        store
            .read_block(crate::image::manifest::BlockIdx(0))
            .is_none(),
        "an unverified block is served"
    );
    data.truncate(10);
    assert!(matches!(
        store.write_block(crate::image::manifest::BlockIdx(0), &Received::of(&data)),
        Err(crate::swarm::store::StoreError::WrongLength { .. })
    ));
}

/// Blocks written by an earlier run are found again (verified) and not fetched twice; a
/// block damaged on disk is dropped instead of served, and a repair finds it.
#[test]
fn partial_archives_resume_and_damaged_blocks_are_never_served() {
    use crate::image::manifest::BlockIdx;
    use crate::swarm::store::{Store, StoreError, partial_path};
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let (manifest, source) = make_archive(dir.path(), 11);
    let origin = Store::origin(&manifest, Backing::open(&[source]).unwrap());
    let out = dir.path().join("out");
    let total = origin.table().len();
    {
        let peer = Store::peer(&manifest, &[0], &out).unwrap();
        assert_eq!(peer.held_count(), 0);
        for b in (0..total).step_by(2) {
            let data = origin.read_block(BlockIdx(b)).unwrap().unwrap();
            assert!(peer.write_block(BlockIdx(b), &Received::of(&data)).unwrap());
        }
    }
    let peer = Store::peer(&manifest, &[0], &out).unwrap();
    let want = total.div_ceil(2) as u64;
    assert_eq!(
        peer.held_count(),
        want,
        "a resumed store holds what the first run verified"
    );
    assert!(peer.has(BlockIdx(0)) && !peer.has(BlockIdx(1)));
    // Progress counts the bytes of the blocks held, short last blocks included.
    let len = |b: u32| u64::from(peer.table().get(BlockIdx(b)).len);
    let object_bytes: u64 = manifest.objects.iter().map(|o| o.size).sum();
    let held_bytes: u64 = (0..total).step_by(2).map(len).sum();
    assert!(
        (0..total).any(|b| len(b) < manifest.block_size),
        "a short block"
    );
    assert_eq!(peer.archive_progress(0), (held_bytes, object_bytes));

    // Damage block 0 where it sits in the partial file.
    let r = peer.table().get(BlockIdx(0));
    let place = manifest.archives[0]
        .placements(&manifest)
        .into_iter()
        .find(|(o, _)| *o == r.object)
        .unwrap()
        .1;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(partial_path(&out, "app.tar"))
        .unwrap();
    file.write_all_at(b"garbage", place + r.offset + 5).unwrap();
    assert!(matches!(
        peer.read_block(BlockIdx(0)),
        Some(Err(StoreError::Corrupt { .. }))
    ));
    assert!(!peer.has(BlockIdx(0)), "a damaged block is no longer held");
    assert!(peer.read_block(BlockIdx(0)).is_none(), "and never served");
    assert_eq!(peer.lost(), 1);
    assert_eq!(
        peer.archive_progress(0),
        (held_bytes - len(0), object_bytes)
    );

    // Fill in the rest; the archive completes and verifies once the lost block is back.
    for b in 0..total {
        let data = origin.read_block(BlockIdx(b)).unwrap().unwrap();
        peer.write_block(BlockIdx(b), &Received::of(&data)).unwrap();
    }
    assert_eq!(peer.archive_progress(0), (object_bytes, object_bytes));
    let path = peer.finish(&manifest, 0).unwrap();
    assert_eq!(
        Digest::of(&std::fs::read(path).unwrap()),
        manifest.archives[0].digest
    );
}

/// Damage that a block check cannot see before the end (the second copy of an object that
/// occurs twice) fails the whole-archive check; repair drops the damaged block.
#[test]
fn repair_finds_damage_in_a_second_copy_of_an_object() {
    use crate::image::manifest::BlockIdx;
    use crate::swarm::store::{Store, StoreError, partial_path};
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let (manifest, source) = make_archive(dir.path(), 13);
    let origin = Store::origin(&manifest, Backing::open(&[source]).unwrap());
    let out = dir.path().join("out");
    let peer = Store::peer(&manifest, &[0], &out).unwrap();
    for b in 0..peer.table().len() {
        peer.write_block(
            BlockIdx(b),
            &Received::of(&origin.read_block(BlockIdx(b)).unwrap().unwrap()),
        )
        .unwrap();
    }
    // Object 0 occurs twice; damage its second copy.
    let second = manifest.archives[0]
        .placements(&manifest)
        .into_iter()
        .filter(|(o, _)| o.0 == 0)
        .nth(1)
        .unwrap()
        .1;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(partial_path(&out, "app.tar"))
        .unwrap();
    file.write_all_at(b"X", second + 3).unwrap();
    assert!(matches!(
        peer.finish(&manifest, 0),
        Err(StoreError::ArchiveMismatch { .. })
    ));
    assert!(
        !out.join("app.tar").exists(),
        "a bad archive is never renamed into place"
    );
    assert_eq!(peer.repair(&manifest, 0).unwrap(), 1);
    assert!(!peer.has(BlockIdx(0)));
}

/// Fills a peer store from the origin's blocks in a scrambled order, with the background
/// checker running; returns the store once there is nothing left for its checker to do (with
/// [`SavedCheck::Whole`]: once its running hash has reached the end).
fn filled_with_checker(
    manifest: &SwarmManifest,
    source: PathBuf,
    out: &Path,
    check: SavedCheck,
) -> Arc<crate::swarm::store::Store> {
    use crate::image::manifest::BlockIdx;
    use crate::swarm::store::Store;
    let origin = Store::origin(manifest, Backing::open(&[source]).unwrap());
    let mut peer = Store::peer(manifest, &[0], out).unwrap();
    peer.set_saved_check(check);
    let peer = Arc::new(peer);
    peer.spawn_checker();
    let n = peer.table().len();
    // Odd blocks first, then even ones: the running hash must wait for the gaps.
    for b in (1..n).step_by(2).chain((0..n).step_by(2)) {
        let data = origin.read_block(BlockIdx(b)).unwrap().unwrap();
        assert!(peer.write_block(BlockIdx(b), &Received::of(&data)).unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while check == SavedCheck::Whole && !peer.running_hashes_done() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background checker never reached the end"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    peer
}

/// The archive is hashed in order while blocks arrive out of order, and finishing it uses
/// that hash instead of reading the whole file once more.
#[test]
fn an_archive_hashed_as_it_fills_finishes_without_a_second_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, source) = make_archive(dir.path(), 17);
    let out = dir.path().join("out");
    let peer = filled_with_checker(&manifest, source, &out, SavedCheck::Whole);
    let path = peer.finish(&manifest, 0).unwrap();
    assert_eq!(
        Digest::of(&std::fs::read(&path).unwrap()),
        manifest.archives[0].digest
    );
    assert_eq!(peer.whole_passes(), 0, "the running hash was not used");
}

/// Bytes changed by another process after the running hash passed them are still caught
/// before the archive is renamed: the other open voids the running hash.
#[test]
fn a_change_behind_the_running_hash_is_caught_before_the_rename() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, source) = make_archive(dir.path(), 19);
    let out = dir.path().join("out");
    let peer = filled_with_checker(&manifest, source, &out, SavedCheck::Whole);
    // The running hash covers the whole file now; change a byte near its start.
    change_partial_and_expect_refusal(&peer, &manifest, &out);
}

/// Changes a byte of a filled peer's partial file through another open, and checks that
/// finishing refuses the archive after hashing the file whole again, leaving no final file.
fn change_partial_and_expect_refusal(
    peer: &crate::swarm::store::Store,
    manifest: &SwarmManifest,
    out: &Path,
) {
    use crate::swarm::store::{StoreError, partial_path};
    use std::os::unix::fs::FileExt;

    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(partial_path(out, "app.tar"))
        .unwrap();
    file.write_all_at(b"X", 600).unwrap();
    drop(file);
    assert!(matches!(
        peer.finish(manifest, 0),
        Err(StoreError::ArchiveMismatch { .. })
    ));
    assert!(!out.join("app.tar").exists());
    assert_eq!(
        peer.whole_passes(),
        1,
        "the file was not hashed whole again"
    );
}

/// A store that cannot be set up (here: the second archive's partial path is a directory)
/// removes the partial files it started, and never the kept partial of an earlier run.
#[test]
fn a_store_that_fails_to_open_removes_only_the_partials_it_started() {
    use crate::image::manifest::BlockIdx;
    use crate::swarm::store::{Store, StoreError, partial_path};

    let dir = tempfile::tempdir().unwrap();
    let (mut manifest, source) = make_archive(dir.path(), 31);
    let mut second = manifest.archives[0].clone();
    second.name = "two.tar".into();
    manifest.archives.push(second);
    let out = dir.path().join("out");
    let (first, blocker) = (partial_path(&out, "app.tar"), partial_path(&out, "two.tar"));
    let expect_failure = || match Store::peer(&manifest, &[0, 1], &out) {
        Err(StoreError::Write { path, .. }) => assert_eq!(path, blocker),
        other => panic!("a store over a directory was set up: {other:?}"),
    };
    std::fs::create_dir_all(&blocker).unwrap();
    expect_failure();
    assert!(!first.exists(), "a failed set-up left a new partial file");

    std::fs::remove_dir(&blocker).unwrap();
    let origin = Store::origin(&manifest, Backing::open(&[source]).unwrap());
    let data = origin.read_block(BlockIdx(0)).unwrap().unwrap();
    let kept = Store::peer(&manifest, &[0], &out).unwrap();
    assert!(kept.write_block(BlockIdx(0), &Received::of(&data)).unwrap());
    drop(kept);
    std::fs::create_dir_all(&blocker).unwrap();
    expect_failure();
    let again = Store::peer(&manifest, &[0], &out).unwrap();
    assert!(
        again.has(BlockIdx(0)),
        "a failed set-up removed the kept partial of an earlier run"
    );
}

/// By default an archive nobody else opened is saved without hashing it again (every block
/// was verified before it was written); a byte changed by another process is still caught
/// before the rename, by a whole-file hash the other open calls for.
#[test]
fn an_archive_nobody_else_opened_is_trusted_and_one_somebody_changed_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, source) = make_archive(dir.path(), 29);
    let out = dir.path().join("out");
    let peer = filled_with_checker(&manifest, source.clone(), &out, SavedCheck::Blocks);
    let path = peer.finish(&manifest, 0).unwrap();
    assert_eq!(
        Digest::of(&std::fs::read(&path).unwrap()),
        manifest.archives[0].digest
    );
    assert_eq!(
        peer.whole_passes(),
        0,
        "an untouched archive was hashed again"
    );

    let out = dir.path().join("out2");
    let peer = filled_with_checker(&manifest, source, &out, SavedCheck::Blocks);
    change_partial_and_expect_refusal(&peer, &manifest, &out);
}

/// A second peer writing into the same output directory is refused before it touches the
/// first one's partial file; once the first is gone, the file is free again (and resumes).
#[test]
fn two_peers_never_write_one_partial_archive() {
    use crate::image::manifest::BlockIdx;
    use crate::swarm::store::{Store, StoreError, partial_path};

    let dir = tempfile::tempdir().unwrap();
    let (manifest, source) = make_archive(dir.path(), 23);
    let origin = Store::origin(&manifest, Backing::open(&[source]).unwrap());
    let out = dir.path().join("out");
    let first = Store::peer(&manifest, &[0], &out).unwrap();
    let data = origin.read_block(BlockIdx(0)).unwrap().unwrap();
    assert!(
        first
            .write_block(BlockIdx(0), &Received::of(&data))
            .unwrap()
    );
    let before = std::fs::read(partial_path(&out, "app.tar")).unwrap();
    match Store::peer(&manifest, &[0], &out) {
        Err(StoreError::Busy(path)) => assert_eq!(path, partial_path(&out, "app.tar")),
        other => panic!("a second writer was let in: {other:?}"),
    }
    assert_eq!(
        std::fs::read(partial_path(&out, "app.tar")).unwrap(),
        before,
        "the refused peer changed the first one's file"
    );
    drop(first);
    let again = Store::peer(&manifest, &[0], &out).unwrap();
    assert!(again.has(BlockIdx(0)), "the freed file resumes");
}

/// A seeder serves the blocks of a source it scanned without hashing them again, as long as
/// nobody has touched the file since; once someone writes to it, every block served is
/// checked, and a changed one is refused rather than served.
/// A 3 MiB demo archive `app.tar` in `dir`, scanned as a seeder scans it (so it is watched).
fn scanned_demo(dir: &Path) -> (PathBuf, crate::image::Catalog) {
    let source = dir.join("app.tar");
    crate::image::synth::demo_archive(&source, 3 << 20, "app:1").unwrap();
    let opts = crate::image::ScanOptions {
        block_size: Some(1 << 20),
        spool_dir: None,
    };
    let catalog = crate::image::scan_sources(&[source.display().to_string()], &opts).unwrap();
    (source, catalog)
}

#[test]
fn a_seeder_checks_its_source_again_only_once_someone_else_writes_to_it() {
    use crate::image::manifest::BlockIdx;
    use crate::swarm::store::{Store, StoreError};
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let (source, mut catalog) = scanned_demo(dir.path());
    let manifest = catalog.manifest.clone();
    let origin = Store::origin(&manifest, catalog.take_backing().unwrap());
    let blocks = origin.table().len();
    assert!(blocks >= 3);
    for b in 0..blocks {
        origin.read_block(BlockIdx(b)).unwrap().unwrap();
    }
    assert_eq!(
        origin.served_checks(),
        0,
        "an untouched source was hashed again"
    );

    // A reader elsewhere: checked while it has the file open, not after.
    let reader = std::fs::File::open(&source).unwrap();
    origin.read_block(BlockIdx(0)).unwrap().unwrap();
    assert_eq!(origin.served_checks(), 1, "an open that lasts went unseen");
    drop(reader);
    origin.read_block(BlockIdx(0)).unwrap().unwrap();
    assert_eq!(origin.served_checks(), 1, "a reader that left still counts");

    // A writer: the block it changed is never served again.
    let last = BlockIdx(blocks - 1);
    let r = origin.table().get(last);
    let (_, at) = catalog.object_location(r.object);
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&source)
        .unwrap();
    let mut byte = [0u8; 1];
    std::fs::File::open(&source)
        .unwrap()
        .read_exact_at(&mut byte, at + r.offset)
        .unwrap();
    writer.write_all_at(&[!byte[0]], at + r.offset).unwrap();
    drop(writer);
    match origin.read_block(last) {
        Some(Err(StoreError::Corrupt { block, .. })) => assert_eq!(block, last.0),
        other => panic!("a changed block was served: {other:?}"),
    }
    assert!(!origin.has(last), "a changed block is still offered");
    origin.read_block(BlockIdx(0)).unwrap().unwrap();
    assert!(origin.served_checks() >= 3, "checks stopped after a write");
}
