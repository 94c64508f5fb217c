//! The few Linux calls the standard library does not offer, each behind a safe function. This
//! is the only module of the crate with `unsafe` code besides the process-start environment
//! set-up in `main.rs`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Starts writeback of the dirty pages of `file` in `offset..offset + len` (`len` 0: to the end)
/// without waiting for it, so that a later `fsync` finds little left to write. Advisory: a
/// failure only means the `fsync` does the work.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: sync_file_range reads only its integer arguments; the descriptor stays open for
    // the call because `file` is borrowed.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `parts`, one after the other, at `offset` in `file` with as few `pwritev` calls as
/// the kernel allows (one, for a block of a few dozen parts), retrying short writes and
/// interruptions like [`std::os::unix::fs::FileExt::write_all_at`].
pub fn write_all_vectored_at<B: AsRef<[u8]>>(
    file: &File,
    parts: &[B],
    mut offset: u64,
) -> io::Result<()> {
    // At most IOV_MAX (1024 on Linux) slices per call.
    const MAX_IOV: usize = 1024;
    let mut parts: Vec<&[u8]> = parts
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| !p.is_empty())
        .collect();
    let mut first = 0;
    while first < parts.len() {
        let iov: Vec<libc::iovec> = parts[first..(first + MAX_IOV).min(parts.len())]
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let Ok(at) = libc::off_t::try_from(offset) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: every iovec points into a slice borrowed for the whole call, with its
        // length; pwritev only reads them. `file` keeps the descriptor open.
        let rc =
            unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, at) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut n = rc as usize;
        offset += n as u64;
        while n > 0 {
            let p = parts[first];
            if n >= p.len() {
                n -= p.len();
                first += 1;
            } else {
                parts[first] = &p[n..];
                n = 0;
            }
        }
    }
    Ok(())
}

/// Reserves disk space for the first `len` bytes of `file` (`fallocate`, keeping its size), so
/// that a full disk shows at once rather than after part of a download, and the filesystem
/// need not reserve space block by block as the writes come. `Ok(false)` where the filesystem
/// cannot do it (the writes then find out); `Err` for a real failure, `ENOSPC` among them.
pub fn preallocate(file: &File, len: u64) -> io::Result<bool> {
    let Ok(len) = libc::off_t::try_from(len) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    if len == 0 {
        return Ok(true);
    }
    loop {
        // SAFETY: fallocate reads only its integer arguments; `file` keeps the descriptor open.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Takes an exclusive advisory lock (`flock`) on `file` without waiting: false when another
/// open of the file holds it. Released when the file is closed, or the process dies.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock reads only its integer arguments; `file` keeps the descriptor open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(false),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// Filesystems (by `statfs` magic number) where every change to a file goes through this
/// kernel, so that inotify sees every open: ext2/3/4, XFS, Btrfs, tmpfs, overlayfs, ZFS,
/// F2FS. Network and FUSE filesystems are not among them: another host can change a file there
/// without this kernel knowing.
const LOCAL_FILESYSTEMS: [i64; 7] = [
    0xEF53,      // ext2/3/4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs
    0x2FC1_2FC1, // ZFS
    0xF2F5_2010, // F2FS
];

/// Whether `file` lives on a filesystem where an [`OpenWatch`] sees every other open.
pub fn on_local_filesystem(file: &File) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a whole `struct statfs` into `st` when it returns 0; `file` keeps
    // the descriptor open.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    // `f_type` is a signed word of a width that depends on the C library; magics are 32-bit.
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64 & 0xFFFF_FFFF;
    LOCAL_FILESYSTEMS.contains(&kind)
}

/// What counts as a touch of a watched file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// A file no other process has any business opening (a peer's partial archive): any other
    /// open, a change of its attributes or links, a move or a deletion. Writes through our own
    /// descriptor raise only `IN_MODIFY`, which this kind ignores.
    Private,
    /// A file others may read while we do (a seeder's source archive): a change of its bytes
    /// (`IN_MODIFY` from a write or a truncation, `IN_CLOSE_WRITE` from a close after opening
    /// it to write), and, for as long as it lasts, any other open: an opener may write
    /// through a shared mapping, which raises no event until it closes the file. Moves and
    /// deletions do not count: our descriptor keeps the bytes it was opened on.
    Shared,
}

