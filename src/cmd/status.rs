//! `dfpull status`: the swarms visible on the LAN (or at a given coordinator), their images
//! and the progress of every host, with transfer rates.
//!
//! A coordinator reports counters, not rates: per host the blocks it holds of those it wants,
//! the blocks it has uploaded and the block bytes it has served (`uploaded_bytes`, the UPLOADED
//! column). Peers that finished and left are still listed (`left`, address `(left)`), with
//! their last figures. So the status is read twice, [`RATE_SAMPLE`] apart, and a
//! rate is the change over that time, in bytes at the swarm's average block size (blocks are
//! all one size but the last of each object, so this is close). A swarm where every peer is
//! already done is read once: nothing moves there.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::cli::{GlobalArgs, StatusArgs};
use crate::discovery::{Discovery, Role};
use crate::exit::{Exit, coded};
use crate::swarm::scheduler::PeerId;
use crate::transport::client::Client;
use crate::transport::wire::SwarmStatus;
use crate::units::ByteSize;

/// How far apart the two readings that give the rates are.
pub const RATE_SAMPLE: Duration = Duration::from_secs(1);

/// One swarm as shown: where it was read, the last reading, and the rates between readings.
struct Shown {
    base: String,
    status: SwarmStatus,
    /// Per host: (download, upload) bytes per second. Empty when not measured.
    rates: HashMap<PeerId, (f64, f64)>,
}

impl Shown {
    /// The whole swarm's download rate, when measured.
    fn total_rate(&self) -> Option<f64> {
        (!self.rates.is_empty()).then(|| self.rates.values().map(|(down, _)| down).sum())
    }
}

