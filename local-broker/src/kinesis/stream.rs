//! A stream: its settings, its shards, routing of records to shards, and resharding.
//!
//! The stream's metadata lock is the routing lock: writers hold it shared while they append, and
//! resharding holds it exclusively while it closes parents and opens children, so no record can
//! land in a shard after it was closed.

use super::consumer::Consumer;
use super::hash::HashRange;
use super::shard::Shard;
use crate::http::error::{ApiError, ApiResult};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Lifecycle status of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }

    /// Whether producers and consumers may use the stream.
    pub fn is_readable(self) -> bool {
        matches!(self, StreamStatus::Active | StreamStatus::Updating)
    }
}

/// Capacity mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

impl StreamMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PROVISIONED" => Some(StreamMode::Provisioned),
            "ON_DEMAND" => Some(StreamMode::OnDemand),
            _ => None,
        }
    }
}

/// Everything about a stream that changes, guarded by one lock.
#[derive(Debug)]
pub struct StreamMeta {
    pub status: StreamStatus,
    /// Every shard ever created and not yet expired, by index.
    pub shards: Vec<Arc<Shard>>,
    /// Open shards ordered by starting hash key; they tile the key space.
    pub open: Vec<Arc<Shard>>,
    pub retention_hours: u32,
    pub tags: BTreeMap<String, String>,
    /// KMS key id while server-side encryption is on.
    pub encryption_key: Option<String>,
    pub shard_level_metrics: BTreeSet<String>,
    pub mode: StreamMode,
    pub max_record_size_kib: u32,
    pub warm_throughput_mibps: Option<u32>,
    pub record_distribution_strategy: Option<String>,
    pub policy: Option<String>,
    /// Registered enhanced fan-out consumers, by name.
    pub consumers: BTreeMap<String, Consumer>,
    /// Index the next new shard gets.
    pub(crate) next_shard_index: u32,
}

/// A stream.
#[derive(Debug)]
pub struct Stream {
    pub name: String,
    pub arn: String,
    /// The 2026 API's `StreamId`.
    pub id: String,
    pub created_ms: i64,
    meta: RwLock<StreamMeta>,
}

/// Settings chosen at creation.
pub struct NewStream {
    pub name: String,
    pub arn: String,
    pub id: String,
    pub shard_count: u32,
    pub mode: StreamMode,
    pub tags: BTreeMap<String, String>,
    pub max_record_size_kib: u32,
    pub warm_throughput_mibps: Option<u32>,
    pub record_distribution_strategy: Option<String>,
    pub status: StreamStatus,
}

/// Default retention (hours).
pub const DEFAULT_RETENTION_HOURS: u32 = 24;

impl Stream {
    /// A stream with `shard_count` shards that split the key space evenly.
    pub fn new(spec: NewStream, now_ms: i64) -> Self {
        let shards: Vec<Arc<Shard>> = HashRange::even(spec.shard_count)
            .into_iter()
            .enumerate()
            .map(|(i, range)| Arc::new(Shard::new(i as u32, range, (None, None), now_ms, now_ms)))
            .collect();
        Self {
            name: spec.name,
            arn: spec.arn,
            id: spec.id,
            created_ms: now_ms,
            meta: RwLock::new(StreamMeta {
                status: spec.status,
                open: shards.clone(),
                next_shard_index: spec.shard_count,
                shards,
                retention_hours: DEFAULT_RETENTION_HOURS,
                tags: spec.tags,
                encryption_key: None,
                shard_level_metrics: BTreeSet::new(),
                mode: spec.mode,
                max_record_size_kib: spec.max_record_size_kib,
                warm_throughput_mibps: spec.warm_throughput_mibps,
                record_distribution_strategy: spec.record_distribution_strategy,
                policy: None,
                consumers: BTreeMap::new(),
            }),
        }
    }

    /// A stream as it was persisted.
    pub fn restore(
        name: String,
        arn: String,
        id: String,
        created_ms: i64,
        meta: StreamMeta,
    ) -> Self {
        Self {
            name,
            arn,
            id,
            created_ms,
            meta: RwLock::new(meta),
        }
    }

