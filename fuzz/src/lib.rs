//! What the protocol targets (`wire`, `coordinator`) and the seed generator share: a small
//! swarm, and a coordinator session that drives `Coordinator::work` without waiting.
//!
//! `work` long-polls: a call that can be given nothing waits up to 250 ms for another peer's
//! report. A fuzz target cannot afford that, and does not need to: each call is polled once
//! with a no-op waker, inside a runtime context (for the timer it registers), and a call left
//! pending is kept and polled again after every later call, which is when a report may have
//! woken it. So both halves of the loop (the first look, and the look after a wake-up) run
//! with no real time passing.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use dfpull::image::manifest::{
    ArchiveInfo, Digest, ImageInfo, MANIFEST_VERSION, MIN_BLOCK, ObjectIdx, ObjectInfo, Segment,
    SwarmManifest,
};
use dfpull::swarm::coordinator::{CoordError, Coordinator};
use dfpull::swarm::scheduler::{PeerId, SchedConfig};
use dfpull::transport::wire::{WorkReply, WorkRequest};

/// The id of the coordinator's own seeder in a [`Session`].
pub const ORIGIN: PeerId = PeerId(0);
/// The port it serves blocks on.
pub const ORIGIN_PORT: u16 = 7000;

/// A swarm of 71 blocks (two bitset words, the second partly used) in four objects: an empty
/// one, one of three blocks with a short last block, one of exactly one block and one of 67.
pub fn small_swarm() -> SwarmManifest {
    let bs = MIN_BLOCK;
    let object = |n: u64, size: u64| ObjectInfo {
        digest: Digest::of(&n.to_le_bytes()),
        size,
        blocks: (0..size.div_ceil(bs))
            .map(|i| Digest::of(&(n << 32 | i).to_le_bytes()))
            .collect(),
    };
    let objects = vec![
        object(0, 0),
        object(1, 2 * bs + 1),
        object(2, bs),
        object(3, 66 * bs + 5),
    ];
    let segments = vec![
        Segment::Inline(vec![0; 512]),
        Segment::Object(ObjectIdx(2)),
        Segment::Inline(vec![0; 512]),
        Segment::Object(ObjectIdx(1)),
        Segment::Object(ObjectIdx(0)),
        Segment::Object(ObjectIdx(3)),
        Segment::Inline(vec![0; 1024]),
    ];
    let size = 2048 + objects.iter().map(|o| o.size).sum::<u64>();
    SwarmManifest {
        version: MANIFEST_VERSION,
        block_size: bs,
        archives: vec![ArchiveInfo {
            name: "small.tar".into(),
            digest: Digest::of(b"small.tar"),
            size,
            source: "small.tar".into(),
            images: vec![ImageInfo {
                tags: vec!["small:1".into()],
                id: objects[2].digest,
                config: ObjectIdx(2),
                layers: vec![ObjectIdx(1), ObjectIdx(3)],
                extra: vec![],
            }],
            segments,
        }],
        objects,
    }
}

/// The runtime whose timer the coordinator's long poll registers with (it is never driven).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

type Call = Pin<Box<dyn Future<Output = (WorkRequest, Result<WorkReply, CoordError>)>>>;

/// A coordinator holding [`small_swarm`], its own seeder ([`ORIGIN`]) added, and the calls
/// still waiting. Call [`Session::finish`] at the end; a session needs [`runtime`] entered.
pub struct Session {
    pub coordinator: Arc<Coordinator>,
    pub swarm: Digest,
    pub blocks: u32,
    waiting: Vec<Call>,
}

impl Session {
    pub fn new(config: SchedConfig) -> Session {
        let coordinator = Coordinator::new(config);
        let manifest = small_swarm();
        let blocks = manifest.objects.iter().map(|o| o.blocks.len() as u32).sum();
        let swarm = coordinator.add_swarm(manifest);
        coordinator.add_local_origin(&swarm, ORIGIN, ORIGIN_PORT);
        Session {
            coordinator,
            swarm,
            blocks,
            waiting: Vec::new(),
        }
    }

    /// Makes one `work` call, from loopback or from no known address, then gives every call
    /// still waiting another look. Every reply that comes back is checked.
    pub fn call(&mut self, req: WorkRequest, from_loopback: bool) {
        let remote = from_loopback.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (coordinator, swarm) = (self.coordinator.clone(), self.swarm);
        let call: Call = Box::pin(async move {
            let reply = coordinator.work(&swarm, req.clone(), remote).await;
            (req, reply)
        });
        self.waiting.push(call);
        let mut cx = Context::from_waker(Waker::noop());
        let blocks = self.blocks;
        self.waiting
            .retain_mut(|call| match call.as_mut().poll(&mut cx) {
                Poll::Ready((req, reply)) => {
                    check_reply(&req, reply, blocks);
                    false
                }
                Poll::Pending => true,
            });
    }

    /// Reads everything the coordinator shows of the swarm, then drops the waiting calls.
    pub fn finish(self) {
        let c = &self.coordinator;
        let status = c.status(&self.swarm).expect("the swarm is registered");
        assert_eq!(status.summary.blocks, self.blocks);
        for p in &status.peers {
            assert!(p.held <= p.wanted, "{p:?}");
        }
        assert_eq!(c.list().swarms.len(), 1);
        let _ = c.finished_peers(&self.swarm);
        let _ = c.swarm_done(&self.swarm);
        assert!(c.manifest_body(&self.swarm).is_some());
    }
}

/// What any reply must respect, whatever the request.
fn check_reply(req: &WorkRequest, reply: Result<WorkReply, CoordError>, blocks: u32) {
    let Ok(reply) = reply else { return };
    let a = &reply.assignments;
    assert!(
        a.len() <= req.slots as usize,
        "{} assignments for {} slots",
        a.len(),
        req.slots
    );
    if reply.resync || req.leaving {
        assert!(
            a.is_empty(),
            "assignments with a resync or to a leaving peer"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for x in a {
        assert!(
            x.block.0 < blocks,
            "assigned block {} of {blocks}",
            x.block.0
        );
        assert_ne!(x.source, req.peer, "a peer sent to itself");
        assert!(
            seen.insert((x.block, x.source)),
            "one block twice from one source"
        );
    }
    let mut ids: Vec<PeerId> = reply.roster.iter().map(|r| r.id).collect();
    ids.dedup();
    assert_eq!(
        ids.len(),
        reply.roster.len(),
        "the roster lists each host once"
    );
}
