//! A shard: its place in the lineage, its hash range, and its log of records.
//!
//! Appends and reads of one shard take only that shard's lock, so writers to different shards run
//! in parallel. Arrival timestamps are made non-decreasing under the lock, so the log can be
//! searched by time and trimmed from the front when records pass the retention period.

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

/// The mutable part of a shard.
#[derive(Debug)]
pub struct ShardLog {
    records: VecDeque<StoredRecord>,
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
                records: VecDeque::new(),
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
    /// the log holds each shard's records in counter order and a failed write changes nothing.
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
        if storage.is_durable() {
            let body =
                super::store::encode_batch(stream, self, log.next_counter, encrypted, &entries);
            storage.append_records(arrival, &body)?;
        }
        log.last_arrival_ms = arrival;
        log.trim(now_ms - retention_ms);
        let mut counters = Vec::with_capacity(entries.len());
        for (partition_key, data) in entries {
            let counter = log.next_counter;
            log.next_counter += 1;
            log.records.push_back(StoredRecord {
                counter,
                arrival_ms: arrival,
                partition_key,
                data,
                encrypted,
            });
            counters.push(counter);
        }
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

    /// Replays one batch from the record log. Counters only ever move forward, so the shard's
    /// next counter ends past everything it ever acknowledged.
    pub fn restore_batch(
        &self,
        first_counter: u64,
        arrival_ms: i64,
        encrypted: bool,
        records: Vec<(String, Bytes)>,
    ) {
        let mut log = self.log();
        for (i, (partition_key, data)) in records.into_iter().enumerate() {
            let counter = first_counter + i as u64;
            if log.records.back().is_some_and(|r| r.counter >= counter) {
                continue;
            }
            log.records.push_back(StoredRecord {
                counter,
                arrival_ms,
                partition_key,
                data,
                encrypted,
            });
            log.next_counter = log.next_counter.max(counter + 1);
        }
        log.last_arrival_ms = log.last_arrival_ms.max(arrival_ms);
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
            bytes: log.records.iter().map(|r| r.data.len() as u64).sum(),
            last_arrival_ms: log.records.back().map(|r| r.arrival_ms),
        }
    }

    /// Arrival time of the first record after `counter` that is still held: a reader that has
    /// read up to `counter` is that far behind (`None` when it is at the tip).
    pub fn arrival_after(&self, counter: u64) -> Option<i64> {
        let log = self.log();
        let idx = log.records.partition_point(|r| r.counter <= counter);
        log.records.get(idx).map(|r| r.arrival_ms)
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
        let idx = log.records.partition_point(|r| r.arrival_ms < at_ms);
        log.records
            .get(idx)
            .map(|r| r.counter)
            .unwrap_or(log.next_counter)
            .max(log.first_readable(horizon_ms))
    }

    /// Reads from `from_counter`, skipping expired records, up to `limit` records and `max_bytes`
    /// of data (at least one record when any is readable).
    pub fn read(
        &self,
        from_counter: u64,
        limit: usize,
        max_bytes: usize,
        horizon_ms: i64,
    ) -> ReadBatch {
        let log = self.log();
        let start = from_counter.max(log.first_readable(horizon_ms));
        let first = log.records.front().map_or(log.next_counter, |r| r.counter);
        let skip = start.saturating_sub(first) as usize;
        let mut records = Vec::new();
        let mut bytes = 0usize;
        for record in log.records.iter().skip(skip) {
            if records.len() >= limit
                || (!records.is_empty() && bytes + record.data.len() > max_bytes)
            {
                break;
            }
            bytes += record.data.len();
            records.push(record.clone());
        }
        let next_counter = records
            .last()
            .map_or(start.min(log.next_counter), |r| r.counter + 1);
        let next_unread_arrival_ms = log
            .records
            .get((next_counter.saturating_sub(first)) as usize)
            .map(|r| r.arrival_ms);
        let exhausted = log.closed.is_some() && next_counter >= log.next_counter;
        ReadBatch {
            records,
            next_counter,
            exhausted,
            next_unread_arrival_ms,
            children: if exhausted {
                log.children.clone()
            } else {
                Vec::new()
            },
        }
    }
}

impl ShardLog {
    fn first_readable(&self, horizon_ms: i64) -> u64 {
        let idx = self.records.partition_point(|r| r.arrival_ms < horizon_ms);
        self.records
            .get(idx)
            .map_or(self.next_counter, |r| r.counter)
    }

    /// Drops records that arrived before `horizon_ms`; they can never be read again.
    fn trim(&mut self, horizon_ms: i64) {
        while self
            .records
            .front()
            .is_some_and(|r| r.arrival_ms < horizon_ms)
        {
            self.records.pop_front();
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

    fn shard() -> Shard {
        Shard::new(0, HashRange::ALL, (None, None), 0, 1)
    }

    fn put(shard: &Shard, now: i64, n: usize) -> Vec<u64> {
        shard
            .append(
                now,
                24 * 3_600_000,
                (0..n)
                    .map(|i| (format!("k{i}"), Bytes::from(vec![0u8; 10])))
                    .collect(),
                false,
                &Storage::memory(),
                "s",
            )
            .unwrap()
    }

    #[test]
    fn reads_resume_where_they_stopped() {
        let s = shard();
        assert_eq!(put(&s, 10, 5), vec![1, 2, 3, 4, 5]);
        let a = s.read(1, 2, usize::MAX, 0);
        assert_eq!(a.records.len(), 2);
        let b = s.read(a.next_counter, 100, usize::MAX, 0);
        assert_eq!(
            b.records.iter().map(|r| r.counter).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(!b.exhausted);
        assert_eq!(b.next_unread_arrival_ms, None);
    }

    #[test]
    fn closed_shard_is_exhausted_after_last_record() {
        let s = shard();
        put(&s, 10, 2);
        s.close(20, vec!["shardId-000000000001".into()]);
        let batch = s.read(1, 100, usize::MAX, 0);
        assert!(batch.exhausted);
        assert_eq!(batch.children, vec!["shardId-000000000001".to_string()]);
    }

    #[test]
    fn expired_records_are_skipped() {
        let s = shard();
        put(&s, 10, 2);
        put(&s, 100, 2);
        let batch = s.read(1, 100, usize::MAX, 50);
        assert_eq!(
            batch.records.iter().map(|r| r.counter).collect::<Vec<_>>(),
            vec![3, 4]
        );
    }

    #[test]
    fn byte_cap_still_returns_one_record() {
        let s = shard();
        put(&s, 10, 3);
        assert_eq!(s.read(1, 100, 5, 0).records.len(), 1);
        assert_eq!(s.read(1, 100, 25, 0).records.len(), 2);
    }

    #[test]
    fn shard_ids_round_trip() {
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(shard_index("shardId-000000000007"), Some(7));
        assert_eq!(shard_index("shardId-7"), None);
    }
}
