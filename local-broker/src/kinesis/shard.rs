//! A shard: its place in the lineage, its hash range, and its log of records.
//!
//! Appends and reads of one shard take only that shard's lock, so writers to different shards run
//! in parallel. Arrival timestamps are made non-decreasing under the lock, so the log can be
//! searched by time and trimmed from the front when records pass the retention period.
//!
//! What the log holds depends on the broker's [`Storage`], chosen by the first append or restore:
//! in memory, the records themselves; with a data directory, only an index ([`IndexedRecord`],
//! 24 bytes a record) into the record log, whose bodies are read back through [`Storage::read`]
//! (from its hot tail, or from disk). Reads pick their records under the lock and fetch bodies
//! after releasing it, so a read from disk never holds up appends.

use super::hash::HashRange;
use super::limits::ShardLimits;
use super::sequence::SequenceNumber;
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;

/// One record as stored.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub counter: u64,
    pub arrival_ms: i64,
    pub partition_key: String,
    pub data: Bytes,
    pub encrypted: bool,
}

/// Why a shard stopped accepting records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub at_ms: i64,
    /// Counter of the last record the shard will ever hold (0 when it held none).
    pub last_counter: u64,
}

/// Where one record lives in the record log, and what a read must know before fetching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedRecord {
    /// Log position of the record's encoding (see [`super::store::decode_record`]).
    pub position: u64,
    pub arrival_ms: i64,
    pub data_len: u32,
    pub key_len: u16,
    pub encrypted: bool,
}

// What a shard holds per record with a data directory (the module docs promise 24 bytes).
const _: () = assert!(size_of::<IndexedRecord>() == 24);

impl IndexedRecord {
    /// Bytes of the record's encoding in the log.
    fn encoded_len(&self) -> u64 {
        super::store::encoded_len(self.key_len, self.data_len)
    }
}

/// A shard's records, oldest first, with consecutive counters.
#[derive(Debug)]
enum Records {
    /// The records themselves (no data directory).
    Memory(VecDeque<StoredRecord>),
    /// Where the records are in the record log; `first_counter` is the counter of `index[0]`.
    Disk {
        first_counter: u64,
        index: VecDeque<IndexedRecord>,
    },
}

/// Records a read picked under the shard's lock.
enum Picked {
    Ready(Vec<StoredRecord>),
    /// Still to be read from storage: the first one's counter and where they are.
    Indexed(u64, Vec<IndexedRecord>),
}

impl Records {
    fn len(&self) -> usize {
        match self {
            Records::Memory(records) => records.len(),
            Records::Disk { index, .. } => index.len(),
        }
    }

    /// Counter of the oldest record held.
    fn first_counter(&self) -> Option<u64> {
        match self {
            Records::Memory(records) => records.front().map(|r| r.counter),
            Records::Disk {
                first_counter,
                index,
            } => (!index.is_empty()).then_some(*first_counter),
        }
    }

    fn arrival_ms(&self, i: usize) -> Option<i64> {
        match self {
            Records::Memory(records) => records.get(i).map(|r| r.arrival_ms),
            Records::Disk { index, .. } => index.get(i).map(|r| r.arrival_ms),
        }
    }

    /// Bytes of record data held, by walking every record ([`ShardLog::data_bytes`] keeps the
    /// running total; tests check the two agree).
    #[cfg(test)]
    fn data_bytes(&self) -> u64 {
        match self {
            Records::Memory(records) => records.iter().map(|r| r.data.len() as u64).sum(),
            Records::Disk { index, .. } => index.iter().map(|r| u64::from(r.data_len)).sum(),
        }
    }

    /// Index of the first record after `counter` (counters are consecutive).
    fn position_after(&self, counter: u64) -> usize {
        self.first_counter().map_or(0, |first| {
            usize::try_from((counter + 1).saturating_sub(first)).unwrap_or(usize::MAX)
        })
    }

    /// Index of the first record that arrived at or after `at_ms`.
    fn first_arrived_at(&self, at_ms: i64) -> usize {
        match self {
            Records::Memory(records) => records.partition_point(|r| r.arrival_ms < at_ms),
            Records::Disk { index, .. } => index.partition_point(|r| r.arrival_ms < at_ms),
        }
    }

