//! `cargo bench --bench swarm`: dfpull against the physical bound, a naive HTTP fan-out and
//! BitTorrent, on a lab of real hosts (network namespaces on one bridge, every link shaped).
//!
//! Each scenario moves the same generated image (random, incompressible layers) from one origin
//! (host 0) to N peers with each tool, in a fresh lab per run:
//! - **dfpull**: `dfpull seed` on the origin, `dfpull peer --load none` on every peer, found by
//!   mDNS (no address given). The binary is `target/release/dfpull`, brought up to date with
//!   `cargo build --release` before anything runs, so the optimised build is what is measured.
//! - **HTTP fan-out**: `python3 -m http.server` on the origin, every peer `curl`s the archive at
//!   once.
//! - **BitTorrent**: opentracker and a seeding aria2c on the origin, aria2c on every peer, 4 MiB
//!   pieces (mktorrent).
//!
//! and reports, against Kumar and Ross's bound T_min = max(F/u_s, F/d_min, N F/(u_s + sum u_i)):
//! the time until the last peer holds a copy whose sha256 matches the input, the ratio to the
//! bound, the origin's upload (its link's byte counter) over the image size, and the peak RSS
//! and CPU time of the peer processes.
//!
//! ```text
//! sudo -E cargo bench --bench swarm -- [--smoke] [--scenario n4,n8,...] [--peers N]
//!     [--size-mb MB] [--rate-mbit R] [--tools dfpull,http,bt] [--repeat K] [--out DIR] [--merge]
//! ```
//!
//! `--smoke` (N = 3, 16 MiB, all three tools) fails when any run does not finish or any copy
//! differs, and takes well under a minute once dfpull is built. `--list` shows the scenarios.
//! Needs root, iproute2, curl, python3, aria2, opentracker and mktorrent (the plot also wants
//! fonts-dejavu-core); the benchmark names what is missing.

#[path = "../../tests/common/lab.rs"]
mod lab;
mod procs;
mod report;
mod run;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::{Parser, ValueEnum};

use crate::report::{Machine, Record, Results};
use crate::run::{Image, RunSpec};

/// A tool that moves the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tool {
    /// dfpull seed + dfpull peer, discovery over mDNS.
    Dfpull,
    /// python3 -m http.server on the origin, curl on every peer.
    Http,
    /// aria2c everywhere, opentracker on the origin.
    Bt,
}

impl Tool {
    pub fn key(self) -> &'static str {
        match self {
            Tool::Dfpull => "dfpull",
            Tool::Http => "http",
            Tool::Bt => "bt",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Tool::Dfpull => "dfpull",
            Tool::Http => "HTTP fan-out (curl)",
            Tool::Bt => "BitTorrent (aria2c)",
        }
    }

    pub fn from_key(key: &str) -> Option<Tool> {
        [Tool::Dfpull, Tool::Http, Tool::Bt]
            .into_iter()
            .find(|t| t.key() == key)
    }

    /// Programs the tool needs, with the Debian package that has each.
    fn needs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Tool::Dfpull => &[],
            Tool::Http => &[("python3", "python3"), ("curl", "curl")],
            Tool::Bt => &[
                ("aria2c", "aria2"),
                ("opentracker", "opentracker"),
                ("mktorrent", "mktorrent"),
            ],
        }
    }
}

/// How the hosts are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// One host per peer, every link shaped to this rate both ways (Mbit/s).
    Shaped { mbit: u32 },
    /// Origin and the one peer in the same host, talking over unshaped loopback.
    Loopback,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub peers: usize,
    pub size_mib: u64,
    pub link: Link,
    pub tools: Vec<Tool>,
    /// Repetitions; the table shows the median.
    pub runs: u32,
}

const ALL_TOOLS: [Tool; 3] = [Tool::Dfpull, Tool::Http, Tool::Bt];