    /// Shared access (routing, reads, describes). Every mutation leaves the metadata consistent,
    /// so a poisoned lock is still safe to use.
    pub fn meta(&self) -> RwLockReadGuard<'_, StreamMeta> {
        self.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclusive access (settings, resharding).
    pub fn meta_mut(&self) -> RwLockWriteGuard<'_, StreamMeta> {
        self.meta.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl StreamMeta {
    /// The open shard that owns `hash_key`.
    pub fn route(&self, hash_key: u128) -> Option<&Arc<Shard>> {
        let idx = self.open.partition_point(|s| s.range.end < hash_key);
        self.open.get(idx).filter(|s| s.range.contains(hash_key))
    }

    /// Retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        i64::from(self.retention_hours) * 3_600_000
    }

    /// The shard with this id, if it exists and has not expired.
    pub fn shard(&self, id: &str) -> Option<&Arc<Shard>> {
        let index = super::shard::shard_index(id)?;
        self.shards.iter().find(|s| s.index == index)
    }

    /// Forgets closed shards whose whole lifetime lies before the trim horizon.
    pub fn drop_expired_shards(&mut self, horizon_ms: i64) {
        self.shards
            .retain(|s| s.closed().is_none_or(|c| c.at_ms >= horizon_ms));
    }

    fn open_shard(&self, id: &str) -> ApiResult<Arc<Shard>> {
        let shard = self
            .shard(id)
            .ok_or_else(|| ApiError::not_found(format!("Could not find shard {id}.")))?;
        if shard.closed().is_some() {
            return Err(ApiError::invalid_argument(format!(
                "Shard {id} is not open; it has already been split or merged."
            )));
        }
        Ok(Arc::clone(shard))
    }

    fn new_shard(
        &mut self,
        range: HashRange,
        parents: (Option<String>, Option<String>),
        now_ms: i64,
        stream_epoch: i64,
    ) -> Arc<Shard> {
        let shard = Arc::new(Shard::new(
            self.next_shard_index,
            range,
            parents,
            now_ms,
            stream_epoch,
        ));
        self.next_shard_index += 1;
        self.shards.push(Arc::clone(&shard));
        shard
    }

    fn replace_open(&mut self, closed: &[&Arc<Shard>], opened: &[Arc<Shard>]) {
        self.open
            .retain(|s| !closed.iter().any(|c| Arc::ptr_eq(s, c)));
        self.open.extend(opened.iter().cloned());
        self.open.sort_by_key(|s| s.range.start);
    }

    /// Splits an open shard at `new_start`: the parent closes, two children take its range.
    pub fn split(
        &mut self,
        shard_id: &str,
        new_start: u128,
        now_ms: i64,
        stream_epoch: i64,
    ) -> ApiResult<()> {
        let parent = self.open_shard(shard_id)?;
        if new_start <= parent.range.start || new_start > parent.range.end {
            return Err(ApiError::invalid_argument(format!(
                "NewStartingHashKey {new_start} used in SplitShard() on shard {shard_id} is not both greater than the shard's StartingHashKey {} and not greater than its EndingHashKey {}.",
                parent.range.start, parent.range.end
            )));
        }
        let parents = (Some(parent.id.clone()), None);
        let left = self.new_shard(
            HashRange {
                start: parent.range.start,
                end: new_start - 1,
            },
            parents.clone(),
            now_ms,
            stream_epoch,
        );
        let right = self.new_shard(
            HashRange {
                start: new_start,
                end: parent.range.end,
            },
            parents,
            now_ms,
            stream_epoch,
        );
        parent.close(now_ms, vec![left.id.clone(), right.id.clone()]);
        self.replace_open(&[&parent], &[left, right]);
        Ok(())
    }

    /// Merges two open, adjacent shards into one child.
    pub fn merge(
        &mut self,
        shard_id: &str,
        adjacent_id: &str,
        now_ms: i64,
        stream_epoch: i64,
    ) -> ApiResult<()> {
        let a = self.open_shard(shard_id)?;
        let b = self.open_shard(adjacent_id)?;
        let adjacent = a.range.end.checked_add(1) == Some(b.range.start)
            || b.range.end.checked_add(1) == Some(a.range.start);
        if !adjacent {
            return Err(ApiError::invalid_argument(format!(
                "Shards {shard_id} and {adjacent_id} are not adjacent; only shards with adjacent hash key ranges can be merged."
            )));
        }
        let child = self.new_shard(
            HashRange {
                start: a.range.start.min(b.range.start),
                end: a.range.end.max(b.range.end),
            },
            (Some(a.id.clone()), Some(b.id.clone())),
            now_ms,
            stream_epoch,
        );
        a.close(now_ms, vec![child.id.clone()]);
        b.close(now_ms, vec![child.id.clone()]);
        self.replace_open(&[&a, &b], &[child]);
        Ok(())
    }

