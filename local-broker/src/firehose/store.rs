//! Persistence of delivery streams in the data directory, so a restart loses neither streams nor
//! buffered records.
//!
//! | where | holds |
//! |---|---|
//! | meta `firehose/stream/<name>` | the stream: source, status, version, destination, tags, encryption |
//! | meta `firehose/delivered/<name>` | the log position through which its records are delivered |
//! | meta `firehose/source/<name>` | a Kinesis-sourced stream's read position in every shard |
//! | service log `firehose` | every accepted batch of records: stream name, its creation time, the records |
//!
//! Records are appended on the request's thread before the put is answered (so in `--sync always`
//! mode an acknowledged record is on disk). After a batch is delivered (or backed up to the error
//! prefix) the stream's delivered mark moves past it. A restarted broker buffers again every
//! logged record past its stream's mark: delivery is at least once, never lossy. Log segments are
//! expired once they lie wholly before every stream's oldest undelivered record.
//!
//! Without a data directory nothing is written and every call is a no-op.

use super::api::{HttpEndpointDestination, S3Destination};
use super::buffering::BufferedRecord;
use super::model::{DeliveryStream, DestinationConfig, Encryption, Source, Status, StreamState};
use crate::http::error::ApiError;
use crate::storage::{Change, ServiceLog, Storage, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const STREAM_PREFIX: &str = "firehose/stream/";
const DELIVERED_PREFIX: &str = "firehose/delivered/";
const SOURCE_PREFIX: &str = "firehose/source/";
/// The name of the service log.
const LOG_NAME: &str = "firehose";
/// The first byte of every logged batch: its encoding's version.
const BATCH_VERSION: u8 = 1;

/// Where a buffered record is in the log: the position of its batch's body and its index in the
/// batch. Zero (and meaningless) without a data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogMark {
    pub position: u64,
    pub index: u32,
}

impl LogMark {
    /// The mark just after this one.
    pub fn next(self) -> Self {
        Self {
            position: self.position,
            index: self.index.saturating_add(1),
        }
    }
}

/// A delivery stream as stored: everything `DescribeDeliveryStream` and delivery need.
#[derive(Serialize, Deserialize)]
struct StreamRecord {
    arn: String,
    created_ms: i64,
    source: SourceRecord,
    status: String,
    version: u64,
    last_update_ms: Option<i64>,
    destination: DestinationRecord,
    /// The HTTP endpoint's access key, which the destination's own encoding never writes.
    access_key: Option<String>,
    tags: BTreeMap<String, String>,
    encryption: EncryptionRecord,
}

#[derive(Serialize, Deserialize)]
enum SourceRecord {
    DirectPut {
        throughput_hint_in_mbs: Option<i64>,
    },
    KinesisStream {
        stream_arn: String,
        stream_name: String,
        role_arn: String,
        start_ms: i64,
    },
}

// Built for one write or read and dropped: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
enum DestinationRecord {
    S3(S3Destination),
    HttpEndpoint(HttpEndpointDestination),
}

#[derive(Serialize, Deserialize)]
struct EncryptionRecord {
    enabled: bool,
    key_type: Option<String>,
    key_arn: Option<String>,
}

/// The delivered mark of a stream generation (a stream recreated under the same name starts
/// afresh).
#[derive(Serialize, Deserialize)]
struct DeliveredRecord {
    created_ms: i64,
    through: LogMark,
}

/// A delivery stream read back from the data directory.
pub struct RestoredStream {
    pub name: String,
    pub arn: String,
    pub created_ms: i64,
    pub source: Source,
    pub state: RestoredState,
    /// A Kinesis-sourced stream's saved read position (JSON owned by `source`).
    pub source_position: Option<Vec<u8>>,
}

/// The mutable part of a restored stream, before its destination is resolved again.
pub struct RestoredState {
    pub status: Status,
    pub version: u64,
    pub last_update_ms: Option<i64>,
    pub destination: DestinationConfig,
    pub tags: BTreeMap<String, String>,
    pub encryption: Encryption,
    /// Records logged but not delivered, oldest first.
    pub buffered: Vec<BufferedRecord>,
}

