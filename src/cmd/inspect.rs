//! `dfpull inspect`.

use crate::cli::{GlobalArgs, InspectArgs};

pub fn run(_args: InspectArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    Err(super::not_built("inspect"))
}
