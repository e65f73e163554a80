//! Persistence of the Kinesis service: how streams and record batches are encoded for
//! [`crate::storage`], and how they come back after a restart.
//!
//! Stream state (settings, tags, policies, consumers, shards and their lineage, the counter floor
//! of each shard) is one metadata value per stream, rewritten whenever a control operation
//! changed it. Records are record-log batches; a shard's next counter is recovered as the larger
//! of its persisted floor and one past the last record the log holds, so sequence numbers never
//! go backwards across restarts. Recovery ([`Replay`]) indexes each batch's records by log
//! position without keeping their bodies.

use super::consumer::{Consumer, ConsumerStatus};
use super::hash::HashRange;
use super::shard::{Closed, IndexedRecord, Shard};
use super::stream::{Stream, StreamMeta, StreamMode, StreamStatus};
use crate::storage::{Change, Recovery, Storage, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

/// Metadata keys of streams start with this.
const STREAM_PREFIX: &str = "kinesis/stream/";
/// The metadata key of the account settings (UpdateAccountSettings).
const ACCOUNT_KEY: &str = "kinesis/account";

/// The account settings a data directory holds (the defaults if it holds none).
pub fn restore_account(
    meta: &BTreeMap<String, Vec<u8>>,
) -> Result<super::control::AccountSettings, StorageError> {
    match meta.get(ACCOUNT_KEY) {
        None => Ok(Default::default()),
        Some(json) => serde_json::from_slice(json)
            .map_err(|e| StorageError::Corrupt(format!("account settings: {e}"))),
    }
}

#[derive(Serialize, Deserialize)]
struct StreamRecord {
    name: String,
    arn: String,
    id: String,
    created_ms: i64,
    status: String,
    retention_hours: u32,
    tags: BTreeMap<String, String>,
    encryption_key: Option<String>,
    shard_level_metrics: BTreeSet<String>,
    mode: String,
    max_record_size_kib: u32,
    warm_throughput_mibps: Option<u32>,
    record_distribution_strategy: Option<String>,
    policy: Option<String>,
    consumers: Vec<ConsumerRecord>,
    next_shard_index: u32,
    shards: Vec<ShardRecord>,
}

#[derive(Serialize, Deserialize)]
struct ShardRecord {
    index: u32,
    parent: Option<String>,
    adjacent_parent: Option<String>,
    /// Hash keys as decimal strings: JSON numbers cannot hold 128 bits portably.
    start: String,
    end: String,
    created_ms: i64,
    stream_epoch: i64,
    next_counter: u64,
    closed: Option<(i64, u64)>,
    children: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ConsumerRecord {
    name: String,
    arn: String,
    active: bool,
    created_ms: i64,
    tags: BTreeMap<String, String>,
    policy: Option<String>,
}

fn record_of(stream: &Stream) -> StreamRecord {
    let meta = stream.meta();
    StreamRecord {
        name: stream.name.clone(),
        arn: stream.arn.clone(),
        id: stream.id.clone(),
        created_ms: stream.created_ms,
        status: meta.status.as_str().to_owned(),
        retention_hours: meta.retention_hours,
        tags: meta.tags.clone(),
        encryption_key: meta.encryption_key.clone(),
        shard_level_metrics: meta.shard_level_metrics.clone(),
        mode: meta.mode.as_str().to_owned(),
        max_record_size_kib: meta.max_record_size_kib,
        warm_throughput_mibps: meta.warm_throughput_mibps,
        record_distribution_strategy: meta.record_distribution_strategy.clone(),
        policy: meta.policy.clone(),
        // A consumer being deregistered is gone once the broker restarts.
        consumers: meta
            .consumers
            .values()
            .filter(|c| c.status != ConsumerStatus::Deleting)
            .map(|c| ConsumerRecord {
                name: c.name.clone(),
                arn: c.arn.clone(),
                active: c.status == ConsumerStatus::Active,
                created_ms: c.created_ms,
                tags: c.tags.clone(),
                policy: c.policy.clone(),
            })
            .collect(),
        next_shard_index: meta.next_shard_index,
        shards: meta
            .shards
            .iter()
            .map(|s| ShardRecord {
                index: s.index,
                parent: s.parent.clone(),
                adjacent_parent: s.adjacent_parent.clone(),
                start: s.range.start.to_string(),
                end: s.range.end.to_string(),
                created_ms: s.created_ms,
                stream_epoch: s.stream_epoch,
                next_counter: s.next_counter(),
                closed: s.closed().map(|c| (c.at_ms, c.last_counter)),
                children: s.children(),
            })
            .collect(),
    }
}

/// Rebuilds a stream. Transitions in flight when the broker stopped are completed: CREATING and
/// UPDATING streams come back ACTIVE, DELETING ones do not come back.
fn stream_of(record: StreamRecord) -> Result<Option<Stream>, StorageError> {
    let corrupt = |what: &str| StorageError::Corrupt(format!("stream {}: {what}", record.name));
    let status = match record.status.as_str() {
        "DELETING" => return Ok(None),
        _ => StreamStatus::Active,
    };
    let mut shards = Vec::with_capacity(record.shards.len());
    for s in &record.shards {
        let range = HashRange {
            start: s.start.parse().map_err(|_| corrupt("bad hash key"))?,
            end: s.end.parse().map_err(|_| corrupt("bad hash key"))?,
        };
        let shard = Shard::new(
            s.index,
            range,
            (s.parent.clone(), s.adjacent_parent.clone()),
            s.created_ms,
            s.stream_epoch,
        );
        shard.restore_state(
            s.next_counter,
            s.closed.map(|(at_ms, last_counter)| Closed {
                at_ms,
                last_counter,
            }),
            s.children.clone(),
        );
        shards.push(Arc::new(shard));
    }
    let mut open: Vec<Arc<Shard>> = shards
        .iter()
        .filter(|s| s.closed().is_none())
        .cloned()
        .collect();
    open.sort_by_key(|s| s.range.start);
    let meta = StreamMeta {
        status,
        shards,
        open,
        retention_hours: record.retention_hours,
        tags: record.tags,
        encryption_key: record.encryption_key,
        shard_level_metrics: record.shard_level_metrics,
        mode: StreamMode::parse(&record.mode).ok_or_else(|| corrupt("bad mode"))?,
        max_record_size_kib: record.max_record_size_kib,
        warm_throughput_mibps: record.warm_throughput_mibps,
        record_distribution_strategy: record.record_distribution_strategy,
        policy: record.policy,
        consumers: record
            .consumers
            .into_iter()
            .map(|c| {
                let consumer = Consumer {
                    name: c.name,
                    arn: c.arn,
                    // A consumer still CREATING has finished by the time anyone can ask.
                    status: ConsumerStatus::Active,
                    created_ms: c.created_ms,
                    tags: c.tags,
                    policy: c.policy,
                };
                (consumer.name.clone(), consumer)
            })
            .collect(),
        next_shard_index: record.next_shard_index,
    };
    Ok(Some(Stream::restore(
        record.name,
        record.arn,
        record.id,
        record.created_ms,
        meta,
    )))
}

/// Bytes of a batch's encoding before its first record.
fn batch_header_len(stream: &str) -> usize {
    2 + stream.len() + 8 + 4 + 8 + 1 + 4
}

/// Bytes of one record's encoding in a batch.
pub fn encoded_len(key_len: u16, data_len: u32) -> u64 {
    2 + u64::from(key_len) + 4 + u64::from(data_len)
}

/// Encodes one append batch: `name_len u16 · name · epoch i64 · shard u32 · first counter u64 ·
/// encrypted u8 · count u32 · (key_len u16 · key · data_len u32 · data)*`, little-endian.
pub fn encode_batch(
    stream: &str,
    shard: &Shard,
    first_counter: u64,
    encrypted: bool,
    records: &[(String, Bytes)],
) -> Vec<u8> {
    let size: usize = records.iter().map(|(k, d)| 6 + k.len() + d.len()).sum();
    let mut out = Vec::with_capacity(batch_header_len(stream) + size);
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(&shard.stream_epoch.to_le_bytes());
    out.extend_from_slice(&shard.index.to_le_bytes());
    out.extend_from_slice(&first_counter.to_le_bytes());
    out.push(u8::from(encrypted));
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for (key, data) in records {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Where each record's encoding starts in the batch [`encode_batch`] makes of `records`.
pub fn record_offsets<'a>(
    stream: &str,
    records: &'a [(String, Bytes)],
) -> impl Iterator<Item = u64> + 'a {
    records
        .iter()
        .scan(batch_header_len(stream) as u64, |at, (key, data)| {
            let offset = *at;
            *at += encoded_len(key.len() as u16, data.len() as u32);
            Some(offset)
        })
}

/// The partition key and data of one record's encoding (`key_len` bytes of key).
pub fn decode_record(encoded: &Bytes, key_len: u16) -> Option<(String, Bytes)> {
    let key_end = 2 + usize::from(key_len);
    let key = std::str::from_utf8(encoded.get(2..key_end)?)
        .ok()?
        .to_owned();
    let data_start = key_end + 4;
    (data_start <= encoded.len()).then(|| (key, encoded.slice(data_start..)))
}

/// A batch's header, and its records as offsets into it.
struct Batch<'a> {
    stream: &'a str,
    epoch: i64,
    shard: u32,
    first_counter: u64,
    encrypted: bool,
    /// `(offset, key_len, data_len)` of each record.
    records: Vec<(u64, u16, u32)>,
}

/// Reads little-endian fields off the front of a slice.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let field = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(field)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

fn decode_batch(body: &[u8]) -> Option<Batch<'_>> {
    let mut r = Reader { bytes: body, at: 0 };
    let name_len = u16::from_le_bytes(r.array()?) as usize;
    let stream = std::str::from_utf8(r.take(name_len)?).ok()?;
    let epoch = i64::from_le_bytes(r.array()?);
    let shard = u32::from_le_bytes(r.array()?);
    let first_counter = u64::from_le_bytes(r.array()?);
    let encrypted = r.array::<1>()?[0] != 0;
    let count = u32::from_le_bytes(r.array()?) as usize;
    let mut records = Vec::with_capacity(count.min(10_000));
    for _ in 0..count {
        let offset = r.at as u64;
        let key_len = u16::from_le_bytes(r.array()?);
        r.take(usize::from(key_len))?;
        let data_len = u32::from_le_bytes(r.array()?);
        r.take(data_len as usize)?;
        records.push((offset, key_len, data_len));
    }
    Some(Batch {
        stream,
        epoch,
        shard,
        first_counter,
        encrypted,
        records,
    })
}

