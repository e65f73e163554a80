//! The data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.

use super::api::*;
use super::hash::{parse_hash_key, partition_key_hash};
use super::iterator::ShardPosition;
use super::sequence::SequenceNumber;
use super::shard::{Shard, StoredRecord};
use super::stream::{Stream, StreamMeta};
use super::{Kinesis, validate_shard_id};
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::{Blob, Timestamp};
use crate::http::validation::Validator;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most records one PutRecords call may carry.
const MAX_PUT_RECORDS: usize = 500;
/// Most bytes (data and partition keys) one PutRecords call may carry.
const MAX_PUT_RECORDS_BYTES: usize = 10 * 1024 * 1024;
/// Largest blob the model allows; a stream's own limit (MaxRecordSizeInKiB) is usually lower.
const MAX_DATA_BYTES: usize = 10 * 1024 * 1024;
/// Most data one GetRecords call returns.
const MAX_GET_RECORDS_BYTES: usize = 10 * 1024 * 1024;
/// Most records one GetRecords call returns, and the default `Limit`.
const MAX_GET_RECORDS: i64 = 10_000;

const ITERATOR_TYPES: [&str; 5] = [
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
    "LATEST",
    "AT_TIMESTAMP",
];

/// A shard and the entries of one PutRecords call bound for it, with their request positions.
type ShardBatch = (Arc<Shard>, Vec<(usize, Entry)>);

/// One record to append, validated.
struct Entry {
    partition_key: String,
    data: Bytes,
    hash_key: u128,
}

/// Checks one record's members. `member` names the record in messages (`records.3.member.`);
/// it is only built when something is wrong, since valid batches are the hot path.
fn validate_entry(
    data: &Option<Blob>,
    partition_key: &Option<String>,
    explicit_hash_key: &Option<String>,
    member: impl Fn(&str) -> String,
    v: &mut Validator,
) {
    match data {
        None => {
            v.required(data, &member("data"));
        }
        Some(data) if data.0.len() > MAX_DATA_BYTES => v.violation(
            "java.nio.HeapByteBuffer",
            &member("data"),
            format_args!("Member must have length less than or equal to {MAX_DATA_BYTES}"),
        ),
        Some(_) => {}
    }
    match partition_key {
        None => {
            v.required(partition_key, &member("partitionKey"));
        }
        Some(key) if key.is_empty() || key.len() > 256 => {
            v.length(key, &member("partitionKey"), 1, 256)
        }
        Some(_) => {}
    }
    if let Some(hash) = explicit_hash_key
        && !hash.bytes().all(|b| b.is_ascii_digit())
    {
        v.chars(
            hash,
            &member("explicitHashKey"),
            "0|([1-9]\\d{0,38})",
            |c| c.is_ascii_digit(),
        );
    }
}

/// Turns validated members into an entry, checking the explicit hash key's range and the
/// stream's record size limit.
fn entry(
    data: Option<Blob>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
    meta: &StreamMeta,
) -> ApiResult<Entry> {
    let (Some(Blob(data)), Some(partition_key)) = (data, partition_key) else {
        return Err(ApiError::internal("validated record lost a member"));
    };
    let hash_key = match explicit_hash_key {
        Some(text) => parse_hash_key(&text).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        })?,
        None => partition_key_hash(&partition_key),
    };
    let limit = meta.max_record_size_kib as usize * 1024;
    if data.len() + partition_key.len() > limit {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'data' failed to satisfy constraint: Record size (data plus partition key, {} bytes) must be less than or equal to the stream's maximum record size of {} KiB",
            data.len() + partition_key.len(),
            meta.max_record_size_kib
        )));
    }
    Ok(Entry {
        partition_key,
        data,
        hash_key,
    })
}

/// A record log write failed: the records were not appended; the client may retry.
fn storage_failure(err: crate::storage::StorageError) -> ApiError {
    tracing::error!(%err, "cannot write records to the data directory");
    ApiError::internal("The records could not be stored.")
}

/// The wire name of a stream's or record's server-side encryption.
pub(super) fn encryption_type(encrypted: bool) -> &'static str {
    if encrypted { "KMS" } else { "NONE" }
}

