//! Enhanced fan-out retrieval: a background task per shard holds a `SubscribeToShard`
//! subscription and queues each event's records ahead of the processor (the Java KCL's
//! `FanOutRecordsPublisher`).
//!
//! - The worker's stream consumer is registered on first use, or reused if it exists, and waited
//!   for until ACTIVE ([`StreamConsumer`]); every shard of the worker subscribes through it.
//! - Flow control: the next event is read from the subscription only once the shard's queue has
//!   room for it. The event stream is pull-based, so a slow processor holds the subscription back
//!   instead of filling memory; the queue has the same bounds as polling's.
//! - A subscription that ends (Kinesis ends them after 5 minutes) or fails is replaced from the
//!   last `ContinuationSequenceNumber`, no sooner than 5 s after the previous one started
//!   (Kinesis refuses earlier ones with `ResourceInUseException`); failures back off.
//! - An event without a continuation is the shard's end, with its children; a shard Kinesis does
//!   not know (`ResourceNotFoundException`) ends without children.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput;
use aws_sdk_kinesis::types::{ConsumerStatus, SubscribeToShardEvent, SubscribeToShardEventStream};
use tokio::sync::{OnceCell, mpsc};
use tokio::time::Instant;

use super::{Budget, Fetched, ShardSource, StartingPosition, describe, to_child_shard, to_records};
use crate::checkpoint::SequenceNumber;
use crate::config::retry_backoff;
use crate::metrics;
use crate::processor::Record;

/// Kinesis refuses a subscription for a consumer and shard within this long of the previous one.
const RESUBSCRIBE_GUARD: Duration = Duration::from_secs(5);

/// Why the stream consumer could not be made ready.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistrationError {
    #[error("{operation} failed: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
    #[error("{operation} returned no {what}")]
    Incomplete {
        operation: &'static str,
        what: &'static str,
    },
    #[error("stream consumer {arn} is {status}, not ACTIVE")]
    NotActive { arn: String, status: String },
}

/// Why a `SubscribeToShard` call failed.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    #[error("stream consumer unavailable: {0}")]
    Registration(#[from] RegistrationError),
    /// Another subscription for this consumer and shard is live, or started less than 5 s ago
    /// (e.g. the shard's previous owner's).
    #[error("{0}")]
    InUse(String),
    /// The shard (or the consumer) does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

/// The application's registered stream consumer, shared by every shard of a worker.
pub(crate) struct StreamConsumer {
    kinesis: Client,
    stream: String,
    name: String,
    arn: OnceCell<String>,
}

impl StreamConsumer {
    pub(crate) fn new(kinesis: Client, stream: String, name: String) -> Self {
        Self {
            kinesis,
            stream,
            name,
            arn: OnceCell::new(),
        }
    }

    /// The consumer's ARN once it is ACTIVE; registers it (or finds it) on the first call.
    /// Concurrent callers wait for one registration; a failed one is tried again by the next call.
    async fn arn(&self) -> Result<&str, RegistrationError> {
        self.arn
            .get_or_try_init(|| self.register())
            .await
            .map(String::as_str)
    }

    async fn register(&self) -> Result<String, RegistrationError> {
        let api = |operation: &'static str| {
            move |message: String| RegistrationError::Api { operation, message }
        };
        let stream_arn = self
            .kinesis
            .describe_stream_summary()
            .stream_name(&self.stream)
            .send()
            .await
            .map_err(|e| api("DescribeStreamSummary")(describe(&e)))?
            .stream_description_summary
            .ok_or(RegistrationError::Incomplete {
                operation: "DescribeStreamSummary",
                what: "stream description",
            })?
            .stream_arn;
        let registered = self
            .kinesis
            .register_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(&self.name)
            .send()
            .await;
        let (arn, mut status) = match registered {
            Ok(out) => {
                let consumer = out.consumer.ok_or(RegistrationError::Incomplete {
                    operation: "RegisterStreamConsumer",
                    what: "consumer",
                })?;
                tracing::info!(consumer = %self.name, arn = %consumer.consumer_arn, "registered stream consumer");
                (consumer.consumer_arn, consumer.consumer_status)
            }
            // Registered before (by this application's other workers, or an earlier run).
            Err(err) if err.code() == Some("ResourceInUseException") => {
                let consumer = self
                    .kinesis
                    .describe_stream_consumer()
                    .stream_arn(&stream_arn)
                    .consumer_name(&self.name)
                    .send()
                    .await
                    .map_err(|e| api("DescribeStreamConsumer")(describe(&e)))?
                    .consumer_description
                    .ok_or(RegistrationError::Incomplete {
                        operation: "DescribeStreamConsumer",
                        what: "consumer description",
                    })?;
                tracing::debug!(consumer = %self.name, arn = %consumer.consumer_arn, "using the existing stream consumer");
                (consumer.consumer_arn, consumer.consumer_status)
            }
            Err(err) => return Err(api("RegisterStreamConsumer")(describe(&err))),
        };
        let mut delays = retry_backoff();
        loop {
            match status {
                ConsumerStatus::Active => return Ok(arn),
                ConsumerStatus::Creating => {}
                other => {
                    return Err(RegistrationError::NotActive {
                        arn,
                        status: other.as_str().to_owned(),
                    });
                }
            }
            tokio::time::sleep(delays.next().unwrap_or_default()).await;
            status = self
                .kinesis
                .describe_stream_consumer()
                .consumer_arn(&arn)
                .send()
                .await
                .map_err(|e| api("DescribeStreamConsumer")(describe(&e)))?
                .consumer_description
                .ok_or(RegistrationError::Incomplete {
                    operation: "DescribeStreamConsumer",
                    what: "consumer description",
                })?
                .consumer_status;
        }
    }
}

