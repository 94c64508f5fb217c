//! `dfpull status`: the swarms visible on the LAN (or at a given coordinator), their images
//! and the progress of every host.

use std::collections::BTreeSet;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::discovery::{Discovery, Role};
use crate::exit::{Exit, coded};
use crate::transport::client::Client;
use crate::transport::wire::SwarmStatus;
use crate::units::ByteSize;

pub fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let json = global.json;
    super::runtime()?.block_on(async move {
        let coordinators = coordinators(&args).await?;
        let client = Client::new();
        let mut swarms: Vec<(String, SwarmStatus)> = Vec::new();
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
                    Ok(st) => swarms.push((base.clone(), st)),
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        if json {
            for (base, st) in &swarms {
                let mut v = serde_json::to_value(st)?;
                v["coordinator"] = serde_json::Value::String(base.clone());
                v["event"] = "swarm".into();
                println!("{v}");
            }
        } else {
            print!("{}", render(&swarms));
        }
        if swarms.is_empty() {
            return Err(coded(Exit::NotFound, "no swarm found"));
        }
        Ok(())
    })
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

/// The human table.
fn render(swarms: &[(String, SwarmStatus)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (base, st) in swarms {
        let s = &st.summary;
        let _ = writeln!(
            out,
            "swarm {}  at {base}\n  images: {}\n  {} in {} blocks; {} of {} peers done",
            s.id.short(),
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
            "  {:<28} {:<22} {:>8} {:>9}",
            "HOST", "ADDRESS", "DONE", "UPLOADS"
        );
        for p in &st.peers {
            let done = if p.origin {
                "origin".to_string()
            } else if p.wanted == 0 {
                "-".to_string()
            } else {
                format!("{:.0}%", 100.0 * p.held as f64 / p.wanted as f64)
            };
            let addr = p
                .addr
                .map_or_else(|| "(coordinator host)".to_string(), |a| a.to_string());
            let _ = writeln!(
                out,
                "  {:<28} {:<22} {:>8} {:>9}",
                truncate(&p.name, 28),
                addr,
                done,
                p.uploads
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
