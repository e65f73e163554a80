//! The metadata store: a key → value map (stream descriptions, DynamoDB tables and items) kept
//! as a write-ahead log of upserts and deletes plus a snapshot.
//!
//! Every change is one checksummed frame appended to `meta.log`. When the log outgrows the live
//! data it is compacted: the whole map goes to `meta.snapshot.tmp`, which is fsynced and renamed
//! over `meta.snapshot`, and only then is the log emptied. Replaying the log over any snapshot
//! in order gives the same map, so a crash between those steps loses nothing.

use super::StorageError;
use super::frame;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_PREFIX: u8 = 3;
/// The log is compacted once it is this large and larger than twice the live data.
const COMPACT_AT_BYTES: u64 = 4 * 1024 * 1024;

/// One change to the map.
pub enum Change<'a> {
    Put(&'a str, &'a [u8]),
    Delete(&'a str),
    /// Removes every key starting with the prefix (a table's items when it is deleted).
    DeletePrefix(&'a str),
}

/// The open metadata store.
pub struct MetaLog {
    dir: PathBuf,
    log: Arc<File>,
    log_bytes: u64,
    live: BTreeMap<String, Vec<u8>>,
    /// Log size at which to consider compacting next.
    check_at: u64,
}

fn encode(change: &Change<'_>) -> Vec<u8> {
    let (tag, key, value): (u8, &str, &[u8]) = match change {
        Change::Put(key, value) => (PUT, key, value),
        Change::Delete(key) => (DELETE, key, &[]),
        Change::DeletePrefix(prefix) => (DELETE_PREFIX, prefix, &[]),
    };
    let mut payload = Vec::with_capacity(5 + key.len() + value.len());
    payload.push(tag);
    payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
    payload.extend_from_slice(key.as_bytes());
    payload.extend_from_slice(value);
    payload
}

fn apply(live: &mut BTreeMap<String, Vec<u8>>, payload: &[u8]) -> Result<(), StorageError> {
    let corrupt = || StorageError::Corrupt("malformed metadata entry".into());
    let (&tag, rest) = payload.split_first().ok_or_else(corrupt)?;
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let key = rest.get(4..4 + len).ok_or_else(corrupt)?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt())?.to_owned();
    let value = &rest[4 + len..];
    match tag {
        PUT => {
            live.insert(key, value.to_vec());
        }
        DELETE => {
            live.remove(&key);
        }
        DELETE_PREFIX => live.retain(|k, _| !k.starts_with(&key)),
        _ => return Err(corrupt()),
    }
    Ok(())
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

impl MetaLog {
    /// Loads the snapshot and replays the log; a torn log tail is truncated.
    pub fn open(dir: &Path) -> Result<(Self, BTreeMap<String, Vec<u8>>), StorageError> {
        let mut live = BTreeMap::new();
        let snapshot_path = dir.join("meta.snapshot");
        match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                // The snapshot is renamed into place only once complete, so any tear is damage.
                let (frames, valid) = frame::decode_all(&bytes);
                if valid != bytes.len() {
                    return Err(StorageError::Corrupt(format!(
                        "{} is damaged after byte {valid}",
                        snapshot_path.display()
                    )));
                }
                for payload in frames {
                    apply(&mut live, payload)?;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(format!("read {}", snapshot_path.display()))(err)),
        }
        let log_path = dir.join("meta.log");
        let bytes = match std::fs::read(&log_path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(io(format!("read {}", log_path.display()))(err)),
        };
        let (frames, valid) = frame::decode_all(&bytes);
        for payload in frames {
            apply(&mut live, payload)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("open {}", log_path.display())))?;
        if valid != bytes.len() {
            tracing::warn!(
                file = %log_path.display(),
                discarded = bytes.len() - valid,
                "truncating a torn metadata log tail"
            );
            log.set_len(valid as u64)
                .and_then(|()| log.sync_all())
                .map_err(io(format!("truncate {}", log_path.display())))?;
        }
        let store = Self {
            dir: dir.to_owned(),
            log: Arc::new(log),
            log_bytes: valid as u64,
            live: live.clone(),
            check_at: COMPACT_AT_BYTES,
        };
        Ok((store, live))
    }

    /// The log file, for the syncer.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.log)
    }

    /// Appends changes as one write (the OS has them; durability is the syncer's job).
    pub fn write(&mut self, changes: &[Change<'_>]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        for change in changes {
            let payload = encode(change);
            frame::encode_into(&mut bytes, &payload);
            // Cannot fail: we just encoded it.
            apply(&mut self.live, &payload)?;
        }
        (&*self.log)
            .write_all(&bytes)
            .map_err(io("append to meta.log"))?;
        self.log_bytes += bytes.len() as u64;
        if self.log_bytes > self.check_at {
            // Measuring the live data walks the map, so it is done only at growing thresholds.
            let live_bytes: u64 = self
                .live
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum();
            if self.log_bytes > 2 * live_bytes {
                self.compact()?;
                self.check_at = COMPACT_AT_BYTES.max(4 * live_bytes);
            } else {
                self.check_at = self.log_bytes * 2;
            }
        }
        Ok(())
    }

    /// Writes the live map as a new snapshot and empties the log.
    fn compact(&mut self) -> Result<(), StorageError> {
        let tmp = self.dir.join("meta.snapshot.tmp");
        let mut bytes = Vec::new();
        for (key, value) in &self.live {
            frame::encode_into(&mut bytes, &encode(&Change::Put(key, value)));
        }
        let mut file = File::create(&tmp).map_err(io("create meta.snapshot.tmp"))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(io("write meta.snapshot.tmp"))?;
        std::fs::rename(&tmp, self.dir.join("meta.snapshot"))
            .map_err(io("rename meta.snapshot.tmp"))?;
        super::sync_dir(&self.dir)?;
        // Everything in the log is now in the snapshot; it is safe to drop.
        self.log
            .set_len(0)
            .and_then(|()| self.log.sync_all())
            .map_err(io("truncate meta.log"))?;
        self.log_bytes = 0;
        Ok(())
    }
}
