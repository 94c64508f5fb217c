//! The swarm: the pure scheduler, the coordinator around it, a peer's block store and the
//! peer's download loop.

pub mod bitset;
pub mod coordinator;
mod inorder;
pub mod peer;
pub mod received;
pub mod scheduler;
pub mod seeder;
pub mod store;

use crate::exit::{Exit, HasExit};

/// Failures of a swarm transfer.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("no swarm found: {0}")]
    NotFound(String),
    #[error("transfer failed: {0}")]
    Transfer(String),
    #[error("cannot write {path}")]
    Output {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HasExit for SwarmError {
    fn exit(&self) -> Exit {
        match self {
            SwarmError::NotFound(_) => Exit::NotFound,
            SwarmError::Transfer(_) => Exit::Transfer,
            SwarmError::Output { .. } => Exit::Output,
        }
    }
}

#[cfg(test)]
mod tests;
