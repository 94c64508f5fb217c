//! The `dfpull` binary: parse, then hand over to the library; print errors in one line.

use std::process::ExitCode;

use clap::Parser;

#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = dfpull::cli::Cli::parse();
    ExitCode::from(dfpull::run(cli).code())
}
