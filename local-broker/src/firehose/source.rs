//! `KinesisStreamAsSource`: a delivery stream that reads a broker Kinesis stream from LATEST.
//!
//! The reader calls the broker's own Kinesis API in-process (GetShardIterator, GetRecords), the
//! same operations a remote consumer uses, so it sees exactly what clients see — iterator
//! semantics, resharding (child shards start at TRIM_HORIZON once their parents are read to the
//! end) and, with `--enforce-limits`, the shards' read limits, which Firehose shares with other
//! consumers. It does not go through the `kcl` crate: that would put an SDK client, a lease
//! table and an HTTP round trip inside the server for a single reader that owns every shard.
//!
//! KPL-aggregated records are de-aggregated as they are read ([`kpl`]): what is buffered, logged
//! and delivered are the user records.
//!
//! With a data directory, where every shard is read up to (its last sequence number read) is
//! saved after the records read are logged, so a restarted broker resumes there and delivers
//! what was put to the Kinesis stream while it was down.

use super::buffering::BufferedRecord;
use super::kpl;
use super::model::DeliveryStream;
use super::records::MAX_BUFFERED_BYTES;
use super::store::Store;
use crate::clock::Clock;
use crate::http::Reply;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::{Protocol, Wire};
use crate::kinesis::Kinesis;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Firehose reads each shard about once a second.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Records asked for per GetRecords call.
const GET_RECORDS_LIMIT: i64 = 10_000;

/// Reads one Kinesis stream of this broker.
#[derive(Clone)]
pub struct KinesisReader {
    kinesis: Arc<Kinesis>,
    stream_name: String,
}

/// Where reading stands: the next iterator of every shard being read, and the shards read to
/// their end.
#[derive(Debug, Default, Clone)]
pub struct Cursors {
    iterators: BTreeMap<String, String>,
    position: Position,
}

/// What survives a restart of where reading stands.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Position {
    /// Where to resume each shard being read.
    shards: BTreeMap<String, ShardPosition>,
    finished: BTreeSet<String>,
    /// Child shards waiting for their parents: shard → parents.
    waiting: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ShardPosition {
    /// Nothing read yet from a shard read from when the delivery stream was created.
    AtTimestamp(i64),
    /// Nothing read yet from a child shard.
    TrimHorizon,
    /// After this sequence number.
    After(String),
}

impl Cursors {
    /// The position to save.
    pub fn saved(&self) -> Vec<u8> {
        serde_json::to_vec(&self.position).unwrap_or_default()
    }
}

impl KinesisReader {
    pub fn new(kinesis: Arc<Kinesis>, stream_name: String) -> Self {
        Self {
            kinesis,
            stream_name,
        }
    }

    fn call(&self, operation: &str, input: Value) -> ApiResult<Value> {
        let wire = Wire {
            protocol: Protocol::Json11,
            body: Bytes::from(input.to_string()),
        };
        match self.kinesis.dispatch(operation, &wire)? {
            Reply::Body(body) => serde_json::from_slice(&body)
                .map_err(|e| ApiError::internal(format!("unreadable {operation} answer: {e}"))),
            Reply::EventStream(_) => Err(ApiError::internal(format!(
                "{operation} answered with an event stream"
            ))),
        }
    }

