//! Shard iterators: opaque, signed tokens naming a position in a shard.
//!
//! A token carries the stream (name and creation epoch), the shard, the next record counter to read
//! and when it was issued. It is MACed with a per-broker secret so a client cannot forge or alter
//! one (`InvalidArgumentException`), and it expires five minutes after issue
//! (`ExpiredIteratorException`), as on AWS.

use crate::http::error::{ApiError, ApiResult};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long an iterator stays valid.
pub const ITERATOR_LIFETIME_MS: i64 = 5 * 60 * 1000;
const MAC_LEN: usize = 16;
const VERSION: u8 = 1;

/// A decoded iterator position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPosition {
    pub stream_name: String,
    pub stream_epoch: i64,
    pub shard_index: u32,
    /// Counter of the next record to return.
    pub next_counter: u64,
    pub issued_at_ms: i64,
}

/// Signs and checks iterator tokens.
pub struct IteratorCodec {
    key: [u8; 32],
}

impl IteratorCodec {
    /// A codec with a fresh random secret: iterators do not survive a broker restart unless the
    /// secret is persisted.
    pub fn new() -> Self {
        Self {
            key: rand::random(),
        }
    }

    /// A codec with a persisted secret, so iterators stay valid across restarts.
    pub fn with_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        // HMAC accepts keys of any length, so construction cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Encodes a position as a token.
    pub fn encode(&self, position: &ShardPosition) -> String {
        let mut payload = Vec::with_capacity(29 + position.stream_name.len() + MAC_LEN);
        payload.push(VERSION);
        payload.extend_from_slice(&position.stream_epoch.to_be_bytes());
        payload.extend_from_slice(&position.shard_index.to_be_bytes());
        payload.extend_from_slice(&position.next_counter.to_be_bytes());
        payload.extend_from_slice(&position.issued_at_ms.to_be_bytes());
        payload.extend_from_slice(position.stream_name.as_bytes());
        let mac = self.mac(&payload);
        payload.extend_from_slice(&mac);
        B64.encode(payload)
    }

    /// Decodes and authenticates a token; checks expiry against `now_ms`.
    pub fn decode(&self, token: &str, now_ms: i64) -> ApiResult<ShardPosition> {
        let invalid = || ApiError::invalid_argument("Invalid ShardIterator.");
        let raw = B64.decode(token).map_err(|_| invalid())?;
        if raw.len() < 29 + MAC_LEN + 1 || raw[0] != VERSION {
            return Err(invalid());
        }
        let (payload, mac) = raw.split_at(raw.len() - MAC_LEN);
        // Constant-time comparison through the hmac crate's verifier.
        let mut verifier = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        verifier.update(payload);
        verifier.verify_truncated_left(mac).map_err(|_| invalid())?;
        let take8 = |at: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            b
        };
        let mut idx = [0u8; 4];
        idx.copy_from_slice(&payload[9..13]);
        let position = ShardPosition {
            stream_epoch: i64::from_be_bytes(take8(1)),
            shard_index: u32::from_be_bytes(idx),
            next_counter: u64::from_be_bytes(take8(13)),
            issued_at_ms: i64::from_be_bytes(take8(21)),
            stream_name: String::from_utf8(payload[29..].to_vec()).map_err(|_| invalid())?,
        };
        if now_ms - position.issued_at_ms > ITERATOR_LIFETIME_MS {
            return Err(ApiError::new(
                "ExpiredIteratorException",
                format!(
                    "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {} milliseconds.",
                    position.issued_at_ms, now_ms, ITERATOR_LIFETIME_MS
                ),
            ));
        }
        Ok(position)
    }
}

impl Default for IteratorCodec {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn position() -> ShardPosition {
        ShardPosition {
            stream_name: "orders".into(),
            stream_epoch: 1_700_000_000_000,
            shard_index: 3,
            next_counter: 42,
            issued_at_ms: 1_700_000_100_000,
        }
    }

    #[test]
    fn round_trips_within_lifetime() {
        let codec = IteratorCodec::new();
        let token = codec.encode(&position());
        assert!(token.len() <= 512);
        assert_eq!(
            codec.decode(&token, 1_700_000_100_000 + 1000).unwrap(),
            position()
        );
    }

    #[test]
    fn expires_after_five_minutes() {
        let codec = IteratorCodec::new();
        let token = codec.encode(&position());
        let err = codec
            .decode(&token, 1_700_000_100_000 + ITERATOR_LIFETIME_MS + 1)
            .unwrap_err();
        assert_eq!(err.code, "ExpiredIteratorException");
    }

    #[test]
    fn tokens_from_another_broker_are_rejected() {
        let token = IteratorCodec::new().encode(&position());
        let err = IteratorCodec::new().decode(&token, 0).unwrap_err();
        assert_eq!(err.code, "InvalidArgumentException");
    }

    proptest! {
        #[test]
        fn any_altered_byte_is_rejected(at in 0usize..40, flip in 1u8..=255) {
            let codec = IteratorCodec::new();
            let mut raw = B64.decode(codec.encode(&position())).unwrap();
            let at = at % raw.len();
            raw[at] ^= flip;
            let err = codec.decode(&B64.encode(raw), 1_700_000_100_000).unwrap_err();
            prop_assert_eq!(err.code, "InvalidArgumentException");
        }

        #[test]
        fn garbage_never_panics(token in ".{0,600}") {
            let _ = IteratorCodec::new().decode(&token, 0);
        }
    }
}
