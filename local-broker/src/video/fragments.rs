//! The fragments of one stream: what PutMedia stored, in fragment-number order, with retention,
//! and a signal consumers tail on.
//!
//! Memory holds an index entry per fragment ([`Fragment`]: its number, times, size, tracks,
//! metadata and frame counts). Its frames are either held with it (no data directory, or a
//! stream without retention, whose short buffer never touches the disk) or written to the
//! broker's `video` service log, and read back by [`FragmentStore::frames`] when a consumer asks
//! for media; so with a data directory the bodies of retained fragments stay on disk and survive
//! restarts ([`super::store`] encodes them and rebuilds the index).

use super::mkv::Tracks;
use super::store;
use crate::http::error::{ApiError, ApiResult};
use crate::storage::{ServiceLog, StorageError};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// With `DataRetentionInHours` 0 KVS still serves consumers from a short host buffer: the
/// last 5 minutes, at most 200 MB.
pub const BUFFER_WITHOUT_RETENTION_MILLIS: i64 = 5 * 60 * 1000;
pub const BUFFER_WITHOUT_RETENTION_BYTES: u64 = 200 * 1024 * 1024;

/// How long a stream with `retention_hours` of `DataRetentionInHours` keeps a fragment, in ms.
pub fn retention_millis(retention_hours: u32) -> i64 {
    i64::from(retention_hours) * 3_600_000
}

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

/// The answer for a fragment number that names no fragment the caller may read.
pub fn fragment_not_found(number: &str) -> ApiError {
    super::api::not_found(format!("Fragment {number} is not found."))
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

/// Where a fragment's frames are.
#[derive(Debug, Clone)]
pub enum Body {
    /// In memory, with the index entry.
    Held(Arc<[Frame]>),
    /// In the service log: the record at `position`, `len` bytes long.
    Logged { position: u64, len: usize },
}

/// A stored fragment's index entry: one Cluster of a PutMedia body. Its frames are read with
/// [`FragmentStore::frames`].
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
    /// Producer metadata Tags sent after the Cluster.
    pub metadata: Vec<(String, String)>,
    /// What each track's frames are, by track number (for playlists, without reading frames).
    pub track_frames: Vec<TrackFrames>,
    /// The frames, in the order the producer sent them (decode order).
    pub body: Body,
}

impl Fragment {
    pub fn number(&self) -> String {
        format_number(self.sequence)
    }

    /// How many frames of `track` the fragment has.
    pub fn frame_count(&self, track: u64) -> usize {
        self.track(track).map_or(0, |t| t.count)
    }

    /// Producer time (epoch ms) of the earliest frame of `track` (the fragment's start if none).
    pub fn track_start_millis(&self, track: u64) -> i64 {
        self.producer_millis
            .saturating_add(self.track(track).map_or(0, |t| t.earliest_offset_millis))
    }

    /// How long `track` plays in this fragment (see [`TrackFrames::duration_millis`]); the
    /// fragment's duration if the track has no frames.
    pub fn track_duration_millis(&self, track: u64) -> i64 {
        self.track(track)
            .map_or(self.duration_millis, TrackFrames::duration_millis)
    }

    fn track(&self, track: u64) -> Option<&TrackFrames> {
        self.track_frames.iter().find(|t| t.track == track)
    }
}

/// The frames of one track of a fragment, in summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackFrames {
    pub track: u64,
    pub count: usize,
    /// The smallest frame offset from the fragment's producer timestamp.
    pub earliest_offset_millis: i64,
    /// The largest.
    pub latest_offset_millis: i64,
}

impl TrackFrames {
    /// The summaries of frames given as `(track, offset_millis)`, by track number.
    pub fn of(frames: impl IntoIterator<Item = (u64, i64)>) -> Vec<Self> {
        let mut tracks: Vec<Self> = Vec::new();
        for (track, offset) in frames {
            match tracks.iter_mut().find(|t| t.track == track) {
                Some(t) => {
                    t.count += 1;
                    t.earliest_offset_millis = t.earliest_offset_millis.min(offset);
                    t.latest_offset_millis = t.latest_offset_millis.max(offset);
                }
                None => tracks.push(Self {
                    track,
                    count: 1,
                    earliest_offset_millis: offset,
                    latest_offset_millis: offset,
                }),
            }
        }
        tracks.sort_unstable_by_key(|t| t.track);
        tracks
    }

    /// The average gap between the track's frames (0 for a single frame): how long its last
    /// frame is taken to last.
    pub fn frame_gap_millis(&self) -> i64 {
        match self.count {
            0 | 1 => 0,
            n => (self.latest_offset_millis - self.earliest_offset_millis) / (n as i64 - 1),
        }
    }

    /// From the track's first frame to the end of its last.
    pub fn duration_millis(&self) -> i64 {
        self.latest_offset_millis - self.earliest_offset_millis + self.frame_gap_millis()
    }
}

#[derive(Default)]
struct Held {
    fragments: VecDeque<Arc<Fragment>>,
    bytes: u64,
    appended: u64,
}

/// The stream a fragment store belongs to: its log records carry it, so recovery gives each
/// record to the stream that wrote it and not to a re-created stream of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub stream_name: String,
    pub creation_millis: i64,
}

