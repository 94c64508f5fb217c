//! Synthetic image archives, made without a registry: for `dfpull demo`, tests and benchmarks.
//!
//! Each layer is a real tar holding one file of incompressible bytes drawn from a fast PRNG, so
//! the archives measure a transfer honestly and `docker load` takes them (the configs carry
//! matching `rootfs.diff_ids`, amd64, linux). A layer of size 0 is the empty layer (a tar with
//! no members). Layer `i` of a spec depends only on the spec's `seed`, `i` and its size, so
//! specs with the same seed share the layers they have in common at the start, like images
//! built on one base: write them into one archive with [`write_images`] and the shared layers
//! are stored once, as `docker save` stores them.
//!
//! Layers are generated twice (once to learn their digest, which names them, once to write
//! them), which costs less than holding them in memory and still runs at well over 1 GB/s.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::json;

use super::manifest::{Digest, Hasher};
use super::tar::{BLOCK, TarBuilder, padding};

/// How the archive is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `docker save` before Docker 25: `manifest.json`, `<id>/layer.tar`, `repositories`.
    Legacy,
    /// Docker 25+: an OCI layout plus `manifest.json` pointing into `blobs/`.
    Docker25,
    /// A plain OCI image layout (`index.json`, `blobs/`), tags in annotations.
    Oci,
}

/// One image to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSpec {
    /// Size of the file in each layer, base first (0: an empty layer).
    pub layers: Vec<u64>,
    /// `name:tag` references.
    pub tags: Vec<String>,
    pub layout: Layout,
    pub seed: u64,
}

/// What was generated for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthImage {
    /// The image ID (sha256 of the config).
    pub id: Digest,
    pub tags: Vec<String>,
    /// sha256 of each layer tar, base first.
    pub diff_ids: Vec<Digest>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthArchive {
    /// sha256 of the whole archive.
    pub digest: Digest,
    pub size: u64,
    pub images: Vec<SynthImage>,
}

/// Writes one image to `path`.
pub fn write_image(spec: &SynthSpec, path: &Path) -> io::Result<SynthArchive> {
    write_images(std::slice::from_ref(spec), path)
}

/// Writes several images into one archive at `path`; they must share a layout.
pub fn write_images(specs: &[SynthSpec], path: &Path) -> io::Result<SynthArchive> {
    let file = File::create(path)?;
    let written = write_images_to(specs, BufWriter::with_capacity(1 << 20, file)).and_then(
        |(archive, out)| {
            // Flushed, not synced: these are scratch files, and speed is the point.
            out.into_inner().map_err(|e| e.into_error())?;
            Ok(archive)
        },
    );
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Writes several images into one archive on `out`, and gives `out` back.
pub fn write_images_to<W: Write>(specs: &[SynthSpec], out: W) -> io::Result<(SynthArchive, W)> {
    let Some(first) = specs.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no image to write",
        ));
    };
    if specs.iter().any(|s| s.layout != first.layout) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "images in one archive must share a layout",
        ));
    }
    let images: Vec<Planned> = specs.iter().map(Planned::new).collect::<io::Result<_>>()?;
    let mut tar = TarBuilder::new(HashingWriter {
        inner: out,
        hasher: Hasher::new(),
        n: 0,
    });
    match first.layout {
        Layout::Legacy => write_legacy(&mut tar, &images)?,
        Layout::Docker25 => write_oci(&mut tar, &images, true)?,
        Layout::Oci => write_oci(&mut tar, &images, false)?,
    }
    let HashingWriter { inner, hasher, n } = tar.finish()?;
    let archive = SynthArchive {
        digest: hasher.finish(),
        size: n,
        images: images
            .into_iter()
            .map(|p| SynthImage {
                id: p.config_digest,
                tags: p.spec.tags.clone(),
                diff_ids: p.layers.iter().map(|l| l.digest).collect(),
            })
            .collect(),
    };
    Ok((archive, inner))
}