impl Kinesis {
    pub(super) fn put_record(&self, input: PutRecordInput) -> ApiResult<PutRecordOutput> {
        let mut v = Validator::new();
        validate_entry(
            &input.data,
            &input.partition_key,
            &input.explicit_hash_key,
            str::to_owned,
            &mut v,
        );
        if let Some(seq) = &input.sequence_number_for_ordering {
            v.chars(
                seq,
                "sequenceNumberForOrdering",
                "0|([1-9]\\d{0,128})",
                |c| c.is_ascii_digit(),
            );
        }
        let stream = self.resolve_readable(&input, v)?;
        let meta = stream.meta();
        let entry = entry(
            input.data,
            input.partition_key,
            input.explicit_hash_key,
            &meta,
        )?;
        // Our sequence numbers already grow with every append to a shard, so a later put always
        // gets a larger number than SequenceNumberForOrdering: nothing more to do for it.
        let shard = route(&meta, entry.hash_key)?;
        if self.config.enforce_limits
            && !shard
                .limits()
                .admit_write(entry.data.len() + entry.partition_key.len(), self.now())
        {
            let err = self.throughput_exceeded(&stream, shard);
            drop(meta);
            self.scale_on_demand(&stream);
            return Err(err);
        }
        let counters = shard
            .append(
                self.now(),
                meta.retention_ms(),
                vec![(entry.partition_key, entry.data)],
                meta.encryption_key.is_some(),
                &self.storage,
                &stream.name,
            )
            .map_err(storage_failure)?;
        let counter = counters
            .first()
            .copied()
            .ok_or_else(|| ApiError::internal("append returned no sequence number"))?;
        Ok(PutRecordOutput {
            shard_id: shard.id.clone(),
            sequence_number: shard.sequence_number(counter).to_string(),
            encryption_type: encryption_type(meta.encryption_key.is_some()),
        })
    }

