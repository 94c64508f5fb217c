//! Access control with a shared secret (`--secret` / `DFPULL_SECRET`).
//!
//! Every request carries proof that its sender knows the secret, never the secret itself: an
//! HMAC-SHA256, keyed by the secret, over the method, the path, a timestamp, a random nonce
//! and the sha256 of the body, in the `x-dfpull-auth` header:
//!
//! ```text
//! x-dfpull-auth: v1 <unix milliseconds> <nonce, 16 hex digits> <mac, 64 hex digits>
//! ```
//!
//! A server with a secret answers a request without a valid proof (missing, wrong, or more
//! than [`MAX_SKEW`] away from its clock) with 401 and nothing else. Every answer it gives is
//! signed in turn, over the request's nonce, the status and the sha256 of the body, so a host
//! that does not know the secret cannot pose as a seeder or coordinator: a client with a secret
//! rejects an unsigned or wrongly signed answer. Blocks need no signature of their own: each is
//! checked against the sha256 in the (signed) manifest.
//!
//! What this does not do: encrypt. Anyone on the path can read the blocks going by, and can
//! replay a captured request within [`MAX_SKEW`] (which only fetches the same bytes again).
//!
//! The secret is process-wide ([`set_secret`], once at start-up from the command line), as a
//! process belongs to one set of hosts; the client and the server both read it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The header that carries a request's proof or an answer's signature.
pub const HEADER: &str = "x-dfpull-auth";
/// How far a request's timestamp may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

type HmacSha256 = hmac::Hmac<Sha256>;

/// A shared secret, kept as the key derived from it.
#[derive(Clone)]
pub struct Secret {
    key: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(secret: &str) -> Secret {
        // A fixed prefix makes the key specific to this use of the secret.
        let mut h = crate::image::manifest::Hasher::new();
        h.update(b"dfpull auth v1\0");
        h.update(secret.as_bytes());
        Secret { key: h.finish().0 }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("any key length");
        for p in parts {
            m.update(p);
            m.update(b"\n");
        }
        m.finalize().into_bytes().into()
    }

    /// The header value for a request.
    pub fn sign_request(&self, method: &str, path: &str, body: &[u8]) -> (String, String) {
        let ts = now_ms().to_string();
        let nonce = format!("{:016x}", rand::random::<u64>());
        let body = crate::image::manifest::Digest::of(body).hex();
        let mac = self.mac(&[
            b"req",
            method.as_bytes(),
            path.as_bytes(),
            ts.as_bytes(),
            nonce.as_bytes(),
            body.as_bytes(),
        ]);
        (format!("v1 {ts} {nonce} {}", hex::encode(mac)), nonce)
    }

    /// Checks a request's header; returns its nonce (to sign the answer with) when valid.
    pub fn verify_request(
        &self,
        header: Option<&str>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<String, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let mut it = header.split(' ');
        let (Some("v1"), Some(ts), Some(nonce), Some(mac), None) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(AuthError::Malformed);
        };
        let t: u64 = ts.parse().map_err(|_| AuthError::Malformed)?;
        if now_ms().abs_diff(t) > MAX_SKEW.as_millis() as u64 {
            return Err(AuthError::Stale);
        }
        let body = crate::image::manifest::Digest::of(body).hex();
        let want = self.mac(&[
            b"req",
            method.as_bytes(),
            path.as_bytes(),
            ts.as_bytes(),
            nonce.as_bytes(),
            body.as_bytes(),
        ]);
        check_mac(mac, &want)?;
        Ok(nonce.to_string())
    }

    /// The header value for an answer to the request with `nonce`.
    pub fn sign_response(&self, nonce: &str, status: u16, body: &[u8]) -> String {
        let body = crate::image::manifest::Digest::of(body).hex();
        let mac = self.mac(&[
            b"resp",
            nonce.as_bytes(),
            status.to_string().as_bytes(),
            body.as_bytes(),
        ]);
        format!("v1 {}", hex::encode(mac))
    }

    pub fn verify_response(
        &self,
        header: Option<&str>,
        nonce: &str,
        status: u16,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let mac = header
            .and_then(|h| h.strip_prefix("v1 "))
            .ok_or(AuthError::Unsigned)?;
        let body = crate::image::manifest::Digest::of(body).hex();
        let want = self.mac(&[
            b"resp",
            nonce.as_bytes(),
            status.to_string().as_bytes(),
            body.as_bytes(),
        ]);
        check_mac(mac, &want)
    }
}

