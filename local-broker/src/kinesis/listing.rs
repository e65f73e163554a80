//! Read-only views: ListStreams, ListShards, DescribeStream, DescribeStreamSummary.

use super::api::*;
use super::records::encryption_type;
use super::shard::Shard;
use super::stream::{Stream, StreamMeta};
use super::{Kinesis, validate_shard_id, validate_stream_name};
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Timestamp;
use crate::http::validation::Validator;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// ListShards tokens expire like AWS's, five minutes after issue.
const NEXT_TOKEN_LIFETIME_MS: i64 = 300_000;
const SHARD_FILTER_TYPES: [&str; 6] = [
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
];

/// What a ListShards `NextToken` remembers between pages.
#[derive(Serialize, Deserialize)]
struct ShardsToken {
    stream: String,
    after: String,
    filter: Option<(String, Option<String>, Option<i64>)>,
    issued_ms: i64,
}

/// A shard on the wire.
pub(super) fn shard_out(shard: &Shard) -> ShardOut {
    ShardOut {
        shard_id: shard.id.clone(),
        parent_shard_id: shard.parent.clone(),
        adjacent_parent_shard_id: shard.adjacent_parent.clone(),
        hash_key_range: HashKeyRange {
            starting_hash_key: shard.range.start.to_string(),
            ending_hash_key: shard.range.end.to_string(),
        },
        sequence_number_range: SequenceNumberRange {
            starting_sequence_number: shard.sequence_number(0).to_string(),
            ending_sequence_number: shard
                .closed()
                .map(|c| shard.sequence_number(c.last_counter).to_string()),
        },
    }
}

/// Whether a shard was open at `at_ms` (created at or before it, not closed before it).
fn open_at(shard: &Shard, at_ms: i64) -> bool {
    shard.created_ms <= at_ms && shard.closed().is_none_or(|c| c.at_ms > at_ms)
}

/// Shards still visible: open ones and closed ones that ended within the retention period.
fn live_shards(meta: &StreamMeta, horizon_ms: i64) -> impl Iterator<Item = &Arc<Shard>> {
    meta.shards
        .iter()
        .filter(move |s| s.closed().is_none_or(|c| c.at_ms >= horizon_ms))
}

fn enhanced_monitoring(meta: &StreamMeta) -> Vec<EnhancedMetrics> {
    vec![EnhancedMetrics {
        shard_level_metrics: meta.shard_level_metrics.iter().cloned().collect(),
    }]
}

impl Kinesis {
    pub(super) fn describe_stream(
        &self,
        input: DescribeStreamInput,
    ) -> ApiResult<DescribeStreamOutput> {
        let mut v = Validator::new();
        if let Some(limit) = input.limit {
            v.range(limit, "limit", 1, 10_000);
        }
        if let Some(id) = &input.exclusive_start_shard_id {
            validate_shard_id(id, "exclusiveStartShardId", &mut v);
        }
        let stream = self.resolve(&input, v)?;
        let meta = stream.meta();
        let horizon = self.now() - meta.retention_ms();
        let limit = input.limit.unwrap_or(100) as usize;
        let after = input.exclusive_start_shard_id.unwrap_or_default();
        let mut shards: Vec<&Arc<Shard>> = live_shards(&meta, horizon)
            .filter(|s| after.is_empty() || s.id > after)
            .collect();
        let has_more_shards = shards.len() > limit;
        shards.truncate(limit);
        Ok(DescribeStreamOutput {
            stream_description: StreamDescription {
                stream_name: stream.name.clone(),
                stream_arn: stream.arn.clone(),
                stream_status: meta.status.as_str(),
                stream_mode_details: StreamModeDetailsOut {
                    stream_mode: meta.mode.as_str(),
                },
                shards: shards.into_iter().map(|s| shard_out(s)).collect(),
                has_more_shards,
                retention_period_hours: meta.retention_hours,
                stream_creation_timestamp: Timestamp(stream.created_ms),
                enhanced_monitoring: enhanced_monitoring(&meta),
                encryption_type: encryption_type(meta.encryption_key.is_some()),
                key_id: meta.encryption_key.clone(),
            },
        })
    }