    /// Drops the oldest record; returns its data bytes (`None` if none is held).
    fn pop_front(&mut self) -> Option<u64> {
        match self {
            Records::Memory(records) => records.pop_front().map(|r| r.data.len() as u64),
            Records::Disk {
                first_counter,
                index,
            } => {
                let popped = index.pop_front()?;
                *first_counter += 1;
                Some(u64::from(popped.data_len))
            }
        }
    }

    /// Switches an empty log to an index when records go to a data directory.
    fn index(&mut self) -> (&mut u64, &mut VecDeque<IndexedRecord>) {
        if let Records::Memory(records) = self {
            debug_assert!(records.is_empty(), "a shard's storage never changes");
            *self = Records::Disk {
                first_counter: 0,
                index: VecDeque::new(),
            };
        }
        match self {
            Records::Disk {
                first_counter,
                index,
            } => (first_counter, index),
            Records::Memory(_) => unreachable!("switched to an index above"),
        }
    }

    /// Indexes the record with `counter`, which must follow the newest one held; returns false
    /// (and changes nothing) if the log already holds that counter.
    fn push_indexed(&mut self, counter: u64, record: IndexedRecord) -> bool {
        let (first_counter, index) = self.index();
        let next = *first_counter + index.len() as u64;
        if !index.is_empty() && counter < next {
            return false;
        }
        if index.is_empty() || counter > next {
            // A gap only follows a record log cut short; the older records cannot be reached
            // by counter any more.
            index.clear();
            *first_counter = counter;
        }
        index.push_back(record);
        true
    }

    /// Up to `limit` records and `max_bytes` of data from the `skip`th one (at least one
    /// record when any is there).
    fn pick(&self, skip: usize, limit: usize, max_bytes: usize) -> Picked {
        fn take<T>(
            items: impl Iterator<Item = T>,
            data_len: impl Fn(&T) -> usize,
            limit: usize,
            max_bytes: usize,
        ) -> Vec<T> {
            let mut picked = Vec::new();
            let mut bytes = 0usize;
            for item in items {
                let len = data_len(&item);
                if picked.len() >= limit || (!picked.is_empty() && bytes + len > max_bytes) {
                    break;
                }
                bytes += len;
                picked.push(item);
            }
            picked
        }
        match self {
            Records::Memory(records) => Picked::Ready(take(
                records.iter().skip(skip).cloned(),
                |r| r.data.len(),
                limit,
                max_bytes,
            )),
            Records::Disk {
                first_counter,
                index,
            } => Picked::Indexed(
                first_counter + skip as u64,
                take(
                    index.iter().skip(skip).copied(),
                    |r| r.data_len as usize,
                    limit,
                    max_bytes,
                ),
            ),
        }
    }
}

impl Picked {
    fn len(&self) -> usize {
        match self {
            Picked::Ready(records) => records.len(),
            Picked::Indexed(_, index) => index.len(),
        }
    }

    /// The records, read from storage if they were picked from an index. Records appended in
    /// one batch lie next to each other in the log, so each run of them is one read.
    fn fetch(self, storage: &Storage) -> Result<Vec<StoredRecord>, StorageError> {
        let (first_counter, index) = match self {
            Picked::Ready(records) => return Ok(records),
            Picked::Indexed(first_counter, index) => (first_counter, index),
        };
        let mut records = Vec::with_capacity(index.len());
        let mut run_start = 0;
        while run_start < index.len() {
            let mut run_end = run_start + 1;
            while index.get(run_end).is_some_and(|next| {
                let previous = &index[run_end - 1];
                next.position == previous.position + previous.encoded_len()
            }) {
                run_end += 1;
            }
            let run = &index[run_start..run_end];
            let start = run[0].position;
            let len = run[run.len() - 1].position + run[run.len() - 1].encoded_len() - start;
            let bytes = storage.read(start, len as usize)?;
            for (i, entry) in run.iter().enumerate() {
                let at = (entry.position - start) as usize;
                let encoded = bytes.slice(at..at + entry.encoded_len() as usize);
                let (partition_key, data) = super::store::decode_record(&encoded, entry.key_len)
                    .ok_or_else(|| {
                        StorageError::Corrupt(format!(
                            "no record at log position {}",
                            entry.position
                        ))
                    })?;
                records.push(StoredRecord {
                    counter: first_counter + (run_start + i) as u64,
                    arrival_ms: entry.arrival_ms,
                    partition_key,
                    data,
                    encrypted: entry.encrypted,
                });
            }
            run_start = run_end;
        }
        Ok(records)
    }
}

