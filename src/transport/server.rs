//! The HTTP server every dfpull host runs: blocks for the swarms it holds, and, when it hosts a
//! coordinator, the manifest, `work` and status endpoints (paths in [`super::wire`]).
//!
//! Errors map to HTTP statuses in one place ([`ApiError`]). Reading a block from disk runs on
//! the blocking pool, never on the reactor.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
use crate::transport::wire::{MAX_JSON_BODY, WorkRequest};

/// A swarm whose blocks this host serves.
pub struct Served {
    pub manifest_json: Bytes,
    pub store: Arc<Store>,
}

/// What the server answers for.
#[derive(Clone, Default)]
pub struct ServerState {
    pub coordinator: Option<Arc<Coordinator>>,
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
    pub fn serve_swarm(&self, id: Digest, manifest: &SwarmManifest, store: Arc<Store>) {
        let manifest_json = Bytes::from(serde_json::to_vec(manifest).expect("manifest serializes"));
        self.served
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Arc::new(Served {
                    manifest_json,
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

fn coordinator(state: &ServerState) -> Result<&Arc<Coordinator>, ApiError> {
    state
        .coordinator
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this host runs no coordinator".into()))
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn list_swarms(State(state): State<ServerState>) -> Result<Response, ApiError> {
    let list = coordinator(&state)?.list();
    Ok(axum::Json(list).into_response())
}

async fn get_manifest(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_swarm(&id)?;
    if let Some(json) = state
        .coordinator
        .as_ref()
        .and_then(|c| c.manifest_json(&id))
    {
        return Ok(json_response(json));
    }
    match state.served(&id) {
        Some(s) => Ok(json_response(s.manifest_json.clone())),
        None => Err(ApiError::NotFound(format!("no swarm {}", id.hex()))),
    }
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

/// Binds `addr` and serves until `cancel` fires. Returns the bound address and the task.
pub async fn start(
    addr: SocketAddr,
    state: ServerState,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let shutdown = cancel.cancelled_owned();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("server stopped: {e}");
        }
    });
    Ok((local, task))
}
