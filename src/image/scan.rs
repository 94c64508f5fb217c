//! Scanning: image sources in, one [`SwarmManifest`] out, reading each source once.
//!
//! A source is an archive file (plain, gzip or zstd tar) or an image reference, which is
//! streamed out of the local engine with `docker save`. The block size is fixed before anything
//! is read (explicit, or `auto` from the sizes known up front), so one pass can do everything:
//! the tar is walked as it streams in; each member's content is hashed into its object digest
//! (on the reading thread) and its block digests (on a second thread); a third thread hashes
//! the whole archive and, when the bytes cannot be served from the source itself (compressed
//! input, `docker save`), writes them to a spool file. Identical member contents, in one archive or across sources, become one object.
//!
//! Small metadata members are kept in memory (bounded) to find the images afterwards (see
//! `layout`); anything larger is read back from the backing file. Small members that no
//! image names (`VERSION`, `repositories`, `oci-layout`, ...) are then carried inline in the
//! manifest rather than as objects of their own, which spares every peer a round trip per
//! tiny block.
//!
//! Archive names (what peers save): a file source keeps its file name, a compression suffix
//! becoming `.tar`; an image reference becomes `name_tag.tar`; a name already taken gets `-2`,
//! `-3`, ... before `.tar`.
//!
//! A seeder serves blocks from the backing files without hashing them again when it can tell
//! they have not changed since the scan read them ([`Backing`]): a plain source is watched
//! (inotify, [`WatchKind::Shared`]) from right after the scan opened it, before a byte was
//! read, and a spool file from when it was complete.
//!
//! On any error nothing is left behind: spool files go with the [`Catalog`] or with the error.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use super::ImageError;
use super::decompress::{Compression, decode_error};
use super::layout::{Archive, MemberRec, familiar};
use super::manifest::{
    ArchiveInfo, Digest, Hasher, ImageInfo, MANIFEST_VERSION, ObjectIdx, ObjectInfo, Segment,
    SwarmManifest, auto_block_size, check_block_size,
};
use super::tar::{Entry, Kind, TarError, TarReader};
use crate::sys::{OpenWatch, WatchKind, Watched};
use crate::units::ByteSize;

/// Bytes read and hashed at a time.
const CHUNK: usize = 1 << 20;
/// Members up to this size are kept in memory while scanning...
const KEEP_MAX: u64 = 1 << 20;
/// ...as long as all kept members of a scan stay under this.
const KEEP_TOTAL: u64 = 64 << 20;
/// Members up to this size that no image names travel inline in the manifest.
pub const INLINE_MAX: u64 = 8 << 10;
/// Compression suffixes an archive name loses (it gets `.tar` instead).
const COMPRESSED_SUFFIXES: [&str; 8] = [
    ".tar.gz",
    ".tgz",
    ".tar.zst",
    ".tar.zstd",
    ".tzst",
    ".gz",
    ".zst",
    ".zstd",
];
/// Names that make a source an archive file even when it does not exist (yet).
const ARCHIVE_SUFFIXES: [&str; 5] = [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"];

#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// `None` picks the block size from the total size ([`auto_block_size`]).
    pub block_size: Option<u64>,
    /// Where decompressed archives and `docker save` output are kept while the catalog lives;
    /// `None` makes a fresh directory under the system's temporary directory.
    pub spool_dir: Option<PathBuf>,
}

/// The result of a scan: the manifest, and where each archive's bytes can be read.
#[derive(Debug)]
pub struct Catalog {
    pub manifest: SwarmManifest,
    /// Per archive, in manifest order: a file holding the uncompressed archive at the offsets
    /// the segments give (the source itself for a plain tar, else a spool file).
    pub backing: Vec<PathBuf>,
    /// Per object: the archive and offset of its first placement.
    locations: Vec<(usize, u64)>,
    files: Vec<File>,
    /// Per archive: its watch in `watch`, when one could be set.
    watched: Vec<Option<Watched>>,
    watch: Option<OpenWatch>,
    spool: Option<Spool>,
}

/// The backing files a seeder serves from, one per manifest archive, in order.
#[derive(Debug)]
pub struct Backing {
    pub files: Vec<BackingFile>,
    /// Watches the files that have a [`BackingFile::watched`] (see the module documentation).
    pub watch: Option<OpenWatch>,
}

#[derive(Debug)]
pub struct BackingFile {
    pub path: PathBuf,
    pub file: File,
    /// Set when `file` was watched since before its bytes were read: while the watch sees no
    /// touch, its bytes are the ones the manifest was made from.
    pub watched: Option<Watched>,
}

