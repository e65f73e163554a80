//! Polling retrieval: a background task per shard calls `GetRecords` and queues batches ahead
//! of the processor (the Java KCL's `PrefetchRecordsPublisher`).
//!
//! The queue is bounded in batches, records and bytes: a batch holds its share of the record and
//! byte budgets until the consumer drops it, so a slow processor stops the reads instead of
//! filling memory. A read that returned nothing is followed by `idle_time_between_reads`; a read
//! that returned records is followed at once. Throttling and other failures back off; an expired
//! iterator is replaced from the last record read.

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::{ChildShard, StartingPosition};
use crate::checkpoint::SequenceNumber;
use crate::config::{Config, retry_backoff};
use crate::lease::HashKeyRange;
use crate::metrics;
use crate::processor::Record;

/// What the publisher yields.
#[derive(Debug)]
pub(crate) enum Fetched {
    Records(RecordBatch),
    /// The shard is closed and every record was delivered.
    ShardEnd {
        child_shards: Vec<ChildShard>,
    },
}

/// Records from one `GetRecords` call.
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
    pub(crate) kinesis: Client,
    pub(crate) stream: String,
    pub(crate) shard_id: String,
    pub(crate) worker_id: String,
    /// The shard's hash key range, to drop re-sent aggregates that don't belong here.
    pub(crate) hash_key_range: Option<HashKeyRange>,
}

/// The consumer's end of a shard's prefetch queue. Dropping it stops the reads.
pub(crate) struct PollingPublisher {
    batches: mpsc::Receiver<Fetched>,
    reader: JoinHandle<()>,
}

impl Drop for PollingPublisher {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PollingPublisher {
    pub(crate) fn start(source: ShardSource, start: StartingPosition, config: &Config) -> Self {
        let (tx, batches) = mpsc::channel(config.max_prefetch_batches);
        let reader = Reader {
            source,
            max_records: config.max_records,
            idle: config.idle_time_between_reads,
            records_budget: Arc::new(Semaphore::new(config.max_prefetch_records)),
            bytes_budget: Arc::new(Semaphore::new(config.max_prefetch_bytes)),
            max_prefetch_records: config.max_prefetch_records,
            max_prefetch_bytes: config.max_prefetch_bytes,
        };
        let reader = tokio::spawn(async move { reader.read(start, tx).await });
        Self { batches, reader }
    }

