//! Durable storage: the data directory, its files, and when writes reach the disk.
//!
//! [`Storage`] is the one abstraction both modes share. In memory (the default, and what tests
//! use) it holds nothing and every call is a no-op, so the in-memory hot path pays one branch.
//! With a data directory it keeps:
//!
//! | file | holds |
//! |---|---|
//! | `records/*.seg` | every shard's records, one shared append-only log ([`log`]) |
//! | `meta.log`, `meta.snapshot` | stream and DynamoDB state as a key → value map ([`kv`]) |
//! | `<service>/*.seg` | a service's own append-only log ([`ServiceLog`]: Firehose buffers, video fragments) |
//! | `iterator.key` | the secret that signs shard iterators, so iterators survive restarts |
//! | `LOCK` | locked (an OS file lock) while a broker has the directory open |
//!
//! Two brokers on one directory would interleave their logs; the second fails to open it with
//! [`StorageError::Locked`]. The lock is the operating system's, so a crashed broker's lock goes
//! with its process.
//!
//! Record bodies are not kept in memory beyond a hot tail: the most recently appended frames, up
//! to a byte budget shared by every shard (`cache`). The services index their records by log
//! position and read them back with [`Storage::read`], from the hot tail when it still holds
//! them and from the segment files otherwise.
//!
//! This module knows nothing of Kinesis or DynamoDB: it stores opaque record batches and
//! metadata values; the services own their encodings (`kinesis::store`, `dynamodb::store`).
//!
//! # Sync modes
//! - [`SyncMode::Always`]: a write is acknowledged only after it is on disk (fsync). One syncer
//!   thread flushes whatever was written while its previous fsync ran, so concurrent writers
//!   share fsyncs (group commit). `kill -9` or power loss loses nothing acknowledged.
//! - [`SyncMode::Interval`]: acknowledged once the OS has it; fsynced at least every interval.
//!   `kill -9` loses nothing (the OS page cache survives the process); power loss or a kernel
//!   crash loses at most the last interval.
//! - [`SyncMode::Never`]: acknowledged once the OS has it; fsynced only at clean shutdown. `kill
//!   -9` loses nothing; power loss loses whatever the OS had not yet written back.
//!
//! In every mode, a torn write is detected by its checksum on restart and cut off, so the data
//! directory always loads.

mod cache;
pub mod frame;
mod kv;
mod log;

pub use kv::Change;

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// The default byte budget of the hot tail: record bodies kept in memory across every shard.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// When acknowledged writes reach the disk; see the module docs for what each mode promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync before acknowledging, with group commit.
    Always,
    /// fsync in the background at this interval.
    Interval(Duration),
    /// fsync only at clean shutdown.
    Never,
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    /// `always`, `never`, or `interval=MS`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "always" => Ok(SyncMode::Always),
            "never" => Ok(SyncMode::Never),
            _ => text
                .strip_prefix("interval=")
                .and_then(|ms| ms.parse().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| SyncMode::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| format!("expected always, never or interval=MS, got {text:?}")),
        }
    }
}

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A file holds something this broker did not write.
    #[error("corrupt data directory: {0}")]
    Corrupt(String),
    /// Another broker (process or in-process instance) has the data directory open.
    #[error("in use by another broker (LOCK is held); stop it or use another data directory")]
    Locked,
    /// An fsync failed; nothing written since can be promised durable.
    #[error("fsync failed: {0}")]
    SyncFailed(String),
}

/// What a service learns from a data directory as it is opened: first the metadata map, then
/// every record batch, oldest first, whose body is only borrowed so recovery never holds more
/// than one segment of record bodies.
pub trait Recovery {
    /// Called once, before any record batch.
    fn metadata(&mut self, meta: &BTreeMap<String, Vec<u8>>) -> Result<(), StorageError>;
    /// Called with each record batch: its arrival time, the log position of its body (for
    /// [`Storage::read`]) and the body.
    fn record_batch(
        &mut self,
        arrival_ms: i64,
        position: u64,
        body: &[u8],
    ) -> Result<(), StorageError>;
}

/// What a data directory held when it was opened.
pub struct Recovered {
    /// The metadata map.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// The iterator-signing secret.
    pub iterator_key: [u8; 32],
}

/// Memory (no data directory) or a data directory; cheap to clone.
#[derive(Clone, Default)]
pub struct Storage {
    disk: Option<Arc<Disk>>,
}

/// How far writes have been made durable.
#[derive(Debug, Clone, Default)]
struct Synced {
    upto: u64,
    failed: Option<String>,
}