impl WatchKind {
    fn mask(self) -> u32 {
        match self {
            WatchKind::Private => {
                libc::IN_OPEN | libc::IN_ATTRIB | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF
            }
            WatchKind::Shared => {
                libc::IN_OPEN | libc::IN_CLOSE_NOWRITE | libc::IN_CLOSE_WRITE | libc::IN_MODIFY
            }
        }
    }
}

/// Tells, file by file, whether another process may have changed a watched file since it
/// was watched (inotify). Reads of the events never block.
#[derive(Debug)]
pub struct OpenWatch {
    fd: OwnedFd,
    watches: Vec<WatchState>,
    /// An error or a queue overflow: every file counts as touched.
    all: bool,
}

#[derive(Debug)]
struct WatchState {
    wd: i32,
    kind: WatchKind,
    /// A touch that lasts: see [`WatchKind`].
    changed: bool,
    /// Opens seen and not yet closed ([`WatchKind::Shared`]). A close of an open made before
    /// the watch began is not counted against later ones.
    open: u32,
}

/// One watched file of an [`OpenWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched(i32);

/// Size of `struct inotify_event` before its name.
const EVENT_HEADER: usize = 16;

impl OpenWatch {
    pub fn new() -> io::Result<OpenWatch> {
        // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor we just opened and own; nothing else closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(OpenWatch {
            fd,
            watches: Vec::new(),
            all: false,
        })
    }

    /// Watches `path` from now on. Opens made before this call are not seen, so a file is
    /// opened by this process first and watched after.
    pub fn add(&mut self, path: &Path, kind: WatchKind) -> io::Result<Watched> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // Events already queued belong to whatever this descriptor watched before.
        self.drain();
        // SAFETY: `c` is a NUL-terminated string that outlives the call; the descriptor is ours.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), kind.mask()) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.watches.retain(|w| w.wd != wd);
        self.watches.push(WatchState {
            wd,
            kind,
            changed: false,
            open: 0,
        });
        Ok(Watched(wd))
    }

    /// True while another process may have changed `file` since it was watched: for good once
    /// a lasting touch happened, and for a [`WatchKind::Shared`] file also while another open
    /// of it lasts. An error reading the events, or a queue overflow, counts as touched: the
    /// answer only decides whether a shortcut is safe.
    pub fn touched(&mut self, file: Watched) -> bool {
        self.drain();
        self.all
            || self
                .watches
                .iter()
                .find(|w| w.wd == file.0)
                .is_none_or(|w| w.changed || w.open > 0)
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is writable for its whole length; the descriptor is ours.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n < 0 {
                match io::Error::last_os_error().kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.all = true;
                        return;
                    }
                }
            }
            let n = n as usize;
            if n == 0 {
                return;
            }
            let mut at = 0;
            while at + EVENT_HEADER <= n {
                let field = |i: usize| {
                    let b = &buf[at + 4 * i..at + 4 * i + 4];
                    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                };
                let (wd, mask, len) = (field(0) as i32, field(1), field(3) as usize);
                if mask & libc::IN_Q_OVERFLOW != 0 || wd < 0 {
                    self.all = true;
                } else if let Some(w) = self.watches.iter_mut().find(|w| w.wd == wd) {
                    w.event(mask);
                }
                at += EVENT_HEADER + len;
            }
        }
    }
}

