//! The record log: one append-only log for the records of every shard, cut into segment files
//! (`records/<first position>.seg`).
//!
//! One shared log rather than a file per shard because a commit group then costs one fsync
//! however many shards it touched (measured: ~13x the `always`-mode throughput of per-shard
//! files on this hardware; see `bench/src/bin/storage_bench.rs`). Each frame is one append batch:
//! `arrival_ms: i64 LE` followed by an opaque body the Kinesis service encodes. Whole segments are
//! deleted once their newest record is past retention, so disk use stays bounded under a steady
//! load.
//!
//! Records are read back by log position ([`SegmentFiles::read`]): positioned reads on handles
//! opened once per segment, so a reader never takes the appenders' lock and a segment deleted
//! while a read is under way stays readable through its open handle.

use super::StorageError;
use super::frame;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes between the start of a frame and the start of the batch body it holds (frame header,
/// arrival time).
pub const BODY_OFFSET: u64 = frame::HEADER as u64 + 8;

/// A read handle on every segment, by the log position of its first byte.
#[derive(Default)]
pub struct SegmentFiles(RwLock<BTreeMap<u64, Arc<File>>>);

impl SegmentFiles {
    /// The `len` bytes at log position `position`.
    pub fn read(&self, position: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let (start, file) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .range(..=position)
            .next_back()
            .map(|(start, file)| (*start, Arc::clone(file)))
            .ok_or_else(|| {
                StorageError::Corrupt(format!("no record segment holds position {position}"))
            })?;
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, position - start)
            .map_err(io(format!("read {len} bytes at log position {position}")))?;
        Ok(bytes)
    }

    fn insert(&self, start: u64, file: Arc<File>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(start, file);
    }

    fn remove(&self, start: u64) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&start);
    }
}

struct Segment {
    /// Log position of its first byte.
    start: u64,
    path: PathBuf,
    /// Arrival time of the newest record in it.
    newest_arrival_ms: i64,
}

/// The open record log.
pub struct RecordLog {
    dir: PathBuf,
    /// Closed segments, oldest first.
    closed: Vec<Segment>,
    active: Segment,
    file: Arc<File>,
    files: Arc<SegmentFiles>,
    /// The active segment is closed past this size ([`SEGMENT_BYTES`] but in tests).
    segment_bytes: u64,
    active_bytes: u64,
    /// Log position (bytes since the log began) of the end of the active segment.
    position: u64,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

fn segment_path(dir: &Path, position: u64) -> PathBuf {
    dir.join(format!("{position:020}.seg"))
}

/// The active segment, opened for appending and for positioned reads.
fn open_active(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io(format!("open {}", path.display())))
}

