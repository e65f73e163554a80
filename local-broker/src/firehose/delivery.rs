//! The delivery task of each stream: wait for the buffer to be due, process the batch, and
//! write it to the destination — S3 objects named as Firehose names them, or an HTTP endpoint.
//! Failed records go to the error prefix as Firehose's JSON error documents.
//!
//! Once a batch is delivered (or backed up), the stream's delivered mark moves past it in the
//! data directory (`store`). With a data directory, broker shutdown leaves buffered records there
//! for the next start instead of delivering them early; a deleted stream still delivers all.

use super::buffering::BufferedRecord;
use super::http_endpoint::{self, HttpClient};
use super::metrics::{self, Channel};
use super::model::{Delivering, DeliveryFailure, DeliveryStream, Status, StreamState};
use super::objects::ObjectStore;
use super::partitions::{ACTIVE_PARTITION_EXCEEDED, MAX_ACTIVE_PARTITIONS};
use super::prefix::{PrefixValues, object_name};
use super::processing::{InvocationContext, OutRecord};
use super::settings::{S3Settings, Target};
use super::store::LogMark;
use super::store::Store;
use crate::clock::Clock;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

/// How long an idle delivery task sleeps when nothing is buffered (it is woken by puts).
const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// The shortest sleep between looks at the buffers: a due time already past never makes the
/// task spin.
const MIN_WAIT: Duration = Duration::from_millis(100);
/// Attempts at writing one object once the broker is shutting down.
const SHUTDOWN_ATTEMPTS: u32 = 3;
/// Longest pause between attempts at writing one object.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Most records in one HTTP endpoint request.
const MAX_HTTP_RECORDS: usize = 10_000;

/// A record that could not be delivered, and why.
#[derive(Debug, Clone)]
pub struct FailedRecord {
    pub raw: bytes::Bytes,
    pub arrival_ms: i64,
    pub error_code: String,
    pub error_message: String,
    pub attempts: u32,
}

/// What every delivery task shares: the clock, the object store, an HTTP client and the data
/// directory.
pub struct Deliverer {
    clock: Arc<dyn Clock>,
    objects: ObjectStore,
    http: HttpClient,
    /// The broker's region, for transform events.
    region: String,
    store: Store,
}

/// The configuration a batch is delivered with (a later UpdateDestination does not affect a
/// batch already taken).
struct Snapshot {
    version: u64,
    target: Target,
}

impl Deliverer {
    pub fn new(clock: Arc<dyn Clock>, objects: ObjectStore, region: String, store: Store) -> Self {
        Self {
            clock,
            objects,
            http: http_endpoint::client(),
            region,
            store,
        }
    }

    /// The object store S3 destinations write to.
    pub fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// Whether a stopping stream in `status` leaves its undelivered records in the data
    /// directory for the next start: the broker is shutting down (the stream is not being
    /// deleted) and has one.
    fn keeps_on_shutdown(&self, stream: &DeliveryStream, status: Status) -> bool {
        stream.stop.is_cancelled() && self.store.is_durable() && status != Status::Deleting
    }

    /// Whether the delivery task delivers everything buffered now, due or not: the stream is
    /// `stopping` and does not keep its records for the next start.
    fn delivers_all(&self, stream: &DeliveryStream, stopping: bool, status: Status) -> bool {
        stopping && !self.keeps_on_shutdown(stream, status)
    }
}

