//! The `dfpull` binary: read the config file, parse, then hand over to the library; print
//! errors in one line.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use dfpull::exit::HasExit as _;

#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The config file becomes DFPULL_* variables, which clap reads like any others.
    match dfpull::config::load(&args, |name| std::env::var_os(name)) {
        Ok(settings) => {
            for (name, value) in settings.vars {
                // SAFETY: nothing else runs yet (no thread has been started), so nothing can
                // read the environment while it changes.
                unsafe { std::env::set_var(name, value) };
            }
        }
        Err(e) => {
            dfpull::logging::error_line(&e.to_string());
            return ExitCode::from(e.exit().code());
        }
    }
    let cli = dfpull::cli::Cli::parse_from(args);
    ExitCode::from(dfpull::run(cli).code())
}
