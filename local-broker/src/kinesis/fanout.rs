//! Enhanced fan-out: consumer registration and SubscribeToShard event streams.
//!
//! A subscription is a pull-driven stream: the HTTP layer asks for the next event only when the
//! client has taken the previous one, so a slow subscriber holds at most one event in memory. When
//! the subscriber has caught up it sleeps on the shard's append notification (no polling) and sends
//! an empty event as a heartbeat when the shard stays idle.

use super::api::*;
use super::consumer::{
    Consumer, ConsumerStatus, MAX_CONSUMERS_PER_STREAM, consumer_arn, parse_consumer_arn,
};
use super::records::{child_shards, record_out};
use super::shard::Shard;
use super::stream::Stream;
use super::{Kinesis, validate_shard_id};
use crate::clock::Clock;
use crate::http::error::{ApiError, ApiResult};
use crate::http::eventstream;
use crate::http::protocol::{self, Protocol, Timestamp};
use crate::http::validation::Validator;
use crate::storage::Storage;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A second SubscribeToShard for the same consumer and shard within this window is refused.
const RESUBSCRIBE_GUARD_MS: i64 = 5_000;
/// An idle subscription still sends an (empty) event this often.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Most data one event carries.
const MAX_EVENT_BYTES: usize = 10 * 1024 * 1024;
const MAX_EVENT_RECORDS: usize = 10_000;
const ITERATOR_TYPES: [&str; 5] = [
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
    "LATEST",
    "AT_TIMESTAMP",
];

/// The live subscription of each (consumer ARN, shard id), so a newer one replaces it.
#[derive(Default)]
pub struct Subscriptions {
    live: Mutex<HashMap<(String, String), (i64, CancellationToken)>>,
}

fn validate_consumer_name(name: &str, v: &mut Validator) {
    v.length(name, "consumerName", 1, 128);
    v.chars(name, "consumerName", "[a-zA-Z0-9_.-]+", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    });
}

fn consumer_out(c: &Consumer) -> ConsumerOut {
    ConsumerOut {
        consumer_name: c.name.clone(),
        consumer_arn: c.arn.clone(),
        consumer_status: c.status.as_str(),
        consumer_creation_timestamp: Timestamp(c.created_ms),
    }
}

impl Kinesis {
    /// Resolves a consumer from its ARN, or from a stream ARN plus consumer name.
    pub(super) fn consumer(
        &self,
        input: &ConsumerAddressInput,
    ) -> ApiResult<(Arc<Stream>, Consumer)> {
        let mut v = Validator::new();
        if let Some(name) = &input.consumer_name {
            validate_consumer_name(name, &mut v);
        }
        if let Some(arn) = &input.consumer_arn {
            v.length(arn, "consumerARN", 1, 2048);
        }
        let (stream_arn, name) =
            match (&input.consumer_arn, &input.stream_arn, &input.consumer_name) {
                (Some(arn), _, _) => {
                    let (stream_arn, name) = parse_consumer_arn(arn).ok_or_else(|| {
                        ApiError::invalid_argument(format!(
                            "ConsumerARN {arn} is not a consumer ARN."
                        ))
                    })?;
                    (stream_arn.to_owned(), name.to_owned())
                }
                (None, Some(stream_arn), Some(name)) => (stream_arn.clone(), name.clone()),
                _ => {
                    v.finish()?;
                    return Err(ApiError::invalid_argument(
                        "Either ConsumerARN, or StreamARN and ConsumerName, must be provided.",
                    ));
                }
            };
        let stream = self.resolve(
            &ArnAddress {
                stream_name: None,
                stream_arn: Some(stream_arn),
            },
            v,
        )?;
        let consumer = stream.meta().consumers.get(&name).cloned();
        match consumer {
            Some(c) if input.consumer_arn.as_ref().is_none_or(|arn| *arn == c.arn) => {
                Ok((stream, c))
            }
            _ => Err(ApiError::not_found(format!(
                "Consumer {name}, stream {} under account {} not found.",
                stream.name, self.config.account_id
            ))),
        }
    }

