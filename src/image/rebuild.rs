//! Writing an archive back from its manifest: inline bytes as they are, objects from wherever
//! the caller keeps them, the result checked against the archive's sha256 before it takes its
//! final name.
//!
//! The archive grows under a hidden temporary name (`.NAME.partial`) in the target directory and
//! is renamed into place only once it is whole, verified and on disk (fsync), so a reader never
//! sees a partial or wrong archive under the final name, even after a crash. On any error the
//! temporary file is removed.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::ImageError;
use super::manifest::{ArchiveInfo, Hasher, ObjectIdx, Segment, SwarmManifest};

/// Writes `archive` into `dir` and returns its final path. `read_object` writes the bytes of
/// one object into the writer it is given (for instance [`super::Catalog::read_object`], or a
/// peer's block store).
pub fn write_archive(
    manifest: &SwarmManifest,
    archive: &ArchiveInfo,
    mut read_object: impl FnMut(ObjectIdx, &mut dyn Write) -> io::Result<()>,
    dir: &Path,
) -> Result<PathBuf, ImageError> {
    let name = archive.name.as_str();
    let target = dir.join(name);
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(ImageError::Corrupt {
            path: target,
            message: "the manifest gives the archive a name that is not a plain file name".into(),
        });
    }
    let temp = dir.join(format!(".{name}.partial"));
    let written = write_to(manifest, archive, &mut read_object, &temp, &target);
    let result = written.and_then(|()| {
        fs::rename(&temp, &target).map_err(|error| ImageError::Write {
            path: target.clone(),
            error,
        })?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(target.clone())
    });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_to(
    manifest: &SwarmManifest,
    archive: &ArchiveInfo,
    read_object: &mut dyn FnMut(ObjectIdx, &mut dyn Write) -> io::Result<()>,
    temp: &Path,
    target: &Path,
) -> Result<(), ImageError> {
    let write_err = |error| ImageError::Write {
        path: temp.to_path_buf(),
        error,
    };
    let corrupt = |message: String| ImageError::Corrupt {
        path: target.to_path_buf(),
        message,
    };
    let file = File::create(temp).map_err(write_err)?;
    let mut sink = Sink {
        out: BufWriter::with_capacity(1 << 20, file),
        hasher: Hasher::new(),
        written: 0,
        failed: false,
    };
    for s in &archive.segments {
        match s {
            Segment::Inline(bytes) => sink.write_all(bytes).map_err(write_err)?,
            Segment::Object(o) => {
                let want = manifest
                    .objects
                    .get(o.0 as usize)
                    .ok_or_else(|| corrupt(format!("the manifest has no object {}", o.0)))?
                    .size;
                let before = sink.written;
                if let Err(e) = read_object(*o, &mut sink) {
                    if sink.failed {
                        return Err(write_err(e));
                    }
                    return Err(ImageError::Write {
                        path: target.to_path_buf(),
                        error: io::Error::new(e.kind(), format!("reading object {}: {e}", o.0)),
                    });
                }
                let got = sink.written - before;
                if got != want {
                    return Err(corrupt(format!(
                        "object {} gave {got} bytes, the manifest says {want}",
                        o.0
                    )));
                }
            }
        }
    }
    let Sink {
        out,
        hasher,
        written,
        ..
    } = sink;
    let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    let digest = hasher.finish();
    if written != archive.size || digest != archive.digest {
        return Err(corrupt(format!(
            "the rebuilt archive ({written} bytes) hashes to {digest}, the manifest says {} ({} bytes)",
            archive.digest, archive.size
        )));
    }
    Ok(())
}

/// Hashes and counts what is written; remembers whether the file itself failed, so a failing
/// object reader can be told from a failing disk.
struct Sink {
    out: BufWriter<File>,
    hasher: Hasher,
    written: u64,
    failed: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf).inspect_err(|_| self.failed = true)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush().inspect_err(|_| self.failed = true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::{Digest, MANIFEST_VERSION, MIN_BLOCK, ObjectInfo};

    fn manifest(content: &[u8]) -> SwarmManifest {
        let whole: Vec<u8> = [b"head".as_slice(), content, b"tail"].concat();
        SwarmManifest {
            version: MANIFEST_VERSION,
            block_size: MIN_BLOCK,
            objects: vec![ObjectInfo {
                digest: Digest::of(content),
                size: content.len() as u64,
                blocks: vec![Digest::of(content)],
            }],
            archives: vec![ArchiveInfo {
                name: "a.tar".into(),
                digest: Digest::of(&whole),
                size: whole.len() as u64,
                source: "test".into(),
                images: vec![],
                segments: vec![
                    Segment::Inline(b"head".to_vec()),
                    Segment::Object(ObjectIdx(0)),
                    Segment::Inline(b"tail".to_vec()),
                ],
            }],
        }
    }

    #[test]
    fn writes_verifies_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(b"body");
        let path =
            write_archive(&m, &m.archives[0], |_, w| w.write_all(b"body"), dir.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"headbodytail");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn wrong_bytes_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(b"body");
        let err =
            write_archive(&m, &m.archives[0], |_, w| w.write_all(b"BODY"), dir.path()).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
        let err =
            write_archive(&m, &m.archives[0], |_, w| w.write_all(b"bod"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("gave 3 bytes"), "{err}");
        let err = write_archive(
            &m,
            &m.archives[0],
            |_, _| Err(io::Error::other("store gone")),
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("store gone"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
