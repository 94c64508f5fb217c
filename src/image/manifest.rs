//! The swarm manifest: what a seeder offers, as archives made of inline bytes and objects,
//! each object split into fixed-size sha256-verified blocks.
//!
//! An *archive* is the uncompressed tar a seeder was given (or got from `docker save`). It is
//! described as a sequence of [`Segment`]s: tar headers and padding travel inline in the
//! manifest, member contents are *objects* named by their sha256. Concatenating the segments
//! gives back the archive byte for byte. An object that appears in several images or archives
//! is listed once and sent once.
//!
//! Blocks are numbered globally ([`BlockIdx`]): object 0's blocks first, then object 1's, and so
//! on; [`BlockTable`] maps between the two views. Block `i` of an object covers bytes
//! `[i * block_size, min((i + 1) * block_size, size))`; a zero-byte object has no blocks.
//!
//! # Block size
//! `auto` (the default) gives a swarm of up to [`SMALL_SWARM`] (512 MiB) blocks of
//! [`MIN_AUTO_BLOCK`] (512 KiB), and a larger one the smallest power of two of at least
//! [`MID_AUTO_BLOCK`] (1 MiB) that keeps it at no more than [`TARGET_BLOCKS`] blocks, capped at
//! [`MAX_AUTO_BLOCK`] (16 MiB): 512 KiB up to 512 MiB of image, 1 MiB up to 4 GiB.
//!
//! Smaller blocks make the start faster: a peer serves a block only once it holds it whole and
//! verified, so every hop a fresh block takes costs one block's transfer time, and the peers'
//! uplinks idle until the first blocks have spread. Each block also costs a request, a
//! scheduling round trip and some bookkeeping (about 0.15 ms of a peer's CPU, measured on
//! loopback), which shows where the CPU rather than the link is the limit. Measured with the
//! swarm benchmark (256 MiB at 100 Mbit/s, runs alternated, the scheduler's counts scaled to
//! the block size by `SchedConfig::for_block_size`): 512 KiB blocks took 1.09 / 1.10 / 1.14-1.15
//! / 1.21 x the bound for 4 / 8 / 16 / 24 peers, 1 MiB blocks 1.10 / 1.14 / 1.18-1.19 / 1.24 x;
//! 256 KiB blocks started faster still but lost the steady state with many peers (1.29 x at
//! 24). But 8 peers moving 1 GiB at 1 Gbit/s took 1.72 x the bound with 256 KiB blocks against
//! 1.39 x with 1 MiB, and one peer on loopback 30% longer. The start costs about the same time
//! whatever the image size, so it matters most for small images, and the per-block cost grows
//! with the block count: hence smaller blocks for small swarms only. The block count cap bounds
//! the manifest (a 64-hex-digit hash per block) and the scheduler's state for very large
//! images. An explicit `--block-size` must be a power of two from 64 KiB to 64 MiB.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Version of the manifest format; peers refuse manifests of another version.
pub const MANIFEST_VERSION: u32 = 1;
/// `auto` block size of a swarm of at most [`SMALL_SWARM`] bytes.
pub const MIN_AUTO_BLOCK: u64 = 512 << 10;
/// Smallest `auto` block size of a swarm larger than [`SMALL_SWARM`].
pub const MID_AUTO_BLOCK: u64 = 1 << 20;
/// Largest swarm (bytes of objects) that gets [`MIN_AUTO_BLOCK`] blocks.
pub const SMALL_SWARM: u64 = 512 << 20;
pub const MAX_AUTO_BLOCK: u64 = 16 << 20;
pub const TARGET_BLOCKS: u64 = 4096;
pub const MIN_BLOCK: u64 = 64 << 10;
pub const MAX_BLOCK: u64 = 64 << 20;

/// Errors in a manifest received from the network or built from an archive.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("block size {0} is not a power of two from 64 KiB to 64 MiB")]
    BadBlockSize(u64),
    #[error(
        "manifest version {0} is not supported (this dfpull speaks version {MANIFEST_VERSION})"
    )]
    Version(u32),
    #[error("object {object} has {got} block hashes, its size needs {want}")]
    BlockCount {
        object: usize,
        got: usize,
        want: u64,
    },
    #[error("archive {archive} refers to object {object}, which does not exist")]
    DanglingObject { archive: String, object: u32 },
    #[error("archive {archive}: segments add up to {got} bytes, the archive has {want}")]
    ArchiveSize {
        archive: String,
        got: u64,
        want: u64,
    },
    #[error("the manifest has {0} blocks, more than this dfpull accepts")]
    TooManyBlocks(u64),
    #[error("invalid digest {0:?}")]
    BadDigest(String),
    #[error("archive name {0:?} is not a plain file name")]
    BadArchiveName(String),
}