/// The image `dfpull demo` serves: about `size` bytes in four layers, legacy layout (which
/// every Docker version loads). Returns the archive's sha256.
pub fn demo_archive(path: &Path, size: u64, tag: &str) -> io::Result<Digest> {
    let eighth = size / 8;
    let layers = if eighth == 0 {
        vec![size]
    } else {
        vec![4 * eighth, 2 * eighth, eighth, size - 7 * eighth]
    };
    let spec = SynthSpec {
        layers,
        tags: vec![tag.to_string()],
        layout: Layout::Legacy,
        seed: 0x0df0_11ed,
    };
    Ok(write_image(&spec, path)?.digest)
}

/// One layer, known before it is written.
struct Layer {
    seed: u64,
    index: usize,
    content: u64,
    digest: Digest,
}

impl Layer {
    fn new(seed: u64, index: usize, content: u64) -> io::Result<Layer> {
        let mut layer = Layer {
            seed,
            index,
            content,
            digest: Digest::default(),
        };
        let mut h = HashingWriter {
            inner: io::sink(),
            hasher: Hasher::new(),
            n: 0,
        };
        layer.write(&mut h)?;
        debug_assert_eq!(h.n, layer.tar_size());
        layer.digest = h.hasher.finish();
        Ok(layer)
    }

    fn tar_size(&self) -> u64 {
        let end = 2 * BLOCK as u64;
        if self.content == 0 {
            end
        } else {
            2 * BLOCK as u64 + self.content + padding(self.content) + end
        }
    }

    fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut tar = TarBuilder::new(out);
        if self.content > 0 {
            tar.directory("dfpull")?;
            let name = format!("dfpull/layer-{:x}-{}.bin", self.seed, self.index);
            tar.file_with(&name, self.content, |w| {
                fill_random(w, self.seed, self.index as u64, self.content)
            })?;
        }
        tar.finish()?;
        Ok(())
    }

    /// The legacy writer's directory for this layer: a function of the whole chain below it,
    /// so a shared base lands in the same directory and is written once.
    fn legacy_dir(chain: &[Layer]) -> String {
        let mut h = Hasher::new();
        for l in chain {
            h.update(l.digest.hex().as_bytes());
            h.update(b"/");
        }
        h.finish().hex()
    }
}

/// An image with its documents, before anything is written.
struct Planned<'a> {
    spec: &'a SynthSpec,
    layers: Vec<Layer>,
    config: Vec<u8>,
    config_digest: Digest,
}

const CREATED: &str = "2024-01-01T00:00:00Z";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

impl<'a> Planned<'a> {
    fn new(spec: &'a SynthSpec) -> io::Result<Planned<'a>> {
        let layers = spec
            .layers
            .iter()
            .enumerate()
            .map(|(i, &size)| Layer::new(spec.seed, i, size))
            .collect::<io::Result<Vec<_>>>()?;
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Labels": { "dfpull.synthetic": spec.seed.to_string() },
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|l| json!({
                "created": CREATED,
                "created_by": format!("dfpull synthetic layer {} ({} bytes)", l.index, l.content),
            })).collect::<Vec<_>>(),
        }))?;
        Ok(Planned {
            spec,
            config_digest: Digest::of(&config),
            config,
            layers,
        })
    }

    fn oci_manifest(&self) -> io::Result<Vec<u8>> {
        Ok(serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": CONFIG_TYPE,
                "digest": self.config_digest.to_string(),
                "size": self.config.len(),
            },
            "layers": self.layers.iter().map(|l| json!({
                "mediaType": LAYER_TYPE,
                "digest": l.digest.to_string(),
                "size": l.tar_size(),
            })).collect::<Vec<_>>(),
        }))?)
    }
}

