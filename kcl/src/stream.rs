//! Streams an application consumes: [`StreamIdentifier`] (which stream, as the Java KCL names it
//! in lease keys), [`StreamConfig`] (a stream and where to start it), and the [`StreamTracker`]
//! that tells a multi-stream application which streams to consume, at runtime.
//!
//! One application can consume several streams with one lease table (the Java KCL's multi-stream
//! mode): give [`SchedulerBuilder::stream_tracker`](crate::SchedulerBuilder::stream_tracker) a
//! tracker instead of a stream name. Leases are then keyed `account:stream:creationEpoch:shardId`
//! and carry `streamName` (`account:stream:creationEpoch`) and `shardId` attributes, exactly as
//! the Java KCL's `MultiStreamLease`, so a Java multi-stream fleet's table is readable.
//!
//! ```no_run
//! use async_trait::async_trait;
//! use kcl::{InitialPosition, InitializationInput, ProcessRecordsInput, ProcessorError,
//!           RecordProcessor, Scheduler, StreamConfig, StreamIdentifier, StreamSet};
//! use tokio_util::sync::CancellationToken;
//!
//! #[derive(Default)]
//! struct Printer {
//!     stream: String,
//! }
//!
//! #[async_trait]
//! impl RecordProcessor for Printer {
//!     async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
//!         // In a multi-stream application every shard says which stream it belongs to.
//!         self.stream = input.stream.map(|s| s.name().to_owned()).unwrap_or_default();
//!         Ok(())
//!     }
//!
//!     async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
//!         for record in &input.records {
//!             println!("{}: {:?}", self.stream, record.data);
//!         }
//!         input.checkpointer.checkpoint().await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let aws = aws_config::load_from_env().await;
//! let kinesis = aws_sdk_kinesis::Client::new(&aws);
//! // Account id and creation time from DescribeStreamSummary; or `"123456789012:orders:1700000000".parse()?`.
//! let orders = StreamIdentifier::describe(&kinesis, "orders").await?;
//! let streams = StreamSet::new([StreamConfig::new(orders, InitialPosition::TrimHorizon)]);
//! let scheduler = Scheduler::builder()
//!     .stream_tracker(streams.clone())
//!     .application_name("all-orders")
//!     .kinesis_client(kinesis.clone())
//!     .dynamodb_client(aws_sdk_dynamodb::Client::new(&aws))
//!     .processor_factory(Printer::default)
//!     .build()?;
//! let shutdown = CancellationToken::new();
//! let worker = tokio::spawn(scheduler.run(shutdown.clone()));
//! // Later, at runtime: start consuming another stream, stop consuming one.
//! let refunds = StreamIdentifier::describe(&kinesis, "refunds").await?;
//! streams.add(StreamConfig::new(refunds.clone(), InitialPosition::Latest));
//! streams.remove(&refunds);
//! # shutdown.cancel(); worker.await??; Ok(()) }
//! ```
//!
//! How the scheduler follows the tracker (every
//! [`Config::stream_check_interval`](crate::Config::stream_check_interval)):
//! - a new stream gets leases for its shards at once (by every worker that sees it, conditionally,
//!   so only once), starting at the stream's own initial position;
//! - a removed stream stops: its shard consumers get `shutdown_requested` (a last checkpoint) and
//!   release their leases, and no worker takes them again while the stream stays removed. Its
//!   leases are deleted once it has been absent for
//!   [`Config::former_stream_leases`](crate::Config::former_stream_leases) (unlike the Java KCL,
//!   which keeps processing a removed stream until its leases are deleted);
//! - a stream added back before its leases are deleted resumes from its checkpoints.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;

use crate::config::InitialPosition;
use crate::lease::Lease;
use crate::retrieval::Retrieval;
use crate::retrieval::fan_out::StreamConsumer;

/// A stream of a multi-stream application: account id, stream name and creation time (seconds
/// since the epoch), written `account:name:creationEpoch` as in the Java KCL. The creation time
/// tells apart two streams of one name (deleted and created again); it is taken as given, not
/// checked against Kinesis.
///
/// ```
/// use kcl::StreamIdentifier;
///
/// let orders: StreamIdentifier = "123456789012:orders:1700000000".parse().unwrap();
/// assert_eq!(orders.name(), "orders");
/// assert_eq!(orders.lease_key("shardId-000000000001"), "123456789012:orders:1700000000:shardId-000000000001");
/// assert_eq!(orders, StreamIdentifier::new("123456789012", "orders", 1_700_000_000).unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamIdentifier {
    account_id: String,
    name: String,
    creation_epoch: u64,
}

/// A stream identifier that does not have the `account:name:creationEpoch` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid stream identifier {0:?}: expected account:name:creationEpoch, with a numeric \
     account id, a stream name without ':' and a creation epoch above 0"
)]
pub struct InvalidStreamIdentifier(String);

