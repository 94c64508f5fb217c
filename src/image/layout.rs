//! Finding the images in a scanned archive.
//!
//! Three layouts exist in the wild. The legacy docker-archive has a `manifest.json` listing each
//! image's config and layer files (`<id>/layer.tar`, possibly symlinks to an identical layer of
//! another image). Docker 25+ writes an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) with the same `manifest.json` pointing into `blobs/`. A plain OCI layout
//! has only `index.json`, whose descriptors lead to manifests (or nested indexes) and from them
//! to configs and layers; tags come from the descriptors' annotations.
//!
//! `manifest.json` wins when present, as it does for `docker load`; the OCI manifests then only
//! add their blobs to the images' extra objects. An index may name manifests (other platforms,
//! a containerd store's leftovers) whose blobs are not in the archive: those are skipped, as
//! docker skips them. A member the archive needs but does not have is an error.

use std::collections::{HashMap, HashSet};
use std::io;
use std::rc::Rc;

use serde::Deserialize;

use super::manifest::{ImageInfo, ObjectIdx, ObjectInfo};
use super::tar::{Kind, clean_path};

/// A member as the scanner recorded it.
#[derive(Debug, Clone)]
pub(crate) struct MemberRec {
    pub path: String,
    pub kind: Kind,
    pub link: Option<String>,
    pub size: u64,
    /// Offset of the content in the uncompressed archive.
    pub offset: u64,
    /// The object holding the content (every regular file has one, even when empty).
    pub object: Option<ObjectIdx>,
    /// The content, for small members kept in memory during the scan.
    pub data: Option<Vec<u8>>,
}

/// Largest metadata document (manifest, index, config) read for parsing.
const MAX_DOCUMENT: u64 = 64 << 20;

/// Most descriptors one walk of the OCI indexes follows (repeats included). Real archives list a
/// handful per image; a hostile one could otherwise list the same index many times over.
const MAX_DESCRIPTORS: usize = 100_000;

/// Reads a member's content (from memory when it was kept, else from the backing file).
pub(crate) type ReadMember<'a> = dyn FnMut(&MemberRec) -> io::Result<Vec<u8>> + 'a;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// An OCI index or image manifest (or their Docker equivalents): which one is told by the
/// descriptor's media type, or failing that by which fields are present.
#[derive(Deserialize)]
struct OciDocument {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The state of one walk of the OCI indexes.
#[derive(Default)]
struct Walk {
    /// Descriptors followed so far (repeats included), against [`MAX_DESCRIPTORS`].
    visited: usize,
    /// Each (digest, media type, tags, depth) walked already: walking it again finds the same
    /// images with the same tags (and would have failed the first time), so it is skipped. This
    /// keeps an index listing the same child index many times, nested, from costing exponential
    /// time.
    walked: HashSet<(String, String, Vec<String>, usize)>,
    /// Documents parsed so far, by their object (each is read and parsed once).
    parsed: HashMap<ObjectIdx, Rc<OciDocument>>,
    /// Where each image found so far is in `found`, by manifest digest.
    by_digest: HashMap<String, usize>,
    found: Vec<OciImage>,
}

/// An image found through OCI descriptors.
struct OciImage {
    tags: Vec<String>,
    config: ObjectIdx,
    layers: Vec<ObjectIdx>,
    /// The manifest blob and the index blobs above it.
    extra: Vec<ObjectIdx>,
}

pub(crate) struct Archive<'a> {
    members: &'a [MemberRec],
    by_path: HashMap<&'a str, usize>,
    objects: &'a [ObjectInfo],
}

