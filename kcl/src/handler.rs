//! Record processors made from one async function: what [`#[kcl::processor]`](macro@crate::processor)
//! generates, usable by hand too.
//!
//! A handler takes one record ([`RecordHandler`]) or one batch ([`BatchHandler`]);
//! [`PerRecord`] and [`PerBatch`] turn it into a [`RecordProcessor`] that checkpoints by a
//! [`CheckpointPolicy`], checkpoints at `SHARD_END` when a shard ends, and at the last handled
//! record when the worker shuts down or hands the shard over.
//!
//! ```
//! use kcl::handler::{CheckpointPolicy, HandleError, PerRecord, RecordHandler};
//! use kcl::Record;
//!
//! #[derive(Clone)]
//! struct Print;
//!
//! impl RecordHandler for Print {
//!     async fn handle(&self, record: &Record) -> Result<(), HandleError> {
//!         println!("{}", record.sequence_number);
//!         Ok(())
//!     }
//! }
//!
//! // Any `Fn() -> impl RecordProcessor` is a processor factory.
//! let factory = || PerRecord::new(Print, CheckpointPolicy::EveryRecords(100));
//! # let _ = kcl::Scheduler::builder().processor_factory(factory);
//! ```
//!
//! Delivery is at least once: records after the last checkpoint are handled again when another
//! worker takes the shard after this one crashed or lost its lease.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::checkpoint::{Checkpointer, SequenceNumber};
use crate::processor::{
    InitializationInput, ProcessRecordsInput, ProcessorError, Record, RecordProcessor,
    ShardEndedInput, ShutdownRequestedInput,
};

/// When a [`PerRecord`] or [`PerBatch`] processor checkpoints while records flow. Whatever the
/// policy, it also checkpoints at `SHARD_END` and, on a graceful shutdown or handoff, at the last
/// handled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CheckpointPolicy {
    /// After every batch (`#[kcl::processor]`, the default).
    #[default]
    EachBatch,
    /// After this many records (`#[kcl::processor(checkpoint(every = N))]`); 0 counts as 1.
    /// A batch handler checkpoints after the batch that reaches the count.
    EveryRecords(u64),
    /// At the first record (or batch) handled this long after the last checkpoint
    /// (`#[kcl::processor(checkpoint(seconds = N))]`).
    Interval(Duration),
}

/// Record data decoded from JSON: a `#[kcl::processor]` function taking `Json<T>` gets each
/// record's data deserialized with `serde_json`.
///
/// A record that is not valid JSON of type `T` is skipped, not retried (retrying could never
/// succeed and would stop the shard for good): it is logged at `warn` with its shard and sequence
/// number and counted in the [`RECORDS_SKIPPED`](crate::metrics::RECORDS_SKIPPED) metric.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// #[kcl::processor]
/// async fn orders(order: kcl::Json<Order>) -> Result<(), kcl::ProcessorError> {
///     println!("order {}", order.id); // `Json<T>` derefs to `T`; `order.0` moves it out
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> Json<T> {
    /// Decodes a record's data.
    pub fn decode(record: &Record) -> Result<Self, HandleError> {
        Ok(Self(serde_json::from_slice(&record.data)?))
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Why a [`RecordHandler`] did not handle a record.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The record cannot be decoded; it is skipped (logged and counted), never retried.
    #[error("record data is not the expected JSON: {0}")]
    Decode(#[from] serde_json::Error),
    /// The handler failed; the processor checkpoints the records handled before this one and the
    /// batch is retried from this record.
    #[error("{0}")]
    Failed(ProcessorError),
}

/// An error type a `#[kcl::processor]` function may return: anything that converts into
/// [`ProcessorError`] — any `std::error::Error + Send + Sync + 'static`, `anyhow::Error`,
/// `String`, `&'static str`, or `ProcessorError` itself.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a #[kcl::processor] function",
    label = "the function's error type must convert into `kcl::ProcessorError`",
    note = "return `Result<(), E>` where `E: std::error::Error + Send + Sync + 'static` (or `String`, `anyhow::Error`, `kcl::ProcessorError`)"
)]
pub trait IntoProcessorError {
    /// The boxed error.
    fn into_processor_error(self) -> ProcessorError;
}

impl<E: Into<ProcessorError>> IntoProcessorError for E {
    fn into_processor_error(self) -> ProcessorError {
        self.into()
    }
}