/// The mutable part of a shard.
#[derive(Debug)]
pub struct ShardLog {
    records: Records,
    /// Bytes of record data in `records`, kept as they are pushed and dropped so stats need not
    /// walk them.
    data_bytes: u64,
    /// Counter the next appended record gets.
    next_counter: u64,
    last_arrival_ms: i64,
    closed: Option<Closed>,
    /// Child shard ids, set when the shard is closed by a split or merge.
    children: Vec<String>,
}

/// A shard of a stream.
#[derive(Debug)]
pub struct Shard {
    pub id: String,
    pub index: u32,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    pub range: HashRange,
    pub created_ms: i64,
    pub stream_epoch: i64,
    log: Mutex<ShardLog>,
    /// Bumped after every append and on close, so fan-out subscribers wake instead of polling.
    changed: watch::Sender<u64>,
    /// Throughput allowance, when limits are enforced.
    limits: Mutex<ShardLimits>,
}

/// What a shard holds right now (for metrics and the status page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Records still held (inside retention, or not yet swept).
    pub records: u64,
    /// Bytes of their data.
    pub bytes: u64,
    /// Arrival time of the newest record.
    pub last_arrival_ms: Option<i64>,
}

/// What a read returned.
#[derive(Debug)]
pub struct ReadBatch {
    pub records: Vec<StoredRecord>,
    /// Counter to continue from.
    pub next_counter: u64,
    /// True when the shard is closed and everything in it has been read.
    pub exhausted: bool,
    /// Arrival time of the first record not returned, if any remain.
    pub next_unread_arrival_ms: Option<i64>,
    pub children: Vec<String>,
}

impl Shard {
    /// A new open shard.
    pub fn new(
        index: u32,
        range: HashRange,
        parents: (Option<String>, Option<String>),
        created_ms: i64,
        stream_epoch: i64,
    ) -> Self {
        Self {
            id: shard_id(index),
            index,
            parent: parents.0,
            adjacent_parent: parents.1,
            range,
            created_ms,
            stream_epoch,
            log: Mutex::new(ShardLog {
                records: Records::Memory(VecDeque::new()),
                data_bytes: 0,
                next_counter: 1,
                last_arrival_ms: created_ms,
                closed: None,
                children: Vec::new(),
            }),
            changed: watch::Sender::new(1),
            limits: Mutex::new(ShardLimits::new(created_ms)),
        }
    }

    /// The shard's throughput allowance (consulted only when limits are enforced).
    pub fn limits(&self) -> MutexGuard<'_, ShardLimits> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that is marked changed whenever records are appended or the shard closes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The log, even if a thread panicked while holding it: every mutation keeps it consistent.
    fn log(&self) -> MutexGuard<'_, ShardLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sequence number of the record with this counter.
    pub fn sequence_number(&self, counter: u64) -> SequenceNumber {
        SequenceNumber {
            shard_index: self.index,
            counter,
            stream_epoch: self.stream_epoch,
        }
    }

