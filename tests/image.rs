//! Image archives end to end: sources scanned into a manifest and rebuilt byte for byte, in
//! every layout and compression, the `inspect` command, and every kind of bad input.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::archive::{
    config_for, dfpull, docker_manifest, gzip, layer, legacy_with, sha256_file, tar_of, tree, zstd,
};
use dfpull::exit::{Exit, HasExit};
use dfpull::image::manifest::{Digest, ImageInfo, ObjectIdx, SwarmManifest};
use dfpull::image::synth::{Layout, SynthArchive, SynthSpec, write_images};
use dfpull::image::tar::LongNames;
use dfpull::image::{Catalog, ImageError, ScanOptions, scan_sources, write_archive};
use proptest::prelude::*;

const BS: u64 = 64 << 10;

fn opts() -> ScanOptions {
    ScanOptions {
        block_size: Some(BS),
        spool_dir: None,
    }
}

fn scan(paths: &[&Path], opts: &ScanOptions) -> Result<Catalog, ImageError> {
    let sources: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    scan_sources(&sources, opts)
}

/// Rebuilds every archive of a catalog into `dir` from the catalog's own backing files.
fn rebuild_all(cat: &Catalog, dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let m = &cat.manifest;
    m.archives
        .iter()
        .map(|a| write_archive(m, a, |o, w| cat.read_object(o, w), dir).unwrap())
        .collect()
}

/// Every object's block digests, recomputed from the bytes the catalog serves.
fn check_blocks(cat: &Catalog) {
    let m = &cat.manifest;
    for (i, o) in m.objects.iter().enumerate() {
        let mut bytes = Vec::new();
        cat.read_object(ObjectIdx(i as u32), &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, o.size);
        assert_eq!(Digest::of(&bytes), o.digest, "object {i}");
        let blocks: Vec<Digest> = bytes
            .chunks(m.block_size as usize)
            .map(Digest::of)
            .collect();
        assert_eq!(blocks, o.blocks, "blocks of object {i}");
    }
}

fn layer_digests(m: &SwarmManifest, img: &ImageInfo) -> Vec<Digest> {
    img.layers.iter().map(|&l| m.object(l).digest).collect()
}

fn assert_images_match(m: &SwarmManifest, images: &[ImageInfo], made: &SynthArchive) {
    assert_eq!(images.len(), made.images.len());
    for (img, want) in images.iter().zip(&made.images) {
        assert_eq!(img.tags, want.tags);
        assert_eq!(img.id, want.id);
        assert_eq!(m.object(img.config).digest, want.id);
        assert_eq!(layer_digests(m, img), want.diff_ids);
    }
}

/// Two images on one base, with an empty layer and sizes that are not multiples of the block.
fn two_images(layout: Layout) -> Vec<SynthSpec> {
    vec![
        SynthSpec {
            layers: vec![200_000, 0, 70_001],
            tags: vec!["synth/base:1".into()],
            layout,
            seed: 11,
        },
        SynthSpec {
            layers: vec![200_000, 0, 5],
            tags: vec!["synth/app:1".into(), "synth/app:latest".into()],
            layout,
            seed: 11,
        },
    ]
}

fn round_trip(layout: Layout) -> Catalog {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.tar");
    let made = write_images(&two_images(layout), &path).unwrap();
    let cat = scan(&[&path], &opts()).unwrap();
    let m = &cat.manifest;
    m.validate().unwrap();
    assert_eq!(m.block_size, BS);
    let a = &m.archives[0];
    assert_eq!(
        (a.name.as_str(), a.digest, a.size),
        ("two.tar", made.digest, made.size)
    );
    assert_images_match(m, &a.images, &made);
    let (base, app) = (&a.images[0], &a.images[1]);
    assert_eq!(
        base.layers[0], app.layers[0],
        "the shared base is one object"
    );
    assert_eq!(base.layers[1], app.layers[1], "so is the empty layer");
    assert_ne!(base.layers[2], app.layers[2]);
    let distinct: HashSet<_> = m.objects.iter().map(|o| (o.digest, o.size)).collect();
    assert_eq!(distinct.len(), m.objects.len(), "no object listed twice");
    // Small members no image names (VERSION, json, manifest.json, index.json...) travel inline.
    let named: HashSet<ObjectIdx> = a
        .images
        .iter()
        .flat_map(|i| std::iter::once(&i.config).chain(&i.layers).chain(&i.extra))
        .copied()
        .collect();
    assert_eq!(
        named.len(),
        m.objects.len(),
        "every object is named by an image"
    );
    assert_eq!(
        cat.backing[0],
        std::path::absolute(&path).unwrap(),
        "a plain archive is served in place"
    );
    assert!(cat.spool_dir().is_none());
    check_blocks(&cat);
    let out = rebuild_all(&cat, &dir.path().join("out"));
    assert_eq!(fs::read(&out[0]).unwrap(), fs::read(&path).unwrap());
    cat
}

