//! The block fast path of a host's server.
//!
//! Nearly all a host serves is one request, `GET /v1/swarms/{id}/blocks/{n}`, and nearly all
//! its serving time goes into moving those bytes. So every connection starts here: this module
//! reads request heads itself and answers block requests without hyper. A block that lies on
//! disk in a file nobody else has touched ([`Store::sendable`]) goes out with `sendfile(2)`,
//! from the page cache to the socket without passing through this process: no read into a
//! buffer, no copy into the socket. Any other block (its file may have been changed) is read
//! and hashed again first, as before.
//!
//! At the first request that is anything else (another path, another method, a body, HTTP/1.0,
//! a head it cannot parse), the connection is handed over, with the bytes already read, to
//! hyper and the axum router of `server.rs`, which answer that request and every later one on
//! the connection. A peer fetches blocks over connections of their own, which never carry
//! anything else (`swarm/peer.rs`), so they stay on this path.
//!
//! The rules are hyper's: a request head must arrive whole within [`HEADER_READ_TIMEOUT`] (idle
//! kept-alive connections are closed after it); a head larger than [`MAX_HEADER_BYTES`] goes to
//! hyper, which refuses it. The access check ([`super::auth`]) and the answers (statuses and
//! messages, [`ApiError`]) are the router's.
//!
//! Sending runs on the blocking pool, on a duplicate of the socket's descriptor: `sendfile`
//! may wait for the disk when a block is not in the page cache, which must not stall the
//! reactor. The sender waits for room in the socket with `poll`, for at most
//! [`BLOCK_SEND_TIMEOUT`], and gives up within [`CANCEL_POLL`] of the server being stopped.
//!
//! The block's last byte is held back until the file is checked once more: when another process
//! touched it during the send, the answer is cut short and the connection closed, so bytes
//! changed under the sender never reach a receiver as a whole block (which would then fail its
//! hash there anyway).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::server::{ApiError, HEADER_READ_TIMEOUT, MAX_HEADER_BYTES, ServerState};
use crate::image::manifest::{BlockIdx, Digest};
use crate::swarm::store::{Sendable, Store};

/// Longest one answer may take to leave, block included. A receiver that takes longer than
/// this for one block has long given up on it (its own limit is
/// [`super::client::block_timeout`], a quarter of this for a 1 MiB block).
pub const BLOCK_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a sender waiting for room in a socket looks whether the server was stopped.
pub const CANCEL_POLL: Duration = Duration::from_millis(100);
/// Most headers in a request head this module reads; a head with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// What to do with a connection once this module lets go of it.
pub(super) enum Next {
    /// Close it (the client went away, timed out, or asked to close).
    Close,
    /// Hand it to hyper, with the bytes read so far (in the buffer) replayed first.
    Handoff,
}

/// A parsed block request.
struct BlockRequest {
    /// The request head's length in the buffer.
    head_len: usize,
    /// The path as sent (what the access check signs).
    path: String,
    swarm: String,
    block: u32,
    auth: Option<String>,
    /// The client asked to close the connection after this answer.
    close: bool,
}

enum Head {
    Block(BlockRequest),
    Other,
    Incomplete,
}

/// Answers block requests on `stream` until the client closes, or sends something else.
pub(super) async fn serve(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    state: &ServerState,
    remote: SocketAddr,
    cancel: &CancellationToken,
) -> Next {
    loop {
        let req = match read_head(stream, buf, cancel).await {
            Ok(Head::Block(r)) => r,
            Ok(Head::Other) => return Next::Handoff,
            Ok(Head::Incomplete) | Err(_) => return Next::Close,
        };
        buf.advance(req.head_len);
        match answer(stream, &req, state, remote, cancel).await {
            Ok(()) if !req.close => {}
            Ok(()) => return Next::Close,
            Err(e) => {
                tracing::debug!("block answer to {remote} cut: {e}");
                return Next::Close;
            }
        }
    }
}

/// Reads until the buffer holds a whole request head, within [`HEADER_READ_TIMEOUT`].
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cancel: &CancellationToken,
) -> io::Result<Head> {
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Head::Incomplete if buf.len() < MAX_HEADER_BYTES => {}
                // hyper answers an oversized head (431).
                Head::Incomplete => return Ok(Head::Other),
                head => return Ok(head),
            }
        }
        buf.reserve(4096);
        let n = tokio::select! {
            _ = cancel.cancelled() => return Ok(Head::Incomplete),
            r = tokio::time::timeout_at(deadline, stream.read_buf(buf)) => match r {
                Ok(r) => r?,
                Err(_) => return Ok(Head::Incomplete),
            },
        };
        if n == 0 {
            return Ok(Head::Incomplete);
        }
    }
}

