//! `dfpull peer [IMAGE...]`: find the swarm, fetch the wanted archives block by block while
//! serving them to others, save each one atomically and load it. A run stopped early (Ctrl-C)
//! keeps its partial archives and says where (a `kept` line and event): the next run resumes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, PeerArgs, SwarmAddrArgs};
use crate::discovery::{Discovery, Found, Role};
use crate::exit::{Exit, coded};
use crate::image::load::{self, LoadOutcome, Loader};
use crate::image::manifest::{Digest, SwarmManifest};
use crate::swarm::peer::{self, PeerEvent, PeerSettings};
use crate::swarm::store::SavedCheck;
use crate::transport::client::{Client, ClientError};
use crate::transport::wire::{SwarmList, SwarmSummary};
use crate::ui::Reporter;

/// How often a peer asks a coordinator that has no (matching) swarm yet.
const SWARM_LIST_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

pub fn run(args: PeerArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let reporter = Reporter::new(global.json);
    let result = super::runtime()?.block_on(async {
        let cancel = super::interrupt_token();
        fetch(args, &reporter, cancel).await
    });
    reporter.finish();
    result
}

async fn fetch(
    args: PeerArgs,
    reporter: &Reporter,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // Resolve the loader first: a named loader that is missing should fail before any transfer.
    let (mode, namespace) = (args.load, args.namespace);
    let loader = tokio::task::spawn_blocking(move || load::resolve_in(mode, namespace)).await??;
    if loader.is_none() {
        reporter.println(&format!("dfpull: {}", load::skip_reason(mode)));
    }

    // One client from discovery to the last `work` call: the connection that listed the swarms
    // fetches the manifest and carries the first calls, a round trip saved on each (and round
    // trips are long to a busy origin, whose uplink queue is full of blocks).
    let client = Client::new();
    let (base, mut listed) = locate(&args.swarm, &cancel, &client).await?;
    // A coordinator may not have the swarm yet (its seeder is still registering): wait for it
    // as long as we would wait to find a swarm at all.
    let deadline = std::time::Instant::now() + args.swarm.discover_timeout;
    let swarms: Vec<SwarmSummary> = loop {
        let list = match listed.take() {
            Some(list) => list,
            None => client
                .list_swarms(&base)
                .await
                .map_err(|e| coded(Exit::NotFound, format!("cannot list swarms: {e}")))?,
        };
        let swarms: Vec<SwarmSummary> = match &args.swarm.swarm {
            Some(prefix) => list
                .swarms
                .into_iter()
                .filter(|s| s.id.hex().starts_with(prefix.as_str()))
                .collect(),
            None => list.swarms,
        };
        if !swarms.is_empty() {
            break swarms;
        }
        if std::time::Instant::now() >= deadline {
            return Err(coded(
                Exit::NotFound,
                format!("{base} coordinates no such swarm"),
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(SWARM_LIST_RETRY) => {}
            _ = cancel.cancelled() => return Err(super::interrupted()),
        }
    };
    let summary = choose_swarm(&swarms, &args.images)?;
    let manifest = client
        .manifest(&base, &summary.id)
        .await
        .map_err(|e| coded(Exit::Transfer, format!("cannot fetch the manifest: {e}")))?;
    let archives = choose_archives(&manifest, &args.images)?;
    for &a in &archives {
        let info = &manifest.archives[a];
        reporter.archive_started(&info.name, info.size);
    }

    let settings = PeerSettings {
        coordinator: base.clone(),
        swarm: summary.id,
        archives: archives.clone(),
        out_dir: args.out.clone(),
        listen: args.listen,
        seed_time: args.seed_time,
        name: format!("{}:{}", super::hostname(), std::process::id()),
        client: client.clone(),
        saved_check: if args.verify_saved {
            SavedCheck::Whole
        } else {
            SavedCheck::Blocks
        },
    };
    let manifest = Arc::new(manifest);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut task = tokio::spawn(peer::run(settings, manifest.clone(), tx, cancel.clone()));

    let mut loads = tokio::task::JoinSet::new();
    let run_result = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(PeerEvent::Progress { archive, done, peers, .. }) => {
                    reporter.archive_progress(&manifest.archives[archive].name, done, peers);
                }
                Some(PeerEvent::Saved { archive, path, seconds }) => {
                    verify_pins(&manifest, archive, &path, &args.images)?;
                    let info = &manifest.archives[archive];
                    reporter.archive_saved(&info.name, &path, &info.digest.to_string(), info.size, seconds);
                    if let Some(l) = loader {
                        reporter.archive_loading(&info.name, l);
                        loads.spawn(load_archive(l, archive, path));
                    }
                }
                Some(PeerEvent::Seeding) => {
                    tracing::info!("all archives saved; serving other peers for up to {}", humantime::format_duration(args.seed_time));
                }
                Some(PeerEvent::Kept { archive, path, done }) => {
                    report_kept(reporter, &manifest.archives[archive], &path, done, cancel.is_cancelled());
                }
                None => {}
            },
            r = &mut task => break r.context("peer task")?,
        }
    };
    while let Ok(ev) = rx.try_recv() {
        match ev {
            PeerEvent::Saved {
                archive,
                path,
                seconds,
            } => {
                let info = &manifest.archives[archive];
                reporter.archive_saved(
                    &info.name,
                    &path,
                    &info.digest.to_string(),
                    info.size,
                    seconds,
                );
                if let Some(l) = loader {
                    reporter.archive_loading(&info.name, l);
                    loads.spawn(load_archive(l, archive, path));
                }
            }
            PeerEvent::Kept {
                archive,
                path,
                done,
            } => report_kept(
                reporter,
                &manifest.archives[archive],
                &path,
                done,
                cancel.is_cancelled(),
            ),
            PeerEvent::Progress { .. } | PeerEvent::Seeding => {}
        }
    }
    let mut load_error = None;
    while let Some(r) = loads.join_next().await {
        let (archive, outcome) = r.context("load task")?;
        let name = &manifest.archives[archive].name;
        let shown = outcome
            .as_ref()
            .map(Clone::clone)
            .map_err(|e| e.to_string());
        reporter.archive_loaded(name, &shown);
        if let Err(e) = outcome {
            load_error.get_or_insert(e);
        }
    }
    if cancel.is_cancelled() {
        return Err(super::interrupted());
    }
    let summary = match run_result {
        Ok(s) => s,
        Err(e) => {
            for &a in &archives {
                reporter.archive_failed(&manifest.archives[a].name, &e.to_string());
            }
            return Err(e.into());
        }
    };
    reporter.event(serde_json::json!({
        "event": "transfer",
        "archives": summary.saved.iter().map(|(a, p)| serde_json::json!({
            "name": manifest.archives[*a].name,
            "path": p,
            "digest": manifest.archives[*a].digest,
            "bytes": manifest.archives[*a].size,
            "images": manifest.archives[*a].tags().collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "bytes_downloaded": summary.bytes_downloaded,
        "bytes_uploaded": summary.bytes_uploaded,
        "corrupt_blocks": summary.corrupt_blocks,
        "seconds": summary.seconds_to_complete,
    }));
    if let Some(e) = load_error {
        return Err(e.into());
    }
    Ok(())
}

/// A partial archive left for the next run: one line for people, a `kept` event for scripts
/// (`done_bytes` and `total_bytes` as in `progress`).
fn report_kept(
    reporter: &Reporter,
    info: &crate::image::manifest::ArchiveInfo,
    partial: &std::path::Path,
    done: u64,
    interrupted: bool,
) {
    let name = &info.name;
    let why = if interrupted {
        "interrupted"
    } else {
        "transfer failed"
    };
    reporter.println(&format!(
        "{why}: kept {} of {name} in {}; run again to resume",
        crate::units::ByteSize(done),
        partial.display()
    ));
    reporter.event(serde_json::json!({
        "event": "kept",
        "name": name,
        "partial": partial,
        "done_bytes": done,
        "total_bytes": info.size,
    }));
}

async fn load_archive(
    loader: Loader,
    archive: usize,
    path: PathBuf,
) -> (usize, Result<LoadOutcome, load::LoadError>) {
    let r = tokio::task::spawn_blocking(move || load::load(loader, &path)).await;
    (archive, r.expect("load task"))
}

/// The coordinator's base URL: given, or found on mDNS (the first seeder or coordinator that
/// answers on one of the addresses it advertised). A coordinator found on mDNS has been asked
/// for its swarms already: the list comes along.
pub(crate) async fn locate(
    addr: &SwarmAddrArgs,
    cancel: &CancellationToken,
    client: &Client,
) -> anyhow::Result<(String, Option<SwarmList>)> {
    if let Some(url) = addr.coordinator.as_ref().or(addr.seed.as_ref()) {
        return Ok((normalize_url(url)?, None));
    }
    let not_found = || {
        coded(
            Exit::NotFound,
            format!(
                "no dfpull swarm found on the LAN within {} (is a seeder running? where multicast does not pass, use --seed URL or --coordinator URL)",
                humantime::format_duration(addr.discover_timeout)
            ),
        )
    };
    let discovery = Discovery::new()
        .map_err(|e| coded(Exit::NotFound, format!("mDNS discovery failed: {e}")))?;
    // A seeder's advert names its swarm; a coordinator's does not (it may host several).
    let is_swarm = |f: &Found| match (f.role, &addr.swarm, &f.swarm) {
        (Role::Coordinator, _, _) => true,
        (Role::Seed, None, _) => true,
        (Role::Seed, Some(want), Some(id)) => {
            id.starts_with(want.as_str()) || want.starts_with(id.as_str())
        }
        _ => false,
    };
    let found = tokio::select! {
        r = discovery.browse(addr.discover_timeout, |all| all.iter().any(is_swarm)) => r,
        _ = cancel.cancelled() => return Err(super::interrupted()),
    }
    .map_err(|e| coded(Exit::NotFound, format!("mDNS discovery failed: {e}")))?;
    // Standalone coordinators first: a seeder registered with one does not coordinate itself.
    let mut candidates: Vec<&Found> = found.iter().filter(|f| is_swarm(f)).collect();
    candidates.sort_by_key(|f| f.role != Role::Coordinator);
    let mut refused = None;
    for f in candidates {
        for url in f.urls() {
            match client.list_swarms(&url).await {
                Ok(list)
                    if addr.swarm.as_ref().is_some_and(|w| {
                        !list
                            .swarms
                            .iter()
                            .any(|s| s.id.hex().starts_with(w.as_str()))
                    }) =>
                {
                    tracing::debug!("{url} does not coordinate the swarm asked for");
                }
                Ok(list) => {
                    tracing::info!("found a swarm at {url}");
                    return Ok((url, Some(list)));
                }
                Err(
                    e @ (ClientError::Status { status: 401, .. } | ClientError::Invalid { .. }),
                ) => {
                    tracing::warn!("{e}");
                    refused = Some(e);
                }
                Err(e) => tracing::debug!("{url} does not answer: {e}"),
            }
        }
    }
    match refused {
        Some(e) => Err(coded(
            Exit::NotFound,
            format!("found a swarm but could not join it: {e}"),
        )),
        None => Err(not_found()),
    }
}

/// Accepts `host:port` or `http://host:port`, returns `http://host:port` without a final slash.
pub(crate) fn normalize_url(url: &str) -> anyhow::Result<String> {
    let u = url.trim().trim_end_matches('/');
    let u = if u.contains("://") {
        u.to_string()
    } else {
        format!("http://{u}")
    };
    if !u.starts_with("http://") {
        return Err(coded(
            Exit::Usage,
            format!("{url}: only http:// URLs are supported"),
        ));
    }
    Ok(u)
}

/// `name` -> `name:latest`; strips the default registry prefixes so `docker.io/library/x:1`
/// and `x:1` are the same image.
pub fn normalize_ref(r: &str) -> String {
    let r = r.strip_prefix("docker.io/").unwrap_or(r);
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if r.contains('@') || last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// `name@sha256:HEX` (or a bare `sha256:HEX`): the name part and the digest it pins.
pub fn pinned(want: &str) -> Option<(&str, Digest)> {
    let (name, digest) = match want.split_once('@') {
        Some((n, d)) => (n, d),
        None if want.starts_with("sha256:") && want.len() == 71 => ("", want),
        None => return None,
    };
    digest.parse().ok().map(|d| (name, d))
}

/// The digests an image can be pinned by: its ID (the config's sha256) and the digests of its
/// OCI manifests, when the archive carries them.
fn pin_digests<'a>(
    manifest: &'a SwarmManifest,
    image: &'a crate::image::manifest::ImageInfo,
) -> impl Iterator<Item = Digest> + 'a {
    std::iter::once(image.id).chain(image.extra.iter().map(|o| manifest.object(*o).digest))
}

fn matches_image(want: &str, tags: &[&str], archive_name: &str, ids: &[Digest]) -> bool {
    let w = normalize_ref(want);
    tags.iter().any(|t| normalize_ref(t) == w)
        || want == archive_name
        || ids.iter().any(|id| {
            let hex = want.strip_prefix("sha256:").unwrap_or(want);
            hex.len() >= 12 && id.hex().starts_with(hex)
        })
}

/// The swarm that offers every wanted image (the only one when none is named).
fn choose_swarm<'a>(
    swarms: &'a [SwarmSummary],
    wanted: &[String],
) -> anyhow::Result<&'a SwarmSummary> {
    let offered = || {
        let all: Vec<&str> = swarms
            .iter()
            .flat_map(|s| s.images.iter().map(String::as_str))
            .collect();
        if all.is_empty() {
            "nothing".to_string()
        } else {
            all.join(", ")
        }
    };
    if swarms.is_empty() {
        return Err(coded(Exit::NotFound, "the coordinator has no swarm yet"));
    }
    if let [one] = swarms {
        // One swarm: choose_archives names exactly what is missing, image IDs included.
        return Ok(one);
    }
    if wanted.is_empty() {
        return match swarms {
            [one] => Ok(one),
            _ => Err(coded(
                Exit::NotFound,
                format!(
                    "several swarms are offered; name the images you want (offered: {})",
                    offered()
                ),
            )),
        };
    }
    swarms
        .iter()
        .find(|s| {
            let tags: Vec<&str> = s.images.iter().map(String::as_str).collect();
            wanted
                .iter()
                .all(|w| s.archives.iter().any(|a| a == w) || matches_image(w, &tags, "", &[]))
        })
        .ok_or_else(|| {
            coded(
                Exit::NotFound,
                format!(
                    "the swarm does not offer {} (offered: {})",
                    wanted.join(", "),
                    offered()
                ),
            )
        })
}

