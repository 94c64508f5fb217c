//! The wire types: every request and reply body that crosses the network, and the paths.
//!
//! All paths are versioned under `/v1`. A coordinator may host several swarms; each is named by
//! its swarm id (the sha256 of its manifest, as hex).
//!
//! | method | path                               | served by            | body / reply |
//! |--------|------------------------------------|----------------------|--------------|
//! | GET    | `/v1/swarms`                       | coordinator          | [`SwarmList`] |
//! | GET    | `/v1/swarms/{id}/manifest`         | coordinator, seeder  | [`SwarmManifest`] (gzip if accepted) |
//! | PUT    | `/v1/swarms/{id}/manifest`         | coordinator          | a seeder registers its manifest |
//! | POST   | `/v1/swarms/{id}/work`             | coordinator          | [`WorkRequest`] -> [`WorkReply`] |
//! | GET    | `/v1/swarms/{id}/blocks/{block}`   | seeder, every peer   | the block's bytes |
//! | GET    | `/v1/swarms/{id}/status`           | coordinator          | [`SwarmStatus`] |
//!
//! A peer talks to the coordinator through one call, `work`: it reports what it verified or
//! failed to get since its last call and asks for as many new assignments as it has free
//! download slots. The coordinator keeps only soft state: when it does not know a peer (it was
//! restarted, or the peer is new) it answers `resync`, and the peer sends its whole state again
//! in [`JoinInfo`].
//!
//! [`SwarmManifest`]: crate::image::manifest::SwarmManifest

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::image::manifest::{BlockIdx, Digest};
use crate::swarm::bitset::BitSet;
use crate::swarm::scheduler::{FailKind, PeerId};

/// Largest JSON body a server accepts (a join of a very large swarm carries two bitsets).
pub const MAX_JSON_BODY: usize = 8 << 20;

pub fn swarms_path() -> String {
    "/v1/swarms".to_string()
}

pub fn manifest_path(swarm: &Digest) -> String {
    format!("/v1/swarms/{}/manifest", swarm.hex())
}

pub fn work_path(swarm: &Digest) -> String {
    format!("/v1/swarms/{}/work", swarm.hex())
}

pub fn block_path(swarm: &Digest, block: BlockIdx) -> String {
    format!("/v1/swarms/{}/blocks/{}", swarm.hex(), block.0)
}

pub fn status_path(swarm: &Digest) -> String {
    format!("/v1/swarms/{}/status", swarm.hex())
}

/// A manifest as served: its JSON, and the same JSON gzip-compressed for a client that accepts
/// it. The hashes in a manifest are hex, so it compresses to about a third: the 40 KB manifest
/// of a 256 MiB image becomes 13 KB, which fits in a new connection's first flight instead of
/// taking two more round trips, and round trips are long to an origin whose uplink is busy.
#[derive(Debug, Clone)]
pub struct ManifestBody {
    pub json: bytes::Bytes,
    pub gzip: bytes::Bytes,
}

impl ManifestBody {
    pub fn new(manifest: &crate::image::manifest::SwarmManifest) -> ManifestBody {
        use std::io::Write as _;
        let json = serde_json::to_vec(manifest).expect("manifest serializes");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).expect("writing to memory");
        let gzip = gz.finish().expect("writing to memory");
        ManifestBody {
            json: json.into(),
            gzip: gzip.into(),
        }
    }
}

/// Whether an `Accept-Encoding` header value accepts gzip (`gzip`, or `gzip;q=` anything but 0).
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        name.eq_ignore_ascii_case("gzip") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn accept_encoding_gzip() {
        for yes in [
            "gzip",
            "GZIP",
            "br, gzip",
            "gzip;q=0.5",
            "deflate , gzip ; q=1",
        ] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in ["", "br", "identity", "gzip;q=0", "x-gzip", "gzipped", "*"] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }
}

/// One swarm as listed by a coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmSummary {
    pub id: Digest,
    /// Every `name:tag` the swarm offers.
    pub images: Vec<String>,
    /// Archive file names.
    pub archives: Vec<String>,
    pub bytes: u64,
    pub blocks: u32,
    pub peers: u32,
    pub peers_done: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmList {
    pub swarms: Vec<SwarmSummary>,
}

/// What a peer sends when it joins or re-syncs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinInfo {
    /// Blocks the peer wants (those of the archives it was asked for).
    pub wants: BitSet,
    /// Blocks it already holds, verified.
    pub has: BitSet,
    /// True for a seeder: it holds everything and is spread as little as possible.
    #[serde(default)]
    pub origin: bool,
    /// Host name, for status displays.
    #[serde(default)]
    pub name: String,
}

/// A block the peer verified, and who it came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Completed {
    pub block: BlockIdx,
    pub from: PeerId,
}

/// A block the peer could not get from a source.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Failed {
    pub block: BlockIdx,
    pub from: PeerId,
    pub kind: FailKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkRequest {
    pub peer: PeerId,
    /// Port of the peer's block server; the coordinator pairs it with the address the request
    /// came from. 0 for a peer that does not serve.
    pub port: u16,
    /// Present on the first call and after a `resync` reply.
    #[serde(default)]
    pub join: Option<JoinInfo>,
    #[serde(default)]
    pub completed: Vec<Completed>,
    #[serde(default)]
    pub failed: Vec<Failed>,
    /// How many new assignments the peer can take now.
    pub slots: u32,
    /// Downloads the peer has running. A peer with some gets an answer at once even when there
    /// is nothing to assign (it will ask again as each completes); only an idle peer's call
    /// waits for the swarm to change.
    #[serde(default)]
    pub in_flight: u32,
    /// The peer is leaving the swarm (it stops serving).
    #[serde(default)]
    pub leaving: bool,
    /// Send the roster with the reply.
    #[serde(default)]
    pub want_roster: bool,
    /// Block bytes this host has served since it started (its server's counter), so the
    /// coordinator can show them in the status. `None` from a host that does not say (older
    /// versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
}

/// A host that serves blocks and could take over coordinating: what every peer needs to agree
/// on a successor when the coordinator is gone (the lowest id that answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub id: PeerId,
    pub addr: SocketAddr,
}

/// Fetch `block` from `source`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub block: BlockIdx,
    pub source: PeerId,
    /// Where the source serves blocks; `None` means the host that runs this coordinator
    /// (an embedded coordinator's own seeder), at `source_port`.
    pub addr: Option<SocketAddr>,
    pub source_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkReply {
    /// The coordinator does not know this peer: send `join` again.
    #[serde(default)]
    pub resync: bool,
    pub assignments: Vec<Assignment>,
    /// Every peer the coordinator knows has what it wants.
    pub swarm_done: bool,
    /// Peers in the swarm (not counting seeders).
    pub peers: u32,
    /// The peers that serve, sorted by id; only when asked for (`want_roster`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roster: Vec<RosterEntry>,
}

/// Progress of one host, for `dfpull status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: PeerId,
    pub name: String,
    pub addr: Option<SocketAddr>,
    pub origin: bool,
    pub held: u32,
    pub wanted: u32,
    /// Blocks others verified from this host.
    pub uploads: u64,
    /// Block bytes this host has served, as it last reported them; for a host that does not
    /// report them (the seeder of an embedded coordinator, or an older version), the bytes of
    /// the blocks others verified from it.
    #[serde(default)]
    pub uploaded_bytes: u64,
    /// A peer that finished and has left the swarm: its last report, kept so the status of a
    /// finished swarm still shows who took part and what each one uploaded.
    #[serde(default)]
    pub left: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmStatus {
    pub summary: SwarmSummary,
    pub peers: Vec<PeerStatus>,
}