    pub(super) fn register_stream_consumer(
        &self,
        input: RegisterStreamConsumerInput,
    ) -> ApiResult<RegisterStreamConsumerOutput> {
        let mut v = Validator::new();
        v.required(&input.stream_arn, "streamARN");
        if let Some(name) = v.required(&input.consumer_name, "consumerName") {
            validate_consumer_name(name, &mut v);
        }
        if let Some(tags) = &input.tags {
            super::control::validate_tags(tags, "tags", &mut v);
        }
        let stream = self.resolve(
            &ArnAddress {
                stream_name: None,
                stream_arn: input.stream_arn.clone(),
            },
            v,
        )?;
        let name = input.consumer_name.unwrap_or_default();
        let now = self.now();
        let settled = self.config.state_transition_delay.is_zero();
        let consumer = {
            let mut meta = stream.meta_mut();
            if meta.consumers.contains_key(&name) {
                return Err(ApiError::in_use(format!(
                    "Consumer {name} is already registered on stream {}.",
                    stream.name
                )));
            }
            if meta.consumers.len() >= MAX_CONSUMERS_PER_STREAM {
                return Err(ApiError::limit_exceeded(format!(
                    "Stream {} already has {MAX_CONSUMERS_PER_STREAM} consumers, the most allowed.",
                    stream.name
                )));
            }
            let consumer = Consumer {
                arn: consumer_arn(&stream.arn, &name, now),
                name: name.clone(),
                status: if settled {
                    ConsumerStatus::Active
                } else {
                    ConsumerStatus::Creating
                },
                created_ms: now,
                tags: input.tags.clone().unwrap_or_default(),
                policy: None,
            };
            meta.consumers.insert(name.clone(), consumer.clone());
            consumer
        };
        if !settled {
            self.after_delay(&stream, move |meta| {
                if let Some(c) = meta.consumers.get_mut(&name) {
                    c.status = ConsumerStatus::Active;
                }
            });
        }
        Ok(RegisterStreamConsumerOutput {
            consumer: consumer_out(&consumer),
        })
    }

    pub(super) fn describe_stream_consumer(
        &self,
        input: ConsumerAddressInput,
    ) -> ApiResult<DescribeStreamConsumerOutput> {
        let (stream, c) = self.consumer(&input)?;
        Ok(DescribeStreamConsumerOutput {
            consumer_description: ConsumerDescription {
                consumer_name: c.name,
                consumer_arn: c.arn,
                consumer_status: c.status.as_str(),
                consumer_creation_timestamp: Timestamp(c.created_ms),
                stream_arn: stream.arn.clone(),
            },
        })
    }

