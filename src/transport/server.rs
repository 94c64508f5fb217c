//! The HTTP server every dfpull host runs: blocks for the swarms it holds, and, when it hosts a
//! coordinator, the manifest, `work` and status endpoints (paths in [`super::wire`]).
//!
//! Errors map to HTTP statuses in one place ([`ApiError`]). Reading a block from disk runs on
//! the blocking pool, never on the reactor.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::image::manifest::{BlockIdx, Digest, SwarmManifest};
use crate::swarm::coordinator::{CoordError, Coordinator};
use crate::swarm::store::Store;
use crate::transport::wire::{self, MAX_JSON_BODY, ManifestBody, WorkRequest};

/// A swarm whose blocks this host serves.
pub struct Served {
    pub manifest_body: ManifestBody,
    pub store: Arc<Store>,
}

/// What the server answers for.
#[derive(Clone, Default)]
pub struct ServerState {
    /// The coordinator this host runs, if any. Set at run time too: a peer takes over when the
    /// swarm's coordinator is gone.
    coordinator: Arc<std::sync::RwLock<Option<Arc<Coordinator>>>>,
    pub served: Arc<std::sync::RwLock<HashMap<Digest, Arc<Served>>>>,
    pub counters: Arc<Counters>,
}

/// Upload counters, read for summaries and status.
#[derive(Debug, Default)]
pub struct Counters {
    pub blocks_served: AtomicU64,
    pub bytes_served: AtomicU64,
}

impl ServerState {
    /// A state that answers as a coordinator.
    pub fn with_coordinator(c: Arc<Coordinator>) -> ServerState {
        let s = ServerState::default();
        s.set_coordinator(c);
        s
    }

    pub fn set_coordinator(&self, c: Arc<Coordinator>) {
        *self.coordinator.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    pub fn coordinator(&self) -> Option<Arc<Coordinator>> {
        self.coordinator
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn serve_swarm(&self, id: Digest, manifest: &SwarmManifest, store: Arc<Store>) {
        let manifest_body = ManifestBody::new(manifest);
        self.served
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Arc::new(Served {
                    manifest_body,
                    store,
                }),
            );
    }

    fn served(&self, id: &Digest) -> Option<Arc<Served>> {
        self.served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// Why a request failed; the single place errors become statuses.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() || status == StatusCode::BAD_REQUEST {
            tracing::warn!("{self}");
        }
        (status, self.to_string()).into_response()
    }
}

