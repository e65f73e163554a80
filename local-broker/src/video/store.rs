//! Persistence of Kinesis Video Streams: how streams and fragments are encoded for
//! [`crate::storage`], and how they come back after a restart.
//!
//! A stream's control-plane state (name, ARN, version, retention, media type, KMS key, device
//! name, tags, creation time) is one metadata value under `video/stream/<name>`, rewritten by
//! every control operation that changes it and deleted with the stream. Statuses are not kept:
//! a recovered stream is ACTIVE.
//!
//! Each retained fragment is one record of the `video` service log:
//! `header length: u32 LE · header (JSON) · Tracks element data · frame data`, the header naming
//! the owning stream (name and creation time), the fragment's numbers and times, its metadata
//! and each frame's track, offset, flags and length. Recovery ([`Replay`]) reads only the headers
//! and keeps index entries pointing into the log; a record whose stream no longer exists (or was
//! deleted and re-created since) or that is past its stream's retention is skipped.

use super::control::VideoStream;
use super::fragments::{Body, Fragment, Frame, Owner, TrackFrames, retention_millis};
use super::mkv::parse_tracks;
use crate::http::error::{ApiError, ApiResult};
use crate::storage::{Change, Storage, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Metadata keys of video streams start with this.
const STREAM_PREFIX: &str = "video/stream/";

/// The name of the service log fragments are written to.
pub const LOG_NAME: &str = "video";

/// A stream's control-plane state as the metadata map holds it (a [`VideoStream`] without its
/// fragments and status).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub name: String,
    pub arn: String,
    pub device_name: Option<String>,
    pub media_type: Option<String>,
    pub kms_key_id: String,
    pub version: String,
    pub creation_millis: i64,
    pub retention_hours: u32,
    pub tags: BTreeMap<String, String>,
}

fn unwritable(err: StorageError) -> ApiError {
    tracing::error!(%err, "cannot write video stream metadata");
    ApiError::internal(format!("The stream could not be saved: {err}"))
}

/// Writes a stream's state (after a create or update).
pub fn put_stream(storage: &Storage, stream: &VideoStream) -> ApiResult<()> {
    if !storage.is_durable() {
        return Ok(());
    }
    let value = serde_json::to_vec(&stream.record)
        .map_err(|e| ApiError::internal(format!("encode stream: {e}")))?;
    let key = format!("{STREAM_PREFIX}{}", stream.record.name);
    storage
        .write_meta(&[Change::Put(&key, &value)])
        .map_err(unwritable)
}

/// Forgets a deleted stream.
pub fn delete_stream(storage: &Storage, name: &str) -> ApiResult<()> {
    let key = format!("{STREAM_PREFIX}{name}");
    storage
        .write_meta(&[Change::Delete(&key)])
        .map_err(unwritable)
}

/// The streams a metadata map holds.
pub fn streams(meta: &BTreeMap<String, Vec<u8>>) -> Result<Vec<StreamRecord>, StorageError> {
    meta.range(STREAM_PREFIX.to_owned()..)
        .take_while(|(key, _)| key.starts_with(STREAM_PREFIX))
        .map(|(key, value)| {
            serde_json::from_slice(value)
                .map_err(|e| StorageError::Corrupt(format!("video stream {key}: {e}")))
        })
        .collect()
}

/// The header of a fragment record.
#[derive(Serialize, Deserialize)]
struct Header {
    stream: String,
    stream_created: i64,
    sequence: u64,
    ordinal: u64,
    producer_millis: i64,
    server_millis: i64,
    duration_millis: i64,
    size_bytes: u64,
    metadata: Vec<(String, String)>,
    tracks_len: usize,
    /// `(track, offset_millis, flags, length)` of each frame, in order.
    frames: Vec<(u64, i64, u8, usize)>,
}