    pub(super) fn list_stream_consumers(
        &self,
        input: ListStreamConsumersInput,
    ) -> ApiResult<ListStreamConsumersOutput> {
        let mut v = Validator::new();
        v.required(&input.stream_arn, "streamARN");
        if let Some(limit) = input.max_results {
            v.range(limit, "maxResults", 1, 10_000);
        }
        let stream = self.resolve(
            &ArnAddress {
                stream_name: None,
                stream_arn: input.stream_arn.clone(),
            },
            v,
        )?;
        let after = match &input.next_token {
            Some(token) => B64
                .decode(token)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| ApiError::invalid_argument("Invalid NextToken."))?,
            None => String::new(),
        };
        let limit = input.max_results.unwrap_or(100) as usize;
        let meta = stream.meta();
        let remaining: Vec<&Consumer> =
            meta.consumers.values().filter(|c| c.name > after).collect();
        let next_token = (remaining.len() > limit)
            .then(|| remaining.get(limit - 1).map(|c| B64.encode(&c.name)))
            .flatten();
        Ok(ListStreamConsumersOutput {
            consumers: remaining
                .into_iter()
                .take(limit)
                .map(consumer_out)
                .collect(),
            next_token,
        })
    }

    pub(super) fn deregister_stream_consumer(
        &self,
        input: ConsumerAddressInput,
    ) -> ApiResult<Empty> {
        let (stream, consumer) = self.consumer(&input)?;
        if self.config.state_transition_delay.is_zero() {
            stream.meta_mut().consumers.remove(&consumer.name);
        } else {
            if let Some(c) = stream.meta_mut().consumers.get_mut(&consumer.name) {
                c.status = ConsumerStatus::Deleting;
            }
            let name = consumer.name.clone();
            self.after_delay(&stream, move |meta| {
                meta.consumers.remove(&name);
            });
        }
        self.end_subscriptions_of(&consumer.arn);
        Ok(Empty {})
    }

    /// Ends every live subscription of a consumer (deregistration, stream deletion).
    pub(super) fn end_subscriptions_of(&self, consumer_arn: &str) {
        let live = self
            .subscriptions
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for ((arn, _), (_, token)) in live.iter() {
            if arn == consumer_arn {
                token.cancel();
            }
        }
    }

    pub(super) fn subscribe_to_shard(
        &self,
        input: SubscribeToShardInput,
        protocol: Protocol,
    ) -> ApiResult<BoxStream<'static, Bytes>> {
        let mut v = Validator::new();
        v.required(&input.consumer_arn, "consumerARN");
        if let Some(id) = v.required(&input.shard_id, "shardId") {
            validate_shard_id(id, "shardId", &mut v);
        }
        if let Some(position) = v.required(&input.starting_position, "startingPosition")
            && let Some(kind) = v.required(&position.kind, "startingPosition.type")
        {
            v.one_of(kind, "startingPosition.type", &ITERATOR_TYPES);
        }
        v.finish()?;
        let (stream, consumer) = self.consumer(&ConsumerAddressInput {
            stream_arn: None,
            consumer_name: None,
            consumer_arn: input.consumer_arn,
        })?;
        if consumer.status != ConsumerStatus::Active {
            return Err(ApiError::in_use(format!(
                "Consumer {} is not ACTIVE; it is {}.",
                consumer.name,
                consumer.status.as_str()
            )));
        }
        let shard_id = input.shard_id.unwrap_or_default();
        let now = self.now();
        let (shard, start) = {
            let meta = stream.meta();
            let horizon = now - meta.retention_ms();
            let shard = meta
                .shard(&shard_id)
                .filter(|s| s.closed().is_none_or(|c| c.at_ms >= horizon))
                .cloned()
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "Shard {shard_id} in stream {} under account {} does not exist",
                        stream.name, self.config.account_id
                    ))
                })?;
            let position = input.starting_position.unwrap_or(StartingPosition {
                kind: None,
                sequence_number: None,
                timestamp: None,
            });
            let start = self.start_counter(
                &stream,
                &shard,
                position.kind.as_deref().unwrap_or_default(),
                position.sequence_number.as_deref(),
                position.timestamp,
                horizon,
            )?;
            (shard, start)
        };
        let token = CancellationToken::new();
        {
            let mut live = self
                .subscriptions
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let key = (consumer.arn.clone(), shard_id.clone());
            if let Some((started, previous)) = live.get(&key) {
                if now - started < RESUBSCRIBE_GUARD_MS {
                    return Err(ApiError::in_use(format!(
                        "Another active subscription exists for consumer {} on shard {shard_id}; subscribe again at least {} seconds after the previous subscription.",
                        consumer.arn,
                        RESUBSCRIBE_GUARD_MS / 1000
                    )));
                }
                previous.cancel();
            }
            live.insert(key, (now, token.clone()));
        }
        tracing::debug!(consumer = %consumer.name, shard = %shard_id, start, "subscription started");
        let subscription = Subscription {
            changes: shard.watch(),
            stream,
            shard,
            consumer: consumer.name,
            protocol,
            next_counter: start,
            deadline: Instant::now() + self.config.subscription_lifetime,
            token,
            clock: Arc::clone(&self.config.clock),
            storage: self.storage.clone(),
            phase: Phase::Initial,
        };
        Ok(Box::pin(futures::stream::unfold(
            subscription,
            |mut s| async move {
                let event = s.next_event().await?;
                Some((event, s))
            },
        )))
    }
}

#[derive(PartialEq, Eq)]
enum Phase {
    Initial,
    Streaming,
    Done,
}

