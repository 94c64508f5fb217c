//! A host's blocks on disk: where each block lives, which ones are held, and how a peer's
//! archives are assembled and finished.
//!
//! Blocks are not kept in a cache of their own. A seeder serves them from the uncompressed
//! archive it was given (or its spool of a compressed or `docker save` source); a peer writes
//! each verified block straight into the partial archive it is building, at every place the
//! block's object occurs, and serves it from there. So a block is written once, read when
//! served, and an archive needs no final copy: once every block is held, the partial file is
//! verified whole, synced and renamed to its final name.
//!
//! Before the rename, a finished archive is known to hold the archive the manifest describes
//! in one of two ways ([`SavedCheck`]). By default, by construction: every byte of it was
//! either verified before it was written (a block) or written from the manifest itself (the
//! bytes between objects), and no other process opened the file since (an inotify watch), so
//! reading it all back to hash it again would only check the page cache. When that cannot be
//! vouched for (another open, a block found damaged, no inotify, a network filesystem), or with
//! [`SavedCheck::Whole`], the file is hashed whole against the manifest's digest.
//!
//! Finishing is kept short by work done while blocks still arrive: a background thread (see
//! [`Store::spawn_checker`]) starts writeback of what has been written, so that little is left
//! for `fsync`, and with [`SavedCheck::Whole`] hashes each partial file in order as far as its
//! blocks are held (`inorder.rs`), so that at the end only the last blocks are hashed. When
//! another process opens a partial file, or a held block is found damaged, that running hash
//! is not trusted and the whole file is hashed at the end instead.
//!
//! Partial archives are named `.NAME.dfpull-partial` in the output directory: never the final
//! name, so an interrupted run cannot leave a half-written archive where a user expects a full
//! one. A new one has its whole size reserved on disk first (`fallocate`): a disk too small fails
//! before any block is fetched, and the filesystem does not reserve space write by write (on
//! ext4, a 1 GiB loopback run took 1.09 s instead of 1.24 s). A store that cannot be set up removes
//! the partial files it started.
//!
//! Every block is checked against its sha256 in [`Store::write_block`] (hashed as it arrived,
//! see [`Received`]) before a single byte of it reaches the disk; a block that fails is never
//! written, so it is never served either. When served, a block is read back and checked again
//! ([`Store::read_block`]) unless the file's watch says no other process can have changed it
//! since: a peer's own partial file that nobody else opened, or a seeder's source that nobody
//! changed since it was scanned (and nobody holds open now).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::image::Backing;
use crate::image::manifest::{
    ArchiveInfo, BlockIdx, BlockRef, BlockTable, Digest, Hasher, Segment, SwarmManifest,
};
use crate::swarm::bitset::BitSet;
use crate::swarm::inorder::InOrder;
use crate::swarm::received::Received;
use crate::sys::{OpenWatch, WatchKind, Watched};

/// How long the background checker sleeps when no block arrives (it is woken by each one).
const CHECK_IDLE: Duration = Duration::from_millis(200);
/// How much the checker hashes before it lets go of the store (and looks at other files).
const CHECK_STEP: u64 = 64 << 20;
/// How many bytes written between two calls that start their writeback.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Why a block or archive could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("block {block} does not match its sha256 (got {got:?})")]
    Corrupt { block: u32, got: Digest },
    #[error("block {block} is {got} bytes, expected {want}")]
    WrongLength { block: u32, got: usize, want: u32 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: the assembled archive does not match its sha256 (got {got}, want {want})")]
    ArchiveMismatch {
        path: PathBuf,
        got: Digest,
        want: Digest,
    },
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0} is being written by another dfpull process")]
    Busy(PathBuf),
}

/// A set of bits that many threads read and set without a lock.
#[derive(Debug)]
struct AtomicBits(Vec<AtomicU64>);

