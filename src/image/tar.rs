//! Tar archives, read and written byte for byte.
//!
//! [`TarReader`] walks an archive from any [`Read`] once, front to back. For each member it hands
//! out the *inline* bytes that come before the member's content (the padding after the previous
//! member, GNU long-name and PAX extension records, the 512-byte header itself), then streams the
//! content without buffering it; at the end it hands out the *trailer* (the end-of-archive zero
//! blocks and whatever follows them). Inline bytes, contents and trailer, concatenated, give the
//! input back exactly: that is what lets the swarm send member contents as verified objects and
//! still rebuild the archive bit for bit.
//!
//! The reader is strict where a lax reader would let a bad archive through silently: every
//! header checksum is checked, a stream that ends before the end-of-archive marker is an error,
//! and member names that are absolute or climb out with `..` are refused.
//!
//! [`TarBuilder`] writes the archives dfpull makes itself (synthetic images, test fixtures).

use std::io::{self, BufReader, Read, Write};

/// Tar's unit: headers are one block, contents are padded to a whole number of blocks.
pub const BLOCK: usize = 512;
const BLOCK_U64: u64 = BLOCK as u64;
/// Largest GNU long-name or PAX extension record accepted.
const MAX_EXTENSION: u64 = 1 << 20;
/// Most bytes accepted from the end-of-archive marker on (GNU tar pads to 10 KiB records).
pub const MAX_TRAILER: u64 = 1 << 20;
/// Read buffer of the reader; contents are read straight into the caller's buffer past it.
const READ_BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("not a tar archive")]
    NotTar,
    #[error("bad tar header checksum at byte {offset}")]
    Checksum { offset: u64 },
    #[error("truncated tar archive: the data ends at byte {offset}, inside {inside}")]
    Truncated { offset: u64, inside: &'static str },
    #[error("member name {name:?} is absolute or contains `..`")]
    UnsafeName { name: String },
    #[error("malformed tar archive at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
    #[error("more than {MAX_TRAILER} bytes follow the end-of-archive marker")]
    TrailingData,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What a member is, from its header's type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Directory,
    /// Devices, FIFOs, and type flags this reader does not know (their content is kept).
    Other(u8),
}

impl Kind {
    fn from_flag(flag: u8) -> Kind {
        match flag {
            b'0' | 0 | b'7' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'5' => Kind::Directory,
            other => Kind::Other(other),
        }
    }
}

/// One member, as read from its headers. Its content follows through
/// [`TarReader::read_content`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The bytes before the content: padding of the previous member, extension records and
    /// the header block.
    pub inline: Vec<u8>,
    /// The member's name, cleaned: no leading `./`, no empty or `.` components, no trailing `/`.
    pub path: String,
    pub kind: Kind,
    /// Link target of a hard or symbolic link, as written.
    pub link: Option<String>,
    /// Content bytes that follow the header (0 for links, directories and devices, whatever
    /// their size field says, as Go's archive/tar and so Docker read them).
    pub size: u64,
    /// Offset of the content in the archive.
    pub offset: u64,
}

/// The next thing in an archive.
#[derive(Debug)]
pub enum Entry {
    Member(Member),
    /// End of the archive: the trailer bytes (the last member's padding, the end-of-archive
    /// marker and anything after it).
    End(Vec<u8>),
}

/// Overrides collected from extension records for the member that follows them.
#[derive(Default)]
struct Extensions {
    long_name: Option<String>,
    long_link: Option<String>,
    pax_path: Option<String>,
    pax_link: Option<String>,
    pax_size: Option<u64>,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        self.long_name.is_none()
            && self.long_link.is_none()
            && self.pax_path.is_none()
            && self.pax_link.is_none()
            && self.pax_size.is_none()
    }
}