/// One SubscribeToShard stream's state.
struct Subscription {
    stream: Arc<Stream>,
    shard: Arc<Shard>,
    consumer: String,
    protocol: Protocol,
    next_counter: u64,
    deadline: Instant,
    token: CancellationToken,
    changes: watch::Receiver<u64>,
    clock: Arc<dyn Clock>,
    /// Where the shard's records are read from (with a data directory).
    storage: Storage,
    phase: Phase,
}

impl Subscription {
    fn content_type(&self) -> &'static str {
        match self.protocol {
            Protocol::Cbor11 => "application/cbor",
            _ => "application/json",
        }
    }

    /// The next message, or `None` when the stream ends.
    async fn next_event(&mut self) -> Option<Bytes> {
        match self.phase {
            Phase::Done => return None,
            Phase::Initial => {
                self.phase = Phase::Streaming;
                let payload = protocol::encode(self.protocol, &serde_json::json!({})).ok()?;
                return Some(eventstream::event(
                    "initial-response",
                    self.content_type(),
                    &payload,
                ));
            }
            Phase::Streaming => {}
        }
        let mut heartbeat = Instant::now() + HEARTBEAT;
        loop {
            if self.token.is_cancelled() || Instant::now() >= self.deadline {
                return None;
            }
            let consumer_active = self
                .stream
                .meta()
                .consumers
                .get(&self.consumer)
                .is_some_and(|c| c.status == ConsumerStatus::Active);
            if !consumer_active {
                self.phase = Phase::Done;
                return Some(self.exception(
                    "ResourceNotFoundException",
                    "The consumer or its stream no longer exists.",
                ));
            }
            self.changes.borrow_and_update();
            let now = self.clock.now_millis();
            let (event, exhausted) = {
                let meta = self.stream.meta();
                let horizon = now - meta.retention_ms();
                let batch = match self.shard.read(
                    &self.storage,
                    self.next_counter,
                    MAX_EVENT_RECORDS,
                    MAX_EVENT_BYTES,
                    horizon,
                ) {
                    Ok(batch) => batch,
                    Err(err) => {
                        tracing::error!(%err, shard = %self.shard.id, "cannot read records from the data directory");
                        self.phase = Phase::Done;
                        return Some(self.exception(
                            "InternalFailureException",
                            "The records could not be read.",
                        ));
                    }
                };
                let idle = batch.records.is_empty() && !batch.exhausted;
                if idle && Instant::now() < heartbeat {
                    (None, false)
                } else {
                    self.next_counter = batch.next_counter;
                    let continuation = (!batch.exhausted).then(|| {
                        self.shard
                            .sequence_number(batch.next_counter.saturating_sub(1))
                            .to_string()
                    });
                    let event = SubscribeToShardEvent {
                        millis_behind_latest: batch
                            .next_unread_arrival_ms
                            .map_or(0, |arrival| (now - arrival).max(0)),
                        child_shards: batch
                            .exhausted
                            .then(|| child_shards(&meta, &batch.children)),
                        records: batch
                            .records
                            .into_iter()
                            .map(|r| record_out(&self.shard, r))
                            .collect(),
                        continuation_sequence_number: continuation,
                    };
                    (Some(event), batch.exhausted)
                }
            };
            if let Some(event) = event {
                if exhausted {
                    self.phase = Phase::Done;
                }
                return match protocol::encode(self.protocol, &event) {
                    Ok(payload) => Some(eventstream::event(
                        "SubscribeToShardEvent",
                        self.content_type(),
                        &payload,
                    )),
                    Err(err) => {
                        self.phase = Phase::Done;
                        Some(self.exception("InternalFailureException", &err.message))
                    }
                };
            }
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        // The shard is gone (stream deleted): the consumer check ends us.
                        heartbeat = Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(heartbeat.min(self.deadline)) => {}
                _ = self.token.cancelled() => return None,
            }
        }
    }

    fn exception(&self, kind: &str, message: &str) -> Bytes {
        let payload = protocol::encode(self.protocol, &serde_json::json!({ "message": message }))
            .unwrap_or_default();
        eventstream::exception(kind, self.content_type(), &payload)
    }
}