impl Backing {
    /// Opens `paths`, unwatched: whoever serves from them checks every block it reads.
    pub fn open(paths: &[PathBuf]) -> io::Result<Backing> {
        let files = paths
            .iter()
            .map(|p| {
                Ok(BackingFile {
                    path: p.clone(),
                    file: File::open(p)?,
                    watched: None,
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Backing { files, watch: None })
    }
}

impl Catalog {
    /// The archive and offset where an object's bytes are read from.
    pub fn object_location(&self, o: ObjectIdx) -> (usize, u64) {
        self.locations[o.0 as usize]
    }

    /// The backing files, for a seeder: the catalog's own descriptors duplicated (a new open
    /// would count as another process's), and its watch, which moves there.
    pub fn take_backing(&mut self) -> io::Result<Backing> {
        let files = self
            .files
            .iter()
            .zip(&self.backing)
            .zip(&self.watched)
            .map(|((f, path), &watched)| {
                Ok(BackingFile {
                    path: path.clone(),
                    file: f.try_clone()?,
                    watched,
                })
            })
            .collect::<io::Result<_>>()?;
        self.watched.iter_mut().for_each(|w| *w = None);
        Ok(Backing {
            files,
            watch: self.watch.take(),
        })
    }

    /// The spool directory, if any source needed one.
    pub fn spool_dir(&self) -> Option<&Path> {
        self.spool.as_ref().map(|s| s.dir.as_path())
    }

    /// Fills `buf` with the bytes of object `o` from `offset` on (a block, typically).
    pub fn read_at(&self, o: ObjectIdx, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let size = self.manifest.object(o).size;
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > size)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("object {} has {size} bytes, read past them", o.0),
            ));
        }
        let (archive, at) = self.object_location(o);
        self.files[archive].read_exact_at(buf, at + offset)
    }

    /// Copies a whole object to `out`.
    pub fn read_object(&self, o: ObjectIdx, out: &mut dyn Write) -> io::Result<()> {
        let size = self.manifest.object(o).size;
        let mut buf = vec![0u8; CHUNK.min(size as usize)];
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(buf.len() as u64) as usize;
            self.read_at(o, done, &mut buf[..n])?;
            out.write_all(&buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Scans every source into one catalog. See the module documentation.
pub fn scan_sources(sources: &[String], opts: &ScanOptions) -> Result<Catalog, ImageError> {
    let planned: Vec<Source> = sources
        .iter()
        .map(|s| Source::plan(s))
        .collect::<Result<_, _>>()?;
    let block_size = match opts.block_size {
        Some(b) => check_block_size(b)?,
        None => auto_block_size(planned.iter().map(|p| p.estimate).sum()),
    };
    let mut scan = Scan {
        block_size,
        objects: Vec::new(),
        by_content: HashMap::new(),
        kept: 0,
        spool: None,
        spool_base: opts.spool_dir.clone(),
        names: HashSet::new(),
        watch: OpenWatch::new()
            .inspect_err(|e| tracing::debug!("no inotify ({e}): every block served is checked"))
            .ok(),
    };
    let mut archives = Vec::new();
    let mut members = Vec::new();
    let mut backing = Vec::new();
    for source in &planned {
        let name = scan.unique_name(&source.archive_name());
        let started = Instant::now();
        let (archive, recs, path) = scan.archive(source, name)?;
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            "scanned {} ({}): {} in {} image(s), {:.2}s, {:.0} MB/s",
            archive.name,
            source.text,
            ByteSize(archive.size),
            archive.images.len(),
            secs,
            archive.size as f64 / 1e6 / secs.max(1e-9),
        );
        archives.push(archive);
        members.push(recs);
        backing.push(path);
    }
    let manifest = finalize(
        block_size,
        std::mem::take(&mut scan.objects),
        archives,
        &members,
    );
    manifest.validate()?;
    let mut locations = vec![(0usize, 0u64); manifest.objects.len()];
    let mut placed = vec![false; manifest.objects.len()];
    for (ai, a) in manifest.archives.iter().enumerate() {
        for (o, at) in a.placements(&manifest) {
            if !std::mem::replace(&mut placed[o.0 as usize], true) {
                locations[o.0 as usize] = (ai, at);
            }
        }
    }
    let mut files = Vec::new();
    let mut watched = Vec::new();
    let mut paths = Vec::new();
    for b in backing {
        let (file, w) = match b.open {
            Some(open) => open,
            // A spool file, complete and closed by its writer: opened, then watched.
            None => {
                let file = File::open(&b.path).map_err(|error| ImageError::Io {
                    path: b.path.clone(),
                    error,
                })?;
                let w = scan.watch_source(&file, &b.path);
                (file, w)
            }
        };
        files.push(file);
        watched.push(w);
        paths.push(b.path);
    }
    Ok(Catalog {
        manifest,
        backing: paths,
        locations,
        files,
        watched,
        watch: scan.watch,
        spool: scan.spool,
    })
}

/// What a source string names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceKind {
    File(PathBuf),
    Reference(String),
}

