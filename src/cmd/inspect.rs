//! `dfpull inspect`: what the given sources would put in a swarm.
//!
//! The sources are scanned exactly as `dfpull seed` scans them, and the result is printed on
//! stdout (it is the command's output): per archive and image, the tags, ID and layers with
//! their sizes and block counts; the objects images share (sent once); and the totals, among
//! them the bytes one full copy of the swarm really sends. With `--json`, one JSON document (on one line).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{Value, json};

use crate::cli::{BlockSizeArg, GlobalArgs, InspectArgs};
use crate::image::manifest::{BlockTable, Digest, ImageInfo, ObjectIdx, Segment, SwarmManifest};
use crate::image::{ScanOptions, scan_sources};
use crate::units::ByteSize;

pub fn run(args: InspectArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let opts = ScanOptions {
        block_size: match args.block_size {
            BlockSizeArg::Auto => None,
            BlockSizeArg::Fixed(b) => Some(b.0),
        },
        spool_dir: None,
    };
    let catalog = scan_sources(&args.sources, &opts)?;
    let m = &catalog.manifest;
    let mut out = io::stdout().lock();
    if global.json {
        // Serialized first, so a closed stdout surfaces as the plain I/O error `run` forgives
        // (serde_json would hide it inside its own error type).
        let mut doc = serde_json::to_vec(&to_json(m))?;
        doc.push(b'\n');
        out.write_all(&doc)?;
    } else {
        write_human(m, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// How an image is called in listings: its first tag, or its short ID.
fn label(img: &ImageInfo) -> String {
    img.tags
        .first()
        .cloned()
        .unwrap_or_else(|| format!("<untagged {}>", img.id.short()))
}

fn blocks(n: usize) -> String {
    if n == 1 {
        "1 block".into()
    } else {
        format!("{n} blocks")
    }
}

/// Objects named by more than one image (an image found in several archives counts once),
/// with the images naming them.
fn shared(m: &SwarmManifest) -> BTreeMap<ObjectIdx, Vec<String>> {
    let mut users: BTreeMap<ObjectIdx, Vec<(Digest, String)>> = BTreeMap::new();
    for img in m.archives.iter().flat_map(|a| &a.images) {
        for o in std::iter::once(img.config).chain(img.layers.iter().copied()) {
            let list = users.entry(o).or_default();
            if !list.iter().any(|(id, _)| *id == img.id) {
                list.push((img.id, label(img)));
            }
        }
    }
    users
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(o, v)| (o, v.into_iter().map(|(_, l)| l).collect()))
        .collect()
}

struct Totals {
    archive_bytes: u64,
    send_bytes: u64,
    inline_bytes: u64,
    blocks: u32,
    images: usize,
}

fn totals(m: &SwarmManifest) -> Totals {
    Totals {
        archive_bytes: m.archives.iter().map(|a| a.size).sum(),
        send_bytes: m.object_bytes(),
        inline_bytes: m
            .archives
            .iter()
            .flat_map(|a| &a.segments)
            .map(|s| match s {
                Segment::Inline(b) => b.len() as u64,
                Segment::Object(_) => 0,
            })
            .sum(),
        blocks: BlockTable::new(m).len(),
        images: m.archives.iter().map(|a| a.images.len()).sum(),
    }
}

fn write_human(m: &SwarmManifest, out: &mut dyn Write) -> io::Result<()> {
    for a in &m.archives {
        writeln!(
            out,
            "{}  {}  {}  (from {})",
            a.name,
            ByteSize(a.size),
            a.digest,
            a.source
        )?;
        for img in &a.images {
            let tags = if img.tags.is_empty() {
                "<untagged>".to_string()
            } else {
                img.tags.join(", ")
            };
            writeln!(out, "  image {tags}")?;
            writeln!(out, "    id        {}", img.id)?;
            let config = m.object(img.config);
            writeln!(
                out,
                "    config    {:>10}  {}",
                ByteSize(config.size).to_string(),
                blocks(config.blocks.len())
            )?;
            for (i, &l) in img.layers.iter().enumerate() {
                let o = m.object(l);
                writeln!(
                    out,
                    "    layer {:<3} {:>10}  {:<11} {}",
                    i + 1,
                    ByteSize(o.size).to_string(),
                    blocks(o.blocks.len()),
                    o.digest
                )?;
            }
        }
    }
    let shared = shared(m);
    if !shared.is_empty() {
        writeln!(out, "shared between images (sent once):")?;
        for (o, users) in &shared {
            let info = m.object(*o);
            writeln!(
                out,
                "  {}  {:>10}  {}",
                info.digest,
                ByteSize(info.size).to_string(),
                users.join(", ")
            )?;
        }
    }
    let t = totals(m);
    writeln!(
        out,
        "total: {} archive(s), {} image(s), {}; to send: {} in {} of {} (distinct objects), plus {} in the manifest",
        m.archives.len(),
        t.images,
        ByteSize(t.archive_bytes),
        ByteSize(t.send_bytes),
        blocks(t.blocks as usize),
        ByteSize(m.block_size),
        ByteSize(t.inline_bytes),
    )
}

fn to_json(m: &SwarmManifest) -> Value {
    let object = |o: ObjectIdx| {
        let info = m.object(o);
        json!({ "digest": info.digest, "size": info.size, "blocks": info.blocks.len() })
    };
    let archives: Vec<Value> = m
        .archives
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "source": a.source,
                "size": a.size,
                "digest": a.digest,
                "images": a.images.iter().map(|img| json!({
                    "tags": img.tags,
                    "id": img.id,
                    "config": object(img.config),
                    "layers": img.layers.iter().map(|&l| object(l)).collect::<Vec<_>>(),
                    "extra": img.extra.iter().map(|&o| object(o)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let shared: Vec<Value> = shared(m)
        .into_iter()
        .map(|(o, users)| {
            let info = m.object(o);
            json!({ "digest": info.digest, "size": info.size, "images": users })
        })
        .collect();
    let t = totals(m);
    json!({
        "swarm_id": m.swarm_id(),
        "block_size": m.block_size,
        "blocks": t.blocks,
        "objects": m.objects.len(),
        "archive_bytes": t.archive_bytes,
        "send_bytes": t.send_bytes,
        "inline_bytes": t.inline_bytes,
        "archives": archives,
        "shared": shared,
    })
}
