//! Image archives in and out: reading archives (plain, gzip, zstd; legacy docker-archive,
//! Docker 25+ and OCI layouts) into a [`manifest::SwarmManifest`], and loaders.
//!
//! - [`tar`] reads and writes tar byte for byte: headers and padding become inline bytes, member
//!   contents stream past.
//! - [`scan`] turns sources (archive files or image references given to `docker save`) into a
//!   [`Catalog`]: the manifest plus the files the seeder serves blocks from, in one pass per
//!   source. `layout` (private) finds the images in an archive.
//! - [`rebuild`] writes an archive back from its objects and checks it whole.
//! - [`synth`] generates image archives with no registry, for demos, tests and benchmarks.
//! - [`load`] hands a saved archive to docker or podman.

mod decompress;
mod layout;
pub mod load;
pub mod manifest;
pub mod rebuild;
pub mod scan;
pub mod synth;
pub mod tar;

use std::path::PathBuf;

pub use rebuild::write_archive;
pub use scan::{Backing, BackingFile, Catalog, ScanOptions, scan_sources};

use crate::exit::{Exit, HasExit};

/// Why an image source could not be used, or an archive not written. Every variant names the
/// file or reference.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// The I/O error is part of the message rather than a `source()`, so the one-line error
    /// (`{:#}`) does not print it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// An image reference the local engine could not provide.
    #[error("image {reference}: {message}")]
    Reference { reference: String, message: String },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// Writing an archive failed (disk full, permissions, or reading its objects back).
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A rebuilt archive is not the archive its manifest describes.
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl HasExit for ImageError {
    fn exit(&self) -> Exit {
        match self {
            ImageError::Invalid { .. }
            | ImageError::Io { .. }
            | ImageError::Reference { .. }
            | ImageError::Manifest(_) => Exit::BadInput,
            ImageError::Write { .. } => Exit::Output,
            ImageError::Corrupt { .. } => Exit::Transfer,
        }
    }
}