/// Delivers a stream's batches as they come due, until the stream is stopped; then delivers
/// what is left (unless the broker is shutting down and the records are safe in the data
/// directory).
pub async fn run(stream: Arc<DeliveryStream>, deliverer: Arc<Deliverer>) {
    let _finished = stream.finished.clone().drop_guard();
    loop {
        let stopping = stream.stop.is_cancelled();
        loop {
            let taken = {
                let mut state = stream.state();
                let hints = state.target.hints();
                let flush = deliverer.delivers_all(&stream, stopping, state.status);
                // Partitioned streams process records as they come and buffer them by
                // partition instead (the first of Firehose's stages).
                let partitioned = !stopping && state.target.partitioned().is_some();
                let taken = state
                    .buffer
                    .take_due(hints, deliverer.now(), flush || partitioned)
                    .map(|batch| {
                        (
                            batch,
                            Snapshot {
                                version: state.version,
                                target: state.target.clone(),
                            },
                        )
                    });
                state.delivering = taken.as_ref().and_then(|(batch, _)| Delivering::of(batch));
                taken
            };
            let Some((batch, snapshot)) = taken else {
                break;
            };
            let last = batch.last().map(|r| r.log);
            let outcome = deliver(&stream, &deliverer, snapshot, batch).await;
            let mut state = stream.state();
            state.delivering = None;
            let Outcome::Done(failure) = outcome else {
                return;
            };
            state.failure = failure;
            mark_delivered(&stream, &deliverer, state, last);
        }
        deliver_partitions(&stream, &deliverer, stopping).await;
        if stopping {
            return;
        }
        let wait = {
            let state = stream.state();
            let hints = state.target.hints();
            [state.buffer.due_at(hints), state.partitions.due_at(hints)]
                .into_iter()
                .flatten()
                .min()
                .map(|due| Duration::from_millis(u64::try_from(due - deliverer.now()).unwrap_or(0)))
                .unwrap_or(IDLE_WAIT)
                .max(MIN_WAIT)
        };
        tokio::select! {
            _ = stream.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stream.stop.cancelled() => {}
        }
    }
}

/// Moves the stream's delivered mark up to its oldest buffered record, or past `last` (the last
/// record just delivered) when nothing is buffered. With partitions delivered out of order, a
/// record delivered after an older one still buffered stays behind the mark: a restart delivers
/// it again (at least once, never lost). The mark is written after `state` is unlocked: only
/// this task writes it, so marks still land in order.
fn mark_delivered(
    stream: &DeliveryStream,
    deliverer: &Deliverer,
    state: MutexGuard<'_, StreamState>,
    last: Option<LogMark>,
) {
    let through = state.oldest_buffered_log().or(last.map(LogMark::next));
    drop(state);
    let Some(through) = through else {
        return;
    };
    // Also while DELETING: a restart before it is gone must not deliver the batch again.
    if let Err(err) = deliverer.store.delivered(stream, through) {
        tracing::error!(stream = %stream.name, %err, "cannot save the delivered mark; records may be delivered twice after a restart");
    }
}

/// Delivers each partition whose buffer is due (all of them when the stream stops and is not
/// keeping them in the data directory), one object per batch.
async fn deliver_partitions(stream: &DeliveryStream, deliverer: &Deliverer, stopping: bool) {
    loop {
        let taken = {
            let mut state = stream.state();
            let flush = deliverer.delivers_all(stream, stopping, state.status);
            let Some(s3) = state.target.partitioned().cloned() else {
                return;
            };
            let batch = state.partitions.take_due(s3.hints, deliverer.now(), flush);
            state.delivering = batch.as_deref().and_then(Delivering::of);
            metrics::partition_count(&stream.name, state.partitions.active());
            batch.map(|batch| (batch, s3, state.version))
        };
        let Some((batch, s3, version)) = taken else {
            return;
        };
        let last = batch.iter().map(|r| r.log).max();
        let writer = ObjectWriter::new(stream, deliverer, version);
        writer
            .write_records(&s3, batch, Channel::DeliveryToS3)
            .await;
        let mut state = stream.state();
        state.delivering = None;
        if writer.abandoned(state.status) {
            // The batch stays behind the delivered mark: the next start delivers it.
            return;
        }
        mark_delivered(stream, deliverer, state, last);
    }
}

/// How delivering one batch ended.
enum Outcome {
    /// Delivered or backed up; with why the destination failed, if it did.
    Done(Option<DeliveryFailure>),
    /// The broker is shutting down and the batch is safe in the data directory: it is delivered
    /// after the restart instead of being backed up as failed now.
    Abandoned,
}