    /// Appends records of stream `stream`; returns their counters. The caller checked the shard
    /// is open while holding the stream's routing lock, so no append can race a close. With a
    /// data directory the batch is written to the record log first, under this shard's lock, so
    /// the log holds each shard's records in counter order and a failed write changes nothing;
    /// the shard then keeps only where each record is.
    pub fn append(
        &self,
        now_ms: i64,
        retention_ms: i64,
        entries: Vec<(String, Bytes)>,
        encrypted: bool,
        storage: &Storage,
        stream: &str,
    ) -> Result<Vec<u64>, StorageError> {
        let mut log = self.log();
        let arrival = now_ms.max(log.last_arrival_ms);
        let first_counter = log.next_counter;
        let counters: Vec<u64> = (first_counter..first_counter + entries.len() as u64).collect();
        if storage.is_durable() {
            let body = super::store::encode_batch(stream, self, first_counter, encrypted, &entries);
            let position = storage.append_records(arrival, &body)?;
            log.trim(now_ms - retention_ms);
            for ((offset, (key, data)), counter) in super::store::record_offsets(stream, &entries)
                .zip(&entries)
                .zip(&counters)
            {
                log.push_indexed(
                    *counter,
                    IndexedRecord {
                        position: position + offset,
                        arrival_ms: arrival,
                        data_len: data.len() as u32,
                        key_len: key.len() as u16,
                        encrypted,
                    },
                );
            }
        } else {
            log.trim(now_ms - retention_ms);
            let log = &mut *log;
            let Records::Memory(records) = &mut log.records else {
                unreachable!("a shard without a data directory keeps its records in memory");
            };
            for ((partition_key, data), counter) in entries.into_iter().zip(&counters) {
                log.data_bytes += data.len() as u64;
                records.push_back(StoredRecord {
                    counter: *counter,
                    arrival_ms: arrival,
                    partition_key,
                    data,
                    encrypted,
                });
            }
        }
        log.last_arrival_ms = arrival;
        log.next_counter = first_counter + counters.len() as u64;
        let next = log.next_counter;
        drop(log);
        self.changed.send_replace(next);
        Ok(counters)
    }

    /// Brings a new shard to its persisted state; its records follow through
    /// [`Shard::restore_batch`].
    pub fn restore_state(&self, next_counter: u64, closed: Option<Closed>, children: Vec<String>) {
        let mut log = self.log();
        log.next_counter = log.next_counter.max(next_counter);
        log.closed = closed;
        log.children = children;
    }

    /// Indexes one batch found in the record log on restart. Counters only ever move forward, so
    /// the shard's next counter ends past everything it ever acknowledged.
    pub fn restore_batch(&self, first_counter: u64, records: impl Iterator<Item = IndexedRecord>) {
        let mut log = self.log();
        for (i, record) in records.enumerate() {
            let counter = first_counter + i as u64;
            let arrival_ms = record.arrival_ms;
            if log.push_indexed(counter, record) {
                log.next_counter = log.next_counter.max(counter + 1);
                log.last_arrival_ms = log.last_arrival_ms.max(arrival_ms);
            }
        }
    }

    /// Closes the shard (split or merge), naming its children.
    pub fn close(&self, now_ms: i64, children: Vec<String>) {
        let mut log = self.log();
        let last_counter = log.next_counter - 1;
        log.closed = Some(Closed {
            at_ms: now_ms,
            last_counter,
        });
        log.children = children;
        let next = log.next_counter;
        drop(log);
        self.changed.send_replace(next);
    }

    /// When and where the shard was closed, if it was.
    pub fn closed(&self) -> Option<Closed> {
        self.log().closed
    }

    /// Child shard ids (empty while open).
    pub fn children(&self) -> Vec<String> {
        self.log().children.clone()
    }

    /// Records and bytes held, and the newest arrival.
    pub fn stats(&self) -> ShardStats {
        let log = self.log();
        ShardStats {
            records: log.records.len() as u64,
            bytes: log.data_bytes,
            last_arrival_ms: log
                .records
                .len()
                .checked_sub(1)
                .and_then(|last| log.records.arrival_ms(last)),
        }
    }

    /// Arrival time of the first record after `counter` that is still held: a reader that has
    /// read up to `counter` is that far behind (`None` when it is at the tip).
    pub fn arrival_after(&self, counter: u64) -> Option<i64> {
        let log = self.log();
        log.records.arrival_ms(log.records.position_after(counter))
    }

    /// Counter the next record will get.
    pub fn next_counter(&self) -> u64 {
        self.log().next_counter
    }

    /// Counter of the oldest record still inside the retention period (`next_counter` if none).
    pub fn trim_horizon_counter(&self, horizon_ms: i64) -> u64 {
        let log = self.log();
        log.first_readable(horizon_ms)
    }

    /// Counter of the first record that arrived at or after `at_ms` (and is not expired).
    pub fn counter_at_timestamp(&self, at_ms: i64, horizon_ms: i64) -> u64 {
        let log = self.log();
        log.counter_arrived_at(at_ms)
            .max(log.first_readable(horizon_ms))
    }

