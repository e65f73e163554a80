//! The domain: a delivery stream, its status, configuration version, destination and buffer.

use super::api::{HttpEndpointDestination, S3Destination};
use super::buffering::{Buffer, Buffered, BufferedRecord};
use super::partitions::Partitions;
use super::settings::Target;
use super::store::LogMark;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// `DeliveryStreamStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Active,
    Deleting,
}

impl Status {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "CREATING",
            Status::Active => "ACTIVE",
            Status::Deleting => "DELETING",
        }
    }

    /// The status a wire value names.
    pub fn parse(value: &str) -> Option<Self> {
        [Status::Creating, Status::Active, Status::Deleting]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// Where records come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// PutRecord / PutRecordBatch.
    DirectPut { throughput_hint_in_mbs: Option<i64> },
    /// A broker Kinesis stream, read from LATEST.
    KinesisStream {
        stream_arn: String,
        stream_name: String,
        role_arn: String,
        /// When reading started (DeliveryStartTimestamp).
        start_ms: i64,
    },
}

impl Source {
    /// `DeliveryStreamType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Source::DirectPut { .. } => "DirectPut",
            Source::KinesisStream { .. } => "KinesisStreamAsSource",
        }
    }
}

/// The destination as configured (described back verbatim, secrets aside).
// One per delivery stream, rarely moved: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DestinationConfig {
    /// `S3DestinationConfiguration` or `ExtendedS3DestinationConfiguration`.
    S3(S3Destination),
    HttpEndpoint(HttpEndpointDestination),
}

/// Server-side encryption of the delivery stream (`DeliveryStreamEncryptionConfiguration`).
#[derive(Debug, Clone, Default)]
pub struct Encryption {
    pub enabled: bool,
    pub key_type: Option<String>,
    pub key_arn: Option<String>,
}

/// Why the latest delivery failed (`FailureDescription`, type `UNKNOWN_ERROR`).
#[derive(Debug, Clone)]
pub struct DeliveryFailure {
    pub details: String,
}

/// The batch a delivery task has taken and not yet delivered.
#[derive(Debug, Clone, Copy)]
pub struct Delivering {
    /// When its oldest record arrived.
    pub since_ms: i64,
    /// Where its oldest record is in the log.
    pub from: LogMark,
}

impl Delivering {
    /// The batch `records` (none when it is empty).
    pub fn of<T: Buffered>(records: &[T]) -> Option<Self> {
        Some(Self {
            since_ms: records.iter().map(Buffered::arrival_ms).min()?,
            from: records.iter().map(Buffered::log).min()?,
        })
    }
}

/// What changes under the stream's lock.
#[derive(Debug)]
pub struct StreamState {
    pub status: Status,
    /// `VersionId`: 1 at creation, +1 per UpdateDestination.
    pub version: u64,
    pub last_update_ms: Option<i64>,
    pub destination: DestinationConfig,
    /// The destination's resolved settings, for delivery.
    pub target: Target,
    pub tags: BTreeMap<String, String>,
    pub encryption: Encryption,
    /// Records as they arrived, before processing.
    pub buffer: Buffer,
    /// With dynamic partitioning: processed records, by partition.
    pub partitions: Partitions,
    /// The batch being delivered now.
    pub delivering: Option<Delivering>,
    /// Set while the destination fails; cleared by the next delivery that succeeds.
    pub failure: Option<DeliveryFailure>,
}

impl StreamState {
    /// Bytes buffered, before processing and in partitions.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.bytes() + self.partitions.bytes()
    }

    /// Records buffered, before processing and in partitions.
    pub fn buffered_records(&self) -> usize {
        self.buffer.len() + self.partitions.records()
    }

    /// When the oldest record not yet delivered arrived: in the batch being delivered, or
    /// buffered.
    pub fn oldest_undelivered(&self) -> Option<i64> {
        [
            self.delivering.map(|d| d.since_ms),
            self.buffer.oldest_arrival(),
            self.partitions.oldest_arrival(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Returns the records buffered in partitions to the front of the plain buffer, for a
    /// destination without dynamic partitioning: they are delivered (and processed, again) as
    /// it delivers. Nothing is left where no delivery takes it.
    pub fn unpartition(&mut self) {
        let records = self
            .partitions
            .take_all()
            .into_iter()
            .map(|r| BufferedRecord {
                data: r.data,
                arrival_ms: r.arrival_ms,
                log: r.log,
            })
            .collect();
        self.buffer.put_back(records);
    }

    /// Where the oldest record not yet delivered is in the log: in the batch being delivered
    /// now, or buffered. Log segments wholly before it may go.
    pub fn oldest_undelivered_log(&self) -> Option<LogMark> {
        self.delivering
            .map(|d| d.from)
            .into_iter()
            .chain(self.oldest_buffered_log())
            .min()
    }

    /// Where the oldest buffered record is in the log: everything before it is delivered.
    pub fn oldest_buffered_log(&self) -> Option<LogMark> {
        self.buffer
            .oldest_log()
            .into_iter()
            .chain(self.partitions.oldest_log())
            .min()
    }
}

/// One delivery stream.
#[derive(Debug)]
pub struct DeliveryStream {
    pub name: String,
    pub arn: String,
    pub created_ms: i64,
    pub source: Source,
    state: Mutex<StreamState>,
    /// Wakes the delivery task: records arrived or the stream is going away.
    pub wake: Notify,
    /// Stops the delivery task. It first delivers what is buffered, unless the broker is
    /// shutting down with a data directory (and the stream is not being deleted): then the
    /// records stay there for the next start.
    pub stop: CancellationToken,
    /// Cancelled once the delivery task has ended: a deleted stream's records are all out.
    pub finished: CancellationToken,
}

impl DeliveryStream {
    /// A new stream in CREATING.
    pub fn new(
        name: String,
        arn: String,
        created_ms: i64,
        source: Source,
        state: StreamState,
        stop: CancellationToken,
    ) -> Self {
        Self {
            name,
            arn,
            created_ms,
            source,
            state: Mutex::new(state),
            wake: Notify::new(),
            stop,
            finished: CancellationToken::new(),
        }
    }

    /// The mutable state. A panic elsewhere while holding the lock leaves data that is still
    /// consistent enough to describe and deliver, so poisoning is ignored.
    pub fn state(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `destinationId-000000000001`: every stream here has exactly one destination.
pub const DESTINATION_ID: &str = "destinationId-000000000001";