/// Handles one record at a time; made into a processor by [`PerRecord`].
pub trait RecordHandler: Send + Sync + 'static {
    /// Handles one record. [`HandleError::Decode`] skips it; [`HandleError::Failed`] retries it.
    fn handle(&self, record: &Record) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// Handles a batch at a time; made into a processor by [`PerBatch`].
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles a batch, in shard order. An error retries the whole batch.
    fn handle(&self, records: &[Record])
    -> impl Future<Output = Result<(), ProcessorError>> + Send;
}

/// Decides when the next checkpoint is due.
#[derive(Debug)]
struct Cadence {
    policy: CheckpointPolicy,
    since_checkpoint: u64,
    last_checkpoint: Instant,
}

impl Cadence {
    fn new(policy: CheckpointPolicy) -> Self {
        Self {
            policy,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
        }
    }

    fn handled(&mut self, records: u64) {
        self.since_checkpoint += records;
    }

    /// Whether to checkpoint now, in the middle of a batch.
    fn due_within_batch(&self) -> bool {
        match self.policy {
            CheckpointPolicy::EachBatch => false,
            _ => self.due_after_batch(),
        }
    }

    /// Whether to checkpoint at the end of a batch.
    fn due_after_batch(&self) -> bool {
        self.since_checkpoint > 0
            && match self.policy {
                CheckpointPolicy::EachBatch => true,
                CheckpointPolicy::EveryRecords(n) => self.since_checkpoint >= n.max(1),
                CheckpointPolicy::Interval(every) => self.last_checkpoint.elapsed() >= every,
            }
    }

    fn checkpointed(&mut self) {
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
    }
}

/// A position the processor handled or checkpointed.
type Position = (SequenceNumber, u64);

fn position(record: &Record) -> Position {
    (record.sequence_number.clone(), record.sub_sequence_number)
}

/// What both processors track: the shard, the cadence, and how far handling and checkpoints got.
#[derive(Debug)]
struct Progress {
    /// The shard's lease key (unique across the streams of a multi-stream application).
    shard_id: String,
    cadence: Cadence,
    handled: Option<Position>,
    checkpointed: Option<Position>,
}

impl Progress {
    fn new(policy: CheckpointPolicy) -> Self {
        Self {
            shard_id: String::new(),
            cadence: Cadence::new(policy),
            handled: None,
            checkpointed: None,
        }
    }

    /// Checkpoints at the last handled record, unless the checkpoint is already there.
    async fn checkpoint(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        if let Some((sequence, sub)) = &self.handled
            && self.checkpointed != self.handled
        {
            checkpointer
                .checkpoint_at_sequence(sequence.clone(), *sub)
                .await?;
            self.checkpointed = self.handled.clone();
        }
        self.cadence.checkpointed();
        Ok(())
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput,
    ) -> Result<(), ProcessorError> {
        self.checkpoint(&input.checkpointer).await
    }
}

/// A [`RecordProcessor`] that hands each record to a [`RecordHandler`] in shard order.
///
/// When the handler fails, the records handled before it are checkpointed and the batch is
/// retried from the failing record (the records before it are not handled again).
pub struct PerRecord<H> {
    handler: H,
    progress: Progress,
}

impl<H: RecordHandler> PerRecord<H> {
    /// A processor calling `handler` and checkpointing by `policy`.
    pub fn new(handler: H, policy: CheckpointPolicy) -> Self {
        Self {
            handler,
            progress: Progress::new(policy),
        }
    }
}

#[async_trait]
impl<H: RecordHandler> RecordProcessor for PerRecord<H> {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        self.progress.shard_id = input.lease_key();
        Ok(())
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        let done = self.progress.handled.clone();
        // A retried batch resumes after the records already handled.
        let pending = input
            .records
            .iter()
            .filter(|r| done.as_ref().is_none_or(|d| position(r) > *d));
        for record in pending {
            match self.handler.handle(record).await {
                Ok(()) => {}
                Err(HandleError::Decode(err)) => {
                    tracing::warn!(
                        shard_id = %self.progress.shard_id,
                        sequence_number = %record.sequence_number,
                        sub_sequence_number = record.sub_sequence_number,
                        error = %err,
                        "skipping a record that is not the expected JSON"
                    );
                    crate::metrics::record_skipped(&self.progress.shard_id);
                }
                Err(HandleError::Failed(err)) => {
                    // Keep what was handled: the retry starts at this record.
                    if let Err(checkpoint) = self.progress.checkpoint(&input.checkpointer).await {
                        tracing::warn!(error = %checkpoint, "could not checkpoint before retrying");
                    }
                    return Err(err);
                }
            }
            self.progress.handled = Some(position(record));
            self.progress.cadence.handled(1);
            if self.progress.cadence.due_within_batch() {
                self.progress.checkpoint(&input.checkpointer).await?;
            }
        }
        if self.progress.cadence.due_after_batch() {
            self.progress.checkpoint(&input.checkpointer).await?;
        }
        Ok(())
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) -> Result<(), ProcessorError> {
        self.progress.shard_ended(input).await
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput,
    ) -> Result<(), ProcessorError> {
        self.progress.shutdown_requested(input).await
    }
}

