//! Image archives in and out: reading archives (plain, gzip, zstd; legacy docker-archive,
//! Docker 25+ and OCI layouts) into a [`manifest::SwarmManifest`], and loaders.

pub mod load;
pub mod manifest;

use std::path::PathBuf;

use crate::exit::{Exit, HasExit};

/// Why an image source could not be used. Every variant names the file or reference.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HasExit for ImageError {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}