/// Checks an explicit block size.
pub fn check_block_size(size: u64) -> Result<u64, ManifestError> {
    if size.is_power_of_two() && (MIN_BLOCK..=MAX_BLOCK).contains(&size) {
        Ok(size)
    } else {
        Err(ManifestError::BadBlockSize(size))
    }
}

/// The `auto` block size for a swarm whose objects add up to `total` bytes.
pub fn auto_block_size(total: u64) -> u64 {
    if total <= SMALL_SWARM {
        return MIN_AUTO_BLOCK;
    }
    (total / TARGET_BLOCKS)
        .max(1)
        .next_power_of_two()
        .clamp(MID_AUTO_BLOCK, MAX_AUTO_BLOCK)
}

/// A sha256 digest. Printed and serialized as `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// First 12 hex digits, as `docker images` shows IDs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
    pub fn from_hex(s: &str) -> Result<Digest, ManifestError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ManifestError::BadDigest(s.to_string()))?;
        Ok(Digest(out))
    }
}

/// Incremental sha256, for streams.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}

impl FromStr for Digest {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| ManifestError::BadDigest(s.to_string()))?;
        Digest::from_hex(hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Index of an object in [`SwarmManifest::objects`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectIdx(pub u32);

/// Global index of a block across all objects of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlockIdx(pub u32);

/// Everything a seeder offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmManifest {
    pub version: u32,
    pub block_size: u64,
    pub objects: Vec<ObjectInfo>,
    pub archives: Vec<ArchiveInfo>,
}

/// One distinct member content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub digest: Digest,
    pub size: u64,
    /// sha256 of each block, in order, as bare hex.
    #[serde(with = "hex_digests")]
    pub blocks: Vec<Digest>,
}

/// One archive, as it will be written by peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// File name the peer saves it under (no directory part).
    pub name: String,
    /// sha256 of the whole uncompressed archive.
    pub digest: Digest,
    pub size: u64,
    /// Where it came from on the seeder (a path or an image reference), for humans.
    pub source: String,
    pub images: Vec<ImageInfo>,
    pub segments: Vec<Segment>,
}

/// One image inside an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `name:tag` references the archive gives it (may be empty for an untagged image).
    pub tags: Vec<String>,
    /// The image ID: sha256 of its config.
    pub id: Digest,
    /// The config object.
    pub config: ObjectIdx,
    /// Layer objects, base first.
    pub layers: Vec<ObjectIdx>,
    /// Other objects this image needs (OCI manifests, indexes), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ObjectIdx>,
}

/// A piece of an archive: bytes carried in the manifest, or a whole object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    Inline(#[serde(with = "base64_bytes")] Vec<u8>),
    Object(ObjectIdx),
}

impl SwarmManifest {
    /// Checks the internal consistency of a manifest (one received from the network included):
    /// every size, count and reference agrees, so later code can index without checks.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version(self.version));
        }
        check_block_size(self.block_size)?;
        let mut total_blocks = 0u64;
        for (i, o) in self.objects.iter().enumerate() {
            let want = o.size.div_ceil(self.block_size);
            if o.blocks.len() as u64 != want {
                return Err(ManifestError::BlockCount {
                    object: i,
                    got: o.blocks.len(),
                    want,
                });
            }
            total_blocks += want;
        }
        if total_blocks > u32::MAX as u64 / 2 {
            return Err(ManifestError::TooManyBlocks(total_blocks));
        }
        let n = self.objects.len() as u32;
        for a in &self.archives {
            if a.name.is_empty()
                || a.name.contains('/')
                || a.name.contains('\\')
                || a.name == "."
                || a.name == ".."
                || a.name.starts_with('.')
            {
                return Err(ManifestError::BadArchiveName(a.name.clone()));
            }
            let dangling = |o: ObjectIdx| ManifestError::DanglingObject {
                archive: a.name.clone(),
                object: o.0,
            };
            let mut got = 0u64;
            for s in &a.segments {
                let len = match s {
                    Segment::Inline(b) => b.len() as u64,
                    Segment::Object(o) if o.0 < n => self.objects[o.0 as usize].size,
                    Segment::Object(o) => return Err(dangling(*o)),
                };
                // A hostile manifest must not wrap the sum around to a small, valid-looking size.
                got = got
                    .checked_add(len)
                    .ok_or_else(|| ManifestError::ArchiveSize {
                        archive: a.name.clone(),
                        got: u64::MAX,
                        want: a.size,
                    })?;
            }
            if got != a.size {
                return Err(ManifestError::ArchiveSize {
                    archive: a.name.clone(),
                    got,
                    want: a.size,
                });
            }
            for img in &a.images {
                for o in std::iter::once(&img.config)
                    .chain(&img.layers)
                    .chain(&img.extra)
                {
                    if o.0 >= n {
                        return Err(dangling(*o));
                    }
                }
            }
        }
        Ok(())
    }

    /// Identifies the swarm: sha256 of the canonical JSON of the manifest.
    pub fn swarm_id(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).expect("manifest serializes"))
    }

    pub fn object(&self, o: ObjectIdx) -> &ObjectInfo {
        &self.objects[o.0 as usize]
    }

    /// Objects an archive needs, each once, in first-use order.
    pub fn archive_objects(&self, archive: &ArchiveInfo) -> Vec<ObjectIdx> {
        let mut seen = std::collections::HashSet::new();
        archive
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Object(o) if seen.insert(*o) => Some(*o),
                _ => None,
            })
            .collect()
    }

    /// Sum of the sizes of all distinct objects: the bytes one full copy of the swarm sends.
    pub fn object_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