#[test]
fn legacy_round_trip_with_shared_and_empty_layers() {
    let cat = round_trip(Layout::Legacy);
    let img = &cat.manifest.archives[0].images[0];
    assert!(
        img.extra.is_empty(),
        "the legacy layout has no OCI manifests"
    );
}

#[test]
fn docker25_round_trip_finds_oci_manifests_as_extras() {
    let cat = round_trip(Layout::Docker25);
    let m = &cat.manifest;
    for img in &m.archives[0].images {
        assert_eq!(img.extra.len(), 1, "one OCI manifest per image");
        let mut doc = Vec::new();
        cat.read_object(img.extra[0], &mut doc).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["config"]["digest"], img.id.to_string());
    }
}

#[test]
fn oci_layout_round_trip_takes_tags_from_annotations() {
    round_trip(Layout::Oci);
}

#[test]
fn gzip_and_zstd_sources_are_spooled_and_rebuilt_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.tar");
    let made = write_images(&two_images(Layout::Legacy)[..1], &plain).unwrap();
    let bytes = fs::read(&plain).unwrap();
    let gz = dir.path().join("img.tar.gz");
    let zst = dir.path().join("img.tar.zst");
    fs::write(&gz, gzip(&bytes)).unwrap();
    fs::write(&zst, zstd(&bytes)).unwrap();
    let spool = dir.path().join("spool");
    let opts = ScanOptions {
        block_size: Some(BS),
        spool_dir: Some(spool.clone()),
    };
    let cat = scan(&[&gz, &zst, &plain], &opts).unwrap();
    let m = &cat.manifest;
    let names: Vec<_> = m.archives.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["img.tar", "img-2.tar", "plain.tar"]);
    for a in &m.archives {
        assert_eq!(
            a.digest, made.digest,
            "{}: digest of the uncompressed archive",
            a.name
        );
        assert_images_match(m, &a.images, &made);
    }
    // The same content three times is still one set of objects.
    assert_eq!(
        m.archive_objects(&m.archives[0]),
        m.archive_objects(&m.archives[1])
    );
    assert_eq!(
        m.archive_objects(&m.archives[0]),
        m.archive_objects(&m.archives[2])
    );
    for b in &cat.backing[..2] {
        assert!(b.starts_with(&spool), "{} is spooled", b.display());
        assert_eq!(sha256_file(b), made.digest);
    }
    check_blocks(&cat);
    for out in rebuild_all(&cat, &dir.path().join("out")) {
        assert_eq!(sha256_file(&out), made.digest);
    }
    drop(cat);
    assert!(!spool.exists(), "the spool is removed with the catalog");
}

#[test]
fn the_default_spool_is_a_fresh_temporary_directory() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("p.tar");
    write_images(&two_images(Layout::Oci)[1..], &plain).unwrap();
    let gz = dir.path().join("p.tgz");
    fs::write(&gz, gzip(&fs::read(&plain).unwrap())).unwrap();
    let cat = scan(&[&gz], &opts()).unwrap();
    let spool = cat.spool_dir().unwrap().to_path_buf();
    assert!(spool.starts_with(std::env::temp_dir()));
    assert_eq!(tree(&spool).len(), 1, "one spool file");
    assert_eq!(cat.manifest.archives[0].name, "p.tar");
    drop(cat);
    assert!(!spool.exists());
}