struct Progress {
    /// Writes handed to the OS so far; write `n` is durable once `synced >= n`.
    written: u64,
}

struct Disk {
    dir: PathBuf,
    mode: SyncMode,
    records: Mutex<log::RecordLog>,
    /// Read handles on the record segments; readers never take `records`.
    segments: Arc<log::SegmentFiles>,
    /// Recently appended frames. Filled under `records`, so it holds frames in log order.
    tail: Mutex<cache::TailCache>,
    meta: Mutex<kv::MetaLog>,
    /// The logs services opened with [`Storage::service_log`], synced with the rest.
    service_logs: Mutex<Vec<Arc<Mutex<log::RecordLog>>>>,
    progress: Mutex<Progress>,
    wake: Condvar,
    synced: watch::Sender<Synced>,
    stop: AtomicBool,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The locked `LOCK` file; released at [`Storage::close`] or when the process ends.
    dir_lock: Mutex<Option<File>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the guarded state consistent (files are appended whole or not at all).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// fsyncs a directory so renames and new files in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StorageError::Io {
            context: format!("sync directory {}", dir.display()),
            source,
        })
}

/// The write mark of the request running on this thread: the highest write it made. Requests run
/// synchronously on one thread between the HTTP layer's [`write_mark::take`] calls, so the HTTP
/// layer learns what to wait for without threading a handle through every operation.
pub mod write_mark {
    use std::cell::Cell;

    thread_local! {
        static MARK: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) fn note(mark: u64) {
        MARK.with(|m| m.set(m.get().max(mark)));
    }

    /// The highest write made on this thread since the last call (0 if none), and resets it.
    pub fn take() -> u64 {
        MARK.with(|m| m.replace(0))
    }

    /// Runs `work` (synchronously, on this thread) and returns its result with the mark of
    /// exactly the writes it made, for [`Storage::durable`](super::Storage::durable).
    pub fn during<T>(work: impl FnOnce() -> T) -> (T, u64) {
        take();
        let value = work();
        (value, take())
    }
}

impl Storage {
    /// In-memory: nothing is kept.
    pub fn memory() -> Self {
        Self::default()
    }

    /// Opens (or creates) a data directory, showing `recovery` what it holds. At most
    /// `cache_bytes` of recently appended record bodies are kept in memory.
    pub fn open(
        dir: &Path,
        mode: SyncMode,
        cache_bytes: usize,
        recovery: &mut dyn Recovery,
    ) -> Result<(Self, Recovered), StorageError> {
        let io = |context: String| move |source| StorageError::Io { context, source };
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let dir_lock = lock_dir(dir)?;
        let iterator_key = load_or_create_key(dir)?;
        let (meta, map) = kv::MetaLog::open(dir)?;
        recovery.metadata(&map)?;
        let records = log::RecordLog::open(&dir.join("records"), |arrival, position, body| {
            recovery.record_batch(arrival, position, body)
        })?;
        let disk = Arc::new(Disk {
            dir: dir.to_owned(),
            mode,
            segments: records.files(),
            records: Mutex::new(records),
            tail: Mutex::new(cache::TailCache::new(cache_bytes)),
            meta: Mutex::new(meta),
            service_logs: Mutex::new(Vec::new()),
            progress: Mutex::new(Progress { written: 0 }),
            wake: Condvar::new(),
            synced: watch::Sender::new(Synced::default()),
            stop: AtomicBool::new(false),
            syncer: Mutex::new(None),
            dir_lock: Mutex::new(Some(dir_lock)),
        });
        if mode != SyncMode::Never {
            let syncing = Arc::clone(&disk);
            let handle = std::thread::Builder::new()
                .name("storage-sync".into())
                .spawn(move || syncing.run_syncer())
                .map_err(io("start the storage sync thread".into()))?;
            *lock(&disk.syncer) = Some(handle);
        }
        Ok((
            Self { disk: Some(disk) },
            Recovered {
                meta: map,
                iterator_key,
            },
        ))
    }

    /// Whether anything is kept on disk.
    pub fn is_durable(&self) -> bool {
        self.disk.is_some()
    }

    /// Appends a record batch and returns the log position of its body (0 in memory, where
    /// nothing is kept). Call it under the shard's lock so the log keeps each shard's records in
    /// sequence order.
    pub fn append_records(&self, arrival_ms: i64, body: &[u8]) -> Result<u64, StorageError> {
        let Some(disk) = &self.disk else {
            return Ok(0);
        };
        let position = {
            let mut records = lock(&disk.records);
            let (position, frame) = records.append(arrival_ms, body)?;
            lock(&disk.tail).insert(position, frame);
            position
        };
        disk.wrote();
        Ok(position + log::BODY_OFFSET)
    }