pub fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let json = global.json;
    super::runtime()?.block_on(async move {
        let coordinators = coordinators(&args).await?;
        let client = Client::new();
        let mut first: Vec<(String, SwarmStatus)> = Vec::new();
        let mut seen = BTreeSet::new();
        for base in &coordinators {
            let list = match client.list_swarms(base).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            for s in list.swarms {
                if !seen.insert(s.id) {
                    continue;
                }
                match client.status(base, &s.id).await {
                    Ok(st) => first.push((base.clone(), st)),
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        if first.is_empty() {
            return Err(coded(Exit::NotFound, "no swarm found"));
        }
        let taken = Instant::now();
        let shown = if first.iter().any(|(_, st)| moving(st)) {
            tokio::time::sleep(RATE_SAMPLE).await;
            let mut shown = Vec::new();
            for (base, before) in first {
                // A swarm that cannot be read again is still shown, without rates.
                let (status, rates) = match client.status(&base, &before.summary.id).await {
                    Ok(after) => {
                        let rates = rates(&before, &after, taken.elapsed());
                        (after, rates)
                    }
                    Err(e) => {
                        tracing::debug!("no second reading of {}: {e}", before.summary.id);
                        (before, HashMap::new())
                    }
                };
                shown.push(Shown {
                    base,
                    status,
                    rates,
                });
            }
            shown
        } else {
            first
                .into_iter()
                .map(|(base, status)| Shown {
                    base,
                    status,
                    rates: HashMap::new(),
                })
                .collect()
        };
        if json {
            for s in &shown {
                println!("{}", to_json(s)?);
            }
        } else {
            print!("{}", render(&shown));
        }
        Ok(())
    })
}

/// True while some peer still wants blocks: only then are rates worth a second reading.
fn moving(st: &SwarmStatus) -> bool {
    st.peers.iter().any(|p| !p.origin && p.held < p.wanted)
}

/// Bytes per second down and up for every host present in both readings.
fn rates(
    before: &SwarmStatus,
    after: &SwarmStatus,
    elapsed: Duration,
) -> HashMap<PeerId, (f64, f64)> {
    let secs = elapsed.as_secs_f64();
    let s = &after.summary;
    if secs <= 0.0 || s.blocks == 0 {
        return HashMap::new();
    }
    let block = s.bytes as f64 / f64::from(s.blocks);
    let per_sec = |from: u64, to: u64| to.saturating_sub(from) as f64 * block / secs;
    after
        .peers
        .iter()
        .filter_map(|p| {
            let b = before.peers.iter().find(|b| b.id == p.id)?;
            let down = if p.origin {
                0.0
            } else {
                per_sec(u64::from(b.held), u64::from(p.held))
            };
            Some((p.id, (down, per_sec(b.uploads, p.uploads))))
        })
        .collect()
}

/// The `--json` line for one swarm: the coordinator's status, plus where it was read and the
/// measured rates (`null` when the swarm was read once).
fn to_json(s: &Shown) -> serde_json::Result<serde_json::Value> {
    let mut v = serde_json::to_value(&s.status)?;
    v["event"] = "swarm".into();
    v["coordinator"] = s.base.clone().into();
    v["bytes_per_sec"] = s.total_rate().map(rounded).into();
    if let Some(peers) = v["peers"].as_array_mut() {
        for (p, status) in peers.iter_mut().zip(&s.status.peers) {
            let rate = s.rates.get(&status.id);
            p["down_bytes_per_sec"] = rate.map(|r| rounded(r.0)).into();
            p["up_bytes_per_sec"] = rate.map(|r| rounded(r.1)).into();
        }
    }
    Ok(v)
}

fn rounded(rate: f64) -> u64 {
    rate.round() as u64
}

/// Coordinator URLs: the one given, or every seeder and coordinator heard on mDNS.
async fn coordinators(args: &StatusArgs) -> anyhow::Result<Vec<String>> {
    if let Some(url) = args.swarm.coordinator.as_ref().or(args.swarm.seed.as_ref()) {
        return Ok(vec![super::peer::normalize_url(url)?]);
    }
    let discovery = Discovery::new()
        .map_err(|e| coded(Exit::NotFound, format!("mDNS discovery failed: {e}")))?;
    let found = discovery
        .browse(args.wait, |_| false)
        .await
        .map_err(|e| coded(Exit::NotFound, format!("mDNS discovery failed: {e}")))?;
    Ok(found
        .iter()
        .filter(|f| matches!(f.role, Role::Seed | Role::Coordinator))
        .map(|f| f.url())
        .collect())
}

/// `12.3 MiB/s`, or `-` for nothing measured or nothing moving.
fn rate_text(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r >= 1.0 => format!("{}/s", ByteSize(r.round() as u64)),
        _ => "-".to_string(),
    }
}

/// The human table.
fn render(swarms: &[Shown]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for shown in swarms {
        let st = &shown.status;
        let s = &st.summary;
        let total = match shown.total_rate() {
            Some(r) => format!("; {} in all", rate_text(Some(r))),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "swarm {}  at {}\n  images: {}\n  {} in {} blocks; {} of {} peers done{total}",
            s.id.short(),
            shown.base,
            if s.images.is_empty() {
                "(untagged)".to_string()
            } else {
                s.images.join(", ")
            },
            ByteSize(s.bytes),
            s.blocks,
            s.peers_done,
            s.peers,
        );
        let _ = writeln!(
            out,
            "  {:<28} {:<22} {:>7} {:>12} {:>12} {:>8} {:>10}",
            "HOST", "ADDRESS", "DONE", "DOWN", "UP", "UPLOADS", "UPLOADED"
        );
        for p in &st.peers {
            let done = if p.origin {
                "origin".to_string()
            } else if p.wanted == 0 {
                "-".to_string()
            } else {
                format!("{:.0}%", 100.0 * f64::from(p.held) / f64::from(p.wanted))
            };
            let addr = match p.addr {
                _ if p.left => "(left)".to_string(),
                Some(a) => a.to_string(),
                None => "(coordinator host)".to_string(),
            };
            let rate = shown.rates.get(&p.id);
            let _ = writeln!(
                out,
                "  {:<28} {:<22} {:>7} {:>12} {:>12} {:>8} {:>10}",
                truncate(&p.name, 28),
                addr,
                done,
                rate_text(rate.map(|r| r.0)),
                rate_text(rate.map(|r| r.1)),
                p.uploads,
                ByteSize(p.uploaded_bytes).to_string(),
            );
        }
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::Digest;
    use crate::transport::wire::{PeerStatus, SwarmSummary};

    const MIB: u64 = 1 << 20;

    fn peer(id: u64, name: &str, origin: bool, held: u32, wanted: u32, uploads: u64) -> PeerStatus {
        PeerStatus {
            id: PeerId(id),
            name: name.into(),
            addr: (!origin).then(|| format!("10.0.0.{id}:7400").parse().unwrap()),
            origin,
            held,
            wanted,
            uploads,
            // 1 MiB blocks: the bytes of the blocks uploaded.
            uploaded_bytes: uploads * MIB,
            left: false,
        }
    }

    /// A 64 MiB swarm of 64 blocks: a seeder and two peers, `a` half way, `b` done.
    fn status(a_held: u32, seeder_uploads: u64, a_uploads: u64) -> SwarmStatus {
        SwarmStatus {
            summary: SwarmSummary {
                id: Digest::of(b"swarm"),
                images: vec!["app:1".into()],
                archives: vec!["app.tar".into()],
                bytes: 64 * MIB,
                blocks: 64,
                peers: 2,
                peers_done: 1,
            },
            peers: vec![
                peer(1, "seeder", true, 0, 0, seeder_uploads),
                peer(2, "a", false, a_held, 64, a_uploads),
                peer(3, "b", false, 64, 64, 10),
            ],
        }
    }

    #[test]
    fn rates_are_block_counts_over_time() {
        let before = status(16, 40, 2);
        let after = status(40, 60, 6);
        let r = rates(&before, &after, Duration::from_secs(2));
        // 24 blocks of 1 MiB in 2 s down; the seeder sent 20 and `a` 4 blocks.
        assert_eq!(r[&PeerId(2)], (12.0 * MIB as f64, 2.0 * MIB as f64));
        assert_eq!(r[&PeerId(1)], (0.0, 10.0 * MIB as f64));
        assert_eq!(r[&PeerId(3)], (0.0, 0.0));

        // A host that joined between the readings has no rate yet.
        let mut later = after.clone();
        later.peers.push(peer(4, "c", false, 3, 64, 0));
        assert!(!rates(&after, &later, Duration::from_secs(1)).contains_key(&PeerId(4)));
        // Counters that went back (a restarted coordinator) are not negative rates.
        assert_eq!(
            rates(&after, &before, Duration::from_secs(1))[&PeerId(2)],
            (0.0, 0.0)
        );
        assert!(rates(&before, &after, Duration::ZERO).is_empty());
    }

    #[test]
    fn only_a_swarm_with_unfinished_peers_is_read_twice() {
        assert!(moving(&status(16, 0, 0)));
        assert!(!moving(&status(64, 0, 0)));
    }

    #[test]
    fn the_table_shows_progress_and_rates() {
        let shown = Shown {
            base: "http://10.0.0.1:7341".into(),
            status: status(48, 60, 6),
            rates: rates(
                &status(16, 40, 2),
                &status(48, 60, 6),
                Duration::from_secs(2),
            ),
        };
        let table = render(std::slice::from_ref(&shown));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("swarm ") && lines[0].ends_with("at http://10.0.0.1:7341"));
        assert_eq!(lines[1], "  images: app:1");
        assert_eq!(
            lines[2],
            "  64.0 MiB in 64 blocks; 1 of 2 peers done; 16.0 MiB/s in all"
        );
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            [
                "HOST", "ADDRESS", "DONE", "DOWN", "UP", "UPLOADS", "UPLOADED"
            ]
        );
        assert_eq!(
            row("seeder"),
            [
                "seeder",
                "(coordinator",
                "host)",
                "origin",
                "-",
                "10.0",
                "MiB/s",
                "60",
                "60.0",
                "MiB"
            ]
        );
        assert_eq!(
            row("a "),
            [
                "a",
                "10.0.0.2:7400",
                "75%",
                "16.0",
                "MiB/s",
                "2.0",
                "MiB/s",
                "6",
                "6.0",
                "MiB"
            ]
        );
        assert_eq!(
            row("b "),
            ["b", "10.0.0.3:7400", "100%", "-", "-", "10", "10.0", "MiB"]
        );

        // Read once: no rates anywhere, and no total.
        let once = Shown {
            rates: HashMap::new(),
            ..shown
        };
        let table = render(std::slice::from_ref(&once));
        assert!(!table.contains("MiB/s"), "{table}");
        assert!(!table.contains("in all"), "{table}");
    }

    #[test]
    fn peers_that_left_are_shown_with_their_last_figures() {
        let mut st = status(64, 64, 30);
        st.summary.peers_done = 2;
        st.peers[1].left = true;
        st.peers[2].uploaded_bytes = 0;
        let shown = Shown {
            base: "http://10.0.0.1:7341".into(),
            status: st,
            rates: HashMap::new(),
        };
        let table = render(std::slice::from_ref(&shown));
        let a = table
            .lines()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert_eq!(
            a.split_whitespace().collect::<Vec<_>>(),
            ["a", "(left)", "100%", "-", "-", "30", "30.0", "MiB"]
        );
        assert!(table.contains(" 0 B"), "{table}");
        let v = to_json(&shown).unwrap();
        assert_eq!(v["peers"][1]["left"], true);
        assert_eq!(v["peers"][1]["uploaded_bytes"], 30 * MIB);
        assert_eq!(v["peers"][2]["left"], false);
    }

    #[test]
    fn json_carries_the_status_and_the_rates() {
        let shown = Shown {
            base: "http://10.0.0.1:7341".into(),
            status: status(40, 60, 6),
            rates: rates(
                &status(16, 40, 2),
                &status(40, 60, 6),
                Duration::from_secs(2),
            ),
        };
        let v = to_json(&shown).unwrap();
        assert_eq!(v["event"], "swarm");
        assert_eq!(v["coordinator"], "http://10.0.0.1:7341");
        assert_eq!(v["summary"]["images"][0], "app:1");
        assert_eq!(v["bytes_per_sec"], 12 * MIB);
        assert_eq!(v["peers"][1]["name"], "a");
        assert_eq!(v["peers"][1]["held"], 40);
        assert_eq!(v["peers"][1]["uploaded_bytes"], 6 * MIB);
        assert_eq!(v["peers"][0]["uploaded_bytes"], 60 * MIB);
        assert_eq!(v["peers"][1]["down_bytes_per_sec"], 12 * MIB);
        assert_eq!(v["peers"][1]["up_bytes_per_sec"], 2 * MIB);
        assert_eq!(v["peers"][0]["up_bytes_per_sec"], 10 * MIB);

        let once = to_json(&Shown {
            rates: HashMap::new(),
            ..shown
        })
        .unwrap();
        assert_eq!(once["bytes_per_sec"], serde_json::Value::Null);
        assert_eq!(
            once["peers"][1]["down_bytes_per_sec"],
            serde_json::Value::Null
        );
    }
}