#[test]
fn identical_contents_across_sources_are_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let specs = two_images(Layout::Legacy);
    let a = dir.path().join("a.tar");
    let b = dir.path().join("b.tar");
    let made_a = write_images(&specs[..1], &a).unwrap();
    let made_b = write_images(&specs[1..], &b).unwrap();
    let cat = scan(&[&a, &b, &a], &opts()).unwrap();
    let m = &cat.manifest;
    let names: Vec<_> = m.archives.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["a.tar", "b.tar", "a-2.tar"]);
    assert_images_match(m, &m.archives[0].images, &made_a);
    assert_images_match(m, &m.archives[1].images, &made_b);
    let base_a = m.archives[0].images[0].layers[0];
    let base_b = m.archives[1].images[0].layers[0];
    assert_eq!(base_a, base_b, "the shared base layer crosses archives");
    let total: u64 = m.archives.iter().map(|x| x.size).sum();
    assert!(
        m.object_bytes() < total / 2,
        "{} sent for {} of archives",
        m.object_bytes(),
        total
    );
    let out = rebuild_all(&cat, &dir.path().join("out"));
    assert_eq!(sha256_file(&out[2]), made_a.digest);
}

#[test]
fn zero_byte_members_and_layers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let l0 = layer("big.bin", &vec![7u8; 3 * BS as usize + 1]);
    let empty_tar = tar_of(&[], LongNames::Gnu);
    let zero: &[u8] = b"";
    let bytes = legacy_with(
        "zero:1",
        &[&l0, &empty_tar, zero],
        &[("empty-file", b""), ("sub/also-empty", b"")],
    );
    let path = dir.path().join("zero.tar");
    fs::write(&path, &bytes).unwrap();
    let cat = scan(&[&path], &opts()).unwrap();
    let m = &cat.manifest;
    let img = &m.archives[0].images[0];
    assert_eq!(img.tags, ["zero:1"]);
    let sizes: Vec<u64> = img.layers.iter().map(|&l| m.object(l).size).collect();
    assert_eq!(sizes, [l0.len() as u64, 1024, 0]);
    assert_eq!(m.object(img.layers[0]).blocks.len(), 4);
    assert!(m.object(img.layers[2]).blocks.is_empty());
    check_blocks(&cat);
    let out = rebuild_all(&cat, &dir.path().join("out"));
    assert_eq!(fs::read(&out[0]).unwrap(), bytes);
}

#[test]
fn oci_index_may_name_platforms_the_archive_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let l = layer("f", b"hello");
    let config = config_for(&[&l]);
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(&l).to_string(), "size": l.len()}],
    }))
    .unwrap();
    let absent = Digest::of(b"not in the archive");
    let platforms = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": absent.to_string(), "size": 100,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": Digest::of(&platforms).to_string(), "size": platforms.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/multi:1",
                            "org.opencontainers.image.ref.name": "1"},
        }],
    }))
    .unwrap();
    let names = [
        blob(&Digest::of(&l)),
        blob(&Digest::of(&config)),
        blob(&Digest::of(&manifest)),
        blob(&Digest::of(&platforms)),
    ];
    let bytes = tar_of(
        &[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            (&names[0], &l),
            (&names[1], &config),
            (&names[2], &manifest),
            (&names[3], &platforms),
            ("index.json", &index),
        ],
        LongNames::Pax,
    );
    let path = dir.path().join("multi.tar");
    fs::write(&path, &bytes).unwrap();
    let cat = scan(&[&path], &opts()).unwrap();
    let m = &cat.manifest;
    let images = &m.archives[0].images;
    assert_eq!(images.len(), 1, "only the platform that is present");
    assert_eq!(images[0].tags, ["multi:1"]);
    assert_eq!(images[0].id, Digest::of(&config));
    assert_eq!(layer_digests(m, &images[0]), [Digest::of(&l)]);
    let extra: Vec<Digest> = images[0]
        .extra
        .iter()
        .map(|&o| m.object(o).digest)
        .collect();
    assert_eq!(extra, [Digest::of(&platforms), Digest::of(&manifest)]);
    let out = rebuild_all(&cat, &dir.path().join("out"));
    assert_eq!(fs::read(&out[0]).unwrap(), bytes);
}

/// What [`oci_index_tree`] built.
struct IndexTree {
    archive: Vec<u8>,
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
    /// The top index first.
    indexes: Vec<Vec<u8>>,
}