    /// An iterator of `shard_id` at `position`, or at LATEST for none.
    fn iterator_at(&self, shard_id: &str, position: Option<&ShardPosition>) -> ApiResult<String> {
        let mut input = json!({"StreamName": self.stream_name, "ShardId": shard_id});
        match position {
            None => input["ShardIteratorType"] = json!("LATEST"),
            Some(ShardPosition::AtTimestamp(ms)) => {
                input["ShardIteratorType"] = json!("AT_TIMESTAMP");
                input["Timestamp"] = json!(*ms as f64 / 1000.0);
            }
            Some(ShardPosition::TrimHorizon) => input["ShardIteratorType"] = json!("TRIM_HORIZON"),
            Some(ShardPosition::After(sequence)) => {
                input["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                input["StartingSequenceNumber"] = json!(sequence);
            }
        }
        let answer = self.call("GetShardIterator", input)?;
        answer["ShardIterator"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::internal("GetShardIterator answered without an iterator"))
    }

    /// LATEST iterators for every open shard: taken when the delivery stream is created at
    /// `start_ms`, so every record put after CreateDeliveryStream returns is delivered.
    pub fn start_at_latest(&self, start_ms: i64) -> ApiResult<Cursors> {
        let listed = self.call(
            "ListShards",
            json!({"StreamName": self.stream_name, "ShardFilter": {"Type": "AT_LATEST"}}),
        )?;
        let mut cursors = Cursors::default();
        for shard in listed["Shards"].as_array().into_iter().flatten() {
            if let Some(id) = shard["ShardId"].as_str() {
                cursors
                    .iterators
                    .insert(id.to_owned(), self.iterator_at(id, None)?);
                cursors
                    .position
                    .shards
                    .insert(id.to_owned(), ShardPosition::AtTimestamp(start_ms));
            }
        }
        Ok(cursors)
    }

    /// Iterators where a restarted broker resumes: from the `saved` position, or (nothing
    /// saved) from when the delivery stream was created, `start_ms`, in every shard.
    pub fn resume(&self, saved: Option<&[u8]>, start_ms: i64) -> ApiResult<Cursors> {
        let position = match saved.map(serde_json::from_slice::<Position>) {
            Some(Ok(position)) => position,
            unreadable => {
                if let Some(Err(err)) = unreadable {
                    tracing::warn!(stream = %self.stream_name, %err, "unreadable saved source position; resuming from the delivery stream's creation");
                }
                let listed = self.call("ListShards", json!({"StreamName": self.stream_name}))?;
                let shards = listed["Shards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["ShardId"].as_str())
                    .map(|id| (id.to_owned(), ShardPosition::AtTimestamp(start_ms)))
                    .collect();
                Position {
                    shards,
                    ..Position::default()
                }
            }
        };
        let mut iterators = BTreeMap::new();
        for (shard, at) in &position.shards {
            iterators.insert(shard.clone(), self.iterator_at(shard, Some(at))?);
        }
        Ok(Cursors {
            iterators,
            position,
        })
    }

    /// Reads every shard once; returns the records read, oldest first per shard.
    fn poll(&self, cursors: &mut Cursors) -> Vec<Bytes> {
        let mut records = Vec::new();
        let shards: Vec<(String, String)> = cursors
            .iterators
            .iter()
            .map(|(s, i)| (s.clone(), i.clone()))
            .collect();
        for (shard, iterator) in shards {
            let answer = self.call(
                "GetRecords",
                json!({"ShardIterator": iterator, "Limit": GET_RECORDS_LIMIT}),
            );
            let answer = match answer {
                Ok(answer) => answer,
                Err(err) => {
                    tracing::warn!(stream = %self.stream_name, %shard, code = err.code, message = %err.message, "cannot read the source shard");
                    if err.code == "ExpiredIteratorException"
                        && let Some(at) = cursors.position.shards.get(&shard)
                        && let Ok(fresh) = self.iterator_at(&shard, Some(at))
                    {
                        // Resume after the last record read: nothing lost, nothing twice.
                        cursors.iterators.insert(shard, fresh);
                    }
                    continue;
                }
            };
            for record in answer["Records"].as_array().into_iter().flatten() {
                if let Some(data) = record["Data"].as_str().and_then(|d| BASE64.decode(d).ok()) {
                    records.push(Bytes::from(data));
                }
                if let Some(sequence) = record["SequenceNumber"].as_str() {
                    cursors
                        .position
                        .shards
                        .insert(shard.clone(), ShardPosition::After(sequence.to_owned()));
                }
            }
            match answer["NextShardIterator"].as_str() {
                Some(next) => {
                    cursors.iterators.insert(shard, next.to_owned());
                }
                None => {
                    cursors.iterators.remove(&shard);
                    cursors.position.shards.remove(&shard);
                    cursors.position.finished.insert(shard);
                    for child in answer["ChildShards"].as_array().into_iter().flatten() {
                        let Some(id) = child["ShardId"].as_str() else {
                            continue;
                        };
                        let parents = child["ParentShards"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p.as_str().map(str::to_owned))
                            .collect();
                        cursors
                            .position
                            .waiting
                            .entry(id.to_owned())
                            .or_insert(parents);
                    }
                }
            }
        }
        // Children start once every parent is read to its end.
        let position = &mut cursors.position;
        let ready: Vec<String> = position
            .waiting
            .iter()
            .filter(|(_, parents)| parents.iter().all(|p| position.finished.contains(p)))
            .map(|(child, _)| child.clone())
            .collect();
        for child in ready {
            if cursors.iterators.contains_key(&child) || position.finished.contains(&child) {
                position.waiting.remove(&child);
                continue;
            }
            match self.iterator_at(&child, Some(&ShardPosition::TrimHorizon)) {
                Ok(iterator) => {
                    position.waiting.remove(&child);
                    position
                        .shards
                        .insert(child.clone(), ShardPosition::TrimHorizon);
                    cursors.iterators.insert(child, iterator);
                }
                Err(err) => {
                    tracing::warn!(stream = %self.stream_name, %child, code = err.code, "cannot start reading a child shard")
                }
            }
        }
        records
    }
}

/// Reads the source into the delivery stream's buffer until the delivery stream stops.
pub async fn run(
    stream: Arc<DeliveryStream>,
    reader: KinesisReader,
    mut cursors: Cursors,
    clock: Arc<dyn Clock>,
    store: Store,
) {
    while !stream.stop.is_cancelled() {
        // A destination that does not keep up stops the reading; the records wait in Kinesis.
        let backlog = stream.state().buffered_bytes();
        // Where reading stood before this poll: kept when what it reads cannot be logged.
        let before = cursors.clone();
        let read = if backlog < MAX_BUFFERED_BYTES {
            reader.poll(&mut cursors)
        } else {
            Vec::new()
        };
        if !read.is_empty() {
            super::metrics::read_from_kinesis(&stream.name, &read);
            // Each user record of a KPL aggregate becomes one Firehose record.
            let records: Vec<Bytes> = read.into_iter().flat_map(kpl::deaggregate).collect();
            let batch = store.encode(&stream, &records);
            let now = clock.now_millis();
            let mut state = stream.state();
            // Checked under the lock the delivery task takes its last batch with: records are
            // either in that batch or never accepted, never left behind in the buffer.
            if stream.stop.is_cancelled() {
                return;
            }
            let marks = match store.append(now, &batch) {
                Ok(marks) => marks,
                Err(err) => {
                    // Not buffered, and read again by the next poll: an unlogged record would
                    // have no place in the log for the delivered mark to move past.
                    tracing::error!(stream = %stream.name, %err, "cannot log records read from the source; reading them again");
                    drop(state);
                    cursors = before;
                    sleep_or_stop(&stream).await;
                    continue;
                }
            };
            for (data, log) in records.into_iter().zip(marks) {
                state.buffer.push(BufferedRecord {
                    data,
                    arrival_ms: now,
                    log,
                });
            }
            drop(state);
            stream.wake.notify_one();
            if let Err(err) = store.persist_source(&stream.name, &cursors.saved()) {
                tracing::error!(stream = %stream.name, %err, "cannot save the source position; records may be delivered twice after a restart");
            }
        }
        sleep_or_stop(&stream).await;
    }
}

/// Waits for the next poll; returns early once the delivery stream stops.
async fn sleep_or_stop(stream: &DeliveryStream) {
    tokio::select! {
        _ = tokio::time::sleep(POLL_INTERVAL) => {}
        _ = stream.stop.cancelled() => {}
    }
}