fn builtin_scenarios() -> Vec<Scenario> {
    let shaped = |name: &str, peers, size_mib, mbit| Scenario {
        name: name.into(),
        peers,
        size_mib,
        link: Link::Shaped { mbit },
        tools: ALL_TOOLS.to_vec(),
        runs: 1,
    };
    vec![
        shaped("n4", 4, 256, 100),
        shaped("n8", 8, 256, 100),
        shaped("n16", 16, 256, 100),
        shaped("n24", 24, 256, 100),
        shaped("gig8", 8, 1024, 1000),
        Scenario {
            name: "loopback".into(),
            peers: 1,
            size_mib: 1024,
            link: Link::Loopback,
            tools: vec![Tool::Dfpull, Tool::Http],
            runs: 3,
        },
        shaped("smoke", 3, 16, 100),
    ]
}

/// Benchmark dfpull against the physical bound, an HTTP fan-out and BitTorrent.
#[derive(Debug, Parser)]
#[command(name = "swarm-bench")]
struct Args {
    /// CI check: N = 3, 16 MiB, 100 Mbit/s, all three tools; fails if a run does not finish or
    /// a copy differs.
    #[arg(long)]
    smoke: bool,

    /// Scenarios to run (see --list), comma-separated or repeated; `all` (the default) is every
    /// scenario but smoke.
    #[arg(long = "scenario", value_name = "NAME", value_delimiter = ',')]
    scenarios: Vec<String>,

    /// Number of peers, instead of the scenarios' own (shaped scenarios only).
    #[arg(long, value_name = "N")]
    peers: Option<usize>,

    /// Image size in MiB, instead of the scenarios' own.
    #[arg(long, value_name = "MB")]
    size_mb: Option<u64>,

    /// Link rate in Mbit/s, instead of the scenarios' own (shaped scenarios only).
    #[arg(long, value_name = "R")]
    rate_mbit: Option<u32>,

    /// Tools to run, comma-separated (default: each scenario's own).
    #[arg(long, value_name = "TOOL", value_delimiter = ',', value_enum)]
    tools: Vec<Tool>,

    /// Runs of each scenario and tool, instead of the scenario's own (the table shows the
    /// median).
    #[arg(long, value_name = "K")]
    repeat: Option<u32>,

    /// Where results go (results.json, results.csv, summary.md, swarm.png, logs/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Keep the records already in DIR/results.json for the scenarios and tools not run now.
    #[arg(long)]
    merge: bool,

    /// Where images and copies are written (default: target/swarm-bench-work).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,

    /// Keep the images and every copy instead of deleting them.
    #[arg(long)]
    keep: bool,

    /// Measure this dfpull binary instead of building target/release/dfpull.
    #[arg(long, value_name = "PATH")]
    dfpull: Option<PathBuf>,

    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,

