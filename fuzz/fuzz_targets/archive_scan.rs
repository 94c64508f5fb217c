//! Arbitrary bytes as an image archive file, through the scanner a seeder runs
//! (`scan_sources`): plain, gzip or zstd, any layout. Errors are expected, panics are bugs.
//! A scan that succeeds must describe its input exactly: the archive rebuilt from the
//! manifest's segments and the catalog's objects is the (decompressed) input, with the sha256
//! and size the manifest gives, and every object and block hashes to its listed digest. Either
//! way the scan leaves no spool file behind.
//!
//! The first byte says how the rest is presented, so mutations can work on the tar itself and
//! still reach the paths behind the header checksums and the decompressors:
//! - bit 0: recompute every header checksum first (a mutated header otherwise stops at it);
//! - bit 1: gzip the bytes before they are scanned.
//!
//! Without either, the bytes are scanned as they are (and may be gzip or zstd themselves).
#![no_main]

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use dfpull::image::manifest::{Digest, MIN_BLOCK, Segment};
use dfpull::image::{ScanOptions, scan_sources};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;

const FIX_CHECKSUMS: u8 = 1;
const GZIP: u8 = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut tar = rest.to_vec();
    if flags & FIX_CHECKSUMS != 0 {
        fix_checksums(&mut tar);
    }
    let file = if flags & GZIP != 0 {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    } else {
        tar
    };
    scan(&file);
});

/// Where this process puts the input file and the spool directory; made and removed per input,
/// so nothing is left behind when the fuzzer stops.
fn workdir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("dfpull-fuzz-scan-{}", std::process::id()))
    })
}

fn scan(file: &[u8]) {
    let dir = workdir();
    fs::create_dir_all(dir).unwrap();
    let path = dir.join("input.tar");
    fs::write(&path, file).unwrap();
    let spool = dir.join("spool");
    let opts = ScanOptions {
        block_size: Some(MIN_BLOCK),
        spool_dir: Some(spool.clone()),
    };
    let sources = [path.to_string_lossy().into_owned()];
    if let Ok(catalog) = scan_sources(&sources, &opts) {
        let m = &catalog.manifest;
        m.validate().expect("the scanner makes valid manifests");
        assert_eq!(m.archives.len(), 1);
        let archive = &m.archives[0];
        assert!(
            !archive.images.is_empty(),
            "a scanned archive holds an image"
        );

        // Every object, whole and block by block, is what the manifest says.
        let mut objects = Vec::with_capacity(m.objects.len());
        for (i, o) in m.objects.iter().enumerate() {
            let idx = dfpull::image::manifest::ObjectIdx(i as u32);
            let mut bytes = Vec::new();
            catalog.read_object(idx, &mut bytes).unwrap();
            assert_eq!(bytes.len() as u64, o.size);
            assert_eq!(Digest::of(&bytes), o.digest, "object {i}");
            for (b, chunk) in bytes.chunks(m.block_size as usize).enumerate() {
                assert_eq!(Digest::of(chunk), o.blocks[b], "object {i}, block {b}");
            }
            objects.push(bytes);
        }

        // The segments give the archive back.
        let mut rebuilt = Vec::new();
        for s in &archive.segments {
            match s {
                Segment::Inline(b) => rebuilt.extend_from_slice(b),
                Segment::Object(o) => rebuilt.extend_from_slice(&objects[o.0 as usize]),
            }
        }
        assert_eq!(rebuilt.len() as u64, archive.size);
        assert_eq!(Digest::of(&rebuilt), archive.digest);
        if file.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            MultiGzDecoder::new(file).read_to_end(&mut plain).unwrap();
            assert!(plain == rebuilt, "the gzip input, rebuilt");
        } else if !file.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            assert!(file == &rebuilt[..], "the plain input, rebuilt");
        }
        drop(catalog);
    }
    assert!(
        !spool.exists(),
        "the spool is removed with the catalog or the error"
    );
    fs::remove_dir_all(dir).unwrap();
}

/// Recomputes the checksum of each header, following the headers' size fields from the start
/// as a reader would (PAX size overrides aside), until an all-zero block or the end.
fn fix_checksums(tar: &mut [u8]) {
    let mut at = 0usize;
    while at + 512 <= tar.len() {
        let block = &mut tar[at..at + 512];
        if block.iter().all(|&b| b == 0) {
            return;
        }
        block[148..156].fill(b' ');
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = match block[156] {
            b'1'..=b'6' => 0,
            _ => parse_size(&block[124..136]),
        };
        let Some(next) = size
            .checked_add(511)
            .map(|s| s / 512 * 512)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| (at + 512).checked_add(s))
        else {
            return;
        };
        at = next;
    }
}

/// A header's size field, octal or base-256; 0 when it is neither.
fn parse_size(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(0u64, |v, &b| v.wrapping_mul(256).wrapping_add(u64::from(b)));
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .fold(0u64, |v, &b| {
            v.wrapping_mul(8).wrapping_add(u64::from(b - b'0'))
        })
}
