//! Exit codes: the documented table, and the one place that maps errors to it.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | internal error (a bug, or an I/O failure no other code describes) |
//! | 2    | usage error (bad flags or arguments), or a command not available in this build |
//! | 3    | bad input: a source archive or image reference that cannot be used |
//! | 4    | nothing found on the network: no swarm, or it does not offer the named image |
//! | 5    | transfer failed: the swarm could not deliver every block |
//! | 6    | load failed: the archive was saved but the image loader failed |
//! | 7    | output failed: the archive could not be written (disk full, permissions) |
//! | 130  | interrupted (Ctrl-C) |
//!
//! Code keeps its own error enums; a command returns `anyhow::Error` and [`classify`] walks the
//! chain for the first error that knows its code ([`HasExit`]).

use std::fmt;

/// A documented process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    Internal = 1,
    Usage = 2,
    BadInput = 3,
    NotFound = 4,
    Transfer = 5,
    Load = 6,
    Output = 7,
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Errors that know which exit code they mean.
pub trait HasExit {
    fn exit(&self) -> Exit;
}

/// An error raised directly with a code, for failures that have no enum of their own
/// (for example "the swarm does not offer image X").
#[derive(Debug)]
pub struct Coded {
    pub exit: Exit,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

impl HasExit for Coded {
    fn exit(&self) -> Exit {
        self.exit
    }
}

/// Makes an `anyhow::Error` that carries an exit code.
pub fn coded(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        exit,
        message: message.into(),
    })
}

/// The exit code for an error: the first error in the chain that knows its code.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Coded>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<crate::image::ImageError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<crate::image::manifest::ManifestError>() {
            let _ = e;
            return Exit::BadInput;
        }
        if let Some(e) = cause.downcast_ref::<crate::swarm::SwarmError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<crate::image::load::LoadError>() {
            return e.exit();
        }
    }
    Exit::Internal
}

/// True when the error is a broken pipe on stdout (`dfpull inspect | head`): not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn classify_finds_a_code_deep_in_the_chain() {
        let e = Err::<(), _>(coded(Exit::NotFound, "no swarm"))
            .context("peer")
            .unwrap_err();
        assert_eq!(classify(&e), Exit::NotFound);
        assert_eq!(format!("{e:#}"), "peer: no swarm");
        assert_eq!(classify(&anyhow::anyhow!("plain")), Exit::Internal);
    }
}
