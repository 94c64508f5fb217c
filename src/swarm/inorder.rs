//! The whole-archive sha256 of a peer's partial file, computed in file order while blocks are
//! still arriving, so that finishing an archive does not begin with one more pass over all of
//! it (1 GiB is about 0.6 s of sha256 on one core, as long as a fast link takes to move it).
//!
//! The archive is cut into pieces in file order: the inline bytes between objects (tar headers
//! and padding, written when the partial file is created) and each block of each object where
//! it occurs. The hash advances over the longest run of pieces that are ready (inline pieces
//! always are, a block piece once the block is held), reading them back from the file, so what
//! is hashed is what lies on disk, not what was meant to be written.
//!
//! What a running hash cannot see by itself is a change to a piece after it was hashed. This
//! process writes each region once, with verified bytes, and never over a held block, so such a
//! change needs another writer; [`Store`](super::store::Store) watches the file for any other
//! open and, if it sees one (or drops a block it found damaged), throws the running hash away
//! and hashes the whole file at the end, as it would without this module.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::image::manifest::{
    ArchiveInfo, BlockIdx, BlockTable, Digest, Hasher, Segment, SwarmManifest,
};

/// A contiguous range of the archive file.
#[derive(Debug, Clone, Copy)]
struct Piece {
    offset: u64,
    len: u64,
    /// The block stored there, or `None` for inline bytes.
    block: Option<BlockIdx>,
}

#[derive(Default)]
struct Progress {
    hasher: Hasher,
    /// Index of the next piece to hash.
    next: usize,
    /// Bytes hashed so far (the offset of the next piece).
    hashed: u64,
}

/// The in-order hash of one archive file.
pub struct InOrder {
    pieces: Vec<Piece>,
    size: u64,
    progress: Mutex<Progress>,
}

impl std::fmt::Debug for InOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InOrder")
            .field("pieces", &self.pieces.len())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl InOrder {
    pub fn new(manifest: &SwarmManifest, info: &ArchiveInfo, table: &BlockTable) -> InOrder {
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for s in &info.segments {
            match s {
                Segment::Inline(bytes) => {
                    if !bytes.is_empty() {
                        pieces.push(Piece {
                            offset,
                            len: bytes.len() as u64,
                            block: None,
                        });
                    }
                    offset += bytes.len() as u64;
                }
                Segment::Object(o) => {
                    for b in table.blocks_of(*o) {
                        let r = table.get(BlockIdx(b));
                        pieces.push(Piece {
                            offset: offset + r.offset,
                            len: u64::from(r.len),
                            block: Some(BlockIdx(b)),
                        });
                    }
                    offset += manifest.object(*o).size;
                }
            }
        }
        InOrder {
            pieces,
            size: offset,
            progress: Mutex::new(Progress::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hashes the pieces that are ready from where the hash stands, at most about `budget`
    /// bytes (whole pieces), reading them from `file` through `buf`. Returns the bytes hashed.
    /// Waits while another thread advances the same hash.
    pub fn advance(
        &self,
        file: &File,
        ready: impl Fn(BlockIdx) -> bool,
        budget: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<u64> {
        let mut p = self.lock();
        let mut done = 0u64;
        while done < budget {
            let Some(&piece) = self.pieces.get(p.next) else {
                break;
            };
            if piece.block.is_some_and(|b| !ready(b)) {
                break;
            }
            debug_assert_eq!(piece.offset, p.hashed, "pieces leave no gap");
            // Inline pieces can be long (many small members in a row): read them in parts.
            let mut at = 0u64;
            while at < piece.len {
                let n = (piece.len - at).min(1 << 20) as usize;
                buf.resize(n, 0);
                file.read_exact_at(&mut buf[..n], piece.offset + at)?;
                p.hasher.update(&buf[..n]);
                at += n as u64;
            }
            p.next += 1;
            p.hashed += piece.len;
            done += piece.len;
        }
        Ok(done)
    }

    /// The archive's sha256 once every piece has been hashed.
    pub fn digest(&self) -> Option<Digest> {
        let p = self.lock();
        (p.next == self.pieces.len() && p.hashed == self.size).then(|| p.hasher.clone().finish())
    }
}
