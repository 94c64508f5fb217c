//! Log output: tracing to stderr, its level set by -v/-q (or `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use crate::cli::GlobalArgs;

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(args: &GlobalArgs) {
    let level = match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_env("DFPULL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,dfpull={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Prints the final error line: `dfpull: error: ...`.
pub fn error_line(msg: &str) {
    eprintln!("dfpull: error: {msg}");
}