/// An OCI layout of one image manifest under `levels` indexes, each made by `children` from
/// the document below it, and an `index.json` made by `index_json` from the top index.
fn oci_index_tree(
    index_json: impl FnOnce(&[u8]) -> Vec<u8>,
    children: impl Fn(&[u8]) -> Vec<u8>,
    levels: usize,
) -> IndexTree {
    let l = layer("f", b"nested");
    let config = config_for(&[&l]);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(&l).to_string(), "size": l.len()}],
    }))
    .unwrap();
    // indexes[0] is the top one; each lists the next, the last lists the manifest.
    let mut indexes: Vec<Vec<u8>> = Vec::new();
    let mut below = manifest.clone();
    for _ in 0..levels {
        let ix = children(&below);
        indexes.insert(0, ix.clone());
        below = ix;
    }
    let index = index_json(&below);
    let blob = |b: &[u8]| format!("blobs/sha256/{}", Digest::of(b).hex());
    let mut owned: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (blob(&l), l.clone()),
        (blob(&config), config.clone()),
        (blob(&manifest), manifest.clone()),
    ];
    owned.extend(indexes.iter().map(|ix| (blob(ix), ix.clone())));
    owned.push(("index.json".into(), index));
    let members: Vec<(&str, &[u8])> = owned
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    IndexTree {
        archive: tar_of(&members, LongNames::Pax),
        manifest,
        config,
        layer: l,
        indexes,
    }
}

/// A descriptor of `doc` with this media type and (optionally) image name.
fn descriptor(doc: &[u8], media: &str, name: Option<&str>) -> serde_json::Value {
    let mut d = serde_json::json!({
        "mediaType": media,
        "digest": Digest::of(doc).to_string(),
        "size": doc.len(),
    });
    if let Some(n) = name {
        d["annotations"] = serde_json::json!({ "io.containerd.image.name": n });
    }
    d
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI index listing `doc` `n` times (`doc` is an index unless it has a config).
fn index_of_copies(doc: &[u8], n: usize) -> Vec<u8> {
    let media = if serde_json::from_slice::<serde_json::Value>(doc).unwrap()["config"].is_null() {
        OCI_INDEX
    } else {
        "application/vnd.oci.image.manifest.v1+json"
    };
    let d = descriptor(doc, media, None);
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": vec![d; n],
    }))
    .unwrap()
}

/// Scans on another thread, so a walk that never ends fails the test instead of hanging it.
fn scan_within(path: &Path, limit: std::time::Duration) -> Result<Catalog, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(scan(&[&path], &opts()).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the scan did not finish within {limit:?}"))
}

#[test]
fn nested_indexes_listing_one_child_many_times_are_walked_once() {
    // 8 levels of indexes, each listing the one below 64 times: 64^8 paths to one manifest,
    // in an archive of a few kilobytes.
    let dir = tempfile::tempdir().unwrap();
    let tree = oci_index_tree(
        |top| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "manifests": vec![descriptor(top, OCI_INDEX, Some("docker.io/library/nested:1")); 64],
            }))
            .unwrap()
        },
        |below| index_of_copies(below, 64),
        8,
    );
    let bytes = &tree.archive;
    let path = dir.path().join("nested.tar.gz");
    fs::write(&path, gzip(bytes)).unwrap();
    let cat = scan_within(&path, std::time::Duration::from_secs(20)).unwrap();
    let m = &cat.manifest;
    let images = &m.archives[0].images;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].tags, ["nested:1"]);
    assert_eq!(images[0].id, Digest::of(&tree.config));
    assert_eq!(layer_digests(m, &images[0]), [Digest::of(&tree.layer)]);
    let extra: Vec<Digest> = images[0]
        .extra
        .iter()
        .map(|&o| m.object(o).digest)
        .collect();
    let mut want: Vec<Digest> = tree.indexes.iter().map(|ix| Digest::of(ix)).collect();
    want.push(Digest::of(&tree.manifest));
    assert_eq!(extra, want, "the indexes above the manifest, top first");
    let out = rebuild_all(&cat, &dir.path().join("out"));
    assert_eq!(&fs::read(&out[0]).unwrap(), bytes);

    // The same shape through `dfpull inspect`.
    let sandbox = dir.path().join("run-inspect");
    let o = dfpull(&sandbox, &["inspect", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("nested:1"));
}

