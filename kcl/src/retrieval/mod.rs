//! Retrieval: reading a shard's records into a bounded queue in front of its processor.
//!
//! Two ways to read, chosen by [`RetrievalMode`](crate::config::RetrievalMode): polling
//! (`GetRecords`, [`polling`]) and enhanced fan-out (`SubscribeToShard`, [`fan_out`]). Both run
//! as a background task per shard that feeds the same [`RecordsPublisher`] queue, convert
//! records with the same [`to_records`], and end with the same [`Fetched::ShardEnd`], so the
//! shard consumer cannot tell them apart.

pub(crate) mod fan_out;
pub(crate) mod polling;

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::aggregation;
use crate::checkpoint::{ExtendedSequenceNumber, SequenceNumber};
use crate::config::{Config, InitialPosition};
use crate::lease::HashKeyRange;
use crate::processor::Record;

/// How this worker reads shards, resolved from the configured
/// [`RetrievalMode`](crate::config::RetrievalMode).
pub(crate) enum Retrieval {
    Polling,
    /// Every shard subscribes through this worker's one registered stream consumer.
    FanOut(Arc<fan_out::StreamConsumer>),
}

/// What a publisher yields.
#[derive(Debug)]
pub(crate) enum Fetched {
    Records(RecordBatch),
    /// The shard is closed and every record was delivered.
    ShardEnd {
        child_shards: Vec<ChildShard>,
    },
}

/// Records from one `GetRecords` call or one `SubscribeToShard` event.
#[derive(Debug)]
pub(crate) struct RecordBatch {
    pub(crate) records: Vec<Record>,
    pub(crate) millis_behind_latest: Option<i64>,
    pub(crate) bytes: usize,
    /// The batch's share of the prefetch budgets, returned when the batch is dropped.
    _budget: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// Where a shard's reads come from.
#[derive(Clone)]
pub(crate) struct ShardSource {
    pub(crate) kinesis: aws_sdk_kinesis::Client,
    pub(crate) stream: String,
    pub(crate) shard_id: String,
    /// Names the shard in metrics: the lease key, unique across the streams of an application.
    pub(crate) lease_key: String,
    pub(crate) worker_id: String,
    /// The shard's hash key range, to drop re-sent aggregates that don't belong here.
    pub(crate) hash_key_range: Option<HashKeyRange>,
}

/// The consumer's end of a shard's queue. Dropping it stops the reads (and closes a
/// subscription).
pub(crate) struct RecordsPublisher {
    batches: mpsc::Receiver<Fetched>,
    reader: JoinHandle<()>,
}

impl Drop for RecordsPublisher {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl RecordsPublisher {
    /// Starts reading `source` from `start`; the reader runs in the caller's (the shard's) span.
    pub(crate) fn start(
        retrieval: &Retrieval,
        source: ShardSource,
        start: StartingPosition,
        config: &Config,
    ) -> Self {
        let (tx, batches) = mpsc::channel(config.max_prefetch_batches);
        let budget = Budget::new(config);
        let span = tracing::Span::current();
        let reader = match retrieval {
            Retrieval::Polling => {
                let reader = polling::Reader::new(source, config, budget);
                tokio::spawn(reader.read(start, tx).instrument(span))
            }
            Retrieval::FanOut(consumer) => {
                let reader = fan_out::Reader::new(consumer.clone(), source, budget);
                tokio::spawn(reader.read(start, tx).instrument(span))
            }
        };
        Self { batches, reader }
    }

    /// The next batch, or `None` if reading stopped for good (never, short of a panic).
    pub(crate) async fn next(&mut self) -> Option<Fetched> {
        self.batches.recv().await
    }
}

/// A shard queue's record and byte budgets: a batch holds its share until the consumer drops
/// it, so a slow processor stops the reads instead of filling memory.
pub(crate) struct Budget {
    records: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_records: usize,
    max_bytes: usize,
}

impl Budget {
    fn new(config: &Config) -> Self {
        Self {
            records: Arc::new(Semaphore::new(config.max_prefetch_records)),
            bytes: Arc::new(Semaphore::new(config.max_prefetch_bytes)),
            max_records: config.max_prefetch_records,
            max_bytes: config.max_prefetch_bytes,
        }
    }