/// The fragments of one stream, oldest first.
pub struct FragmentStore {
    owner: Owner,
    /// Where fragments of streams with retention are written (keeps nothing in memory mode).
    log: ServiceLog,
    /// Taken for a whole append: keeps ordinals and log records in append order while the
    /// frames are encoded and written, without holding `held` (and so every reader) meanwhile.
    appending: Mutex<()>,
    held: Mutex<Held>,
    /// The sequence number of the newest fragment; consumers wait on changes.
    newest: watch::Sender<u64>,
}

impl Default for FragmentStore {
    fn default() -> Self {
        Self::new(Owner::default(), ServiceLog::default())
    }
}

impl FragmentStore {
    /// An empty store of `owner`'s fragments, writing retained fragments to `log`.
    pub fn new(owner: Owner, log: ServiceLog) -> Self {
        Self {
            owner,
            log,
            appending: Mutex::default(),
            held: Mutex::default(),
            newest: watch::Sender::new(0),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a fragment (assigning its ordinal) and wakes consumers tailing the stream. With
    /// retention and a data directory its frames go to the log (before this returns, so the
    /// caller's write mark covers them) and only the index entry stays in memory.
    pub fn append(&self, mut fragment: Fragment, retention_hours: u32) -> Result<(), StorageError> {
        let sequence = fragment.sequence;
        {
            let _in_order = self
                .appending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Only this append changes `appended` until it is pushed below.
            fragment.ordinal = self.held().appended;
            if retention_hours > 0
                && self.log.is_durable()
                && let Body::Held(frames) = &fragment.body
            {
                let record = store::encode_fragment(&self.owner, &fragment, frames);
                let position = self.log.append(fragment.server_millis, &record)?;
                fragment.body = Body::Logged {
                    position,
                    len: record.len(),
                };
            }
            let mut held = self.held();
            held.appended += 1;
            held.bytes += fragment.size_bytes;
            held.fragments.push_back(Arc::new(fragment));
        }
        self.newest.send_replace(sequence);
        Ok(())
    }

    /// Puts back fragments recovered from the log, oldest first (before any is appended).
    pub fn restore(&self, fragments: Vec<Fragment>) {
        let mut held = self.held();
        for fragment in fragments {
            held.appended = held.appended.max(fragment.ordinal.saturating_add(1));
            held.bytes += fragment.size_bytes;
            self.newest.send_replace(fragment.sequence);
            held.fragments.push_back(Arc::new(fragment));
        }
    }

    /// The frames of a fragment of this store, read from the log if they are there.
    pub fn frames(&self, fragment: &Fragment) -> ApiResult<Arc<[Frame]>> {
        match &fragment.body {
            Body::Held(frames) => Ok(Arc::clone(frames)),
            Body::Logged { position, len } => self
                .log
                .read(*position, *len)
                .and_then(|record| store::decode_frames(&record))
                .map_err(|err| {
                    tracing::error!(%err, fragment = %fragment.number(), "cannot read a fragment");
                    ApiError::internal(format!(
                        "Fragment {} cannot be read: {err}",
                        fragment.number()
                    ))
                }),
        }
    }

    /// Drops fragments past retention: older than `retention_hours`, or with 0 hours older than
    /// the host buffer allows.
    pub fn expire(&self, now_millis: i64, retention_hours: u32) {
        let mut held = self.held();
        let keep_millis = if retention_hours == 0 {
            BUFFER_WITHOUT_RETENTION_MILLIS
        } else {
            retention_millis(retention_hours)
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

    /// The first fragment with a sequence number above `sequence` (a consumer's next).
    pub fn next_after(&self, sequence: u64) -> Option<Arc<Fragment>> {
        let held = self.held();
        let at = held.fragments.partition_point(|f| f.sequence <= sequence);
        held.fragments.get(at).cloned()
    }

    /// The fragment with this wire fragment number, or the API's answer for one there is not.
    pub fn by_number(&self, number: &str) -> ApiResult<Arc<Fragment>> {
        parse_number(number)
            .and_then(|sequence| self.get(sequence))
            .ok_or_else(|| fragment_not_found(number))
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
            metadata: Vec::new(),
            track_frames: Vec::new(),
            body: Body::Held(Arc::new([])),
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
        store.append(fragment(1, 0), 1).unwrap();
        store.append(fragment(2, 3_600_000), 1).unwrap();
        store.expire(3_600_000 + 1, 1);
        assert_eq!(store.all().len(), 1);
        store.expire(3_600_000 + BUFFER_WITHOUT_RETENTION_MILLIS + 1, 0);
        assert!(store.all().is_empty());
    }

    #[test]
    fn concurrent_appends_keep_ordinals_in_store_order() {
        let store = Arc::new(FragmentStore::default());
        let writers: Vec<_> = (0..4u64)
            .map(|writer| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        store.append(fragment(writer * 100 + i, 0), 1).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let ordinals: Vec<u64> = store.all().iter().map(|f| f.ordinal).collect();
        assert_eq!(ordinals, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn after_and_get_find_by_sequence() {
        let store = FragmentStore::default();
        for sequence in [3, 5, 9] {
            store.append(fragment(sequence, 0), 1).unwrap();
        }
        let after: Vec<u64> = store.after(4).iter().map(|f| f.sequence).collect();
        assert_eq!(after, [5, 9]);
        let next = |sequence| store.next_after(sequence).map(|f| f.sequence);
        assert_eq!(
            (next(0), next(3), next(4), next(9)),
            (Some(3), Some(5), Some(5), None)
        );
        assert!(store.get(5).is_some() && store.get(4).is_none());
    }
}