    pub(super) fn describe_stream_summary(
        &self,
        input: StreamOnlyInput,
    ) -> ApiResult<DescribeStreamSummaryOutput> {
        let stream = self.resolve(&input, Validator::new())?;
        let meta = stream.meta();
        Ok(DescribeStreamSummaryOutput {
            stream_description_summary: StreamDescriptionSummary {
                stream_name: stream.name.clone(),
                stream_arn: stream.arn.clone(),
                stream_id: stream.id.clone(),
                stream_status: meta.status.as_str(),
                stream_mode_details: StreamModeDetailsOut {
                    stream_mode: meta.mode.as_str(),
                },
                retention_period_hours: meta.retention_hours,
                stream_creation_timestamp: Timestamp(stream.created_ms),
                enhanced_monitoring: enhanced_monitoring(&meta),
                encryption_type: encryption_type(meta.encryption_key.is_some()),
                key_id: meta.encryption_key.clone(),
                open_shard_count: meta.open.len(),
                consumer_count: meta.consumers.len(),
                warm_throughput: meta.warm_throughput_mibps.map(|mibps| WarmThroughput {
                    target_mi_bps: mibps,
                    current_mi_bps: mibps,
                }),
                max_record_size_in_ki_b: meta.max_record_size_kib,
                record_distribution_strategy: meta.record_distribution_strategy.clone(),
            },
        })
    }

