//! Log output: tracing to stderr, its level set by -v/-q (or `DFPULL_LOG`).
//!
//! While progress bars are on screen, a line written straight to stderr would land in the middle
//! of them and leave a torn bar behind. So every formatted log line goes through [`LogWriter`],
//! which hands it to the active bars' `MultiProgress::println` when [`crate::ui`] has bars up
//! (the line is printed above them and they are redrawn below), and to stderr otherwise.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::MultiProgress;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::GlobalArgs;

/// The bars that log lines are printed above, and the id of the reporter that put them up.
static BARS: Mutex<Option<(u64, MultiProgress)>> = Mutex::new(None);

/// Set by `-q`: the reporter then leaves out bars and progress lines.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(args: &GlobalArgs) {
    let level = match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    QUIET.store(args.quiet > 0, Ordering::Relaxed);
    let filter = EnvFilter::try_from_env("DFPULL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,dfpull={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// True when `-q` was given: only warnings and errors are wanted on stderr.
pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints the final error line: `dfpull: error: ...`.
pub fn error_line(msg: &str) {
    emit(format!("dfpull: error: {msg}\n").as_bytes());
}

/// From now on, log lines are printed through `bars` (called by the reporter that owns them).
pub(crate) fn print_above(id: u64, bars: MultiProgress) {
    *BARS.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, bars));
}

/// Log lines go straight to stderr again, unless another reporter has put up bars since.
pub(crate) fn stop_printing_above(id: u64) {
    let mut bars = BARS.lock().unwrap_or_else(|e| e.into_inner());
    if bars.as_ref().is_some_and(|(current, _)| *current == id) {
        *bars = None;
    }
}

#[cfg(test)]
pub(crate) fn printing_above_bars() -> bool {
    BARS.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// The [`MakeWriter`] for log output: one [`LogLine`] per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// Collects one formatted event and prints it, whole, when dropped.
#[derive(Debug)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            emit(&self.0);
        }
    }
}

fn emit(text: &[u8]) {
    // The bars are cloned out so the lock is not held while printing.
    let bars = BARS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|(_, bars)| bars.clone());
    match bars {
        Some(bars) => {
            let text = String::from_utf8_lossy(text);
            let _ = bars.println(text.strip_suffix('\n').unwrap_or(&text));
        }
        None => {
            let _ = io::stderr().lock().write_all(text);
        }
    }
}