impl AtomicBits {
    fn new(len: u32) -> AtomicBits {
        AtomicBits((0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }
    fn get(&self, i: u32) -> bool {
        self.0[(i / 64) as usize].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }
    /// Clears bit i; true if it was set.
    fn clear(&self, i: u32) -> bool {
        let old = self.0[(i / 64) as usize].fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
        old & (1 << (i % 64)) != 0
    }
    /// Sets bit i; true if it was clear.
    fn set(&self, i: u32) -> bool {
        let old = self.0[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::AcqRel);
        old & (1 << (i % 64)) == 0
    }
}

/// One archive file this host reads blocks from (and, for a peer, writes them into).
#[derive(Debug)]
struct ArchiveFile {
    archive: usize,
    file: File,
    /// Where the bytes are now (the partial file for a peer still building it).
    path: PathBuf,
    /// For a peer: the final name it is renamed to.
    final_path: Option<PathBuf>,
    /// Blocks this archive needs, each once.
    blocks: Vec<BlockIdx>,
    /// A peer's partial file kept from an earlier run (its blocks are checked at start).
    resumed: bool,
    /// For a peer: the running whole-file hash.
    in_order: Option<InOrder>,
    /// Its inotify watch, when one could be set: [`WatchKind::Private`] for a peer's partial
    /// file, [`WatchKind::Shared`] for a seeder's source.
    watched: Option<Watched>,
}

/// Wakes the background checker: a counter of blocks written and a condition variable.
#[derive(Debug, Default)]
struct Wake {
    written: Mutex<u64>,
    cv: Condvar,
}

impl Wake {
    fn notify(&self) {
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cv.notify_one();
    }

    /// Waits until more blocks than `seen` were written, or `timeout`; the new count.
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |n| *n == seen)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }
}

/// How a peer's finished archive is checked before it is renamed into place (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SavedCheck {
    /// Trusted by construction while nobody else opened the file; else hashed whole.
    #[default]
    Blocks,
    /// Always hashed whole: in file order while blocks arrive, or at the end.
    Whole,
}

/// Where the bytes of one object can be found: (index into `files`, offset of the object).
type Place = (usize, u64);

/// The blocks a host holds and the files behind them.
#[derive(Debug)]
pub struct Store {
    table: BlockTable,
    files: Vec<ArchiveFile>,
    /// For each object: every place it occurs in this host's files.
    places: Vec<Vec<Place>>,
    held: AtomicBits,
    held_count: AtomicU64,
    /// Blocks found corrupt on this host's own disk since it started (they are no longer held).
    lost: AtomicU64,
    wanted: BitSet,
    /// Serialises finishing so an archive is renamed once.
    finish_lock: Mutex<()>,
    /// Serialises block writes.
    write_lock: Mutex<()>,
    /// Other opens of a peer's partial files (`None`: inotify unavailable, so every archive is
    /// hashed whole at the end).
    watch: Mutex<Option<OpenWatch>>,
    /// A held block was found damaged: running hashes are not trusted any more.
    tainted: AtomicBool,
    wake: Arc<Wake>,
    /// Bytes written since writeback was last started.
    unflushed: AtomicU64,
    /// Archives finished by hashing the whole file at the end (rather than the running hash).
    whole_passes: AtomicU64,
    /// Blocks checked again when read to be served.
    served_checks: AtomicU64,
    saved_check: SavedCheck,
}

impl Store {
    /// A seeder's store: every block is held, read from the uncompressed archives in
    /// `backing` (one per manifest archive, in order). Blocks are checked when served unless
    /// their file's watch vouches for it.
    pub fn origin(manifest: &SwarmManifest, backing: Backing) -> Store {
        let files = backing
            .files
            .into_iter()
            .enumerate()
            .map(|(i, b)| ArchiveFile {
                archive: i,
                file: b.file,
                path: b.path,
                final_path: None,
                blocks: Vec::new(),
                resumed: false,
                in_order: None,
                watched: b.watched,
            })
            .collect();
        let mut store = Store::assemble(manifest, BlockTable::new(manifest), files);
        store.watch = Mutex::new(backing.watch);
        for b in 0..store.table.len() {
            store.held.set(b);
            store.wanted.set(b as usize, true);
        }
        store
            .held_count
            .store(store.table.len() as u64, Ordering::Relaxed);
        store
    }