fn arrival_of(payload: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

impl RecordLog {
    /// Opens the log, calling `batch` with the arrival time, log position and bytes of every
    /// intact batch body (oldest first). A torn tail is truncated; so is a damaged segment, since
    /// nothing after a tear was ever acknowledged. One segment at a time is in memory.
    pub fn open(
        dir: &Path,
        batch: impl FnMut(i64, u64, &[u8]) -> Result<(), StorageError>,
    ) -> Result<Self, StorageError> {
        Self::open_sized(dir, SEGMENT_BYTES, batch)
    }

    fn open_sized(
        dir: &Path,
        segment_bytes: u64,
        mut batch: impl FnMut(i64, u64, &[u8]) -> Result<(), StorageError>,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let mut starts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(format!("list {}", dir.display())))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        starts.sort_unstable();
        let mut segments = Vec::new();
        let mut position = 0;
        let mut active_bytes = 0;
        for start in starts {
            let path = segment_path(dir, start);
            let bytes = std::fs::read(&path).map_err(io(format!("read {}", path.display())))?;
            let (frames, valid) = frame::decode_all(&bytes);
            let mut newest_arrival_ms = i64::MIN;
            let mut at = start;
            for payload in frames {
                let arrival = arrival_of(payload).ok_or_else(|| {
                    StorageError::Corrupt(format!("short frame in {}", path.display()))
                })?;
                newest_arrival_ms = newest_arrival_ms.max(arrival);
                batch(arrival, at + BODY_OFFSET, &payload[8..])?;
                at += (frame::HEADER + payload.len()) as u64;
            }
            if valid != bytes.len() {
                tracing::warn!(
                    file = %path.display(),
                    discarded = bytes.len() - valid,
                    "truncating a torn record log tail"
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(format!("open {}", path.display())))?;
                file.set_len(valid as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(io(format!("truncate {}", path.display())))?;
            }
            position = start.max(position) + valid as u64;
            active_bytes = valid as u64;
            segments.push(Segment {
                start,
                path,
                newest_arrival_ms,
            });
        }
        let active = match segments.pop() {
            Some(active) => active,
            None => {
                active_bytes = 0;
                Segment {
                    start: 0,
                    path: segment_path(dir, 0),
                    newest_arrival_ms: i64::MIN,
                }
            }
        };
        let files = Arc::new(SegmentFiles::default());
        for segment in &segments {
            let file = File::open(&segment.path)
                .map_err(io(format!("open {}", segment.path.display())))?;
            files.insert(segment.start, Arc::new(file));
        }
        let file = Arc::new(open_active(&active.path)?);
        files.insert(active.start, Arc::clone(&file));
        super::sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            closed: segments,
            active,
            file,
            files,
            segment_bytes,
            active_bytes,
            position,
        })
    }

    /// Read handles on every segment.
    pub fn files(&self) -> Arc<SegmentFiles> {
        Arc::clone(&self.files)
    }

    /// The active segment, for the syncer.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Appends one batch (the OS has it; durability is the syncer's job). Returns the log
    /// position of the frame and the frame itself; the body starts [`BODY_OFFSET`] bytes in.
    pub fn append(&mut self, arrival_ms: i64, body: &[u8]) -> Result<(u64, Bytes), StorageError> {
        if self.active_bytes >= self.segment_bytes {
            self.roll()?;
        }
        let mut bytes = Vec::new();
        frame::encode_parts_into(&mut bytes, &[&arrival_ms.to_le_bytes(), body]);
        (&*self.file)
            .write_all(&bytes)
            .map_err(io(format!("append to {}", self.active.path.display())))?;
        let position = self.position;
        self.active_bytes += bytes.len() as u64;
        self.position += bytes.len() as u64;
        self.active.newest_arrival_ms = self.active.newest_arrival_ms.max(arrival_ms);
        Ok((position, Bytes::from(bytes)))
    }

    /// Closes the active segment (made durable first: the syncer only ever syncs the active one)
    /// and starts the next.
    fn roll(&mut self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(io(format!("sync {}", self.active.path.display())))?;
        let path = segment_path(&self.dir, self.position);
        let file = Arc::new(open_active(&path)?);
        super::sync_dir(&self.dir)?;
        self.files.insert(self.position, Arc::clone(&file));
        let previous = std::mem::replace(
            &mut self.active,
            Segment {
                start: self.position,
                path,
                newest_arrival_ms: i64::MIN,
            },
        );
        self.closed.push(previous);
        self.file = file;
        self.active_bytes = 0;
        Ok(())
    }

    /// Deletes closed segments whose newest record arrived before `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) -> Result<usize, StorageError> {
        let expired = self
            .closed
            .iter()
            .take_while(|s| s.newest_arrival_ms < horizon_ms)
            .count();
        self.delete_oldest(expired)
    }

    /// The log position just past the last frame appended.
    pub fn end(&self) -> u64 {
        self.position
    }

    /// Deletes closed segments that end at or before log position `position`.
    pub fn expire_before(&mut self, position: u64) -> Result<usize, StorageError> {
        let ends = self
            .closed
            .iter()
            .skip(1)
            .map(|s| s.start)
            .chain([self.active.start]);
        let expired = ends.take_while(|end| *end <= position).count();
        self.delete_oldest(expired)
    }

    /// Deletes the `expired` oldest closed segments.
    fn delete_oldest(&mut self, expired: usize) -> Result<usize, StorageError> {
        for segment in self.closed.drain(..expired) {
            self.files.remove(segment.start);
            std::fs::remove_file(&segment.path)
                .map_err(io(format!("delete {}", segment.path.display())))?;
        }
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::TempDir;

    #[test]
    fn expired_segments_are_deleted_and_the_rest_stay_readable_by_position() {
        let dir = TempDir::new();
        let mut log = RecordLog::open_sized(&dir.0, 100, |_, _, _| Ok(())).unwrap();
        let files = log.files();
        // 60-byte bodies (84-byte frames): two frames fill a segment past 100 bytes.
        let mut frames = Vec::new();
        for arrival in 0..6 {
            let body = vec![arrival as u8; 60];
            let (position, _) = log.append(arrival, &body).unwrap();
            frames.push((position + BODY_OFFSET, body));
        }
        let segments = || std::fs::read_dir(&dir.0).unwrap().count();
        assert_eq!(segments(), 3);
        // Arrivals 0 and 1 are in the first segment; a horizon of 2 expires only it.
        let (held, held_body) = frames[0].clone();
        assert_eq!(log.expire(2).unwrap(), 1);
        assert_eq!(segments(), 2);
        assert!(files.read(held, held_body.len()).is_err());
        for (position, body) in &frames[2..] {
            assert_eq!(&files.read(*position, body.len()).unwrap(), body);
        }
        // The log reopens with the same positions.
        drop(log);
        let mut seen = Vec::new();
        RecordLog::open_sized(&dir.0, 100, |arrival, position, body| {
            seen.push((arrival, position, body.to_vec()));
            Ok(())
        })
        .unwrap();
        let expected: Vec<_> = (2..6)
            .zip(&frames[2..])
            .map(|(a, (p, b))| (a, *p, b.clone()))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn segments_wholly_before_a_position_are_deleted() {
        let dir = TempDir::new();
        let mut log = RecordLog::open_sized(&dir.0, 100, |_, _, _| Ok(())).unwrap();
        // Two frames per segment: three segments.
        let positions: Vec<u64> = (0..6)
            .map(|arrival| log.append(arrival, &[0; 60]).unwrap().0)
            .collect();
        assert_eq!(log.end(), positions[5] + (positions[5] - positions[4]));
        let segments = || std::fs::read_dir(&dir.0).unwrap().count();
        // A record in the middle of the first segment keeps it.
        assert_eq!(log.expire_before(positions[1] + BODY_OFFSET).unwrap(), 0);
        // The first record of the second segment: only the first goes.
        assert_eq!(log.expire_before(positions[2] + BODY_OFFSET).unwrap(), 1);
        assert_eq!(segments(), 2);
        // Past everything: the closed segment goes, the active one stays.
        assert_eq!(log.expire_before(log.end()).unwrap(), 1);
        assert_eq!(segments(), 1);
    }
}
