//! Loaders: hand a saved archive to the local engine (`docker load`, `podman load`, or
//! containerd's `ctr images import`).
//!
//! [`resolve`] turns `--load` into a [`Loader`] once per run (probing engines costs a process
//! each), and [`load`] runs the loader's CLI on one archive. Both block: async callers wrap them
//! in `spawn_blocking`. Every command runs under a named timeout, so a hung daemon turns into a
//! [`LoadError`] instead of a hung peer. What the loader prints on stdout (`Loaded image: x:1`
//! lines) is kept; what it prints on stderr becomes the error message, condensed to one line.
//!
//! Nothing is passed to podman beyond `load -q -i PATH`: it loads as root with its default
//! storage (native overlay) in this project's containers and on ordinary hosts, and a user who
//! needs another storage driver sets it in `storage.conf` as for any podman command.
//!
//! containerd keeps images per namespace, and each client sees only its own: Kubernetes (the
//! CRI plugin) uses `k8s.io`, nerdctl and plain `ctr` use `default`, Docker's own containerd
//! uses `moby`. So [`Loader::Containerd`] carries the namespace (`--namespace`, default
//! `default`), and the import is `ctr -n NAMESPACE images import --digests
//! --skip-digest-for-named PATH`: `--digests` keeps untagged images (under an
//! `import-DATE@sha256:...` name) instead of leaving them to the garbage collector, and
//! `--skip-digest-for-named` keeps it from adding such a name to tagged ones. `ctr` finds the
//! daemon at `/run/containerd/containerd.sock` unless `CONTAINERD_ADDRESS` says otherwise.
//!
//! `--load auto` tries docker, then podman, then containerd, and loads with the first that
//! answers: a host with Docker loads into Docker even though Docker runs on a containerd. A
//! Kubernetes node without docker or podman gets containerd in the `--namespace` given; for the
//! kubelet to see the images that has to be `k8s.io`, so such nodes should say so (or say
//! `--load containerd --namespace k8s.io` outright).

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::LoadMode;
use crate::exit::{Exit, HasExit};

/// How long an engine has to answer `docker info` / `podman info` / `ctr version` before
/// `--load auto` moves on.
pub const ENGINE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one `docker load` / `podman load` / `ctr images import` may take. Extraction is slow and serial (about
/// 40 s for 1.5 GB on Docker), so this only catches a loader that hangs, not a slow one.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The longest error message kept from a loader's stderr.
const MAX_MESSAGE_CHARS: usize = 400;

/// Where `ctr` finds containerd when `CONTAINERD_ADDRESS` is not set.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// An image loader that a saved archive can be handed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loader {
    Docker,
    Podman,
    /// containerd, through `ctr`, into one namespace.
    Containerd(Namespace),
}

impl Loader {
    /// The loader's name: `docker`, `podman` or `containerd` (also in JSON output).
    pub fn name(self) -> &'static str {
        match self {
            Loader::Docker => "docker",
            Loader::Podman => "podman",
            Loader::Containerd(_) => "containerd",
        }
    }

    /// The command it runs.
    pub fn program(self) -> &'static str {
        match self {
            Loader::Docker | Loader::Podman => self.name(),
            Loader::Containerd(_) => "ctr",
        }
    }

    fn probe_command(self) -> Command {
        let mut cmd = Command::new(self.program());
        match self {
            Loader::Docker => cmd.args(["info", "--format", "{{.ServerVersion}}"]),
            Loader::Podman => cmd.args(["info", "--format", "{{.Version.Version}}"]),
            // `ctr version` prints its own version, then asks the daemon for its own, and
            // fails when it cannot reach it.
            Loader::Containerd(_) => cmd.arg("version"),
        };
        cmd
    }

    fn load_command(self, archive: &Path) -> Command {
        let mut cmd = Command::new(self.program());
        match self {
            // -q keeps stderr free of progress output, so on failure it holds only the error.
            Loader::Docker | Loader::Podman => cmd.args(["load", "-q", "-i"]),
            Loader::Containerd(ns) => cmd.args([
                "--namespace",
                ns.as_str(),
                "images",
                "import",
                "--digests",
                "--skip-digest-for-named",
            ]),
        };
        cmd.arg(archive);
        cmd
    }

    /// The engine's version from what its probe printed (`ctr version` prints client and
    /// server; the server's is the one that answered).
    fn probed_version(self, stdout: &str) -> String {
        match self {
            Loader::Containerd(_) => stdout
                .split_once("Server:")
                .and_then(|(_, server)| {
                    server
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("Version:"))
                })
                .map_or_else(|| condense(stdout), |v| v.trim().to_string()),
            _ => stdout.trim().to_string(),
        }
    }
}