/// Streaming tar reader; see the module documentation.
pub struct TarReader<R: Read> {
    src: BufReader<R>,
    /// Archive offset of the next byte to read.
    pos: u64,
    /// Content bytes of the current member not read yet.
    remaining: u64,
    /// Padding after the current member's content.
    pad: u64,
    /// A valid header has been seen (so a bad one is a damaged archive, not a foreign file).
    started: bool,
    finished: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> TarReader<R> {
        TarReader {
            src: BufReader::with_capacity(READ_BUFFER, inner),
            pos: 0,
            remaining: 0,
            pad: 0,
            started: false,
            finished: false,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads up to the next member's content, or to the end of the archive. Content of the
    /// previous member that was not read is skipped (and then missing from the bytes handed out).
    pub fn next_entry(&mut self) -> Result<Entry, TarError> {
        if self.finished {
            return Ok(Entry::End(Vec::new()));
        }
        if self.remaining > 0 {
            let want = self.remaining;
            let got = io::copy(&mut (&mut self.src).take(want), &mut io::sink())?;
            self.pos += got;
            self.remaining -= got;
            if got < want {
                return Err(self.truncated("a member's content"));
            }
        }
        let mut inline = Vec::with_capacity(BLOCK + self.pad as usize);
        let pad = std::mem::take(&mut self.pad);
        self.read_exact_into(&mut inline, pad, "a member's padding")?;

        let mut ext = Extensions::default();
        loop {
            let start = inline.len();
            let header_at = self.pos;
            let got = self.read_up_to(&mut inline, BLOCK_U64)?;
            if got < BLOCK_U64 {
                return Err(if self.started {
                    let inside = if got == 0 && ext.is_empty() {
                        "the archive (its end-of-archive marker is missing)"
                    } else {
                        "a header"
                    };
                    self.truncated(inside)
                } else {
                    TarError::NotTar
                });
            }
            let block: &[u8; BLOCK] = inline[start..].try_into().expect("one block");
            if block.iter().all(|&b| b == 0) {
                if !ext.is_empty() {
                    return Err(malformed(header_at, "extension header without a member"));
                }
                self.read_trailer(&mut inline)?;
                self.finished = true;
                return Ok(Entry::End(inline));
            }
            if !checksum_ok(block) {
                return Err(if self.started {
                    TarError::Checksum { offset: header_at }
                } else {
                    TarError::NotTar
                });
            }
            self.started = true;
            let flag = block[156];
            let size_field = parse_number(&block[124..136])
                .ok_or_else(|| malformed(header_at, "bad size field"))?;

            if matches!(flag, b'L' | b'K' | b'x' | b'g') {
                if size_field > MAX_EXTENSION {
                    return Err(malformed(header_at, "extension record too large"));
                }
                let data_at = inline.len();
                self.read_exact_into(&mut inline, size_field, "an extension record")?;
                self.read_exact_into(&mut inline, padding(size_field), "an extension record")?;
                let data = &inline[data_at..data_at + size_field as usize];
                match flag {
                    b'L' => ext.long_name = Some(c_string(data)),
                    b'K' => ext.long_link = Some(c_string(data)),
                    b'x' => parse_pax(data, &mut ext).map_err(|w| malformed(header_at, w))?,
                    // Global records apply to every later member; none of their keys changes
                    // how the bytes are laid out, so they are checked and kept inline only.
                    _ => parse_pax(data, &mut Extensions::default())
                        .map_err(|w| malformed(header_at, w))?,
                }
                continue;
            }

            let raw_name = ext
                .pax_path
                .take()
                .or(ext.long_name.take())
                .unwrap_or_else(|| header_name(block));
            let path = clean_path(&raw_name)?;
            let kind = Kind::from_flag(flag);
            let link = match kind {
                Kind::HardLink | Kind::Symlink => Some(
                    ext.pax_link
                        .take()
                        .or(ext.long_link.take())
                        .unwrap_or_else(|| c_string(&block[157..257])),
                ),
                _ => None,
            };
            let size = if matches!(flag, b'1'..=b'6') {
                0
            } else {
                ext.pax_size.unwrap_or(size_field)
            };
            self.remaining = size;
            self.pad = padding(size);
            return Ok(Entry::Member(Member {
                inline,
                path,
                kind,
                link,
                size,
                offset: self.pos,
            }));
        }
    }

    /// Reads the current member's content into `buf`; 0 once it is all read.
    pub fn read_content(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.src.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Err(self.truncated("a member's content"));
        }
        self.remaining -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }

    /// Gives back the underlying reader (for example to see how it ended).
    pub fn into_inner(self) -> R {
        self.src.into_inner()
    }

    fn truncated(&self, inside: &'static str) -> TarError {
        TarError::Truncated {
            offset: self.pos,
            inside,
        }
    }

    /// Appends up to `n` bytes to `out`; fewer only at the end of the stream.
    fn read_up_to(&mut self, out: &mut Vec<u8>, n: u64) -> Result<u64, TarError> {
        let got = (&mut self.src).take(n).read_to_end(out)? as u64;
        self.pos += got;
        Ok(got)
    }

    fn read_exact_into(
        &mut self,
        out: &mut Vec<u8>,
        n: u64,
        inside: &'static str,
    ) -> Result<(), TarError> {
        if self.read_up_to(out, n)? < n {
            return Err(self.truncated(inside));
        }
        Ok(())
    }

    /// Everything from the end-of-archive marker on, bounded.
    fn read_trailer(&mut self, out: &mut Vec<u8>) -> Result<(), TarError> {
        let got = self.read_up_to(out, MAX_TRAILER + 1)?;
        if got > MAX_TRAILER {
            return Err(TarError::TrailingData);
        }
        Ok(())
    }
}

fn malformed(offset: u64, what: impl Into<String>) -> TarError {
    TarError::Malformed {
        offset,
        what: what.into(),
    }
}

/// Padding that follows `size` content bytes.
pub fn padding(size: u64) -> u64 {
    (BLOCK_U64 - size % BLOCK_U64) % BLOCK_U64
}

/// The checksum is the sum of the header's bytes with the checksum field read as spaces; old
/// writers summed signed bytes, so either sum is accepted (as GNU tar and Go do).
fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let Some(stored) = parse_number(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// A numeric header field: octal digits (space or NUL padded), or GNU base-256 when the high
/// bit of the first byte is set. `None` if it is neither.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return None; // negative
        }
        let mut v = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| b != b' ' && b != 0);
    let mut v = 0u64;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The name in a header block: POSIX ustar headers may split it into prefix and name; GNU
