//! Buffering: records wait until `SizeInMBs` of them have arrived or the oldest has waited
//! `IntervalInSeconds`, whichever comes first; then they leave as one batch. The same buffer
//! holds a stream's records as they arrived and, with dynamic partitioning, each partition's
//! processed records (`partitions`).

use super::store::LogMark;
use bytes::Bytes;
use std::collections::VecDeque;

/// Bytes in one of the `SizeInMBs` units (Firehose means MiB).
const MIB: usize = 1024 * 1024;

/// A destination's `BufferingHints`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// Deliver once this many bytes are buffered.
    pub size_bytes: usize,
    /// Deliver once the oldest record has waited this long.
    pub interval_ms: i64,
}

impl Hints {
    /// Hints from the configured `SizeInMBs` and `IntervalInSeconds` (already range-checked).
    pub fn new(size_in_mbs: i64, interval_in_seconds: i64) -> Self {
        Self {
            size_bytes: usize::try_from(size_in_mbs).unwrap_or(1).max(1) * MIB,
            interval_ms: interval_in_seconds.max(0) * 1000,
        }
    }
}

/// One record as it arrived.
#[derive(Debug, Clone)]
pub struct BufferedRecord {
    /// The record's bytes as the producer sent them.
    pub data: Bytes,
    /// Epoch milliseconds when the broker accepted it.
    pub arrival_ms: i64,
    /// Where the record is in the data directory's log.
    pub log: LogMark,
}

/// What a buffer needs to know of a record.
pub trait Buffered {
    /// Its size, counted against `SizeInMBs`.
    fn size(&self) -> usize;
    /// Epoch milliseconds when the broker accepted it.
    fn arrival_ms(&self) -> i64;
    /// Where it is in the data directory's log.
    fn log(&self) -> LogMark;
}

impl Buffered for BufferedRecord {
    fn size(&self) -> usize {
        self.data.len()
    }
    fn arrival_ms(&self) -> i64 {
        self.arrival_ms
    }
    fn log(&self) -> LogMark {
        self.log
    }
}

/// Records waiting for delivery, oldest first.
#[derive(Debug)]
pub struct Buffer<T = BufferedRecord> {
    records: VecDeque<T>,
    bytes: usize,
}

impl<T> Default for Buffer<T> {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<T: Buffered> Buffer<T> {
    /// Appends a record.
    pub fn push(&mut self, record: T) {
        self.bytes += record.size();
        self.records.push_back(record);
    }

    /// Puts `records` (older than everything buffered, oldest first) back at the front.
    pub fn put_back(&mut self, records: Vec<T>) {
        for record in records.into_iter().rev() {
            self.bytes += record.size();
            self.records.push_front(record);
        }
    }

    /// Every buffered record, oldest first.
    pub fn into_records(self) -> VecDeque<T> {
        self.records
    }

    /// Where the oldest buffered record is in the log.
    pub fn oldest_log(&self) -> Option<LogMark> {
        self.records.front().map(Buffered::log)
    }

    /// Bytes buffered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records buffered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// When the oldest buffered record arrived.
    pub fn oldest_arrival(&self) -> Option<i64> {
        self.records.front().map(Buffered::arrival_ms)
    }

    /// When the buffer must be delivered by the interval hint, if it holds anything.
    pub fn due_at(&self, hints: Hints) -> Option<i64> {
        self.oldest_arrival().map(|at| at + hints.interval_ms)
    }

    /// True when the size hint is reached or the oldest record has waited the interval.
    pub fn is_due(&self, hints: Hints, now_ms: i64) -> bool {
        self.bytes >= hints.size_bytes || self.due_at(hints).is_some_and(|t| t <= now_ms)
    }

    /// Takes the next batch if one is due at `now_ms` (or `force`d, at shutdown): at most
    /// `size_bytes` (but at least one record), oldest first.
    pub fn take_due(&mut self, hints: Hints, now_ms: i64, force: bool) -> Option<Vec<T>> {
        if !(force || self.is_due(hints, now_ms)) || self.records.is_empty() {
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(record) = self.records.front() {
            if !batch.is_empty() && bytes + record.size() > hints.size_bytes {
                break;
            }
            bytes += record.size();
            batch.extend(self.records.pop_front());
        }
        self.bytes -= bytes;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: usize, arrival_ms: i64) -> BufferedRecord {
        BufferedRecord {
            data: Bytes::from(vec![b'x'; len]),
            arrival_ms,
            log: LogMark::default(),
        }
    }

    #[test]
    fn delivers_by_size_in_batches_no_larger_than_the_hint() {
        let hints = Hints::new(1, 900);
        let mut buffer = Buffer::default();
        for _ in 0..3 {
            buffer.push(record(400 * 1024, 0));
        }
        let batch = buffer.take_due(hints, 0, false).unwrap();
        assert_eq!(batch.len(), 2);
        assert!(buffer.take_due(hints, 0, false).is_none());
        assert_eq!(buffer.take_due(hints, 0, true).unwrap().len(), 1);
        assert!(buffer.is_empty());
    }

    #[test]
    fn delivers_by_interval_from_the_oldest_record() {
        let hints = Hints::new(5, 2);
        let mut buffer = Buffer::default();
        buffer.push(record(10, 1_000));
        buffer.push(record(10, 2_500));
        assert_eq!(buffer.due_at(hints), Some(3_000));
        assert!(buffer.take_due(hints, 2_999, false).is_none());
        assert_eq!(buffer.take_due(hints, 3_000, false).unwrap().len(), 2);
    }
}