    /// A peer's store: a partial file in `out_dir` for each archive in `archives` (indexes into
    /// the manifest), with its inline bytes already written.
    pub fn peer(
        manifest: &SwarmManifest,
        archives: &[usize],
        out_dir: &Path,
    ) -> Result<Store, StoreError> {
        if out_dir.exists() && !out_dir.is_dir() {
            return Err(StoreError::NotADirectory(out_dir.to_path_buf()));
        }
        std::fs::create_dir_all(out_dir).map_err(|source| StoreError::Write {
            path: out_dir.to_path_buf(),
            source,
        })?;
        let mut watch = OpenWatch::new()
            .inspect_err(|e| {
                tracing::debug!("no inotify ({e}): archives are hashed whole at the end")
            })
            .ok();
        let table = BlockTable::new(manifest);
        let mut files = Vec::new();
        let mut created = Created(Vec::new());
        for &a in archives {
            let info = &manifest.archives[a];
            let path = partial_path(out_dir, &info.name);
            let write_err = |source| StoreError::Write {
                path: path.clone(),
                source,
            };
            // A partial file of the right size from an earlier run is kept: its blocks are
            // checked below and those that verify are not fetched again.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(write_err)?;
            // Two peers writing one partial file would overwrite each other's blocks: the
            // second is refused before it changes anything.
            if !crate::sys::try_lock_exclusive(&file).map_err(write_err)? {
                return Err(StoreError::Busy(path));
            }
            let len = file.metadata().map_err(write_err)?.len();
            // Only a file that already had the archive's size can hold blocks of an earlier
            // run; a new one is not read back (that would hash a whole empty archive).
            let resumed = len == info.size && len > 0;
            if !resumed {
                created.0.push(path.clone());
                file.set_len(0).map_err(write_err)?;
                file.set_len(info.size).map_err(write_err)?;
                let reserved = crate::sys::preallocate(&file, info.size)
                    .map_err(|e| write_err(naming_the_need(e, info.size)))?;
                if !reserved {
                    tracing::debug!("{}: space not reserved ahead", path.display());
                }
            }
            // Watched from right after this process opened it: any later open is someone else.
            // Only on a local filesystem, where nobody can change the file without an open
            // this kernel sees.
            let local = crate::sys::on_local_filesystem(&file);
            if !local {
                tracing::debug!(
                    "{} is not on a local filesystem: checked whole at the end",
                    path.display()
                );
            }
            let watched = watch.as_mut().filter(|_| local).and_then(|w| {
                w.add(&path, WatchKind::Private)
                    .inspect_err(|e| tracing::debug!("cannot watch {}: {e}", path.display()))
                    .ok()
            });
            write_inline(&file, manifest, info).map_err(write_err)?;
            files.push(ArchiveFile {
                archive: a,
                file,
                path: path.clone(),
                final_path: Some(out_dir.join(&info.name)),
                blocks: Vec::new(),
                resumed,
                in_order: Some(InOrder::new(manifest, info, &table)),
                watched,
            });
        }
        let mut store = Store::assemble(manifest, table, files);
        store.watch = Mutex::new(watch);
        store.adopt_verified_blocks()?;
        created.0.clear();
        Ok(store)
    }