    /// Waits until the queue has room for these records, then wraps them in a batch holding
    /// that room. A batch larger than a whole budget takes the whole budget. `None` never
    /// happens (the budgets are never closed).
    pub(crate) async fn batch(
        &self,
        records: Vec<Record>,
        millis_behind_latest: Option<i64>,
    ) -> Option<RecordBatch> {
        let bytes = records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len())
            .sum();
        let take = |budget: &Arc<Semaphore>, n: usize, max: usize| {
            let n = u32::try_from(n.clamp(1, max)).unwrap_or(u32::MAX);
            budget.clone().acquire_many_owned(n)
        };
        let records_permit = take(&self.records, records.len(), self.max_records)
            .await
            .ok()?;
        let bytes_permit = take(&self.bytes, bytes, self.max_bytes).await.ok()?;
        Some(RecordBatch {
            records,
            millis_behind_latest,
            bytes,
            _budget: (records_permit, bytes_permit),
        })
    }
}

/// Turns records read from the shard into what processors see ([`user_records`]), keeping
/// only those after `from` (sub-records of a partly done aggregate are not new). The one
/// conversion point for both retrieval modes.
pub(crate) fn to_records(
    raw: Vec<aws_sdk_kinesis::types::Record>,
    from: &StartingPosition,
    shard_range: Option<&HashKeyRange>,
) -> Vec<Record> {
    raw.into_iter()
        .filter_map(to_record)
        .flat_map(|r| user_records(r, shard_range))
        .filter(|r| from.admits(r))
        .collect()
}

fn to_record(r: aws_sdk_kinesis::types::Record) -> Option<Record> {
    let sequence_number: SequenceNumber = match r.sequence_number.parse() {
        Ok(seq) => seq,
        Err(err) => {
            tracing::error!(%err, "skipping a record with an invalid sequence number");
            return None;
        }
    };
    Some(Record {
        sequence_number,
        sub_sequence_number: 0,
        partition_key: r.partition_key.unwrap_or_default(),
        data: Bytes::from(r.data.into_inner()),
        approximate_arrival_timestamp: r
            .approximate_arrival_timestamp
            .and_then(|t| SystemTime::try_from(t).ok()),
    })
}

pub(crate) fn to_child_shard(c: &aws_sdk_kinesis::types::ChildShard) -> ChildShard {
    ChildShard {
        shard_id: c.shard_id().to_owned(),
        parent_shard_ids: c.parent_shards().to_vec(),
        hash_key_range: c.hash_key_range().and_then(|r| {
            Some(HashKeyRange {
                starting_hash_key: r.starting_hash_key().parse().ok()?,
                ending_hash_key: r.ending_hash_key().parse().ok()?,
            })
        }),
    }
}

/// An SDK error as `code: message`.
pub(crate) fn describe<E: ProvideErrorMetadata + std::fmt::Debug>(err: &E) -> String {
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => format!("{err:?}"),
    }
}

/// The records a processor sees for one record read from a shard, by either retrieval: a KPL
/// aggregate becomes its sub-records with sub-sequence numbers, and an aggregate routed to a
/// shard whose hash range doesn't hold all its sub-records (it was re-sent after a reshard) is
/// dropped, as the Java KCL does. Plain and corrupt records pass through unchanged.
pub(crate) fn user_records(
    record: Record,
    shard_range: Option<&HashKeyRange>,
) -> impl Iterator<Item = Record> {
    let users = match shard_range {
        Some(range) => aggregation::deaggregate_for_shard(record, range),
        None => aggregation::deaggregate(record),
    };
    users.into_iter().map(Record::from)
}

