//! `dfpull seed SOURCE...`: scan the sources into a swarm, serve its blocks, coordinate the
//! swarm (embedded) and advertise it on mDNS.

use anyhow::Context as _;

use crate::cli::{BlockSizeArg, GlobalArgs, SeedArgs};
use crate::image::scan::{ScanOptions, scan_sources};
use crate::swarm::seeder::{SeedSettings, Seeder};
use crate::ui::Reporter;
use crate::units::ByteSize;

pub fn run(args: SeedArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let reporter = Reporter::new(global.json);
    let result = super::runtime()?.block_on(seed(args, &reporter));
    reporter.finish();
    result
}

async fn seed(args: SeedArgs, reporter: &Reporter) -> anyhow::Result<()> {
    let cancel = super::interrupt_token();
    let opts = ScanOptions {
        block_size: match args.block_size {
            BlockSizeArg::Auto => None,
            BlockSizeArg::Fixed(s) => Some(s.0),
        },
        spool_dir: args.cache_dir.clone(),
    };
    let sources = args.sources.clone();
    let started = std::time::Instant::now();
    // The catalog owns the spool files of compressed and `docker save` sources: keep it alive
    // for as long as the blocks are served.
    let mut catalog = tokio::task::spawn_blocking(move || scan_sources(&sources, &opts))
        .await
        .context("scan task")??;
    let manifest = catalog.manifest.clone();
    let swarm = manifest.swarm_id();
    let images: Vec<String> = manifest
        .archives
        .iter()
        .flat_map(|a| a.tags().map(str::to_string))
        .collect();
    tracing::info!(
        "scanned {} in {:.1}s: {} in {} blocks of {}",
        images.join(", "),
        started.elapsed().as_secs_f64(),
        ByteSize(manifest.object_bytes()),
        crate::image::manifest::BlockTable::new(&manifest).len(),
        ByteSize(manifest.block_size),
    );

    let settings = SeedSettings {
        listen: args.listen,
        coordinator: args
            .coordinator
            .as_deref()
            .map(super::peer::normalize_url)
            .transpose()?,
        exit_after: args.exit_after,
        name: super::hostname(),
    };
    let backing = catalog
        .take_backing()
        .context("cannot open the archives to serve")?;
    let seeder = Seeder::start(manifest.clone(), backing, settings, cancel.clone()).await?;
    let port = seeder.local.port();
    let _advert = if args.no_mdns || args.coordinator.is_some() {
        None
    } else {
        Some(super::advertise(
            crate::discovery::Role::Seed,
            port,
            Some(&swarm),
            &images,
        )?)
    };
    tracing::info!(
        "serving swarm {} on port {port}; press Ctrl-C to stop",
        swarm.short()
    );
    reporter.event(serde_json::json!({
        "event": "serving",
        "swarm": swarm,
        "port": port,
        "images": images,
        "bytes": manifest.object_bytes(),
        "archives": manifest.archives.iter().map(|a| serde_json::json!({"name": a.name, "digest": a.digest, "bytes": a.size})).collect::<Vec<_>>(),
    }));

    let counters = seeder.state.counters.clone();
    let result = seeder.serve().await;
    let served = counters
        .bytes_served
        .load(std::sync::atomic::Ordering::Relaxed);
    let total = manifest.object_bytes().max(1);
    tracing::info!(
        "uploaded {} ({:.2} copies of the image)",
        ByteSize(served),
        served as f64 / total as f64
    );
    reporter.event(serde_json::json!({
        "event": "seeded",
        "bytes_uploaded": served,
        "copies_uploaded": served as f64 / total as f64,
        "seconds": started.elapsed().as_secs_f64(),
    }));
    drop(catalog);
    result?;
    if cancel.is_cancelled() && args.exit_after.is_some() {
        return Err(super::interrupted());
    }
    Ok(())
}