impl<'a> Archive<'a> {
    pub fn new(members: &'a [MemberRec], objects: &'a [ObjectInfo]) -> Archive<'a> {
        // A later member of the same name replaces an earlier one, as on extraction.
        let by_path = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.path.as_str(), i))
            .collect();
        Archive {
            members,
            by_path,
            objects,
        }
    }

    /// The images in the archive, or a one-line reason why it is not an image archive.
    pub fn images(&self, read: &mut ReadMember<'_>) -> Result<Vec<ImageInfo>, String> {
        self.check_blob_digests()?;
        let docker = self.by_path.contains_key("manifest.json");
        let oci = self.by_path.contains_key("index.json");
        if !docker && !oci {
            return Err("not an image archive: it has neither manifest.json nor index.json".into());
        }
        if docker {
            let mut images = self.docker_images(read)?;
            if oci {
                // Extras only: docker loads from manifest.json, so a flaw in the OCI part must
                // not make an otherwise loadable archive unusable.
                match self.oci_images(read) {
                    Ok(found) => attach_extras(&mut images, &found, self.objects),
                    Err(e) => tracing::debug!("ignoring the OCI index: {e}"),
                }
            }
            return Ok(images);
        }
        let found = self.oci_images(read)?;
        if found.is_empty() {
            return Err("index.json names no image whose manifest is in the archive".into());
        }
        Ok(found
            .into_iter()
            .map(|i| ImageInfo {
                tags: i.tags,
                id: self.objects[i.config.0 as usize].digest,
                config: i.config,
                layers: i.layers,
                extra: i.extra,
            })
            .collect())
    }

    /// Blobs are named by their sha256: one that is not is damaged (and `docker load` would
    /// refuse it late, after the whole swarm carried it).
    fn check_blob_digests(&self) -> Result<(), String> {
        for m in self.members {
            let (Some(hex), Some(o)) = (m.path.strip_prefix("blobs/sha256/"), m.object) else {
                continue;
            };
            let actual = self.objects[o.0 as usize].digest;
            if actual.hex() != hex {
                return Err(format!(
                    "blob {} does not match its digest (its content hashes to {actual})",
                    m.path
                ));
            }
        }
        Ok(())
    }

    fn docker_images(&self, read: &mut ReadMember<'_>) -> Result<Vec<ImageInfo>, String> {
        let doc = self.document("manifest.json", read)?;
        let entries: Vec<DockerEntry> = serde_json::from_slice(&doc)
            .map_err(|e| format!("manifest.json is not a docker image manifest: {e}"))?;
        if entries.is_empty() {
            return Err("manifest.json lists no image".into());
        }
        let named = |path: &str| {
            self.file_object(path)
                .ok_or_else(|| format!("manifest.json names {path:?}, which is not in the archive"))
        };
        entries
            .iter()
            .map(|e| {
                let config = named(&e.config)?;
                let layers = e
                    .layers
                    .iter()
                    .map(|l| named(l))
                    .collect::<Result<_, _>>()?;
                Ok(ImageInfo {
                    tags: e.repo_tags.clone().unwrap_or_default(),
                    id: self.objects[config.0 as usize].digest,
                    config,
                    layers,
                    extra: Vec::new(),
                })
            })
            .collect()
    }

    fn oci_images(&self, read: &mut ReadMember<'_>) -> Result<Vec<OciImage>, String> {
        let doc = self.document("index.json", read)?;
        let index: OciDocument = serde_json::from_slice(&doc)
            .map_err(|e| format!("index.json is not an OCI index: {e}"))?;
        let mut walk = Walk::default();
        for d in index.manifests.unwrap_or_default() {
            let tags = reference_of(&d).into_iter().collect();
            self.walk(&d, tags, Vec::new(), 0, read, &mut walk)?;
        }
        Ok(walk.found)
    }

    /// Follows one descriptor: an index fans out to its manifests, a manifest is an image.
    fn walk(
        &self,
        d: &Descriptor,
        tags: Vec<String>,
        mut above: Vec<ObjectIdx>,
        depth: usize,
        read: &mut ReadMember<'_>,
        walk: &mut Walk,
    ) -> Result<(), String> {
        walk.visited += 1;
        if walk.visited > MAX_DESCRIPTORS {
            return Err(format!(
                "OCI indexes list more than {MAX_DESCRIPTORS} descriptors in all"
            ));
        }
        if depth > 8 {
            return Err("OCI indexes nested too deeply".into());
        }
        if d.annotations
            .get("vnd.docker.reference.type")
            .map(String::as_str)
            == Some("attestation-manifest")
        {
            return Ok(());
        }
        if !walk
            .walked
            .insert((d.digest.clone(), d.media_type.clone(), tags.clone(), depth))
        {
            return Ok(());
        }
        let path = blob_path(&d.digest)?;
        let Some(member) = self.resolve(&path) else {
            tracing::debug!("skipping {}: its blob is not in the archive", d.digest);
            return Ok(());
        };
        let Some(object) = member.object else {
            return Err(format!("{path} is not a file"));
        };
        let parsed = match walk.parsed.get(&object) {
            Some(p) => Rc::clone(p),
            None => {
                let doc = self.read_document(member, read)?;
                let parsed: OciDocument = serde_json::from_slice(&doc)
                    .map_err(|e| format!("{path} is not an OCI manifest or index: {e}"))?;
                let parsed = Rc::new(parsed);
                walk.parsed.insert(object, Rc::clone(&parsed));
                parsed
            }
        };
        let media = if d.media_type.is_empty() {
            parsed.media_type.as_str()
        } else {
            d.media_type.as_str()
        };
        let is_index = INDEX_TYPES.contains(&media)
            || (media.is_empty() && parsed.manifests.is_some() && parsed.config.is_none());
        if is_index {
            above.push(object);
            for child in parsed.manifests.iter().flatten() {
                self.walk(child, tags.clone(), above.clone(), depth + 1, read, walk)?;
            }
            return Ok(());
        }
        let Some(config) = &parsed.config else {
            return Err(format!("{path} is neither an image manifest nor an index"));
        };
        if let Some(&i) = walk.by_digest.get(&d.digest) {
            // The same manifest listed once per tag. Its config and layers were found the first
            // time (the same digest is the same document).
            let img = &mut walk.found[i];
            for t in tags {
                if !img.tags.contains(&t) {
                    img.tags.push(t);
                }
            }
            return Ok(());
        }
        let named = |digest: &str| -> Result<ObjectIdx, String> {
            let p = blob_path(digest)?;
            self.file_object(&p).ok_or_else(|| {
                format!("manifest {path} names {digest}, which is not in the archive")
            })
        };
        let config = named(&config.digest)?;
        let layers = parsed
            .layers
            .iter()
            .map(|l| named(&l.digest))
            .collect::<Result<Vec<_>, _>>()?;
        above.push(object);
        walk.by_digest.insert(d.digest.clone(), walk.found.len());
        walk.found.push(OciImage {
            tags,
            config,
            layers,
            extra: above,
        });
        Ok(())
    }

    /// Follows symbolic and hard links (docker's legacy writer links a layer it already wrote).
    fn resolve(&self, path: &str) -> Option<&'a MemberRec> {
        let mut path = clean_path(path).ok()?;
        for _ in 0..16 {
            let m = &self.members[*self.by_path.get(path.as_str())?];
            match (&m.kind, &m.link) {
                (Kind::Symlink, Some(target)) => {
                    let base = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                    path = join_link(base, target)?;
                }
                (Kind::HardLink, Some(target)) => path = clean_path(target).ok()?,
                _ => return Some(m),
            }
        }
        None
    }

    fn file_object(&self, path: &str) -> Option<ObjectIdx> {
        self.resolve(path)?.object
    }

    fn document(&self, path: &str, read: &mut ReadMember<'_>) -> Result<Vec<u8>, String> {
        let m = self
            .resolve(path)
            .ok_or_else(|| format!("{path} is not in the archive"))?;
        self.read_document(m, read)
    }

    fn read_document(&self, m: &MemberRec, read: &mut ReadMember<'_>) -> Result<Vec<u8>, String> {
        if m.size > MAX_DOCUMENT {
            return Err(format!(
                "{} is too large for a metadata document ({} bytes)",
                m.path, m.size
            ));
        }
        read(m).map_err(|e| format!("reading {}: {e}", m.path))
    }
}