/// One fragment as a log record.
pub fn encode_fragment(owner: &Owner, fragment: &Fragment, frames: &[Frame]) -> Vec<u8> {
    let header = Header {
        stream: owner.stream_name.clone(),
        stream_created: owner.creation_millis,
        sequence: fragment.sequence,
        ordinal: fragment.ordinal,
        producer_millis: fragment.producer_millis,
        server_millis: fragment.server_millis,
        duration_millis: fragment.duration_millis,
        size_bytes: fragment.size_bytes,
        metadata: fragment.metadata.clone(),
        tracks_len: fragment.tracks.raw.len(),
        frames: frames
            .iter()
            .map(|f| (f.track, f.offset_millis, f.flags, f.data.len()))
            .collect(),
    };
    // Serializing plain strings and numbers cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let data: usize = frames.iter().map(|f| f.data.len()).sum();
    let mut out = Vec::with_capacity(4 + header.len() + fragment.tracks.raw.len() + data);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&fragment.tracks.raw);
    for frame in frames {
        out.extend_from_slice(&frame.data);
    }
    out
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("video fragment record: {what}"))
}

/// A record's header, and where its Tracks data starts.
fn header(record: &[u8]) -> Result<(Header, usize), StorageError> {
    let len = record
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| corrupt("too short"))?;
    let json = record
        .get(4..4 + len)
        .ok_or_else(|| corrupt("header cut short"))?;
    let header = serde_json::from_slice(json).map_err(|e| corrupt(&e.to_string()))?;
    Ok((header, 4 + len))
}

/// The frames of a fragment record; their data shares `record`'s buffer.
pub fn decode_frames(record: &Bytes) -> Result<Arc<[Frame]>, StorageError> {
    let (header, tracks_at) = header(record)?;
    let mut at = tracks_at
        .checked_add(header.tracks_len)
        .ok_or_else(|| corrupt("tracks length out of range"))?;
    let mut frames = Vec::with_capacity(header.frames.len());
    for (track, offset_millis, flags, len) in header.frames {
        let end = at
            .checked_add(len)
            .filter(|end| *end <= record.len())
            .ok_or_else(|| corrupt("frames cut short"))?;
        frames.push(Frame {
            track,
            offset_millis,
            flags,
            data: record.slice(at..end),
        });
        at = end;
    }
    Ok(frames.into())
}

/// Rebuilds fragment indexes from the `video` log: give it each record as the log replays.
pub struct Replay {
    /// The creation time and retention of each stream that exists.
    streams: BTreeMap<String, (i64, u32)>,
    now_millis: i64,
    fragments: BTreeMap<String, Vec<Fragment>>,
    /// The highest fragment sequence number seen, kept or not.
    max_sequence: u64,
}

impl Replay {
    /// A replay for the streams the metadata map holds, at `now_millis`.
    pub fn new(streams: &[StreamRecord], now_millis: i64) -> Self {
        Self {
            streams: streams
                .iter()
                .map(|s| (s.name.clone(), (s.creation_millis, s.retention_hours)))
                .collect(),
            now_millis,
            fragments: BTreeMap::new(),
            max_sequence: 0,
        }
    }

    /// Indexes one record at log `position` (skipped if its stream is gone or it has expired).
    pub fn record(&mut self, position: u64, record: &[u8]) -> Result<(), StorageError> {
        let (header, tracks_at) = header(record)?;
        self.max_sequence = self.max_sequence.max(header.sequence);
        let Some(&(created, retention_hours)) = self.streams.get(&header.stream) else {
            return Ok(());
        };
        let horizon = self
            .now_millis
            .saturating_sub(retention_millis(retention_hours));
        if created != header.stream_created
            || retention_hours == 0
            || header.server_millis < horizon
        {
            return Ok(());
        }
        let raw = tracks_at
            .checked_add(header.tracks_len)
            .and_then(|end| record.get(tracks_at..end))
            .ok_or_else(|| corrupt("tracks cut short"))?;
        let kept = self.fragments.entry(header.stream).or_default();
        // Fragments of one producer session share their Tracks: keep one copy.
        let tracks = match kept.last() {
            Some(previous) if previous.tracks.raw == raw => Arc::clone(&previous.tracks),
            _ => Arc::new(
                parse_tracks(Bytes::copy_from_slice(raw)).map_err(|e| corrupt(&e.to_string()))?,
            ),
        };
        kept.push(Fragment {
            sequence: header.sequence,
            ordinal: header.ordinal,
            producer_millis: header.producer_millis,
            server_millis: header.server_millis,
            duration_millis: header.duration_millis,
            size_bytes: header.size_bytes,
            tracks,
            metadata: header.metadata,
            track_frames: TrackFrames::of(header.frames.iter().map(|f| (f.0, f.1))),
            body: Body::Logged {
                position,
                len: record.len(),
            },
        });
        Ok(())
    }

