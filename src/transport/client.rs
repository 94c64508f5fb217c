//! The HTTP client side: fetching manifests and blocks, and the peer's `work` calls. Every call
//! has a named timeout.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::image::manifest::{Digest, SwarmManifest};
use crate::transport::wire::{self, SwarmList, SwarmStatus, WorkReply, WorkRequest};

/// Connecting to any host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A control call (manifest, work, status); `work` may long-poll for a fraction of this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The floor of a block download's timeout; larger blocks get more (see [`block_timeout`]).
pub const BLOCK_TIMEOUT_MIN: Duration = Duration::from_secs(15);

/// Largest manifest body a peer reads. A manifest holds a 64-hex-digit hash per block (about 67
/// bytes of JSON each) plus the archives' inline tar headers: a default-sized swarm (about
/// [`TARGET_BLOCKS`](crate::image::manifest::TARGET_BLOCKS) blocks) needs well under 1 MiB, and
/// 64 MiB still holds about a million blocks (64 GiB at the smallest explicit block size). A host
/// that sends more is refused rather than allowed to make the peer allocate without bound.
pub const MAX_MANIFEST_BODY: usize = 64 << 20;
/// Largest reply to the other control calls (swarm list, `work`, status): what a server accepts
/// as a JSON body ([`wire::MAX_JSON_BODY`]); these replies are far smaller.
pub const MAX_REPLY_BODY: usize = wire::MAX_JSON_BODY;
/// How much of an error reply's body a [`ClientError::Status`] shows.
const ERROR_BODY_SHOWN: usize = 200;

/// How much of a reply body [`Client::send`] reads.
#[derive(Debug, Clone, Copy)]
enum BodyCap {
    /// Fail with [`ClientError::Invalid`] once the body is longer than this.
    Fail(usize),
    /// Keep at most this many bytes and stop reading: for a block, whose length (and hash) the
    /// caller checks, so a longer body is refused there as corrupt.
    Truncate(usize),
}

/// What a call expects of its reply.
#[derive(Debug, Clone, Copy)]
struct Reply {
    /// With a secret set, the reply must be signed.
    signed: bool,
    cap: BodyCap,
    /// Ask for gzip (`Accept-Encoding`) and inflate a reply that comes so.
    gzip: bool,
}