/// Where an OCI layout keeps the blob of a digest.
fn blob_path(digest: &str) -> Result<String, String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("invalid digest {digest:?}"))?;
    if alg.is_empty() || hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("invalid digest {digest:?}"));
    }
    Ok(format!("blobs/{alg}/{hex}"))
}

/// A symlink target, taken relative to the link's directory, as an archive path.
fn join_link(base: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The image reference an index descriptor carries, in Docker's short form.
fn reference_of(d: &Descriptor) -> Option<String> {
    let full = d.annotations.get("io.containerd.image.name").or_else(|| {
        // The OCI annotation may hold only a tag, which names no image on its own.
        d.annotations
            .get("org.opencontainers.image.ref.name")
            .filter(|r| r.contains(':') || r.contains('/'))
    })?;
    Some(familiar(full))
}

/// `docker.io/library/alpine:3.19` -> `alpine:3.19`, as `docker images` shows it.
pub(crate) fn familiar(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/")
        .unwrap_or(reference)
        .to_string();
    match r.strip_prefix("library/") {
        Some(rest) if !rest.contains('/') => rest.to_string(),
        _ => r,
    }
}

/// Gives each image from manifest.json the OCI blobs that describe the same config.
fn attach_extras(images: &mut [ImageInfo], found: &[OciImage], objects: &[ObjectInfo]) {
    for img in images {
        for f in found {
            if objects[f.config.0 as usize].digest != img.id {
                continue;
            }
            for &o in &f.extra {
                if !img.extra.contains(&o) {
                    img.extra.push(o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_within_the_archive() {
        assert_eq!(
            join_link("a", "../b/layer.tar").as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(join_link("a/b", "./c").as_deref(), Some("a/b/c"));
        assert_eq!(join_link("", "../x"), None);
    }

    #[test]
    fn references_are_shown_short() {
        assert_eq!(familiar("docker.io/library/alpine:3.19"), "alpine:3.19");
        assert_eq!(familiar("docker.io/me/app:1"), "me/app:1");
        assert_eq!(familiar("ghcr.io/x/y:2"), "ghcr.io/x/y:2");
        assert!(blob_path("sha256:../../etc").is_err());
        assert_eq!(blob_path("sha256:ab").unwrap(), "blobs/sha256/ab");
    }
}
