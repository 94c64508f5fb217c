//! `dfpull peer`.

use crate::cli::{GlobalArgs, PeerArgs};

pub fn run(_args: PeerArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    Err(super::not_built("peer"))
}
