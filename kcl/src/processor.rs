//! The record processor contract: what the application implements, one instance per shard.
//!
//! Call order for one shard and one worker: `initialize`, then `process_records` for each batch,
//! then exactly one of `lease_lost` (another worker has the shard: no checkpointing possible),
//! `shard_ended` (the shard was read to its end: checkpoint, or its children never start) or
//! `shutdown_requested` (this worker stops or hands the shard over: last chance to checkpoint).

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::checkpoint::{Checkpointer, ExtendedSequenceNumber, PendingCheckpoint, SequenceNumber};
use crate::stream::StreamIdentifier;

/// What a processor returns when it fails: any error. The batch is retried with backoff; other
/// shards go on.
pub type ProcessorError = Box<dyn std::error::Error + Send + Sync>;

/// One record (or, later, one sub-record of a KPL aggregate), as the Java KCL's
/// `KinesisClientRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The Kinesis sequence number.
    pub sequence_number: SequenceNumber,
    /// The position within a KPL aggregate; 0 for plain records.
    pub sub_sequence_number: u64,
    /// The partition key the producer gave.
    pub partition_key: String,
    /// The payload.
    pub data: Bytes,
    /// When Kinesis accepted the record.
    pub approximate_arrival_timestamp: Option<SystemTime>,
}

impl Record {
    /// The record's position, as a checkpoint would store it.
    pub fn position(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::record(self.sequence_number.clone(), self.sub_sequence_number)
    }
}

/// Passed to [`RecordProcessor::initialize`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitializationInput {
    /// The shard this processor owns.
    pub shard_id: String,
    /// The shard's stream in a multi-stream application (see [`crate::stream`]); `None` when
    /// the scheduler consumes one stream.
    pub stream: Option<StreamIdentifier>,
    /// Where processing resumes: the shard's checkpoint.
    pub extended_sequence_number: ExtendedSequenceNumber,
    /// A checkpoint the previous owner prepared but did not commit, with its application state.
    pub pending_checkpoint: Option<PendingCheckpoint>,
}

impl InitializationInput {
    /// The shard's lease key, which names it uniquely across an application's streams: the
    /// shard id, or `account:stream:creationEpoch:shardId` in a multi-stream application.
    pub fn lease_key(&self) -> String {
        crate::stream::lease_key(self.stream.as_ref(), &self.shard_id)
    }
}

/// Passed to [`RecordProcessor::process_records`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessRecordsInput {
    /// The records, in shard order.
    pub records: Vec<Record>,
    /// How far this batch is behind the tip of the shard.
    pub millis_behind_latest: Option<i64>,
    /// Records progress in this shard.
    pub checkpointer: Checkpointer,
}

/// Passed to [`RecordProcessor::lease_lost`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeaseLostInput {
    /// The shard this worker no longer owns.
    pub shard_id: String,
    /// The shard's stream in a multi-stream application; `None` in single-stream mode.
    pub stream: Option<StreamIdentifier>,
}

/// Passed to [`RecordProcessor::shard_ended`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShardEndedInput {
    /// `checkpoint()` here writes `SHARD_END`.
    pub checkpointer: Checkpointer,
}

/// Passed to [`RecordProcessor::shutdown_requested`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShutdownRequestedInput {
    /// The last chance to checkpoint before the shard moves to another worker.
    pub checkpointer: Checkpointer,
}

/// Processes the records of one shard. The scheduler creates one per shard it owns, through a
/// [`ProcessorFactory`], and calls it from one task at a time.
#[async_trait]
pub trait RecordProcessor: Send + 'static {
    /// Called once before the first batch.
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        let _ = input;
        Ok(())
    }

    /// Processes a batch. Returning an error retries the same batch (with backoff) on this
    /// processor; checkpoint with `input.checkpointer` as often as suits the application.
    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError>;

    /// Another worker owns the shard now. Checkpointing is no longer possible.
    async fn lease_lost(&mut self, input: LeaseLostInput) {
        let _ = input;
    }

    /// The shard was read to its end. The default checkpoints at `SHARD_END`, which lets the
    /// shard's children start; an override must do so too.
    async fn shard_ended(&mut self, input: ShardEndedInput) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    /// This worker is shutting down or handing the shard to another worker. The default
    /// checkpoints at the last record of the last batch `process_records` accepted, so the next
    /// owner starts right after it: right for processors that finish a batch before returning;
    /// override it if yours buffers records.
    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput,
    ) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Creates one processor per shard. Any `Fn() -> impl RecordProcessor` closure is a factory.
pub trait ProcessorFactory: Send + Sync + 'static {
    /// A new processor; it learns its shard (and, in a multi-stream application, its stream) in
    /// `initialize`.
    fn create_processor(&self) -> Box<dyn RecordProcessor>;
}

impl<F, P> ProcessorFactory for F
where
    F: Fn() -> P + Send + Sync + 'static,
    P: RecordProcessor,
{
    fn create_processor(&self) -> Box<dyn RecordProcessor> {
        Box::new(self())
    }
}
