//! What a command shows while it works: progress bars, plain lines, or JSON lines.
//!
//! Commands feed a [`Reporter`] with events (an archive started, moved forward, was saved, was
//! loaded) and never decide the presentation themselves. The reporter picks it once:
//!
//! - **bars**: stderr is a terminal and `--json` is off. One indicatif bar per archive (bytes,
//!   rate, ETA, peers). A finished archive's bar turns into a line printed above the bars, and
//!   log lines are printed the same way ([`crate::logging`] routes them here), so nothing tears a
//!   bar.
//! - **lines**: stderr is not a terminal (ssh fan-out, a log file), or `--json` is on. A start
//!   and a finish line per archive, and in between at most one progress line per archive every
//!   [`LINE_PROGRESS_INTERVAL`]: `app.tar: 48.0/64.0 MiB (75%) 11.2 MiB/s, 5 peers`.
//! - **JSON lines** on stdout with `--json`, next to the human lines on stderr.
//!
//! With `-q` there are neither bars nor progress lines; failures are still printed.
//!
//! # JSON events
//!
//! One object per line on stdout, flushed as it is written. Every object starts with `"event"`
//! (its kind) and `"ts"` (RFC 3339 UTC time with milliseconds, `2026-10-27T10:00:00.123Z`).
//! Sizes are bytes, durations seconds (rounded to the millisecond), rates bytes per second.
//! `name` is the archive's name as the swarm lists it. Fields shown as `null` are always present.
//!
//! | `event`    | other fields |
//! |------------|--------------|
//! | `started`  | `name`, `total_bytes` |
//! | `progress` | `name`, `done_bytes`, `total_bytes`, `peers` (peers sending to us now), `bytes_per_sec` (over the last ~5 s). At most one every 0.5 s per archive |
//! | `saved`    | `name`, `path`, `digest` (`sha256:...` of the whole archive), `bytes`, `seconds` (from start to saved) |
//! | `failed`   | `name`, `error`: the archive could not be fetched or saved |
//! | `loading`  | `name`, `loader` (`docker`, `podman`, `containerd`) |
//! | `loaded`   | `name`, `ok`, `loader` (or `null`), `images` (what the loader reported: tags, or IDs for untagged images), `seconds` (or `null`), `skipped` (why it was not loaded, or `null`), `error` (the loader's message when `ok` is false, or `null`) |
//! | `result`   | once per archive, at the end: `name`, `ok`, `path`, `digest`, `bytes`, `loader`, `images`, `skipped`, `error` (why it is not ok: transfer, save or load failure, or `"did not finish"`) |
//! | `summary`  | last line: `archives`, `ok`, `failed`, `bytes` (saved in all), `seconds` (since the command started) |
//!
//! Commands may add events of their own (through [`Reporter::event`]), with the same `event` and
//! `ts` fields. If stdout goes away (a closed pipe), JSON output stops and the command goes on.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::image::load::{LoadOutcome, Loader};
use crate::units::ByteSize;

/// At most one JSON `progress` event per archive this often.
pub const JSON_PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// At most one plain progress line per archive this often.
pub const LINE_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Rates are averaged over about this long, so a stalled transfer shows as slowing down.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Progress is sampled for the rate no more often than this, which bounds the samples kept.
const RATE_SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Archive names longer than this are shortened in bar labels.
const MAX_LABEL: usize = 32;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where progress and results go. Cheap to clone; every clone reports to the same place.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

struct Inner {
    id: u64,
    human: Human,
    json: Option<Mutex<JsonOut>>,
    state: Mutex<State>,
    clock: Clock,
    started: Instant,
}

/// The human half of the output, on stderr.
enum Human {
    Bars(MultiProgress),
    Lines {
        out: Mutex<Box<dyn Write + Send>>,
        /// Only failures (`-q`).
        quiet: bool,
    },
    Hidden,
}

struct JsonOut {
    out: Box<dyn Write + Send>,
    /// Set after a failed write (stdout closed): nothing more is written.
    broken: bool,
}

#[derive(Default)]
struct State {
    archives: HashMap<String, Archive>,
    /// Names in the order they started, for the final results.
    order: Vec<String>,
    finished: bool,
}

struct Archive {
    total: u64,
    done: u64,
    peers: u32,
    /// The byte bar while fetching, a spinner while loading (bars mode only).
    bar: Option<ProgressBar>,
    rate: Rate,
    last_line: Instant,
    last_json: Option<Instant>,
    saved: Option<Saved>,
    load: Option<Result<LoadOutcome, String>>,
    failed: Option<String>,
}

struct Saved {
    path: PathBuf,
    digest: String,
    bytes: u64,
}