impl ArchiveInfo {
    /// Where each object occurrence starts in the archive, in archive order.
    pub fn placements(&self, manifest: &SwarmManifest) -> Vec<(ObjectIdx, u64)> {
        let mut pos = 0u64;
        let mut out = Vec::new();
        for s in &self.segments {
            match s {
                Segment::Inline(b) => pos += b.len() as u64,
                Segment::Object(o) => {
                    out.push((*o, pos));
                    pos += manifest.object(*o).size;
                }
            }
        }
        out
    }

    /// Every `name:tag` of every image in the archive.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.images
            .iter()
            .flat_map(|i| i.tags.iter().map(String::as_str))
    }
}

/// Where a block lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub object: ObjectIdx,
    /// Index of the block within its object.
    pub index: u32,
    /// Offset of the block within its object.
    pub offset: u64,
    pub len: u32,
    pub digest: Digest,
}

/// Maps global block indexes to objects and back. Built once from a validated manifest.
#[derive(Debug, Clone)]
pub struct BlockTable {
    block_size: u64,
    /// `first[o]` is the global index of object o's block 0; `first[objects.len()]` the total.
    first: Vec<u32>,
    sizes: Vec<u64>,
    digests: Vec<Digest>,
}

impl BlockTable {
    pub fn new(m: &SwarmManifest) -> BlockTable {
        let mut first = Vec::with_capacity(m.objects.len() + 1);
        let mut acc = 0u32;
        let mut digests = Vec::new();
        for o in &m.objects {
            first.push(acc);
            acc += o.blocks.len() as u32;
            digests.extend_from_slice(&o.blocks);
        }
        first.push(acc);
        BlockTable {
            block_size: m.block_size,
            first,
            sizes: m.objects.iter().map(|o| o.size).collect(),
            digests,
        }
    }

