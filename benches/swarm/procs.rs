//! Child processes the benchmark starts and reaps itself, so that each one's resource use comes
//! back from `wait4(2)`: peak resident set (`ru_maxrss`) and CPU time (user + system).
//!
//! A child is started through `ip netns exec`, which execs the program, so the pid is the
//! program's own and the rusage is its own (plus the few hundred kilobytes `ip` had resident
//! before the exec, which only matter for tiny programs). Processes are reaped here rather than
//! through `std::process::Child`, which would discard the rusage; a [`Proc`] that is dropped
//! while still running is killed and reaped, so a failing run leaves nothing behind.

use std::io;
use std::process::{ChildStdout, Command};
use std::thread;
use std::time::{Duration, Instant};

/// How a process ended and what it used.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// When the benchmark noticed the exit (within one polling interval of it).
    pub at: Instant,
    /// Exit code, or `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "unknown status".into(),
        }
    }
}

/// A started process.
#[derive(Debug)]
pub struct Proc {
    pub label: String,
    pid: i32,
    exit: Option<Exit>,
    /// SIGTERM was sent: a second one would make some programs (aria2c) abandon their
    /// orderly shutdown.
    terminated: bool,
}

impl Proc {
    /// Starts `command`; hands back its stdout when the command was set up to pipe it.
    pub fn spawn(command: &mut Command, label: &str) -> io::Result<(Proc, Option<ChildStdout>)> {
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {label}: {e}")))?;
        let stdout = child.stdout.take();
        let pid = i32::try_from(child.id()).expect("pids fit in i32");
        // Dropping a std Child neither waits for nor kills it: from here on it is ours to reap.
        drop(child);
        Ok((
            Proc {
                label: label.to_string(),
                pid,
                exit: None,
                terminated: false,
            },
            stdout,
        ))
    }

    /// The exit, if the process has ended (reaps it without blocking).
    pub fn poll(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = reap(self.pid, false);
        }
        self.exit
    }

    pub fn running(&mut self) -> bool {
        self.poll().is_none()
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.poll() {
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` if the process still runs; SIGTERM at most once.
    pub fn signal(&mut self, signal: i32) {
        if signal == libc::SIGTERM {
            if self.terminated {
                return;
            }
            self.terminated = true;
        }
        if self.running() {
            // SAFETY: kill(2) takes no pointers; the pid is our own unreaped child (positive,
            // never reused before we reap it).
            unsafe {
                libc::kill(self.pid, signal);
            }
        }
    }

    /// Asks the process to stop (SIGTERM, unless already sent), and kills it after `grace`.
    /// Returns its exit.
    pub fn stop(&mut self, grace: Duration) -> Exit {
        if let Some(exit) = self.poll() {
            return exit;
        }
        self.signal(libc::SIGTERM);
        if let Some(exit) = self.wait_for(grace) {
            return exit;
        }
        self.signal(libc::SIGKILL);
        self.exit = reap(self.pid, true);
        self.exit
            .expect("a blocking wait4 on our own child returns")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.poll().is_none() {
            self.signal(libc::SIGKILL);
            let _ = reap(self.pid, true);
        }
    }
}

/// `wait4` on one child. `None` while it runs (or, blocking, if it is somehow not ours).
fn reap(pid: i32, block: bool) -> Option<Exit> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: both pointers are to live locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r == pid {
            break;
        }
        if r == 0 {
            return None;
        }
        if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // ECHILD: already reaped elsewhere; report it as ended with nothing known.
        return Some(Exit {
            at: Instant::now(),
            code: None,
            signal: None,
            max_rss_kib: 0,
            cpu_seconds: 0.0,
        });
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(Exit {
        at: Instant::now(),
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        max_rss_kib: usage.ru_maxrss as u64,
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    })
}

/// Whether `program` is on the PATH (or is an existing path).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
