//! What a benchmark run leaves behind: one [`Record`] per (scenario, tool, repetition), the
//! markdown table and the verdict on the targets (stdout and `summary.md`), the raw
//! figures (`results.json`, `results.csv`) and a plot drawn here (`swarm.png`).
//!
//! A row of the table is the median run (by time) of its scenario and tool among the runs
//! that succeeded. "Peer RSS" is the largest peak resident set of any peer process, "peer CPU"
//! the mean user + system CPU time of one peer process, both over the process's whole life.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::run::RunSpec;
use crate::{Link, Tool};

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub scenario: String,
    /// `dfpull`, `http` or `bt`.
    pub tool: String,
    /// Repetition, from 1.
    pub run: u32,
    pub peers: usize,
    pub size_bytes: u64,
    /// Link rate of every host; `None` on unshaped loopback.
    pub rate_mbit: Option<u32>,
    /// Every peer finished, every copy matches, every process ended as it should.
    pub ok: bool,
    pub error: Option<String>,
    /// Seconds from starting the peers until the last one held a complete copy.
    pub seconds: Option<f64>,
    /// Kumar and Ross's lower bound for this scenario, seconds.
    pub bound_seconds: Option<f64>,
    /// Bytes the origin's link carried (Ethernet frames) from the start until the last peer was
    /// done.
    pub origin_tx_bytes: Option<u64>,
    /// `origin_tx_bytes` over the image size.
    pub origin_copies: Option<f64>,
    /// When each peer was done, seconds from the start.
    pub peer_seconds: Vec<Option<f64>>,
    /// Peak RSS of each peer process, KiB (`ru_maxrss`).
    pub peer_max_rss_kib: Vec<Option<u64>>,
    /// User + system CPU seconds of each peer process.
    pub peer_cpu_seconds: Vec<Option<f64>>,
    /// Bytes each dfpull peer says it uploaded to other peers.
    #[serde(default)]
    pub peer_uploaded_bytes: Vec<Option<u64>>,
    pub origin_max_rss_kib: Option<u64>,
    pub origin_cpu_seconds: Option<f64>,
    /// Bytes dfpull's seeder says it served (payload, no headers).
    pub origin_reported_upload_bytes: Option<u64>,
    /// dfpull: seconds from the last peer done until every peer process had exited.
    pub exit_after_done_seconds: Option<f64>,
    /// Every copy's sha256 equals the input's (`None`: not checked, the run failed first).
    pub verified: Option<bool>,
    /// `[seconds, origin tx bytes, bytes received by all peers]` every half second.
    #[serde(default)]
    pub timeline: Vec<[f64; 3]>,
    /// One-minute load average before and after the run (other work on the machine).
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub started_unix: u64,
    pub dfpull_version: Option<String>,
    pub logs: String,
}

impl Record {
    pub fn new(spec: &RunSpec) -> Record {
        let s = spec.scenario;
        let rate = match s.link {
            Link::Shaped { mbit } => Some(mbit),
            Link::Loopback => None,
        };
        Record {
            scenario: s.name.clone(),
            tool: spec.tool.key().to_string(),
            run: spec.run,
            peers: s.peers,
            size_bytes: spec.image.size,
            rate_mbit: rate,
            ok: false,
            error: None,
            seconds: None,
            bound_seconds: rate.map(|r| uniform_bound(spec.image.size, s.peers, r)),
            origin_tx_bytes: None,
            origin_copies: None,
            peer_seconds: Vec::new(),
            peer_max_rss_kib: Vec::new(),
            peer_cpu_seconds: Vec::new(),
            peer_uploaded_bytes: Vec::new(),
            origin_max_rss_kib: None,
            origin_cpu_seconds: None,
            origin_reported_upload_bytes: None,
            exit_after_done_seconds: None,
            verified: None,
            timeline: Vec::new(),
            load_before: None,
            load_after: None,
            started_unix: 0,
            dfpull_version: None,
            logs: spec.logs.display().to_string(),
        }
    }

    pub fn fail(&mut self, why: String) {
        self.ok = false;
        self.error = Some(why);
    }

    pub fn ratio(&self) -> Option<f64> {
        Some(self.seconds? / self.bound_seconds?)
    }