    /// Reads from `from_counter`, skipping expired records, up to `limit` records and `max_bytes`
    /// of data (at least one record when any is readable). Records of a data directory are read
    /// from `storage`, which fails only if the data directory does.
    pub fn read(
        &self,
        storage: &Storage,
        from_counter: u64,
        limit: usize,
        max_bytes: usize,
        horizon_ms: i64,
    ) -> Result<ReadBatch, StorageError> {
        let (picked, batch) = {
            let log = self.log();
            let start = from_counter.max(log.first_readable(horizon_ms));
            let first = log.records.first_counter().unwrap_or(log.next_counter);
            let skip = start.saturating_sub(first) as usize;
            let picked = log.records.pick(skip, limit, max_bytes);
            let next_counter = if picked.len() == 0 {
                start.min(log.next_counter)
            } else {
                first + (skip + picked.len()) as u64
            };
            let next_unread_arrival_ms = log
                .records
                .arrival_ms(next_counter.saturating_sub(first) as usize);
            let exhausted = log.closed.is_some() && next_counter >= log.next_counter;
            let batch = ReadBatch {
                records: Vec::new(),
                next_counter,
                exhausted,
                next_unread_arrival_ms,
                children: if exhausted {
                    log.children.clone()
                } else {
                    Vec::new()
                },
            };
            (picked, batch)
        };
        Ok(ReadBatch {
            records: picked.fetch(storage)?,
            ..batch
        })
    }

    /// Forgets records that arrived before `horizon_ms`: with a data directory, their record
    /// log segments may be deleted next.
    pub fn expire(&self, horizon_ms: i64) {
        self.log().trim(horizon_ms);
    }
}

impl ShardLog {
    /// Counter of the first record that arrived at or after `at_ms` (`next_counter` if none).
    fn counter_arrived_at(&self, at_ms: i64) -> u64 {
        let idx = self.records.first_arrived_at(at_ms);
        match self.records.first_counter() {
            Some(first) if idx < self.records.len() => first + idx as u64,
            _ => self.next_counter,
        }
    }

    fn first_readable(&self, horizon_ms: i64) -> u64 {
        self.counter_arrived_at(horizon_ms)
    }

    /// [`Records::push_indexed`], keeping `data_bytes`: a push that restarts the index after a
    /// gap leaves only the new record held.
    fn push_indexed(&mut self, counter: u64, record: IndexedRecord) -> bool {
        let held = self.records.len();
        if !self.records.push_indexed(counter, record) {
            return false;
        }
        if self.records.len() != held + 1 {
            self.data_bytes = 0;
        }
        self.data_bytes += u64::from(record.data_len);
        true
    }

    /// Drops records that arrived before `horizon_ms`; they can never be read again.
    fn trim(&mut self, horizon_ms: i64) {
        while self.records.arrival_ms(0).is_some_and(|a| a < horizon_ms) {
            if let Some(bytes) = self.records.pop_front() {
                self.data_bytes -= bytes;
            }
        }
    }
}

