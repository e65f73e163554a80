//! The control plane: stream lifecycle, resharding, retention, tags, encryption, monitoring,
//! modes and limits, resource policies and account settings.

use super::api::*;
use super::consumer::parse_consumer_arn;
use super::hash::parse_hash_key;
use super::limits::ON_DEMAND_SCALE_AFTER_MS;
use super::stream::{NewStream, Stream, StreamMeta, StreamMode, StreamStatus};
use super::{
    Kinesis, ON_DEMAND_STREAM_LIMIT, SHARD_LIMIT, validate_shard_id, validate_stream_name,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Timestamp;
use crate::http::validation::Validator;
use std::collections::BTreeMap;
use std::sync::Arc;

const MIN_RETENTION_HOURS: i64 = 24;
const MAX_RETENTION_HOURS: i64 = 8760;
/// Shards of a new on-demand stream, as on AWS.
const ON_DEMAND_INITIAL_SHARDS: u32 = 4;
const DEFAULT_MAX_RECORD_SIZE_KIB: u32 = 1024;
const METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];
/// The minimum throughput billing commitment lasts at least a day once enabled.
const COMMITMENT_MIN_MS: i64 = 24 * 3_600_000;

/// Account-wide settings (DescribeAccountSettings / UpdateAccountSettings); persisted with a
/// data directory.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AccountSettings {
    commitment_started_ms: Option<i64>,
    commitment_ended_ms: Option<i64>,
}

pub(super) fn validate_tags(tags: &BTreeMap<String, String>, member: &str, v: &mut Validator) {
    v.count(tags.len(), member, 1, 200);
    for (key, value) in tags {
        v.length(key, &format!("{member}.key"), 1, 128);
        v.length(value, &format!("{member}.value"), 0, 256);
    }
}