/// Delivers one batch.
#[tracing::instrument(level = "debug", skip_all, fields(stream = %stream.name, records = batch.len()))]
async fn deliver(
    stream: &DeliveryStream,
    deliverer: &Deliverer,
    snapshot: Snapshot,
    batch: Vec<BufferedRecord>,
) -> Outcome {
    let writer = ObjectWriter::new(stream, deliverer, snapshot.version);
    let context = InvocationContext {
        client: &deliverer.http,
        stream_name: &stream.name,
        stream_arn: &stream.arn,
        region: &deliverer.region,
    };
    match &snapshot.target {
        Target::S3(s3) => {
            if let Some(backup) = &s3.source_backup {
                let raw: Vec<OutRecord> = batch.iter().map(OutRecord::unprocessed).collect();
                writer.write_records(backup, raw, Channel::BackupToS3).await;
            }
            let processed = s3.pipeline.run(&batch, &context).await;
            if s3.dynamic_partitioning {
                writer.partition(s3, processed.records).await;
            } else {
                writer
                    .write_records(s3, processed.records, Channel::DeliveryToS3)
                    .await;
            }
            writer
                .write_failed(s3, "processing-failed", processed.failed)
                .await;
            if writer.abandoned(stream.state().status) {
                return Outcome::Abandoned;
            }
            Outcome::Done(None)
        }
        Target::Http(http) => {
            let processed = http.pipeline.run(&batch, &context).await;
            writer
                .write_failed(&http.s3, "processing-failed", processed.failed)
                .await;
            let records = processed.records;
            let mut failed = Vec::new();
            let mut failure = None;
            for chunk in records.chunks(MAX_HTTP_RECORDS) {
                let delivered = http_endpoint::deliver(
                    &deliverer.http,
                    http,
                    &stream.arn,
                    chunk,
                    || deliverer.now(),
                    &stream.stop,
                )
                .await;
                if delivered.as_ref().is_err_and(|why| !why.rejected)
                    && deliverer.keeps_on_shutdown(stream, stream.state().status)
                {
                    return Outcome::Abandoned;
                }
                let bytes = chunk.iter().map(|r| r.data.len()).sum();
                metrics::delivery(
                    &stream.name,
                    Channel::DeliveryToHttpEndpoint,
                    chunk.len(),
                    bytes,
                    delivered.is_ok(),
                );
                if let Err(why) = delivered {
                    if why.rejected {
                        // The contract keeps a refused batch out of the error output.
                        tracing::warn!(stream = %stream.name, url = %http.url, records = chunk.len(), message = %why.message, "the HTTP endpoint refused a batch as too large; it is dropped");
                    } else {
                        failed.extend(chunk.iter().map(|r| FailedRecord {
                            raw: r.data.clone(),
                            arrival_ms: r.arrival_ms,
                            error_code: why.code.to_owned(),
                            error_message: why.message.clone(),
                            attempts: why.attempts,
                        }));
                    }
                    failure = Some(DeliveryFailure {
                        details: format!(
                            "Delivery to the HTTP endpoint {} failed after {} attempts ({}): {}",
                            http.url, why.attempts, why.code, why.message
                        ),
                    });
                }
            }
            if http.backup_all {
                writer
                    .write_records(&http.s3, records, Channel::BackupToS3)
                    .await;
            }
            if !failed.is_empty() {
                writer
                    .write_failed(&http.s3, "http-endpoint-failed", failed)
                    .await;
            }
            if writer.abandoned(stream.state().status) {
                return Outcome::Abandoned;
            }
            Outcome::Done(failure)
        }
    }
}

/// Writes objects for one batch of one stream.
struct ObjectWriter<'a> {
    stream: &'a DeliveryStream,
    deliverer: &'a Deliverer,
    version: u64,
    /// Set when an object was given up on at shutdown.
    gave_up: AtomicBool,
}

