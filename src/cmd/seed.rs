//! `dfpull seed`.

use crate::cli::{GlobalArgs, SeedArgs};

pub fn run(_args: SeedArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    Err(super::not_built("seed"))
}