impl Archive {
    fn new(now: Instant, total: u64) -> Archive {
        Archive {
            total,
            done: 0,
            peers: 0,
            bar: None,
            rate: Rate::new(now),
            last_line: now,
            last_json: None,
            saved: None,
            load: None,
            failed: None,
        }
    }

    /// Why this archive is not a success, if it is not.
    fn error(&self) -> Option<String> {
        if let Some(e) = &self.failed {
            return Some(e.clone());
        }
        if let Some(Err(e)) = &self.load {
            return Some(e.clone());
        }
        self.saved.is_none().then(|| "did not finish".to_string())
    }
}

/// Bytes per second over a sliding window of samples.
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn new(now: Instant) -> Rate {
        Rate {
            samples: VecDeque::from([(now, 0)]),
        }
    }

    fn record(&mut self, now: Instant, done: u64) {
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= RATE_SAMPLE_EVERY)
        {
            self.samples.push_back((now, done));
        }
        // Keep one sample at least a window old as the anchor, so a long gap between updates
        // still gives an average instead of a zero.
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[1].0) >= RATE_WINDOW
        {
            self.samples.pop_front();
        }
    }

    fn per_sec(&self, now: Instant, done: u64) -> f64 {
        let Some(&(t0, b0)) = self.samples.front() else {
            return 0.0;
        };
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            0.0
        } else {
            done.saturating_sub(b0) as f64 / dt
        }
    }
}

/// A human line: `Progress` lines are left out with `-q`, `Failure` lines never.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Progress,
    Failure,
}

impl Reporter {
    /// The reporter for a command: bars if stderr is a terminal and `json` is off, plain lines
    /// otherwise; JSON lines on stdout if `json`.
    pub fn new(json: bool) -> Reporter {
        let quiet = crate::logging::is_quiet();
        let target = ProgressDrawTarget::stderr();
        let human = if !json && !quiet && !target.is_hidden() {
            Human::Bars(MultiProgress::with_draw_target(target))
        } else {
            Human::Lines {
                out: Mutex::new(Box::new(io::stderr())),
                quiet,
            }
        };
        let json = json.then(|| Box::new(io::stdout()) as Box<dyn Write + Send>);
        Reporter::build(human, json, Arc::new(Instant::now))
    }

    /// A reporter that shows nothing at all.
    pub fn hidden() -> Reporter {
        Reporter::build(Human::Hidden, None, Arc::new(Instant::now))
    }

    fn build(human: Human, json: Option<Box<dyn Write + Send>>, clock: Clock) -> Reporter {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Human::Bars(bars) = &human {
            crate::logging::print_above(id, bars.clone());
        }
        let started = clock();
        Reporter {
            inner: Arc::new(Inner {
                id,
                human,
                json: json.map(|out| Mutex::new(JsonOut { out, broken: false })),
                state: Mutex::new(State::default()),
                clock,
                started,
            }),
        }
    }

    /// An archive of `total_bytes` starts arriving. Starting a name again starts it over.
    pub fn archive_started(&self, name: &str, total_bytes: u64) {
        let now = (self.inner.clock)();
        let mut st = self.state();
        let mut archive = Archive::new(now, total_bytes);
        if let Human::Bars(bars) = &self.inner.human {
            let bar = bars.add(ProgressBar::new(total_bytes));
            bar.set_style(bar_style());
            archive.bar = Some(bar);
        }
        match st.archives.insert(name.to_string(), archive) {
            Some(mut old) => self.remove_bar(&mut old),
            None => st.order.push(name.to_string()),
        }
        relabel(&st);
        if !self.has_bars() {
            self.line(
                Kind::Progress,
                &format!("{name}: started, {}", ByteSize(total_bytes)),
            );
        }
        self.json(
            "started",
            json!({ "name": name, "total_bytes": total_bytes }),
        );
    }

    /// `done_bytes` of the archive are in, `peers` peers are sending. Called for every block,
    /// so it only updates numbers unless a line or event is due. Unknown names are ignored.
    pub fn archive_progress(&self, name: &str, done_bytes: u64, peers: u32) {
        let now = (self.inner.clock)();
        let mut st = self.state();
        let Some(a) = st.archives.get_mut(name) else {
            return;
        };
        if let Some(bar) = &a.bar {
            bar.set_position(done_bytes);
            if peers != a.peers {
                bar.set_message(peers_text(peers));
            }
        }
        a.done = done_bytes;
        a.peers = peers;
        a.rate.record(now, done_bytes);
        let lines = matches!(self.inner.human, Human::Lines { quiet: false, .. });
        if lines && now.saturating_duration_since(a.last_line) >= LINE_PROGRESS_INTERVAL {
            a.last_line = now;
            let line = progress_line(name, a, a.rate.per_sec(now, done_bytes));
            self.line(Kind::Progress, &line);
        }
        if self.inner.json.is_some()
            && a.last_json
                .is_none_or(|t| now.saturating_duration_since(t) >= JSON_PROGRESS_INTERVAL)
        {
            a.last_json = Some(now);
            let rate = a.rate.per_sec(now, done_bytes);
            self.json(
                "progress",
                json!({
                    "name": name,
                    "done_bytes": done_bytes,
                    "total_bytes": a.total,
                    "peers": peers,
                    "bytes_per_sec": rate.round() as u64,
                }),
            );
        }
    }