impl Reply {
    fn signed(cap: BodyCap) -> Reply {
        Reply {
            signed: true,
            cap,
            gzip: false,
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: invalid reply: {message}")]
    Invalid { url: String, message: String },
}

impl ClientError {
    /// True when the host could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Http { source, .. } if source.is_connect() || source.is_timeout())
    }
}

/// A block of `len` bytes should arrive at 1 MiB/s at the very least.
pub fn block_timeout(len: u64) -> Duration {
    BLOCK_TIMEOUT_MIN.max(Duration::from_secs(len >> 20))
}

/// A shared HTTP client (connection pooling across calls).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // Below the server's HEADER_READ_TIMEOUT, so a pooled connection is never reused just
            // as the server closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .expect("HTTP client builds");
        Client { http }
    }

    /// Sends a request; with a secret set it carries the proof and (`signed`) the answer must
    /// be signed. Returns the body of a 2xx answer.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        reply: Reply,
    ) -> Result<Bytes, ClientError> {
        let Reply {
            signed,
            cap,
            gzip: accept_gzip,
        } = reply;
        let (resp, nonce) = self
            .request(method, url, body, timeout, accept_gzip)
            .await?;
        let status = resp.status();
        let sig = resp
            .headers()
            .get(super::auth::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let gzipped = accept_gzip
            && resp
                .headers()
                .get(reqwest::header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = read_body(resp, cap, url).await?;
        if let (Some(secret), Some(nonce), true) = (super::auth::secret(), nonce, signed) {
            secret
                .verify_response(sig.as_deref(), &nonce, status.as_u16(), &body)
                .map_err(|e| ClientError::Invalid {
                    url: url.to_string(),
                    message: e.to_string(),
                })?;
        }
        if !status.is_success() {
            return Err(status_error(url, status, &body));
        }
        if gzipped {
            // The signature covers the bytes sent; the cap applies again once inflated.
            return gunzip(&body, cap, url);
        }
        Ok(body)
    }

    /// Sends a request (with a secret set, carrying the proof of it) and returns the answer
    /// with its body still to read, and the nonce its signature is made over.
    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        accept_gzip: bool,
    ) -> Result<(reqwest::Response, Option<String>), ClientError> {
        let mut req = self.http.request(method.clone(), url).timeout(timeout);
        if accept_gzip {
            req = req.header(reqwest::header::ACCEPT_ENCODING, "gzip");
        }
        let mut nonce = None;
        if let Some(secret) = super::auth::secret() {
            let path = url
                .find("://")
                .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
                .unwrap_or("/");
            let (header, n) =
                secret.sign_request(method.as_str(), path, body.as_deref().unwrap_or_default());
            req = req.header(super::auth::HEADER, header);
            nonce = Some(n);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req.send().await.map_err(http_error(url))?;
        Ok((resp, nonce))
    }

    async fn get(&self, url: &str, timeout: Duration, max: usize) -> Result<Bytes, ClientError> {
        self.send(
            reqwest::Method::GET,
            url,
            None,
            timeout,
            Reply::signed(BodyCap::Fail(max)),
        )
        .await
    }

    /// A signed control call with a JSON body; its reply is capped at [`MAX_REPLY_BODY`].
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Bytes, ClientError> {
        self.send(
            method,
            url,
            Some(body),
            CALL_TIMEOUT,
            Reply::signed(BodyCap::Fail(MAX_REPLY_BODY)),
        )
        .await
    }

    fn decode<T: serde::de::DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Invalid {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    pub async fn list_swarms(&self, base: &str) -> Result<SwarmList, ClientError> {
        let url = format!("{base}{}", wire::swarms_path());
        let body = self.get(&url, CALL_TIMEOUT, MAX_REPLY_BODY).await?;
        Self::decode(&url, &body)
    }

    /// Fetches a manifest and checks it: valid, and its id is the one asked for (the id is the
    /// manifest's own sha256, so a host cannot hand out another manifest under this id).
    pub async fn manifest(&self, base: &str, swarm: &Digest) -> Result<SwarmManifest, ClientError> {
        let url = format!("{base}{}", wire::manifest_path(swarm));
        let body = self
            .send(
                reqwest::Method::GET,
                &url,
                None,
                CALL_TIMEOUT,
                Reply {
                    gzip: true,
                    ..Reply::signed(BodyCap::Fail(MAX_MANIFEST_BODY))
                },
            )
            .await?;
        let m: SwarmManifest = Self::decode(&url, &body)?;
        m.validate().map_err(|e| ClientError::Invalid {
            url: url.clone(),
            message: e.to_string(),
        })?;
        if m.swarm_id() != *swarm {
            return Err(ClientError::Invalid {
                url,
                message: "manifest does not match its swarm id".into(),
            });
        }
        Ok(m)
    }

    pub async fn put_manifest(
        &self,
        base: &str,
        manifest: &SwarmManifest,
    ) -> Result<(), ClientError> {
        let url = format!("{base}{}", wire::manifest_path(&manifest.swarm_id()));
        let body = serde_json::to_vec(manifest).expect("manifest serializes");
        self.call(reqwest::Method::PUT, &url, body).await?;
        Ok(())
    }

    pub async fn work(
        &self,
        base: &str,
        swarm: &Digest,
        req: &WorkRequest,
    ) -> Result<WorkReply, ClientError> {
        let url = format!("{base}{}", wire::work_path(swarm));
        let body = serde_json::to_vec(req).expect("work request serializes");
        let reply = self.call(reqwest::Method::POST, &url, body).await?;
        Self::decode(&url, &reply)
    }

    pub async fn status(&self, base: &str, swarm: &Digest) -> Result<SwarmStatus, ClientError> {
        let url = format!("{base}{}", wire::status_path(swarm));
        let body = self.get(&url, CALL_TIMEOUT, MAX_REPLY_BODY).await?;
        Self::decode(&url, &body)
    }

    /// Downloads one block (unverified: the caller checks it against the manifest), handing
    /// each chunk of the body to `sink` as it arrives, so that it can be hashed while still in
    /// the CPU's cache. At most `len + 1` bytes are handed over, so a longer body is kept just
    /// long enough to fail the length check.
    pub async fn block(
        &self,
        url: &str,
        len: u64,
        mut sink: impl FnMut(Bytes),
    ) -> Result<(), ClientError> {
        // Blocks are checked against the signed manifest's hashes; no signature needed.
        let (mut resp, _) = self
            .request(reqwest::Method::GET, url, None, block_timeout(len), false)
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_body(resp, BodyCap::Truncate(ERROR_BODY_SHOWN), url).await?;
            return Err(status_error(url, status, &body));
        }
        let mut room = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(1);
        while let Some(chunk) = resp.chunk().await.map_err(http_error(url))? {
            if chunk.len() >= room {
                sink(chunk.slice(..room));
                break;
            }
            room -= chunk.len();
            sink(chunk);
        }
        Ok(())
    }
}

/// The error for a request to `url` that failed in transport (connecting, sending, reading).
fn http_error(url: &str) -> impl FnOnce(reqwest::Error) -> ClientError + '_ {
    move |source| ClientError::Http {
        url: url.to_string(),
        source,
    }
}

/// The error for an answer that is not a success, with the start of its body.
fn status_error(url: &str, status: reqwest::StatusCode, body: &[u8]) -> ClientError {
    ClientError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_SHOWN)])
            .trim()
            .to_string(),
    }
}

/// Inflates a gzip reply body, never to more than `cap` allows.
fn gunzip(body: &[u8], cap: BodyCap, url: &str) -> Result<Bytes, ClientError> {
    use std::io::Read as _;
    let (BodyCap::Fail(max) | BodyCap::Truncate(max)) = cap;
    let invalid = |message: String| ClientError::Invalid {
        url: url.to_string(),
        message,
    };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| invalid(format!("bad gzip body: {e}")))?;
    if out.len() > max {
        return Err(invalid(format!(
            "the reply body is larger than {max} bytes once inflated"
        )));
    }
    Ok(out.into())
}

/// Reads a reply body chunk by chunk, never holding more than `cap` allows.
async fn read_body(
    mut resp: reqwest::Response,
    cap: BodyCap,
    url: &str,
) -> Result<Bytes, ClientError> {
    let (max, truncate) = match cap {
        BodyCap::Fail(max) => (max, false),
        BodyCap::Truncate(max) => (max, true),
    };
    let too_large = || ClientError::Invalid {
        url: url.to_string(),
        message: format!("the reply body is larger than {max} bytes"),
    };
    let announced = resp.content_length();
    if !truncate && announced.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    // The announced length is only a hint (and bounded by `max`); the loop enforces the cap.
    let mut body = BytesMut::with_capacity(announced.map_or(0, |n| n.min(max as u64) as usize));
    while let Some(chunk) = resp.chunk().await.map_err(http_error(url))? {
        let room = max - body.len();
        if chunk.len() > room {
            if !truncate {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
