//! A consistent-enough snapshot of what the broker holds, for the status page and the gauges of
//! `/metrics`: streams and their shard lineage, consumers and live subscriptions, tables, the
//! KCL lease tables among them with each lease's owner, checkpoint and lag, and Firehose buffers.
//!
//! Each stream and table is read under its own lock, one after the other; the snapshot is never
//! used to decide anything, only to show it.

use crate::dynamodb::value::AttributeValue;
use crate::http::Services;
use crate::kinesis::sequence::SequenceNumber;
use crate::kinesis::shard::{Shard, ShardStats};
use crate::kinesis::stream::Stream;
use std::sync::Arc;

/// The hash key attribute that marks a table as a KCL lease table (Java KCL schema).
pub const LEASE_KEY: &str = "leaseKey";

/// Everything the status page shows.
#[derive(Debug)]
pub struct Overview {
    pub now_ms: i64,
    pub streams: Vec<StreamView>,
    pub tables: Vec<TableView>,
    /// The KCL lease tables among `tables`.
    pub lease_tables: Vec<LeaseTable>,
    /// Firehose delivery streams' buffers.
    pub delivery_streams: Vec<crate::firehose::BufferView>,
}

#[derive(Debug)]
pub struct StreamView {
    pub name: String,
    pub status: &'static str,
    pub mode: &'static str,
    pub retention_hours: u32,
    pub shards: Vec<ShardView>,
    pub consumers: Vec<ConsumerView>,
}

#[derive(Debug)]
pub struct ShardView {
    pub id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    pub children: Vec<String>,
    pub open: bool,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
    pub stats: ShardStats,
}

#[derive(Debug)]
pub struct ConsumerView {
    pub name: String,
    pub status: &'static str,
    /// Shards with a SubscribeToShard stream being served to this consumer now.
    pub subscribed_shards: Vec<String>,
}

#[derive(Debug)]
pub struct TableView {
    pub name: String,
    pub status: &'static str,
    pub hash_key: String,
    pub items: usize,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct LeaseTable {
    pub name: String,
    pub leases: Vec<LeaseView>,
}

#[derive(Debug)]
pub struct LeaseView {
    pub lease_key: String,
    pub owner: Option<String>,
    pub counter: Option<String>,
    pub checkpoint: Option<String>,
    pub parents: Vec<String>,
    /// How far the checkpoint is behind its shard's newest record, when the shard is found.
    pub lag: Option<Lag>,
}

/// How far a lease's checkpoint is behind the tip of its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub stream: String,
    pub shard: String,
    pub records: u64,
    /// Now minus the arrival of the first record after the checkpoint (0 at the tip), as
    /// `MillisBehindLatest` would say.
    pub millis: i64,
}

impl Overview {
    /// Reads the broker's state now.
    pub fn take(services: &Services) -> Self {
        let now_ms = services.clock.now_millis();
        let live = services.kinesis.live_subscriptions();
        let streams: Vec<Arc<Stream>> = services.kinesis.streams();
        let stream_views = streams
            .iter()
            .map(|stream| stream_view(stream, &live))
            .collect();
        let mut tables = Vec::new();
        let mut lease_tables = Vec::new();
        for table in services.dynamodb.tables() {
            let table = table.read().unwrap_or_else(|p| p.into_inner());
            let hash_key = table.key_schema.hash.name.clone();
            if hash_key == LEASE_KEY {
                lease_tables.push(LeaseTable {
                    name: table.name.clone(),
                    leases: table
                        .items
                        .values()
                        .map(|item| lease_view(item, &streams, now_ms))
                        .collect(),
                });
            }
            tables.push(TableView {
                name: table.name.clone(),
                status: table.status(now_ms),
                hash_key,
                items: table.items.len(),
                bytes: table.size_bytes(),
            });
        }
        Self {
            now_ms,
            streams: stream_views,
            tables,
            lease_tables,
            delivery_streams: services.firehose.buffers(),
        }
    }
}

