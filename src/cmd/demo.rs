//! `dfpull demo`.

use crate::cli::{DemoArgs, GlobalArgs};

pub fn run(_args: DemoArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    Err(super::not_built("demo"))
}