fn check_mac(got_hex: &str, want: &[u8; 32]) -> Result<(), AuthError> {
    let mut got = [0u8; 32];
    hex::decode_to_slice(got_hex, &mut got).map_err(|_| AuthError::Malformed)?;
    // Constant time: compare every byte whatever the first difference.
    let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 {
        Ok(())
    } else {
        Err(AuthError::BadMac)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a proof or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no proof of the secret (is --secret set on every host?)")]
    Missing,
    #[error("malformed proof of the secret")]
    Malformed,
    #[error("the request's clock is more than 5 minutes off")]
    Stale,
    #[error("wrong secret")]
    BadMac,
    #[error("the answer is not signed with the secret (a host without the secret answered)")]
    Unsigned,
}

static SECRET: OnceLock<Option<Secret>> = OnceLock::new();

/// Sets this process's secret. Later calls are ignored (the first one wins).
pub fn set_secret(secret: Option<&str>) {
    let _ = SECRET.set(secret.filter(|s| !s.is_empty()).map(Secret::new));
}

/// This process's secret, if one was set.
pub fn secret() -> Option<&'static Secret> {
    SECRET.get().and_then(Option::as_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_verify_only_with_the_same_secret_and_contents() {
        let s = Secret::new("hunter2");
        let (h, nonce) = s.sign_request("POST", "/v1/swarms/ab/work", b"{}");
        assert_eq!(
            s.verify_request(Some(&h), "POST", "/v1/swarms/ab/work", b"{}")
                .unwrap(),
            nonce
        );
        let other = Secret::new("hunter3");
        assert_eq!(
            other.verify_request(Some(&h), "POST", "/v1/swarms/ab/work", b"{}"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            s.verify_request(Some(&h), "POST", "/v1/swarms/ab/work", b"{ }"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            s.verify_request(Some(&h), "GET", "/v1/swarms/ab/work", b"{}"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            s.verify_request(Some(&h), "POST", "/v1/swarms/cd/work", b"{}"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            s.verify_request(None, "GET", "/", b""),
            Err(AuthError::Missing)
        );
        assert_eq!(
            s.verify_request(Some("v1 1 2"), "GET", "/", b""),
            Err(AuthError::Malformed)
        );
        let old = format!("v1 1000 {nonce} {}", "00".repeat(32));
        assert_eq!(
            s.verify_request(Some(&old), "GET", "/", b""),
            Err(AuthError::Stale)
        );
        assert!(!h.contains("hunter2"), "the secret itself never travels");
    }

    #[test]
    fn responses_are_bound_to_the_request_status_and_body() {
        let s = Secret::new("k");
        let sig = s.sign_response("n1", 200, b"body");
        assert!(s.verify_response(Some(&sig), "n1", 200, b"body").is_ok());
        assert_eq!(
            s.verify_response(Some(&sig), "n2", 200, b"body"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            s.verify_response(Some(&sig), "n1", 404, b"body"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            s.verify_response(Some(&sig), "n1", 200, b"bodx"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            s.verify_response(None, "n1", 200, b"body"),
            Err(AuthError::Unsigned)
        );
        assert_eq!(
            Secret::new("j").verify_response(Some(&sig), "n1", 200, b"body"),
            Err(AuthError::BadMac)
        );
    }
}
