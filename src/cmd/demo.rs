//! `dfpull demo`: a real swarm on this machine for a first look. It generates an image, starts
//! a seeder and `--peers` peers as separate processes of this same binary (real mDNS
//! discovery, real HTTP, every block verified), shows their progress, checks every copy and
//! prints a summary: time, throughput, what the origin uploaded, and the time against one copy
//! over the same loopback.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::ValueEnum as _;

use crate::cli::{DemoArgs, GlobalArgs, LoadMode};
use crate::exit::{Exit, coded};
use crate::ui::Reporter;
use crate::units::ByteSize;

/// The tag the generated image carries.
pub const DEMO_TAG: &str = "dfpull-demo:latest";
/// How long the whole demo may take before it is called failed.
pub const DEMO_TIMEOUT: Duration = Duration::from_secs(600);
/// How long to wait for the seeder to say it is serving.
pub const SEEDER_START_TIMEOUT: Duration = Duration::from_secs(120);

/// A line of JSON from one child, or its end.
enum Msg {
    Line(usize, serde_json::Value),
    Exit(usize),
}

/// Kills the children still running when dropped (an error or Ctrl-C half way).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(args: DemoArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let reporter = Reporter::new(global.json);
    let temp;
    let dir: PathBuf = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempdir()?;
            temp.0.clone()
        }
    };
    let result = demo(&args, &dir, &reporter);
    reporter.finish();
    result
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<TempDir> {
    let base = std::env::temp_dir().join(format!("dfpull-demo-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    Ok(TempDir(base))
}

fn spawn(
    exe: &Path,
    args: &[String],
    id: usize,
    tx: &mpsc::Sender<Msg>,
    log: &Path,
) -> anyhow::Result<Child> {
    let stderr =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = Command::new(exe)
        // The children are this demo's own: the user's config file must not steer them.
        .args(["--config", "/dev/null", "--json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .env_remove("DFPULL_JSON")
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(Msg::Line(id, v));
            }
        }
        let _ = tx.send(Msg::Exit(id));
    });
    Ok(child)
}

