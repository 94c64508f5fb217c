//! The config file through the real binary: where it is found, what it sets, what beats it,
//! and how a bad one is reported.
//!
//! `dfpull inspect --json` is the probe: it prints the block size it used, so a test can tell
//! which of file, variable and flag decided `--block-size`. Every run starts from an empty
//! environment with `HOME` in a temporary directory, so neither the caller's `DFPULL_*`
//! variables nor their own config file get in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Block sizes that `auto` never picks for a small archive (it picks 1 MiB), one per source.
const FROM_FILE: u64 = 128 << 10;
const FROM_ENV: u64 = 256 << 10;
const FROM_FLAG: u64 = 2 << 20;

struct Sandbox {
    dir: tempfile::TempDir,
    archive: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("app.tar");
        dfpull::image::synth::demo_archive(&archive, 256 << 10, "dfpull-config-test:1").unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Sandbox { dir, archive }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Writes `text` to `rel` (under the sandbox) and returns its path.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `dfpull ARGS` with nothing in its environment but PATH, HOME and `env`.
    fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfpull"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn inspect(&self, extra: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut args = vec!["inspect", self.archive.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args, env)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The block size `dfpull inspect --json` reports.
fn block_size(out: &Output) -> u64 {
    assert!(out.status.success(), "{}", stderr(out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    doc["block_size"].as_u64().expect("block_size")
}

fn config(block_size: u64) -> String {
    format!("inspect:\n  block_size: {}KiB\n", block_size >> 10)
}

#[test]
fn file_then_variable_then_flag_decide_an_option() {
    let s = Sandbox::new();
    let file = s.write("home/.config/dfpull/config.yaml", &config(FROM_FILE));
    let env_size = Path::new("256KiB");
    assert_eq!(FROM_ENV, 256 << 10);

    let none = s.inspect(&["--json", "--config", "/dev/null"], &[]);
    assert_eq!(block_size(&none), 512 << 10, "auto, with no file");
    assert!(![FROM_FILE, FROM_ENV, FROM_FLAG].contains(&(512 << 10)));

    let from_file = s.inspect(&["--json"], &[]);
    assert_eq!(block_size(&from_file), FROM_FILE, "{}", file.display());

    let from_env = s.inspect(&["--json"], &[("DFPULL_BLOCK_SIZE", env_size)]);
    assert_eq!(block_size(&from_env), FROM_ENV);

    let flag = format!("{}KiB", FROM_FLAG >> 10);
    let from_flag = s.inspect(
        &["--json", "--block-size", &flag],
        &[("DFPULL_BLOCK_SIZE", env_size)],
    );
    assert_eq!(block_size(&from_flag), FROM_FLAG);
}

#[test]
fn xdg_config_home_beats_home_and_config_flag_beats_both() {
    let s = Sandbox::new();
    s.write("home/.config/dfpull/config.yaml", &config(FROM_ENV));
    let xdg = s.dir.path().join("xdg");
    s.write("xdg/dfpull/config.yaml", &config(FROM_FILE));
    let named = s.write("named.yaml", &config(FROM_FLAG));

    let home = s.inspect(&["--json"], &[]);
    assert_eq!(
        block_size(&home),
        FROM_ENV,
        "~/.config when XDG_CONFIG_HOME is unset"
    );

    let with_xdg = s.inspect(&["--json"], &[("XDG_CONFIG_HOME", &xdg)]);
    assert_eq!(block_size(&with_xdg), FROM_FILE);

    let flagged = s.inspect(
        &["--json", "--config", named.to_str().unwrap()],
        &[("XDG_CONFIG_HOME", &xdg)],
    );
    assert_eq!(block_size(&flagged), FROM_FLAG);

    // `--config` is global: after the subcommand too, and as DFPULL_CONFIG.
    let after = s.run(
        &[
            "inspect",
            "--config",
            named.to_str().unwrap(),
            s.archive.to_str().unwrap(),
            "--json",
        ],
        &[("XDG_CONFIG_HOME", &xdg)],
    );
    assert_eq!(block_size(&after), FROM_FLAG);
    let by_env = s.inspect(
        &["--json"],
        &[("XDG_CONFIG_HOME", &xdg), ("DFPULL_CONFIG", &named)],
    );
    assert_eq!(block_size(&by_env), FROM_FLAG);
}

#[test]
fn top_level_keys_set_global_options_and_sections_only_their_command() {
    let s = Sandbox::new();
    let file = s.write(
        "c.yaml",
        "json: true\npeer:\n  out: /srv/images\n  namespace: k8s.io\ninspect:\n  json: false\n",
    );
    let c = file.to_str().unwrap();

    // `json: true` at the top makes every command print JSON...
    let top = s.write("top.yaml", "json: true\n");
    let out = s.inspect(&["--config", top.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON from json: true");
    // ...but a section may say otherwise for its own command.
    let out = s.run(
        &["--config", c, "inspect", s.archive.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).is_err(),
        "inspect printed JSON although its section says json: false"
    );

    // clap shows the value a variable has in --help: the file's values, for peer only.
    let help = s.run(&["--config", c, "peer", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    for shown in [
        "DFPULL_OUT=/srv/images",
        "DFPULL_NAMESPACE=k8s.io",
        "DFPULL_JSON=true",
    ] {
        assert!(help.contains(shown), "peer --help lacks {shown}:\n{help}");
    }
    let help = s.run(&["--config", c, "seed", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        !help.contains("/srv/images"),
        "peer's out leaked into seed:\n{help}"
    );
    assert!(help.contains("DFPULL_JSON=true"));
}

#[test]
fn an_unknown_key_is_a_usage_error_naming_the_key_and_the_file() {
    let s = Sandbox::new();
    let file = s.write(
        "home/.config/dfpull/config.yaml",
        "peer:\n  out: /x\n  outt: /y\n",
    );
    let out = s.inspect(&[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "dfpull: error: config file {}, line 3: unknown key `outt` in `peer`",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn a_malformed_file_is_reported_with_its_line() {
    let s = Sandbox::new();
    let file = s.write("bad.yaml", "inspect:\n  block_size: [1MiB\n");
    let out = s.inspect(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "dfpull: error: config file {}, line ",
            file.display()
        )),
        "{err}"
    );

    // A value the option refuses is caught with the file's name, not as a bare flag error.
    let file = s.write("value.yaml", "inspect:\n  block_size: 1000\n");
    let out = s.inspect(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("value.yaml, line 2: `inspect.block_size`: invalid value \"1000\""),
        "{err}"
    );

    let missing = s.dir.path().join("missing.yaml");
    let out = s.inspect(&["--config", missing.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_broken_file_does_not_stop_completions_or_help() {
    let s = Sandbox::new();
    s.write("home/.config/dfpull/config.yaml", "frob: [\n");
    let out = s.run(&["completions", "bash"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.is_empty());
    let out = s.run(&["--help"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&["--version"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}