struct Source {
    text: String,
    kind: SourceKind,
    /// Size known before reading (file size, or the engine's idea of the image size).
    estimate: u64,
}

fn classify(s: &str) -> SourceKind {
    let path = Path::new(s);
    let looks_like_path =
        s.starts_with('/') || s.starts_with('.') || ARCHIVE_SUFFIXES.iter().any(|x| s.ends_with(x));
    if looks_like_path || path.exists() {
        SourceKind::File(path.to_path_buf())
    } else {
        SourceKind::Reference(s.to_string())
    }
}

impl Source {
    fn plan(text: &str) -> Result<Source, ImageError> {
        let kind = classify(text);
        let estimate = match &kind {
            SourceKind::File(path) => {
                let meta = fs::metadata(path).map_err(|error| ImageError::Io {
                    path: path.clone(),
                    error,
                })?;
                if meta.is_dir() {
                    return Err(ImageError::Invalid {
                        path: path.clone(),
                        message: "is a directory, not an image archive".into(),
                    });
                }
                meta.len()
            }
            SourceKind::Reference(r) => docker_image_size(r)?,
        };
        Ok(Source {
            text: text.to_string(),
            kind,
            estimate,
        })
    }

    /// The file name peers save the archive under (before making it unique).
    fn archive_name(&self) -> String {
        match &self.kind {
            SourceKind::File(path) => file_archive_name(path),
            SourceKind::Reference(r) => reference_archive_name(r),
        }
    }

    fn label(&self) -> PathBuf {
        PathBuf::from(&self.text)
    }
}

fn file_archive_name(path: &Path) -> String {
    // Peers write this name: no separators, no hidden files.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace('\\', "_"))
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let name = COMPRESSED_SUFFIXES
        .iter()
        .find(|s| lower.ends_with(*s) && lower.len() > s.len())
        .map_or(name.clone(), |s| {
            format!("{}.tar", &name[..name.len() - s.len()])
        });
    let name = name.trim_start_matches('.');
    if name.is_empty() {
        "archive.tar".into()
    } else if name.to_ascii_lowercase().ends_with(".tar") {
        name.to_string()
    } else {
        // What peers write is a tar, whatever the source was called (`/dev/fd/63`, `image`).
        format!("{name}.tar")
    }
}

fn reference_archive_name(reference: &str) -> String {
    let short = familiar(reference);
    let base = match short.split_once('@') {
        Some((name, digest)) => {
            let hex = digest.rsplit(':').next().unwrap_or(digest);
            format!("{name}_{}", &hex[..hex.len().min(12)])
        }
        None => short,
    };
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches(['.', '_']);
    if clean.is_empty() {
        "image.tar".into()
    } else {
        format!("{clean}.tar")
    }
}

/// State shared by the scans of all sources.
struct Scan {
    block_size: u64,
    objects: Vec<ObjectInfo>,
    by_content: HashMap<(Digest, u64), ObjectIdx>,
    /// Bytes of member contents kept in memory so far.
    kept: u64,
    spool: Option<Spool>,
    spool_base: Option<PathBuf>,
    names: HashSet<String>,
    /// Watches the backing files (`None`: inotify unavailable).
    watch: Option<OpenWatch>,
}

/// An archive's backing file as its scan leaves it.
struct ScannedBacking {
    path: PathBuf,
    /// A plain source: the descriptor the scan read it through, and its watch.
    open: Option<(File, Option<Watched>)>,
}

/// Why a stream could not be scanned, before it is given a source's name.
enum StreamError {
    Tar(TarError),
    /// The spool could not be written.
    Spool(io::Error),
}

