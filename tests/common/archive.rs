//! Archive makers for tests: small hand-built image archives (including broken ones), gzip and
//! zstd wrappers, and a runner for the `dfpull` binary that keeps its temporary files where a
//! test can check that nothing was left behind.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dfpull::image::manifest::Digest;
use dfpull::image::tar::{LongNames, TarBuilder};

/// A tar with these members (regular files), in this order.
pub fn tar_of(members: &[(&str, &[u8])], style: LongNames) -> Vec<u8> {
    let mut b = TarBuilder::new(Vec::new()).long_names(style);
    for (name, data) in members {
        b.file(name, data).unwrap();
    }
    b.finish().unwrap()
}

/// A small layer tar holding one file.
pub fn layer(name: &str, data: &[u8]) -> Vec<u8> {
    tar_of(&[(name, data)], LongNames::Gnu)
}

/// A docker image config for these layers.
pub fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

/// A legacy `manifest.json` with one image.
pub fn docker_manifest(config: &str, tags: &[&str], layers: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([
        { "Config": config, "RepoTags": tags, "Layers": layers }
    ]))
    .unwrap()
}

/// A legacy-layout archive of one image with the given layers, plus `extra` members placed
/// before `manifest.json`.
pub fn legacy_with(tag: &str, layers: &[&[u8]], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let config = config_for(layers);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("layer{i}/layer.tar"))
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let manifest = docker_manifest(&config_name, &[tag], &name_refs);
    let mut members: Vec<(&str, &[u8])> = Vec::new();
    for (n, l) in name_refs.iter().zip(layers) {
        members.push((n, l));
    }
    members.push((&config_name, &config));
    members.extend_from_slice(extra);
    members.push(("manifest.json", &manifest));
    tar_of(&members, LongNames::Gnu)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

pub fn sha256_file(path: &Path) -> Digest {
    Digest::of(&std::fs::read(path).unwrap())
}

/// Every file and directory under `dir`, for "nothing was written" checks.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Runs `dfpull` with `TMPDIR` and the working directory inside `sandbox`, so the test can
/// see everything it wrote.
pub fn dfpull(sandbox: &Path, args: &[&str]) -> Output {
    let tmp = sandbox.join("tmp");
    let cwd = sandbox.join("cwd");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    Command::new(env!("CARGO_BIN_EXE_dfpull"))
        .args(args)
        .current_dir(&cwd)
        .env("TMPDIR", &tmp)
        .env_remove("DFPULL_JSON")
        .env_remove("DFPULL_BLOCK_SIZE")
        .env_remove("DFPULL_LOG")
        .output()
        .unwrap()
}

/// A tag no other test run uses.
pub fn unique_tag(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("dfpull-test-{what}-{}-{nanos}:t1", std::process::id())
}