impl<'a> ObjectWriter<'a> {
    fn new(stream: &'a DeliveryStream, deliverer: &'a Deliverer, version: u64) -> Self {
        Self {
            stream,
            deliverer,
            version,
            gave_up: AtomicBool::new(false),
        }
    }

    /// Whether the batch must stay undelivered in the data directory: an object of it was given
    /// up on at shutdown, and the stream (in `status`) keeps its records for the next start.
    fn abandoned(&self, status: Status) -> bool {
        self.gave_up.load(Ordering::Relaxed)
            && self.deliverer.keeps_on_shutdown(self.stream, status)
    }
    /// Buffers processed records in their partitions. Records without the keys the prefix
    /// needs, and records that would open a partition beyond the limit, go to the error prefix.
    async fn partition(&self, s3: &S3Settings, records: Vec<OutRecord>) {
        let mut failed = Vec::new();
        {
            let mut state = self.stream.state();
            let mut exceeded = false;
            for record in records {
                let prefix = s3.prefixes.data().render(&PrefixValues {
                    at_ms: record.arrival_ms,
                    error_output_type: None,
                    query_keys: &record.query_keys,
                    lambda_keys: &record.lambda_keys,
                });
                let (record, code, message) = match prefix {
                    Err(why) => (record, "DynamicPartitioning.MetadataExtractionFailed", why),
                    Ok(_) => match state.partitions.push(record) {
                        Ok(()) => continue,
                        Err(record) => {
                            exceeded = true;
                            let message = format!(
                                "The delivery stream already has {MAX_ACTIVE_PARTITIONS} active partitions, the most it may have."
                            );
                            (record, ACTIVE_PARTITION_EXCEEDED, message)
                        }
                    },
                };
                failed.push(FailedRecord {
                    raw: record.data,
                    arrival_ms: record.arrival_ms,
                    error_code: code.to_owned(),
                    error_message: message,
                    attempts: 1,
                });
            }
            if state.target.partitioned().is_none() {
                // The destination changed while the batch was processed.
                state.unpartition();
            }
            metrics::partition_count(&self.stream.name, state.partitions.active());
            metrics::partition_count_exceeded(&self.stream.name, exceeded);
        }
        self.write_failed(s3, "partitioning-failed", failed).await;
    }

    /// Writes records as objects: one per distinct evaluated prefix (dynamic partitioning), each
    /// named after its oldest record. Records whose partition keys are missing go to the error
    /// prefix.
    async fn write_records(&self, s3: &S3Settings, records: Vec<OutRecord>, channel: Channel) {
        type PartitionKey = (BTreeMap<String, String>, BTreeMap<String, String>);
        let mut partitions: BTreeMap<PartitionKey, Vec<OutRecord>> = BTreeMap::new();
        for record in records {
            let key = (record.query_keys.clone(), record.lambda_keys.clone());
            partitions.entry(key).or_default().push(record);
        }
        let mut failed = Vec::new();
        for ((query_keys, lambda_keys), records) in partitions {
            let oldest = records
                .iter()
                .map(|r| r.arrival_ms)
                .min()
                .unwrap_or_else(|| self.deliverer.now());
            let prefix = s3.prefixes.data().render(&PrefixValues {
                at_ms: oldest,
                error_output_type: None,
                query_keys: &query_keys,
                lambda_keys: &lambda_keys,
            });
            match prefix {
                Ok(prefix) => {
                    let body: Vec<u8> = records
                        .iter()
                        .flat_map(|r| r.data.iter().copied())
                        .collect();
                    self.write_object(s3, &prefix, oldest, &body, (channel, records.len()))
                        .await;
                }
                Err(why) => failed.extend(records.into_iter().map(|r| FailedRecord {
                    raw: r.data,
                    arrival_ms: r.arrival_ms,
                    error_code: "DynamicPartitioning.MetadataExtractionFailed".to_owned(),
                    error_message: why.clone(),
                    attempts: 1,
                })),
            }
        }
        self.write_failed(s3, "partitioning-failed", failed).await;
    }