    pub fn peer_max_rss_mib(&self) -> Option<f64> {
        self.peer_max_rss_kib
            .iter()
            .flatten()
            .max()
            .map(|&k| k as f64 / 1024.0)
    }

    pub fn peer_mean_cpu(&self) -> Option<f64> {
        let v: Vec<f64> = self.peer_cpu_seconds.iter().flatten().cloned().collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Per-peer rate to the last peer, MiB/s.
    pub fn rate_mib_s(&self) -> Option<f64> {
        Some(self.size_bytes as f64 / 1048576.0 / self.seconds?)
    }

    fn key(&self) -> (String, String) {
        (self.scenario.clone(), self.tool.clone())
    }
}

/// Kumar and Ross: T_min = max(F/u_s, F/d_min, N F / (u_s + sum u_i)), in seconds, for a file
/// of `size` bytes and rates in bit/s.
pub fn kumar_ross(size: u64, origin_up: f64, peers_up: &[f64], peers_down: &[f64]) -> f64 {
    let bits = size as f64 * 8.0;
    let d_min = peers_down.iter().cloned().fold(f64::INFINITY, f64::min);
    let total_up = origin_up + peers_up.iter().sum::<f64>();
    (bits / origin_up)
        .max(bits / d_min)
        .max(peers_up.len() as f64 * bits / total_up)
}

/// The bound when every link runs at `mbit` both ways (it comes to F/R).
pub fn uniform_bound(size: u64, peers: usize, mbit: u32) -> f64 {
    let r = mbit as f64 * 1e6;
    kumar_ross(size, r, &vec![r; peers], &vec![r; peers])
}

/// The median successful run of each (scenario, tool), with the number of successful and of
/// all runs; ordered by link rate (loopback last), image size, N, then tool.
pub fn medians(records: &[Record]) -> Vec<(&Record, usize, usize)> {
    let mut out = medians_unsorted(records);
    let tool_rank = |k: &str| Tool::from_key(k).map_or(9, |t| t as usize);
    out.sort_by_key(|(r, _, _)| {
        (
            r.rate_mbit.unwrap_or(u32::MAX),
            r.size_bytes,
            r.peers,
            r.scenario.clone(),
            tool_rank(&r.tool),
        )
    });
    out
}

fn medians_unsorted(records: &[Record]) -> Vec<(&Record, usize, usize)> {
    let mut groups: Vec<((String, String), Vec<&Record>)> = Vec::new();
    for r in records {
        match groups.iter_mut().find(|(k, _)| *k == r.key()) {
            Some((_, v)) => v.push(r),
            None => groups.push((r.key(), vec![r])),
        }
    }
    groups
        .into_iter()
        .map(|(_, runs)| {
            let total = runs.len();
            let mut ok: Vec<&Record> = runs.iter().filter(|r| r.ok).cloned().collect();
            ok.sort_by(|a, b| a.seconds.partial_cmp(&b.seconds).expect("finite"));
            let pick = if ok.is_empty() {
                runs[runs.len() - 1]
            } else {
                ok[(ok.len() - 1) / 2]
            };
            (pick, ok.len(), total)
        })
        .collect()
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

fn size_text(bytes: u64) -> String {
    let mib = bytes as f64 / 1048576.0;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

fn link_text(r: &Record) -> String {
    r.rate_mbit
        .map_or("loopback".into(), |m| format!("{m} Mbit/s"))
}

/// The markdown table of medians.
pub fn table(records: &[Record]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | N | image | link | tool | time (s) | bound (s) | ratio | per-peer MiB/s | origin upload (x F) | peer RSS (MiB) | peer CPU (s) | runs ok |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (r, ok, total) in medians(records) {
        let time = if r.ok {
            opt(r.seconds, 2)
        } else {
            "FAILED".into()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {time} | {} | {} | {} | {} | {} | {} | {ok}/{total} |",
            r.scenario,
            r.peers,
            size_text(r.size_bytes),
            link_text(r),
            Tool::from_key(&r.tool).map_or(r.tool.clone(), |t| t.label().to_string()),
            opt(r.bound_seconds, 2),
            opt(r.ratio(), 2),
            opt(r.rate_mib_s(), 1),
            opt(r.origin_copies, 2),
            opt(r.peer_max_rss_mib(), 1),
            opt(r.peer_mean_cpu(), 2),
        );
    }
    out
}

/// One line per failed run, with the reason.
pub fn failures(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| !r.ok)
        .map(|r| {
            format!(
                "{} / {} run {}: {}",
                r.scenario,
                r.tool,
                r.run,
                r.error.as_deref().unwrap_or("failed")
            )
        })
        .collect()
}

/// The targets against what was measured.
pub fn targets(records: &[Record]) -> String {
    let med = medians(records);
    let ok = |tool: &str| -> Vec<&Record> {
        med.iter()
            .filter(|(r, n, _)| r.tool == tool && *n > 0)
            .map(|(r, _, _)| *r)
            .collect()
    };
    let dfpull = ok("dfpull");
    let bt = ok("bt");
    let http = ok("http");
    let verdict = |met: bool| if met { "met" } else { "**not met**" };
    let mut out = String::from("| target | measured | verdict |\n|---|---|---|\n");

    let n16: Vec<&Record> = dfpull
        .iter()
        .filter(|r| r.peers == 16 && r.rate_mbit == Some(100))
        .cloned()
        .collect();
    match n16.first() {
        Some(r) => {
            let ratio = r.ratio().unwrap_or(f64::INFINITY);
            let _ = writeln!(
                out,
                "| N = 16, 100 Mbit/s: time to all peers <= 1.15 x bound | {:.2} s = {ratio:.2} x bound ({:.2} s) [{}] | {} |",
                r.seconds.unwrap_or(0.0),
                r.bound_seconds.unwrap_or(0.0),
                r.scenario,
                verdict(ratio <= 1.15)
            );
            match bt.iter().find(|b| b.scenario == r.scenario) {
                Some(b) => {
                    let x = r.seconds.unwrap_or(0.0) / b.seconds.unwrap_or(f64::NAN);
                    let _ = writeln!(
                        out,
                        "| N = 16, 100 Mbit/s: time <= 0.6 x BitTorrent's | {x:.2} x ({:.2} s against {:.2} s) | {} |",
                        r.seconds.unwrap_or(0.0),
                        b.seconds.unwrap_or(0.0),
                        verdict(x <= 0.6)
                    );
                }
                None => out.push_str(
                    "| N = 16, 100 Mbit/s: time <= 0.6 x BitTorrent's | no BitTorrent run at N = 16 | not measured |\n",
                ),
            }
        }
        None => out.push_str(
            "| N = 16, 100 Mbit/s: time to all peers <= 1.15 x bound | no dfpull run at N = 16, 100 Mbit/s | not measured |\n\
             | N = 16, 100 Mbit/s: time <= 0.6 x BitTorrent's | no dfpull run at N = 16, 100 Mbit/s | not measured |\n",
        ),
    }

    let uploads: Vec<(&Record, f64)> = dfpull
        .iter()
        .filter_map(|r| Some((*r, r.origin_copies?)))
        .collect();
    if uploads.is_empty() {
        out.push_str(
            "| origin upload <= 1.1 x F for every N | no shaped dfpull run | not measured |\n",
        );
    } else {
        let shown: Vec<String> = uploads
            .iter()
            .map(|(r, c)| format!("N={} {}: {c:.3}", r.peers, r.scenario))
            .collect();
        let worst = uploads.iter().map(|(_, c)| *c).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| origin upload <= 1.1 x F for every N | {} | {} |",
            shown.join(", "),
            verdict(worst <= 1.1)
        );
    }

    let big: Vec<&Record> = dfpull
        .iter()
        .filter(|r| r.size_bytes >= 1 << 30)
        .cloned()
        .collect();
    if big.is_empty() {
        out.push_str("| peak RSS of one peer <= 64 MiB moving a 1 GB image | no dfpull run with a 1 GB image | not measured |\n");
    } else {
        let shown: Vec<String> = big
            .iter()
            .map(|r| format!("{}: {} MiB", r.scenario, opt(r.peer_max_rss_mib(), 1)))
            .collect();
        let worst = big
            .iter()
            .filter_map(|r| r.peer_max_rss_mib())
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| peak RSS of one peer <= 64 MiB moving a 1 GB image | {} | {} |",
            shown.join(", "),
            verdict(worst <= 64.0)
        );
    }