    pub(super) fn list_streams(&self, input: ListStreamsInput) -> ApiResult<ListStreamsOutput> {
        let mut v = Validator::new();
        if let Some(limit) = input.limit {
            v.range(limit, "limit", 1, 10_000);
        }
        if let Some(name) = &input.exclusive_start_stream_name {
            validate_stream_name(name, "exclusiveStartStreamName", &mut v);
        }
        if let Some(token) = &input.next_token {
            v.length(token, "nextToken", 1, 1_048_576);
        }
        v.finish()?;
        let after = match &input.next_token {
            Some(token) => B64
                .decode(token)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| ApiError::invalid_argument("Invalid NextToken."))?,
            None => input.exclusive_start_stream_name.unwrap_or_default(),
        };
        let limit = input.limit.unwrap_or(100) as usize;
        let streams: Vec<Arc<Stream>> = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .range::<String, _>((
                std::ops::Bound::Excluded(&after),
                std::ops::Bound::Unbounded,
            ))
            .take(limit + 1)
            .map(|(_, s)| Arc::clone(s))
            .collect();
        let has_more_streams = streams.len() > limit;
        let page = &streams[..streams.len().min(limit)];
        let next_token = has_more_streams
            .then(|| page.last().map(|s| B64.encode(&s.name)))
            .flatten();
        Ok(ListStreamsOutput {
            stream_names: page.iter().map(|s| s.name.clone()).collect(),
            has_more_streams,
            next_token,
            stream_summaries: page
                .iter()
                .map(|s| {
                    let meta = s.meta();
                    StreamSummary {
                        stream_name: s.name.clone(),
                        stream_arn: s.arn.clone(),
                        stream_status: meta.status.as_str(),
                        stream_mode_details: StreamModeDetailsOut {
                            stream_mode: meta.mode.as_str(),
                        },
                        stream_creation_timestamp: Timestamp(s.created_ms),
                    }
                })
                .collect(),
        })
    }

    pub(super) fn list_shards(&self, input: ListShardsInput) -> ApiResult<ListShardsOutput> {
        let mut v = Validator::new();
        if let Some(limit) = input.max_results {
            v.range(limit, "maxResults", 1, 10_000);
        }
        if let Some(id) = &input.exclusive_start_shard_id {
            validate_shard_id(id, "exclusiveStartShardId", &mut v);
        }
        if let Some(filter) = &input.shard_filter {
            if let Some(kind) = v.required(&filter.kind, "shardFilter.type") {
                v.one_of(kind, "shardFilter.type", &SHARD_FILTER_TYPES);
            }
            if let Some(id) = &filter.shard_id {
                validate_shard_id(id, "shardFilter.shardId", &mut v);
            }
        }
        let now = self.now();
        let (stream, after, filter) = match &input.next_token {
            Some(token) => {
                v.length(token, "nextToken", 1, 1_048_576);
                v.finish()?;
                if input.stream_name.is_some()
                    || input.stream_arn.is_some()
                    || input.exclusive_start_shard_id.is_some()
                    || input.shard_filter.is_some()
                    || input.stream_creation_timestamp.is_some()
                {
                    return Err(ApiError::invalid_argument(
                        "NextToken cannot be provided together with StreamName, StreamARN, ExclusiveStartShardId, ShardFilter or StreamCreationTimestamp.",
                    ));
                }
                let token: ShardsToken = B64
                    .decode(token)
                    .ok()
                    .and_then(|raw| serde_json::from_slice(&raw).ok())
                    .ok_or_else(|| ApiError::invalid_argument("Invalid NextToken."))?;
                if now - token.issued_ms > NEXT_TOKEN_LIFETIME_MS {
                    return Err(ApiError::new(
                        "ExpiredNextTokenException",
                        "The NextToken has expired; list shards again without it.",
                    ));
                }
                (self.stream(&token.stream)?, token.after, token.filter)
            }
            None => {
                let stream = self.resolve(&input, v)?;
                let filter = match input.shard_filter {
                    Some(f) => {
                        let kind = f.kind.unwrap_or_default();
                        if kind == "AFTER_SHARD_ID" && f.shard_id.is_none() {
                            return Err(ApiError::invalid_argument(
                                "ShardFilter of type AFTER_SHARD_ID requires a ShardId.",
                            ));
                        }
                        if kind.ends_with("_TIMESTAMP") && f.timestamp.is_none() {
                            return Err(ApiError::invalid_argument(format!(
                                "ShardFilter of type {kind} requires a Timestamp."
                            )));
                        }
                        Some((kind, f.shard_id, f.timestamp.map(|t| t.0)))
                    }
                    None => None,
                };
                (
                    stream,
                    input.exclusive_start_shard_id.unwrap_or_default(),
                    filter,
                )
            }
        };
        if !stream.meta().status.is_readable() {
            return Err(ApiError::in_use(format!(
                "Stream {} under account {} is not ready: it is {}.",
                stream.name,
                self.config.account_id,
                stream.meta().status.as_str()
            )));
        }
        let meta = stream.meta();
        let horizon = now - meta.retention_ms();
        let limit = input.max_results.unwrap_or(1000) as usize;
        let live: Vec<&Arc<Shard>> = live_shards(&meta, horizon).collect();
        // The oldest readable generation: live shards none of whose parents are still live.
        let at_trim_horizon = |s: &Shard| {
            [&s.parent, &s.adjacent_parent]
                .into_iter()
                .flatten()
                .all(|p| !live.iter().any(|l| &l.id == p))
        };
        // Before the first split or merge everything started at creation, so a timestamp at or
        // before it means the first generation, whatever the millisecond ties say.
        let at_time = |s: &Shard, at: i64| {
            if at <= stream.created_ms {
                at_trim_horizon(s)
            } else {
                open_at(s, at)
            }
        };
        let selected: Vec<&Arc<Shard>> = live
            .iter()
            .copied()
            .filter(|s| after.is_empty() || s.id > after)
            .filter(|s| match &filter {
                None => true,
                Some((kind, shard_id, at)) => match kind.as_str() {
                    "AFTER_SHARD_ID" => shard_id.as_deref().is_none_or(|id| s.id.as_str() > id),
                    "AT_LATEST" => s.closed().is_none(),
                    "AT_TRIM_HORIZON" => at_trim_horizon(s),
                    "FROM_TRIM_HORIZON" => true,
                    "AT_TIMESTAMP" => at_time(s, at.unwrap_or(now)),
                    "FROM_TIMESTAMP" => {
                        let at = at.unwrap_or(now);
                        at_time(s, at) || s.created_ms > at
                    }
                    _ => true,
                },
            })
            .collect();
        let more = selected.len() > limit;
        let page: Vec<&Arc<Shard>> = selected.into_iter().take(limit).collect();
        let next_token = if more {
            page.last().map(|last| {
                let token = ShardsToken {
                    stream: stream.name.clone(),
                    after: last.id.clone(),
                    filter: filter.clone(),
                    issued_ms: now,
                };
                B64.encode(serde_json::to_vec(&token).unwrap_or_default())
            })
        } else {
            None
        };
        Ok(ListShardsOutput {
            shards: page.into_iter().map(|s| shard_out(s)).collect(),
            next_token,
        })
    }
}