    /// Writes failed records under the error prefix as Firehose's JSON error documents, one
    /// per line.
    async fn write_failed(
        &self,
        s3: &S3Settings,
        error_output_type: &str,
        records: Vec<FailedRecord>,
    ) {
        let Some(oldest) = records.iter().map(|r| r.arrival_ms).min() else {
            return;
        };
        let none = BTreeMap::new();
        let prefix = s3.prefixes.error().render(&PrefixValues {
            at_ms: oldest,
            error_output_type: Some(error_output_type),
            query_keys: &none,
            lambda_keys: &none,
        });
        let Ok(prefix) = prefix else {
            // Error prefixes cannot use partition keys, so they always render.
            return;
        };
        let now = self.deliverer.now();
        let mut body = Vec::new();
        for record in &records {
            let document = serde_json::json!({
                "attemptsMade": record.attempts,
                "arrivalTimestamp": record.arrival_ms,
                "errorCode": record.error_code,
                "errorMessage": record.error_message,
                "attemptEndingTimestamp": now,
                "rawData": BASE64.encode(&record.raw),
            });
            body.extend_from_slice(document.to_string().as_bytes());
            body.push(b'\n');
        }
        tracing::warn!(stream = %self.stream.name, records = records.len(), error_output_type, "records delivered to the error prefix");
        self.write_object(
            s3,
            &prefix,
            oldest,
            &body,
            (Channel::BackupToS3, records.len()),
        )
        .await;
    }

    /// Compresses and stores one object of `records` records, retrying until it is stored (a few
    /// attempts only once the broker is shutting down).
    async fn write_object(
        &self,
        s3: &S3Settings,
        prefix: &str,
        oldest_ms: i64,
        body: &[u8],
        (channel, records): (Channel, usize),
    ) {
        let name = object_name(&self.stream.name, self.version, oldest_ms, &s3.extension);
        let key = format!("{prefix}{name}");
        let entry = name.strip_suffix(s3.extension.as_str()).unwrap_or(&name);
        let compressed = match s3.compression.compress(body, entry) {
            Ok(compressed) => compressed,
            Err(err) => {
                tracing::error!(%err, %key, "cannot compress an object; storing it uncompressed");
                body.to_vec()
            }
        };
        let mut backoff = Duration::from_millis(500);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self
                .deliverer
                .objects
                .put(&s3.bucket, &key, compressed.clone())
                .await
            {
                Ok(()) => {
                    tracing::debug!(bucket = %s3.bucket, %key, bytes = compressed.len(), "object delivered");
                    metrics::delivery(&self.stream.name, channel, records, body.len(), true);
                    return;
                }
                Err(err) if self.stream.stop.is_cancelled() && attempts >= SHUTDOWN_ATTEMPTS => {
                    tracing::warn!(%err, bucket = %s3.bucket, %key, "giving up on an object at shutdown; its records are lost unless the data directory keeps them");
                    self.gave_up.store(true, Ordering::Relaxed);
                    metrics::delivery(&self.stream.name, channel, records, body.len(), false);
                    return;
                }
                Err(err) => {
                    metrics::delivery(&self.stream.name, channel, records, body.len(), false);
                    self.stream.state().failure = Some(DeliveryFailure {
                        details: format!("Cannot store s3://{}/{key}: {err}", s3.bucket),
                    });
                    tracing::warn!(%err, bucket = %s3.bucket, %key, attempts, "cannot store an object; retrying");
                    // A shutdown cuts a long pause short and starts the last few attempts.
                    let stopping = self.stream.stop.is_cancelled();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stream.stop.cancelled(), if !stopping => attempts = 0,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

impl OutRecord {
    /// A record as it arrived, for source backups.
    fn unprocessed(record: &BufferedRecord) -> Self {
        Self {
            data: record.data.clone(),
            arrival_ms: record.arrival_ms,
            query_keys: BTreeMap::new(),
            lambda_keys: BTreeMap::new(),
            log: record.log,
        }
    }
}
