//! Polling retrieval: a background task per shard calls `GetRecords` and queues batches ahead
//! of the processor (the Java KCL's `PrefetchRecordsPublisher`).
//!
//! The queue is bounded in batches, records and bytes: a batch holds its share of the record and
//! byte budgets until the consumer drops it, so a slow processor stops the reads instead of
//! filling memory. A read that returned nothing is followed by `idle_time_between_reads`; a read
//! that returned records is followed at once. Throttling and other failures back off; an expired
//! iterator is replaced from the last record read.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use tokio::sync::mpsc;

use super::{Budget, Fetched, ShardSource, StartingPosition, describe, to_child_shard, to_records};
use crate::config::{Config, retry_backoff};
use crate::metrics;

/// Reads one shard with `GetRecords` into its queue.
pub(crate) struct Reader {
    source: ShardSource,
    max_records: i32,
    idle: std::time::Duration,
    budget: Budget,
}

/// Why a call failed, as far as the reader cares.
enum ReadError {
    ExpiredIterator,
    Other(String),
}

impl Reader {
    pub(crate) fn new(source: ShardSource, config: &Config, budget: Budget) -> Self {
        Self {
            source,
            max_records: config.max_records,
            idle: config.idle_time_between_reads,
            budget,
        }
    }

    pub(crate) async fn read(self, start: StartingPosition, tx: mpsc::Sender<Fetched>) {
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
                metrics::millis_behind_latest(
                    &self.source.worker_id,
                    &self.source.lease_key,
                    millis,
                );
            }
            let records = to_records(out.records, &resume, self.source.hash_key_range.as_ref());
            let got_records = !records.is_empty();
            if let Some(last) = records.last() {
                resume =
                    StartingPosition::After(last.sequence_number.clone(), last.sub_sequence_number);
                let Some(batch) = self.budget.batch(records, out.millis_behind_latest).await else {
                    return;
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

    async fn shard_iterator(&self, from: &StartingPosition) -> Result<String, String> {
        let mut req = self
            .source
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.source.stream)
            .shard_id(&self.source.shard_id);
        let (kind, sequence_number, timestamp) = from.kinesis_position();
        req = req
            .shard_iterator_type(kind)
            .set_starting_sequence_number(sequence_number)
            .set_timestamp(timestamp);
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