/// Parses the request head at the start of `buf`: a block request this module answers, or
/// anything else.
fn parse(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Incomplete,
        Err(_) => return Head::Other,
    };
    let (Some("GET"), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Head::Other;
    };
    let Some((swarm, block)) = block_path(path) else {
        return Head::Other;
    };
    let mut auth = None;
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if h.value != b"0" {
                return Head::Other;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Head::Other;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|&c| c == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case(super::auth::HEADER) {
            let Ok(v) = std::str::from_utf8(h.value) else {
                return Head::Other;
            };
            if auth.replace(v.to_string()).is_some() {
                return Head::Other;
            }
        }
    }
    Head::Block(BlockRequest {
        head_len,
        path: path.to_string(),
        swarm: swarm.to_string(),
        block,
        auth,
        close,
    })
}

/// `(swarm, block)` of `/v1/swarms/{swarm}/blocks/{block}`; `None` for any other path.
fn block_path(path: &str) -> Option<(&str, u32)> {
    let rest = path.strip_prefix("/v1/swarms/")?;
    let (swarm, block) = rest.split_once("/blocks/")?;
    if swarm.is_empty() || swarm.contains('/') || !block.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((swarm, block.parse().ok()?))
}

/// Answers one block request.
async fn answer(
    stream: &mut TcpStream,
    req: &BlockRequest,
    state: &ServerState,
    remote: SocketAddr,
    cancel: &CancellationToken,
) -> io::Result<()> {
    if let Some(secret) = super::auth::secret() {
        if let Err(e) = secret.verify_request(req.auth.as_deref(), "GET", &req.path, b"") {
            tracing::warn!("refused GET {} from {remote}: {e}", req.path);
            return reply_text(stream, StatusCode::UNAUTHORIZED, &e.to_string(), req.close).await;
        }
    }
    let Ok(id) = Digest::from_hex(&req.swarm) else {
        let e = ApiError::BadRequest(format!("invalid swarm id {:?}", req.swarm));
        return reply_error(stream, e, req.close).await;
    };
    let Some(served) = state.served(&id) else {
        let e = ApiError::NotFound(format!("no swarm {}", id.hex()));
        return reply_error(stream, e, req.close).await;
    };
    let (store, block) = (served.store.clone(), BlockIdx(req.block));
    let len = match store.sendable(block) {
        Some(s) => {
            let sock = stream.as_fd().try_clone_to_owned()?;
            let head = ok_head(s.len, req.close);
            let cancel = cancel.clone();
            tokio::task::spawn_blocking(move || send_block(&sock, &head, &store, &s, &cancel))
                .await
                .map_err(io::Error::other)??;
            state
                .counters
                .blocks_sent_from_disk
                .fetch_add(1, Ordering::Relaxed);
            s.len
        }
        None => {
            // Not held, or its file may have been changed: read it and check it again.
            let read = tokio::task::spawn_blocking(move || store.read_block(block))
                .await
                .map_err(io::Error::other)?;
            let data = match read {
                None => {
                    let e = ApiError::NotFound(format!("block {} is not held here", block.0));
                    return reply_error(stream, e, req.close).await;
                }
                Some(Err(e)) => {
                    return reply_error(stream, ApiError::Internal(e.to_string()), req.close).await;
                }
                Some(Ok(data)) => data,
            };
            let head = ok_head(data.len() as u64, req.close);
            write_timed(stream, &[&head, &data]).await?;
            data.len() as u64
        }
    };
    state.counters.blocks_served.fetch_add(1, Ordering::Relaxed);
    state
        .counters
        .bytes_served
        .fetch_add(len, Ordering::Relaxed);
    Ok(())
}