fn write_legacy<W: Write>(tar: &mut TarBuilder<W>, images: &[Planned]) -> io::Result<()> {
    let mut written = HashSet::new();
    let mut entries = Vec::new();
    let mut repositories = serde_json::Map::new();
    for img in images {
        let mut paths = Vec::new();
        let mut parent = String::new();
        for i in 0..img.layers.len() {
            let dir = Layer::legacy_dir(&img.layers[..=i]);
            let layer = &img.layers[i];
            if written.insert(dir.clone()) {
                tar.directory(&dir)?;
                tar.file(&format!("{dir}/VERSION"), b"1.0")?;
                let mut v1 = json!({ "id": dir, "created": CREATED, "os": "linux" });
                if !parent.is_empty() {
                    v1["parent"] = json!(parent);
                }
                tar.file(&format!("{dir}/json"), &serde_json::to_vec(&v1)?)?;
                tar.file_with(&format!("{dir}/layer.tar"), layer.tar_size(), |w| {
                    layer.write(w)
                })?;
            }
            paths.push(format!("{dir}/layer.tar"));
            parent = dir;
        }
        let config_name = format!("{}.json", img.config_digest.hex());
        if written.insert(config_name.clone()) {
            tar.file(&config_name, &img.config)?;
        }
        entries.push(json!({
            "Config": config_name,
            "RepoTags": if img.spec.tags.is_empty() { json!(null) } else { json!(img.spec.tags) },
            "Layers": paths,
        }));
        for t in &img.spec.tags {
            let (repo, tag) = split_tag(t);
            let slot = repositories
                .entry(repo.to_string())
                .or_insert_with(|| json!({}));
            slot[tag] = json!(parent);
        }
    }
    tar.file("manifest.json", &serde_json::to_vec(&entries)?)?;
    if !repositories.is_empty() {
        tar.file("repositories", &serde_json::to_vec(&repositories)?)?;
    }
    Ok(())
}

fn write_oci<W: Write>(
    tar: &mut TarBuilder<W>,
    images: &[Planned],
    docker_manifest: bool,
) -> io::Result<()> {
    let mut written = HashSet::new();
    let mut index = Vec::new();
    let mut entries = Vec::new();
    let mut repositories = serde_json::Map::new();
    tar.directory("blobs")?;
    tar.directory("blobs/sha256")?;
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    for img in images {
        for layer in &img.layers {
            if written.insert(layer.digest) {
                tar.file_with(&blob(&layer.digest), layer.tar_size(), |w| layer.write(w))?;
            }
        }
        if written.insert(img.config_digest) {
            tar.file(&blob(&img.config_digest), &img.config)?;
        }
        let manifest = img.oci_manifest()?;
        let manifest_digest = Digest::of(&manifest);
        if written.insert(manifest_digest) {
            tar.file(&blob(&manifest_digest), &manifest)?;
        }
        let descriptor = |annotations: serde_json::Value| {
            json!({
                "mediaType": MANIFEST_TYPE,
                "digest": manifest_digest.to_string(),
                "size": manifest.len(),
                "annotations": annotations,
            })
        };
        if img.spec.tags.is_empty() {
            let mut d = descriptor(json!({}));
            d.as_object_mut().expect("object").remove("annotations");
            index.push(d);
        }
        for t in &img.spec.tags {
            let (repo, tag) = split_tag(t);
            index.push(descriptor(json!({
                "io.containerd.image.name": full_reference(t),
                "org.opencontainers.image.ref.name": tag,
            })));
            let slot = repositories
                .entry(repo.to_string())
                .or_insert_with(|| json!({}));
            slot[tag] = json!(img.config_digest.hex());
        }
        entries.push(json!({
            "Config": blob(&img.config_digest),
            "RepoTags": if img.spec.tags.is_empty() { json!(null) } else { json!(img.spec.tags) },
            "Layers": img.layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    });
    tar.file("index.json", &serde_json::to_vec(&index)?)?;
    if docker_manifest {
        tar.file("manifest.json", &serde_json::to_vec(&entries)?)?;
    }
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if docker_manifest && !repositories.is_empty() {
        tar.file("repositories", &serde_json::to_vec(&repositories)?)?;
    }
    Ok(())
}

/// `name:tag` -> (`name`, `tag`); a reference without a tag is `latest`.
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    }
}

