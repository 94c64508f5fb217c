//! `dfpull status`.

use crate::cli::{GlobalArgs, StatusArgs};

pub fn run(_args: StatusArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    Err(super::not_built("status"))
}
