//! The record log: one append-only log for the records of every shard, cut into segment files
//! (`records/<first position>.seg`).
//!
//! One shared log rather than a file per shard because a commit group then costs one fsync
//! however many shards it touched (measured: ~13x the `always`-mode throughput of per-shard
//! files on this hardware; see `bench/src/bin/storage_bench.rs`). Each frame is one append batch:
//! `arrival_ms: i64 LE` followed by an opaque body the Kinesis service encodes. Whole segments are
//! deleted once their newest record is past retention, so disk use stays bounded under a steady
//! load.

use super::StorageError;
use super::frame;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

struct Segment {
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

fn arrival_of(payload: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

impl RecordLog {
    /// Opens the log, calling `batch` with every intact batch body (oldest first). A torn tail is
    /// truncated; so is a damaged segment, since nothing after a tear was ever acknowledged.
    pub fn open(
        dir: &Path,
        mut batch: impl FnMut(i64, &[u8]) -> Result<(), StorageError>,
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
            for payload in frames {
                let arrival = arrival_of(payload).ok_or_else(|| {
                    StorageError::Corrupt(format!("short frame in {}", path.display()))
                })?;
                newest_arrival_ms = newest_arrival_ms.max(arrival);
                batch(arrival, &payload[8..])?;
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
                path,
                newest_arrival_ms,
            });
        }
        let active = match segments.pop() {
            Some(active) => active,
            None => {
                active_bytes = 0;
                Segment {
                    path: segment_path(dir, 0),
                    newest_arrival_ms: i64::MIN,
                }
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active.path)
            .map_err(io(format!("open {}", active.path.display())))?;
        super::sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            closed: segments,
            active,
            file: Arc::new(file),
            active_bytes,
            position,
        })
    }

    /// The active segment, for the syncer.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Appends one batch (the OS has it; durability is the syncer's job).
    pub fn append(&mut self, arrival_ms: i64, body: &[u8]) -> Result<(), StorageError> {
        if self.active_bytes >= SEGMENT_BYTES {
            self.roll()?;
        }
        let mut payload = Vec::with_capacity(8 + body.len());
        payload.extend_from_slice(&arrival_ms.to_le_bytes());
        payload.extend_from_slice(body);
        let mut bytes = Vec::with_capacity(frame::HEADER + payload.len());
        frame::encode_into(&mut bytes, &payload);
        (&*self.file)
            .write_all(&bytes)
            .map_err(io(format!("append to {}", self.active.path.display())))?;
        self.active_bytes += bytes.len() as u64;
        self.position += bytes.len() as u64;
        self.active.newest_arrival_ms = self.active.newest_arrival_ms.max(arrival_ms);
        Ok(())
    }

    /// Closes the active segment (made durable first: the syncer only ever syncs the active one)
    /// and starts the next.
    fn roll(&mut self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(io(format!("sync {}", self.active.path.display())))?;
        let path = segment_path(&self.dir, self.position);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("create {}", path.display())))?;
        super::sync_dir(&self.dir)?;
        let previous = std::mem::replace(
            &mut self.active,
            Segment {
                path,
                newest_arrival_ms: i64::MIN,
            },
        );
        self.closed.push(previous);
        self.file = Arc::new(file);
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
        for segment in self.closed.drain(..expired) {
            std::fs::remove_file(&segment.path)
                .map_err(io(format!("delete {}", segment.path.display())))?;
        }
        Ok(expired)
    }
}
