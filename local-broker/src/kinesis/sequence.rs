//! Sequence numbers: decimal strings, strictly increasing within a shard, never reused.
//!
//! Ours are 56 digits like AWS's, laid out so the broker can find a record from its sequence number
//! without a search: `49` · shard index (12 digits) · record counter (22 digits) · stream epoch
//! (20 digits). The stream epoch (creation time in ms) makes numbers from a deleted stream useless on
//! a re-created one. Within a shard only the counter changes, so numeric order is counter order.

use std::fmt;

/// A decoded sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SequenceNumber {
    pub shard_index: u32,
    /// Position of the record in its shard; records start at 1, 0 is the shard's starting number.
    pub counter: u64,
    pub stream_epoch: i64,
}

impl SequenceNumber {
    /// Parses one of our sequence numbers; `None` for anything else (including numbers that are
    /// syntactically valid but were not issued by this broker).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 56 || !text.starts_with("49") || !text.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(Self {
            shard_index: text[2..14].parse().ok()?,
            counter: text[14..36].parse().ok()?,
            stream_epoch: text[36..56].parse().ok()?,
        })
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every PutRecords result formats one of these; plain digit writing into a fixed buffer
        // costs a fraction of the formatting machinery.
        let mut digits = [b'0'; 56];
        digits[..2].copy_from_slice(b"49");
        write_digits(&mut digits[2..14], u128::from(self.shard_index));
        write_digits(&mut digits[14..36], u128::from(self.counter));
        write_digits(&mut digits[36..56], self.stream_epoch.max(0) as u128);
        // Only ASCII digits were written.
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

/// Writes `value` right-aligned into `out`, which is pre-filled with zeros.
fn write_digits(out: &mut [u8], mut value: u128) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_and_orders_by_counter(shard in 0u32..1_000_000, a: u64, b: u64, epoch in 0i64..i64::MAX) {
            let x = SequenceNumber { shard_index: shard, counter: a, stream_epoch: epoch };
            let y = SequenceNumber { shard_index: shard, counter: b, stream_epoch: epoch };
            let (sx, sy) = (x.to_string(), y.to_string());
            prop_assert_eq!(sx.len(), 56);
            prop_assert_eq!(SequenceNumber::parse(&sx), Some(x));
            // Same length decimal strings compare like the numbers they spell.
            prop_assert_eq!(sx.cmp(&sy), a.cmp(&b));
        }

        #[test]
        fn parse_never_panics(text in ".{0,80}") {
            let _ = SequenceNumber::parse(&text);
        }
    }
}