impl From<CoordError> for ApiError {
    fn from(e: CoordError) -> Self {
        match e {
            CoordError::UnknownSwarm(_) => ApiError::NotFound(e.to_string()),
            CoordError::BadRequest(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

fn parse_swarm(id: &str) -> Result<Digest, ApiError> {
    Digest::from_hex(id).map_err(|_| ApiError::BadRequest(format!("invalid swarm id {id:?}")))
}

fn coordinator(state: &ServerState) -> Result<Arc<Coordinator>, ApiError> {
    state
        .coordinator()
        .ok_or_else(|| ApiError::NotFound("this host runs no coordinator".into()))
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn list_swarms(State(state): State<ServerState>) -> Result<Response, ApiError> {
    let list = coordinator(&state)?.list();
    Ok(axum::Json(list).into_response())
}

/// The manifest, gzip-compressed for a client that says it accepts that (see [`ManifestBody`]).
async fn get_manifest(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    headers: header::HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_swarm(&id)?;
    let body = match state.coordinator().and_then(|c| c.manifest_body(&id)) {
        Some(body) => body,
        None => match state.served(&id) {
            Some(s) => s.manifest_body.clone(),
            None => return Err(ApiError::NotFound(format!("no swarm {}", id.hex()))),
        },
    };
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(wire::accepts_gzip);
    if gzip {
        let headers = [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_ENCODING, "gzip"),
        ];
        return Ok((headers, body.gzip).into_response());
    }
    Ok(json_response(body.json))
}

async fn put_manifest(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_swarm(&id)?;
    let coord = coordinator(&state)?;
    let manifest: SwarmManifest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("manifest: {e}")))?;
    manifest
        .validate()
        .map_err(|e| ApiError::BadRequest(format!("manifest: {e}")))?;
    if manifest.swarm_id() != id {
        return Err(ApiError::BadRequest(
            "manifest does not match the swarm id in the path".into(),
        ));
    }
    coord.add_swarm(manifest);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn post_work(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_swarm(&id)?;
    let coord = coordinator(&state)?;
    let req: WorkRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("work: {e}")))?;
    let reply = coord.work(&id, req, Some(remote.ip())).await?;
    Ok(axum::Json(reply).into_response())
}

async fn get_status(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_swarm(&id)?;
    let status = coordinator(&state)?
        .status(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no swarm {}", id.hex())))?;
    Ok(axum::Json(status).into_response())
}

async fn get_block(
    State(state): State<ServerState>,
    Path((id, block)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    let id = parse_swarm(&id)?;
    let served = state
        .served(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no swarm {}", id.hex())))?;
    let data = tokio::task::spawn_blocking(move || served.store.read_block(BlockIdx(block)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("block {block} is not held here")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state.counters.blocks_served.fetch_add(1, Ordering::Relaxed);
    state
        .counters
        .bytes_served
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// The router for a host's state.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/v1/swarms", get(list_swarms))
        .route(
            "/v1/swarms/{id}/manifest",
            get(get_manifest).put(put_manifest),
        )
        .route("/v1/swarms/{id}/work", axum::routing::post(post_work))
        .route("/v1/swarms/{id}/status", get(get_status))
        .route("/v1/swarms/{id}/blocks/{block}", get(get_block))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state)
}

/// Most connections a server holds at once; past this it stops accepting until one closes.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most connections from one address; more are closed at once (one host cannot starve the
/// others by opening idle connections).
pub const MAX_CONNECTIONS_PER_IP: usize = 128;
/// A client must send a whole request head within this long, the first one and every one after
/// it on a kept-alive connection; idle and slow-loris connections are closed after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) accepted.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Longest a handler may run, body read included (a `work` long-poll takes well under a
/// second; a stalled upload of a request body is cut off here).
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Open connections per remote address.
#[derive(Default)]
struct PerIp(std::sync::Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpGuard> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_IP {
            return None;
        }
        *n += 1;
        Some(PerIpGuard(self.clone(), ip))
    }
}

struct PerIpGuard(Arc<PerIp>, IpAddr);

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Binds `addr` and serves until `cancel` fires. Returns the bound address and the task.
///
/// The accept loop holds a permit per connection ([`MAX_CONNECTIONS`]), so a flood waits in
/// the kernel's backlog instead of exhausting file descriptors, and caps connections per
/// address. Each connection speaks HTTP/1.1 with [`HEADER_READ_TIMEOUT`] and
/// [`MAX_HEADER_BYTES`]; handlers run under [`HANDLER_TIMEOUT`] and JSON bodies are capped at
/// [`MAX_JSON_BODY`].
pub async fn start(
    addr: SocketAddr,
    state: ServerState,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(state)
        .layer(axum::middleware::from_fn(authenticate))
        .layer(axum::middleware::from_fn(handler_timeout));
    let task = tokio::spawn(accept_loop(listener, app, cancel));
    Ok((local, task))
}

/// With a secret set: refuses requests without a valid proof of it (401, nothing else) and
/// signs every answer but blocks (see [`super::auth`]).
async fn authenticate(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let Some(secret) = super::auth::secret() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_JSON_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let header = parts
        .headers
        .get(super::auth::HEADER)
        .and_then(|v| v.to_str().ok());
    let nonce = match secret.verify_request(header, parts.method.as_str(), &path, &body) {
        Ok(n) => n,
        Err(e) => {
            let remote = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string());
            tracing::warn!(
                "refused {} {path} from {}: {e}",
                parts.method,
                remote.unwrap_or_default()
            );
            return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
        }
    };
    let resp = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(body),
        ))
        .await;
    if path.contains("/blocks/") {
        // Blocks are checked against the signed manifest's hashes; no signature needed.
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let sig = secret.sign_response(&nonce, parts.status.as_u16(), &body);
    parts.headers.insert(
        super::auth::HEADER,
        sig.parse().expect("hex and spaces are a valid header"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn handler_timeout(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(HANDLER_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long").into_response(),
    }
}

async fn accept_loop(listener: TcpListener, app: Router, cancel: CancellationToken) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_ip = Arc::new(PerIp::default());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (stream, remote) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(guard) = per_ip.enter(remote.ip()) else {
            tracing::debug!("refusing a connection from {remote}: too many from that address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(ConnectInfo(remote))),
        );
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES.max(8192))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::trace!("connection from {remote}: {e}");
            }
            drop((guard, permit));
        });
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}
