//! Amazon Data Firehose (AWS JSON 1.1, `Firehose_20150804.*`): delivery streams that buffer
//! records and really deliver them.
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | wire shapes |
//! | `control` | Create/Delete/Describe/List, UpdateDestination, tags, encryption |
//! | `records` | PutRecord, PutRecordBatch |
//! | `source` | KinesisStreamAsSource: reading a broker stream from LATEST |
//! | `kpl` | de-aggregating KPL-aggregated records read from the source |
//! | `store` | delivery streams and buffered records in the data directory |
//! | `metrics` | delivery metrics named as in CloudWatch |
//! | [`model`] | the domain: a delivery stream, its status, version and buffer |
//! | [`settings`] | destination configurations checked and resolved |
//! | [`buffering`] | size and interval hints |
//! | [`partitions`] | dynamic partitioning: a buffer per partition, the active-partition limit |
//! | [`processing`] | processors between buffer and destination |
//! | `delivery` | the per-stream delivery task: batches to S3 objects or HTTP endpoints |
//! | [`http_endpoint`] | the HTTP endpoint delivery contract (client side) |
//! | [`prefix`], [`compression`], [`objects`] | S3 keys, object compression, the object store |
//!
//! Every delivery stream has one task that waits for its buffer to fill or its interval to pass
//! and then delivers. Without a data directory, buffered records live in memory only and
//! [`Firehose::shutdown`] delivers whatever is still buffered. With one, delivery streams and
//! every accepted record are stored (`store`) before the put is answered; shutdown leaves what is
//! buffered there, and the next start delivers it (at least once, never lost).

pub mod api;
pub mod buffering;
pub mod compression;
mod control;
mod delivery;
pub mod http_endpoint;
mod kpl;
mod metrics;
pub mod model;
pub mod objects;
pub mod partitions;
pub mod prefix;
pub mod processing;
mod records;
pub mod settings;
mod source;
mod store;

use crate::config::BrokerConfig;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Wire;
use crate::http::validation::Validator;
use crate::kinesis::Kinesis;
use crate::observe::Observer;
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use model::{DeliveryStream, DestinationConfig, Status, StreamState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Delivery streams allowed per account and region (the current default quota).
pub const DELIVERY_STREAM_LIMIT: usize = 5000;

/// How often log segments holding only delivered records are deleted.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// A delivery stream's task, and its source reader if it has one, waiting for
/// [`Firehose::start`].
type Pending = (
    Arc<DeliveryStream>,
    Option<(source::KinesisReader, source::Cursors)>,
);

/// Why the delivery streams of a data directory could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The data directory could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored stream needs something this broker was not started with.
    #[error(transparent)]
    Unservable(#[from] UnservableStream),
}

/// A stored delivery stream this broker cannot deliver for, and why.
#[derive(Debug, thiserror::Error)]
#[error(
    "Firehose delivery stream {stream} in the data directory cannot be served: {why} (start the broker with what it needs, or with another data directory)"
)]
pub struct UnservableStream {
    pub stream: String,
    pub why: String,
}