impl WatchState {
    fn event(&mut self, mask: u32) {
        if mask & libc::IN_IGNORED != 0 {
            // The watch is gone (its file deleted, or its filesystem unmounted): nothing more
            // would be seen.
            self.changed = true;
            return;
        }
        match self.kind {
            WatchKind::Private => self.changed = true,
            WatchKind::Shared => {
                if mask & (libc::IN_MODIFY | libc::IN_CLOSE_WRITE) != 0 {
                    self.changed = true;
                }
                if mask & libc::IN_OPEN != 0 {
                    self.open += 1;
                }
                if mask & libc::IN_CLOSE != 0 {
                    self.open = self.open.saturating_sub(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A new empty file `f` in `dir`, open to read and write.
    fn scratch_file(dir: &Path) -> (std::path::PathBuf, File) {
        let path = dir.join("f");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn preallocation_reserves_the_space_and_keeps_the_size() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (_, file) = scratch_file(dir.path());
        let len = 3 << 20;
        file.set_len(len).unwrap();
        let sparse = file.metadata().unwrap().blocks() * 512;
        assert!(
            sparse < len,
            "a new file set to {len} bytes holds {sparse} already"
        );
        if !preallocate(&file, len).unwrap() {
            eprintln!("this filesystem cannot preallocate; nothing to check");
            return;
        }
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), len, "preallocation changed the size");
        assert!(
            meta.blocks() * 512 >= len,
            "only {} of {len} bytes reserved",
            meta.blocks() * 512
        );
        assert!(
            preallocate(&file, 0).unwrap(),
            "nothing to reserve is not a failure"
        );
    }

    #[test]
    fn vectored_writes_land_in_order_at_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = scratch_file(dir.path());
        // More parts than one pwritev takes, of uneven sizes, some empty.
        let owned: Vec<Vec<u8>> = (0..2500u32)
            .map(|i| vec![(i % 251) as u8; (i % 7) as usize])
            .collect();
        write_all_vectored_at(&file, &owned, 100).unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[..100], &[0u8; 100][..]);
        assert_eq!(&got[100..], owned.concat().as_slice());
    }

    #[test]
    fn an_open_by_anyone_else_is_seen_and_our_own_writes_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ours) = scratch_file(dir.path());
        let other_path = dir.path().join("g");
        std::fs::write(&other_path, b"").unwrap();
        let mut w = OpenWatch::new().unwrap();
        let f = w.add(&path, WatchKind::Private).unwrap();
        let g = w.add(&other_path, WatchKind::Private).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&ours, b"mine", 0).unwrap();
        ours.set_len(100).unwrap();
        ours.sync_all().unwrap();
        start_writeback(&ours, 0, 0).unwrap();
        assert!(!w.touched(f), "our own writes count as a foreign touch");
        let mut other = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        other.write_all(b"theirs").unwrap();
        assert!(w.touched(f), "another open was not seen");
        assert!(w.touched(f), "touched must stay set");
        assert!(!w.touched(g), "an open of one file marked another");
        std::fs::rename(&other_path, dir.path().join("h")).unwrap();
        assert!(w.touched(g), "a move was not seen");
    }

    #[test]
    fn a_shared_file_is_touched_while_another_open_lasts_and_for_good_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source");
        std::fs::write(&path, b"the bytes that were scanned").unwrap();
        let ours = std::fs::File::open(&path).unwrap();
        let mut w = OpenWatch::new().unwrap();
        let f = w.add(&path, WatchKind::Shared).unwrap();
        let mut buf = [0u8; 9];
        std::os::unix::fs::FileExt::read_exact_at(&ours, &mut buf, 0).unwrap();
        assert!(!w.touched(f), "our own reads count as a touch");
        let reader = std::fs::File::open(&path).unwrap();
        assert!(w.touched(f), "an open that lasts was not seen");
        drop(reader);
        assert!(!w.touched(f), "a reader that closed still counts");
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        assert!(!w.touched(f), "a move changes no byte we read");
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("moved"))
            .unwrap();
        drop(writer);
        assert!(w.touched(f), "a close after opening to write was not seen");
        assert!(w.touched(f), "touched must stay set");

        // A truncation by path opens nothing.
        let other = dir.path().join("other");
        std::fs::write(&other, b"more bytes").unwrap();
        let _ours = std::fs::File::open(&other).unwrap();
        let g = w.add(&other, WatchKind::Shared).unwrap();
        assert!(!w.touched(g));
        let c = CString::new(other.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::truncate(c.as_ptr(), 3) }, 0);
        assert!(w.touched(g), "a truncation was not seen");
    }

    #[test]
    fn a_second_open_cannot_take_the_lock_and_the_local_disk_is_local() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let a = std::fs::File::create(&path).unwrap();
        let b = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(try_lock_exclusive(&a).unwrap());
        assert!(!try_lock_exclusive(&b).unwrap(), "two holders of one lock");
        drop(a);
        assert!(
            try_lock_exclusive(&b).unwrap(),
            "the lock outlived its file"
        );
        // The test's temporary directory is on this machine's own disk or tmpfs.
        assert!(on_local_filesystem(&b));
        let proc = std::fs::File::open("/proc/self/status").unwrap();
        assert!(
            !on_local_filesystem(&proc),
            "procfs counted as a local disk"
        );
    }
}