    pub(super) fn put_records(&self, input: PutRecordsInput) -> ApiResult<PutRecordsOutput> {
        let mut v = Validator::new();
        let mut total_bytes = 0usize;
        if let Some(records) = v.required(&input.records, "records") {
            v.count(records.len(), "records", 1, MAX_PUT_RECORDS);
            for (i, r) in records.iter().enumerate() {
                validate_entry(
                    &r.data,
                    &r.partition_key,
                    &r.explicit_hash_key,
                    |field| format!("records.{}.member.{field}", i + 1),
                    &mut v,
                );
                total_bytes += r.data.as_ref().map_or(0, |d| d.0.len())
                    + r.partition_key.as_ref().map_or(0, String::len);
            }
        }
        let stream = self.resolve_readable(&input, v)?;
        if total_bytes > MAX_PUT_RECORDS_BYTES {
            return Err(ApiError::invalid_argument(format!(
                "Records size exceeds {} MB limit",
                MAX_PUT_RECORDS_BYTES / (1024 * 1024)
            )));
        }
        let meta = stream.meta();
        let entries = input
            .records
            .unwrap_or_default()
            .into_iter()
            .map(|r| entry(r.data, r.partition_key, r.explicit_hash_key, &meta))
            .collect::<ApiResult<Vec<Entry>>>()?;
        // Route everything before appending anything: the request is all-or-nothing.
        let targets = entries
            .iter()
            .map(|e| route(&meta, e.hash_key).map(Arc::clone))
            .collect::<ApiResult<Vec<Arc<Shard>>>>()?;
        let mut results: Vec<Option<PutRecordsResultEntry>> = std::iter::repeat_with(|| None)
            .take(entries.len())
            .collect();
        // One pass buckets the entries by shard, keeping request order within each shard, so
        // each shard's lock is taken once.
        let mut by_shard: BTreeMap<u32, ShardBatch> = BTreeMap::new();
        for ((i, entry), shard) in entries.into_iter().enumerate().zip(targets) {
            by_shard
                .entry(shard.index)
                .or_insert_with(|| (shard, Vec::new()))
                .1
                .push((i, entry));
        }
        let now = self.now();
        let retention_ms = meta.retention_ms();
        let encrypted = meta.encryption_key.is_some();
        for (shard, mine) in by_shard.into_values() {
            let mine: Vec<(usize, Entry)> = if self.config.enforce_limits {
                let mut limits = shard.limits();
                mine.into_iter()
                    .filter_map(|(i, e)| {
                        if limits.admit_write(e.data.len() + e.partition_key.len(), now) {
                            return Some((i, e));
                        }
                        let err = self.throughput_exceeded(&stream, &shard);
                        results[i] = Some(PutRecordsResultEntry {
                            sequence_number: None,
                            shard_id: None,
                            error_code: Some(err.code),
                            error_message: Some(err.message),
                        });
                        None
                    })
                    .collect()
            } else {
                mine
            };
            let indices: Vec<usize> = mine.iter().map(|(i, _)| *i).collect();
            let counters = shard
                .append(
                    now,
                    retention_ms,
                    mine.into_iter()
                        .map(|(_, e)| (e.partition_key, e.data))
                        .collect(),
                    encrypted,
                    &self.storage,
                    &stream.name,
                )
                .map_err(storage_failure)?;
            for (i, counter) in indices.into_iter().zip(counters) {
                results[i] = Some(PutRecordsResultEntry {
                    sequence_number: Some(shard.sequence_number(counter).to_string()),
                    shard_id: Some(shard.id.clone()),
                    error_code: None,
                    error_message: None,
                });
            }
        }
        let records = results
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::internal("a record was not appended"))?;
        let failed_record_count = records.iter().filter(|r| r.error_code.is_some()).count() as u32;
        let output = PutRecordsOutput {
            failed_record_count,
            records,
            encryption_type: encryption_type(meta.encryption_key.is_some()),
        };
        if failed_record_count > 0 {
            drop(meta);
            self.scale_on_demand(&stream);
        }
        Ok(output)
    }

    pub(super) fn get_shard_iterator(
        &self,
        input: GetShardIteratorInput,
    ) -> ApiResult<GetShardIteratorOutput> {
        let mut v = Validator::new();
        if let Some(id) = v.required(&input.shard_id, "shardId") {
            validate_shard_id(id, "shardId", &mut v);
        }
        if let Some(kind) = v.required(&input.shard_iterator_type, "shardIteratorType") {
            v.one_of(kind, "shardIteratorType", &ITERATOR_TYPES);
        }
        if let Some(seq) = &input.starting_sequence_number {
            v.chars(seq, "startingSequenceNumber", "0|([1-9]\\d{0,128})", |c| {
                c.is_ascii_digit()
            });
        }
        let stream = self.resolve_readable(&input, v)?;
        let shard_id = input.shard_id.unwrap_or_default();
        let kind = input.shard_iterator_type.unwrap_or_default();
        let meta = stream.meta();
        let now = self.now();
        let horizon = now - meta.retention_ms();
        let shard = meta
            .shard(&shard_id)
            .filter(|s| s.closed().is_none_or(|c| c.at_ms >= horizon))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Shard {shard_id} in stream {} under account {} does not exist",
                    stream.name, self.config.account_id
                ))
            })?;
        let next_counter = self.start_counter(
            &stream,
            shard,
            &kind,
            input.starting_sequence_number.as_deref(),
            input.timestamp,
            horizon,
        )?;
        let token = self.iterators.encode(&ShardPosition {
            stream_name: stream.name.clone(),
            stream_epoch: stream.created_ms,
            shard_index: shard.index,
            next_counter,
            issued_at_ms: now,
        });
        Ok(GetShardIteratorOutput {
            shard_iterator: token,
        })
    }

    /// The first record counter a reader starting at `kind` gets (iterators and subscriptions).
    pub(super) fn start_counter(
        &self,
        stream: &Stream,
        shard: &Shard,
        kind: &str,
        sequence: Option<&str>,
        timestamp: Option<Timestamp>,
        horizon: i64,
    ) -> ApiResult<u64> {
        Ok(match kind {
            "TRIM_HORIZON" => shard.trim_horizon_counter(horizon),
            "LATEST" => shard.next_counter(),
            "AT_TIMESTAMP" => {
                let Some(Timestamp(at)) = timestamp else {
                    return Err(ApiError::invalid_argument(
                        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.",
                    ));
                };
                shard.counter_at_timestamp(at, horizon)
            }
            _ => {
                let Some(text) = sequence else {
                    return Err(ApiError::invalid_argument(format!(
                        "Must specify a StartingSequenceNumber for iterator of type {kind}."
                    )));
                };
                let counter = self.counter_of(stream, shard, text)?;
                if kind == "AT_SEQUENCE_NUMBER" {
                    counter.max(1)
                } else {
                    counter + 1
                }
            }
        })
    }

    /// The error for a shard over its throughput allowance.
    fn throughput_exceeded(&self, stream: &Stream, shard: &Shard) -> ApiError {
        ApiError::new(
            "ProvisionedThroughputExceededException",
            format!(
                "Rate exceeded for shard {} in stream {} under account {}.",
                shard.id, stream.name, self.config.account_id
            ),
        )
    }

    /// The record counter a client's sequence number names in this shard.
    fn counter_of(&self, stream: &Stream, shard: &Shard, text: &str) -> ApiResult<u64> {
        let invalid = || {
            ApiError::invalid_argument(format!(
                "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} is invalid because it did not come from this stream.",
                shard.id, stream.name, self.config.account_id
            ))
        };
        let seq = SequenceNumber::parse(text).ok_or_else(invalid)?;
        if seq.shard_index != shard.index || seq.stream_epoch != stream.created_ms {
            return Err(invalid());
        }
        if seq.counter >= shard.next_counter() {
            return Err(ApiError::invalid_argument(format!(
                "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} is invalid because it has not been issued yet.",
                shard.id, stream.name, self.config.account_id
            )));
        }
        Ok(seq.counter)
    }

    pub(super) fn get_records(&self, input: GetRecordsInput) -> ApiResult<GetRecordsOutput> {
        let mut v = Validator::new();
        if let Some(token) = v.required(&input.shard_iterator, "shardIterator") {
            v.length(token, "shardIterator", 1, 512);
        }
        if let Some(limit) = input.limit {
            v.range(limit, "limit", 1, MAX_GET_RECORDS);
        }
        v.finish()?;
        let now = self.now();
        let position = self
            .iterators
            .decode(input.shard_iterator.as_deref().unwrap_or(""), now)?;
        let stream = self.stream(&position.stream_name)?;
        if stream.created_ms != position.stream_epoch || !stream.meta().status.is_readable() {
            return Err(self.not_found(&position.stream_name));
        }
        if let Some(arn) = &input.stream_arn
            && *arn != stream.arn
        {
            return Err(ApiError::invalid_argument(format!(
                "StreamARN {arn} does not match the stream of the shard iterator."
            )));
        }
        let meta = stream.meta();
        let horizon = now - meta.retention_ms();
        let shard = meta
            .shards
            .iter()
            .find(|s| s.index == position.shard_index)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Shard {} in stream {} under account {} does not exist",
                    super::shard::shard_id(position.shard_index),
                    stream.name,
                    self.config.account_id
                ))
            })?;
        if self.config.enforce_limits && !shard.limits().admit_read(now) {
            return Err(self.throughput_exceeded(&stream, shard));
        }
        let limit = input.limit.unwrap_or(MAX_GET_RECORDS) as usize;
        let batch = shard
            .read(
                &self.storage,
                position.next_counter,
                limit,
                MAX_GET_RECORDS_BYTES,
                horizon,
            )
            .map_err(|err| {
                tracing::error!(%err, shard = %shard.id, "cannot read records from the data directory");
                ApiError::internal("The records could not be read.")
            })?;
        if self.config.enforce_limits {
            let bytes: usize = batch.records.iter().map(|r| r.data.len()).sum();
            shard.limits().charge_read(bytes);
        }
        let millis_behind_latest = batch
            .next_unread_arrival_ms
            .map_or(0, |arrival| (now - arrival).max(0));
        let next_shard_iterator = (!batch.exhausted).then(|| {
            self.iterators.encode(&ShardPosition {
                next_counter: batch.next_counter,
                issued_at_ms: now,
                ..position
            })
        });
        let child_shards = batch
            .exhausted
            .then(|| child_shards(&meta, &batch.children));
        let records = batch
            .records
            .into_iter()
            .map(|r| record_out(shard, r))
            .collect();
        Ok(GetRecordsOutput {
            records,
            next_shard_iterator,
            millis_behind_latest,
            child_shards,
        })
    }
}