    let lo_d = dfpull.iter().find(|r| r.rate_mbit.is_none());
    let lo_h = http.iter().find(|r| r.rate_mbit.is_none());
    match (lo_d, lo_h) {
        (Some(d), Some(h)) => {
            let x = h.seconds.unwrap_or(f64::NAN) / d.seconds.unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "| loopback, one peer: throughput >= 0.8 x curl's | {x:.2} x ({} MiB/s against {} MiB/s) | {} |",
                opt(d.rate_mib_s(), 0),
                opt(h.rate_mib_s(), 0),
                verdict(x >= 0.8)
            );
        }
        _ => out.push_str(
            "| loopback, one peer: throughput >= 0.8 x curl's | no loopback run of both | not measured |\n",
        ),
    }
    out
}

/// The raw figures, one row per run.
pub fn csv(records: &[Record]) -> String {
    let mut out = String::from(
        "scenario,tool,run,peers,size_bytes,rate_mbit,ok,seconds,bound_seconds,ratio,origin_tx_bytes,origin_copies,\
         peer_max_rss_mib,peer_mean_cpu_s,first_peer_s,median_peer_s,origin_max_rss_mib,origin_cpu_s,\
         exit_after_done_s,verified,load_before,load_after,started_unix,error\n",
    );
    for r in records {
        let mut peers: Vec<f64> = r.peer_seconds.iter().flatten().cloned().collect();
        peers.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        let first = peers.first().cloned();
        let median = (!peers.is_empty()).then(|| peers[(peers.len() - 1) / 2]);
        let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
        let error = r
            .error
            .as_deref()
            .unwrap_or("")
            .replace('"', "'")
            .replace('\n', " ");
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{error}\"",
            r.scenario,
            r.tool,
            r.run,
            r.peers,
            r.size_bytes,
            r.rate_mbit.map_or(String::new(), |m| m.to_string()),
            r.ok,
            f(r.seconds),
            f(r.bound_seconds),
            f(r.ratio()),
            r.origin_tx_bytes.map_or(String::new(), |b| b.to_string()),
            f(r.origin_copies),
            f(r.peer_max_rss_mib()),
            f(r.peer_mean_cpu()),
            f(first),
            f(median),
            f(r.origin_max_rss_kib.map(|k| k as f64 / 1024.0)),
            f(r.origin_cpu_seconds),
            f(r.exit_after_done_seconds),
            r.verified.map_or(String::new(), |v| v.to_string()),
            f(r.load_before),
            f(r.load_after),
            r.started_unix,
        );
    }
    out
}