/// How one subscription ended.
enum Outcome {
    /// Its lifetime is over: subscribe again.
    Ended,
    /// It broke: subscribe again after a backoff.
    Failed(String),
    /// The shard's end was delivered, or the consumer side is gone: stop reading.
    Finished,
}

/// Reads one shard through `SubscribeToShard` subscriptions into its queue.
pub(crate) struct Reader {
    consumer: Arc<StreamConsumer>,
    source: ShardSource,
    budget: Budget,
}

impl Reader {
    pub(crate) fn new(consumer: Arc<StreamConsumer>, source: ShardSource, budget: Budget) -> Self {
        Self {
            consumer,
            source,
            budget,
        }
    }

    pub(crate) async fn read(self, start: StartingPosition, tx: mpsc::Sender<Fetched>) {
        // Where the next subscription starts: after the last record or continuation seen.
        let mut resume = start;
        let mut backoff = retry_backoff();
        let mut last_subscribed: Option<Instant> = None;
        loop {
            if let Some(at) = last_subscribed {
                tokio::time::sleep_until(at + RESUBSCRIBE_GUARD).await;
            }
            let subscription = match self.subscribe(&resume).await {
                Ok(subscription) => subscription,
                Err(SubscribeError::NotFound(message)) => {
                    tracing::info!(%message, "SubscribeToShard found no such shard; treating it as ended");
                    // Fails only if the consumer is gone, and then there is nobody to tell.
                    let _ = tx
                        .send(Fetched::ShardEnd {
                            child_shards: Vec::new(),
                        })
                        .await;
                    return;
                }
                Err(err) => {
                    let delay = backoff.next().unwrap_or_default();
                    if matches!(err, SubscribeError::InUse(_)) {
                        tracing::debug!(error = %err, ?delay, "shard subscription still in use; retrying");
                    } else {
                        tracing::warn!(error = %err, ?delay, "SubscribeToShard failed; retrying");
                    }
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            last_subscribed = Some(Instant::now());
            // Failing again is at least 5 s away (the guard above).
            backoff = retry_backoff();
            tracing::debug!(from = ?resume, "subscribed to shard");
            match self.stream(subscription, &mut resume, &tx).await {
                Outcome::Ended => tracing::debug!("subscription ended; subscribing again"),
                Outcome::Failed(err) => {
                    let delay = backoff.next().unwrap_or_default();
                    tracing::warn!(error = %err, ?delay, "shard subscription failed; subscribing again");
                    tokio::time::sleep(delay).await;
                }
                Outcome::Finished => return,
            }
        }
    }

    async fn subscribe(
        &self,
        from: &StartingPosition,
    ) -> Result<SubscribeToShardOutput, SubscribeError> {
        let arn = self.consumer.arn().await?;
        let (kind, sequence_number, timestamp) = from.kinesis_position();
        let position = aws_sdk_kinesis::types::StartingPosition::builder()
            .r#type(kind)
            .set_sequence_number(sequence_number)
            .set_timestamp(timestamp)
            .build()
            .map_err(|e| SubscribeError::Other(e.to_string()))?;
        self.source
            .kinesis
            .subscribe_to_shard()
            .consumer_arn(arn)
            .shard_id(&self.source.shard_id)
            .starting_position(position)
            .send()
            .await
            .map_err(|e| match e.code() {
                Some("ResourceInUseException") => SubscribeError::InUse(describe(&e)),
                Some("ResourceNotFoundException") => SubscribeError::NotFound(describe(&e)),
                _ => SubscribeError::Other(describe(&e)),
            })
    }

    /// Queues one subscription's events until it ends.
    async fn stream(
        &self,
        mut subscription: SubscribeToShardOutput,
        resume: &mut StartingPosition,
        tx: &mpsc::Sender<Fetched>,
    ) -> Outcome {
        loop {
            // Flow control: take the next event off the subscription only when it fits.
            let Ok(slot) = tx.reserve().await else {
                return Outcome::Finished;
            };
            let event = match subscription.event_stream.recv().await {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => event,
                Ok(Some(other)) => {
                    tracing::debug!(event = ?other, "ignoring an unknown subscription event");
                    continue;
                }
                Ok(None) => return Outcome::Ended,
                Err(err) if err.code() == Some("ResourceNotFoundException") => {
                    drop(slot);
                    tracing::info!(error = %describe(&err), "shard subscription found no such shard; treating it as ended");
                    let _ = tx
                        .send(Fetched::ShardEnd {
                            child_shards: Vec::new(),
                        })
                        .await;
                    return Outcome::Finished;
                }
                Err(err) => return Outcome::Failed(describe(&err)),
            };
            metrics::millis_behind_latest(
                &self.source.worker_id,
                &self.source.lease_key,
                event.millis_behind_latest,
            );
            let millis_behind_latest = Some(event.millis_behind_latest);
            let shard_end = event.continuation_sequence_number.is_empty();
            let child_shards = event
                .child_shards
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(to_child_shard)
                .collect();
            let records = self.take_records(event, resume);
            if records.is_empty() {
                drop(slot);
            } else {
                let Some(batch) = self.budget.batch(records, millis_behind_latest).await else {
                    return Outcome::Finished;
                };
                slot.send(Fetched::Records(batch));
            }
            if shard_end {
                // Fails only if the consumer is gone, and then there is nobody to tell.
                let _ = tx.send(Fetched::ShardEnd { child_shards }).await;
                return Outcome::Finished;
            }
        }
    }

    /// The event's new records; moves `resume` past them and past the event's continuation.
    fn take_records(
        &self,
        event: SubscribeToShardEvent,
        resume: &mut StartingPosition,
    ) -> Vec<Record> {
        let carried_records = !event.records.is_empty();
        let records = to_records(event.records, resume, self.source.hash_key_range.as_ref());
        if let Some(last) = records.last() {
            *resume =
                StartingPosition::After(last.sequence_number.clone(), last.sub_sequence_number);
        }
        let continuation = event.continuation_sequence_number;
        if continuation.is_empty() {
            return records;
        }
        match continuation.parse::<SequenceNumber>() {
            // The continuation covers every record of the event, whole aggregates included. It
            // may also lie before a partly done aggregate that was not re-read yet, and then
            // resuming from it would repeat the aggregate's done sub-records.
            Ok(seq) => {
                let past = match &*resume {
                    StartingPosition::After(at, _) => seq > *at || (seq == *at && carried_records),
                    _ => true,
                };
                if past {
                    *resume = StartingPosition::After(seq, 0);
                }
            }
            Err(err) => {
                tracing::warn!(%continuation, %err, "ignoring an invalid continuation sequence number");
            }
        }
        records
    }
}
