//! Loaders: hand a saved archive to docker or podman.

use crate::exit::{Exit, HasExit};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{loader} load failed for {path}: {message}")]
    Failed {
        loader: &'static str,
        path: std::path::PathBuf,
        message: String,
    },
}

impl HasExit for LoadError {
    fn exit(&self) -> Exit {
        Exit::Load
    }
}