    /// Reaches `target` evenly sized open shards through splits and merges, as UNIFORM_SCALING
    /// does: first split every open shard at each target boundary inside it, then merge the
    /// pieces that fall in one target range. Intermediate shards close empty.
    pub fn scale_uniformly(
        &mut self,
        target: u32,
        now_ms: i64,
        stream_epoch: i64,
    ) -> ApiResult<()> {
        let targets = HashRange::even(target);
        let boundaries: Vec<u128> = targets.iter().skip(1).map(|r| r.start).collect();
        for boundary in &boundaries {
            let shard = self
                .route(*boundary)
                .filter(|s| s.range.start != *boundary)
                .map(|s| s.id.clone());
            if let Some(id) = shard {
                self.split(&id, *boundary, now_ms, stream_epoch)?;
            }
        }
        for range in &targets {
            loop {
                let pieces: Vec<String> = self
                    .open
                    .iter()
                    .filter(|s| s.range.start >= range.start && s.range.end <= range.end)
                    .map(|s| s.id.clone())
                    .collect();
                if pieces.len() < 2 {
                    break;
                }
                self.merge(&pieces[0], &pieces[1], now_ms, stream_epoch)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(shards: u32) -> Stream {
        Stream::new(
            NewStream {
                name: "s".into(),
                arn: "arn".into(),
                id: "id".into(),
                shard_count: shards,
                mode: StreamMode::Provisioned,
                tags: BTreeMap::new(),
                max_record_size_kib: 1024,
                warm_throughput_mibps: None,
                record_distribution_strategy: None,
                status: StreamStatus::Active,
            },
            1,
        )
    }

    fn assert_tiles(meta: &StreamMeta) {
        assert_eq!(meta.open[0].range.start, 0);
        assert_eq!(meta.open.last().unwrap().range.end, u128::MAX);
        for pair in meta.open.windows(2) {
            assert_eq!(pair[0].range.end + 1, pair[1].range.start);
        }
    }

    #[test]
    fn split_then_merge_keeps_lineage() {
        let s = stream(1);
        let mut meta = s.meta_mut();
        meta.split("shardId-000000000000", 1u128 << 127, 2, 1)
            .unwrap();
        assert_eq!(meta.open.len(), 2);
        assert!(
            meta.open
                .iter()
                .all(|c| c.parent.as_deref() == Some("shardId-000000000000"))
        );
        meta.merge("shardId-000000000001", "shardId-000000000002", 3, 1)
            .unwrap();
        let child = &meta.open[0];
        assert_eq!(child.parent.as_deref(), Some("shardId-000000000001"));
        assert_eq!(
            child.adjacent_parent.as_deref(),
            Some("shardId-000000000002")
        );
        assert_eq!(child.range, HashRange::ALL);
    }

    #[test]
    fn uniform_scaling_reaches_even_ranges() {
        for (from, to) in [(4u32, 8u32), (4, 2), (4, 3), (3, 5), (5, 3), (1, 2), (7, 4)] {
            let s = stream(from);
            let mut meta = s.meta_mut();
            meta.scale_uniformly(to, 2, 1).unwrap();
            assert_eq!(meta.open.len(), to as usize, "{from} -> {to}");
            assert_tiles(&meta);
            let ranges: Vec<HashRange> = meta.open.iter().map(|s| s.range).collect();
            assert_eq!(ranges, HashRange::even(to), "{from} -> {to}");
        }
    }

    #[test]
    fn merging_non_adjacent_shards_is_rejected() {
        let s = stream(3);
        let mut meta = s.meta_mut();
        let err = meta
            .merge("shardId-000000000000", "shardId-000000000002", 2, 1)
            .unwrap_err();
        assert_eq!(err.code, "InvalidArgumentException");
    }

    #[test]
    fn routing_finds_the_owning_shard() {
        let s = stream(4);
        let meta = s.meta();
        for shard in &meta.open {
            assert_eq!(meta.route(shard.range.start).unwrap().id, shard.id);
            assert_eq!(meta.route(shard.range.end).unwrap().id, shard.id);
        }
    }
}