/// headers use the prefix area for other fields.
fn header_name(block: &[u8; BLOCK]) -> String {
    let name = c_string(&block[..100]);
    if &block[257..263] == b"ustar\0" {
        let prefix = c_string(&block[345..500]);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

/// Cleans a member name, refusing absolute names and `..` components.
pub fn clean_path(raw: &str) -> Result<String, TarError> {
    let unsafe_name = || TarError::UnsafeName {
        name: raw.to_string(),
    };
    if raw.starts_with('/') {
        return Err(unsafe_name());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_name()),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// PAX records: `LEN KEY=VALUE\n`, LEN counting the whole record.
fn parse_pax(mut data: &[u8], ext: &mut Extensions) -> Result<(), String> {
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record with a bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("PAX record with a bad length".into());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without `=`")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let text = || String::from_utf8_lossy(value).into_owned();
        match key {
            b"path" => ext.pax_path = Some(text()),
            b"linkpath" => ext.pax_link = Some(text()),
            b"size" => ext.pax_size = Some(text().parse().map_err(|_| "PAX size is not a number")?),
            _ => {}
        }
        data = &data[len..];
    }
    Ok(())
}

/// How a [`TarBuilder`] writes names longer than a header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongNames {
    /// GNU `././@LongLink` records (what docker's Go writer and GNU tar emit for long names).
    #[default]
    Gnu,
    /// POSIX PAX extended headers.
    Pax,
}

/// Writes tar archives: ustar headers, long names as GNU or PAX records, sizes past the octal
/// range in base-256.
pub struct TarBuilder<W: Write> {
    out: W,
    long_names: LongNames,
    mtime: u64,
}

/// Largest size an 11-digit octal field holds.
const MAX_OCTAL_SIZE: u64 = (1 << 33) - 1;

impl<W: Write> TarBuilder<W> {
    pub fn new(out: W) -> TarBuilder<W> {
        TarBuilder {
            out,
            long_names: LongNames::Gnu,
            // A fixed time keeps generated archives reproducible.
            mtime: 1_700_000_000,
        }
    }

    pub fn long_names(mut self, style: LongNames) -> TarBuilder<W> {
        self.long_names = style;
        self
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn directory(&mut self, path: &str) -> io::Result<()> {
        let name = format!("{}/", path.trim_end_matches('/'));
        self.header(&name, b'5', 0o755, 0, "")
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.header(path, b'2', 0o777, 0, target)
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.file_with(path, data.len() as u64, |w| w.write_all(data))
    }

    /// Writes a regular file of `size` bytes whose content `fill` writes; it must write
    /// exactly `size` bytes.
    pub fn file_with(
        &mut self,
        path: &str,
        size: u64,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        self.header(path, b'0', 0o644, size, "")?;
        let mut counted = Counted {
            inner: &mut self.out,
            n: 0,
        };
        fill(&mut counted)?;
        if counted.n != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{path}: {} content bytes written, {size} announced",
                    counted.n
                ),
            ));
        }
        self.out.write_all(&[0; BLOCK][..padding(size) as usize])
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, name: &str, flag: u8, mode: u32, size: u64, link: &str) -> io::Result<()> {
        let long_name = name.len() > 100;
        let long_link = link.len() > 100;
        match self.long_names {
            LongNames::Gnu => {
                if long_name {
                    self.extension(b'L', "././@LongLink", &c_bytes(name))?;
                }
                if long_link {
                    self.extension(b'K', "././@LongLink", &c_bytes(link))?;
                }
            }
            LongNames::Pax => {
                let mut records = Vec::new();
                if long_name {
                    records.extend(pax_record("path", name));
                }
                if long_link {
                    records.extend(pax_record("linkpath", link));
                }
                if size > MAX_OCTAL_SIZE {
                    records.extend(pax_record("size", &size.to_string()));
                }
                if !records.is_empty() {
                    let short: String = name.chars().take(80).collect();
                    self.extension(b'x', &format!("PaxHeaders/{short}"), &records)?;
                }
            }
        }
        let block = header_block(name, flag, mode, size, link, self.mtime);
        self.out.write_all(&block)
    }

    fn extension(&mut self, flag: u8, name: &str, data: &[u8]) -> io::Result<()> {
        let size = data.len() as u64;
        let block = header_block(name, flag, 0o644, size, "", self.mtime);
        self.out.write_all(&block)?;
        self.out.write_all(data)?;
        self.out.write_all(&[0; BLOCK][..padding(size) as usize])
    }
}

