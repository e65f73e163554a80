//! Stream- and shard-level metrics, named as Kinesis names them in CloudWatch (`IncomingBytes`,
//! `GetRecords.IteratorAgeMilliseconds`, `WriteProvisionedThroughputExceeded`, ...), labelled
//! with `stream` and `shard`.
//!
//! They go to whichever `metrics` recorder is current: the front door installs its broker's own
//! recorder around every operation (see `crate::observe`), so brokers in one process never mix
//! their figures. Called with no recorder installed, they cost a label allocation and vanish.

use super::shard::Shard;
use super::stream::Stream;

fn labels(stream: &Stream, shard: &Shard) -> [(&'static str, String); 2] {
    [("stream", stream.name.clone()), ("shard", shard.id.clone())]
}

/// Records accepted by PutRecord(s) into one shard.
pub fn incoming(stream: &Stream, shard: &Shard, records: usize, bytes: usize) {
    let labels = labels(stream, shard);
    metrics::counter!("IncomingRecords", &labels).increment(records as u64);
    metrics::counter!("IncomingBytes", &labels).increment(bytes as u64);
}

/// Records returned from one shard by GetRecords, and how far behind the tip the reader is
/// (`GetRecords.IteratorAgeMilliseconds`: 0 when it has read everything).
pub fn get_records(stream: &Stream, shard: &Shard, records: usize, bytes: usize, age_ms: i64) {
    let labels = labels(stream, shard);
    metrics::counter!("OutgoingRecords", &labels).increment(records as u64);
    metrics::counter!("OutgoingBytes", &labels).increment(bytes as u64);
    metrics::counter!("GetRecords.Records", &labels).increment(records as u64);
    metrics::counter!("GetRecords.Bytes", &labels).increment(bytes as u64);
    metrics::gauge!("GetRecords.IteratorAgeMilliseconds", &labels).set(age_ms as f64);
}

/// Records pushed from one shard in a SubscribeToShard event.
pub fn subscribe_event(
    stream: &Stream,
    shard: &Shard,
    records: usize,
    bytes: usize,
    behind_ms: i64,
) {
    let labels = labels(stream, shard);
    metrics::counter!("OutgoingRecords", &labels).increment(records as u64);
    metrics::counter!("OutgoingBytes", &labels).increment(bytes as u64);
    metrics::counter!("SubscribeToShardEvent.Records", &labels).increment(records as u64);
    metrics::counter!("SubscribeToShardEvent.Bytes", &labels).increment(bytes as u64);
    metrics::gauge!("SubscribeToShardEvent.MillisBehindLatest", &labels).set(behind_ms as f64);
}

/// Which allowance of a shard ran out.
#[derive(Debug, Clone, Copy)]
pub enum Throttle {
    Read,
    Write,
}

/// A call (reads) or records (writes) refused with ProvisionedThroughputExceededException.
pub fn throttled(stream: &Stream, shard: &Shard, kind: Throttle, count: usize) {
    let labels = labels(stream, shard);
    let counter = match kind {
        Throttle::Read => metrics::counter!("ReadProvisionedThroughputExceeded", &labels),
        Throttle::Write => metrics::counter!("WriteProvisionedThroughputExceeded", &labels),
    };
    counter.increment(count as u64);
}