/// The Firehose service: all delivery streams of the broker's account and region.
pub struct Firehose {
    config: BrokerConfig,
    kinesis: Arc<Kinesis>,
    /// Where Lambda processors' functions are served.
    functions: processing::Functions,
    streams: Arc<Mutex<BTreeMap<String, Arc<DeliveryStream>>>>,
    deliverer: Arc<delivery::Deliverer>,
    store: Store,
    /// The broker's recorder, which background tasks record into; set by [`Self::start`].
    observer: OnceLock<Arc<Observer>>,
    /// Restored streams whose tasks [`Self::start`] starts.
    pending: Mutex<Vec<Pending>>,
    /// Stops every delivery task (without a data directory, each delivers what it buffered
    /// first).
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Firehose {
    /// The service with the delivery streams `meta` holds (none without a data directory) and
    /// their undelivered records from `storage`; S3 destinations write to `objects`, and
    /// Kinesis-sourced streams read from `kinesis`. Nothing is delivered before [`Self::start`].
    ///
    /// Fails if the data directory cannot be read, or holds a delivery stream this broker cannot
    /// deliver for (an S3 destination without `--s3-root`/`--s3-endpoint`, a transform whose
    /// function is not configured).
    pub fn new(
        config: BrokerConfig,
        objects: objects::ObjectStore,
        kinesis: Arc<Kinesis>,
        storage: &Storage,
        meta: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, RestoreError> {
        let (store, restored) = Store::restore(storage, meta)?;
        let deliverer = Arc::new(delivery::Deliverer::new(
            Arc::clone(&config.clock),
            objects,
            config.region.clone(),
            store.clone(),
        ));
        let firehose = Self {
            functions: Arc::new(config.lambda_functions.clone()),
            config,
            kinesis,
            streams: Arc::default(),
            deliverer,
            store,
            observer: OnceLock::new(),
            pending: Mutex::default(),
            stop: CancellationToken::new(),
            tasks: Mutex::default(),
        };
        for stream in restored {
            firehose.restore(stream)?;
        }
        Ok(firehose)
    }

    /// Rebuilds one stored delivery stream.
    fn restore(&self, restored: store::RestoredStream) -> Result<(), UnservableStream> {
        let name = restored.name;
        let state = restored.state;
        let cannot = |why: String| UnservableStream {
            stream: name.clone(),
            why,
        };
        let member = match state.destination {
            DestinationConfig::S3(_) => "extendedS3DestinationConfiguration",
            DestinationConfig::HttpEndpoint(_) => "httpEndpointDestinationConfiguration",
        };
        let target = self
            .target(&state.destination, member)
            .map_err(|err| cannot(err.message))?;
        let mut buffer = buffering::Buffer::default();
        for record in state.buffered {
            buffer.push(record);
        }
        let reader = match &restored.source {
            // A DELETING stream reads nothing more.
            model::Source::KinesisStream {
                stream_name,
                start_ms,
                ..
            } if state.status != Status::Deleting => {
                let reader =
                    source::KinesisReader::new(Arc::clone(&self.kinesis), stream_name.clone());
                match reader.resume(restored.source_position.as_deref(), *start_ms) {
                    Ok(cursors) => Some((reader, cursors)),
                    Err(err) => {
                        // Its source stream is gone: what was read is still delivered.
                        tracing::warn!(stream = %name, source = %stream_name, code = err.code, message = %err.message, "cannot read the delivery stream's source; it reads nothing more");
                        None
                    }
                }
            }
            _ => None,
        };
        let stream = Arc::new(DeliveryStream::new(
            name.clone(),
            restored.arn,
            restored.created_ms,
            restored.source,
            StreamState {
                status: state.status,
                version: state.version,
                last_update_ms: state.last_update_ms,
                destination: state.destination,
                target,
                tags: state.tags,
                encryption: state.encryption,
                buffer,
                partitions: Default::default(),
                delivering: None,
                failure: None,
            },
            self.stop.child_token(),
        ));
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::clone(&stream));
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((stream, reader));
        Ok(())
    }

    /// Starts delivering: the tasks of restored streams, and (with a data directory) the expiry
    /// of delivered log segments. Background work records its metrics into `observer`.
    pub fn start(&self, observer: Arc<Observer>) {
        let _ = self.observer.set(observer);
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for (stream, reader) in pending {
            let status = stream.state().status;
            self.start_delivery(&stream, reader);
            match status {
                Status::Creating => self.become_active(stream),
                Status::Deleting => self.finish_deleting(stream),
                Status::Active => {}
            }
        }
        if self.store.is_durable() {
            self.spawn(expire_delivered(
                Arc::clone(&self.streams),
                self.store.clone(),
                self.stop.clone(),
            ));
        }
    }

    /// Every delivery stream's buffer, for `/metrics`.
    pub fn buffers(&self) -> Vec<BufferView> {
        let streams: Vec<Arc<DeliveryStream>> = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        streams
            .iter()
            .map(|stream| {
                let state = stream.state();
                BufferView {
                    name: stream.name.clone(),
                    destination: match state.destination {
                        DestinationConfig::S3(_) => "DeliveryToS3",
                        DestinationConfig::HttpEndpoint(_) => "DeliveryToHttpEndpoint",
                    },
                    records: state.buffered_records(),
                    oldest_ms: state.oldest_undelivered(),
                }
            })
            .collect()
    }

    /// Runs one operation.
    pub fn dispatch(&self, operation: &str, wire: &Wire) -> ApiResult<Bytes> {
        macro_rules! route {
            ($($name:literal => $handler:ident),* $(,)?) => {
                match operation {
                    $($name => wire.encode(&self.$handler(wire.decode()?)?),)*
                    _ => Err(ApiError::unknown_operation(operation)),
                }
            };
        }
        route! {
            "CreateDeliveryStream" => create_delivery_stream,
            "DeleteDeliveryStream" => delete_delivery_stream,
            "DescribeDeliveryStream" => describe_delivery_stream,
            "ListDeliveryStreams" => list_delivery_streams,
            "UpdateDestination" => update_destination,
            "TagDeliveryStream" => tag_delivery_stream,
            "UntagDeliveryStream" => untag_delivery_stream,
            "ListTagsForDeliveryStream" => list_tags_for_delivery_stream,
            "StartDeliveryStreamEncryption" => start_delivery_stream_encryption,
            "StopDeliveryStreamEncryption" => stop_delivery_stream_encryption,
            "PutRecord" => put_record,
            "PutRecordBatch" => put_record_batch,
        }
    }

    /// Stops every delivery task, and waits for them: without a data directory each first
    /// delivers what it buffered; with one, what is buffered stays there for the next start.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            if let Err(err) = task.await {
                tracing::error!(%err, "a Firehose delivery task ended abnormally");
            }
        }
    }

    fn now(&self) -> i64 {
        self.config.clock.now_millis()
    }

    fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:firehose:{}:{}:deliverystream/{}",
            self.config.region, self.config.account_id, name
        )
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(format!(
            "Firehose {name} under account {} not found.",
            self.config.account_id
        ))
    }

    /// Checks a `DeliveryStreamName` member, finishes validation and returns the stream.
    fn resolve(&self, name: &Option<String>, mut v: Validator) -> ApiResult<Arc<DeliveryStream>> {
        if let Some(name) = v.required(name, "deliveryStreamName") {
            validate_name(name, "deliveryStreamName", &mut v);
        }
        v.finish()?;
        let name = name.as_deref().unwrap_or_default();
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))
    }

    /// Like [`Self::resolve`], for data calls: the stream must be ACTIVE.
    fn resolve_active(
        &self,
        name: &Option<String>,
        v: Validator,
    ) -> ApiResult<Arc<DeliveryStream>> {
        let stream = self.resolve(name, v)?;
        self.check_active(&stream, stream.state().status)?;
        Ok(stream)
    }

    /// The error a data call on `stream` gets unless its `status` is ACTIVE. Data calls check
    /// again under the lock they buffer with: a stream deleted meanwhile accepts nothing.
    fn check_active(&self, stream: &DeliveryStream, status: Status) -> ApiResult<()> {
        if status == Status::Active {
            return Ok(());
        }
        Err(ApiError::not_found(format!(
            "Firehose {} under account {} is not active (status {}).",
            stream.name,
            self.config.account_id,
            status.as_str()
        )))
    }

    /// Runs `change` after the state-transition delay (at once when it is zero or there is no
    /// runtime to wait on).
    fn after_delay(&self, change: impl FnOnce() + Send + 'static) {
        let delay = self.config.state_transition_delay;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !delay.is_zero() => {
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    change();
                });
            }
            _ => change(),
        }
    }

    /// CREATING → ACTIVE once the state transition delay has passed (again in full for a
    /// stream restored while CREATING).
    fn become_active(&self, stream: Arc<DeliveryStream>) {
        let store = self.store.clone();
        self.after_delay(move || {
            let mut state = stream.state();
            if state.status == Status::Creating {
                state.status = Status::Active;
                if let Err(err) = store.persist(&stream, &state) {
                    tracing::error!(stream = %stream.name, %err, "cannot store a Firehose stream's status");
                }
            }
        });
    }

    /// Ends a DELETING stream: its delivery task delivers what is buffered and ends; once that
    /// is done and the state transition delay has passed, the stream is gone, from the data
    /// directory too. A broker stopping first keeps it DELETING there, and the next start
    /// finishes the deletion.
    fn finish_deleting(&self, stream: Arc<DeliveryStream>) {
        stream.stop.cancel();
        let delay = self.config.state_transition_delay;
        let broker_stop = self.stop.clone();
        let streams = Arc::clone(&self.streams);
        let store = self.store.clone();
        self.spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = broker_stop.cancelled() => return,
                }
            }
            stream.finished.cancelled().await;
            let mut streams = streams.lock().unwrap_or_else(|p| p.into_inner());
            if streams
                .get(&stream.name)
                .is_some_and(|s| Arc::ptr_eq(s, &stream))
            {
                streams.remove(&stream.name);
                if let Err(err) = store.remove(&stream.name) {
                    tracing::error!(stream = %stream.name, %err, "cannot forget a deleted Firehose stream; it comes back DELETING after a restart");
                }
            }
        });
    }

    /// Starts the delivery task of a new stream, and its source reader if it has one.
    fn start_delivery(
        &self,
        stream: &Arc<DeliveryStream>,
        reader: Option<(source::KinesisReader, source::Cursors)>,
    ) {
        if let Some((reader, cursors)) = reader {
            let clock = Arc::clone(&self.config.clock);
            self.spawn(source::run(
                Arc::clone(stream),
                reader,
                cursors,
                clock,
                self.store.clone(),
            ));
        }
        self.spawn(delivery::run(
            Arc::clone(stream),
            Arc::clone(&self.deliverer),
        ));
    }

    /// Runs a background task in the broker's recorder (when there is a runtime to run it on).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(match self.observer.get() {
            Some(observer) => runtime.spawn(observer.scope(task)),
            None => runtime.spawn(task),
        });
    }
}

