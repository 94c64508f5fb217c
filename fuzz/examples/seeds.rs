//! Writes a seed corpus for every fuzz target into `fuzz/corpus/<target>/` (made with dfpull's
//! own writers, so the seeds stay valid as the formats evolve):
//!
//!     cargo +nightly run --release --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Seeds are small on purpose: libFuzzer's largest input defaults to the largest seed, and a
//! small one keeps every run fast. Big members (more than one 64 KiB block) come in compressed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dfpull::image::manifest::BlockIdx;
use dfpull::image::synth::{Layout, SynthSpec, write_images_to};
use dfpull::image::tar::{LongNames, TarBuilder};
use dfpull::image::{ScanOptions, scan_sources};
use dfpull::swarm::bitset::BitSet;
use dfpull::swarm::scheduler::{FailKind, PeerId};
use dfpull::transport::wire::{
    Assignment, Completed, Failed, JoinInfo, SwarmList, WorkReply, WorkRequest,
};
use dfpull_fuzz::small_swarm;
use flate2::Compression;
use flate2::write::GzEncoder;
use ruzstd::encoding::{CompressionLevel, compress_to_vec};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let archives = archives();

    let tar = Seeds::new(&root, "tar_reader");
    for (name, bytes) in &archives {
        tar.put(name, bytes);
    }
    tar.put("empty", &[0u8; 1024]);
    tar.put("trailing-data", &{
        let mut v = archives[0].1.clone();
        v.extend_from_slice(b"not a tar member");
        v
    });

    // The first byte is the target's flags: 0 as is, 1 fix checksums, 2 gzip.
    let scan = Seeds::new(&root, "archive_scan");
    for (name, bytes) in &archives {
        for flags in [0u8, 1, 2] {
            scan.put(&format!("{name}-{flags}"), &[&[flags][..], bytes].concat());
        }
    }
    let big = big_member_archive();
    scan.put("big-member-gzip", &[&[0u8][..], &gzip(&big)].concat());
    scan.put("big-member-zstd", &[&[0u8][..], &zstd(&big)].concat());
    scan.put("legacy-zstd", &[&[0u8][..], &zstd(&archives[0].1)].concat());

    let manifest = Seeds::new(&root, "manifest");
    manifest.put(
        "small-swarm",
        &serde_json::to_vec_pretty(&small_swarm()).unwrap(),
    );
    for (name, bytes) in archives.iter().filter(|(n, _)| n.starts_with("image-")) {
        manifest.put(name, &scanned_manifest(bytes));
    }

    let wire = Seeds::new(&root, "wire");
    let blocks = small_swarm()
        .objects
        .iter()
        .map(|o| o.blocks.len())
        .sum::<usize>();
    for (name, calls) in sessions(blocks) {
        let mut text = Vec::new();
        for c in &calls {
            serde_json::to_writer(&mut text, c).unwrap();
            text.push(b'\n');
        }
        wire.put(name, &text);
    }
    wire.put(
        "bitset",
        &serde_json::to_vec(&BitSet::from_ones(blocks, [0, 63, 64, 70])).unwrap(),
    );
    wire.put(
        "join",
        &serde_json::to_vec(&join(blocks, false, 3)).unwrap(),
    );
    wire.put(
        "reply",
        &serde_json::to_vec(&WorkReply {
            resync: false,
            assignments: vec![Assignment {
                block: BlockIdx(3),
                source: PeerId(1),
                addr: Some("127.0.0.1:7001".parse().unwrap()),
                source_port: 7001,
            }],
            swarm_done: false,
            peers: 2,
            roster: vec![],
        })
        .unwrap(),
    );
    wire.put(
        "list",
        &serde_json::to_vec(&SwarmList { swarms: vec![] }).unwrap(),
    );
    let (header, _) = dfpull::transport::auth::Secret::new("fuzz").sign_request("POST", "/", b"");
    wire.put("auth-header", header.as_bytes());
    println!("seeds written under {}", root.display());
}

struct Seeds(PathBuf);

impl Seeds {
    fn new(root: &Path, target: &str) -> Seeds {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        Seeds(dir)
    }

    fn put(&self, name: &str, bytes: &[u8]) {
        fs::write(self.0.join(format!("seed-{name}")), bytes).unwrap();
    }
}