#[test]
fn too_many_oci_descriptors_are_refused_clearly() {
    // Every tag walks the whole index again (tags differ, so no walk repeats another): 400
    // tags over an index of 300 manifests is more descriptors than a walk follows.
    let dir = tempfile::tempdir().unwrap();
    let tree = oci_index_tree(
        |top| {
            let tags: Vec<serde_json::Value> = (0..400)
                .map(|i| descriptor(top, OCI_INDEX, Some(&format!("many:{i}"))))
                .collect();
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": tags})).unwrap()
        },
        |below| index_of_copies(below, 300),
        1,
    );
    let path = dir.path().join("many.tar");
    fs::write(&path, &tree.archive).unwrap();
    let err = scan_within(&path, std::time::Duration::from_secs(20)).unwrap_err();
    assert!(
        err.contains("OCI indexes list more than 100000 descriptors in all"),
        "{err}"
    );
}

#[test]
fn a_rebuild_with_wrong_bytes_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.tar");
    write_images(&two_images(Layout::Legacy)[..1], &path).unwrap();
    let cat = scan(&[&path], &opts()).unwrap();
    let m = &cat.manifest;
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let err = write_archive(
        m,
        &m.archives[0],
        |o, w| {
            let mut bytes = Vec::new();
            cat.read_object(o, &mut bytes)?;
            if let Some(b) = bytes.last_mut() {
                *b ^= 1;
            }
            w.write_all(&bytes)
        },
        &out,
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
    assert_eq!(err.exit(), Exit::Transfer);
    assert!(err.to_string().contains("hashes to"), "{err}");
    assert!(
        tree(&out).is_empty(),
        "neither the archive nor a temporary file"
    );
}

// ---- The inspect command ----

fn inspect_fixture(dir: &Path) -> (PathBuf, SynthArchive) {
    let path = dir.join("two.tar");
    let made = write_images(&two_images(Layout::Legacy), &path).unwrap();
    (path, made)
}

#[test]
fn inspect_prints_images_layers_and_sharing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, made) = inspect_fixture(dir.path());
    // The same archive twice: its images are still two images, not four.
    let p = path.to_str().unwrap();
    let out = dfpull(dir.path(), &["inspect", "--block-size", "64k", p, p]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("two.tar  "), "{stdout}");
    assert!(stdout.contains("two-2.tar  "), "{stdout}");
    assert!(stdout.contains("image synth/base:1\n"), "{stdout}");
    assert!(
        stdout.contains("image synth/app:1, synth/app:latest\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("id        {}", made.images[1].id)),
        "{stdout}"
    );
    // 200000 content bytes and 2240 bytes of tar around them: 4 blocks of 64 KiB.
    let layer1 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("layer 1 "))
        .unwrap();
    assert!(layer1.contains(" 197.5 KiB  4 blocks "), "{layer1}");
    let base = made.images[0].diff_ids[0].to_string();
    let shared_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&base))
        .unwrap_or_else(|| panic!("the base layer is listed as shared: {stdout}"));
    assert!(
        shared_line.ends_with("  synth/base:1, synth/app:1"),
        "{shared_line}"
    );
    // The base layer and the empty layer; each config belongs to one image only.
    let shared: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("shared between images"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(shared.len(), 2, "{stdout}");
    assert!(stdout.contains("of 64.0 KiB"), "{stdout}");
}

#[test]
fn inspect_json_is_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let (path, made) = inspect_fixture(dir.path());
    let out = dfpull(
        dir.path(),
        &[
            "inspect",
            "--json",
            "--block-size",
            "64k",
            path.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["block_size"], BS);
    let a = &v["archives"][0];
    assert_eq!(a["digest"], made.digest.to_string());
    assert_eq!(a["size"], made.size);
    assert_eq!(a["images"].as_array().unwrap().len(), 2);
    assert_eq!(a["images"][1]["tags"][1], "synth/app:latest");
    assert_eq!(a["images"][0]["id"], made.images[0].id.to_string());
    assert_eq!(a["images"][0]["layers"].as_array().unwrap().len(), 3);
    let shared: Vec<&str> = v["shared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["digest"].as_str().unwrap())
        .collect();
    assert!(shared.contains(&made.images[0].diff_ids[0].to_string().as_str()));
    let sent = v["send_bytes"].as_u64().unwrap();
    assert!(
        sent < made.size,
        "shared layers are sent once: {sent} of {}",
        made.size
    );
    let blocks: u64 = v["blocks"].as_u64().unwrap();
    assert!(blocks >= sent.div_ceil(BS));
}

// ---- Bad input: one clear line, exit code 3, nothing written ----

fn assert_bad_input(sandbox: &Path, args: &[&str], envs: &[(&str, &str)], want: &[&str]) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dfpull"));
    let out = if envs.is_empty() {
        dfpull(sandbox, args)
    } else {
        fs::create_dir_all(sandbox.join("tmp")).unwrap();
        fs::create_dir_all(sandbox.join("cwd")).unwrap();
        cmd.args(args)
            .current_dir(sandbox.join("cwd"))
            .env("TMPDIR", sandbox.join("tmp"))
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "one line: {stderr}");
    for w in want {
        assert!(
            error_lines[0].contains(w),
            "{args:?}: want {w:?} in {stderr}"
        );
    }
    assert!(
        tree(&sandbox.join("tmp")).is_empty(),
        "{args:?}: spool left behind"
    );
    assert!(
        tree(&sandbox.join("cwd")).is_empty(),
        "{args:?}: file written"
    );
}