/// Why [`StreamIdentifier::describe`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DescribeStreamError {
    /// `DescribeStreamSummary` failed (e.g. the stream does not exist).
    #[error("DescribeStreamSummary on stream {stream} failed: {message}")]
    Request {
        /// The stream.
        stream: String,
        /// The service's error code and message.
        message: String,
    },
    /// The answer lacked a usable ARN or creation time.
    #[error(transparent)]
    Invalid(#[from] InvalidStreamIdentifier),
}

impl StreamIdentifier {
    /// A stream of `account_id` named `name`, created at `creation_epoch` (seconds since the
    /// epoch). Fails on the values the Java KCL refuses: a non-numeric account id, a name with
    /// `:`, an epoch of 0.
    pub fn new(
        account_id: impl Into<String>,
        name: impl Into<String>,
        creation_epoch: u64,
    ) -> Result<Self, InvalidStreamIdentifier> {
        let (account_id, name) = (account_id.into(), name.into());
        let valid = !account_id.is_empty()
            && account_id.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty()
            && !name.contains(':')
            && creation_epoch > 0;
        if !valid {
            return Err(InvalidStreamIdentifier(format!(
                "{account_id}:{name}:{creation_epoch}"
            )));
        }
        Ok(Self {
            account_id,
            name,
            creation_epoch,
        })
    }

    /// The identifier of an existing stream, from `DescribeStreamSummary` (the account id in its
    /// ARN, its creation timestamp).
    pub async fn describe(
        kinesis: &aws_sdk_kinesis::Client,
        name: &str,
    ) -> Result<Self, DescribeStreamError> {
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| DescribeStreamError::Request {
                stream: name.to_owned(),
                message: crate::retrieval::describe(&e),
            })?
            .stream_description_summary
            .ok_or_else(|| InvalidStreamIdentifier(format!("{name}: no stream description")))?;
        // arn:aws:kinesis:region:account:stream/name
        let account = summary.stream_arn.split(':').nth(4).unwrap_or_default();
        let created = std::time::SystemTime::try_from(summary.stream_creation_timestamp)
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        Ok(Self::new(account, name, created)?)
    }

    /// The AWS account that owns the stream.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the stream was created, in seconds since the epoch.
    pub fn creation_epoch(&self) -> u64 {
        self.creation_epoch
    }

    /// The lease key of one of the stream's shards: `account:name:creationEpoch:shardId`.
    pub fn lease_key(&self, shard_id: &str) -> String {
        format!("{self}:{shard_id}")
    }
}

/// The lease key of a shard of `stream`, or of a single-stream application's shard (`None`: the
/// bare shard id). The one place that chooses between the two forms.
pub(crate) fn lease_key(stream: Option<&StreamIdentifier>, shard_id: &str) -> String {
    match stream {
        Some(stream) => stream.lease_key(shard_id),
        None => shard_id.to_owned(),
    }
}

impl fmt::Display for StreamIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.account_id, self.name, self.creation_epoch
        )
    }
}

impl FromStr for StreamIdentifier {
    type Err = InvalidStreamIdentifier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidStreamIdentifier(s.to_owned());
        let mut parts = s.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(account), Some(name), Some(epoch), None) => {
                let epoch = epoch.parse().map_err(|_| invalid())?;
                Self::new(account, name, epoch).map_err(|_| invalid())
            }
            _ => Err(invalid()),
        }
    }
}

/// A stream to consume and where to start its shards that have no lease yet (the Java KCL's
/// `StreamConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The stream.
    pub stream: StreamIdentifier,
    /// Where its new leases start; like the single-stream setting, it applies only when a lease
    /// is created.
    pub initial_position: InitialPosition,
}

impl StreamConfig {
    /// Consume `stream`, starting new leases at `initial_position`.
    pub fn new(stream: StreamIdentifier, initial_position: InitialPosition) -> Self {
        Self {
            stream,
            initial_position,
        }
    }
}

/// What a [`StreamTracker`] reports when it cannot tell the streams right now.
pub type StreamTrackerError = Box<dyn std::error::Error + Send + Sync>;

/// Tells a multi-stream application which streams to consume (the Java KCL's
/// `MultiStreamTracker`). The scheduler asks every
/// [`Config::stream_check_interval`](crate::Config::stream_check_interval); the answer may change
/// between calls. [`StreamSet`] is a ready one whose streams are added and removed through a
/// handle; a `Vec<StreamConfig>` is a fixed set.
#[async_trait]
pub trait StreamTracker: Send + Sync + 'static {
    /// The streams to consume now. An error keeps the streams of the last answer (a failed
    /// lookup must not stop every stream).
    async fn stream_configs(&self) -> Result<Vec<StreamConfig>, StreamTrackerError>;
}