    /// The `len` bytes at log position `position` of an appended body: from the hot tail if it
    /// still holds them, else from the segment files.
    pub fn read(&self, position: u64, len: usize) -> Result<Bytes, StorageError> {
        let Some(disk) = &self.disk else {
            return Err(StorageError::Corrupt(
                "records were read from a broker without a data directory".into(),
            ));
        };
        if let Some(bytes) = lock(&disk.tail).get(position, len) {
            return Ok(bytes);
        }
        disk.segments.read(position, len).map(Bytes::from)
    }

    /// Bytes of record bodies the hot tail holds now (never more than its budget).
    pub fn cached_bytes(&self) -> usize {
        self.disk
            .as_ref()
            .map_or(0, |disk| lock(&disk.tail).bytes())
    }

    /// Applies metadata changes (one atomic write).
    pub fn write_meta(&self, changes: &[Change<'_>]) -> Result<(), StorageError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        lock(&disk.meta).write(changes)?;
        disk.wrote();
        Ok(())
    }

    /// Opens (or creates) the log of one service in `<data dir>/<name>/`, calling `batch` with the
    /// arrival time, log position and body of every batch it holds, oldest first. Without a data
    /// directory the log keeps nothing and `batch` is never called.
    ///
    /// The log shares the sync mode and write marks of the record log: an append made while a
    /// request runs is durable (in `always` mode) before that request is acknowledged. Open each
    /// name once per broker; the names `records` and `meta` are the storage's own.
    pub fn service_log(
        &self,
        name: &str,
        batch: impl FnMut(i64, u64, &[u8]) -> Result<(), StorageError>,
    ) -> Result<ServiceLog, StorageError> {
        let Some(disk) = &self.disk else {
            return Ok(ServiceLog::default());
        };
        if matches!(name, "records" | "meta") || !name.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(StorageError::Corrupt(format!(
                "{name:?} cannot name a service log"
            )));
        }
        let records = log::RecordLog::open(&disk.dir.join(name), batch)?;
        let segments = records.files();
        let records = Arc::new(Mutex::new(records));
        lock(&disk.service_logs).push(Arc::clone(&records));
        Ok(ServiceLog {
            disk: Some(ServiceDisk {
                disk: Arc::clone(disk),
                records,
                segments,
            }),
        })
    }

    /// Deletes record segments whose records all arrived before `horizon_ms`.
    pub fn expire_records(&self, horizon_ms: i64) -> Result<usize, StorageError> {
        match &self.disk {
            Some(disk) => lock(&disk.records).expire(horizon_ms),
            None => Ok(0),
        }
    }