/// Records of one stream encoded for the log ([`Store::encode`]).
pub struct LogBatch {
    /// None without a data directory or records.
    body: Option<Vec<u8>>,
    count: usize,
}

/// Writes delivery streams and their records to the data directory.
#[derive(Clone, Default)]
pub struct Store {
    storage: Storage,
    log: ServiceLog,
}

fn corrupt(what: &str, key: &str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what} {key}: {err}"))
}

/// The error a client sees when a change cannot be stored.
pub fn store_failed(err: &StorageError) -> ApiError {
    tracing::error!(%err, "cannot store a Firehose change");
    ApiError::internal("The change could not be stored.")
}

impl Store {
    /// Reads the delivery streams in `meta` and re-buffers their undelivered records from the
    /// `firehose` log of `storage`.
    pub fn restore(
        storage: &Storage,
        meta: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(Self, Vec<RestoredStream>), StorageError> {
        let prefixed = |prefix: &'static str| {
            meta.iter()
                .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v)))
        };
        let mut streams: BTreeMap<String, RestoredStream> = BTreeMap::new();
        for (name, value) in prefixed(STREAM_PREFIX) {
            let record: StreamRecord =
                serde_json::from_slice(value).map_err(|e| corrupt("delivery stream", name, e))?;
            streams.insert(name.to_owned(), restored(name, record));
        }
        let mut delivered: BTreeMap<&str, LogMark> = BTreeMap::new();
        for (name, value) in prefixed(DELIVERED_PREFIX) {
            let mark: DeliveredRecord =
                serde_json::from_slice(value).map_err(|e| corrupt("delivered mark", name, e))?;
            if streams
                .get(name)
                .is_some_and(|s| s.created_ms == mark.created_ms)
            {
                delivered.insert(name, mark.through);
            }
        }
        for (name, value) in prefixed(SOURCE_PREFIX) {
            if let Some(stream) = streams.get_mut(name) {
                stream.source_position = Some(value.clone());
            }
        }
        let log = storage.service_log(LOG_NAME, |arrival_ms, position, body| {
            let batch = decode_batch(body).ok_or_else(|| {
                StorageError::Corrupt(format!("Firehose log batch at {position} is unreadable"))
            })?;
            let Some(stream) = streams.get_mut(batch.stream) else {
                return Ok(());
            };
            if stream.created_ms != batch.created_ms {
                return Ok(());
            }
            let through = delivered.get(batch.stream).copied();
            for (index, data) in batch.records.into_iter().enumerate() {
                let log = LogMark {
                    position,
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                };
                if through.is_none_or(|through| log >= through) {
                    stream.state.buffered.push(BufferedRecord {
                        data: Bytes::copy_from_slice(data),
                        arrival_ms,
                        log,
                    });
                }
            }
            Ok(())
        })?;
        let store = Self {
            storage: storage.clone(),
            log,
        };
        Ok((store, streams.into_values().collect()))
    }

    /// Whether anything is written.
    pub fn is_durable(&self) -> bool {
        self.log.is_durable()
    }

    /// Writes a stream's configuration and status (call under its state lock, so writes land in
    /// the order of the changes).
    pub fn persist(
        &self,
        stream: &DeliveryStream,
        state: &StreamState,
    ) -> Result<(), StorageError> {
        if !self.is_durable() {
            return Ok(());
        }
        let value = serde_json::to_vec(&record_of(stream, state))
            .map_err(|e| corrupt("delivery stream", &stream.name, e))?;
        let key = format!("{STREAM_PREFIX}{}", stream.name);
        self.storage.write_meta(&[Change::Put(&key, &value)])
    }

    /// Forgets a stream that has finished deleting: it does not come back after a restart.
    pub fn remove(&self, name: &str) -> Result<(), StorageError> {
        let keys = [STREAM_PREFIX, DELIVERED_PREFIX, SOURCE_PREFIX].map(|p| format!("{p}{name}"));
        let changes: Vec<Change<'_>> = keys.iter().map(|k| Change::Delete(k)).collect();
        self.storage.write_meta(&changes)
    }

    /// Encodes records for a stream's log (before taking its state lock: [`Self::append`] then
    /// only writes).
    pub fn encode(&self, stream: &DeliveryStream, records: &[Bytes]) -> LogBatch {
        LogBatch {
            body: (self.is_durable() && !records.is_empty())
                .then(|| encode_batch(&stream.name, stream.created_ms, records)),
            count: records.len(),
        }
    }

    /// Appends records accepted into a stream's buffer (nothing for no records); returns where
    /// each is. Call under the stream's state lock, so the log holds each stream's records in
    /// buffer order.
    pub fn append(&self, arrival_ms: i64, batch: &LogBatch) -> Result<Vec<LogMark>, StorageError> {
        let Some(body) = &batch.body else {
            return Ok(vec![LogMark::default(); batch.count]);
        };
        let position = self.log.append(arrival_ms, body)?;
        Ok((0..batch.count)
            .map(|index| LogMark {
                position,
                index: u32::try_from(index).unwrap_or(u32::MAX),
            })
            .collect())
    }

    /// Records that every record of `stream` before `through` is delivered.
    pub fn delivered(&self, stream: &DeliveryStream, through: LogMark) -> Result<(), StorageError> {
        if !self.is_durable() {
            return Ok(());
        }
        let mark = DeliveredRecord {
            created_ms: stream.created_ms,
            through,
        };
        let value =
            serde_json::to_vec(&mark).map_err(|e| corrupt("delivered mark", &stream.name, e))?;
        let key = format!("{DELIVERED_PREFIX}{}", stream.name);
        self.storage.write_meta(&[Change::Put(&key, &value)])
    }

    /// Writes a Kinesis-sourced stream's read position (JSON owned by `source`).
    pub fn persist_source(&self, name: &str, position: &[u8]) -> Result<(), StorageError> {
        if !self.is_durable() {
            return Ok(());
        }
        let key = format!("{SOURCE_PREFIX}{name}");
        self.storage.write_meta(&[Change::Put(&key, position)])
    }

    /// Where the next logged batch will be: past every record logged so far.
    pub fn log_end(&self) -> u64 {
        self.log.end()
    }

    /// Deletes log segments wholly before log position `position` (all delivered).
    pub fn expire_before(&self, position: u64) -> Result<usize, StorageError> {
        self.log.expire_before(position)
    }
}

