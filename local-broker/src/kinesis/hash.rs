//! The 128-bit hash key space and how partition keys map into it.

use md5::{Digest, Md5};

/// An inclusive range of hash keys owned by one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRange {
    pub start: u128,
    pub end: u128,
}

impl HashRange {
    /// The whole key space.
    pub const ALL: HashRange = HashRange {
        start: 0,
        end: u128::MAX,
    };

    /// Whether `key` falls in this range.
    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }

    /// Splits the whole key space into `n` contiguous ranges as AWS does: range `i` starts at
    /// exactly ⌊i·2¹²⁸/n⌋ (4 shards start at multiples of 2¹²⁶).
    pub fn even(n: u32) -> Vec<HashRange> {
        let n = u128::from(n.max(1));
        if n == 1 {
            return vec![HashRange::ALL];
        }
        // 2¹²⁸ = q·n + r, computed from u128::MAX = 2¹²⁸ − 1 without overflowing.
        let (q, r) = match (u128::MAX / n, u128::MAX % n + 1) {
            (q, r) if r == n => (q + 1, 0),
            qr => qr,
        };
        // i·q never overflows (i < n), and i·r < n² fits for any u32 n.
        let start = |i: u128| i * q + i * r / n;
        (0..n)
            .map(|i| HashRange {
                start: start(i),
                end: if i + 1 == n {
                    u128::MAX
                } else {
                    start(i + 1) - 1
                },
            })
            .collect()
    }
}

/// The hash key of a partition key: MD5 of its UTF-8 bytes read as a big-endian integer.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// Parses a decimal hash key, `None` when it is not an integer in `0..=2^128-1`.
pub fn parse_hash_key(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u128>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn even_ranges_tile_the_key_space() {
        for n in [1u32, 2, 3, 4, 7, 100] {
            let ranges = HashRange::even(n);
            assert_eq!(ranges.len(), n as usize);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().unwrap().end, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end + 1, pair[1].start);
            }
        }
    }

    #[test]
    fn even_ranges_start_where_aws_starts_them() {
        let starts: Vec<String> = HashRange::even(4)
            .iter()
            .map(|r| r.start.to_string())
            .collect();
        assert_eq!(
            starts,
            [
                "0",
                "85070591730234615865843651857942052864",
                "170141183460469231731687303715884105728",
                "255211775190703847597530955573826158592",
            ]
        );
        assert_eq!(HashRange::even(2)[1].start, 1u128 << 127);
        assert_eq!(
            HashRange::even(3)[1].start.to_string(),
            "113427455640312821154458202477256070485"
        );
    }

    #[test]
    fn partition_key_hash_matches_md5() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            partition_key_hash("a"),
            0x0cc175b9c0f1b6a831c399e269772661u128
        );
    }

    proptest! {
        #[test]
        fn hash_keys_round_trip(key: u128) {
            prop_assert_eq!(parse_hash_key(&key.to_string()), Some(key));
        }

        #[test]
        fn parse_hash_key_never_panics(text in ".{0,50}") {
            let _ = parse_hash_key(&text);
        }
    }
}