/// Image archives in each layout, plus tars exercising the reader's extensions.
fn archives() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, layout) in [
        ("legacy", Layout::Legacy),
        ("docker25", Layout::Docker25),
        ("oci", Layout::Oci),
    ] {
        let specs = [
            SynthSpec {
                layers: vec![0, 100, 700],
                tags: vec!["fuzz/a:1".into(), "b:latest".into()],
                layout,
                seed: 1,
            },
            SynthSpec {
                layers: vec![0, 100],
                tags: vec![],
                layout,
                seed: 1,
            },
        ];
        let (_, bytes) = write_images_to(&specs, Vec::new()).unwrap();
        out.push((format!("image-{name}"), bytes));
    }
    for (name, style) in [("gnu", LongNames::Gnu), ("pax", LongNames::Pax)] {
        let mut b = TarBuilder::new(Vec::new()).long_names(style);
        let long = format!("{}/file", "d".repeat(120));
        b.directory("d").unwrap();
        b.file(&long, b"long name").unwrap();
        b.symlink("link", &format!("{}/target", "t".repeat(110)))
            .unwrap();
        b.file("empty", b"").unwrap();
        b.file("odd", &[7u8; 513]).unwrap();
        out.push((format!("long-names-{name}"), b.finish().unwrap()));
    }
    out
}

/// A legacy archive whose layer is one 200 KB member: several 64 KiB blocks, compressible.
fn big_member_archive() -> Vec<u8> {
    let mut b = TarBuilder::new(Vec::new());
    b.file(
        "manifest.json",
        br#"[{"Config":"c.json","RepoTags":["big:1"],"Layers":["l/layer.tar"]}]"#,
    )
    .unwrap();
    b.file("c.json", b"{}").unwrap();
    b.directory("l").unwrap();
    b.file("l/layer.tar", &vec![0u8; 200_000]).unwrap();
    b.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    compress_to_vec(data, CompressionLevel::Fastest)
}

/// The manifest the scanner makes of an archive.
fn scanned_manifest(archive: &[u8]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("dfpull-seeds-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seed.tar");
    fs::write(&path, archive).unwrap();
    let opts = ScanOptions {
        block_size: Some(dfpull::image::manifest::MIN_BLOCK),
        spool_dir: None,
    };
    let catalog = scan_sources(&[path.to_string_lossy().into_owned()], &opts).unwrap();
    let json = serde_json::to_vec_pretty(&catalog.manifest).unwrap();
    drop(catalog);
    fs::remove_dir_all(&dir).unwrap();
    json
}

fn join(blocks: usize, origin: bool, held: usize) -> JoinInfo {
    JoinInfo {
        wants: if origin {
            BitSet::new(blocks)
        } else {
            BitSet::full(blocks)
        },
        has: if origin {
            BitSet::full(blocks)
        } else {
            BitSet::from_ones(blocks, 0..held)
        },
        origin,
        name: format!("host{held}"),
    }
}

fn request(peer: u64, join: Option<JoinInfo>, slots: u32) -> WorkRequest {
    WorkRequest {
        peer: PeerId(peer),
        port: 7000 + peer as u16,
        join,
        completed: vec![],
        failed: vec![],
        slots,
        in_flight: 0,
        leaving: false,
        want_roster: false,
        uploaded_bytes: None,
    }
}

/// Work-call sequences: peers joining, reporting, failing and leaving.
fn sessions(blocks: usize) -> Vec<(&'static str, Vec<WorkRequest>)> {
    let b = |i: u32| BlockIdx(i);
    let origin = PeerId(0);
    vec![
        (
            "one-peer",
            vec![request(1, Some(join(blocks, false, 0)), 6), {
                let mut r = request(1, None, 6);
                r.completed = (0..6)
                    .map(|i| Completed {
                        block: b(i),
                        from: origin,
                    })
                    .collect();
                r
            }],
        ),
        (
            "two-peers",
            vec![
                request(1, Some(join(blocks, false, 10)), 4),
                request(2, Some(join(blocks, false, 0)), 4),
                {
                    let mut r = request(2, None, 4);
                    r.completed = vec![Completed {
                        block: b(0),
                        from: PeerId(1),
                    }];
                    r.failed = vec![Failed {
                        block: b(1),
                        from: PeerId(1),
                        kind: FailKind::Corrupt,
                    }];
                    r.want_roster = true;
                    r
                },
                {
                    let mut r = request(1, None, 0);
                    r.leaving = true;
                    r
                },
            ],
        ),
        (
            "remote-origin",
            vec![
                request(5, Some(join(blocks, true, 0)), 0),
                request(3, None, 2),
                request(3, Some(join(blocks, false, blocks - 1)), 8),
                {
                    let mut r = request(3, None, 8);
                    r.failed = vec![Failed {
                        block: b(70),
                        from: PeerId(5),
                        kind: FailKind::Timeout,
                    }];
                    r
                },
            ],
        ),
    ]
}
