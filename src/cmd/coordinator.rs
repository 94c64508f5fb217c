//! `dfpull coordinator`.

use crate::cli::{CoordinatorArgs, GlobalArgs};

pub fn run(_args: CoordinatorArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    Err(super::not_built("coordinator"))
}
