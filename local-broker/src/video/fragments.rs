//! The fragments of one stream: what PutMedia stored, in fragment-number order, with retention,
//! and a signal consumers tail on.
//!
//! Fragments are kept in memory (the broker's storage layer logs opaque Kinesis record batches
//! and metadata; video fragments are not written there yet), so they do not survive a restart.

use super::mkv::Tracks;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// With `DataRetentionInHours` 0 KVS still serves consumers from a short host buffer: the
/// last 5 minutes, at most 200 MB.
pub const BUFFER_WITHOUT_RETENTION_MILLIS: i64 = 5 * 60 * 1000;
pub const BUFFER_WITHOUT_RETENTION_BYTES: u64 = 200 * 1024 * 1024;

/// Fragment numbers are 47 decimal digits, like the ones KVS hands out: this prefix, then the
/// fragment's sequence number zero-padded to 36 digits.
const NUMBER_PREFIX: &str = "91343852333";
const NUMBER_DIGITS: usize = 47;

/// Formats a fragment sequence number as its wire form.
pub fn format_number(sequence: u64) -> String {
    format!("{NUMBER_PREFIX}{sequence:036}")
}

/// Parses a wire fragment number back into its sequence number.
pub fn parse_number(text: &str) -> Option<u64> {
    if text.len() != NUMBER_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.strip_prefix(NUMBER_PREFIX)?.parse().ok()
}

/// One frame of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: u64,
    /// Presentation time relative to the fragment's producer timestamp, in milliseconds.
    pub offset_millis: i64,
    /// SimpleBlock flags as the producer sent them (keyframe `0x80`).
    pub flags: u8,
    pub data: Bytes,
}

impl Frame {
    pub fn is_keyframe(&self) -> bool {
        self.flags & 0x80 != 0
    }
}

/// A stored fragment: one Cluster of a PutMedia body.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// Sequence number; [`format_number`] gives the wire form.
    pub sequence: u64,
    /// Position in its stream: 0 for the first fragment ever stored, counting expired ones
    /// (HLS media sequence numbers).
    pub ordinal: u64,
    /// Epoch milliseconds the producer assigned to the fragment's start.
    pub producer_millis: i64,
    /// Epoch milliseconds when the broker began receiving it.
    pub server_millis: i64,
    pub duration_millis: i64,
    /// Bytes of the Cluster as received.
    pub size_bytes: u64,
    pub tracks: Arc<Tracks>,
    /// Frames in the order the producer sent them (decode order).
    pub frames: Vec<Frame>,
    /// Producer metadata Tags sent after the Cluster.
    pub metadata: Vec<(String, String)>,
}

impl Fragment {
    pub fn number(&self) -> String {
        format_number(self.sequence)
    }

    /// Producer time (epoch ms) of the latest frame.
    pub fn latest_frame_millis(&self) -> i64 {
        let latest = self
            .frames
            .iter()
            .map(|f| f.offset_millis)
            .max()
            .unwrap_or(0);
        self.producer_millis.saturating_add(latest)
    }
}

#[derive(Default)]
struct Held {
    fragments: VecDeque<Arc<Fragment>>,
    bytes: u64,
    appended: u64,
}

/// The fragments of one stream, oldest first.
pub struct FragmentStore {
    held: Mutex<Held>,
    /// The sequence number of the newest fragment; consumers wait on changes.
    newest: watch::Sender<u64>,
}

impl Default for FragmentStore {
    fn default() -> Self {
        Self {
            held: Mutex::default(),
            newest: watch::Sender::new(0),
        }
    }
}

impl FragmentStore {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a fragment (assigning its ordinal) and wakes consumers tailing the stream.
    pub fn append(&self, mut fragment: Fragment) {
        let sequence = fragment.sequence;
        {
            let mut held = self.held();
            fragment.ordinal = held.appended;
            held.appended += 1;
            held.bytes += fragment.size_bytes;
            held.fragments.push_back(Arc::new(fragment));
        }
        self.newest.send_replace(sequence);
    }

    /// Drops fragments past retention: older than `retention_hours`, or with 0 hours older than
    /// the host buffer allows.
    pub fn expire(&self, now_millis: i64, retention_hours: u32) {
        let mut held = self.held();
        let keep_millis = if retention_hours == 0 {
            BUFFER_WITHOUT_RETENTION_MILLIS
        } else {
            i64::from(retention_hours) * 3_600_000
        };
        while let Some(oldest) = held.fragments.front() {
            let too_old = oldest.server_millis < now_millis - keep_millis;
            let too_big = retention_hours == 0 && held.bytes > BUFFER_WITHOUT_RETENTION_BYTES;
            if !(too_old || too_big) {
                break;
            }
            held.bytes -= oldest.size_bytes;
            held.fragments.pop_front();
        }
    }

    /// Every fragment held, oldest first.
    pub fn all(&self) -> Vec<Arc<Fragment>> {
        self.held().fragments.iter().cloned().collect()
    }

    /// Fragments with a sequence number above `sequence`, oldest first.
    pub fn after(&self, sequence: u64) -> Vec<Arc<Fragment>> {
        let held = self.held();
        let start = held.fragments.partition_point(|f| f.sequence <= sequence);
        held.fragments.range(start..).cloned().collect()
    }

    /// The fragment with this sequence number.
    pub fn get(&self, sequence: u64) -> Option<Arc<Fragment>> {
        let held = self.held();
        let at = held
            .fragments
            .binary_search_by_key(&sequence, |f| f.sequence)
            .ok()?;
        held.fragments.get(at).cloned()
    }

    /// The newest fragment.
    pub fn newest(&self) -> Option<Arc<Fragment>> {
        self.held().fragments.back().cloned()
    }

    /// A receiver that changes whenever a fragment is appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(sequence: u64, server_millis: i64) -> Fragment {
        Fragment {
            sequence,
            ordinal: 0,
            producer_millis: server_millis,
            server_millis,
            duration_millis: 1000,
            size_bytes: 10,
            tracks: Arc::new(Tracks {
                tracks: Vec::new(),
                raw: Bytes::new(),
            }),
            frames: Vec::new(),
            metadata: Vec::new(),
        }
    }

    #[test]
    fn fragment_numbers_are_47_digits_and_round_trip() {
        let number = format_number(42);
        assert_eq!(number.len(), 47);
        assert_eq!(parse_number(&number), Some(42));
        assert_eq!(parse_number("42"), None);
        assert!(format_number(9) < format_number(10));
    }

    #[test]
    fn retention_drops_old_fragments_and_zero_keeps_a_short_buffer() {
        let store = FragmentStore::default();
        store.append(fragment(1, 0));
        store.append(fragment(2, 3_600_000));
        store.expire(3_600_000 + 1, 1);
        assert_eq!(store.all().len(), 1);
        store.expire(3_600_000 + BUFFER_WITHOUT_RETENTION_MILLIS + 1, 0);
        assert!(store.all().is_empty());
    }

    #[test]
    fn after_and_get_find_by_sequence() {
        let store = FragmentStore::default();
        for sequence in [3, 5, 9] {
            store.append(fragment(sequence, 0));
        }
        let after: Vec<u64> = store.after(4).iter().map(|f| f.sequence).collect();
        assert_eq!(after, [5, 9]);
        assert!(store.get(5).is_some() && store.get(4).is_none());
    }
}