    /// Waits until write `mark` (from [`write_mark::take`]) is as durable as the sync mode
    /// promises before acknowledging: on disk in `always` mode, at once otherwise.
    pub async fn durable(&self, mark: u64) -> Result<(), StorageError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        if mark == 0 || disk.mode != SyncMode::Always {
            return Ok(());
        }
        let mut synced = disk.synced.subscribe();
        let state = synced
            .wait_for(|s| s.upto >= mark || s.failed.is_some())
            .await
            .map_err(|_| StorageError::SyncFailed("storage closed".into()))?;
        match &state.failed {
            Some(reason) => Err(StorageError::SyncFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Flushes everything to disk and stops the syncer (clean shutdown).
    pub fn close(&self) {
        if let Some(disk) = &self.disk {
            disk.stop.store(true, Ordering::SeqCst);
            disk.wake.notify_all();
            if let Some(handle) = lock(&disk.syncer).take()
                && handle.join().is_err()
            {
                tracing::error!("storage sync thread panicked");
            }
            if let Err(err) = disk.sync_files() {
                tracing::error!(%err, dir = %disk.dir.display(), "final fsync failed");
            }
            // Closing the file releases the lock: another broker may open the directory now.
            lock(&disk.dir_lock).take();
        }
    }
}

/// One service's append-only log of opaque batches (see [`Storage::service_log`]): memory-only
/// (keeps nothing) without a data directory; cheap to clone.
#[derive(Clone, Default)]
pub struct ServiceLog {
    disk: Option<ServiceDisk>,
}

#[derive(Clone)]
struct ServiceDisk {
    disk: Arc<Disk>,
    records: Arc<Mutex<log::RecordLog>>,
    segments: Arc<log::SegmentFiles>,
}

impl ServiceLog {
    /// Whether appends are kept on disk.
    pub fn is_durable(&self) -> bool {
        self.disk.is_some()
    }

    /// Appends a batch and returns the log position of its body (0 when nothing is kept).
    pub fn append(&self, arrival_ms: i64, body: &[u8]) -> Result<u64, StorageError> {
        let Some(log) = &self.disk else {
            return Ok(0);
        };
        let (position, _) = lock(&log.records).append(arrival_ms, body)?;
        log.disk.wrote();
        Ok(position + log::BODY_OFFSET)
    }

    /// The `len` bytes at log position `position` of an appended body.
    pub fn read(&self, position: u64, len: usize) -> Result<Bytes, StorageError> {
        match &self.disk {
            Some(log) => log.segments.read(position, len).map(Bytes::from),
            None => Err(StorageError::Corrupt(
                "a service log was read without a data directory".into(),
            )),
        }
    }

    /// Deletes closed segments whose batches all arrived before `horizon_ms`; returns how many.
    pub fn expire(&self, horizon_ms: i64) -> Result<usize, StorageError> {
        match &self.disk {
            Some(log) => lock(&log.records).expire(horizon_ms),
            None => Ok(0),
        }
    }

    /// The log position just past everything appended so far (0 when nothing is kept): every
    /// later append's body lies beyond it.
    pub fn end(&self) -> u64 {
        match &self.disk {
            Some(log) => lock(&log.records).end(),
            None => 0,
        }
    }

    /// Deletes closed segments that end at or before log position `position` (nothing in them
    /// is at or after it); returns how many.
    pub fn expire_before(&self, position: u64) -> Result<usize, StorageError> {
        match &self.disk {
            Some(log) => lock(&log.records).expire_before(position),
            None => Ok(0),
        }
    }
}

impl Disk {
    /// Records that a write reached the OS and lets the syncer and the request know.
    fn wrote(&self) {
        let mark = {
            let mut progress = lock(&self.progress);
            progress.written += 1;
            progress.written
        };
        write_mark::note(mark);
        if self.mode == SyncMode::Always {
            self.wake.notify_one();
        }
    }

    fn sync_files(&self) -> Result<(), StorageError> {
        // Clone the handles and release the locks: appends continue while the fsync runs, and
        // become the next commit group.
        // Logs before meta: a mark in meta that became durable never covers log records that
        // did not.
        let mut files = vec![lock(&self.records).file()];
        files.extend(lock(&self.service_logs).iter().map(|log| lock(log).file()));
        files.push(lock(&self.meta).file());
        for file in files {
            file.sync_data().map_err(|source| StorageError::Io {
                context: "fsync".into(),
                source,
            })?;
        }
        Ok(())
    }

    /// The group-commit loop: waits for writes (or the interval), fsyncs, publishes progress.
    fn run_syncer(&self) {
        let mut synced = 0;
        loop {
            let target = {
                let mut progress = lock(&self.progress);
                match self.mode {
                    SyncMode::Interval(every) => {
                        progress = self
                            .wake
                            .wait_timeout(progress, every)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    _ => {
                        while progress.written == synced && !self.stop.load(Ordering::SeqCst) {
                            progress = self
                                .wake
                                .wait(progress)
                                .unwrap_or_else(PoisonError::into_inner);
                        }
                    }
                }
                progress.written
            };
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if target == synced {
                continue;
            }
            match self.sync_files() {
                Ok(()) => {
                    synced = target;
                    self.synced.send_modify(|s| s.upto = target);
                }
                Err(err) => {
                    tracing::error!(%err, "fsync failed; writes can no longer be acknowledged");
                    self.synced
                        .send_modify(|s| s.failed = Some(err.to_string()));
                    return;
                }
            }
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }
}

/// Takes the directory's `LOCK` file, or fails if another broker holds it.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join("LOCK");
    let io = |source| StorageError::Io {
        context: format!("lock {}", path.display()),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    // A lock can outlive its broker by a moment: a process forked in that window (a test
    // spawning a binary, say) shares the open file until its exec closes it. So a held lock is
    // retried briefly before the directory counts as in use.
    let give_up = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(StorageError::Locked),
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
    }
}

/// How long a held `LOCK` is retried before [`StorageError::Locked`].
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The iterator secret: read from `iterator.key`, or generated and written atomically.
fn load_or_create_key(dir: &Path) -> Result<[u8; 32], StorageError> {
    let path = dir.join("iterator.key");
    let io = |context: String| move |source| StorageError::Io { context, source };
    match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| StorageError::Corrupt(format!("{} is not 32 bytes", path.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let tmp = dir.join("iterator.key.tmp");
            std::fs::write(&tmp, key)
                .and_then(|()| File::open(&tmp)?.sync_all())
                .map_err(io(format!("write {}", tmp.display())))?;
            std::fs::rename(&tmp, &path).map_err(io(format!("rename {}", tmp.display())))?;
            sync_dir(dir)?;
            Ok(key)
        }
        Err(err) => Err(io(format!("read {}", path.display()))(err)),
    }
}

/// Data directories for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "local-broker-unit-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Remembers where every recovered record batch is.
    #[derive(Default)]
    pub struct Batches(pub Vec<(i64, u64, Vec<u8>)>);

    impl Recovery for Batches {
        fn metadata(&mut self, _: &BTreeMap<String, Vec<u8>>) -> Result<(), StorageError> {
            Ok(())
        }
        fn record_batch(
            &mut self,
            arrival: i64,
            position: u64,
            body: &[u8],
        ) -> Result<(), StorageError> {
            self.0.push((arrival, position, body.to_vec()));
            Ok(())
        }
    }

    /// A storage in a fresh directory, with a hot tail of `cache_bytes`, fsyncing never.
    pub fn open_temp(cache_bytes: usize) -> (Storage, TempDir) {
        let dir = TempDir::new();
        let (storage, _) = Storage::open(
            &dir.0,
            SyncMode::Never,
            cache_bytes,
            &mut Batches::default(),
        )
        .unwrap();
        (storage, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn bodies_beyond_the_hot_tail_are_read_from_disk_and_after_restart() {
        const BUDGET: usize = 4096;
        let dir = TempDir::new();
        let (storage, _) =
            Storage::open(&dir.0, SyncMode::Never, BUDGET, &mut Batches::default()).unwrap();
        // 400 KiB through a 4 KiB hot tail.
        let bodies: Vec<Vec<u8>> = (0..400u32)
            .map(|i| (0..1024).map(|b| (i as usize * 7 + b) as u8).collect())
            .collect();
        let mut positions = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            positions.push(storage.append_records(i as i64, body).unwrap());
            assert!(storage.cached_bytes() <= BUDGET);
        }
        assert!(storage.cached_bytes() > 0, "the newest frames are cached");
        for (body, position) in bodies.iter().zip(&positions) {
            assert_eq!(&storage.read(*position, body.len()).unwrap()[..], &body[..]);
        }
        storage.close();
        drop(storage);
        let mut recovered = Batches::default();
        let (storage, _) = Storage::open(&dir.0, SyncMode::Never, BUDGET, &mut recovered).unwrap();
        assert_eq!(recovered.0.len(), bodies.len());
        for (i, ((arrival, position, body), expected)) in
            recovered.0.iter().zip(&bodies).enumerate()
        {
            assert_eq!(
                (*arrival, *position, body),
                (i as i64, positions[i], expected)
            );
            assert_eq!(&storage.read(*position, body.len()).unwrap()[..], &body[..]);
        }
    }

    #[test]
    fn service_logs_keep_their_batches_apart_and_across_a_restart() {
        let dir = TempDir::new();
        let open = || Storage::open(&dir.0, SyncMode::Always, 0, &mut Batches::default()).unwrap();
        let (storage, _) = open();
        let video = storage.service_log("video", |_, _, _| Ok(())).unwrap();
        let firehose = storage.service_log("firehose", |_, _, _| Ok(())).unwrap();
        write_mark::take();
        let fragment = video.append(5, b"fragment").unwrap();
        assert!(
            write_mark::take() > 0,
            "an append leaves a write mark to wait on"
        );
        let buffered = firehose.append(6, b"buffered").unwrap();
        assert_eq!(&video.read(fragment, 8).unwrap()[..], b"fragment");
        assert_eq!(&firehose.read(buffered, 8).unwrap()[..], b"buffered");
        storage.close();
        drop((storage, video, firehose));

        let (storage, _) = open();
        let mut seen = Vec::new();
        let video = storage
            .service_log("video", |arrival, position, body| {
                seen.push((arrival, position, body.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(5, fragment, b"fragment".to_vec())]);
        assert_eq!(&video.read(fragment, 8).unwrap()[..], b"fragment");
        assert!(storage.service_log("records", |_, _, _| Ok(())).is_err());
    }

    #[test]
    fn without_a_data_directory_a_service_log_keeps_nothing() {
        let log = Storage::memory()
            .service_log("video", |_, _, _| unreachable!("nothing to replay"))
            .unwrap();
        assert!(!log.is_durable());
        assert_eq!(log.append(1, b"x").unwrap(), 0);
        assert!(log.read(0, 1).is_err());
    }
}