/// The fully qualified form containerd records: `alpine:1` -> `docker.io/library/alpine:1`.
fn full_reference(reference: &str) -> String {
    let (first, _) = reference.split_once('/').unwrap_or(("", reference));
    let has_registry = first.contains('.') || first.contains(':') || first == "localhost";
    if has_registry {
        reference.to_string()
    } else if reference.contains('/') {
        format!("docker.io/{reference}")
    } else {
        format!("docker.io/library/{reference}")
    }
}

/// Writes `len` pseudo-random bytes (wyrand: one multiply per 8 bytes, incompressible).
fn fill_random(w: &mut dyn Write, seed: u64, stream: u64, len: u64) -> io::Result<()> {
    let mut state = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            state = state.wrapping_add(0xa076_1d64_78bd_642f);
            let t = u128::from(state) * u128::from(state ^ 0xe703_7ed1_a0b4_28db);
            let v = ((t >> 64) as u64) ^ (t as u64);
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    n: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layers: Vec<u64>, layout: Layout) -> SynthSpec {
        SynthSpec {
            layers,
            tags: vec!["synth/app:1".into()],
            layout,
            seed: 3,
        }
    }

    #[test]
    fn same_spec_same_bytes_and_random_content() {
        let s = spec(vec![5000, 0], Layout::Legacy);
        let (a, bytes) = write_images_to(std::slice::from_ref(&s), Vec::new()).unwrap();
        let (b, _) = write_images_to(std::slice::from_ref(&s), Vec::new()).unwrap();
        assert_eq!(a, b, "generation is deterministic");
        assert_eq!(a.digest, Digest::of(&bytes));
        assert_eq!(a.size, bytes.len() as u64);
        // The empty layer is the well-known 1024-zero tar.
        assert_eq!(
            a.images[0].diff_ids[1].to_string(),
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
        );
        let mut w = Vec::new();
        fill_random(&mut w, 1, 0, 1 << 16).unwrap();
        let packed = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let mut packed = packed;
        packed.write_all(&w).unwrap();
        let packed = packed.finish().unwrap();
        assert!(
            packed.len() > w.len() * 99 / 100,
            "content does not compress"
        );
    }

    #[test]
    fn shared_base_layers_are_written_once() {
        let a = spec(vec![100_000, 100], Layout::Docker25);
        let mut b = spec(vec![100_000, 200], Layout::Docker25);
        b.tags = vec!["synth/other:2".into()];
        let (one, _) = write_images_to(std::slice::from_ref(&a), Vec::new()).unwrap();
        let (both, _) = write_images_to(&[a, b], Vec::new()).unwrap();
        assert_eq!(both.images[0].diff_ids[0], both.images[1].diff_ids[0]);
        assert_ne!(both.images[0].diff_ids[1], both.images[1].diff_ids[1]);
        assert_ne!(both.images[0].id, both.images[1].id);
        // The second image adds its own layer, config and manifest, not the base again.
        assert!(
            both.size - one.size < 20_000,
            "{} vs {}",
            both.size,
            one.size
        );
    }

    #[test]
    fn references_and_tags() {
        assert_eq!(split_tag("a/b:1"), ("a/b", "1"));
        assert_eq!(split_tag("host:5000/b"), ("host:5000/b", "latest"));
        assert_eq!(full_reference("alpine:3"), "docker.io/library/alpine:3");
        assert_eq!(full_reference("me/app:3"), "docker.io/me/app:3");
        assert_eq!(full_reference("ghcr.io/me/app:3"), "ghcr.io/me/app:3");
    }
}