fn record_of(stream: &DeliveryStream, state: &StreamState) -> StreamRecord {
    let (destination, access_key) = match &state.destination {
        DestinationConfig::S3(config) => (DestinationRecord::S3(config.clone()), None),
        DestinationConfig::HttpEndpoint(config) => (
            DestinationRecord::HttpEndpoint(config.clone()),
            config
                .endpoint_configuration
                .as_ref()
                .and_then(|e| e.access_key.clone()),
        ),
    };
    StreamRecord {
        arn: stream.arn.clone(),
        created_ms: stream.created_ms,
        source: match &stream.source {
            Source::DirectPut {
                throughput_hint_in_mbs,
            } => SourceRecord::DirectPut {
                throughput_hint_in_mbs: *throughput_hint_in_mbs,
            },
            Source::KinesisStream {
                stream_arn,
                stream_name,
                role_arn,
                start_ms,
            } => SourceRecord::KinesisStream {
                stream_arn: stream_arn.clone(),
                stream_name: stream_name.clone(),
                role_arn: role_arn.clone(),
                start_ms: *start_ms,
            },
        },
        status: state.status.as_str().to_owned(),
        version: state.version,
        last_update_ms: state.last_update_ms,
        destination,
        access_key,
        tags: state.tags.clone(),
        encryption: EncryptionRecord {
            enabled: state.encryption.enabled,
            key_type: state.encryption.key_type.clone(),
            key_arn: state.encryption.key_arn.clone(),
        },
    }
}

