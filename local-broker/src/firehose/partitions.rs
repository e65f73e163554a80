//! Dynamic partitioning's buffers: every distinct set of partition keys is a partition with its
//! own buffer of processed records, delivered as one object when that buffer alone reaches the
//! stream's `BufferingHints`. A partition is active while it has buffered records; a stream has
//! at most [`MAX_ACTIVE_PARTITIONS`], and a record that would open one more goes to the error
//! prefix instead (Firehose's default quota, `activePartitionExceeded` in its guide).

use super::buffering::{Buffer, Buffered, Hints};
use super::processing::OutRecord;
use super::store::LogMark;
use std::collections::BTreeMap;

/// Most active partitions of one delivery stream (Firehose's default quota).
pub const MAX_ACTIVE_PARTITIONS: usize = 500;

/// The `errorCode` of a record that would open a partition beyond the limit: the only name
/// Firehose's guide gives this case.
pub const ACTIVE_PARTITION_EXCEEDED: &str = "activePartitionExceeded";

/// A partition: keys from MetadataExtraction and keys from a transformation.
type PartitionKey = (BTreeMap<String, String>, BTreeMap<String, String>);

impl Buffered for OutRecord {
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

/// The active partitions of one delivery stream.
#[derive(Debug, Default)]
pub struct Partitions {
    active: BTreeMap<PartitionKey, Buffer<OutRecord>>,
    /// Bytes buffered in all partitions (kept, not summed per put).
    bytes: usize,
}

impl Partitions {
    /// Buffers a record in its partition; gives it back when that partition is not active and
    /// [`MAX_ACTIVE_PARTITIONS`] are.
    pub fn push(&mut self, record: OutRecord) -> Result<(), OutRecord> {
        let key = (record.query_keys.clone(), record.lambda_keys.clone());
        let size = record.size();
        if let Some(buffer) = self.active.get_mut(&key) {
            buffer.push(record);
        } else if self.active.len() < MAX_ACTIVE_PARTITIONS {
            self.active.entry(key).or_default().push(record);
        } else {
            return Err(record);
        }
        self.bytes += size;
        Ok(())
    }

    /// How many partitions are active.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Records buffered in all partitions.
    pub fn records(&self) -> usize {
        self.active.values().map(Buffer::len).sum()
    }

    /// Bytes buffered in all partitions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes every record of every partition, oldest first (by log position, then arrival).
    pub fn take_all(&mut self) -> Vec<OutRecord> {
        let mut records: Vec<OutRecord> = std::mem::take(&mut self.active)
            .into_values()
            .flat_map(Buffer::into_records)
            .collect();
        records.sort_by_key(|r| (r.log, r.arrival_ms));
        self.bytes = 0;
        records
    }

    /// When the oldest record buffered in any partition arrived.
    pub fn oldest_arrival(&self) -> Option<i64> {
        self.active
            .values()
            .filter_map(Buffer::oldest_arrival)
            .min()
    }

    /// Where the oldest record buffered in any partition is in the log.
    pub fn oldest_log(&self) -> Option<LogMark> {
        self.active.values().filter_map(Buffer::oldest_log).min()
    }

    /// When the first partition comes due by the interval hint.
    pub fn due_at(&self, hints: Hints) -> Option<i64> {
        self.active.values().filter_map(|b| b.due_at(hints)).min()
    }

    /// Takes the next batch of a partition that is due at `now_ms` (any partition when
    /// `force`d); a partition whose buffer empties is no longer active.
    pub fn take_due(&mut self, hints: Hints, now_ms: i64, force: bool) -> Option<Vec<OutRecord>> {
        let key = self
            .active
            .iter()
            .find(|(_, buffer)| force || buffer.is_due(hints, now_ms))
            .map(|(key, _)| key.clone())?;
        let buffer = self.active.get_mut(&key)?;
        let batch = buffer.take_due(hints, now_ms, force);
        if buffer.is_empty() {
            self.active.remove(&key);
        }
        self.bytes -= batch.iter().flatten().map(Buffered::size).sum::<usize>();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(customer: &str, len: usize, arrival_ms: i64) -> OutRecord {
        OutRecord {
            data: Bytes::from(vec![b'x'; len]),
            arrival_ms,
            query_keys: BTreeMap::from([("customer".to_owned(), customer.to_owned())]),
            lambda_keys: BTreeMap::new(),
            log: LogMark::default(),
        }
    }

    #[test]
    fn each_partition_comes_due_by_its_own_size() {
        let hints = Hints::new(1, 900);
        let mut partitions = Partitions::default();
        for _ in 0..3 {
            partitions.push(record("busy", 400 * 1024, 0)).unwrap();
        }
        partitions.push(record("quiet", 10, 0)).unwrap();
        let batch = partitions.take_due(hints, 0, false).unwrap();
        assert_eq!(batch.len(), 2);
        assert!(batch.iter().all(|r| r.query_keys["customer"] == "busy"));
        assert!(partitions.take_due(hints, 0, false).is_none());
        assert_eq!(partitions.active(), 2);
        assert_eq!(partitions.bytes(), 400 * 1024 + 10);
        assert_eq!(partitions.due_at(hints), Some(900_000));
    }

    #[test]
    fn all_partitions_are_taken_oldest_first_and_none_stays_active() {
        let mut partitions = Partitions::default();
        for (customer, position) in [("b", 2), ("a", 3), ("b", 1)] {
            let mut record = record(customer, 1, 0);
            record.log = LogMark { position, index: 0 };
            partitions.push(record).unwrap();
        }
        let positions: Vec<u64> = partitions
            .take_all()
            .iter()
            .map(|r| r.log.position)
            .collect();
        assert_eq!(positions, [1, 2, 3]);
        assert_eq!((partitions.active(), partitions.records()), (0, 0));
        assert_eq!(partitions.bytes(), 0);
        assert_eq!(partitions.due_at(Hints::new(1, 900)), None);
    }

    #[test]
    fn a_partition_beyond_the_limit_is_refused_until_one_is_delivered() {
        let hints = Hints::new(1, 900);
        let mut partitions = Partitions::default();
        for i in 0..MAX_ACTIVE_PARTITIONS {
            partitions.push(record(&i.to_string(), 1, 0)).unwrap();
        }
        assert!(partitions.push(record("one more", 1, 0)).is_err());
        assert!(partitions.push(record("0", 1, 0)).is_ok());
        partitions.take_due(hints, 0, true).unwrap();
        assert_eq!(partitions.active(), MAX_ACTIVE_PARTITIONS - 1);
        assert!(partitions.push(record("one more", 1, 0)).is_ok());
    }
}
