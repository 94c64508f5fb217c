//! Black-box tests of the command-line contract: generated completions and man pages match
//! what is committed, and usage errors exit with the documented code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dfpull(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dfpull"))
        .args(args)
        .env_remove("DFPULL_JSON")
        .output()
        .expect("run dfpull")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Set DFPULL_BLESS=1 to rewrite the committed files instead of comparing.
fn check_or_bless(path: &Path, generated: &[u8]) {
    if std::env::var_os("DFPULL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, generated).unwrap();
        return;
    }
    let committed = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `DFPULL_BLESS=1 cargo test --test cli`)",
            path.display()
        )
    });
    assert!(
        committed == generated,
        "{} is out of date: run `DFPULL_BLESS=1 cargo test --test cli` and commit the result",
        path.display()
    );
}

#[test]
fn completions_are_current() {
    for (shell, file) in [
        ("bash", "dfpull.bash"),
        ("zsh", "_dfpull"),
        ("fish", "dfpull.fish"),
        ("elvish", "dfpull.elv"),
        ("powershell", "_dfpull.ps1"),
    ] {
        let out = dfpull(&["completions", shell]);
        assert!(
            out.status.success(),
            "completions {shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("inspect"),
            "{shell} completions lack a subcommand"
        );
        check_or_bless(&root().join("completions").join(file), &out.stdout);
    }
}

#[test]
fn man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let out = dfpull(&["man", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for sub in [
        "seed",
        "peer",
        "coordinator",
        "status",
        "inspect",
        "demo",
        "completions",
    ] {
        assert!(
            names.contains(&format!("dfpull-{sub}.1")),
            "no man page for {sub}: {names:?}"
        );
    }
    assert!(names.contains(&"dfpull.1".to_string()));
    for name in &names {
        let generated = std::fs::read(dir.path().join(name)).unwrap();
        check_or_bless(&root().join("man").join(name), &generated);
    }
    if std::env::var_os("DFPULL_BLESS").is_none() {
        let committed = std::fs::read_dir(root().join("man")).unwrap().count();
        assert_eq!(
            committed,
            names.len(),
            "man/ holds pages that are no longer generated"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["seed"][..],
        &["peer", "--seed-time", "soon"][..],
        &["inspect", "x.tar", "--block-size", "1000"][..],
        &["demo", "--peers", "0"][..],
    ] {
        let out = dfpull(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "dfpull {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn version_and_help() {
    let out = dfpull(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dfpull "));
    let out = dfpull(&["peer", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--out",
        "--load",
        "--seed-time",
        "--coordinator",
        "DFPULL_OUT",
    ] {
        assert!(help.contains(needle), "peer --help lacks {needle}");
    }
}