/// One delivery stream's buffer, for `/metrics`.
#[derive(Debug)]
pub struct BufferView {
    pub name: String,
    /// The CloudWatch metric prefix of the destination: `DeliveryToS3`, `DeliveryToHttpEndpoint`.
    pub destination: &'static str,
    pub records: usize,
    /// When the oldest record not yet delivered arrived.
    pub oldest_ms: Option<i64>,
}

/// Deletes log segments whose records are all delivered, every [`EXPIRY_INTERVAL`].
async fn expire_delivered(
    streams: Arc<Mutex<BTreeMap<String, Arc<DeliveryStream>>>>,
    store: Store,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        let streams: Vec<Arc<DeliveryStream>> = streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        // Read the log's end first: a record logged after this is past it.
        let end = store.log_end();
        let horizon = streams
            .iter()
            .filter_map(|s| s.state().oldest_undelivered_log())
            .map(|mark| mark.position)
            .fold(end, u64::min);
        match store.expire_before(horizon) {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "deleted delivered Firehose log segments"),
            Err(err) => tracing::warn!(%err, "cannot delete delivered Firehose log segments"),
        }
    }
}

/// Delivery stream names: 1–64 characters of `[a-zA-Z0-9_.-]`.
fn validate_name(name: &str, member: &str, v: &mut Validator) {
    v.length(name, member, 1, 64);
    v.chars(name, member, "[a-zA-Z0-9_.-]+", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    });
}