    /// The archive is complete, verified and in place at `path`; it took `seconds`.
    pub fn archive_saved(&self, name: &str, path: &Path, digest: &str, bytes: u64, seconds: f64) {
        let now = (self.inner.clock)();
        let mut st = self.state();
        let a = self.entry(&mut st, name, now);
        self.remove_bar(a);
        a.done = bytes;
        a.saved = Some(Saved {
            path: path.to_path_buf(),
            digest: digest.to_string(),
            bytes,
        });
        let rate = if seconds > 0.0 {
            format!(" ({})", rate_text(bytes as f64 / seconds))
        } else {
            String::new()
        };
        self.line(
            Kind::Progress,
            &format!(
                "{name}: saved {} in {seconds:.1} s{rate} to {}",
                ByteSize(bytes),
                path.display()
            ),
        );
        self.json(
            "saved",
            json!({
                "name": name,
                "path": path.to_string_lossy(),
                "digest": digest,
                "bytes": bytes,
                "seconds": round_ms(seconds),
            }),
        );
    }

    /// The archive could not be fetched or saved.
    pub fn archive_failed(&self, name: &str, error: &str) {
        let now = (self.inner.clock)();
        let mut st = self.state();
        let a = self.entry(&mut st, name, now);
        self.remove_bar(a);
        a.failed = Some(error.to_string());
        self.line(Kind::Failure, &format!("{name}: failed: {error}"));
        self.json("failed", json!({ "name": name, "error": error }));
    }

    /// The saved archive is being handed to `loader` (shown as a spinner in bars mode).
    pub fn archive_loading(&self, name: &str, loader: Loader) {
        let now = (self.inner.clock)();
        let mut st = self.state();
        let a = self.entry(&mut st, name, now);
        self.remove_bar(a);
        if let Human::Bars(bars) = &self.inner.human {
            let spinner = bars.add(ProgressBar::new_spinner());
            spinner.set_style(spinner_style());
            spinner.set_message(format!("loading into {loader}"));
            spinner.enable_steady_tick(Duration::from_millis(100));
            a.bar = Some(spinner);
            relabel(&st);
        } else {
            self.line(Kind::Progress, &format!("{name}: loading into {loader}"));
        }
        self.json("loading", json!({ "name": name, "loader": loader.name() }));
    }

    /// What became of loading the archive (`Err` holds the loader's error, as one line).
    pub fn archive_loaded(&self, name: &str, outcome: &Result<LoadOutcome, String>) {
        let now = (self.inner.clock)();
        let mut st = self.state();
        let a = self.entry(&mut st, name, now);
        self.remove_bar(a);
        a.load = Some(outcome.clone());
        let fields = match outcome {
            Ok(LoadOutcome::Loaded {
                loader,
                images,
                seconds,
            }) => {
                let what = if images.is_empty() {
                    String::new()
                } else {
                    format!(": {}", images.join(", "))
                };
                self.line(
                    Kind::Progress,
                    &format!("{name}: loaded into {loader} in {seconds:.1} s{what}"),
                );
                json!({
                    "name": name, "ok": true, "loader": loader.name(), "images": images,
                    "seconds": round_ms(*seconds), "skipped": null, "error": null,
                })
            }
            Ok(LoadOutcome::Skipped { reason }) => {
                self.line(Kind::Progress, &format!("{name}: not loaded ({reason})"));
                json!({
                    "name": name, "ok": true, "loader": null, "images": [],
                    "seconds": null, "skipped": reason, "error": null,
                })
            }
            Err(error) => {
                self.line(Kind::Failure, &format!("{name}: load failed: {error}"));
                json!({
                    "name": name, "ok": false, "loader": null, "images": [],
                    "seconds": null, "skipped": null, "error": error,
                })
            }
        };
        self.json("loaded", fields);
    }