impl fmt::Display for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loader::Containerd(ns) => write!(f, "containerd (namespace {ns})"),
            _ => f.write_str(self.name()),
        }
    }
}

/// A containerd namespace, checked as containerd checks one: runs of ASCII letters and digits
/// joined by single `.`, `_` or `-`, at most 76 characters. Stored inline so a [`Loader`] stays
/// `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Namespace {
    len: u8,
    bytes: [u8; Namespace::MAX_LEN],
}

impl Namespace {
    /// containerd's limit on identifiers.
    pub const MAX_LEN: usize = 76;
    /// The namespace of `ctr` and nerdctl when none is named.
    pub const DEFAULT: &'static str = "default";
    /// The namespace the Kubernetes CRI plugin keeps its images in.
    pub const KUBERNETES: &'static str = "k8s.io";

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `from_str`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace::DEFAULT.parse().expect("a valid namespace")
    }
}

impl std::str::FromStr for Namespace {
    type Err = String;
    fn from_str(s: &str) -> Result<Namespace, String> {
        let valid = !s.is_empty()
            && s.len() <= Namespace::MAX_LEN
            && s.split(['.', '_', '-'])
                .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !valid {
            return Err(format!(
                "{s:?} is not a containerd namespace (letters and digits, joined by single \
                 `.`, `_` or `-`, at most {} characters; e.g. `default`, `k8s.io`)",
                Namespace::MAX_LEN
            ));
        }
        let mut bytes = [0; Namespace::MAX_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Namespace {
            len: s.len() as u8,
            bytes,
        })
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What happened to one saved archive.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadOutcome {
    /// The loader took it. `images` is what it reported: tags (`x:1`, podman's
    /// `localhost/x:1`, containerd's `docker.io/library/x:1`) or, for untagged images, IDs
    /// (`sha256:...`; containerd: `import-DATE@sha256:...`).
    Loaded {
        loader: Loader,
        images: Vec<String>,
        seconds: f64,
    },
    /// Not loaded, on purpose (`--load none`, or no engine found by `--load auto`).
    Skipped { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{} is not installed (no `{}` command on PATH)", .loader.name(), .loader.program())]
    NotInstalled { loader: Loader },
    #[error("{loader} load failed for {path}: {message}")]
    Failed {
        loader: Loader,
        path: PathBuf,
        message: String,
    },
    #[error("{loader} load of {path} did not finish within {}", humantime::format_duration(*.after))]
    TimedOut {
        loader: Loader,
        path: PathBuf,
        after: Duration,
    },
}

impl HasExit for LoadError {
    fn exit(&self) -> Exit {
        Exit::Load
    }
}

/// Picks the loader for `--load`, with containerd in its default namespace: [`resolve_in`]
/// names the namespace.
pub fn resolve(mode: LoadMode) -> Result<Option<Loader>, LoadError> {
    resolve_in(mode, Namespace::default())
}

/// Picks the loader for `--load`, containerd loading into `namespace`. `Ok(None)` means "do
/// not load": `--load none`, or `--load auto` with no engine answering (the caller warns and
/// reports [`LoadOutcome::Skipped`]). An explicit loader is an error only when its command is
/// missing; a daemon that is down shows up as the loader's own error when loading.
pub fn resolve_in(mode: LoadMode, namespace: Namespace) -> Result<Option<Loader>, LoadError> {
    match mode {
        LoadMode::None => Ok(None),
        LoadMode::Docker => require(Loader::Docker).map(Some),
        LoadMode::Podman => require(Loader::Podman).map(Some),
        LoadMode::Containerd => require(Loader::Containerd(namespace)).map(Some),
        LoadMode::Auto => {
            for loader in [
                Loader::Docker,
                Loader::Podman,
                Loader::Containerd(namespace),
            ] {
                match probe_engine(loader) {
                    Ok(version) => {
                        tracing::debug!("{loader} {version} answers; loading with it");
                        return Ok(Some(loader));
                    }
                    Err(why) => tracing::debug!("not loading with {loader}: {why}"),
                }
            }
            Ok(None)
        }
    }
}

/// The reason a caller gives in [`LoadOutcome::Skipped`] when [`resolve`] returned `None`.
pub fn skip_reason(mode: LoadMode) -> &'static str {
    match mode {
        LoadMode::None => "--load none",
        _ => "no docker, podman or containerd engine answered",
    }
}

/// Asks `loader`'s engine whether it is up: `Ok(its version)` or why not.
fn probe_engine(loader: Loader) -> Result<String, String> {
    if let Loader::Containerd(_) = loader {
        // `ctr` keeps dialing a socket that is not there for 10 s: look before asking.
        let address = std::env::var("CONTAINERD_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| CONTAINERD_SOCKET.to_string());
        let socket = Path::new(address.strip_prefix("unix://").unwrap_or(&address));
        if socket.is_absolute() && !socket.exists() {
            return Err(format!("no containerd socket at {}", socket.display()));
        }
    }
    probe(loader.probe_command(), ENGINE_PROBE_TIMEOUT).map(|out| loader.probed_version(&out))
}

/// Runs the loader on `archive` (`docker load -q -i`, `podman load -q -i`, `ctr -n NS images
/// import`) and reports what it loaded.
pub fn load(loader: Loader, archive: &Path) -> Result<LoadOutcome, LoadError> {
    let started = Instant::now();
    let out = run(&mut loader.load_command(archive), LOAD_TIMEOUT).map_err(|e| match e {
        RunError::NotFound => LoadError::NotInstalled { loader },
        RunError::Spawn(e) => LoadError::Failed {
            loader,
            path: archive.to_path_buf(),
            message: format!("could not run {loader}: {e}"),
        },
        RunError::TimedOut => LoadError::TimedOut {
            loader,
            path: archive.to_path_buf(),
            after: LOAD_TIMEOUT,
        },
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(LoadError::Failed {
            loader,
            path: archive.to_path_buf(),
            message: failure_message(&out),
        });
    }
    let images = match loader {
        Loader::Containerd(_) => imported_images(&out.stdout),
        _ => loaded_images(&out.stdout),
    };
    tracing::debug!(
        "{loader} loaded {} in {seconds:.1}s: {images:?}",
        archive.display()
    );
    Ok(LoadOutcome::Loaded {
        loader,
        images,
        seconds,
    })
}

fn require(loader: Loader) -> Result<Loader, LoadError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    match find_program(loader.program(), &path) {
        Some(_) => Ok(loader),
        None => Err(LoadError::NotInstalled { loader }),
    }
}

/// The first executable file called `name` in a `PATH`-style list of directories.
fn find_program(name: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs an engine probe: `Ok(what it printed)` when it exits 0 in time, else why not.
fn probe(mut cmd: Command, timeout: Duration) -> Result<String, String> {
    match run(&mut cmd, timeout) {
        Ok(out) if out.status.success() => Ok(out.stdout),
        Ok(out) => Err(failure_message(&out)),
        Err(RunError::NotFound) => Err("command not found".into()),
        Err(RunError::Spawn(e)) => Err(e.to_string()),
        Err(RunError::TimedOut) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// The names or IDs in a loader's stdout. Docker prints `Loaded image: x:1` or `Loaded image
/// ID: sha256:...` per image; podman prints `Loaded image: localhost/x:1`, older podman
/// `Loaded image(s): a,b`.
fn loaded_images(stdout: &str) -> Vec<String> {
    let mut images = Vec::new();
    for line in stdout.lines().map(str::trim) {
        if let Some(list) = line.strip_prefix("Loaded image(s):") {
            images.extend(list.split(',').map(|s| s.trim().to_string()));
        } else if let Some(id) = line.strip_prefix("Loaded image ID:") {
            images.push(id.trim().to_string());
        } else if let Some(name) = line.strip_prefix("Loaded image:") {
            images.push(name.trim().to_string());
        }
    }
    images.retain(|s| !s.is_empty());
    images
}

/// The images `ctr images import` unpacked: it prints `unpacking NAME (sha256:...)...done` for
/// each (containerd 1.x; 2.x prints transfer progress instead, and nothing is reported).
fn imported_images(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("unpacking "))
        .filter_map(|rest| rest.split_once(" (").map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// One line saying why a command failed, from its stderr (or stdout, or its exit status).
fn failure_message(out: &Output) -> String {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let message = condense(text);
    if message.is_empty() {
        format!("exited with {}", out.status)
    } else {
        message
    }
}

/// Joins a multi-line message into one line: a line ending in `:` runs on into the next
/// (podman's "... supported image formats:" followed by ` * oci: ...` bullets), other lines
/// are separated by `; `. A leading `Error: ` is dropped and the result is capped in length.
fn condense(text: &str) -> String {
    let mut message = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = line.strip_prefix("Error: ").unwrap_or(line);
        let line = line.strip_prefix("ctr: ").unwrap_or(line);
        let line = line.strip_prefix("* ").unwrap_or(line);
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(line);
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        message = message.chars().take(MAX_MESSAGE_CHARS - 3).collect();
        message.push_str("...");
    }
    message
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

#[derive(Debug)]
enum RunError {
    NotFound,
    Spawn(std::io::Error),
    TimedOut,
}

/// Runs a command with its output captured, killing it if it outlives `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, RunError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RunError::NotFound,
            _ => RunError::Spawn(e),
        })?;
    // Both pipes are drained on their own threads so a chatty child never blocks on a full pipe
    // while we wait for it.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match wait_until(&mut child, Instant::now() + timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            // The reader threads are left to finish on their own: a grandchild may still hold
            // the pipes open.
            return Err(RunError::TimedOut);
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for the child until `deadline`; `None` if it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // The child cannot be waited for; treat it as hung so it gets killed.
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_images_reads_docker_and_podman_output() {
        let cases: [(&str, &[&str]); 5] = [
            ("Loaded image: app:1\n", &["app:1"]),
            (
                "Loaded image: app:1\nLoaded image: app:latest\n",
                &["app:1", "app:latest"],
            ),
            ("Loaded image ID: sha256:abcd\n", &["sha256:abcd"]),
            (
                "Loaded image(s): localhost/a:1,localhost/b:2\n",
                &["localhost/a:1", "localhost/b:2"],
            ),
            ("Getting image source signatures\n", &[]),
        ];
        for (stdout, want) in cases {
            assert_eq!(loaded_images(stdout), want, "{stdout:?}");
        }
    }

    #[test]
    fn condense_makes_one_line_of_a_loader_error() {
        let podman = "Error: payload does not match any of the supported image formats:\n \
                      * oci: open x/index.json: not a directory\n \
                      * docker-archive: loading tar component manifest.json: unexpected EOF\n";
        assert_eq!(
            condense(podman),
            "payload does not match any of the supported image formats: oci: open \
             x/index.json: not a directory; docker-archive: loading tar component \
             manifest.json: unexpected EOF"
        );
        assert_eq!(
            condense("Error processing tar file(exit status 1): unexpected EOF\n"),
            "Error processing tar file(exit status 1): unexpected EOF"
        );
        let long = "x".repeat(1000);
        assert_eq!(condense(&long).chars().count(), MAX_MESSAGE_CHARS);
        assert!(condense(&long).ends_with("..."));
    }

    #[test]
    fn run_captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(failure_message(&out), "err");
    }

    #[test]
    fn run_kills_a_command_that_outlives_its_timeout() {
        let started = Instant::now();
        let err = run(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .err()
            .expect("sleep 30 cannot finish in 200 ms");
        assert!(matches!(err, RunError::TimedOut), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_command_is_not_found() {
        let err = run(
            &mut Command::new("dfpull-no-such-loader"),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(matches!(err, RunError::NotFound), "{err:?}");
    }

    #[test]
    fn find_program_needs_an_executable_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("docker");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(find_program("docker", &path), None, "not executable");
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program("docker", &path), Some(prog));
        assert_eq!(find_program("podman", &path), None);
        assert_eq!(find_program("docker", OsStr::new("")), None);
    }

    #[test]
    fn probe_reports_an_engine_that_does_not_answer() {
        if find_program("docker", &std::env::var_os("PATH").unwrap_or_default()).is_none() {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED probe_reports_an_engine_that_does_not_answer: no docker CLI"
            );
            return;
        }
        let mut cmd = Loader::Docker.probe_command();
        cmd.env("DOCKER_HOST", "unix:///nonexistent/dfpull-test.sock");
        let why = probe(cmd, ENGINE_PROBE_TIMEOUT).unwrap_err();
        assert!(why.contains("Cannot connect"), "{why}");
    }

    #[test]
    fn explicit_loader_errors_name_the_loader() {
        let e = LoadError::NotInstalled {
            loader: Loader::Podman,
        };
        assert_eq!(
            e.to_string(),
            "podman is not installed (no `podman` command on PATH)"
        );
        assert_eq!(e.exit(), Exit::Load);
        assert_eq!(resolve(LoadMode::None).unwrap(), None);
    }
}