#[test]
fn bad_archives_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    fs::create_dir(&inputs).unwrap();
    let big_layer = layer(
        "data.bin",
        &(0..200_000u32)
            .map(|i| ((i * 7919) >> 3) as u8)
            .collect::<Vec<_>>(),
    );
    let valid = legacy_with("ok:1", &[&big_layer], &[]);
    let config = config_for(&[]);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("garbage.tar", vec![0x5a; 4096], vec!["not a tar archive"]),
        ("empty.tar", Vec::new(), vec!["not a tar archive"]),
        (
            "cut.tar",
            valid[..valid.len() / 2].to_vec(),
            vec!["truncated tar archive"],
        ),
        (
            "plain.tar",
            tar_of(&[("hello.txt", b"hi")], LongNames::Gnu),
            vec!["neither manifest.json nor index.json"],
        ),
        (
            "absolute.tar",
            tar_of(&[("/etc/passwd", b"x")], LongNames::Gnu),
            vec!["\"/etc/passwd\" is absolute or contains `..`"],
        ),
        (
            "dotdot.tar",
            tar_of(&[("a/../../x", b"x")], LongNames::Pax),
            vec!["\"a/../../x\" is absolute or contains `..`"],
        ),
        (
            "missing.tar",
            tar_of(
                &[
                    ("cfg.json", &config),
                    (
                        "manifest.json",
                        &docker_manifest("cfg.json", &["x:1"], &["nope/layer.tar"]),
                    ),
                ],
                LongNames::Gnu,
            ),
            vec!["manifest.json names \"nope/layer.tar\", which is not in the archive"],
        ),
        (
            "cut.tar.gz",
            {
                let g = gzip(&valid);
                g[..g.len() * 2 / 3].to_vec()
            },
            vec!["gzip stream is cut short"],
        ),
        (
            "cut.tar.zst",
            {
                let z = zstd(&valid);
                z[..z.len() * 2 / 3].to_vec()
            },
            vec!["zstd stream is cut short"],
        ),
        (
            "gzip-of-garbage.tgz",
            gzip(&[0x5a; 4096]),
            vec!["not a tar archive (inside the gzip stream)"],
        ),
    ];
    for (name, bytes, want) in cases {
        let path = inputs.join(name);
        fs::write(&path, &bytes).unwrap();
        let sandbox = dir.path().join(format!("run-{name}"));
        let arg = path.to_str().unwrap();
        let mut want = want;
        want.push(arg);
        assert_bad_input(&sandbox, &["inspect", arg], &[], &want);
    }
    let sandbox = dir.path().join("run-missing-file");
    assert_bad_input(
        &sandbox,
        &["inspect", "./no/such/archive.tar"],
        &[],
        &["./no/such/archive.tar", "No such file"],
    );
}

#[test]
fn image_references_need_a_docker_cli_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("empty-path");
    fs::create_dir(&empty_path).unwrap();
    assert_bad_input(
        &dir.path().join("no-cli"),
        &["inspect", "someimage:1"],
        &[("PATH", empty_path.to_str().unwrap())],
        &["image someimage:1", "docker CLI is not installed"],
    );
    assert_bad_input(
        &dir.path().join("no-engine"),
        &["inspect", "someimage:1"],
        &[("DOCKER_HOST", "unix:///nonexistent/dfpull-test.sock")],
        &["image someimage:1", "no Docker engine reachable"],
    );
}

