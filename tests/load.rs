//! The loaders against the real engines on this machine.
//!
//! Each test builds a tiny legacy docker-archive of its own with a unique tag, so tests can run
//! in parallel and leave nothing behind. An engine that is not there makes its tests print
//! `SKIPPED ...` and pass, unless `DFPULL_REQUIRE_DOCKER=1` / `DFPULL_REQUIRE_PODMAN=1` /
//! `DFPULL_REQUIRE_CONTAINERD=1` says the machine must have it, as CI does. containerd tests
//! import into a namespace of their own and remove it afterwards.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use dfpull::cli::LoadMode;
use dfpull::exit::{Exit, HasExit};
use dfpull::image::load::{self, LoadError, LoadOutcome, Loader};
use sha2::{Digest as _, Sha256};

/// A ustar archive of regular files, written the long way so the test needs no tar crate.
fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        assert!(name.len() < 100, "ustar names are short");
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(format!("{:011o}\0", 0).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // The checksum is taken with its own field read as eight spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(<[u8; 32]>::from(Sha256::digest(data)))
}

/// A legacy docker-archive holding one image, `tag`, of one layer with one file in it. The file
/// names the tag, so every test's image has its own ID.
fn image_archive(tag: &str) -> Vec<u8> {
    let layer = tar(&[("hello.txt", format!("hello from {tag}\n").as_bytes())]);
    let diff_id = sha256_hex(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
    })
    .to_string();
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let layer_name = format!("{diff_id}/layer.tar");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }])
    .to_string();
    tar(&[
        (&config_name, config.as_bytes()),
        (&layer_name, &layer),
        ("manifest.json", manifest.as_bytes()),
    ])
}

fn unique_tag(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("dfpull-test-{test}:{}-{nanos}", std::process::id())
}

fn write_archive(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("image.tar");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when `loader`'s engine answers. When it does not, says so loudly, or panics if the
/// environment requires it.
fn engine_or_skip(loader: Loader, test: &str) -> bool {
    if quiet(loader.name(), &["info"]) {
        return true;
    }
    let require = format!("DFPULL_REQUIRE_{}", loader.name().to_uppercase());
    if std::env::var(&require).is_ok_and(|v| v == "1") {
        panic!("{test}: `{loader} info` failed and {require}=1");
    }
    // Written to stderr directly: the test harness captures `eprintln!`, which would hide it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: `{loader} info` failed (set {require}=1 to make this a failure)"
    );
    false
}

/// Removes an image from an engine when the test ends, passed or not.
struct Remove(Loader, String);

impl Drop for Remove {
    fn drop(&mut self) {
        quiet(self.0.name(), &["rmi", "-f", &self.1]);
    }
}

