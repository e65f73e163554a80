//! The hot tail: the most recently appended record-log frames, kept in memory up to a byte
//! budget so consumers reading at the tip never touch the disk.
//!
//! The log is append-only, so "recent" is simply "at the highest log positions": the cache is a
//! queue of appended frames in position order, and making room means dropping from the front.
//! One cache serves every shard, so the budget bounds the broker's memory for record bodies
//! however many shards there are. It owns nothing else; a miss is the caller's to serve from
//! the segment files.

use bytes::Bytes;
use std::collections::VecDeque;

/// Recently appended frames, at most `budget` bytes of them.
pub struct TailCache {
    budget: usize,
    /// `(log position of the frame's first byte, the frame)`, in position order.
    frames: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl TailCache {
    /// An empty cache that will hold at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            frames: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps the frame that starts at log position `position`, dropping the oldest frames to stay
    /// within budget. A frame larger than the whole budget is not kept.
    pub fn insert(&mut self, position: u64, frame: Bytes) {
        if frame.len() > self.budget {
            return;
        }
        self.bytes += frame.len();
        self.frames.push_back((position, frame));
        while self.bytes > self.budget {
            let Some((_, oldest)) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
        }
    }

    /// The `len` bytes at log position `position`, if one cached frame holds all of them.
    pub fn get(&self, position: u64, len: usize) -> Option<Bytes> {
        let after = self.frames.partition_point(|(start, _)| *start <= position);
        let (start, frame) = self.frames.get(after.checked_sub(1)?)?;
        let from = usize::try_from(position - start).ok()?;
        let to = from.checked_add(len)?;
        (to <= frame.len()).then(|| frame.slice(from..to))
    }

    /// Bytes held now (never more than the budget).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_frames_within_budget() {
        let mut cache = TailCache::new(10);
        cache.insert(0, Bytes::from_static(b"aaaa"));
        cache.insert(4, Bytes::from_static(b"bbbb"));
        assert_eq!(cache.get(5, 2).as_deref(), Some(&b"bb"[..]));
        cache.insert(8, Bytes::from_static(b"cccc"));
        assert_eq!(cache.bytes(), 8);
        assert_eq!(cache.get(0, 1), None, "the oldest frame made room");
        assert_eq!(cache.get(8, 4).as_deref(), Some(&b"cccc"[..]));
        assert_eq!(cache.get(10, 4), None, "runs past the frame");
        cache.insert(12, Bytes::from(vec![0; 11]));
        assert_eq!(cache.get(12, 1), None, "larger than the budget");
        assert!(cache.bytes() <= 10);
    }
}
