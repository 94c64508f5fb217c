//! Against the real Docker engine: rebuilt archives load with `docker load`, and image
//! references are read with `docker save`.
//!
//! Each test skips, loudly, when `docker info` fails, and fails instead when
//! `DFPULL_REQUIRE_DOCKER=1` (as CI sets it). Tags are unique per run, so runs can overlap, and
//! every image a test loads is removed again, even when the test fails.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::archive::{dfpull, sha256_file, tree, unique_tag};
use dfpull::image::manifest::Digest;
use dfpull::image::synth::{Layout, SynthArchive, SynthSpec, write_image};
use dfpull::image::{ScanOptions, scan_sources, write_archive};

fn docker_available() -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("DFPULL_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("DFPULL_REQUIRE_DOCKER=1 but `docker info` fails: no Docker engine");
        }
        eprintln!(
            "\n*** SKIPPED: no Docker engine (`docker info` fails). \
             Set DFPULL_REQUIRE_DOCKER=1 to make this a failure. ***\n"
        );
    }
    ok
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the tagged images when dropped, so a failing test cleans up too.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = docker(&["rmi", "-f", tag]);
        }
    }
}

/// The engine's view of an image: its ID and its layers' diff IDs.
fn engine_image(tag: &str) -> (Digest, Vec<Digest>) {
    let out = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{json .RootFS.Layers}}",
        tag,
    ]);
    let (id, layers) = out.trim().split_once(' ').unwrap();
    let layers: Vec<String> = serde_json::from_str(layers).unwrap();
    (
        id.parse().unwrap(),
        layers.iter().map(|l| l.parse().unwrap()).collect(),
    )
}

fn synth(tag: &str, layers: Vec<u64>, layout: Layout, path: &Path) -> SynthArchive {
    let spec = SynthSpec {
        layers,
        tags: vec![tag.to_string()],
        layout,
        seed: u64::from(std::process::id()),
    };
    write_image(&spec, path).unwrap()
}

#[test]
fn rebuilt_archives_load_into_docker() {
    if !docker_available() {
        return;
    }
    for (layout, what) in [(Layout::Legacy, "legacy"), (Layout::Docker25, "docker25")] {
        let dir = tempfile::tempdir().unwrap();
        let tag = unique_tag(what);
        let _cleanup = Cleanup(vec![tag.clone()]);
        let source = dir.path().join("source.tar");
        let made = synth(&tag, vec![300_000, 0, 70_001], layout, &source);
        let opts = ScanOptions {
            block_size: Some(64 << 10),
            spool_dir: None,
        };
        let cat = scan_sources(&[source.display().to_string()], &opts).unwrap();
        let m = &cat.manifest;
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let rebuilt = write_archive(m, &m.archives[0], |o, w| cat.read_object(o, w), &out).unwrap();
        assert_eq!(sha256_file(&rebuilt), made.digest);

        let loaded = docker_ok(&["load", "-i", rebuilt.to_str().unwrap()]);
        assert!(
            loaded.contains(&format!("Loaded image: {tag}")),
            "{what}: {loaded}"
        );
        let (id, layers) = engine_image(&tag);
        assert_eq!(id, made.images[0].id, "{what}: image ID");
        assert_eq!(layers, made.images[0].diff_ids, "{what}: layers");
    }
}

#[test]
fn image_references_are_read_with_docker_save() {
    if !docker_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = unique_tag("save");
    let _cleanup = Cleanup(vec![tag.clone()]);
    // Two empty layers: `docker save` writes the second as a symlink to the first.
    let source = dir.path().join("source.tar");
    let made = synth(&tag, vec![150_000, 0, 40_000, 0], Layout::Legacy, &source);
    docker_ok(&["load", "-i", source.to_str().unwrap()]);

    let sandbox = dir.path().join("cli");
    let out = dfpull(
        &sandbox,
        &["inspect", "--json", "--block-size", "64k", &tag],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &v["archives"][0];
    assert_eq!(a["source"], tag);
    let name = a["name"].as_str().unwrap();
    assert!(
        name.starts_with("dfpull-test-save-") && name.ends_with("_t1.tar"),
        "{name}"
    );
    let img = &a["images"][0];
    assert_eq!(img["tags"][0], tag);
    assert_eq!(img["id"], made.images[0].id.to_string());
    let layers: Vec<&str> = img["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let want: Vec<String> = made.images[0]
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(layers, want);
    assert!(
        tree(&sandbox.join("tmp")).is_empty(),
        "the spool goes away with the command"
    );

    let human = dfpull(&sandbox, &["inspect", &tag]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains(&format!("  image {tag}\n")), "{text}");
    assert!(text.contains(&format!("(from {tag})")), "{text}");

    // The library view: the archive is spooled while the catalog lives, and rebuilds whole.
    let spool = dir.path().join("spool");
    let opts = ScanOptions {
        block_size: Some(64 << 10),
        spool_dir: Some(spool.clone()),
    };
    let cat = scan_sources(std::slice::from_ref(&tag), &opts).unwrap();
    let m = &cat.manifest;
    assert!(cat.backing[0].starts_with(&spool));
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let rebuilt = write_archive(m, &m.archives[0], |o, w| cat.read_object(o, w), &out).unwrap();
    assert_eq!(sha256_file(&rebuilt), m.archives[0].digest);
    drop(cat);
    assert!(!spool.exists());
}

#[test]
fn unknown_references_are_bad_input() {
    if !docker_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = unique_tag("missing");
    let out = dfpull(dir.path(), &["inspect", &tag]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "image {tag}: the Docker engine does not know this image"
        )),
        "{stderr}"
    );
    assert!(tree(&dir.path().join("tmp")).is_empty());
}