    pub fn len(&self) -> u32 {
        *self.first.last().unwrap_or(&0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Global indexes of an object's blocks.
    pub fn blocks_of(&self, o: ObjectIdx) -> Range<u32> {
        self.first[o.0 as usize]..self.first[o.0 as usize + 1]
    }

    pub fn get(&self, b: BlockIdx) -> BlockRef {
        let o = self.first.partition_point(|&f| f <= b.0) - 1;
        let index = b.0 - self.first[o];
        let offset = index as u64 * self.block_size;
        let len = (self.sizes[o] - offset).min(self.block_size) as u32;
        BlockRef {
            object: ObjectIdx(o as u32),
            index,
            offset,
            len,
            digest: self.digests[b.0 as usize],
        }
    }

    /// The global index of block `index` of object `o`, if it exists.
    pub fn lookup(&self, o: ObjectIdx, index: u32) -> Option<BlockIdx> {
        let r = self
            .first
            .get(o.0 as usize + 1)
            .map(|_| self.blocks_of(o))?;
        let g = r.start.checked_add(index)?;
        (g < r.end).then_some(BlockIdx(g))
    }
}

mod hex_digests {
    use super::Digest;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(v: &[Digest], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&d.hex())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Digest>, D::Error> {
        let v = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        v.iter()
            .map(|s| Digest::from_hex(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> SwarmManifest {
        let bs = MIN_BLOCK;
        let obj = |size: u64| ObjectInfo {
            digest: Digest::of(&size.to_le_bytes()),
            size,
            blocks: (0..size.div_ceil(bs))
                .map(|i| Digest::of(&i.to_le_bytes()))
                .collect(),
        };
        let objects = vec![obj(0), obj(bs * 2 + 1), obj(bs)];
        let segments = vec![
            Segment::Inline(vec![1; 512]),
            Segment::Object(ObjectIdx(1)),
            Segment::Inline(vec![0; 511]),
            Segment::Object(ObjectIdx(0)),
            Segment::Object(ObjectIdx(2)),
            Segment::Object(ObjectIdx(1)),
        ];
        let size = 512 + 511 + 2 * (bs * 2 + 1) + bs;
        SwarmManifest {
            version: MANIFEST_VERSION,
            block_size: bs,
            archives: vec![ArchiveInfo {
                name: "a.tar".into(),
                digest: Digest::default(),
                size,
                source: "a.tar".into(),
                images: vec![ImageInfo {
                    tags: vec!["x:1".into()],
                    id: Digest::default(),
                    config: ObjectIdx(2),
                    layers: vec![ObjectIdx(1)],
                    extra: vec![],
                }],
                segments,
            }],
            objects,
        }
    }

    #[test]
    fn block_table_maps_both_ways() {
        let m = tiny();
        m.validate().unwrap();
        let t = BlockTable::new(&m);
        assert_eq!(t.len(), 4);
        assert_eq!(t.blocks_of(ObjectIdx(0)), 0..0);
        assert_eq!(t.blocks_of(ObjectIdx(1)), 0..3);
        let last = t.get(BlockIdx(2));
        assert_eq!((last.object, last.index, last.len), (ObjectIdx(1), 2, 1));
        let b3 = t.get(BlockIdx(3));
        assert_eq!(
            (b3.object, b3.index, b3.offset, b3.len),
            (ObjectIdx(2), 0, 0, MIN_BLOCK as u32)
        );
        assert_eq!(t.lookup(ObjectIdx(2), 0), Some(BlockIdx(3)));
        assert_eq!(t.lookup(ObjectIdx(2), 1), None);
        assert_eq!(t.lookup(ObjectIdx(9), 0), None);
    }

    #[test]
    fn json_round_trip_and_validation() {
        let m = tiny();
        let json = serde_json::to_string(&m).unwrap();
        let back: SwarmManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.swarm_id(), m.swarm_id());
        let placements = m.archives[0].placements(&m);
        assert_eq!(placements[0], (ObjectIdx(1), 512));
        assert_eq!(
            m.archive_objects(&m.archives[0]),
            vec![ObjectIdx(1), ObjectIdx(0), ObjectIdx(2)]
        );

        let mut bad = m.clone();
        bad.objects[1].blocks.pop();
        assert!(matches!(
            bad.validate(),
            Err(ManifestError::BlockCount { .. })
        ));
        let mut bad = m.clone();
        bad.archives[0].size += 1;
        assert!(matches!(
            bad.validate(),
            Err(ManifestError::ArchiveSize { .. })
        ));
        let mut bad = m.clone();
        bad.archives[0].name = "../x.tar".into();
        assert!(matches!(
            bad.validate(),
            Err(ManifestError::BadArchiveName(_))
        ));
        let mut bad = m;
        bad.archives[0].images[0].layers.push(ObjectIdx(7));
        assert!(matches!(
            bad.validate(),
            Err(ManifestError::DanglingObject { .. })
        ));
    }

    #[test]
    fn auto_block_size_rule() {
        assert_eq!(auto_block_size(0), MIN_AUTO_BLOCK);
        assert_eq!(auto_block_size(64 << 20), 512 << 10);
        assert_eq!(auto_block_size(512 << 20), 512 << 10);
        assert_eq!(auto_block_size((512 << 20) + 1), 1 << 20);
        assert_eq!(auto_block_size(4 << 30), 1 << 20);
        assert_eq!(auto_block_size((4 << 30) + (1 << 20)), 2 << 20);
        assert_eq!(auto_block_size(16 << 30), 4 << 20);
        assert_eq!(auto_block_size(1 << 50), MAX_AUTO_BLOCK);
        assert!(check_block_size(1 << 20).is_ok());
        assert!(check_block_size(1000).is_err());
        assert!(check_block_size(128 << 20).is_err());
    }

    #[test]
    fn digest_text_form() {
        let d = Digest::of(b"");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert!("md5:00".parse::<Digest>().is_err());
    }
}