#[async_trait]
impl StreamTracker for Vec<StreamConfig> {
    async fn stream_configs(&self) -> Result<Vec<StreamConfig>, StreamTrackerError> {
        Ok(self.clone())
    }
}

/// A [`StreamTracker`] changed at runtime through any of its clones: keep one clone, give another
/// to the scheduler (or to several schedulers of one process).
#[derive(Debug, Clone, Default)]
pub struct StreamSet {
    streams: Arc<Mutex<BTreeMap<StreamIdentifier, StreamConfig>>>,
}

impl StreamSet {
    /// A set of these streams.
    pub fn new(streams: impl IntoIterator<Item = StreamConfig>) -> Self {
        let set = Self::default();
        for config in streams {
            set.add(config);
        }
        set
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<StreamIdentifier, StreamConfig>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts consuming a stream (or changes its initial position); returns whether it is new.
    pub fn add(&self, config: StreamConfig) -> bool {
        self.map().insert(config.stream.clone(), config).is_none()
    }

    /// Stops consuming a stream; returns whether it was there.
    pub fn remove(&self, stream: &StreamIdentifier) -> bool {
        self.map().remove(stream).is_some()
    }

    /// The streams in the set.
    pub fn streams(&self) -> Vec<StreamConfig> {
        self.map().values().cloned().collect()
    }
}

#[async_trait]
impl StreamTracker for StreamSet {
    async fn stream_configs(&self) -> Result<Vec<StreamConfig>, StreamTrackerError> {
        Ok(self.streams())
    }
}

/// A stream as one worker consumes it: where its leases are, where new ones start, how its
/// records are read.
pub(crate) struct ConsumedStream {
    /// `None` in single-stream mode, where lease keys are bare shard ids.
    pub(crate) id: Option<StreamIdentifier>,
    pub(crate) name: String,
    pub(crate) initial_position: InitialPosition,
    pub(crate) retrieval: Retrieval,
}

impl ConsumedStream {
    /// `fan_out_consumer`: the stream consumer's name with enhanced fan-out, `None` for polling.
    pub(crate) fn new(
        kinesis: &aws_sdk_kinesis::Client,
        id: Option<StreamIdentifier>,
        name: String,
        initial_position: InitialPosition,
        fan_out_consumer: Option<&str>,
    ) -> Self {
        let retrieval = match fan_out_consumer {
            None => Retrieval::Polling,
            Some(consumer) => Retrieval::FanOut(Arc::new(StreamConsumer::new(
                kinesis.clone(),
                name.clone(),
                consumer.to_owned(),
            ))),
        };
        Self {
            id,
            name,
            initial_position,
            retrieval,
        }
    }

    /// The lease key of one of this stream's shards.
    pub(crate) fn lease_key(&self, shard_id: &str) -> String {
        lease_key(self.id.as_ref(), shard_id)
    }

    /// Whether `lease` is one of this stream's.
    pub(crate) fn owns(&self, lease: &Lease) -> bool {
        lease.stream == self.id
    }

    /// A new, free lease for one of this stream's shards.
    pub(crate) fn new_lease(
        &self,
        shard_id: &str,
        checkpoint: crate::checkpoint::ExtendedSequenceNumber,
    ) -> Lease {
        Lease::for_shard(self.id.as_ref(), shard_id, checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip_through_the_java_kcl_form() {
        let id: StreamIdentifier = "000000000000:orders:1700000000".parse().expect("valid");
        assert_eq!(id.account_id(), "000000000000");
        assert_eq!(id.creation_epoch(), 1_700_000_000);
        assert_eq!(id.to_string(), "000000000000:orders:1700000000");
        assert_eq!(
            id.lease_key("shardId-000000000003"),
            "000000000000:orders:1700000000:shardId-000000000003"
        );
    }

    #[test]
    fn identifiers_the_java_kcl_refuses_are_refused() {
        for bad in [
            "orders",
            "acct:orders:1",
            "1:orders:0",
            "1:orders:x",
            "1:a:b:2",
            ":orders:1",
            "1::1",
        ] {
            assert!(bad.parse::<StreamIdentifier>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_stream_set_adds_replaces_and_removes() {
        let id: StreamIdentifier = "1:a:1".parse().expect("valid");
        let set = StreamSet::default();
        assert!(set.add(StreamConfig::new(id.clone(), InitialPosition::Latest)));
        assert!(!set.add(StreamConfig::new(id.clone(), InitialPosition::TrimHorizon)));
        assert_eq!(
            set.streams()[0].initial_position,
            InitialPosition::TrimHorizon
        );
        assert!(set.remove(&id));
        assert!(set.streams().is_empty());
    }
}