/// Rebuilds every stream from the metadata, then indexes its records as the record log is
/// replayed. Batches of streams that no longer exist (deleted, or re-created with a new epoch)
/// and records past retention are skipped.
pub struct Replay {
    now_ms: i64,
    streams: BTreeMap<String, Arc<Stream>>,
}

impl Replay {
    /// A replay that judges retention as of `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            now_ms,
            streams: BTreeMap::new(),
        }
    }

    /// The streams, once the data directory is open.
    pub fn into_streams(self) -> BTreeMap<String, Arc<Stream>> {
        self.streams
    }
}

impl Recovery for Replay {
    fn metadata(&mut self, meta: &BTreeMap<String, Vec<u8>>) -> Result<(), StorageError> {
        for (key, value) in meta.range(STREAM_PREFIX.to_owned()..) {
            if !key.starts_with(STREAM_PREFIX) {
                break;
            }
            let record: StreamRecord = serde_json::from_slice(value)
                .map_err(|err| StorageError::Corrupt(format!("{key}: {err}")))?;
            if let Some(stream) = stream_of(record)? {
                self.streams.insert(stream.name.clone(), Arc::new(stream));
            }
        }
        Ok(())
    }

    fn record_batch(
        &mut self,
        arrival_ms: i64,
        position: u64,
        body: &[u8],
    ) -> Result<(), StorageError> {
        let batch = decode_batch(body)
            .ok_or_else(|| StorageError::Corrupt("malformed record batch".into()))?;
        let Some(stream) = self
            .streams
            .get(batch.stream)
            .filter(|s| s.created_ms == batch.epoch)
        else {
            return Ok(());
        };
        let meta = stream.meta();
        if arrival_ms < self.now_ms - meta.retention_ms() {
            return Ok(());
        }
        if let Some(shard) = meta.shards.iter().find(|s| s.index == batch.shard) {
            let encrypted = batch.encrypted;
            shard.restore_batch(
                batch.first_counter,
                batch
                    .records
                    .into_iter()
                    .map(|(offset, key_len, data_len)| IndexedRecord {
                        position: position + offset,
                        arrival_ms,
                        data_len,
                        key_len,
                        encrypted,
                    }),
            );
        }
        Ok(())
    }
}