fn restored(name: &str, record: StreamRecord) -> RestoredStream {
    let destination = match record.destination {
        DestinationRecord::S3(config) => DestinationConfig::S3(config),
        DestinationRecord::HttpEndpoint(mut config) => {
            if let Some(endpoint) = &mut config.endpoint_configuration {
                endpoint.access_key = record.access_key;
            }
            DestinationConfig::HttpEndpoint(config)
        }
    };
    RestoredStream {
        name: name.to_owned(),
        arn: record.arn,
        created_ms: record.created_ms,
        source: match record.source {
            SourceRecord::DirectPut {
                throughput_hint_in_mbs,
            } => Source::DirectPut {
                throughput_hint_in_mbs,
            },
            SourceRecord::KinesisStream {
                stream_arn,
                stream_name,
                role_arn,
                start_ms,
            } => Source::KinesisStream {
                stream_arn,
                stream_name,
                role_arn,
                start_ms,
            },
        },
        state: RestoredState {
            // Streams stored before statuses were kept are all ACTIVE.
            status: Status::parse(&record.status).unwrap_or(Status::Active),
            version: record.version,
            last_update_ms: record.last_update_ms,
            destination,
            tags: record.tags,
            encryption: Encryption {
                enabled: record.encryption.enabled,
                key_type: record.encryption.key_type,
                key_arn: record.encryption.key_arn,
            },
            buffered: Vec::new(),
        },
        source_position: None,
    }
}

/// One logged batch: `version u8, name_len u16, name, created_ms i64, count u32, (len u32,
/// data)*`, integers big-endian.
fn encode_batch(stream: &str, created_ms: i64, records: &[Bytes]) -> Vec<u8> {
    let data: usize = records.iter().map(|r| 4 + r.len()).sum();
    let mut body = Vec::with_capacity(1 + 2 + stream.len() + 8 + 4 + data);
    body.push(BATCH_VERSION);
    // Delivery stream names are at most 64 bytes and record counts at most 10,000 per poll.
    body.extend_from_slice(&(stream.len() as u16).to_be_bytes());
    body.extend_from_slice(stream.as_bytes());
    body.extend_from_slice(&created_ms.to_be_bytes());
    body.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in records {
        body.extend_from_slice(&(record.len() as u32).to_be_bytes());
        body.extend_from_slice(record);
    }
    body
}

struct Batch<'a> {
    stream: &'a str,
    created_ms: i64,
    records: Vec<&'a [u8]>,
}

/// The next `n` bytes of `rest`, if it has that many.
fn take_bytes<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    Some(head)
}

fn decode_batch(body: &[u8]) -> Option<Batch<'_>> {
    let mut rest = body;
    let mut take = |n: usize| take_bytes(&mut rest, n);
    if take(1)? != [BATCH_VERSION] {
        return None;
    }
    let name_len = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let stream = std::str::from_utf8(take(usize::from(name_len))?).ok()?;
    let created_ms = i64::from_be_bytes(take(8)?.try_into().ok()?);
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut records = Vec::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().ok()?);
        records.push(take(usize::try_from(len).ok()?)?);
    }
    Some(Batch {
        stream,
        created_ms,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_to_what_was_encoded() {
        let records = [
            Bytes::from_static(b"one"),
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
        ];
        let body = encode_batch("orders", 1_700_000_000_123, &records);
        let batch = decode_batch(&body).unwrap();
        assert_eq!(batch.stream, "orders");
        assert_eq!(batch.created_ms, 1_700_000_000_123);
        assert_eq!(
            batch.records,
            records.iter().map(|r| &r[..]).collect::<Vec<_>>()
        );
        assert!(decode_batch(&body[..body.len() - 1]).is_none());
    }
}