fn c_bytes(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // The length counts its own digits: grow it until it is consistent.
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// One ustar header block. Names and links are cut at 100 bytes (the long forms travel in
/// extension records before it).
fn header_block(name: &str, flag: u8, mode: u32, size: u64, link: &str, mtime: u64) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let put = |b: &mut [u8; BLOCK], at: usize, bytes: &[u8], max: usize| {
        let n = bytes.len().min(max);
        b[at..at + n].copy_from_slice(&bytes[..n]);
    };
    put(&mut b, 0, name.as_bytes(), 100);
    put(&mut b, 100, format!("{mode:07o}\0").as_bytes(), 8);
    put(&mut b, 108, b"0000000\0", 8);
    put(&mut b, 116, b"0000000\0", 8);
    if size <= MAX_OCTAL_SIZE {
        put(&mut b, 124, format!("{size:011o}\0").as_bytes(), 12);
    } else {
        b[124] = 0x80;
        b[128..136].copy_from_slice(&size.to_be_bytes());
    }
    put(&mut b, 136, format!("{:011o}\0", mtime).as_bytes(), 12);
    b[156] = flag;
    put(&mut b, 157, link.as_bytes(), 100);
    put(&mut b, 257, b"ustar\0", 6);
    put(&mut b, 263, b"00", 2);
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    put(&mut b, 148, format!("{sum:06o}\0 ").as_bytes(), 8);
    b
}