/// Writes stream metadata when it changes; remembers what it last wrote so unchanged streams
/// cost a serialisation and a comparison, not a disk write.
#[derive(Default)]
pub struct StreamStore {
    storage: Storage,
    written: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl StreamStore {
    /// A store over `storage`, which already holds `meta`.
    pub fn new(storage: Storage, meta: &BTreeMap<String, Vec<u8>>) -> Self {
        let written = meta
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(STREAM_PREFIX)?.to_owned(), v.clone())))
            .collect();
        Self {
            storage,
            written: Mutex::new(written),
        }
    }

    /// The storage records go to.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Persists the account settings.
    pub fn persist_account(
        &self,
        settings: &super::control::AccountSettings,
    ) -> Result<(), StorageError> {
        if !self.storage.is_durable() {
            return Ok(());
        }
        let json = serde_json::to_vec(settings)
            .map_err(|e| StorageError::Corrupt(format!("unencodable account settings: {e}")))?;
        self.storage.write_meta(&[Change::Put(ACCOUNT_KEY, &json)])
    }

    /// Persists every stream whose state differs from what was last written, and forgets
    /// removed ones.
    pub fn persist(
        &self,
        streams: &RwLock<BTreeMap<String, Arc<Stream>>>,
    ) -> Result<(), StorageError> {
        if !self.storage.is_durable() {
            return Ok(());
        }
        // Held while writing, so concurrent persists reach the disk in the order they read.
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let current: Vec<(String, Vec<u8>)> = streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| {
                let json = serde_json::to_vec(&record_of(s))
                    .map_err(|e| StorageError::Corrupt(format!("unencodable stream: {e}")))?;
                Ok((s.name.clone(), json))
            })
            .collect::<Result<_, StorageError>>()?;
        let keys: BTreeMap<&str, String> = current
            .iter()
            .map(|(name, _)| (name.as_str(), format!("{STREAM_PREFIX}{name}")))
            .collect();
        let removed: Vec<String> = written
            .keys()
            .filter(|name| !keys.contains_key(name.as_str()))
            .cloned()
            .collect();
        let removed_keys: Vec<String> = removed
            .iter()
            .map(|name| format!("{STREAM_PREFIX}{name}"))
            .collect();
        let mut changes: Vec<Change<'_>> = removed_keys.iter().map(|k| Change::Delete(k)).collect();
        for (name, json) in &current {
            if written.get(name) != Some(json) {
                changes.push(Change::Put(&keys[name.as_str()], json));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.storage.write_meta(&changes)?;
        for name in removed {
            written.remove(&name);
        }
        for (name, json) in current {
            written.insert(name, json);
        }
        Ok(())
    }
}