    /// Run nothing: redraw the table, targets and plot from DIR/results.json.
    #[arg(long)]
    report_only: bool,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("swarm bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs everything asked for; false when a run failed.
fn bench(args: &Args) -> Result<bool, String> {
    let scenarios = choose_scenarios(args)?;
    if args.list {
        for s in builtin_scenarios() {
            println!("{}", describe(&s));
        }
        return Ok(true);
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| manifest_dir.join("target/swarm-bench"));
    if args.report_only {
        let results = report::load(&out.join("results.json"))?;
        render(&out, &results, None)?;
        return Ok(results.records.iter().all(|r| r.ok));
    }
    check_prerequisites(&scenarios)?;

    let work = args
        .work
        .clone()
        .unwrap_or_else(|| manifest_dir.join("target/swarm-bench-work"));
    for dir in [&out, &work] {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // Programs started in the lab get these paths, whatever their working directory.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let (out, work) = (absolute(out), absolute(work));
    let command = std::iter::once("cargo bench --bench swarm --".to_string())
        .chain(
            std::env::args()
                .skip(1)
                .filter(|a| a != "--bench")
                .map(|a| shell_word(&a)),
        )
        .collect::<Vec<_>>()
        .join(" ");

    let dfpull = match &args.dfpull {
        Some(p) => absolute(p.clone()),
        None => {
            // Measure a copy: another build during a long run must not swap the binary.
            let built = build_release(manifest_dir)?;
            let copy = work.join("dfpull");
            std::fs::copy(&built, &copy)
                .map_err(|e| format!("copying {} to {}: {e}", built.display(), copy.display()))?;
            copy
        }
    };
    // What was measured: the version, how it was built and from which source tree.
    let dfpull_version = format!(
        "{} ({}{})",
        version_line(&dfpull, "--version").unwrap_or_default(),
        args.dfpull
            .as_ref()
            .map_or("cargo build --release".to_string(), |p| p
                .display()
                .to_string()),
        git_describe(manifest_dir)
            .map(|g| format!(", source {g}"))
            .unwrap_or_default()
    );
    let mut versions = BTreeMap::new();
    versions.insert("dfpull".to_string(), dfpull_version.clone());
    let used: Vec<Tool> = ALL_TOOLS
        .into_iter()
        .filter(|t| scenarios.iter().any(|s| s.tools.contains(t)))
        .collect();
    for tool in &used {
        for &(program, package) in tool.needs() {
            // mktorrent and opentracker have no version flag: ask the package manager.
            let version = match program {
                "mktorrent" | "opentracker" => debian_version(package),
                _ => version_line(Path::new(program), "--version"),
            };
            if let Some(v) = version {
                versions.insert(program.to_string(), v);
            }
        }
    }
    let mut machine = Machine::probe(versions);
    println!("swarm bench: {}", machine.describe());
    println!("swarm bench: {command}");

    let results_json = out.join("results.json");
    let (command, mut records) = if args.merge && results_json.exists() {
        let old = report::load(&results_json)?;
        let kept: Vec<Record> = old
            .records
            .into_iter()
            .filter(|r| {
                !scenarios
                    .iter()
                    .any(|s| s.name == r.scenario && s.tools.iter().any(|t| t.key() == r.tool))
            })
            .collect();
        // Every command that contributed records, oldest first, and every tool's version.
        for (tool, version) in old.machine.tools {
            machine.tools.entry(tool).or_insert(version);
        }
        (format!("{}\n{command}", old.command), kept)
    } else {
        (command, Vec::new())
    };

    let mut images: BTreeMap<u64, Image> = BTreeMap::new();
    let started = Instant::now();
    let mut all_ok = true;
    for scenario in &scenarios {
        eprintln!("swarm bench: scenario {}", describe(scenario));
        let image = match images.get(&scenario.size_mib) {
            Some(image) => image.clone(),
            None => {
                let image = make_image(&work, scenario.size_mib)?;
                images.insert(scenario.size_mib, image.clone());
                image
            }
        };
        for run in 1..=scenario.runs {
            for &tool in &scenario.tools {
                let tag = format!("{}-{}-{run}", scenario.name, tool.key());
                let spec = RunSpec {
                    scenario,
                    tool,
                    run,
                    image: &image,
                    dfpull: &dfpull,
                    work: work.join("runs").join(&tag),
                    logs: out.join("logs").join(&tag),
                    keep: args.keep,
                };
                let mut record = run::run(&spec);
                if tool == Tool::Dfpull {
                    record.dfpull_version = Some(dfpull_version.clone());
                }
                eprintln!("swarm bench:   {}", one_line(&record));
                all_ok &= record.ok;
                records.push(record);
                write_results(&out, &command, &machine, &records)?;
            }
        }
    }
    if !args.keep {
        // Only what this run made: --work may name a directory that holds other things.
        let _ = std::fs::remove_dir_all(work.join("images"));
        let _ = std::fs::remove_dir_all(work.join("runs"));
        let _ = std::fs::remove_file(work.join("dfpull"));
        let _ = std::fs::remove_dir(&work);
    }

    let results = Results {
        command,
        machine,
        records,
    };
    render(&out, &results, Some(started.elapsed().as_secs_f64()))?;
    if !all_ok {
        eprintln!("swarm bench: FAILED: some runs did not complete or a copy differs");
    }
    Ok(all_ok)
}

/// Writes summary.md and swarm.png from `results` and prints the summary.
fn render(out: &Path, results: &Results, seconds: Option<f64>) -> Result<(), String> {
    let records = &results.records;
    let table = report::table(records);
    let targets = report::targets(records);
    let failures = report::failures(records);
    let plot = report::plot(records, &out.join("swarm.png"));
    let commands: String = results
        .command
        .lines()
        .map(|c| format!("    {c}\n"))
        .collect();
    let mut summary = format!(
        "# Swarm benchmark\n\nMachine: {}\n\nCommands{}:\n\n{commands}\n{table}\n## Targets\n\n{targets}",
        results.machine.describe(),
        seconds.map_or(String::new(), |s| format!(" (the last took {s:.0} s)")),
    );
    if !failures.is_empty() {
        summary.push_str("\n## Failed runs\n\n");
        for f in &failures {
            summary.push_str(&format!("- {f}\n"));
        }
    }
    match &plot {
        Ok(p) => summary.push_str(&format!("\nPlot: {p}\n")),
        Err(e) => summary.push_str(&format!("\nNo plot: {e}\n")),
    }
    std::fs::write(out.join("summary.md"), &summary)
        .map_err(|e| format!("writing summary.md: {e}"))?;
    println!("\n{summary}");
    println!(
        "swarm bench: results in {} (results.json, results.csv, summary.md, swarm.png, logs/)",
        out.display()
    );
    Ok(())
}

fn choose_scenarios(args: &Args) -> Result<Vec<Scenario>, String> {
    let builtin = builtin_scenarios();
    let mut names: Vec<String> = args.scenarios.clone();
    if args.smoke {
        if !names.is_empty() {
            return Err("--smoke runs the smoke scenario; give no --scenario with it".into());
        }
        names.push("smoke".into());
    }
    if names.is_empty() || names.iter().any(|n| n == "all") {
        names = builtin
            .iter()
            .filter(|s| s.name != "smoke")
            .map(|s| s.name.clone())
            .collect();
    }
    let mut chosen = Vec::new();
    for name in &names {
        let Some(base) = builtin.iter().find(|s| &s.name == name) else {
            let known: Vec<&str> = builtin.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "no scenario {name:?} (known: {}, all)",
                known.join(", ")
            ));
        };
        let mut s = base.clone();
        let mut changed = Vec::new();
        if let Some(p) = args.peers {
            if !(1..lab::MAX_HOSTS).contains(&p) {
                return Err(format!(
                    "--peers {p}: a lab has at most {} hosts, the origin included",
                    lab::MAX_HOSTS
                ));
            }
            if s.link != Link::Loopback && p != s.peers {
                s.peers = p;
                changed.push(format!("n{p}"));
            }
        }
        if let Some(mb) = args.size_mb {
            if mb == 0 {
                return Err("--size-mb must be at least 1".into());
            }
            if mb != s.size_mib {
                s.size_mib = mb;
                changed.push(format!("{mb}m"));
            }
        }
        if let (Some(r), Link::Shaped { mbit }) = (args.rate_mbit, s.link) {
            if r != mbit {
                s.link = Link::Shaped { mbit: r };
                changed.push(format!("{r}mbit"));
            }
        }
        if !args.tools.is_empty() {
            s.tools.retain(|t| args.tools.contains(t));
            if s.tools.is_empty() {
                return Err(format!(
                    "scenario {name} runs none of the tools asked for (it has {})",
                    base.tools
                        .iter()
                        .map(|t| t.key())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if let Some(k) = args.repeat {
            s.runs = k.max(1);
        }
        if !changed.is_empty() {
            s.name = format!("{}-{}", s.name, changed.join("-"));
        }
        chosen.push(s);
    }
    Ok(chosen)
}

fn describe(s: &Scenario) -> String {
    let link = match s.link {
        Link::Shaped { mbit } => format!("{mbit} Mbit/s links"),
        Link::Loopback => "unshaped loopback".into(),
    };
    format!(
        "{}: {} peer(s), {} MiB image, {link}, tools {}, {} run(s)",
        s.name,
        s.peers,
        s.size_mib,
        s.tools
            .iter()
            .map(|t| t.key())
            .collect::<Vec<_>>()
            .join(","),
        s.runs
    )
}

/// Root, the lab's tools, and every program the chosen tools need; says what to install.
fn check_prerequisites(scenarios: &[Scenario]) -> Result<(), String> {
    lab::Lab::available().map_err(|why| {
        format!("cannot build the network-namespace lab: {why} (run as root, e.g. sudo -E cargo bench --bench swarm)")
    })?;
    let mut missing: Vec<(&str, &str)> = Vec::new();
    for s in scenarios {
        for t in &s.tools {
            for &(program, package) in t.needs() {
                if !procs::on_path(program) && !missing.contains(&(program, package)) {
                    missing.push((program, package));
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let programs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    Err(format!(
        "missing {}: apt-get install {} (or leave the tool out with --tools)",
        programs.join(", "),
        packages.join(" ")
    ))
}

/// `cargo build --release --bin dfpull`, and the path of the binary it made.
fn build_release(manifest_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("swarm bench: cargo build --release --bin dfpull (the binary measured)");
    let mut child = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "dfpull",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(manifest_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting cargo: {e}"))?;
    let mut exe = None;
    for line in std::io::BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact" && v["target"]["name"] == "dfpull" {
            if let Some(path) = v["executable"].as_str() {
                exe = Some(PathBuf::from(path));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release failed ({status})"));
    }
    exe.ok_or_else(|| "cargo built no dfpull executable".into())
}

/// The image of `size_mib` MiB, generated once per size, and its sha256 computed here.
fn make_image(work: &Path, size_mib: u64) -> Result<Image, String> {
    let dir = work.join("images").join(format!("{size_mib}m"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(run::IMAGE_NAME);
    let t = Instant::now();
    dfpull::image::synth::demo_archive(&path, size_mib << 20, "dfpull-bench:latest")
        .map_err(|e| format!("generating {}: {e}", path.display()))?;
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let sha256 = run::sha256_file(&path)?;
    eprintln!(
        "swarm bench: generated {} ({size} bytes, sha256 {}...) in {:.1} s",
        path.display(),
        &sha256[..16],
        t.elapsed().as_secs_f64()
    );
    Ok(Image { path, size, sha256 })
}

fn write_results(
    out: &Path,
    command: &str,
    machine: &Machine,
    records: &[Record],
) -> Result<(), String> {
    let results = Results {
        command: command.to_string(),
        machine: machine.clone(),
        records: records.to_vec(),
    };
    let json = serde_json::to_string_pretty(&results).expect("serialisable");
    std::fs::write(out.join("results.json"), json + "\n")
        .map_err(|e| format!("writing results.json: {e}"))?;
    std::fs::write(out.join("results.csv"), report::csv(records))
        .map_err(|e| format!("writing results.csv: {e}"))
}

fn one_line(r: &Record) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
    let status = if r.ok {
        "ok".to_string()
    } else {
        format!("FAILED: {}", r.error.as_deref().unwrap_or("?"))
    };
    format!(
        "{} run {}: {} s (bound {} s, ratio {}), origin sent {} x F, peer RSS {} MiB, CPU {} s: {status}",
        r.tool,
        r.run,
        f(r.seconds, 2),
        f(r.bound_seconds, 2),
        f(r.ratio(), 2),
        f(r.origin_copies, 2),
        f(r.peer_max_rss_mib(), 1),
        f(r.peer_mean_cpu(), 2),
    )
}

/// First line of `program flag`, if it runs.
fn version_line(program: &Path, flag: &str) -> Option<String> {
    let out = Command::new(program)
        .arg(flag)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/..." -> "curl 7.88.1".
    text.lines()
        .next()
        .map(|l| l.split(" (").next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
}

fn debian_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| format!("{package} {}", String::from_utf8_lossy(&out.stdout).trim()))
}

/// Files whose changes make a different binary; the benchmark's own results are not among them,
/// so a long series run in parts with `--merge` does not mark itself "dirty".
const BINARY_SOURCES: [&str; 3] = ["src", "Cargo.toml", "Cargo.lock"];

/// The commit of the source tree, with `-dirty` when a file the binary is built from differs
/// from it.
fn git_describe(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["describe", "--always"])?;
    let changed = git(&[&["status", "--porcelain", "--"][..], &BINARY_SOURCES[..]].concat())?;
    Some(if changed.is_empty() {
        commit
    } else {
        format!("{commit}-dirty")
    })
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