    /// The next batch, or `None` if reading stopped for good (never, short of a panic).
    pub(crate) async fn next(&mut self) -> Option<Fetched> {
        self.batches.recv().await
    }
}

struct Reader {
    source: ShardSource,
    max_records: i32,
    idle: std::time::Duration,
    records_budget: Arc<Semaphore>,
    bytes_budget: Arc<Semaphore>,
    max_prefetch_records: usize,
    max_prefetch_bytes: usize,
}

/// Why a call failed, as far as the reader cares.
enum ReadError {
    ExpiredIterator,
    Other(String),
}

impl Reader {
    async fn read(self, start: StartingPosition, tx: mpsc::Sender<Fetched>) {
        let shard = &self.source.shard_id;
        // Where to resume if the iterator has to be replaced.
        let mut resume = start;
        let mut backoff = retry_backoff();
        let mut iterator: Option<String> = None;
        loop {
            let current = match iterator.take() {
                Some(it) => it,
                None => match self.shard_iterator(&resume).await {
                    Ok(it) => it,
                    Err(err) => {
                        let delay = backoff.next().unwrap_or_default();
                        tracing::warn!(shard_id = %shard, error = %err, ?delay, "GetShardIterator failed; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                },
            };
            let out = match self.get_records(&current).await {
                Ok(out) => out,
                Err(ReadError::ExpiredIterator) => {
                    tracing::debug!(shard_id = %shard, "shard iterator expired; getting a new one");
                    continue;
                }
                Err(ReadError::Other(err)) => {
                    let delay = backoff.next().unwrap_or_default();
                    tracing::warn!(shard_id = %shard, error = %err, ?delay, "GetRecords failed; retrying");
                    tokio::time::sleep(delay).await;
                    iterator = Some(current);
                    continue;
                }
            };
            backoff = retry_backoff();
            if let Some(millis) = out.millis_behind_latest {
                metrics::millis_behind_latest(&self.source.worker_id, shard, millis);
            }
            let records: Vec<Record> = out
                .records
                .into_iter()
                .filter_map(to_record)
                .flat_map(|r| super::user_records(r, self.source.hash_key_range.as_ref()))
                .filter(|r| resume.admits(r))
                .collect();
            let got_records = !records.is_empty();
            if let Some(last) = records.last() {
                resume =
                    StartingPosition::After(last.sequence_number.clone(), last.sub_sequence_number);
                let bytes = records
                    .iter()
                    .map(|r| r.data.len() + r.partition_key.len())
                    .sum();
                let Some(budget) = self.reserve(records.len(), bytes).await else {
                    return;
                };
                let batch = RecordBatch {
                    records,
                    millis_behind_latest: out.millis_behind_latest,
                    bytes,
                    _budget: budget,
                };
                if tx.send(Fetched::Records(batch)).await.is_err() {
                    return;
                }
            }
            match out.next_shard_iterator {
                Some(next) => iterator = Some(next),
                None => {
                    let child_shards = out
                        .child_shards
                        .unwrap_or_default()
                        .iter()
                        .map(to_child_shard)
                        .collect();
                    // Fails only if the consumer is gone, and then there is nobody to tell.
                    let _ = tx.send(Fetched::ShardEnd { child_shards }).await;
                    return;
                }
            }
            if !got_records {
                tokio::time::sleep(self.idle).await;
            }
        }
    }

    /// Waits until the queue has room for a batch of this size. A batch larger than a whole
    /// budget takes the whole budget.
    async fn reserve(
        &self,
        records: usize,
        bytes: usize,
    ) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let take = |budget: &Arc<Semaphore>, n: usize, max: usize| {
            let n = u32::try_from(n.clamp(1, max)).unwrap_or(u32::MAX);
            budget.clone().acquire_many_owned(n)
        };
        let records = take(&self.records_budget, records, self.max_prefetch_records).await;
        let bytes = take(&self.bytes_budget, bytes, self.max_prefetch_bytes).await;
        // The budgets are never closed, so this is always `Some`.
        Some((records.ok()?, bytes.ok()?))
    }

    async fn shard_iterator(&self, from: &StartingPosition) -> Result<String, String> {
        let mut req = self
            .source
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.source.stream)
            .shard_id(&self.source.shard_id);
        req = match from {
            StartingPosition::TrimHorizon => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            StartingPosition::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            StartingPosition::AtTimestamp(t) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from(*t)),
            StartingPosition::After(seq, 0) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq.as_str()),
            // Part of an aggregate is done: re-read it and skip the done sub-records.
            StartingPosition::After(seq, _) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq.as_str()),
        };
        let out = req.send().await.map_err(|e| describe(&e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| "GetShardIterator returned no iterator".to_owned())
    }

    async fn get_records(
        &self,
        iterator: &str,
    ) -> Result<aws_sdk_kinesis::operation::get_records::GetRecordsOutput, ReadError> {
        self.source
            .kinesis
            .get_records()
            .shard_iterator(iterator)
            .limit(self.max_records)
            .send()
            .await
            .map_err(|e| {
                if e.code() == Some("ExpiredIteratorException") {
                    ReadError::ExpiredIterator
                } else {
                    ReadError::Other(describe(&e))
                }
            })
    }
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug>(err: &E) -> String {
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => format!("{err:?}"),
    }
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

fn to_child_shard(c: &aws_sdk_kinesis::types::ChildShard) -> ChildShard {
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
