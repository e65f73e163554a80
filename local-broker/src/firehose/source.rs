//! `KinesisStreamAsSource`: a delivery stream that reads a broker Kinesis stream from LATEST.
//!
//! The reader calls the broker's own Kinesis API in-process (GetShardIterator, GetRecords), the
//! same operations a remote consumer uses, so it sees exactly what clients see — iterator
//! semantics, resharding (child shards start at TRIM_HORIZON once their parents are read to the
//! end) and, with `--enforce-limits`, the shards' read limits, which Firehose shares with other
//! consumers. It does not go through the `kcl` crate: that would put an SDK client, a lease
//! table and an HTTP round trip inside the server for a single reader that owns every shard.

use super::buffering::BufferedRecord;
use super::model::DeliveryStream;
use super::records::MAX_BUFFERED_BYTES;
use crate::clock::Clock;
use crate::http::Reply;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::{Protocol, Wire};
use crate::kinesis::Kinesis;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
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
#[derive(Debug, Default)]
pub struct Cursors {
    iterators: BTreeMap<String, String>,
    finished: BTreeSet<String>,
    /// Child shards waiting for their parents: shard → parents.
    waiting: BTreeMap<String, Vec<String>>,
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

    fn iterator(&self, shard_id: &str, kind: &str) -> ApiResult<String> {
        let answer = self.call(
            "GetShardIterator",
            json!({"StreamName": self.stream_name, "ShardId": shard_id, "ShardIteratorType": kind}),
        )?;
        answer["ShardIterator"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::internal("GetShardIterator answered without an iterator"))
    }

    /// LATEST iterators for every open shard: taken when the delivery stream is created, so
    /// every record put after CreateDeliveryStream returns is delivered.
    pub fn start_at_latest(&self) -> ApiResult<Cursors> {
        let listed = self.call(
            "ListShards",
            json!({"StreamName": self.stream_name, "ShardFilter": {"Type": "AT_LATEST"}}),
        )?;
        let mut cursors = Cursors::default();
        for shard in listed["Shards"].as_array().into_iter().flatten() {
            if let Some(id) = shard["ShardId"].as_str() {
                cursors
                    .iterators
                    .insert(id.to_owned(), self.iterator(id, "LATEST")?);
            }
        }
        Ok(cursors)
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
                    if err.code == "ExpiredIteratorException" {
                        // Start over from the oldest record kept; duplicates beat loss.
                        if let Ok(fresh) = self.iterator(&shard, "TRIM_HORIZON") {
                            cursors.iterators.insert(shard, fresh);
                        }
                    }
                    continue;
                }
            };
            for record in answer["Records"].as_array().into_iter().flatten() {
                if let Some(data) = record["Data"].as_str().and_then(|d| BASE64.decode(d).ok()) {
                    records.push(Bytes::from(data));
                }
            }
            match answer["NextShardIterator"].as_str() {
                Some(next) => {
                    cursors.iterators.insert(shard, next.to_owned());
                }
                None => {
                    cursors.iterators.remove(&shard);
                    cursors.finished.insert(shard);
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
                        cursors.waiting.entry(id.to_owned()).or_insert(parents);
                    }
                }
            }
        }
        // Children start once every parent is read to its end.
        let ready: Vec<String> = cursors
            .waiting
            .iter()
            .filter(|(_, parents)| parents.iter().all(|p| cursors.finished.contains(p)))
            .map(|(child, _)| child.clone())
            .collect();
        for child in ready {
            if cursors.iterators.contains_key(&child) || cursors.finished.contains(&child) {
                cursors.waiting.remove(&child);
                continue;
            }
            match self.iterator(&child, "TRIM_HORIZON") {
                Ok(iterator) => {
                    cursors.waiting.remove(&child);
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
) {
    loop {
        // A destination that does not keep up stops the reading; the records wait in Kinesis.
        let backlog = stream.state().buffer.bytes();
        let records = if backlog < MAX_BUFFERED_BYTES {
            reader.poll(&mut cursors)
        } else {
            Vec::new()
        };
        if !records.is_empty() {
            let now = clock.now_millis();
            let mut state = stream.state();
            // Checked under the lock the delivery task takes its last batch with: records are
            // either in that batch or never accepted, never left behind in the buffer.
            if stream.stop.is_cancelled() {
                return;
            }
            for (i, data) in records.into_iter().enumerate() {
                state.buffer.push(BufferedRecord {
                    data,
                    arrival_ms: now,
                    record_id: format!("{now}-{i}"),
                });
            }
            drop(state);
            stream.wake.notify_one();
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stream.stop.cancelled() => return,
        }
    }
}
