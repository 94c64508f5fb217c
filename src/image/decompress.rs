//! Compressed archives: telling gzip and zstd apart by their magic bytes, and streaming
//! decoders whose failures say which stream broke.

use std::fmt;
use std::io::{self, BufRead, Read};

use ruzstd::decoding::FrameDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognizes a stream by its first bytes. Formats `docker load` reads but dfpull does not
    /// are refused with a message saying what to do.
    pub fn sniff(head: &[u8]) -> Result<Compression, String> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Ok(Compression::Zstd)
        } else if head.starts_with(b"BZh") && head.get(3).is_some_and(u8::is_ascii_digit) {
            Err("compressed with bzip2, which dfpull does not read: decompress it first, or use gzip or zstd".into())
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Err("compressed with xz, which dfpull does not read: decompress it first, or use gzip or zstd".into())
        } else {
            Ok(Compression::None)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// A reader of the decompressed bytes.
    pub fn decoder<'a, R: BufRead + Send + 'a>(self, input: R) -> Box<dyn Read + Send + 'a> {
        match self {
            Compression::None => Box::new(input),
            Compression::Gzip => Box::new(Tagged {
                inner: flate2::bufread::MultiGzDecoder::new(input),
                format: "gzip",
            }),
            Compression::Zstd => Box::new(Tagged {
                inner: ZstdReader::new(input),
                format: "zstd",
            }),
        }
    }
}

/// The error a decoder failed with, marked so the scanner can tell a broken compressed stream
/// from a broken tar inside it.
#[derive(Debug)]
pub struct DecodeError {
    pub format: &'static str,
    pub source: io::Error,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} stream is cut short or corrupt ({})",
            self.format, self.source
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Finds a [`DecodeError`] inside an I/O error.
pub fn decode_error(e: &io::Error) -> Option<&DecodeError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DecodeError>())
}

struct Tagged<D> {
    inner: D,
    format: &'static str,
}

impl<D: Read> Read for Tagged<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|source| {
            if decode_error(&source).is_some() {
                return source;
            }
            io::Error::new(
                source.kind(),
                DecodeError {
                    format: self.format,
                    source,
                },
            )
        })
    }
}

/// A zstd stream of any number of frames (skippable ones skipped), each frame's checksum
/// checked when it has one.
struct ZstdReader<R: BufRead> {
    src: R,
    dec: FrameDecoder,
    in_frame: bool,
}

/// Zstd's largest window (`--long=31`); the archive is the user's own, so it is allowed.
const MAX_WINDOW: u64 = 1 << 31;

impl<R: BufRead> ZstdReader<R> {
    fn new(src: R) -> ZstdReader<R> {
        let mut dec = FrameDecoder::new();
        dec.set_max_window_size(MAX_WINDOW);
        ZstdReader {
            src,
            dec,
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.dec.can_collect() == 0 && !self.dec.is_finished() {
                    self.dec
                        .decode_blocks(
                            &mut self.src,
                            ruzstd::decoding::BlockDecodingStrategy::UptoBlocks(1),
                        )
                        .map_err(io::Error::other)?;
                }
                let n = self.dec.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                let sums = (
                    self.dec.get_checksum_from_data(),
                    self.dec.get_calculated_checksum(),
                );
                if let (Some(want), Some(got)) = sums {
                    if want != got {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "frame checksum mismatch",
                        ));
                    }
                }
                self.in_frame = false;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let want = u64::from(length);
                    let got = io::copy(&mut (&mut self.src).take(want), &mut io::sink())?;
                    if got < want {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn decode(c: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        c.decoder(data).read_to_end(&mut out)?;
        Ok(out)
    }

    fn payload() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(Compression::sniff(&gzip(b"x")).unwrap(), Compression::Gzip);
        assert_eq!(Compression::sniff(&zstd(b"x")).unwrap(), Compression::Zstd);
        assert_eq!(
            Compression::sniff(b"manifest.json\0").unwrap(),
            Compression::None
        );
        assert!(
            Compression::sniff(b"BZh91AY")
                .unwrap_err()
                .contains("bzip2")
        );
    }

    #[test]
    fn gzip_and_multi_frame_zstd_decode() {
        let data = payload();
        assert_eq!(decode(Compression::Gzip, &gzip(&data)).unwrap(), data);
        // Two frames with a skippable frame between them.
        let mut z = zstd(&data[..500_000]);
        z.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        z.extend(zstd(&data[500_000..]));
        assert_eq!(decode(Compression::Zstd, &z).unwrap(), data);
    }

    #[test]
    fn cut_streams_fail_with_a_tagged_error() {
        let data = payload();
        for (c, packed) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd(&data)),
        ] {
            let cut = &packed[..packed.len() * 2 / 3];
            let err = decode(c, cut).unwrap_err();
            let tagged = decode_error(&err).expect("tagged");
            assert_eq!(tagged.format, c.name());
        }
    }
}