    /// Any other JSON event (only written with `--json`). An object gets `event` (`"custom"`
    /// if it has none) and `ts` (now, if it has none) first; anything else is wrapped as
    /// `{"event":"custom","value":...}`.
    pub fn event(&self, value: Value) {
        let mut map = match value {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_string(), other)]),
        };
        let event = match map.remove("event") {
            Some(Value::String(s)) => s,
            _ => "custom".to_string(),
        };
        let ts = match map.remove("ts") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        self.write_json(&event, ts, map);
    }

    /// A line for the person watching, on stderr, printed above the bars if they are up.
    pub fn println(&self, line: &str) {
        match &self.inner.human {
            Human::Bars(bars) => {
                let _ = bars.println(line);
            }
            Human::Lines { out, .. } => write_line(out, line),
            Human::Hidden => {}
        }
    }

    /// Ends the report: takes the bars down and writes the results and the summary. Later calls
    /// do nothing.
    pub fn finish(&self) {
        let now = (self.inner.clock)();
        let mut st = self.state();
        if std::mem::replace(&mut st.finished, true) {
            return;
        }
        let State {
            archives, order, ..
        } = &mut *st;
        let (mut ok, mut bytes) = (0usize, 0u64);
        for name in order.iter() {
            let Some(a) = archives.get_mut(name) else {
                continue;
            };
            self.remove_bar(a);
            let error = a.error();
            ok += usize::from(error.is_none());
            bytes += a.saved.as_ref().map_or(0, |s| s.bytes);
            let (loader, images, skipped) = match &a.load {
                Some(Ok(LoadOutcome::Loaded { loader, images, .. })) => {
                    (Some(loader.name()), images.clone(), None)
                }
                Some(Ok(LoadOutcome::Skipped { reason })) => {
                    (None, Vec::new(), Some(reason.clone()))
                }
                _ => (None, Vec::new(), None),
            };
            let saved = a.saved.as_ref();
            self.json(
                "result",
                json!({
                    "name": name,
                    "ok": error.is_none(),
                    "path": saved.map(|s| s.path.to_string_lossy()),
                    "digest": saved.map(|s| s.digest.as_str()),
                    "bytes": saved.map_or(0, |s| s.bytes),
                    "loader": loader,
                    "images": images,
                    "skipped": skipped,
                    "error": error,
                }),
            );
        }
        let total = order.len();
        let seconds = now
            .saturating_duration_since(self.inner.started)
            .as_secs_f64();
        if total > 0 {
            let failed = total - ok;
            let kind = if failed > 0 {
                Kind::Failure
            } else {
                Kind::Progress
            };
            let failed = if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            };
            self.line(
                kind,
                &format!(
                    "done: {ok} of {total} archives ok, {} saved in {seconds:.1} s{failed}",
                    ByteSize(bytes)
                ),
            );
        }
        self.json(
            "summary",
            json!({
                "archives": total,
                "ok": ok,
                "failed": total - ok,
                "bytes": bytes,
                "seconds": round_ms(seconds),
            }),
        );
        if let Human::Bars(bars) = &self.inner.human {
            let _ = bars.clear();
            crate::logging::stop_printing_above(self.inner.id);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while reporting must not silence the rest of the run.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The archive called `name`, made up on the spot if it never started (a result can still
    /// be reported for it).
    fn entry<'s>(&self, st: &'s mut State, name: &str, now: Instant) -> &'s mut Archive {
        if !st.archives.contains_key(name) {
            st.order.push(name.to_string());
        }
        st.archives
            .entry(name.to_string())
            .or_insert_with(|| Archive::new(now, 0))
    }

    fn has_bars(&self) -> bool {
        matches!(self.inner.human, Human::Bars(_))
    }

    fn remove_bar(&self, a: &mut Archive) {
        if let Some(bar) = a.bar.take() {
            bar.finish_and_clear();
            if let Human::Bars(bars) = &self.inner.human {
                bars.remove(&bar);
            }
        }
    }

    fn line(&self, kind: Kind, line: &str) {
        match &self.inner.human {
            Human::Bars(bars) => {
                let _ = bars.println(line);
            }
            Human::Lines { out, quiet } => {
                if kind == Kind::Failure || !quiet {
                    write_line(out, line);
                }
            }
            Human::Hidden => {}
        }
    }

    fn json(&self, event: &str, fields: Value) {
        if let Value::Object(map) = fields {
            self.write_json(event, None, map);
        }
    }

    /// Writes `{"event":..,"ts":..,<fields>}` and a newline, and flushes. `event` and `ts` are
    /// written first so the lines read well in a terminal or a log.
    fn write_json(&self, event: &str, ts: Option<String>, fields: Map<String, Value>) {
        let Some(out) = &self.inner.json else {
            return;
        };
        let ts =
            ts.unwrap_or_else(|| humantime::format_rfc3339_millis(SystemTime::now()).to_string());
        let mut line = String::with_capacity(200);
        let _ = write!(
            line,
            "{{\"event\":{},\"ts\":{}",
            Value::from(event),
            Value::from(ts)
        );
        for (key, value) in &fields {
            let _ = write!(line, ",{}:{value}", Value::from(key.as_str()));
        }
        line.push_str("}\n");
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        if out.broken {
            return;
        }
        if out
            .out
            .write_all(line.as_bytes())
            .and_then(|()| out.out.flush())
            .is_err()
        {
            // Whoever read stdout is gone (or it failed): stop writing there, keep working.
            out.broken = true;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Human::Bars(_) = self.human {
            crate::logging::stop_printing_above(self.id);
        }
    }
}