/// The machine, as the report describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub cpu: String,
    pub tools: BTreeMap<String, String>,
}

impl Machine {
    pub fn probe(versions: BTreeMap<String, String>) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (memory_kib / 1048576.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu,
            tools: versions,
        }
    }

    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} cores (nproc), {} GiB memory, Linux {}, CPU: {}",
            self.nproc, self.memory_gib, self.kernel, self.cpu
        );
        for (tool, version) in &self.tools {
            let _ = write!(out, "\n- {tool}: {version}");
        }
        out
    }
}

/// Everything `results.json` holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub command: String,
    pub machine: Machine,
    pub records: Vec<Record>,
}

/// Loads an earlier run's results, to merge with new ones or to redraw.
pub fn load(path: &Path) -> Result<Results, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

// ---- the plot ----

/// Where the plot's font comes from (Debian's fonts-dejavu-core): plotters renders text with
/// ab_glyph from bytes given to it, with no font discovery.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Draws time against N (one line per tool, plus the bound) and origin upload against N, for
/// the shaped scenarios of the most common link rate and image size.
pub fn plot(records: &[Record], path: &Path) -> Result<String, String> {
    use plotters::prelude::*;

    let med = medians(records);
    let shaped: Vec<&Record> = med
        .iter()
        .filter(|(r, ok, _)| *ok > 0 && r.rate_mbit.is_some())
        .map(|(r, _, _)| *r)
        .collect();
    // The family with the most distinct N: (rate, size) -> Ns.
    let mut families: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
    for r in &shaped {
        let ns = families
            .entry((r.rate_mbit.expect("shaped"), r.size_bytes))
            .or_default();
        if !ns.contains(&r.peers) {
            ns.push(r.peers);
        }
    }
    let Some((&(rate, size), _)) = families
        .iter()
        .max_by_key(|((rate, _), ns)| (ns.len(), std::cmp::Reverse(*rate)))
    else {
        return Err("no successful shaped run to plot".into());
    };
    let family: Vec<&Record> = shaped
        .into_iter()
        .filter(|r| r.rate_mbit == Some(rate) && r.size_bytes == size)
        .collect();

    let font = std::fs::read(FONT)
        .map_err(|e| format!("{FONT}: {e} (apt-get install fonts-dejavu-core)"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| format!("{FONT} is not a font plotters can read"))?;

    let series = |tool: Tool, value: &dyn Fn(&Record) -> Option<f64>| -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = family
            .iter()
            .filter(|r| r.tool == tool.key())
            .filter_map(|r| Some((r.peers as f64, value(r)?)))
            .collect();
        points.sort_by(|a, b| a.0.partial_cmp(&b.0).expect("finite"));
        points
    };
    let colors = [
        (Tool::Dfpull, RGBColor(0, 114, 178)),
        (Tool::Http, RGBColor(213, 94, 0)),
        (Tool::Bt, RGBColor(0, 158, 115)),
    ];
    let mut bound: Vec<(f64, f64)> = family
        .iter()
        .filter_map(|r| Some((r.peers as f64, r.bound_seconds?)))
        .collect();
    bound.sort_by(|a, b| a.0.partial_cmp(&b.0).expect("finite"));
    bound.dedup_by(|a, b| a.0 == b.0);

    let max_n = family.iter().map(|r| r.peers).max().unwrap_or(1) as f64;
    let max_t = family.iter().filter_map(|r| r.seconds).fold(0.0, f64::max);
    let min_t = family
        .iter()
        .filter_map(|r| r.seconds)
        .chain(bound.iter().map(|b| b.1))
        .fold(f64::INFINITY, f64::min)
        .max(0.01);
    let max_copies = family
        .iter()
        .filter_map(|r| r.origin_copies)
        .fold(1.0, f64::max);

    // Whole numbers of peers only.
    let x_labels = (max_n as usize + 2).min(14);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(50);
        title.titled(
            &format!(
                "One origin to N peers, {} image, every link {rate} Mbit/s both ways",
                size_text(size)
            ),
            ("sans-serif", 24),
        )?;
        let (left, right) = body.split_horizontally(700);

        // Log scale: the fan-out grows with N and would flatten everything else.
        let mut chart = ChartBuilder::on(&left)
            .caption(
                "Time until the last peer holds a verified copy (log scale)",
                ("sans-serif", 18),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(
                0.0..max_n * 1.08 + 0.5,
                (min_t * 0.8..max_t * 1.25)
                    .log_scale()
                    .with_key_points(log_ticks(min_t * 0.8, max_t * 1.25)),
            )?;
        chart
            .configure_mesh()
            .x_desc("peers (N)")
            .x_labels(x_labels)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc("seconds")
            .label_style(("sans-serif", 14))
            .draw()?;
        for (tool, color) in colors {
            let points = series(tool, &|r| r.seconds);
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(tool.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .draw_series(LineSeries::new(bound.clone(), BLACK.stroke_width(2)))?
            .label("bound (Kumar & Ross)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        chart.draw_series(bound.iter().map(|&p| Cross::new(p, 5, BLACK)))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;

        let mut chart = ChartBuilder::on(&right)
            .caption(
                "Origin upload until the last peer is done",
                ("sans-serif", 18),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_n * 1.08 + 0.5, 0.0..max_copies * 1.1 + 0.5)?;
        chart
            .configure_mesh()
            .x_desc("peers (N)")
            .x_labels(x_labels)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("copies of the image (link bytes / F)")
            .label_style(("sans-serif", 14))
            .draw()?;
        for (tool, color) in colors {
            let points = series(tool, &|r| r.origin_copies);
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(tool.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        let one = vec![(0.0, 1.0), (max_n * 1.08 + 0.5, 1.0)];
        chart
            .draw_series(LineSeries::new(one, BLACK.stroke_width(1)))?
            .label("one copy")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("drawing {}: {e}", path.display()))?;
    Ok(format!(
        "{} ({rate} Mbit/s, {})",
        path.display(),
        size_text(size)
    ))
}

/// 1-2-3-5 ticks per decade between `lo` and `hi`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 3.0, 5.0] {
            let t = m * decade;
            if (lo..=hi).contains(&t) {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}