    /// Marks as held every block that a kept partial file already holds, verified (a resumed
    /// run), and copies it to the other places its object occurs in this host's files, so a
    /// held block is present everywhere it belongs.
    fn adopt_verified_blocks(&self) -> Result<(), StoreError> {
        let mut buf = vec![0u8; self.table.block_size() as usize];
        for (fi, f) in self.files.iter().enumerate().filter(|(_, f)| f.resumed) {
            for &b in &f.blocks {
                if self.has(b) {
                    continue;
                }
                let r = self.table.get(b);
                let places = &self.places[r.object.0 as usize];
                let Some(&(_, obj_off)) = places.iter().find(|(i, _)| *i == fi) else {
                    continue;
                };
                let data = &mut buf[..r.len as usize];
                if !self.verify_at(&r, fi, obj_off, data)? {
                    continue;
                }
                self.write_places(&r, &[&*data], Some(fi))?;
                if self.held.set(b.0) {
                    self.held_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let resumed = self.held_count();
        if resumed > 0 {
            tracing::info!("resuming: {resumed} blocks already verified on disk");
        }
        Ok(())
    }

    /// Writes block `r`'s bytes wherever its object occurs in this host's files, except in
    /// file `skip` (where they already are).
    fn write_places<B: AsRef<[u8]>>(
        &self,
        r: &BlockRef,
        parts: &[B],
        skip: Option<usize>,
    ) -> Result<(), StoreError> {
        for &(fi, obj_off) in &self.places[r.object.0 as usize] {
            if Some(fi) == skip {
                continue;
            }
            let f = &self.files[fi];
            crate::sys::write_all_vectored_at(&f.file, parts, obj_off + r.offset).map_err(
                |source| StoreError::Write {
                    path: f.path.clone(),
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// Reads block `r` where its object starts at `obj_off` in file `fi` into `buf` (its length)
    /// and tells whether it matches its sha256.
    fn verify_at(
        &self,
        r: &BlockRef,
        fi: usize,
        obj_off: u64,
        buf: &mut [u8],
    ) -> Result<bool, StoreError> {
        let f = &self.files[fi];
        f.file
            .read_exact_at(buf, obj_off + r.offset)
            .map_err(|source| StoreError::Read {
                path: f.path.clone(),
                source,
            })?;
        Ok(Digest::of(buf) == r.digest)
    }

    fn assemble(manifest: &SwarmManifest, table: BlockTable, mut files: Vec<ArchiveFile>) -> Store {
        let mut places: Vec<Vec<Place>> = vec![Vec::new(); manifest.objects.len()];
        let mut wanted = BitSet::new(table.len() as usize);
        for (fi, f) in files.iter_mut().enumerate() {
            let info = &manifest.archives[f.archive];
            for (o, offset) in info.placements(manifest) {
                places[o.0 as usize].push((fi, offset));
            }
            for o in manifest.archive_objects(info) {
                for b in table.blocks_of(o) {
                    f.blocks.push(BlockIdx(b));
                    wanted.set(b as usize, true);
                }
            }
        }
        Store {
            held: AtomicBits::new(table.len()),
            held_count: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            table,
            files,
            places,
            wanted,
            finish_lock: Mutex::new(()),
            write_lock: Mutex::new(()),
            watch: Mutex::new(None),
            tainted: AtomicBool::new(false),
            wake: Arc::default(),
            unflushed: AtomicU64::new(0),
            whole_passes: AtomicU64::new(0),
            served_checks: AtomicU64::new(0),
            saved_check: SavedCheck::default(),
        }
    }

    /// Sets how this peer's archives are checked before they are renamed; before
    /// [`Store::spawn_checker`].
    pub fn set_saved_check(&mut self, check: SavedCheck) {
        self.saved_check = check;
    }

    /// Starts the background thread that starts writeback of what was written to a peer's
    /// partial files and, with [`SavedCheck::Whole`], hashes them in order as their blocks
    /// arrive (nothing for a seeder). It stops when there is nothing more for it to do, a
    /// running hash is abandoned, or the store is dropped.
    pub fn spawn_checker(self: &Arc<Store>) {
        if self.files.iter().all(|f| f.final_path.is_none()) {
            return;
        }
        let store = Arc::downgrade(self);
        let wake = self.wake.clone();
        let spawned = std::thread::Builder::new()
            .name("dfpull-check".into())
            .spawn(move || check_loop(&store, &wake));
        if let Err(e) = spawned {
            tracing::debug!("no background checker ({e}): archives are hashed whole at the end");
        }
    }

    /// One round of the background checker: hashes what is ready (at most [`CHECK_STEP`] per
    /// file) and starts writeback. True when there is nothing more for it to do.
    fn check_step(&self, buf: &mut Vec<u8>) -> io::Result<bool> {
        if self.unflushed.load(Ordering::Relaxed) >= WRITEBACK_EVERY {
            self.unflushed.store(0, Ordering::Relaxed);
            for f in &self.files {
                let _ = crate::sys::start_writeback(&f.file, 0, 0);
            }
        }
        if self.saved_check == SavedCheck::Blocks {
            // Done once every wanted block is held (a count, not a walk over every archive's
            // blocks: this runs after each block written).
            return Ok(self.held_count() >= self.wanted.count() as u64);
        }
        if self.tainted.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let mut all_done = true;
        for f in &self.files {
            let Some(ck) = &f.in_order else { continue };
            if ck.digest().is_some() {
                continue;
            }
            all_done &= self.advance_running_hash(f, ck, CHECK_STEP, buf)?.is_some();
        }
        Ok(all_done)
    }

    /// Whether file `fi` may have been changed by someone else since it was opened or last
    /// checked whole.
    fn touched(&self, fi: usize) -> bool {
        if self.tainted.load(Ordering::Acquire) {
            return true;
        }
        let (mut watch, watched) = (
            self.watch.lock().unwrap_or_else(|e| e.into_inner()),
            self.files[fi].watched,
        );
        match (watch.as_mut(), watched) {
            (Some(w), Some(id)) => w.touched(id),
            _ => true,
        }
    }

    /// The archive's sha256 from the running hash, finished here, when it can be trusted.
    fn in_order_digest(&self, fi: usize) -> io::Result<Option<Digest>> {
        let f = &self.files[fi];
        let Some(ck) = &f.in_order else {
            return Ok(None);
        };
        if self.touched(fi) {
            return Ok(None);
        }
        let digest = self.advance_running_hash(f, ck, u64::MAX, &mut Vec::new())?;
        // Anything that happened while the last part was read voids it too.
        Ok(if self.touched(fi) { None } else { digest })
    }

    /// Advances file `f`'s running hash over its held blocks (about `budget` bytes at most);
    /// its digest once it has reached the end.
    fn advance_running_hash(
        &self,
        f: &ArchiveFile,
        ck: &InOrder,
        budget: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<Digest>> {
        ck.advance(&f.file, |b| self.held.get(b.0), budget, buf)?;
        Ok(ck.digest())
    }

    /// Whether every running hash has reached the end of its file.
    pub fn running_hashes_done(&self) -> bool {
        self.files
            .iter()
            .all(|f| f.in_order.as_ref().is_some_and(|c| c.digest().is_some()))
    }

    /// How many archives were finished by hashing the whole file at the end, because the
    /// running hash could not be used.
    pub fn whole_passes(&self) -> u64 {
        self.whole_passes.load(Ordering::Relaxed)
    }

    /// How many blocks were hashed again when read to be served, since the start.
    pub fn served_checks(&self) -> u64 {
        self.served_checks.load(Ordering::Relaxed)
    }

    pub fn table(&self) -> &BlockTable {
        &self.table
    }

    /// Blocks this host wants (a seeder: all of them).
    pub fn wanted(&self) -> &BitSet {
        &self.wanted
    }

    /// Blocks held now, as a set.
    pub fn held_set(&self) -> BitSet {
        let mut s = BitSet::new(self.table.len() as usize);
        for b in 0..self.table.len() {
            if self.held.get(b) {
                s.set(b as usize, true);
            }
        }
        s
    }

    pub fn has(&self, b: BlockIdx) -> bool {
        b.0 < self.table.len() && self.held.get(b.0)
    }

    pub fn held_count(&self) -> u64 {
        self.held_count.load(Ordering::Relaxed)
    }

    /// Reads a held block and checks it again against its sha256, so that bytes damaged on
    /// this host's disk are never served. `None` when the block is not held (or does not
    /// exist); a block that no longer verifies is dropped from the held set (see
    /// [`Store::lost`]) and reported as [`StoreError::Corrupt`].
    ///
    /// A peer's own partial file that nobody else has opened since this process did holds
    /// exactly the verified bytes this process wrote, so its blocks are served without that
    /// second hash (the receiver checks every block anyway). The moment another open is seen,
    /// or any held block was found damaged, every block is checked again when served.
    pub fn read_block(&self, b: BlockIdx) -> Option<Result<Vec<u8>, StoreError>> {
        if !self.has(b) {
            return None;
        }
        let r = self.table.get(b);
        let &(fi, obj_off) = self.places[r.object.0 as usize].first()?;
        let f = &self.files[fi];
        let mut buf = vec![0u8; r.len as usize];
        if let Err(source) = f.file.read_exact_at(&mut buf, obj_off + r.offset) {
            return Some(Err(StoreError::Read {
                path: f.path.clone(),
                source,
            }));
        }
        if !self.touched(fi) {
            return Some(Ok(buf));
        }
        self.served_checks.fetch_add(1, Ordering::Relaxed);
        let got = Digest::of(&buf);
        if got != r.digest {
            self.drop_block(b);
            tracing::warn!(
                "block {} is damaged on disk in {}; dropped",
                b.0,
                f.path.display()
            );
            return Some(Err(StoreError::Corrupt { block: b.0, got }));
        }
        Some(Ok(buf))
    }

    fn drop_block(&self, b: BlockIdx) {
        self.tainted.store(true, Ordering::Release);
        if self.held.clear(b.0) {
            self.held_count.fetch_sub(1, Ordering::Relaxed);
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many held blocks were found damaged on disk and dropped, since the start.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Repairs an archive whose whole-file check failed: writes its inline bytes again, checks
    /// every held block at every place it occurs and drops those that no longer verify (they
    /// are fetched again). Returns how many blocks were dropped.
    pub fn repair(&self, manifest: &SwarmManifest, archive: usize) -> Result<u64, StoreError> {
        let Some(f) = self.files.iter().find(|f| f.archive == archive) else {
            return Ok(0);
        };
        // From here on this store's archives are hashed whole at the end.
        self.tainted.store(true, Ordering::Release);
        let info = &manifest.archives[archive];
        write_inline(&f.file, manifest, info).map_err(|source| StoreError::Write {
            path: f.path.clone(),
            source,
        })?;
        let mut buf = vec![0u8; self.table.block_size() as usize];
        let mut dropped = 0;
        for &b in &f.blocks {
            if !self.has(b) {
                continue;
            }
            let r = self.table.get(b);
            for &(fi, obj_off) in &self.places[r.object.0 as usize] {
                if !self.verify_at(&r, fi, obj_off, &mut buf[..r.len as usize])? {
                    self.drop_block(b);
                    dropped += 1;
                    break;
                }
            }
        }
        Ok(dropped)
    }

    /// Verifies a block and writes it wherever its object occurs. Returns false when the
    /// block was already held (nothing written). A block that does not match its digest is
    /// rejected before anything is written.
    ///
    /// The bytes were hashed as they arrived ([`Received`]); here that digest is compared
    /// with the manifest's.
    pub fn write_block(&self, b: BlockIdx, data: &Received) -> Result<bool, StoreError> {
        let r = self.table.get(b);
        if data.len() != r.len as usize {
            return Err(StoreError::WrongLength {
                block: b.0,
                got: data.len(),
                want: r.len,
            });
        }
        let got = data.digest();
        if got != r.digest {
            return Err(StoreError::Corrupt { block: b.0, got });
        }
        if self.has(b) {
            return Ok(false);
        }
        // One writer at a time: a buffered write holds the file's inode lock anyway, and
        // writers queued on it spin (11% of a peer's CPU on loopback).
        let _writing = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.write_places(&r, data.chunks(), None)?;
        if self.held.set(b.0) {
            self.held_count.fetch_add(1, Ordering::Relaxed);
        }
        self.unflushed
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.wake.notify();
        Ok(true)
    }

    /// Archives (manifest indexes) whose every block is held.
    pub fn complete_archives(&self) -> Vec<usize> {
        self.files
            .iter()
            .filter(|f| f.blocks.iter().all(|b| self.held.get(b.0)))
            .map(|f| f.archive)
            .collect()
    }

    /// Bytes of objects held, per archive: (done, total). For progress.
    pub fn archive_progress(&self, archive: usize) -> (u64, u64) {
        let Some(f) = self.files.iter().find(|f| f.archive == archive) else {
            return (0, 0);
        };
        let mut done = 0;
        let mut total = 0;
        for &b in &f.blocks {
            let len = self.table.get(b).len as u64;
            total += len;
            if self.held.get(b.0) {
                done += len;
            }
        }
        (done, total)
    }

    /// Finishes a complete archive: checks the whole file against the archive digest, syncs
    /// it and renames it to its final name. Returns the final path. On a mismatch the partial
    /// file is left (never renamed) and an error returned.
    pub fn finish(&self, manifest: &SwarmManifest, archive: usize) -> Result<PathBuf, StoreError> {
        let _guard = self.finish_lock.lock().unwrap_or_else(|e| e.into_inner());
        let fi = self
            .files
            .iter()
            .position(|f| f.archive == archive)
            .expect("finish called for an archive this store builds");
        let f = &self.files[fi];
        let final_path = f.final_path.clone().expect("only peers finish archives");
        if final_path.exists() && !f.path.exists() {
            return Ok(final_path);
        }
        let info = &manifest.archives[archive];
        let read_err = |source| StoreError::Read {
            path: f.path.clone(),
            source,
        };
        let t0 = std::time::Instant::now();
        let how = if self.saved_check == SavedCheck::Blocks && !self.touched(fi) {
            "every block verified and nobody else opened the file:"
        } else {
            let got = match self.in_order_digest(fi).map_err(read_err)? {
                Some(d) => d,
                None => {
                    self.whole_passes.fetch_add(1, Ordering::Relaxed);
                    hash_file(&f.file).map_err(read_err)?
                }
            };
            if got != info.digest {
                return Err(StoreError::ArchiveMismatch {
                    path: f.path.clone(),
                    got,
                    want: info.digest,
                });
            }
            "sha256 checked:"
        };
        let hashed = t0.elapsed();
        let write_err = |source| StoreError::Write {
            path: final_path.clone(),
            source,
        };
        f.file.sync_all().map_err(write_err)?;
        let synced = t0.elapsed();
        std::fs::rename(&f.path, &final_path).map_err(write_err)?;
        if let Some(dir) = final_path.parent() {
            // Make the rename itself durable.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        tracing::debug!(
            "finished {}: {how} {:.3}s, sync {:.3}s, rename {:.3}s",
            final_path.display(),
            hashed.as_secs_f64(),
            (synced - hashed).as_secs_f64(),
            (t0.elapsed() - synced).as_secs_f64()
        );
        Ok(final_path)
    }

    /// Removes the partial files of archives that were not finished.
    pub fn discard_partials(&self) {
        for f in &self.files {
            if f.final_path.is_some() && f.path.exists() {
                let _ = std::fs::remove_file(&f.path);
            }
        }
    }
}

/// A full disk's error with the room the archive needs added; other errors as they are.
fn naming_the_need(e: io::Error, size: u64) -> io::Error {
    if e.raw_os_error() != Some(libc::ENOSPC) {
        return e;
    }
    let need = crate::units::ByteSize(size);
    io::Error::new(e.kind(), format!("{e}; the archive needs {need}"))
}

/// The partial files [`Store::peer`] started afresh, removed again when it fails (a full disk
/// at `fallocate`, say), so that a store that could not be set up leaves nothing behind. Kept
/// partials of an earlier run are not among them.
struct Created(Vec<PathBuf>);

impl Drop for Created {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The temporary name an archive is built under.
pub fn partial_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.dfpull-partial"))
}

fn write_inline(file: &File, manifest: &SwarmManifest, info: &ArchiveInfo) -> io::Result<()> {
    // Objects are skipped over here and filled in block by block later.
    let mut pos = 0u64;
    for s in &info.segments {
        match s {
            Segment::Inline(bytes) => {
                file.write_all_at(bytes, pos)?;
                pos += bytes.len() as u64;
            }
            Segment::Object(o) => pos += manifest.object(*o).size,
        }
    }
    Ok(())
}

/// sha256 of a whole file, read with positional reads (the file is shared with block I/O).
fn hash_file(file: &File) -> io::Result<Digest> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
}

/// The background checker's loop (see [`Store::spawn_checker`]).
fn check_loop(store: &Weak<Store>, wake: &Wake) {
    let mut buf = Vec::new();
    let mut seen = 0;
    loop {
        {
            let Some(store) = store.upgrade() else {
                return;
            };
            match store.check_step(&mut buf) {
                Ok(false) => {}
                Ok(true) => return,
                Err(e) => {
                    tracing::debug!("background check stopped: {e}");
                    return;
                }
            }
        }
        seen = wake.wait(seen, CHECK_IDLE);
    }
}