fn ok_head(len: u64, close: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n{}\r\n",
        if close { "connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

async fn reply_error(stream: &mut TcpStream, e: ApiError, close: bool) -> io::Result<()> {
    let status = e.status();
    e.log();
    reply_text(stream, status, &e.to_string(), close).await
}

/// A short plain-text answer, as axum writes a `(StatusCode, String)`.
async fn reply_text(
    stream: &mut TcpStream,
    status: StatusCode,
    body: &str,
    close: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    write_timed(stream, &[head.as_bytes(), body.as_bytes()]).await
}

/// Writes `parts` within [`BLOCK_SEND_TIMEOUT`].
async fn write_timed(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let write = async {
        for p in parts {
            stream.write_all(p).await?;
        }
        Ok(())
    };
    tokio::time::timeout(BLOCK_SEND_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Sends the answer's head, then the block from its file with `sendfile`, on the blocking
/// pool (see the module docs). The last byte goes only if the file is still untouched.
fn send_block(
    sock: &OwnedFd,
    head: &[u8],
    store: &Store,
    s: &Sendable,
    cancel: &CancellationToken,
) -> io::Result<()> {
    let sock = sock.as_fd();
    let deadline = Instant::now() + BLOCK_SEND_TIMEOUT;
    let wait = || -> io::Result<()> {
        loop {
            if cancel.is_cancelled() {
                return Err(io::Error::other("the server is stopping"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if crate::sys::wait_writable(sock, left.min(CANCEL_POLL))? {
                return Ok(());
            }
        }
    };
    let mut sent = 0;
    while sent < head.len() {
        match crate::sys::send_some(sock, &head[sent..], true) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait()?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let file = store.sendable_file(s);
    let end = s.offset + s.len;
    let mut at = s.offset;
    let mut checked = false;
    while at < end {
        let stop = if checked { end } else { end - 1 };
        if at == stop {
            if !store.still_sendable(s) {
                return Err(io::Error::other(
                    "the block's file was changed while it was sent",
                ));
            }
            checked = true;
            continue;
        }
        let count = usize::try_from(stop - at).unwrap_or(usize::MAX);
        match crate::sys::sendfile_some(sock, file, &mut at, count) {
            Ok(0) => return Err(io::Error::other("the file ends before the block does")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait()?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A connection handed to hyper: the bytes already read are read again first.
pub(super) struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    pub(super) fn new(prefix: Bytes, inner: TcpStream) -> Rewind {
        Rewind { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(head: &str) -> BlockRequest {
        match parse(head.as_bytes()) {
            Head::Block(r) => r,
            Head::Other => panic!("not a block request: {head:?}"),
            Head::Incomplete => panic!("incomplete: {head:?}"),
        }
    }

    fn is_other(head: &str) -> bool {
        matches!(parse(head.as_bytes()), Head::Other)
    }

    #[test]
    fn block_requests_are_told_from_everything_else() {
        let id = "ab".repeat(32);
        let head = format!("GET /v1/swarms/{id}/blocks/17 HTTP/1.1\r\nhost: x\r\n\r\nGET /next");
        let r = block(&head);
        assert_eq!(
            (r.swarm.as_str(), r.block, r.close),
            (id.as_str(), 17, false)
        );
        assert_eq!(r.head_len, head.find("GET /next").unwrap());
        assert_eq!(r.auth, None);

        let r = block(&format!(
            "GET /v1/swarms/{id}/blocks/0 HTTP/1.1\r\nConnection: keep-alive, Close\r\n\
             X-Dfpull-Auth: v1 1 2 3\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(r.close);
        assert_eq!(r.auth.as_deref(), Some("v1 1 2 3"));

        // Anything else goes to hyper.
        for head in [
            format!("GET /v1/swarms/{id}/manifest HTTP/1.1\r\n\r\n"),
            format!("POST /v1/swarms/{id}/blocks/1 HTTP/1.1\r\n\r\n"),
            format!("HEAD /v1/swarms/{id}/blocks/1 HTTP/1.1\r\n\r\n"),
            format!("GET /v1/swarms/{id}/blocks/1 HTTP/1.0\r\n\r\n"),
            format!("GET /v1/swarms/{id}/blocks/1?x=1 HTTP/1.1\r\n\r\n"),
            format!("GET /v1/swarms/{id}/blocks/+1 HTTP/1.1\r\n\r\n"),
            format!("GET /v1/swarms/{id}/blocks/99999999999 HTTP/1.1\r\n\r\n"),
            "GET /v1/swarms/a/b/blocks/1 HTTP/1.1\r\n\r\n".to_string(),
            format!("GET /v1/swarms/{id}/blocks/1 HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello"),
            format!("GET /v1/swarms/{id}/blocks/1 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"),
            format!(
                "GET /v1/swarms/{id}/blocks/1 HTTP/1.1\r\nx-dfpull-auth: a\r\nx-dfpull-auth: b\r\n\r\n"
            ),
            "GARBAGE\r\n\r\n".to_string(),
        ] {
            assert!(is_other(&head), "{head:?}");
        }
        assert!(matches!(
            parse(format!("GET /v1/swarms/{id}/blocks/1 HTTP/1.1\r\nhost").as_bytes()),
            Head::Incomplete
        ));
    }
}