fn loads_a_valid_archive(loader: Loader, test: &str, reported: &str) {
    let tag = unique_tag(test);
    let _cleanup = Remove(loader, tag.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = write_archive(dir.path(), &image_archive(&tag));
    assert!(
        !quiet(loader.name(), &["image", "inspect", &tag]),
        "{tag} exists before loading"
    );

    let outcome = load::load(loader, &path).unwrap();

    let LoadOutcome::Loaded {
        loader: used,
        images,
        seconds,
    } = outcome
    else {
        panic!("not loaded: {outcome:?}");
    };
    assert_eq!(used, loader);
    assert_eq!(images, [reported.replace("TAG", &tag)]);
    assert!(seconds > 0.0 && seconds < 60.0, "{seconds}");
    assert!(
        quiet(loader.name(), &["image", "inspect", &tag]),
        "`{loader} image inspect {tag}` does not find the loaded image"
    );
}

fn rejects_a_corrupt_archive(loader: Loader, test: &str) {
    let tag = unique_tag(test);
    let _cleanup = Remove(loader, tag.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = image_archive(&tag);
    bytes.truncate(1500);
    let path = write_archive(dir.path(), &bytes);

    let err = load::load(loader, &path).unwrap_err();

    let LoadError::Failed {
        loader: used,
        path: reported,
        message,
    } = &err
    else {
        panic!("not a load failure: {err:?}");
    };
    assert_eq!(*used, loader);
    assert_eq!(reported, &path);
    // Both engines blame the cut-off tar; the message is theirs, on one line.
    assert!(message.contains("unexpected EOF"), "{message}");
    assert!(!message.contains('\n'), "{message:?}");
    assert_eq!(err.exit(), Exit::Load);
    assert!(!quiet(loader.name(), &["image", "inspect", &tag]));
}

#[test]
fn docker_loads_a_valid_archive() {
    if engine_or_skip(Loader::Docker, "docker_loads_a_valid_archive") {
        loads_a_valid_archive(Loader::Docker, "docker-valid", "TAG");
    }
}

#[test]
fn docker_rejects_a_corrupt_archive_with_its_own_message() {
    if engine_or_skip(Loader::Docker, "docker_rejects_a_corrupt_archive") {
        rejects_a_corrupt_archive(Loader::Docker, "docker-corrupt");
    }
}

#[test]
fn auto_picks_docker_when_its_engine_answers() {
    if engine_or_skip(Loader::Docker, "auto_picks_docker_when_its_engine_answers") {
        assert_eq!(load::resolve(LoadMode::Auto).unwrap(), Some(Loader::Docker));
        assert_eq!(
            load::resolve(LoadMode::Docker).unwrap(),
            Some(Loader::Docker)
        );
    }
}

#[test]
fn podman_loads_a_valid_archive() {
    if engine_or_skip(Loader::Podman, "podman_loads_a_valid_archive") {
        // Podman names an image without a registry as one on `localhost`.
        loads_a_valid_archive(Loader::Podman, "podman-valid", "localhost/TAG");
    }
}

#[test]
fn podman_rejects_a_corrupt_archive_with_its_own_message() {
    if engine_or_skip(Loader::Podman, "podman_rejects_a_corrupt_archive") {
        rejects_a_corrupt_archive(Loader::Podman, "podman-corrupt");
    }
}

#[test]
fn explicit_podman_resolves_when_installed() {
    if engine_or_skip(Loader::Podman, "explicit_podman_resolves_when_installed") {
        assert_eq!(
            load::resolve(LoadMode::Podman).unwrap(),
            Some(Loader::Podman)
        );
    }
}

/// True when a containerd daemon answers `ctr version`; otherwise says so loudly, or panics
/// when `DFPULL_REQUIRE_CONTAINERD=1`.
fn containerd_or_skip(test: &str) -> bool {
    // `ctr` keeps dialing a socket that is not there for 10 s: look for it first.
    let socket = std::env::var_os("CONTAINERD_ADDRESS")
        .map_or_else(|| load::CONTAINERD_SOCKET.into(), PathBuf::from);
    if socket.exists() && quiet("ctr", &["version"]) {
        return true;
    }
    let require = "DFPULL_REQUIRE_CONTAINERD";
    if std::env::var(require).is_ok_and(|v| v == "1") {
        panic!("{test}: `ctr version` failed (is containerd running?) and {require}=1");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: `ctr version` failed (set {require}=1 to make this a failure)"
    );
    false
}

/// A containerd namespace no other test run uses.
fn unique_namespace(test: &str) -> load::Namespace {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("dfpull-test-{test}-{}-{nanos}", std::process::id())
        .parse()
        .unwrap()
}

/// The image names in a containerd namespace.
fn containerd_images(namespace: &str) -> Vec<String> {
    let out = Command::new("ctr")
        .args(["--namespace", namespace, "images", "ls", "-q"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Empties a test's own containerd namespace when the test ends, and removes it.
struct RemoveNamespace(String);

impl Drop for RemoveNamespace {
    fn drop(&mut self) {
        let ns = self.0.as_str();
        if let Ok(out) = Command::new("ctr")
            .args(["--namespace", ns, "images", "ls", "-q"])
            .output()
        {
            for image in String::from_utf8_lossy(&out.stdout).lines() {
                quiet("ctr", &["--namespace", ns, "images", "rm", "--sync", image]);
            }
        }
        // A failed import can leave blobs behind, which keep the namespace alive.
        if let Ok(out) = Command::new("ctr")
            .args(["--namespace", ns, "content", "ls", "-q"])
            .output()
        {
            for blob in String::from_utf8_lossy(&out.stdout).lines() {
                quiet("ctr", &["--namespace", ns, "content", "rm", blob]);
            }
        }
        quiet("ctr", &["namespaces", "rm", ns]);
    }
}

/// Removes one image from a shared containerd namespace when the test ends.
struct RemoveContainerdImage(&'static str, String);

impl Drop for RemoveContainerdImage {
    fn drop(&mut self) {
        quiet(
            "ctr",
            &["--namespace", self.0, "images", "rm", "--sync", &self.1],
        );
    }
}

#[test]
fn containerd_imports_a_valid_archive_into_its_namespace_only() {
    if !containerd_or_skip("containerd_imports_a_valid_archive_into_its_namespace_only") {
        return;
    }
    let ns = unique_namespace("valid");
    let _cleanup = RemoveNamespace(ns.to_string());
    let tag = unique_tag("containerd-valid");
    let dir = tempfile::tempdir().unwrap();
    let path = write_archive(dir.path(), &image_archive(&tag));
    let loader = Loader::Containerd(ns);

    let outcome = load::load(loader, &path).unwrap();

    let LoadOutcome::Loaded {
        loader: used,
        images,
        seconds,
    } = outcome
    else {
        panic!("not loaded: {outcome:?}");
    };
    assert_eq!(used, loader);
    // containerd names an image without a registry as one on docker.io.
    let name = format!("docker.io/library/{tag}");
    assert_eq!(images, std::slice::from_ref(&name));
    assert!(seconds > 0.0 && seconds < 60.0, "{seconds}");
    assert_eq!(containerd_images(ns.as_str()), std::slice::from_ref(&name));
    assert!(
        !containerd_images("default").contains(&name),
        "imported into `default` instead of {ns}"
    );
}

#[test]
fn containerd_rejects_a_corrupt_archive_with_its_own_message() {
    if !containerd_or_skip("containerd_rejects_a_corrupt_archive_with_its_own_message") {
        return;
    }
    let ns = unique_namespace("corrupt");
    let _cleanup = RemoveNamespace(ns.to_string());
    let tag = unique_tag("containerd-corrupt");
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = image_archive(&tag);
    bytes.truncate(1500);
    let path = write_archive(dir.path(), &bytes);

    let err = load::load(Loader::Containerd(ns), &path).unwrap_err();

    let LoadError::Failed {
        loader,
        path: reported,
        message,
    } = &err
    else {
        panic!("not a load failure: {err:?}");
    };
    assert_eq!(*loader, Loader::Containerd(ns));
    assert_eq!(reported, &path);
    assert!(message.contains("unexpected EOF"), "{message}");
    assert!(
        !message.contains('\n') && !message.starts_with("ctr: "),
        "{message:?}"
    );
    assert_eq!(err.exit(), Exit::Load);
    assert_eq!(containerd_images(ns.as_str()), Vec::<String>::new());
}

#[test]
fn explicit_containerd_resolves_with_its_namespace() {
    if !containerd_or_skip("explicit_containerd_resolves_with_its_namespace") {
        return;
    }
    let k8s: load::Namespace = load::Namespace::KUBERNETES.parse().unwrap();
    assert_eq!(
        load::resolve_in(LoadMode::Containerd, k8s).unwrap(),
        Some(Loader::Containerd(k8s))
    );
    assert_eq!(
        load::resolve(LoadMode::Containerd).unwrap(),
        Some(Loader::Containerd(load::Namespace::default()))
    );
    assert_eq!(
        Loader::Containerd(k8s).to_string(),
        "containerd (namespace k8s.io)"
    );
}

/// `dfpull peer --load auto` on a host where `ctr` is the only engine CLI on PATH (as on a
/// Kubernetes node): a real seeder on loopback, a real peer, the image lands in containerd.
#[test]
fn auto_loads_into_containerd_when_it_is_the_only_engine() {
    if !containerd_or_skip("auto_loads_into_containerd_when_it_is_the_only_engine") {
        return;
    }
    let ctr = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("ctr"))
        .find(|p| p.is_file())
        .expect("ctr answered, so it is on PATH");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(&ctr, bin.join("ctr")).unwrap();
    let tag = unique_tag("containerd-auto");
    let name = format!("docker.io/library/{tag}");
    let _cleanup = RemoveContainerdImage(load::Namespace::DEFAULT, name.clone());
    let archive = write_archive(dir.path(), &image_archive(&tag));

    let dfpull = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfpull"));
        cmd.args(args)
            .env_remove("DFPULL_JSON")
            .env_remove("DFPULL_LOAD")
            .env_remove("DFPULL_NAMESPACE")
            .env("DFPULL_CONFIG", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let mut seeder = dfpull(&[
        "--json",
        "seed",
        archive.to_str().unwrap(),
        "--no-mdns",
        "--listen",
        "127.0.0.1:0",
    ])
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = seeder.stdout.take().unwrap();
    let seeder = Kill(seeder);
    let port = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|v| v["event"] == "serving")
        .and_then(|v| v["port"].as_u64())
        .expect("the seeder's port");

    let out = dfpull(&[
        "--json",
        "peer",
        "--seed",
        &format!("127.0.0.1:{port}"),
        "--load",
        "auto",
        "--seed-time",
        "0s",
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ])
    .env("PATH", &bin)
    .output()
    .unwrap();
    drop(seeder);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let loaded: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "loaded")
        .unwrap_or_else(|| panic!("no `loaded` event; stderr:\n{stderr}"));
    assert_eq!(loaded["ok"], true, "{loaded}");
    assert_eq!(loaded["loader"], "containerd", "{loaded}");
    assert_eq!(loaded["images"], serde_json::json!([name]), "{loaded}");
    assert!(containerd_images("default").contains(&name));
}