/// A shard created by splitting or merging the shard that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChildShard {
    pub(crate) shard_id: String,
    pub(crate) parent_shard_ids: Vec<String>,
    pub(crate) hash_key_range: Option<HashKeyRange>,
}

/// Where reading a shard starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartingPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(SystemTime),
    /// After this record (sequence, sub-sequence).
    After(SequenceNumber, u64),
}

impl StartingPosition {
    /// Where to resume from a lease checkpoint; `None` at `SHARD_END` (nothing left to read).
    pub(crate) fn from_checkpoint(
        checkpoint: &ExtendedSequenceNumber,
        initial: &InitialPosition,
    ) -> Option<Self> {
        Some(match checkpoint {
            ExtendedSequenceNumber::TrimHorizon => Self::TrimHorizon,
            ExtendedSequenceNumber::Latest => Self::Latest,
            ExtendedSequenceNumber::AtTimestamp => match initial {
                InitialPosition::AtTimestamp(t) => Self::AtTimestamp(*t),
                // A lease created by another fleet with another initial position.
                _ => {
                    tracing::warn!(
                        "lease checkpoint is AT_TIMESTAMP but no timestamp is configured; \
                         reading from TRIM_HORIZON"
                    );
                    Self::TrimHorizon
                }
            },
            ExtendedSequenceNumber::ShardEnd => return None,
            ExtendedSequenceNumber::Record {
                sequence_number,
                sub_sequence_number,
            } => Self::After(sequence_number.clone(), *sub_sequence_number),
        })
    }

    /// Whether a record read from here is new (sub-records of a partly done aggregate are not).
    pub(crate) fn admits(&self, record: &Record) -> bool {
        match self {
            Self::After(seq, sub) => {
                (&record.sequence_number, record.sub_sequence_number) > (seq, *sub)
            }
            _ => true,
        }
    }

    /// The position as Kinesis takes it (`GetShardIterator`, `SubscribeToShard`): type, sequence
    /// number, timestamp. Part of an aggregate done means re-reading it (`AT_SEQUENCE_NUMBER`)
    /// and skipping the done sub-records with [`admits`](Self::admits).
    pub(crate) fn kinesis_position(
        &self,
    ) -> (
        ShardIteratorType,
        Option<String>,
        Option<aws_smithy_types::DateTime>,
    ) {
        match self {
            Self::TrimHorizon => (ShardIteratorType::TrimHorizon, None, None),
            Self::Latest => (ShardIteratorType::Latest, None, None),
            Self::AtTimestamp(t) => (
                ShardIteratorType::AtTimestamp,
                None,
                Some(aws_smithy_types::DateTime::from(*t)),
            ),
            Self::After(seq, 0) => (
                ShardIteratorType::AfterSequenceNumber,
                Some(seq.as_str().to_owned()),
                None,
            ),
            Self::After(seq, _) => (
                ShardIteratorType::AtSequenceNumber,
                Some(seq.as_str().to_owned()),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: &str, sub: u64) -> Record {
        Record {
            sequence_number: seq.parse().expect("digits"),
            sub_sequence_number: sub,
            partition_key: "k".into(),
            data: bytes::Bytes::new(),
            approximate_arrival_timestamp: None,
        }
    }

    #[test]
    fn resuming_inside_an_aggregate_skips_the_sub_records_already_done() {
        let from = StartingPosition::from_checkpoint(
            &ExtendedSequenceNumber::record("100".parse().expect("digits"), 2),
            &InitialPosition::Latest,
        )
        .expect("a position");
        assert!(!from.admits(&record("100", 2)));
        assert!(from.admits(&record("100", 3)));
        assert!(from.admits(&record("101", 0)));
    }

    #[test]
    fn a_finished_shard_has_nothing_to_read() {
        assert_eq!(
            StartingPosition::from_checkpoint(
                &ExtendedSequenceNumber::ShardEnd,
                &InitialPosition::TrimHorizon
            ),
            None
        );
    }
}
