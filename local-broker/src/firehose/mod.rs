//! Amazon Data Firehose (AWS JSON 1.1, `Firehose_20150804.*`): delivery streams that buffer
//! records and really deliver them.
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | wire shapes |
//! | `control` | Create/Delete/Describe/List, UpdateDestination, tags, encryption |
//! | `records` | PutRecord, PutRecordBatch |
//! | `source` | KinesisStreamAsSource: reading a broker stream from LATEST |
//! | [`model`] | the domain: a delivery stream, its status, version and buffer |
//! | [`settings`] | destination configurations checked and resolved |
//! | [`buffering`] | size and interval hints |
//! | [`processing`] | processors between buffer and destination |
//! | `delivery` | the per-stream delivery task: batches to S3 objects or HTTP endpoints |
//! | [`http_endpoint`] | the HTTP endpoint delivery contract (client side) |
//! | [`prefix`], [`compression`], [`objects`] | S3 keys, object compression, the object store |
//!
//! Every delivery stream has one task that waits for its buffer to fill or its interval to pass
//! and then delivers; [`Firehose::shutdown`] delivers whatever is still buffered. Buffered
//! records live in memory only: a broker restart loses what was not delivered yet.

pub mod api;
pub mod buffering;
pub mod compression;
mod control;
mod delivery;
pub mod http_endpoint;
pub mod model;
pub mod objects;
pub mod prefix;
pub mod processing;
mod records;
pub mod settings;
mod source;

use crate::config::BrokerConfig;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Wire;
use crate::http::validation::Validator;
use crate::kinesis::Kinesis;
use bytes::Bytes;
use model::{DeliveryStream, Status};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Delivery streams allowed per account and region (the current default quota).
pub const DELIVERY_STREAM_LIMIT: usize = 5000;

/// The Firehose service: all delivery streams of the broker's account and region.
pub struct Firehose {
    config: BrokerConfig,
    kinesis: Arc<Kinesis>,
    /// Where Lambda processors' functions are served.
    functions: processing::Functions,
    streams: Arc<Mutex<BTreeMap<String, Arc<DeliveryStream>>>>,
    deliverer: Arc<delivery::Deliverer>,
    /// Stops every delivery task (each delivers what it buffered first).
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Firehose {
    /// A service with no delivery streams; S3 destinations write to `objects`, and
    /// Kinesis-sourced streams read from `kinesis`.
    pub fn new(config: BrokerConfig, objects: objects::ObjectStore, kinesis: Arc<Kinesis>) -> Self {
        let deliverer = Arc::new(delivery::Deliverer::new(
            Arc::clone(&config.clock),
            objects,
            config.region.clone(),
        ));
        Self {
            functions: Arc::new(config.lambda_functions.clone()),
            config,
            kinesis,
            streams: Arc::default(),
            deliverer,
            stop: CancellationToken::new(),
            tasks: Mutex::default(),
        }
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

    /// Stops every delivery task after it has delivered what it buffered, and waits for them.
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
        let status = stream.state().status;
        if status != Status::Active {
            return Err(ApiError::not_found(format!(
                "Firehose {} under account {} is not active (status {}).",
                stream.name,
                self.config.account_id,
                status.as_str()
            )));
        }
        Ok(stream)
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

    /// Starts the delivery task of a new stream, and its source reader if it has one.
    fn start_delivery(
        &self,
        stream: &Arc<DeliveryStream>,
        reader: Option<(source::KinesisReader, source::Cursors)>,
    ) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.retain(|t| !t.is_finished());
            if let Some((reader, cursors)) = reader {
                let clock = Arc::clone(&self.config.clock);
                tasks.push(runtime.spawn(source::run(Arc::clone(stream), reader, cursors, clock)));
            }
            tasks.push(runtime.spawn(delivery::run(
                Arc::clone(stream),
                Arc::clone(&self.deliverer),
            )));
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