/// Counts what passes through, to check a content writer kept its word.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
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
    use proptest::prelude::*;

    /// Reads a whole archive, checking that the pieces add up to the input.
    fn read_all(data: &[u8]) -> Result<Vec<(Member, Vec<u8>)>, TarError> {
        let mut r = TarReader::new(data);
        let mut rebuilt = Vec::new();
        let mut out = Vec::new();
        loop {
            match r.next_entry()? {
                Entry::Member(m) => {
                    rebuilt.extend_from_slice(&m.inline);
                    assert_eq!(m.offset, rebuilt.len() as u64);
                    let mut content = Vec::new();
                    let mut buf = [0u8; 700];
                    loop {
                        let n = r.read_content(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        content.extend_from_slice(&buf[..n]);
                    }
                    assert_eq!(content.len() as u64, m.size);
                    rebuilt.extend_from_slice(&content);
                    out.push((m, content));
                }
                Entry::End(trailer) => {
                    rebuilt.extend_from_slice(&trailer);
                    assert_eq!(rebuilt, data, "pieces concatenate to the input");
                    return Ok(out);
                }
            }
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = TarBuilder::new(Vec::new());
        b.directory("dir").unwrap();
        b.file("dir/a.txt", b"hello").unwrap();
        b.file("empty", b"").unwrap();
        b.symlink("dir/link", "../empty").unwrap();
        b.finish().unwrap()
    }

    #[test]
    fn reads_members_and_keeps_every_byte() {
        let data = sample();
        let members = read_all(&data).unwrap();
        let names: Vec<_> = members.iter().map(|(m, _)| m.path.as_str()).collect();
        assert_eq!(names, ["dir", "dir/a.txt", "empty", "dir/link"]);
        assert_eq!(members[0].0.kind, Kind::Directory);
        assert_eq!(members[1].1, b"hello");
        assert_eq!(members[2].0.size, 0);
        assert_eq!(members[3].0.kind, Kind::Symlink);
        assert_eq!(members[3].0.link.as_deref(), Some("../empty"));
    }

    #[test]
    fn garbage_and_empty_input_are_not_tar() {
        assert!(matches!(read_all(b""), Err(TarError::NotTar)));
        assert!(matches!(read_all(&[7u8; 2048]), Err(TarError::NotTar)));
        assert!(matches!(read_all(&[1u8; 100]), Err(TarError::NotTar)));
    }

    #[test]
    fn a_damaged_later_header_is_a_checksum_error() {
        let mut data = sample();
        data[BLOCK + 3] ^= 0x20; // inside the second header's name
        assert!(matches!(
            read_all(&data),
            Err(TarError::Checksum { offset: 512 })
        ));
    }

    #[test]
    fn truncation_anywhere_is_reported() {
        let data = sample();
        // Cut inside a content, inside a header, and right before the end-of-archive marker.
        for cut in [BLOCK * 2 + 3, BLOCK * 3 + 100, data.len() - 2 * BLOCK] {
            let err = read_all(&data[..cut]).unwrap_err();
            assert!(
                matches!(err, TarError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["/etc/passwd", "a/../../b", ".."] {
            let mut b = TarBuilder::new(Vec::new());
            b.file(bad, b"x").unwrap();
            let data = b.finish().unwrap();
            assert!(
                matches!(read_all(&data), Err(TarError::UnsafeName { .. })),
                "{bad}"
            );
        }
        assert_eq!(clean_path("./a//./b/").unwrap(), "a/b");
    }

    #[test]
    fn numbers_octal_and_base256() {
        assert_eq!(parse_number(b"00000000644\0"), Some(0o644));
        assert_eq!(parse_number(b"  644 \0"), Some(0o644));
        assert_eq!(parse_number(b"\0\0\0"), Some(0));
        assert_eq!(parse_number(b"0009"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..].copy_from_slice(&(10u64 << 30).to_be_bytes());
        assert_eq!(parse_number(&big), Some(10 << 30));
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
        // Crossing from two to three length digits.
        assert!(pax_record("k", &"v".repeat(93)).starts_with(b"99 "));
        assert!(pax_record("k", &"v".repeat(94)).starts_with(b"101 "));
        assert_eq!(pax_record("k", &"v".repeat(94)).len(), 101);
    }

    #[test]
    fn trailing_garbage_is_bounded() {
        let mut data = sample();
        data.extend_from_slice(&[9u8; 4000]);
        assert_eq!(read_all(&data).unwrap().len(), 4, "small tails are kept");
        data.extend(std::iter::repeat_n(0u8, MAX_TRAILER as usize));
        assert!(matches!(read_all(&data), Err(TarError::TrailingData)));
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-zA-Z0-9_.-]{1,40}", 1..8).prop_map(|parts| {
            parts
                .into_iter()
                .map(|p| if p == "." || p == ".." { "x".into() } else { p })
                .collect::<Vec<_>>()
                .join("/")
        })
    }

    proptest! {
        #[test]
        fn round_trip_random_archives(
            members in prop::collection::vec((name_strategy(), 0usize..3000, any::<u8>()), 0..12),
            pax in any::<bool>(),
            tail in 0usize..3,
        ) {
            let style = if pax { LongNames::Pax } else { LongNames::Gnu };
            let mut b = TarBuilder::new(Vec::new()).long_names(style);
            for (name, size, fill) in &members {
                if fill % 7 == 0 {
                    b.symlink(name, &format!("{name}/{name}")).unwrap();
                } else {
                    b.file(name, &vec![*fill; *size]).unwrap();
                }
            }
            let mut data = b.finish().unwrap();
            data.extend(std::iter::repeat_n(0u8, tail * BLOCK));
            let got = read_all(&data).unwrap();
            prop_assert_eq!(got.len(), members.len());
            for ((m, content), (name, size, fill)) in got.iter().zip(&members) {
                prop_assert_eq!(&m.path, name);
                if fill % 7 == 0 {
                    prop_assert_eq!(m.link.clone(), Some(format!("{name}/{name}")));
                    prop_assert_eq!(m.size, 0);
                } else {
                    prop_assert_eq!(content.len(), *size);
                    prop_assert!(content.iter().all(|b| b == fill));
                }
            }
        }
    }
}