fn stream_view(stream: &Stream, live: &[(String, String)]) -> StreamView {
    let meta = stream.meta();
    StreamView {
        name: stream.name.clone(),
        status: meta.status.as_str(),
        mode: meta.mode.as_str(),
        retention_hours: meta.retention_hours,
        shards: meta
            .shards
            .iter()
            .map(|shard| ShardView {
                id: shard.id.clone(),
                parent: shard.parent.clone(),
                adjacent_parent: shard.adjacent_parent.clone(),
                children: shard.children(),
                open: shard.closed().is_none(),
                starting_hash_key: shard.range.start,
                ending_hash_key: shard.range.end,
                stats: shard.stats(),
            })
            .collect(),
        consumers: meta
            .consumers
            .values()
            .map(|c| ConsumerView {
                name: c.name.clone(),
                status: c.status.as_str(),
                subscribed_shards: live
                    .iter()
                    .filter(|(arn, _)| *arn == c.arn)
                    .map(|(_, shard)| shard.clone())
                    .collect(),
            })
            .collect(),
    }
}

fn text(item: &crate::dynamodb::value::Item, name: &str) -> Option<String> {
    match item.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.to_string()),
        _ => None,
    }
}

fn lease_view(
    item: &crate::dynamodb::value::Item,
    streams: &[Arc<Stream>],
    now_ms: i64,
) -> LeaseView {
    let lease_key = text(item, LEASE_KEY).unwrap_or_default();
    let checkpoint = text(item, "checkpoint");
    let parents = match item.get("parentShardId") {
        Some(AttributeValue::Ss(ids)) => ids.clone(),
        Some(AttributeValue::S(id)) => vec![id.clone()],
        _ => Vec::new(),
    };
    let lag = checkpoint
        .as_deref()
        .and_then(|checkpoint| lag(&lease_key, checkpoint, streams, now_ms));
    LeaseView {
        owner: text(item, "leaseOwner"),
        counter: text(item, "leaseCounter"),
        lease_key,
        checkpoint,
        parents,
        lag,
    }
}

/// The lag of a lease: its shard is found by the stream epoch in a sequence-number checkpoint,
/// by the stream named in a multi-stream lease key (`account:stream:epoch:shardId`), or as the
/// only stream with a shard of that id.
fn lag(lease_key: &str, checkpoint: &str, streams: &[Arc<Stream>], now_ms: i64) -> Option<Lag> {
    let (prefix, shard_id) = match lease_key.rsplit_once(':') {
        Some((prefix, shard_id)) => (Some(prefix), shard_id),
        None => (None, lease_key),
    };
    let sequence = SequenceNumber::parse(checkpoint);
    let candidates: Vec<&Arc<Stream>> = streams
        .iter()
        .filter(|s| match (&sequence, prefix) {
            (Some(seq), _) => s.created_ms == seq.stream_epoch,
            (None, Some(prefix)) => prefix.split(':').nth(1) == Some(s.name.as_str()),
            (None, None) => true,
        })
        .filter(|s| s.meta().shard(shard_id).is_some())
        .collect();
    let [stream] = candidates.as_slice() else {
        return None;
    };
    let shard: Arc<Shard> = Arc::clone(stream.meta().shard(shard_id)?);
    let last = shard.next_counter().saturating_sub(1);
    // The counter of the last record the reader has processed.
    let read_up_to = match (checkpoint, &sequence) {
        (_, Some(seq)) => seq.counter,
        ("TRIM_HORIZON", None) | ("AT_TIMESTAMP", None) => 0,
        _ => last, // LATEST, SHARD_END: nothing is owed
    };
    let held = shard.stats().records;
    Some(Lag {
        stream: stream.name.clone(),
        shard: shard.id.clone(),
        records: last.saturating_sub(read_up_to).min(held),
        millis: shard
            .arrival_after(read_up_to)
            .map_or(0, |arrival| (now_ms - arrival).max(0)),
    })
}