/// The id of the shard with this index: `shardId-000000000007`.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// The index of a shard id, `None` if it is not one of ours.
pub fn shard_index(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard over each kind of storage: in memory, and a data directory whose hot tail is too
    /// small for any batch (every read goes to disk).
    fn shards() -> Vec<Fixture> {
        let (storage, dir) = crate::storage::testing::open_temp(0);
        [(Storage::memory(), None), (storage, Some(dir))]
            .into_iter()
            .map(|(storage, dir)| Fixture {
                shard: Shard::new(0, HashRange::ALL, (None, None), 0, 1),
                storage,
                _dir: dir,
            })
            .collect()
    }

    struct Fixture {
        shard: Shard,
        storage: Storage,
        _dir: Option<crate::storage::testing::TempDir>,
    }

    impl Fixture {
        fn put(&self, now: i64, n: usize) -> Vec<u64> {
            self.shard
                .append(
                    now,
                    24 * 3_600_000,
                    (0..n)
                        .map(|i| (format!("k{i}"), Bytes::from(vec![i as u8; 10])))
                        .collect(),
                    false,
                    &self.storage,
                    "s",
                )
                .unwrap()
        }

        fn read(&self, from: u64, limit: usize, max_bytes: usize, horizon: i64) -> ReadBatch {
            self.shard
                .read(&self.storage, from, limit, max_bytes, horizon)
                .unwrap()
        }
    }

    fn counters(batch: &ReadBatch) -> Vec<u64> {
        batch.records.iter().map(|r| r.counter).collect()
    }

    #[test]
    fn reads_resume_where_they_stopped() {
        for s in shards() {
            assert_eq!(s.put(10, 5), vec![1, 2, 3, 4, 5]);
            let a = s.read(1, 2, usize::MAX, 0);
            assert_eq!(counters(&a), vec![1, 2]);
            let b = s.read(a.next_counter, 100, usize::MAX, 0);
            assert_eq!(counters(&b), vec![3, 4, 5]);
            assert_eq!(b.records[2].partition_key, "k4");
            assert_eq!(b.records[2].data, Bytes::from(vec![4u8; 10]));
            assert!(!b.exhausted);
            assert_eq!(b.next_unread_arrival_ms, None);
        }
    }

    #[test]
    fn reads_span_batches() {
        for s in shards() {
            s.put(10, 2);
            s.put(20, 3);
            let batch = s.read(2, 100, usize::MAX, 0);
            assert_eq!(counters(&batch), vec![2, 3, 4, 5]);
            assert_eq!(
                batch
                    .records
                    .iter()
                    .map(|r| r.arrival_ms)
                    .collect::<Vec<_>>(),
                vec![10, 20, 20, 20]
            );
            assert_eq!(s.shard.counter_at_timestamp(15, 0), 3);
        }
    }

    #[test]
    fn closed_shard_is_exhausted_after_last_record() {
        for s in shards() {
            s.put(10, 2);
            s.shard.close(20, vec!["shardId-000000000001".into()]);
            let batch = s.read(1, 100, usize::MAX, 0);
            assert!(batch.exhausted);
            assert_eq!(batch.children, vec!["shardId-000000000001".to_string()]);
        }
    }

    #[test]
    fn expired_records_are_skipped() {
        for s in shards() {
            s.put(10, 2);
            s.put(100, 2);
            let batch = s.read(1, 100, usize::MAX, 50);
            assert_eq!(counters(&batch), vec![3, 4]);
            s.shard.expire(50);
            assert_eq!(
                s.shard.trim_horizon_counter(0),
                3,
                "expired records are forgotten"
            );
        }
    }

    #[test]
    fn stats_bytes_follow_appends_and_expiry() {
        let walked = |shard: &Shard| shard.log().records.data_bytes();
        for s in shards() {
            s.put(10, 2);
            s.put(100, 3);
            assert_eq!(s.shard.stats().bytes, 50);
            assert_eq!(s.shard.stats().bytes, walked(&s.shard));
            s.shard.expire(50);
            assert_eq!(s.shard.stats().bytes, 30);
            assert_eq!(s.shard.stats().bytes, walked(&s.shard));
            s.shard.expire(1_000);
            assert_eq!(s.shard.stats().bytes, 0);
        }
        // A gap in a restored record log leaves only the records after it.
        let shard = Shard::new(0, HashRange::ALL, (None, None), 0, 1);
        let record = |data_len| IndexedRecord {
            position: 0,
            arrival_ms: 10,
            data_len,
            key_len: 1,
            encrypted: false,
        };
        shard.restore_batch(1, [record(3), record(4)].into_iter());
        shard.restore_batch(1, [record(3)].into_iter());
        assert_eq!(
            shard.stats().bytes,
            7,
            "a record already held is not counted twice"
        );
        shard.restore_batch(5, [record(6)].into_iter());
        assert_eq!(shard.stats().bytes, 6);
        assert_eq!(shard.stats().bytes, walked(&shard));
    }

    #[test]
    fn byte_cap_still_returns_one_record() {
        for s in shards() {
            s.put(10, 3);
            assert_eq!(s.read(1, 100, 5, 0).records.len(), 1);
            assert_eq!(s.read(1, 100, 25, 0).records.len(), 2);
        }
    }

    #[test]
    fn shard_ids_round_trip() {
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(shard_index("shardId-000000000007"), Some(7));
        assert_eq!(shard_index("shardId-7"), None);
    }
}