fn demo(args: &DemoArgs, dir: &Path, reporter: &Reporter) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let size = args.size << 20;
    let archive = dir.join("dfpull-demo.tar");
    reporter.println(&format!(
        "dfpull demo: generating a {} image in {}",
        ByteSize(size),
        dir.display()
    ));
    let digest = crate::image::synth::demo_archive(&archive, size, DEMO_TAG)
        .with_context(|| format!("cannot write {}", archive.display()))?;

    let (tx, rx) = mpsc::channel();
    let mut children = Children(Vec::new());
    let n = args.peers as usize;
    // Child 0 is the seeder; peers are 1..=n.
    let seed_args: Vec<String> = [
        "seed",
        archive.to_str().unwrap(),
        "--exit-after",
        &n.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    children
        .0
        .push(spawn(&exe, &seed_args, 0, &tx, &dir.join("seeder.log"))?);

    // Wait for the seeder to serve before starting the clock.
    let deadline = Instant::now() + SEEDER_START_TIMEOUT;
    let swarm = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Msg::Line(0, v)) if v["event"] == "serving" => {
                break v["swarm"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches("sha256:")
                    .to_string();
            }
            Ok(Msg::Exit(0)) | Err(_) => {
                return Err(anyhow::anyhow!(
                    "the seeder did not start; see {}",
                    dir.join("seeder.log").display()
                ));
            }
            Ok(_) => {}
        }
    };

    let started = Instant::now();
    for i in 1..=n {
        let out = dir.join(format!("peer-{i}"));
        // Only the last peer loads the image: loading N copies of one image into one engine
        // would only measure the engine.
        let load = if i == n { args.load } else { LoadMode::None };
        let load = load
            .to_possible_value()
            .expect("value")
            .get_name()
            .to_string();
        let peer_args: Vec<String> = [
            "peer",
            "--out",
            out.to_str().unwrap(),
            "--load",
            &load,
            "--seed-time",
            "60s",
            "--discover-timeout",
            "30s",
            // Other swarms may be on this LAN (another demo, a test): join ours only.
            "--swarm",
            &swarm,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        children.0.push(spawn(
            &exe,
            &peer_args,
            i,
            &tx,
            &dir.join(format!("peer-{i}.log")),
        )?);
        reporter.archive_started(&format!("peer {i}"), size);
    }

    let mut saved_at: Vec<Option<f64>> = vec![None; n + 1];
    let mut digests: Vec<Option<String>> = vec![None; n + 1];
    let mut loaded: Option<serde_json::Value> = None;
    let mut origin_bytes: Option<u64> = None;
    let mut running = n + 1;
    let deadline = Instant::now() + DEMO_TIMEOUT;
    while running > 0 {
        let msg = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| {
                coded(
                    Exit::Transfer,
                    format!(
                        "the demo did not finish within {}",
                        humantime::format_duration(DEMO_TIMEOUT)
                    ),
                )
            })?;
        match msg {
            Msg::Exit(i) => {
                running -= 1;
                // A peer that failed stops the demo at once: the seeder would otherwise wait
                // for it forever (--exit-after counts finished peers).
                if i > 0 && children.0[i].wait().is_ok_and(|s| !s.success()) {
                    return Err(coded(
                        Exit::Transfer,
                        format!(
                            "peer {i} failed; see {}",
                            dir.join(format!("peer-{i}.log")).display()
                        ),
                    ));
                }
            }
            Msg::Line(0, v) if v["event"] == "seeded" => {
                origin_bytes = v["bytes_uploaded"].as_u64()
            }
            Msg::Line(i, v) if i > 0 => match v["event"].as_str() {
                Some("progress") => {
                    let done = v["done_bytes"].as_u64().unwrap_or(0);
                    reporter.archive_progress(
                        &format!("peer {i}"),
                        done,
                        v["peers"].as_u64().unwrap_or(0) as u32,
                    );
                }
                Some("saved") => {
                    saved_at[i] = Some(started.elapsed().as_secs_f64());
                    digests[i] = v["digest"].as_str().map(str::to_string);
                    let path = PathBuf::from(v["path"].as_str().unwrap_or_default());
                    reporter.archive_saved(
                        &format!("peer {i}"),
                        &path,
                        v["digest"].as_str().unwrap_or(""),
                        size,
                        started.elapsed().as_secs_f64(),
                    );
                }
                Some("loaded") => loaded = Some(v),
                _ => {}
            },
            Msg::Line(..) => {}
        }
    }
    let mut failed = Vec::new();
    for (i, c) in children.0.iter_mut().enumerate() {
        let status = c.wait().context("wait for a child")?;
        if !status.success() {
            failed.push(if i == 0 {
                "the seeder".to_string()
            } else {
                format!("peer {i}")
            });
        }
    }
    let want = digest.to_string();
    for (i, d) in digests.iter().enumerate().skip(1) {
        match d {
            Some(d) if *d == want => {}
            Some(d) => failed.push(format!("peer {i} (saved {d}, want {want})")),
            None => failed.push(format!("peer {i} (saved nothing)")),
        }
    }
    failed.sort();
    failed.dedup();
    if !failed.is_empty() {
        return Err(coded(
            Exit::Transfer,
            format!(
                "the demo failed for {}; logs are in {}",
                failed.join(", "),
                dir.display()
            ),
        ));
    }

    let all = saved_at.iter().flatten().cloned().fold(0.0, f64::max);
    let image = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(size);
    let origin = origin_bytes.unwrap_or(0);
    let summary = serde_json::json!({
        "event": "demo",
        "peers": n,
        "bytes": image,
        "digest": want,
        "seconds": all,
        "throughput_bytes_per_second": (n as f64 * image as f64) / all.max(1e-9),
        "origin_uploaded_bytes": origin,
        "origin_copies": origin as f64 / image as f64,
        "loaded": loaded,
    });
    reporter.event(summary);
    reporter.println(&format!(
        "dfpull demo: {n} peers hold {} ({}) after {all:.2}s; {} per second in all; the origin uploaded {:.2} copies",
        ByteSize(image),
        &want[..19],
        ByteSize(((n as f64 * image as f64) / all.max(1e-9)) as u64),
        origin as f64 / image as f64,
    ));
    if let Some(l) = loaded {
        reporter.println(&format!("dfpull demo: loaded: {l}"));
    }
    Ok(())
}