impl Scan {
    fn unique_name(&mut self, base: &str) -> String {
        let (stem, ext) = match base.strip_suffix(".tar") {
            Some(stem) => (stem, ".tar"),
            None => (base, ""),
        };
        let mut name = base.to_string();
        let mut n = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{stem}-{n}{ext}");
            n += 1;
        }
        name
    }

    /// Watches a backing file this process has just opened, if its filesystem lets a watch
    /// see every change.
    fn watch_source(&mut self, file: &File, path: &Path) -> Option<Watched> {
        let watch = self.watch.as_mut()?;
        if !crate::sys::on_local_filesystem(file) {
            tracing::debug!(
                "{} is not on a local filesystem: every block served is checked",
                path.display()
            );
            return None;
        }
        watch
            .add(path, WatchKind::Shared)
            .inspect_err(|e| tracing::debug!("cannot watch {}: {e}", path.display()))
            .ok()
    }

    fn spool_file(&mut self, name: &str) -> Result<(PathBuf, File), ImageError> {
        if self.spool.is_none() {
            self.spool = Some(Spool::new(self.spool_base.as_deref())?);
        }
        self.spool.as_mut().expect("just made").create(name)
    }

    /// Scans one source into an archive (images included), its members, and its backing file.
    fn archive(
        &mut self,
        source: &Source,
        name: String,
    ) -> Result<(ArchiveInfo, Vec<MemberRec>, ScannedBacking), ImageError> {
        let label = source.label();
        let (scanned, backing) = match &source.kind {
            SourceKind::File(path) => self.file(path, &name, &label)?,
            SourceKind::Reference(r) => self.docker_save(r, &name)?,
        };
        let archive_view = Archive::new(&scanned.members, &self.objects);
        let mut read = |m: &MemberRec| match &m.data {
            Some(d) => Ok(d.clone()),
            None => read_range(&backing.path, m.offset, m.size),
        };
        let images: Vec<ImageInfo> =
            archive_view
                .images(&mut read)
                .map_err(|message| ImageError::Invalid {
                    path: label.clone(),
                    message,
                })?;
        let archive = ArchiveInfo {
            name,
            digest: scanned.digest,
            size: scanned.size,
            source: source.text.clone(),
            images,
            segments: scanned.segments,
        };
        Ok((archive, scanned.members, backing))
    }

    fn file(
        &mut self,
        path: &Path,
        name: &str,
        label: &Path,
    ) -> Result<(Scanned, ScannedBacking), ImageError> {
        let io_err = |error| ImageError::Io {
            path: label.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(io_err)?;
        let regular = file.metadata().map_err(io_err)?.is_file();
        // Watched from before its first byte is read, in case it is served from where it lies.
        let watched = if regular {
            self.watch_source(&file, path)
        } else {
            None
        };
        let kept = file.try_clone().map_err(io_err)?;
        let mut input = BufReader::with_capacity(CHUNK, file);
        let head = io::BufRead::fill_buf(&mut input).map_err(io_err)?;
        let compression = Compression::sniff(head).map_err(|message| ImageError::Invalid {
            path: label.to_path_buf(),
            message,
        })?;
        // A plain tar in a regular file is served where it lies; anything else is spooled.
        let spool = if compression == Compression::None && regular {
            None
        } else {
            Some(self.spool_file(name)?)
        };
        let backing = match &spool {
            Some((p, _)) => ScannedBacking {
                path: p.clone(),
                open: None,
            },
            None => ScannedBacking {
                path: std::path::absolute(path).map_err(io_err)?,
                open: Some((kept, watched)),
            },
        };
        let spool_path = spool.as_ref().map(|(p, _)| p.clone());
        let reader = compression.decoder(input);
        match self.stream(reader, spool.map(|(_, f)| f)) {
            Ok(s) => Ok((s, backing)),
            Err(e) => {
                let message = match e {
                    StreamError::Spool(error) => {
                        return Err(ImageError::Write {
                            path: spool_path.unwrap_or_default(),
                            error,
                        });
                    }
                    StreamError::Tar(t) => tar_message(&t, compression),
                };
                Err(ImageError::Invalid {
                    path: label.to_path_buf(),
                    message,
                })
            }
        }
    }

    fn docker_save(
        &mut self,
        reference: &str,
        name: &str,
    ) -> Result<(Scanned, ScannedBacking), ImageError> {
        let (spool_path, spool) = self.spool_file(name)?;
        let mut child = docker()
            .args(["save", reference])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| docker_spawn_error(reference, e))?;
        let stderr = capture(child.stderr.take().expect("piped"));
        let stdout = child.stdout.take().expect("piped");
        // The pipe is closed when the scan ends, so a failed scan stops docker too.
        let result = self.stream(Box::new(stdout), Some(spool));
        let status = child.wait().map_err(|e| docker_spawn_error(reference, e))?;
        let stderr = stderr.join().unwrap_or_default();
        let engine_failed = || engine_error(reference, &stderr, status);
        match result {
            Ok(s) if status.success() => Ok((
                s,
                ScannedBacking {
                    path: spool_path,
                    open: None,
                },
            )),
            Ok(_) => Err(engine_failed()),
            Err(StreamError::Spool(error)) => Err(ImageError::Write {
                path: spool_path,
                error,
            }),
            // A stream that stopped early is docker's failure when docker says so.
            Err(StreamError::Tar(
                TarError::NotTar | TarError::Truncated { .. } | TarError::Io(_),
            )) if !status.success() => Err(engine_failed()),
            Err(StreamError::Tar(t)) => Err(ImageError::Reference {
                reference: reference.to_string(),
                message: format!("docker save: {}", tar_message(&t, Compression::None)),
            }),
        }
    }

    /// Walks one tar stream: segments, members, and the whole-archive digest and size.
    fn stream(
        &mut self,
        input: Box<dyn Read + Send + '_>,
        spool: Option<File>,
    ) -> Result<Scanned, StreamError> {
        let tap = Tap::new(input, spool).map_err(StreamError::Spool)?;
        let blocks = BlockHasher::new(self.block_size).map_err(|e| StreamError::Tar(e.into()))?;
        let mut pending = Vec::new();
        let mut tar = TarReader::new(tap);
        let walked = self.walk(&mut tar, &blocks, &mut pending);
        let walked = walked.and_then(|w| {
            let digests = blocks.finish()?;
            assert_eq!(digests.len(), pending.len(), "one result per big member");
            for (o, d) in pending.into_iter().zip(digests) {
                if let Some(o) = o {
                    self.objects[o.0 as usize].blocks = d;
                }
            }
            Ok(w)
        });
        // Joining the hashing thread also tells whether the spool was written whole; a spool
        // failure explains a walk that broke off, so it is reported first.
        match (walked, tar.into_inner().finish()) {
            (_, Err(e)) => Err(StreamError::Spool(e)),
            (Err(e), Ok(_)) => Err(StreamError::Tar(e)),
            (Ok((segments, members)), Ok((digest, size))) => Ok(Scanned {
                segments,
                members,
                digest,
                size,
            }),
        }
    }

    fn walk<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        blocks: &BlockHasher,
        pending: &mut Vec<Option<ObjectIdx>>,
    ) -> Result<(Vec<Segment>, Vec<MemberRec>), TarError> {
        let mut segments = Vec::new();
        let mut members = Vec::new();
        let mut pool = Vec::new();
        loop {
            let m = match tar.next_entry()? {
                Entry::End(trailer) => {
                    push_inline(&mut segments, trailer);
                    return Ok((segments, members));
                }
                Entry::Member(m) => m,
            };
            push_inline(&mut segments, m.inline);
            let (object, data) = if m.kind == Kind::File || m.size > 0 {
                let (o, data) = self.content(tar, m.size, &mut pool, blocks, pending)?;
                segments.push(Segment::Object(o));
                (Some(o), data)
            } else {
                (None, None)
            };
            members.push(MemberRec {
                path: m.path,
                kind: m.kind,
                link: m.link,
                size: m.size,
                offset: m.offset,
                object,
                data,
            });
        }
    }

    /// Hashes one member's content into its object (found or added) and keeps it in memory if
    /// it is small and the budget allows. The object digest is computed here; the block
    /// digests of a member larger than one block are computed by `blocks` and filled in when
    /// the archive is done (`pending` says which new object each result belongs to).
    fn content<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        size: u64,
        pool: &mut Vec<Arc<Vec<u8>>>,
        blocks: &BlockHasher,
        pending: &mut Vec<Option<ObjectIdx>>,
    ) -> Result<(ObjectIdx, Option<Vec<u8>>), TarError> {
        let keep = size <= KEEP_MAX && self.kept + size <= KEEP_TOTAL;
        let mut data = keep.then(|| Vec::with_capacity(size as usize));
        let big = size > self.block_size;
        let mut whole = Hasher::new();
        let mut done = 0u64;
        loop {
            let mut buf = take_buffer(pool);
            let n = tar.read_content(Arc::get_mut(&mut buf).expect("unshared buffer"))?;
            if n == 0 {
                pool.push(buf);
                break;
            }
            done += n as u64;
            whole.update(&buf[..n]);
            if let Some(d) = data.as_mut() {
                d.extend_from_slice(&buf[..n]);
            }
            if big {
                blocks.send(Arc::clone(&buf), n, done == size)?;
            }
            pool.push(buf);
        }
        let digest = whole.finish();
        if keep {
            self.kept += size;
        }
        let mut added = false;
        let o = *self.by_content.entry((digest, size)).or_insert_with(|| {
            added = true;
            self.objects.push(ObjectInfo {
                digest,
                size,
                // A member of one block has the block's digest; bigger ones get theirs later.
                blocks: if size == 0 || big {
                    Vec::new()
                } else {
                    vec![digest]
                },
            });
            ObjectIdx(self.objects.len() as u32 - 1)
        });
        if big {
            pending.push(added.then_some(o));
        }
        Ok((o, data))
    }
}