fn validate_tag_keys(keys: &[String], member: &str, v: &mut Validator) {
    v.count(keys.len(), member, 1, 50);
    for key in keys {
        v.length(key, &format!("{member}.member"), 1, 128);
    }
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// Mutations that need the stream to be settled fail while it is changing.
fn require_active(stream: &Stream, meta: &StreamMeta) -> ApiResult<()> {
    if meta.status != StreamStatus::Active {
        return Err(ApiError::in_use(format!(
            "Stream {} is not ACTIVE; it is {}. Wait until it is ACTIVE.",
            stream.name,
            meta.status.as_str()
        )));
    }
    Ok(())
}

impl Kinesis {
    fn open_shard_count(&self) -> usize {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| s.meta().open.len())
            .sum()
    }

    fn ensure_shard_capacity(&self, extra: usize) -> ApiResult<()> {
        let open = self.open_shard_count();
        if open + extra > SHARD_LIMIT as usize {
            return Err(ApiError::limit_exceeded(format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {SHARD_LIMIT}. Number of additional shards that would have resulted from this request: {extra}.",
                self.config.account_id, self.config.region
            )));
        }
        Ok(())
    }

    pub(super) fn create_stream(&self, input: CreateStreamInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(name) = v.required(&input.stream_name, "streamName") {
            validate_stream_name(name, "streamName", &mut v);
        }
        if let Some(count) = input.shard_count {
            v.range(count, "shardCount", 1, i64::from(i32::MAX));
        }
        let mode = match input
            .stream_mode_details
            .as_ref()
            .map(|d| v.required(&d.stream_mode, "streamModeDetails.streamMode"))
        {
            Some(Some(text)) => {
                v.one_of(
                    text,
                    "streamModeDetails.streamMode",
                    &["PROVISIONED", "ON_DEMAND"],
                );
                StreamMode::parse(text)
            }
            Some(None) => None,
            // Without a mode, a shard count means provisioned; neither means on-demand.
            None if input.shard_count.is_some() => Some(StreamMode::Provisioned),
            None => Some(StreamMode::OnDemand),
        };
        if let Some(tags) = &input.tags {
            validate_tags(tags, "tags", &mut v);
        }
        if let Some(size) = input.max_record_size_in_ki_b {
            v.range(size, "maxRecordSizeInKiB", 1024, 10240);
        }
        if let Some(warm) = input.warm_throughput_mi_bps {
            v.range(warm, "warmThroughputMiBps", 0, i64::from(i32::MAX));
        }
        if let Some(strategy) = &input.record_distribution_strategy {
            v.one_of(
                strategy,
                "recordDistributionStrategy",
                &["AUTO", "USER_PARTITION_KEY"],
            );
        }
        v.finish()?;
        let name = input.stream_name.unwrap_or_default();
        let mode = mode.unwrap_or(StreamMode::Provisioned);
        let shard_count = match (mode, input.shard_count) {
            (_, Some(n)) => n as u32,
            (StreamMode::OnDemand, None) => ON_DEMAND_INITIAL_SHARDS,
            (StreamMode::Provisioned, None) => {
                return Err(ApiError::invalid_argument(
                    "ShardCount is required for a PROVISIONED stream.",
                ));
            }
        };
        self.ensure_shard_capacity(shard_count as usize)?;
        if mode == StreamMode::OnDemand {
            let on_demand = self
                .streams
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|s| s.meta().mode == StreamMode::OnDemand)
                .count();
            if on_demand >= ON_DEMAND_STREAM_LIMIT as usize {
                return Err(ApiError::limit_exceeded(format!(
                    "This account already has {on_demand} on-demand streams; the limit is {ON_DEMAND_STREAM_LIMIT}."
                )));
            }
        }
        let settled = self.config.state_transition_delay.is_zero();
        let stream = {
            let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
            if streams.contains_key(&name) {
                return Err(ApiError::in_use(format!(
                    "Stream {name} under account {} already exists.",
                    self.config.account_id
                )));
            }
            let stream = Arc::new(Stream::new(
                NewStream {
                    arn: self.stream_arn(&name),
                    id: stream_id(),
                    name: name.clone(),
                    shard_count,
                    mode,
                    tags: input.tags.unwrap_or_default(),
                    max_record_size_kib: input
                        .max_record_size_in_ki_b
                        .map_or(DEFAULT_MAX_RECORD_SIZE_KIB, |k| k as u32),
                    warm_throughput_mibps: input.warm_throughput_mi_bps.map(|w| w as u32),
                    record_distribution_strategy: input.record_distribution_strategy,
                    status: if settled {
                        StreamStatus::Active
                    } else {
                        StreamStatus::Creating
                    },
                },
                self.now(),
            ));
            streams.insert(name, Arc::clone(&stream));
            stream
        };
        if !settled {
            self.settle(&stream, StreamStatus::Active);
        }
        Ok(Empty {})
    }

    pub(super) fn delete_stream(&self, input: DeleteStreamInput) -> ApiResult<Empty> {
        let stream = self.resolve(&input, Validator::new())?;
        let consumers: Vec<String> = stream
            .meta()
            .consumers
            .values()
            .map(|c| c.arn.clone())
            .collect();
        if !consumers.is_empty() && input.enforce_consumer_deletion != Some(true) {
            return Err(ApiError::in_use(format!(
                "Stream {} has {} registered consumers; deregister them or pass EnforceConsumerDeletion.",
                stream.name,
                consumers.len()
            )));
        }
        stream.meta_mut().consumers.clear();
        for arn in &consumers {
            self.end_subscriptions_of(arn);
        }
        let delay = self.config.state_transition_delay;
        if delay.is_zero() {
            self.remove_stream(&stream);
            return Ok(Empty {});
        }
        stream.meta_mut().status = StreamStatus::Deleting;
        let streams_removal = Arc::clone(&stream);
        // The removal re-checks identity, so a stream re-created meanwhile is never removed.
        let registry = self.registry_handle();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    registry.remove(&streams_removal);
                });
            }
            Err(_) => self.remove_stream(&stream),
        }
        Ok(Empty {})
    }

    fn remove_stream(&self, stream: &Arc<Stream>) {
        self.registry_handle().remove(stream);
    }

    fn registry_handle(&self) -> Registry {
        Registry {
            streams: Arc::clone(&self.streams),
        }
    }

    pub(super) fn split_shard(&self, input: SplitShardInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(id) = v.required(&input.shard_to_split, "shardToSplit") {
            validate_shard_id(id, "shardToSplit", &mut v);
        }
        if let Some(key) = v.required(&input.new_starting_hash_key, "newStartingHashKey") {
            v.chars(key, "newStartingHashKey", "0|([1-9]\\d{0,38})", |c| {
                c.is_ascii_digit()
            });
        }
        let stream = self.resolve(&input, v)?;
        let key_text = input.new_starting_hash_key.unwrap_or_default();
        let new_start = parse_hash_key(&key_text).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "NewStartingHashKey {key_text} is not a hash key in [0, 2^128-1]."
            ))
        })?;
        self.ensure_shard_capacity(1)?;
        {
            let mut meta = stream.meta_mut();
            require_active(&stream, &meta)?;
            meta.split(
                input.shard_to_split.as_deref().unwrap_or_default(),
                new_start,
                self.now(),
                stream.created_ms,
            )?;
            self.after_reshard(&stream, &mut meta);
        }
        Ok(Empty {})
    }

    pub(super) fn merge_shards(&self, input: MergeShardsInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(id) = v.required(&input.shard_to_merge, "shardToMerge") {
            validate_shard_id(id, "shardToMerge", &mut v);
        }
        if let Some(id) = v.required(&input.adjacent_shard_to_merge, "adjacentShardToMerge") {
            validate_shard_id(id, "adjacentShardToMerge", &mut v);
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        meta.merge(
            input.shard_to_merge.as_deref().unwrap_or_default(),
            input.adjacent_shard_to_merge.as_deref().unwrap_or_default(),
            self.now(),
            stream.created_ms,
        )?;
        self.after_reshard(&stream, &mut meta);
        Ok(Empty {})
    }

    pub(super) fn update_shard_count(
        &self,
        input: UpdateShardCountInput,
    ) -> ApiResult<UpdateShardCountOutput> {
        let mut v = Validator::new();
        if let Some(target) = v.required(&input.target_shard_count, "targetShardCount") {
            v.range(*target, "targetShardCount", 1, i64::from(i32::MAX));
        }
        if let Some(kind) = v.required(&input.scaling_type, "scalingType") {
            v.one_of(kind, "scalingType", &["UNIFORM_SCALING"]);
        }
        let stream = self.resolve(&input, v)?;
        let target = input.target_shard_count.unwrap_or(1) as u32;
        let current = stream.meta().open.len();
        if stream.meta().mode == StreamMode::OnDemand {
            return Err(ApiError::validation(
                "UpdateShardCount is not supported for streams in ON_DEMAND mode.",
            ));
        }
        if target as usize > current * 2 || (target as usize) * 2 < current {
            return Err(ApiError::limit_exceeded(format!(
                "UpdateShardCount cannot scale from {current} to {target} shards: a single update may at most double or halve the open shard count."
            )));
        }
        self.ensure_shard_capacity((target as usize).saturating_sub(current))?;
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        meta.scale_uniformly(target, self.now(), stream.created_ms)?;
        self.after_reshard(&stream, &mut meta);
        Ok(UpdateShardCountOutput {
            stream_name: stream.name.clone(),
            current_shard_count: current,
            target_shard_count: target,
            stream_arn: stream.arn.clone(),
        })
    }

    /// Adds capacity to an ON_DEMAND stream (with limits enforced) where writes need it: each
    /// open shard whose writes have been refused for [`ON_DEMAND_SCALE_AFTER_MS`] is split in
    /// the middle of its hash range, a real split with lineage, like SplitShard. Called after a
    /// put that had writes refused.
    pub(super) fn scale_on_demand(&self, stream: &Arc<Stream>) {
        let now = self.now();
        let hot = |meta: &StreamMeta| -> Vec<String> {
            if meta.mode != StreamMode::OnDemand || meta.status != StreamStatus::Active {
                return Vec::new();
            }
            meta.open
                .iter()
                .filter(|s| s.range.end > s.range.start)
                .filter(|s| {
                    s.limits()
                        .under_sustained_write_pressure(now, ON_DEMAND_SCALE_AFTER_MS)
                })
                .map(|s| s.id.clone())
                .collect()
        };
        if hot(&stream.meta()).is_empty() {
            return;
        }
        // Counted before taking the stream's write lock: counting reads every stream.
        let room = (SHARD_LIMIT as usize).saturating_sub(self.open_shard_count());
        {
            let mut meta = stream.meta_mut();
            // Another request may have split them meanwhile: look again under the write lock.
            let hot = hot(&meta);
            let mut split = 0;
            for id in hot.iter().take(room) {
                let Some(range) = meta.open.iter().find(|s| &s.id == id).map(|s| s.range) else {
                    continue;
                };
                let middle = range.start + (range.end - range.start) / 2 + 1;
                match meta.split(id, middle, now, stream.created_ms) {
                    Ok(()) => split += 1,
                    Err(err) => tracing::warn!(%err, shard_id = %id, "on-demand split failed"),
                }
            }
            if split == 0 {
                return;
            }
            tracing::info!(
                stream = %stream.name,
                split,
                open = meta.open.len(),
                "on-demand stream added shards for sustained write load"
            );
            self.after_reshard(stream, &mut meta);
        }
        if let Err(err) = self.store.persist(&self.streams) {
            tracing::error!(%err, stream = %stream.name, "cannot persist stream metadata");
        }
    }

    /// After a split, merge or scaling: forget long-expired shards and pass through UPDATING.
    fn after_reshard(&self, stream: &Arc<Stream>, meta: &mut StreamMeta) {
        let horizon = self.now() - meta.retention_ms();
        meta.drop_expired_shards(horizon);
        self.begin_update(stream, meta);
    }

    /// Marks a stream UPDATING until the transition delay passes.
    fn begin_update(&self, stream: &Arc<Stream>, meta: &mut StreamMeta) {
        if !self.config.state_transition_delay.is_zero() {
            meta.status = StreamStatus::Updating;
            self.settle(stream, StreamStatus::Active);
        }
    }

    fn change_retention(&self, input: RetentionInput, increase: bool) -> ApiResult<Empty> {
        let mut v = Validator::new();
        v.required(&input.retention_period_hours, "retentionPeriodHours");
        let stream = self.resolve(&input, v)?;
        let hours = input.retention_period_hours.unwrap_or_default();
        if hours < MIN_RETENTION_HOURS {
            return Err(ApiError::invalid_argument(format!(
                "Minimum allowed retention period is {MIN_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
            )));
        }
        if hours > MAX_RETENTION_HOURS {
            return Err(ApiError::invalid_argument(format!(
                "Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
            )));
        }
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        let current = i64::from(meta.retention_hours);
        if increase && hours < current {
            return Err(ApiError::invalid_argument(format!(
                "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                stream.name
            )));
        }
        if !increase && hours > current {
            return Err(ApiError::invalid_argument(format!(
                "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                stream.name
            )));
        }
        meta.retention_hours = hours as u32;
        Ok(Empty {})
    }

    pub(super) fn increase_retention(&self, input: RetentionInput) -> ApiResult<Empty> {
        self.change_retention(input, true)
    }

    pub(super) fn decrease_retention(&self, input: RetentionInput) -> ApiResult<Empty> {
        self.change_retention(input, false)
    }

    pub(super) fn add_tags_to_stream(&self, input: AddTagsToStreamInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(tags) = v.required(&input.tags, "tags") {
            validate_tags(tags, "tags", &mut v);
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        add_tags(
            &format!("Stream {}", stream.name),
            &mut meta.tags,
            input.tags.unwrap_or_default(),
        )
    }

    pub(super) fn remove_tags_from_stream(
        &self,
        input: RemoveTagsFromStreamInput,
    ) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(keys) = v.required(&input.tag_keys, "tagKeys") {
            validate_tag_keys(keys, "tagKeys", &mut v);
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        for key in input.tag_keys.unwrap_or_default() {
            meta.tags.remove(&key);
        }
        Ok(Empty {})
    }

    pub(super) fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
    ) -> ApiResult<ListTagsForStreamOutput> {
        let mut v = Validator::new();
        if let Some(limit) = input.limit {
            v.range(limit, "limit", 1, 50);
        }
        if let Some(key) = &input.exclusive_start_tag_key {
            v.length(key, "exclusiveStartTagKey", 1, 128);
        }
        let stream = self.resolve(&input, v)?;
        let meta = stream.meta();
        let limit = input.limit.unwrap_or(50) as usize;
        let after = input.exclusive_start_tag_key.unwrap_or_default();
        let remaining: Vec<Tag> = meta
            .tags
            .iter()
            .filter(|(k, _)| after.is_empty() || **k > after)
            .map(|(k, v)| Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let has_more_tags = remaining.len() > limit;
        Ok(ListTagsForStreamOutput {
            tags: remaining.into_iter().take(limit).collect(),
            has_more_tags,
        })
    }

    /// The stream or consumer a resource ARN names.
    fn resource(&self, arn: &Option<String>, mut v: Validator) -> ApiResult<Resource> {
        let arn = v.required(arn, "resourceARN").cloned();
        if let Some(arn) = &arn {
            v.length(arn, "resourceARN", 1, 2048);
        }
        match arn.as_deref().filter(|a| parse_consumer_arn(a).is_some()) {
            Some(consumer_arn) => {
                v.finish()?;
                let (stream, consumer) = self.consumer(&ConsumerAddressInput {
                    stream_arn: None,
                    consumer_name: None,
                    consumer_arn: Some(consumer_arn.to_owned()),
                })?;
                Ok(Resource {
                    stream,
                    consumer: Some(consumer.name),
                })
            }
            None => {
                let address = ArnAddress {
                    stream_name: None,
                    stream_arn: arn,
                };
                Ok(Resource {
                    stream: self.resolve(&address, v)?,
                    consumer: None,
                })
            }
        }
    }

    pub(super) fn tag_resource(&self, input: TagResourceInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(tags) = v.required(&input.tags, "tags") {
            validate_tags(tags, "tags", &mut v);
        }
        let resource = self.resource(&input.resource_arn, v)?;
        let tags = input.tags.unwrap_or_default();
        resource.update(|existing, _| add_tags(&resource.name(), existing, tags))?
    }

    pub(super) fn untag_resource(&self, input: UntagResourceInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(keys) = v.required(&input.tag_keys, "tagKeys") {
            validate_tag_keys(keys, "tagKeys", &mut v);
        }
        let resource = self.resource(&input.resource_arn, v)?;
        resource.update(|tags, _| {
            for key in input.tag_keys.unwrap_or_default() {
                tags.remove(&key);
            }
        })?;
        Ok(Empty {})
    }

    pub(super) fn list_tags_for_resource(
        &self,
        input: ResourceInput,
    ) -> ApiResult<ListTagsForResourceOutput> {
        let resource = self.resource(&input.resource_arn, Validator::new())?;
        Ok(ListTagsForResourceOutput {
            tags: resource.update(|tags, _| tag_list(tags))?,
        })
    }

    fn change_encryption(&self, input: EncryptionInput, start: bool) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(kind) = v.required(&input.encryption_type, "encryptionType") {
            v.one_of(kind, "encryptionType", &["NONE", "KMS"]);
        }
        if let Some(key) = v.required(&input.key_id, "keyId") {
            v.length(key, "keyId", 1, 2048);
        }
        let stream = self.resolve(&input, v)?;
        if input.encryption_type.as_deref() != Some("KMS") {
            return Err(ApiError::invalid_argument(
                "EncryptionType must be KMS; NONE is not a server-side encryption type.",
            ));
        }
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        meta.encryption_key = if start { input.key_id } else { None };
        self.begin_update(&stream, &mut meta);
        Ok(Empty {})
    }

    pub(super) fn start_stream_encryption(&self, input: EncryptionInput) -> ApiResult<Empty> {
        self.change_encryption(input, true)
    }

    pub(super) fn stop_stream_encryption(&self, input: EncryptionInput) -> ApiResult<Empty> {
        self.change_encryption(input, false)
    }

    fn change_monitoring(
        &self,
        input: MonitoringInput,
        enable: bool,
    ) -> ApiResult<EnhancedMonitoringOutput> {
        let mut v = Validator::new();
        if let Some(metrics) = v.required(&input.shard_level_metrics, "shardLevelMetrics") {
            v.count(metrics.len(), "shardLevelMetrics", 1, 7);
            for m in metrics {
                let mut allowed = METRICS.to_vec();
                allowed.push("ALL");
                v.one_of(m, "shardLevelMetrics.member", &allowed);
            }
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        let current: Vec<String> = meta.shard_level_metrics.iter().cloned().collect();
        let named: Vec<String> = input
            .shard_level_metrics
            .unwrap_or_default()
            .into_iter()
            .flat_map(|m| {
                if m == "ALL" {
                    METRICS.iter().map(|s| s.to_string()).collect()
                } else {
                    vec![m]
                }
            })
            .collect();
        for metric in named {
            if enable {
                meta.shard_level_metrics.insert(metric);
            } else {
                meta.shard_level_metrics.remove(&metric);
            }
        }
        Ok(EnhancedMonitoringOutput {
            stream_name: stream.name.clone(),
            current_shard_level_metrics: current,
            desired_shard_level_metrics: meta.shard_level_metrics.iter().cloned().collect(),
            stream_arn: stream.arn.clone(),
        })
    }

    pub(super) fn enable_enhanced_monitoring(
        &self,
        input: MonitoringInput,
    ) -> ApiResult<EnhancedMonitoringOutput> {
        self.change_monitoring(input, true)
    }

    pub(super) fn disable_enhanced_monitoring(
        &self,
        input: MonitoringInput,
    ) -> ApiResult<EnhancedMonitoringOutput> {
        self.change_monitoring(input, false)
    }

    pub(super) fn describe_limits(&self) -> DescribeLimitsOutput {
        let streams = self.streams.read().unwrap_or_else(|p| p.into_inner());
        DescribeLimitsOutput {
            shard_limit: SHARD_LIMIT,
            open_shard_count: streams
                .values()
                .filter(|s| s.meta().mode == StreamMode::Provisioned)
                .map(|s| s.meta().open.len())
                .sum(),
            on_demand_stream_count: streams
                .values()
                .filter(|s| s.meta().mode == StreamMode::OnDemand)
                .count(),
            on_demand_stream_count_limit: ON_DEMAND_STREAM_LIMIT,
        }
    }

    pub(super) fn update_stream_mode(&self, input: UpdateStreamModeInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        v.required(&input.stream_arn, "streamARN");
        let mode = match v.required(&input.stream_mode_details, "streamModeDetails") {
            Some(details) => match v.required(&details.stream_mode, "streamModeDetails.streamMode")
            {
                Some(text) => {
                    v.one_of(
                        text,
                        "streamModeDetails.streamMode",
                        &["PROVISIONED", "ON_DEMAND"],
                    );
                    StreamMode::parse(text)
                }
                None => None,
            },
            None => None,
        };
        if let Some(warm) = input.warm_throughput_mi_bps {
            v.range(warm, "warmThroughputMiBps", 0, i64::from(i32::MAX));
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        let mode = mode.unwrap_or(meta.mode);
        if mode == meta.mode {
            return Err(ApiError::invalid_argument(format!(
                "Stream {} is already in {} mode.",
                stream.name,
                mode.as_str()
            )));
        }
        meta.mode = mode;
        if let Some(warm) = input.warm_throughput_mi_bps {
            meta.warm_throughput_mibps = Some(warm as u32);
        }
        self.begin_update(&stream, &mut meta);
        Ok(Empty {})
    }

    pub(super) fn put_resource_policy(&self, input: PutResourcePolicyInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        v.required(&input.policy, "policy");
        let resource = self.resource(&input.resource_arn, v)?;
        let policy = input.policy.unwrap_or_default();
        if serde_json::from_str::<serde_json::Value>(&policy)
            .map(|p| !p.is_object())
            .unwrap_or(true)
        {
            return Err(ApiError::invalid_argument(
                "The resource policy is not a valid JSON policy document.",
            ));
        }
        resource.update(|_, existing| *existing = Some(policy))?;
        Ok(Empty {})
    }

    pub(super) fn get_resource_policy(
        &self,
        input: ResourceInput,
    ) -> ApiResult<GetResourcePolicyOutput> {
        let resource = self.resource(&input.resource_arn, Validator::new())?;
        let policy = resource.update(|_, policy| policy.clone())?;
        Ok(GetResourcePolicyOutput {
            policy: policy.unwrap_or_else(|| "{}".to_owned()),
        })
    }

    pub(super) fn delete_resource_policy(&self, input: ResourceInput) -> ApiResult<Empty> {
        let resource = self.resource(&input.resource_arn, Validator::new())?;
        if resource.update(|_, policy| policy.take())?.is_none() {
            return Err(ApiError::not_found(format!(
                "No resource policy found for resource {}.",
                resource.name()
            )));
        }
        Ok(Empty {})
    }

    fn commitment(&self) -> MinimumThroughputBillingCommitmentOutput {
        let settings = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now();
        match (settings.commitment_started_ms, settings.commitment_ended_ms) {
            (Some(start), None) => MinimumThroughputBillingCommitmentOutput {
                status: "ENABLED",
                started_at: Some(Timestamp(start)),
                ended_at: None,
                earliest_allowed_end_at: Some(Timestamp(start + COMMITMENT_MIN_MS)),
            },
            (Some(start), Some(end)) => MinimumThroughputBillingCommitmentOutput {
                status: if end > now {
                    "ENABLED_UNTIL_EARLIEST_ALLOWED_END"
                } else {
                    "DISABLED"
                },
                started_at: Some(Timestamp(start)),
                ended_at: Some(Timestamp(end)),
                earliest_allowed_end_at: Some(Timestamp(start + COMMITMENT_MIN_MS)),
            },
            _ => MinimumThroughputBillingCommitmentOutput {
                status: "DISABLED",
                started_at: None,
                ended_at: None,
                earliest_allowed_end_at: None,
            },
        }
    }

    pub(super) fn describe_account_settings(&self) -> AccountSettingsOutput {
        AccountSettingsOutput {
            minimum_throughput_billing_commitment: self.commitment(),
        }
    }

    pub(super) fn update_account_settings(
        &self,
        input: UpdateAccountSettingsInput,
    ) -> ApiResult<AccountSettingsOutput> {
        let mut v = Validator::new();
        let status = v
            .required(
                &input.minimum_throughput_billing_commitment,
                "minimumThroughputBillingCommitment",
            )
            .and_then(|c| v.required(&c.status, "minimumThroughputBillingCommitment.status"))
            .cloned();
        if let Some(status) = &status {
            v.one_of(
                status,
                "minimumThroughputBillingCommitment.status",
                &["ENABLED", "DISABLED"],
            );
        }
        v.finish()?;
        let now = self.now();
        {
            let mut settings = self.account.lock().unwrap_or_else(|p| p.into_inner());
            let active = settings.commitment_started_ms.is_some()
                && settings.commitment_ended_ms.is_none_or(|end| end > now);
            match status.as_deref() {
                Some("ENABLED") if !active => {
                    settings.commitment_started_ms = Some(now);
                    settings.commitment_ended_ms = None;
                }
                Some("DISABLED") if active && settings.commitment_ended_ms.is_none() => {
                    let start = settings.commitment_started_ms.unwrap_or(now);
                    settings.commitment_ended_ms = Some(now.max(start + COMMITMENT_MIN_MS));
                }
                Some("DISABLED") if !active => {
                    return Err(ApiError::invalid_argument(
                        "The minimum throughput billing commitment is not enabled.",
                    ));
                }
                _ => {}
            }
            self.store.persist_account(&settings).map_err(|err| {
                tracing::error!(%err, "cannot persist account settings");
                ApiError::internal("The change could not be stored.")
            })?;
        }
        Ok(self.describe_account_settings())
    }

    pub(super) fn update_max_record_size(
        &self,
        input: UpdateMaxRecordSizeInput,
    ) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(size) = v.required(&input.max_record_size_in_ki_b, "maxRecordSizeInKiB") {
            v.range(*size, "maxRecordSizeInKiB", 1024, 10240);
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        meta.max_record_size_kib = input.max_record_size_in_ki_b.unwrap_or(1024) as u32;
        Ok(Empty {})
    }

    pub(super) fn update_stream_warm_throughput(
        &self,
        input: UpdateStreamWarmThroughputInput,
    ) -> ApiResult<UpdateStreamWarmThroughputOutput> {
        let mut v = Validator::new();
        if let Some(warm) = v.required(&input.warm_throughput_mi_bps, "warmThroughputMiBps") {
            v.range(*warm, "warmThroughputMiBps", 0, i64::from(i32::MAX));
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        if meta.mode != StreamMode::OnDemand {
            return Err(ApiError::invalid_argument(format!(
                "Warm throughput applies to ON_DEMAND streams; stream {} is PROVISIONED.",
                stream.name
            )));
        }
        let mibps = input.warm_throughput_mi_bps.unwrap_or(0) as u32;
        meta.warm_throughput_mibps = Some(mibps);
        Ok(UpdateStreamWarmThroughputOutput {
            stream_arn: stream.arn.clone(),
            stream_name: stream.name.clone(),
            warm_throughput: WarmThroughput {
                target_mi_bps: mibps,
                current_mi_bps: mibps,
            },
        })
    }

    pub(super) fn update_record_distribution_strategy(
        &self,
        input: UpdateStreamRecordDistributionStrategyInput,
    ) -> ApiResult<Empty> {
        let mut v = Validator::new();
        v.required(&input.stream_arn, "streamARN");
        if let Some(strategy) = v.required(
            &input.record_distribution_strategy,
            "recordDistributionStrategy",
        ) {
            v.one_of(
                strategy,
                "recordDistributionStrategy",
                &["AUTO", "USER_PARTITION_KEY"],
            );
        }
        let stream = self.resolve(&input, v)?;
        let mut meta = stream.meta_mut();
        require_active(&stream, &meta)?;
        // Routing stays by partition key hash either way: the broker has no hot-key detection
        // for AUTO to act on, and ordering per key must not change under a consumer's feet.
        meta.record_distribution_strategy = input.record_distribution_strategy;
        Ok(Empty {})
    }
}

/// Merges tags into a resource's tags, refusing to exceed the per-resource limit.
fn add_tags(
    resource: &str,
    existing: &mut BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
) -> ApiResult<Empty> {
    let mut merged = existing.clone();
    merged.extend(tags);
    if merged.len() > 200 {
        return Err(ApiError::limit_exceeded(format!(
            "{resource} would have {} tags; the limit is 200.",
            merged.len()
        )));
    }
    *existing = merged;
    Ok(Empty {})
}

/// A taggable resource: a stream, or one of its consumers.
struct Resource {
    stream: Arc<Stream>,
    consumer: Option<String>,
}

impl Resource {
    /// How messages name the resource.
    fn name(&self) -> String {
        match &self.consumer {
            Some(consumer) => format!("Consumer {consumer} of stream {}", self.stream.name),
            None => format!("Stream {}", self.stream.name),
        }
    }

    /// Runs `change` on the resource's tags and policy under the stream's lock.
    fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>, &mut Option<String>) -> R,
    ) -> ApiResult<R> {
        let mut meta = self.stream.meta_mut();
        let meta = &mut *meta;
        match &self.consumer {
            None => Ok(change(&mut meta.tags, &mut meta.policy)),
            Some(name) => match meta.consumers.get_mut(name) {
                Some(c) => Ok(change(&mut c.tags, &mut c.policy)),
                None => Err(ApiError::not_found(format!(
                    "Consumer {name} of stream {} not found.",
                    self.stream.name
                ))),
            },
        }
    }
}

/// A fresh `StreamId`: 20 lowercase alphanumerics, a dash, 3 more.
fn stream_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    format!("{}-{}", pick(20), pick(3))
}

/// A handle on the stream registry that background tasks can own (delayed deletion).
struct Registry {
    streams: Arc<std::sync::RwLock<BTreeMap<String, Arc<Stream>>>>,
}

impl Registry {
    fn remove(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        if streams
            .get(&stream.name)
            .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            streams.remove(&stream.name);
        }
    }
}