/// The archives (manifest indexes) holding the wanted images; all of them when none is named.
pub fn choose_archives(manifest: &SwarmManifest, wanted: &[String]) -> anyhow::Result<Vec<usize>> {
    if wanted.is_empty() {
        return Ok((0..manifest.archives.len()).collect());
    }
    let mut out = Vec::new();
    for w in wanted {
        let hit = match pinned(w) {
            Some((name, digest)) => manifest.archives.iter().position(|a| {
                a.images.iter().any(|img| {
                    let named = name.is_empty()
                        || img
                            .tags
                            .iter()
                            .any(|t| repository(t) == repository(&normalize_ref(name)));
                    named && pin_digests(manifest, img).any(|d| d == digest)
                })
            }),
            None => manifest.archives.iter().position(|a| {
                let tags: Vec<&str> = a.tags().collect();
                let ids: Vec<Digest> = a.images.iter().map(|i| i.id).collect();
                matches_image(w, &tags, &a.name, &ids)
            }),
        };
        match hit {
            Some(a) if !out.contains(&a) => out.push(a),
            Some(_) => {}
            None => {
                let offered: Vec<&str> = manifest.archives.iter().flat_map(|a| a.tags()).collect();
                return Err(coded(
                    Exit::NotFound,
                    format!(
                        "the swarm does not offer {w} (offered: {})",
                        offered.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// `name:tag` -> `name`; `name@sha256:..` -> `name`.
fn repository(r: &str) -> &str {
    let r = r.split('@').next().unwrap_or(r);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => &r[..i],
        _ => r,
    }
}

/// Checks a saved archive against the digests the user pinned: the bytes of the object with
/// that digest (config or OCI manifest) are read back from the file and hashed. The manifest
/// only claimed the digest; this makes the claim true or the archive goes.
pub fn verify_pins(
    manifest: &SwarmManifest,
    archive: usize,
    path: &std::path::Path,
    wanted: &[String],
) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let info = &manifest.archives[archive];
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    for (_, digest) in wanted.iter().filter_map(|w| pinned(w)) {
        let Some(o) = info
            .images
            .iter()
            .flat_map(|img| std::iter::once(img.config).chain(img.extra.iter().copied()))
            .find(|o| manifest.object(*o).digest == digest)
        else {
            continue;
        };
        let Some(&(_, offset)) = info.placements(manifest).iter().find(|(p, _)| *p == o) else {
            continue;
        };
        let mut bytes = vec![0u8; manifest.object(o).size as usize];
        file.read_exact_at(&mut bytes, offset)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if Digest::of(&bytes) != digest {
            let _ = std::fs::remove_file(path);
            return Err(coded(
                Exit::Transfer,
                format!(
                    "{}: the image does not match {digest}; the archive was removed",
                    info.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize() {
        let cases = [
            ("app", "app:latest"),
            ("app:1", "app:1"),
            ("docker.io/library/app:1", "app:1"),
            ("registry:5000/team/app", "registry:5000/team/app:latest"),
            ("app@sha256:00", "app@sha256:00"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_ref(input), want, "{input}");
        }
    }

    #[test]
    fn pinned_references() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let pinned_ref = format!("app@{d}");
        let (name, digest) = pinned(&pinned_ref).unwrap();
        assert_eq!((name, digest.to_string().as_str()), ("app", d));
        assert_eq!(pinned(d).unwrap().0, "");
        assert!(pinned("app:1").is_none());
        assert!(pinned("app@sha256:00").is_none());
        assert_eq!(repository("reg:5000/team/app:1"), "reg:5000/team/app");
        assert_eq!(repository("app"), "app");
    }

    #[test]
    fn urls_normalize() {
        assert_eq!(
            normalize_url("10.0.0.1:7341").unwrap(),
            "http://10.0.0.1:7341"
        );
        assert_eq!(normalize_url("http://h:1/").unwrap(), "http://h:1");
        assert!(normalize_url("https://h:1").is_err());
    }
}
