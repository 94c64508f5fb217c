//! `dfpull completions SHELL` and the hidden `dfpull man DIR`: both generated from the clap
//! definition, so they never drift from the real command line.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write_completions(args.shell, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Writes the completion script for `shell`.
pub fn write_completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    clap_complete::generate(shell, &mut Cli::command(), "dfpull", out);
    Ok(())
}

pub fn man(args: ManArgs) -> anyhow::Result<()> {
    write_man_pages(&args.dir)
}

/// Writes `dfpull.1` and `dfpull-SUBCOMMAND.1` for every visible subcommand into `dir`.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = Cli::command();
    let write = |name: String, cmd: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("dfpull-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("dfpull {}", sub.get_name()));
        write(name, page)?;
    }
    write("dfpull".into(), cmd)
}