#[test]
fn library_errors_carry_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.tar");
    fs::write(&path, b"definitely not a tar").unwrap();
    let err = scan(&[&path], &opts()).unwrap_err();
    assert_eq!(err.exit(), Exit::BadInput);
    assert_eq!(
        err.to_string(),
        format!("{}: not a tar archive", path.display())
    );
    let err = scan(
        &[&path],
        &ScanOptions {
            block_size: Some(1000),
            spool_dir: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.exit(), Exit::BadInput);
}

// ---- Random archives ----

fn name_strategy() -> impl Strategy<Value = String> {
    // Up to 6 parts of up to 40 characters: many names need a long-name record.
    prop::collection::vec("[a-z0-9_-]{1,40}", 1..7).prop_map(|p| p.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_archives_round_trip(
        members in prop::collection::vec((name_strategy(), 0usize..200_000, any::<u8>()), 1..8),
        pax in any::<bool>(),
        gzipped in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Distinct names under numbered directories, the first member being the config.
        let named: Vec<(String, Vec<u8>)> = members
            .iter()
            .enumerate()
            .map(|(i, (n, size, seed))| {
                let data = (0..*size).map(|j| (j as u8).wrapping_mul(*seed) ^ seed).collect();
                (format!("m{i}/{n}"), data)
            })
            .collect();
        let layers: Vec<&str> = named[1..].iter().map(|(n, _)| n.as_str()).collect();
        let manifest = docker_manifest(&named[0].0, &["random:1"], &layers);
        let mut all: Vec<(&str, &[u8])> = named.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        all.push(("manifest.json", &manifest));
        let style = if pax { LongNames::Pax } else { LongNames::Gnu };
        let bytes = tar_of(&all, style);
        let path = dir.path().join(if gzipped { "r.tar.gz" } else { "r.tar" });
        fs::write(&path, if gzipped { gzip(&bytes) } else { bytes.clone() }).unwrap();

        let cat = scan(&[&path], &opts()).unwrap();
        let m = &cat.manifest;
        let img = &m.archives[0].images[0];
        prop_assert_eq!(m.object(img.config).digest, Digest::of(&named[0].1));
        let want: Vec<Digest> = named[1..].iter().map(|(_, d)| Digest::of(d)).collect();
        prop_assert_eq!(layer_digests(m, img), want);
        prop_assert_eq!(m.archives[0].digest, Digest::of(&bytes));
        check_blocks(&cat);
        let out = rebuild_all(&cat, &dir.path().join("out"));
        prop_assert!(fs::read(&out[0]).unwrap() == bytes, "rebuilt archive differs");
    }
}

/// Scan throughput on a 256 MB plain archive. Run it on a release build:
/// `cargo test --release --test image -- --ignored --nocapture scan_throughput`.
#[test]
#[ignore = "a benchmark: run on a release build"]
fn scan_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.tar");
    let started = std::time::Instant::now();
    let spec = SynthSpec {
        layers: vec![128 << 20, 64 << 20, 32 << 20, 32 << 20],
        tags: vec!["bench:1".into()],
        layout: Layout::Legacy,
        seed: 1,
    };
    let made = write_images(std::slice::from_ref(&spec), &path).unwrap();
    let generated = started.elapsed().as_secs_f64();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let cat = scan(&[&path], &ScanOptions::default()).unwrap();
        best = best.min(started.elapsed().as_secs_f64());
        assert_eq!(cat.manifest.archives[0].digest, made.digest);
    }
    let mb = made.size as f64 / 1e6;
    eprintln!(
        "generated {mb:.0} MB in {generated:.2}s ({:.0} MB/s); scanned in {best:.2}s ({:.0} MB/s)",
        mb / generated,
        mb / best
    );
    // Compressed input: decompression and the spool write join the pass.
    let bytes = fs::read(&path).unwrap();
    for (name, packed) in [("big.tar.gz", gzip(&bytes)), ("big.tar.zst", zstd(&bytes))] {
        let p = dir.path().join(name);
        fs::write(&p, packed).unwrap();
        let started = std::time::Instant::now();
        let cat = scan(&[&p], &ScanOptions::default()).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(cat.manifest.archives[0].digest, made.digest);
        eprintln!(
            "{name}: scanned in {secs:.2}s ({:.0} MB/s of tar)",
            mb / secs
        );
    }
}