fn write_line(out: &Mutex<Box<dyn Write + Send>>, line: &str) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = out
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush());
}

fn bar_style() -> ProgressStyle {
    // The bar takes whatever width the numbers leave, so a line never wraps on a narrow terminal.
    ProgressStyle::with_template(
        "{prefix:.bold} [{wide_bar:.cyan/blue}] {bytes:>9}/{total_bytes:<9} {bytes_per_sec:>11} \
         eta {eta:>3} {msg:<8}",
    )
    .expect("the bar template is valid")
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {spinner:.green} {msg} {elapsed}")
        .expect("the spinner template is valid")
}

/// Labels every bar with its archive's name, all padded to the longest so the bars line up.
fn relabel(st: &State) {
    let with_bars = || st.archives.iter().filter(|(_, a)| a.bar.is_some());
    let width = with_bars()
        .map(|(name, _)| name.chars().count().min(MAX_LABEL))
        .max()
        .unwrap_or(0);
    for (name, a) in with_bars() {
        if let Some(bar) = &a.bar {
            bar.set_prefix(label(name, width));
        }
    }
}

/// A bar label: the name, shortened from the left if long (the end of a name tells images
/// apart better than its start), padded to `width`.
fn label(name: &str, width: usize) -> String {
    let chars = name.chars().count();
    if chars <= MAX_LABEL {
        return format!("{name:<width$}");
    }
    let tail: String = name.chars().skip(chars - (MAX_LABEL - 3)).collect();
    format!("...{tail}")
}

/// `app.tar: 48.0/64.0 MiB (75%) 11.2 MiB/s, 5 peers`
fn progress_line(name: &str, a: &Archive, rate: f64) -> String {
    let percent = (a.done.min(a.total) * 100)
        .checked_div(a.total)
        .map(|p| format!(" ({p}%)"))
        .unwrap_or_default();
    format!(
        "{name}: {}{percent} {}, {}",
        amounts(a.done, a.total),
        rate_text(rate),
        peers_text(a.peers)
    )
}

/// `48.0/64.0 MiB`: both numbers in the total's unit.
fn amounts(done: u64, total: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && total >= 1024u64 << (10 * unit) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{done}/{total} B");
    }
    let div = (1u64 << (10 * unit)) as f64;
    format!(
        "{:.1}/{:.1} {}",
        done as f64 / div,
        total as f64 / div,
        UNITS[unit]
    )
}

fn rate_text(bytes_per_sec: f64) -> String {
    format!("{}/s", ByteSize(bytes_per_sec.max(0.0) as u64))
}