/// The open shard for a hash key. The open shards tile the key space, so this only fails if the
/// broker's own invariants are broken.
fn route(meta: &StreamMeta, hash_key: u128) -> ApiResult<&Arc<Shard>> {
    meta.route(hash_key)
        .ok_or_else(|| ApiError::internal(format!("no open shard owns hash key {hash_key}")))
}

/// A stored record on the wire.
pub(super) fn record_out(shard: &Shard, record: StoredRecord) -> RecordOut {
    RecordOut {
        sequence_number: shard.sequence_number(record.counter).to_string(),
        approximate_arrival_timestamp: Timestamp(record.arrival_ms),
        data: Blob(record.data),
        partition_key: record.partition_key,
        encryption_type: encryption_type(record.encrypted),
    }
}

/// The children a reader is sent to at the end of a closed shard.
pub(super) fn child_shards(meta: &StreamMeta, children: &[String]) -> Vec<ChildShard> {
    children
        .iter()
        .filter_map(|id| meta.shard(id))
        .map(|child| ChildShard {
            shard_id: child.id.clone(),
            parent_shards: child
                .parent
                .iter()
                .chain(child.adjacent_parent.iter())
                .cloned()
                .collect(),
            hash_key_range: HashKeyRange {
                starting_hash_key: child.range.start.to_string(),
                ending_hash_key: child.range.end.to_string(),
            },
        })
        .collect()
}