    /// The highest fragment sequence number the log holds (0 if none).
    pub fn max_sequence(&self) -> u64 {
        self.max_sequence
    }

    /// The recovered index entries of each stream, oldest first.
    pub fn into_fragments(self) -> BTreeMap<String, Vec<Fragment>> {
        self.fragments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::mkv::Tracks;

    fn fragment(sequence: u64, server_millis: i64) -> (Fragment, Vec<Frame>) {
        let frames = vec![Frame {
            track: 1,
            offset_millis: 7,
            flags: 0x80,
            data: Bytes::from(vec![sequence as u8; 3]),
        }];
        let fragment = Fragment {
            sequence,
            ordinal: sequence,
            producer_millis: server_millis,
            server_millis,
            duration_millis: 40,
            size_bytes: 3,
            tracks: Arc::new(Tracks {
                tracks: Vec::new(),
                raw: Bytes::new(),
            }),
            metadata: vec![("camera".into(), "front".into())],
            track_frames: TrackFrames::of([(1, 7)]),
            body: Body::Held(frames.clone().into()),
        };
        (fragment, frames)
    }

    fn stream(creation_millis: i64, retention_hours: u32) -> StreamRecord {
        StreamRecord {
            name: "cam".into(),
            arn: "arn".into(),
            device_name: None,
            media_type: None,
            kms_key_id: "key".into(),
            version: "v".into(),
            creation_millis,
            retention_hours,
            tags: BTreeMap::new(),
        }
    }

    /// `record` with its header's JSON changed by `edit`.
    fn with_header(record: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Bytes {
        let (_, tracks_at) = header(record).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&record[4..tracks_at]).unwrap();
        edit(&mut json);
        let json = serde_json::to_vec(&json).unwrap();
        let mut out = (json.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&json);
        out.extend_from_slice(&record[tracks_at..]);
        Bytes::from(out)
    }

    #[test]
    fn lengths_past_the_end_of_a_record_are_corrupt_not_a_panic() {
        let owner = Owner {
            stream_name: "cam".into(),
            creation_millis: 2,
        };
        let (fragment, frames) = fragment(1, 0);
        let record = encode_fragment(&owner, &fragment, &frames);
        let huge_tracks = with_header(&record, |h| h["tracks_len"] = usize::MAX.into());
        let huge_frame = with_header(&record, |h| h["frames"][0][3] = usize::MAX.into());
        for record in [huge_tracks, huge_frame] {
            assert!(matches!(
                decode_frames(&record),
                Err(StorageError::Corrupt(_))
            ));
        }
        let huge_tracks = with_header(&record, |h| h["tracks_len"] = usize::MAX.into());
        let mut replay = Replay::new(&[stream(2, 1)], 0);
        assert!(matches!(
            replay.record(0, &huge_tracks),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn replay_keeps_only_unexpired_fragments_of_the_stream_that_wrote_them() {
        const HOUR: i64 = 3_600_000;
        let now = 10 * HOUR;
        let mut replay = Replay::new(&[stream(2, 1)], now);
        let owner = |creation_millis| Owner {
            stream_name: "cam".into(),
            creation_millis,
        };
        let old_stream = encode_fragment(&owner(1), &fragment(1, now).0, &fragment(1, now).1);
        let expired = encode_fragment(&owner(2), &fragment(2, 0).0, &fragment(2, 0).1);
        let (kept, frames) = fragment(3, now - 1);
        let record = encode_fragment(&owner(2), &kept, &frames);
        for (position, body) in [&old_stream, &expired, &record].into_iter().enumerate() {
            replay.record(position as u64, body).unwrap();
        }
        assert_eq!(replay.max_sequence(), 3);
        let recovered = replay.into_fragments().remove("cam").unwrap();
        assert_eq!(recovered.len(), 1);
        let fragment = &recovered[0];
        assert_eq!(
            (
                fragment.sequence,
                fragment.ordinal,
                fragment.producer_millis
            ),
            (3, 3, now - 1)
        );
        assert_eq!(fragment.metadata, kept.metadata);
        assert_eq!(fragment.track_frames, kept.track_frames);
        assert!(matches!(fragment.body, Body::Logged { position: 2, .. }));
        assert_eq!(
            &decode_frames(&Bytes::from(record)).unwrap()[..],
            &frames[..]
        );
    }
}