fn peers_text(peers: u32) -> String {
    if peers == 1 {
        "1 peer".to_string()
    } else {
        format!("{peers} peers")
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
        fn events(&self) -> Vec<Value> {
            self.lines()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect()
        }
    }

    /// Time that moves only when the test says so.
    #[derive(Clone)]
    struct Clock(Arc<Mutex<Instant>>);

    impl Clock {
        fn new() -> Clock {
            Clock(Arc::new(Mutex::new(Instant::now())))
        }
        fn advance(&self, ms: u64) {
            *self.0.lock().unwrap() += Duration::from_millis(ms);
        }
        fn get(&self) -> super::Clock {
            let now = self.0.clone();
            Arc::new(move || *now.lock().unwrap())
        }
    }

    const MIB: u64 = 1 << 20;

    fn lines_reporter(quiet: bool, json: Option<&Buf>, clock: &Clock) -> (Reporter, Buf) {
        let human = Buf::default();
        let reporter = Reporter::build(
            Human::Lines {
                out: Mutex::new(Box::new(human.clone())),
                quiet,
            },
            json.map(|j| Box::new(j.clone()) as Box<dyn Write + Send>),
            clock.get(),
        );
        (reporter, human)
    }

    fn loaded(loader: Loader, image: &str, seconds: f64) -> Result<LoadOutcome, String> {
        Ok(LoadOutcome::Loaded {
            loader,
            images: vec![image.to_string()],
            seconds,
        })
    }

    fn kinds(events: &[Value]) -> Vec<&str> {
        events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn json_lines_parse_and_carry_their_fields() {
        let clock = Clock::new();
        let json = Buf::default();
        let (r, _) = lines_reporter(false, Some(&json), &clock);
        r.archive_started("app.tar", 64 * MIB);
        r.archive_progress("app.tar", 16 * MIB, 2);
        clock.advance(1000);
        r.archive_progress("app.tar", 48 * MIB, 5);
        r.archive_saved(
            "app.tar",
            Path::new("/out/app.tar"),
            "sha256:abc",
            64 * MIB,
            5.7,
        );
        r.archive_loading("app.tar", Loader::Docker);
        r.archive_loaded("app.tar", &loaded(Loader::Docker, "app:1", 2.1));
        r.archive_started("db.tar", 1000);
        r.archive_failed("db.tar", "no peer has block 3");
        r.event(json!({ "event": "swarm", "coordinator": "http://10.0.0.1:7341" }));
        r.event(json!(42));
        r.finish();
        r.finish();

        for line in json.lines() {
            assert!(line.starts_with("{\"event\":\""), "{line}");
        }
        let events = json.events();
        assert_eq!(
            kinds(&events),
            [
                "started", "progress", "progress", "saved", "loading", "loaded", "started",
                "failed", "swarm", "custom", "result", "result", "summary"
            ]
        );
        for e in &events {
            let ts = e["ts"].as_str().unwrap();
            assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        }
        let [
            started,
            p1,
            p2,
            saved,
            loading,
            load,
            _,
            failed,
            swarm,
            custom,
            res1,
            res2,
            summary,
        ] = &events[..]
        else {
            unreachable!()
        };
        assert_eq!(started["total_bytes"], 64 * MIB);
        assert_eq!(p1["done_bytes"], 16 * MIB);
        assert_eq!(p2["done_bytes"], 48 * MIB);
        assert_eq!(p2["total_bytes"], 64 * MIB);
        assert_eq!(p2["peers"], 5);
        assert_eq!(p2["bytes_per_sec"], 48 * MIB, "48 MiB in one second");
        assert_eq!(saved["name"], "app.tar");
        assert_eq!(saved["path"], "/out/app.tar");
        assert_eq!(saved["digest"], "sha256:abc");
        assert_eq!(saved["bytes"], 64 * MIB);
        assert_eq!(saved["seconds"], 5.7);
        assert_eq!(loading["loader"], "docker");
        assert_eq!(load["ok"], true);
        assert_eq!(load["loader"], "docker");
        assert_eq!(load["images"], json!(["app:1"]));
        assert_eq!(load["seconds"], 2.1);
        assert_eq!(load["error"], Value::Null);
        assert_eq!(failed["error"], "no peer has block 3");
        assert_eq!(swarm["coordinator"], "http://10.0.0.1:7341");
        assert_eq!(custom["value"], 42);
        assert_eq!(res1["name"], "app.tar");
        assert_eq!(res1["ok"], true);
        assert_eq!(res1["path"], "/out/app.tar");
        assert_eq!(res1["digest"], "sha256:abc");
        assert_eq!(res1["loader"], "docker");
        assert_eq!(res1["images"], json!(["app:1"]));
        assert_eq!(res1["error"], Value::Null);
        assert_eq!(res2["name"], "db.tar");
        assert_eq!(res2["ok"], false);
        assert_eq!(res2["path"], Value::Null);
        assert_eq!(res2["error"], "no peer has block 3");
        assert_eq!(summary["archives"], 2);
        assert_eq!(summary["ok"], 1);
        assert_eq!(summary["failed"], 1);
        assert_eq!(summary["bytes"], 64 * MIB);
        assert_eq!(summary["seconds"], 1.0);
    }

    #[test]
    fn json_load_outcomes_and_unfinished_archives() {
        let clock = Clock::new();
        let json = Buf::default();
        let (r, _) = lines_reporter(false, Some(&json), &clock);
        for name in ["a", "b", "c"] {
            r.archive_started(name, 10);
        }
        r.archive_saved("a", Path::new("/o/a"), "sha256:a", 10, 1.0);
        r.archive_loaded(
            "a",
            &Ok(LoadOutcome::Skipped {
                reason: "--load none".into(),
            }),
        );
        r.archive_saved("b", Path::new("/o/b"), "sha256:b", 10, 1.0);
        r.archive_loaded(
            "b",
            &Err("docker load failed for /o/b: unexpected EOF".into()),
        );
        r.finish();

        let events = json.events();
        let loaded: Vec<_> = events.iter().filter(|e| e["event"] == "loaded").collect();
        assert_eq!(loaded[0]["ok"], true);
        assert_eq!(loaded[0]["skipped"], "--load none");
        assert_eq!(loaded[0]["loader"], Value::Null);
        assert_eq!(loaded[1]["ok"], false);
        assert_eq!(
            loaded[1]["error"],
            "docker load failed for /o/b: unexpected EOF"
        );
        let results: Vec<_> = events.iter().filter(|e| e["event"] == "result").collect();
        let ok: Vec<_> = results.iter().map(|e| e["ok"].as_bool().unwrap()).collect();
        assert_eq!(ok, [true, false, false]);
        assert_eq!(results[0]["skipped"], "--load none");
        assert_eq!(
            results[1]["path"], "/o/b",
            "saved even though the load failed"
        );
        assert_eq!(results[2]["error"], "did not finish");
        assert_eq!(events.last().unwrap()["failed"], 2);
    }

    #[test]
    fn progress_events_are_rate_limited() {
        let clock = Clock::new();
        let json = Buf::default();
        let (r, human) = lines_reporter(false, Some(&json), &clock);
        r.archive_started("app.tar", 1 << 30);
        let progress = |json: &Buf| {
            json.events()
                .iter()
                .filter(|e| e["event"] == "progress")
                .count()
        };
        for i in 0..1000 {
            r.archive_progress("app.tar", i * 4096, 3);
        }
        assert_eq!(progress(&json), 1, "a burst makes one event");
        clock.advance(499);
        r.archive_progress("app.tar", 5 * MIB, 3);
        assert_eq!(progress(&json), 1);
        clock.advance(1);
        r.archive_progress("app.tar", 6 * MIB, 3);
        assert_eq!(progress(&json), 2);

        // Ten more seconds of a block every 10 ms: two events a second, one line per 5 s.
        let before = human.lines().len();
        for i in 0..1000 {
            clock.advance(10);
            r.archive_progress("app.tar", 6 * MIB + i * MIB / 10, 3);
        }
        assert_eq!(progress(&json), 22);
        assert_eq!(human.lines().len() - before, 2, "{:?}", human.lines());
        r.archive_progress("never-started.tar", 1, 1);
        assert_eq!(progress(&json), 22, "unknown archives are ignored");
    }

    #[test]
    fn plain_lines_look_right() {
        let clock = Clock::new();
        let (r, human) = lines_reporter(false, None, &clock);
        r.archive_started("app.tar", 64 * MIB);
        clock.advance(4000);
        r.archive_progress("app.tar", 40 * MIB, 3);
        clock.advance(1000);
        r.archive_progress("app.tar", 48 * MIB, 5);
        clock.advance(1000);
        r.archive_progress("app.tar", 56 * MIB, 5);
        r.archive_saved(
            "app.tar",
            Path::new("/out/app.tar"),
            "sha256:abc",
            64 * MIB,
            6.0,
        );
        r.archive_loading("app.tar", Loader::Podman);
        r.archive_loaded("app.tar", &loaded(Loader::Podman, "localhost/app:1", 1.3));
        r.println("a line of the command's own");
        r.finish();
        assert_eq!(
            human.lines(),
            [
                "app.tar: started, 64.0 MiB",
                "app.tar: 48.0/64.0 MiB (75%) 9.6 MiB/s, 5 peers",
                "app.tar: saved 64.0 MiB in 6.0 s (10.7 MiB/s) to /out/app.tar",
                "app.tar: loading into podman",
                "app.tar: loaded into podman in 1.3 s: localhost/app:1",
                "a line of the command's own",
                "done: 1 of 1 archives ok, 64.0 MiB saved in 6.0 s",
            ]
        );
    }

    #[test]
    fn quiet_lines_keep_only_failures() {
        let clock = Clock::new();
        let (r, human) = lines_reporter(true, None, &clock);
        r.archive_started("a.tar", 10);
        clock.advance(10_000);
        r.archive_progress("a.tar", 5, 1);
        r.archive_saved("a.tar", Path::new("/o/a.tar"), "sha256:a", 10, 1.0);
        r.archive_loaded("a.tar", &Err("boom".into()));
        r.finish();
        assert_eq!(
            human.lines(),
            [
                "a.tar: load failed: boom",
                "done: 0 of 1 archives ok, 10 B saved in 10.0 s, 1 failed",
            ]
        );
    }

    /// Stdout whose reader has gone: every write fails with a broken pipe.
    struct ClosedPipe(Arc<AtomicU64>);

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_stops_json_without_stopping_the_reporter() {
        let tries = Arc::new(AtomicU64::new(0));
        let human = Buf::default();
        let r = Reporter::build(
            Human::Lines {
                out: Mutex::new(Box::new(human.clone())),
                quiet: false,
            },
            Some(Box::new(ClosedPipe(tries.clone()))),
            Clock::new().get(),
        );
        r.archive_started("a.tar", 10);
        r.archive_saved("a.tar", Path::new("/o/a.tar"), "sha256:a", 10, 1.0);
        r.event(json!({ "event": "x" }));
        r.finish();
        assert_eq!(
            tries.load(Ordering::Relaxed),
            1,
            "no write after the first failure"
        );
        assert_eq!(human.lines().len(), 3, "{:?}", human.lines());
    }

    /// A terminal that keeps everything written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn text(&self) -> String {
            self.0.lock().unwrap().clone()
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            140
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            let mut text = self.0.lock().unwrap();
            text.push_str(s);
            text.push('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bars_show_progress_and_print_log_lines_above_them() {
        use tracing_subscriber::fmt::MakeWriter as _;
        let screen = Screen::default();
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
            screen.clone(),
        )));
        let r = Reporter::build(Human::Bars(bars), None, Arc::new(Instant::now));
        assert!(crate::logging::printing_above_bars());
        r.archive_started("app.tar", 64 * MIB);
        r.archive_started("a-longer-name.tar", 64 * MIB);
        r.archive_progress("app.tar", 16 * MIB, 3);
        let text = screen.text();
        assert!(text.contains("16.00 MiB/64.00 MiB"), "{text}");
        assert!(text.contains("3 peers"), "{text}");
        assert!(
            text.contains(&format!("app.tar{} [", " ".repeat(10))),
            "labels padded to the longest name: {text}"
        );

        writeln!(crate::logging::LogWriter.make_writer(), "a log line").unwrap();
        assert!(screen.text().contains("a log line"), "{}", screen.text());
        r.println("a line of the command's own");
        assert!(screen.text().contains("a line of the command's own"));

        r.archive_saved(
            "app.tar",
            Path::new("/o/app.tar"),
            "sha256:a",
            64 * MIB,
            2.0,
        );
        assert!(screen.text().contains("app.tar: saved 64.0 MiB in 2.0 s"));
        r.finish();
        assert!(screen.text().contains("done: 1 of 2 archives ok"));

        // Once the bars are down, log lines go to stderr again.
        assert!(!crate::logging::printing_above_bars());
    }

    #[test]
    fn formats() {
        assert_eq!(amounts(48 * MIB, 64 * MIB), "48.0/64.0 MiB");
        assert_eq!(amounts(512, 1000), "512/1000 B");
        assert_eq!(amounts(3 << 29, 2 << 30), "1.5/2.0 GiB");
        assert_eq!(peers_text(1), "1 peer");
        assert_eq!(peers_text(0), "0 peers");
        assert_eq!(label("a.tar", 7), "a.tar  ");
        let long = format!("{}end.tar", "x".repeat(40));
        assert_eq!(label(&long, MAX_LABEL).chars().count(), MAX_LABEL);
        assert!(label(&long, MAX_LABEL).ends_with("end.tar"));
    }

    /// Bars in a real terminal, for a look by eye:
    /// `cargo test --lib ui::tests::terminal_demo -- --ignored --nocapture` (in tmux, say).
    #[test]
    #[ignore = "for a person at a terminal"]
    fn terminal_demo() {
        crate::logging::init(&crate::cli::GlobalArgs {
            verbose: 0,
            quiet: 0,
            json: false,
            secret: None,
            config: None,
        });
        let r = Reporter::new(false);
        let sizes = [
            ("app.tar", 64 * MIB),
            ("postgres-16.tar", 160 * MIB),
            ("redis.tar", 24 * MIB),
        ];
        for (name, size) in sizes {
            r.archive_started(name, size);
        }
        let mut done = [0u64; 3];
        for step in 0..80u64 {
            for (i, (name, size)) in sizes.iter().enumerate() {
                if done[i] >= *size {
                    continue;
                }
                done[i] = (done[i] + MIB * (i as u64 + 1) / 2 + MIB / 3).min(*size);
                r.archive_progress(name, done[i], 1 + (step / 10) as u32 + i as u32);
                if done[i] == *size {
                    r.archive_saved(name, &Path::new("/tmp").join(name), "sha256:0", *size, 4.0);
                    r.archive_loading(name, Loader::Docker);
                }
            }
            if step % 20 == 10 {
                tracing::info!("a log line at step {step}");
            }
            if step == 60 {
                r.archive_loaded("redis.tar", &loaded(Loader::Docker, "redis:7", 1.5));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        r.archive_loaded("app.tar", &loaded(Loader::Docker, "app:1", 2.0));
        r.archive_loaded(
            "postgres-16.tar",
            &Err("docker load failed: no space left".into()),
        );
        r.finish();
        tracing::warn!("a log line after finish");
    }
}