/// A [`RecordProcessor`] that hands each batch to a [`BatchHandler`]; a failed batch is retried
/// whole.
pub struct PerBatch<H> {
    handler: H,
    progress: Progress,
}

impl<H: BatchHandler> PerBatch<H> {
    /// A processor calling `handler` and checkpointing by `policy`.
    pub fn new(handler: H, policy: CheckpointPolicy) -> Self {
        Self {
            handler,
            progress: Progress::new(policy),
        }
    }
}

#[async_trait]
impl<H: BatchHandler> RecordProcessor for PerBatch<H> {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        self.progress.shard_id = input.lease_key();
        Ok(())
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        self.handler.handle(&input.records).await?;
        if let Some(last) = input.records.last() {
            self.progress.handled = Some(position(last));
            self.progress.cadence.handled(input.records.len() as u64);
        }
        if self.progress.cadence.due_after_batch() {
            self.progress.checkpoint(&input.checkpointer).await?;
        }
        Ok(())
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) -> Result<(), ProcessorError> {
        self.progress.shard_ended(input).await
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput,
    ) -> Result<(), ProcessorError> {
        self.progress.shutdown_requested(input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &str) -> Record {
        Record {
            sequence_number: "1".parse().expect("digits"),
            sub_sequence_number: 0,
            partition_key: "k".into(),
            data: bytes::Bytes::from(data.to_owned()),
            approximate_arrival_timestamp: None,
        }
    }

    #[test]
    fn each_batch_checkpoints_only_at_batch_end_and_only_after_records() {
        let mut cadence = Cadence::new(CheckpointPolicy::EachBatch);
        assert!(!cadence.due_after_batch(), "nothing handled yet");
        cadence.handled(1);
        assert!(!cadence.due_within_batch());
        assert!(cadence.due_after_batch());
        cadence.checkpointed();
        assert!(!cadence.due_after_batch());
    }

    #[test]
    fn every_n_records_counts_across_batches() {
        let mut cadence = Cadence::new(CheckpointPolicy::EveryRecords(3));
        cadence.handled(2);
        assert!(!cadence.due_within_batch() && !cadence.due_after_batch());
        cadence.handled(1);
        assert!(cadence.due_within_batch());
        cadence.checkpointed();
        cadence.handled(1);
        assert!(!cadence.due_after_batch());
    }

    #[test]
    fn every_zero_records_means_every_record() {
        let mut cadence = Cadence::new(CheckpointPolicy::EveryRecords(0));
        cadence.handled(1);
        assert!(cadence.due_within_batch());
    }

    #[tokio::test(start_paused = true)]
    async fn interval_waits_for_the_time_to_pass() {
        let mut cadence = Cadence::new(CheckpointPolicy::Interval(Duration::from_secs(5)));
        cadence.handled(10);
        assert!(!cadence.due_within_batch());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cadence.due_within_batch());
        cadence.checkpointed();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!cadence.due_after_batch(), "no new records, no checkpoint");
    }

    #[test]
    fn json_decodes_or_reports_a_decode_error() {
        #[derive(serde::Deserialize)]
        struct Order {
            id: u64,
        }
        let order = Json::<Order>::decode(&record(r#"{"id":7}"#)).expect("valid JSON");
        assert_eq!(order.id, 7);
        assert!(matches!(
            Json::<Order>::decode(&record("not json")),
            Err(HandleError::Decode(_))
        ));
    }

    #[test]
    fn error_types_convert_into_processor_errors() {
        let io = std::io::Error::other("disk").into_processor_error();
        assert_eq!(io.to_string(), "disk");
        assert_eq!("text".into_processor_error().to_string(), "text");
    }
}