/// A read buffer no other thread still holds, from the pool or new.
fn take_buffer(pool: &mut Vec<Arc<Vec<u8>>>) -> Arc<Vec<u8>> {
    match pool.iter().position(|b| Arc::strong_count(b) == 1) {
        Some(i) => pool.swap_remove(i),
        None => Arc::new(vec![0u8; CHUNK]),
    }
}

/// Hashes the blocks of members larger than one block on a thread of its own. A scan hashes
/// every content byte twice (object, block) and every archive byte once more (whole archive);
/// with those three passes on three threads, the reading thread is no longer the bottleneck
/// (measured on 2 cores, 256 MB plain archive: 0.6 GB/s with object and block hashing on the
/// reading thread, 1.05 GB/s with the blocks here).
struct BlockHasher {
    tx: Option<SyncSender<BlockJob>>,
    worker: Option<JoinHandle<Vec<Vec<Digest>>>>,
}

/// The next `len` bytes of the current member, in a shared read buffer; `last` ends it.
struct BlockJob {
    buf: Arc<Vec<u8>>,
    len: usize,
    last: bool,
}

impl BlockHasher {
    fn new(block_size: u64) -> io::Result<BlockHasher> {
        let (tx, rx) = sync_channel::<BlockJob>(4);
        let worker = std::thread::Builder::new()
            .name("dfpull-blocks".into())
            .spawn(move || {
                let mut members = Vec::new();
                let mut current = Vec::new();
                let mut hasher = Hasher::new();
                let mut in_block = 0u64;
                for BlockJob { buf, len, last } in rx {
                    let mut chunk = &buf[..len];
                    while !chunk.is_empty() {
                        let take = ((block_size - in_block) as usize).min(chunk.len());
                        hasher.update(&chunk[..take]);
                        in_block += take as u64;
                        chunk = &chunk[take..];
                        if in_block == block_size {
                            current.push(std::mem::take(&mut hasher).finish());
                            in_block = 0;
                        }
                    }
                    if last {
                        if in_block > 0 {
                            current.push(std::mem::take(&mut hasher).finish());
                            in_block = 0;
                        }
                        members.push(std::mem::take(&mut current));
                    }
                }
                members
            })?;
        Ok(BlockHasher {
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Hands over the next `len` bytes of the current member; `last` ends the member.
    fn send(&self, buf: Arc<Vec<u8>>, len: usize, last: bool) -> io::Result<()> {
        let tx = self.tx.as_ref().expect("open until finished");
        tx.send(BlockJob { buf, len, last })
            .map_err(|_| io::Error::other("the block hashing thread stopped"))
    }

    /// The block digests of every member handed over, in order.
    fn finish(mut self) -> io::Result<Vec<Vec<Digest>>> {
        self.tx = None;
        let worker = self.worker.take().expect("finished once");
        worker
            .join()
            .map_err(|_| io::Error::other("the block hashing thread panicked"))
    }
}

impl Drop for BlockHasher {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

struct Scanned {
    segments: Vec<Segment>,
    members: Vec<MemberRec>,
    digest: Digest,
    size: u64,
}

fn push_inline(segments: &mut Vec<Segment>, bytes: Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    match segments.last_mut() {
        Some(Segment::Inline(prev)) => prev.extend_from_slice(&bytes),
        _ => segments.push(Segment::Inline(bytes)),
    }
}

/// One line for a tar that could not be read.
fn tar_message(e: &TarError, compression: Compression) -> String {
    if let TarError::Io(io) = e {
        if let Some(d) = decode_error(io) {
            return d.to_string();
        }
    }
    let inner = match compression {
        Compression::None => String::new(),
        c => format!(" (inside the {} stream)", c.name()),
    };
    match e {
        TarError::NotTar => format!("not a tar archive{inner}"),
        TarError::UnsafeName { name } => format!(
            "member name {name:?} is absolute or contains `..`: refusing the archive{inner}"
        ),
        other => format!("{other}{inner}"),
    }
}

/// Makes the final manifest: small members no image names go inline, and objects are numbered
/// in first-use order (dropping those no longer used).
fn finalize(
    block_size: u64,
    objects: Vec<ObjectInfo>,
    mut archives: Vec<ArchiveInfo>,
    members: &[Vec<MemberRec>],
) -> SwarmManifest {
    let named: HashSet<ObjectIdx> = archives
        .iter()
        .flat_map(|a| &a.images)
        .flat_map(|i| std::iter::once(&i.config).chain(&i.layers).chain(&i.extra))
        .copied()
        .collect();
    let mut inline: HashMap<ObjectIdx, &[u8]> = HashMap::new();
    for m in members.iter().flatten() {
        if let (Some(o), Some(data)) = (m.object, &m.data) {
            if m.size <= INLINE_MAX && !named.contains(&o) {
                inline.insert(o, data);
            }
        }
    }
    let mut slots: Vec<Option<ObjectInfo>> = objects.into_iter().map(Some).collect();
    let mut remap: Vec<Option<ObjectIdx>> = vec![None; slots.len()];
    let mut kept = Vec::new();
    for a in &mut archives {
        let mut segments = Vec::with_capacity(a.segments.len());
        for s in std::mem::take(&mut a.segments) {
            match s {
                Segment::Object(o) => {
                    if let Some(bytes) = inline.get(&o) {
                        push_inline(&mut segments, bytes.to_vec());
                        continue;
                    }
                    let new = *remap[o.0 as usize].get_or_insert_with(|| {
                        kept.push(slots[o.0 as usize].take().expect("moved once"));
                        ObjectIdx(kept.len() as u32 - 1)
                    });
                    segments.push(Segment::Object(new));
                }
                Segment::Inline(b) => push_inline(&mut segments, b),
            }
        }
        a.segments = segments;
    }
    // Every object an image names is some member's content, so it has a number by now.
    let renumber = |o: &mut ObjectIdx| *o = remap[o.0 as usize].expect("named objects are placed");
    for img in archives.iter_mut().flat_map(|a| &mut a.images) {
        renumber(&mut img.config);
        img.layers.iter_mut().for_each(renumber);
        img.extra.iter_mut().for_each(renumber);
    }
    SwarmManifest {
        version: MANIFEST_VERSION,
        block_size,
        objects: kept,
        archives,
    }
}

fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    File::open(path)?.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Passes a stream through while another thread hashes it whole and, if asked, copies it to a
/// spool file (so a `docker save` stream is kept without a second read).
struct Tap<R> {
    inner: R,
    tx: Option<SyncSender<Vec<u8>>>,
    /// Buffers coming back from the worker, so the steady state allocates nothing.
    recycled: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<io::Result<Digest>>>,
    size: u64,
}

impl<R: Read> Tap<R> {
    fn new(inner: R, spool: Option<File>) -> io::Result<Tap<R>> {
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let (back_tx, recycled) = sync_channel::<Vec<u8>>(8);
        let worker = std::thread::Builder::new()
            .name("dfpull-hash".into())
            .spawn(move || {
                let mut spool = spool;
                let mut hasher = Hasher::new();
                for chunk in rx {
                    hasher.update(&chunk);
                    if let Some(f) = spool.as_mut() {
                        f.write_all(&chunk)?;
                    }
                    let _ = back_tx.try_send(chunk);
                }
                Ok(hasher.finish())
            })?;
        Ok(Tap {
            inner,
            tx: Some(tx),
            recycled,
            worker: Some(worker),
            size: 0,
        })
    }

    /// Waits for the worker: the digest and size of everything that passed.
    fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.tx = None;
        let worker = self.worker.take().expect("finished once");
        let digest = worker
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))??;
        Ok((digest, self.size))
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut chunk = self.recycled.try_recv().unwrap_or_default();
            chunk.clear();
            chunk.extend_from_slice(&buf[..n]);
            let tx = self.tx.as_ref().expect("open until finished");
            if tx.send(chunk).is_err() {
                // The worker stopped: its error comes out of `finish`.
                return Err(io::Error::other("the spool writer stopped"));
            }
            self.size += n as u64;
        }
        Ok(n)
    }
}

impl<R> Drop for Tap<R> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Spool files, removed (with the directory, when the spool made it) when dropped.
#[derive(Debug)]
struct Spool {
    dir: PathBuf,
    made_dir: bool,
    files: Vec<PathBuf>,
}

impl Spool {
    fn new(base: Option<&Path>) -> Result<Spool, ImageError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |error| ImageError::Write { path, error }
        };
        if let Some(dir) = base {
            let made_dir = !dir.exists();
            fs::create_dir_all(dir).map_err(write_err(dir))?;
            return Ok(Spool {
                dir: dir.to_path_buf(),
                made_dir,
                files: Vec::new(),
            });
        }
        let tmp = std::env::temp_dir();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for n in 0u32.. {
            let dir = tmp.join(format!("dfpull-spool-{}-{stamp}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(Spool {
                        dir,
                        made_dir: true,
                        files: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => continue,
                Err(e) => return Err(write_err(&dir)(e)),
            }
        }
        unreachable!("the loop returns")
    }

    fn create(&mut self, name: &str) -> Result<(PathBuf, File), ImageError> {
        for n in 0u32.. {
            let path = self
                .dir
                .join(format!(".dfpull-{}-{n}-{name}", std::process::id()));
            match File::options().write(true).create_new(true).open(&path) {
                Ok(f) => {
                    self.files.push(path.clone());
                    return Ok((path, f));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => continue,
                Err(error) => return Err(ImageError::Write { path, error }),
            }
        }
        unreachable!("the loop returns")
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
        if self.made_dir {
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

fn docker() -> Command {
    Command::new("docker")
}

fn docker_spawn_error(reference: &str, e: io::Error) -> ImageError {
    let message = if e.kind() == io::ErrorKind::NotFound {
        "the docker CLI is not installed; it is needed to read an image from the engine (or give an archive file instead)".to_string()
    } else {
        format!("cannot run docker: {e}")
    };
    ImageError::Reference {
        reference: reference.to_string(),
        message,
    }
}

/// One line from a failed docker command, saying whose fault it is.
fn engine_error(reference: &str, stderr: &str, status: std::process::ExitStatus) -> ImageError {
    let line = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map_or_else(|| format!("docker exited with {status}"), str::to_string);
    let lower = line.to_ascii_lowercase();
    let message = if lower.contains("no such image") || lower.contains("reference does not exist") {
        format!("the Docker engine does not know this image ({line})")
    } else if lower.contains("cannot connect to the docker daemon")
        || lower.contains("is the docker daemon running")
        || lower.contains("permission denied while trying to connect")
        || lower.contains("error during connect")
    {
        format!("no Docker engine reachable ({line})")
    } else {
        format!("docker failed: {line}")
    };
    ImageError::Reference {
        reference: reference.to_string(),
        message,
    }
}

/// The engine's size of an image: the estimate for the block size, and an early, clear error
/// for an image it does not have.
fn docker_image_size(reference: &str) -> Result<u64, ImageError> {
    let out = docker()
        .args(["image", "inspect", "--format", "{{.Size}}", reference])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| docker_spawn_error(reference, e))?;
    if !out.status.success() {
        return Err(engine_error(
            reference,
            &String::from_utf8_lossy(&out.stderr),
            out.status,
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().map_err(|_| ImageError::Reference {
        reference: reference.to_string(),
        message: format!("docker image inspect printed {:?}, not a size", text.trim()),
    })
}

/// Collects a child's stderr (bounded) on a thread, so a chatty child never blocks on it.
fn capture(stderr: std::process::ChildStderr) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.take(64 << 10).read_to_string(&mut text);
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart() {
        let file = |s: &str| SourceKind::File(PathBuf::from(s));
        let reference = |s: &str| SourceKind::Reference(s.to_string());
        let cases = [
            ("/x/img", file("/x/img")),
            ("./img", file("./img")),
            ("missing.tar.zst", file("missing.tar.zst")),
            ("alpine:3.19", reference("alpine:3.19")),
            ("ghcr.io/a/b@sha256:00", reference("ghcr.io/a/b@sha256:00")),
        ];
        for (s, want) in cases {
            assert_eq!(classify(s), want, "{s}");
        }
    }

    #[test]
    fn archive_names() {
        let cases = [
            ("/d/app.tar.gz", "app.tar"),
            ("app.tgz", "app.tar"),
            ("x/app.tar.zst", "app.tar"),
            ("app.tar", "app.tar"),
            ("./.hidden.tar", "hidden.tar"),
            ("a\\b.tgz", "a_b.tar"),
            ("/", "archive.tar"),
            ("/dev/fd/63", "63.tar"),
            ("image.TAR", "image.TAR"),
        ];
        for (path, want) in cases {
            assert_eq!(file_archive_name(Path::new(path)), want, "{path}");
        }
        assert_eq!(
            reference_archive_name("docker.io/library/alpine:3.19"),
            "alpine_3.19.tar"
        );
        assert_eq!(
            reference_archive_name("ghcr.io/o/app@sha256:0123456789abcdef"),
            "ghcr.io_o_app_0123456789ab.tar"
        );
    }

    #[test]
    fn names_are_made_unique() {
        let mut s = Scan {
            block_size: 1 << 20,
            objects: Vec::new(),
            by_content: HashMap::new(),
            kept: 0,
            spool: None,
            spool_base: None,
            names: HashSet::new(),
            watch: None,
        };
        assert_eq!(s.unique_name("a.tar"), "a.tar");
        assert_eq!(s.unique_name("a.tar"), "a-2.tar");
        assert_eq!(s.unique_name("a.tar"), "a-3.tar");
        assert_eq!(s.unique_name("b"), "b");
        assert_eq!(s.unique_name("b"), "b-2");
    }
}
