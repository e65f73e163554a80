//! A Rust port of the Kinesis Client Library: consume a Kinesis data stream with a fleet of
//! workers that share shards through leases in DynamoDB, checkpoint progress, follow resharding,
//! and rebalance when workers come and go.
//!
//! The lease table has the Java KCL's schema (table name = application name, hash key
//! `leaseKey`, same attributes), so Rust and Java workers can share one table.
//!
//! ```no_run
//! use async_trait::async_trait;
//! use kcl::{InitialPosition, ProcessRecordsInput, ProcessorError, RecordProcessor, Scheduler};
//! use tokio_util::sync::CancellationToken;
//!
//! struct Printer;
//!
//! #[async_trait]
//! impl RecordProcessor for Printer {
//!     async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
//!         for record in &input.records {
//!             println!("{} {:?}", record.sequence_number, record.data);
//!         }
//!         input.checkpointer.checkpoint().await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let aws = aws_config::load_from_env().await;
//! let scheduler = Scheduler::builder()
//!     .stream("orders")
//!     .application_name("order-printer")
//!     .kinesis_client(aws_sdk_kinesis::Client::new(&aws))
//!     .dynamodb_client(aws_sdk_dynamodb::Client::new(&aws))
//!     .processor_factory(|| Printer)
//!     .initial_position(InitialPosition::TrimHorizon)
//!     .build()?;
//! let shutdown = CancellationToken::new();
//! // Cancel `shutdown` (e.g. on Ctrl-C) to checkpoint, release the leases and return.
//! scheduler.run(shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! The same consumer as one function, configured by the environment (`KCL_STREAM`, ...; see
//! [`runner`]), with logging and a Ctrl-C/SIGTERM graceful shutdown:
//!
//! ```no_run
//! #[kcl::processor] // checkpoint after each batch; or checkpoint(every = N) / checkpoint(seconds = N)
//! async fn print(record: &kcl::Record) -> Result<(), kcl::ProcessorError> {
//!     println!("{} {:?}", record.sequence_number, record.data);
//!     Ok(())
//! }
//!
//! #[kcl::main]
//! async fn main() -> Result<(), kcl::runner::RunError> {
//!     kcl::run_from_env(print).await
//! }
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`processor`](mod@processor) | the [`RecordProcessor`] contract and its inputs |
//! | [`handler`] | processors made from one async function, as [`#[kcl::processor]`](macro@processor) generates |
//! | [`runner`] | running a worker from environment variables with a graceful shutdown on signals |
//! | [`checkpoint`] | positions in a shard and the [`Checkpointer`] |
//! | [`scheduler`] | the worker: lease taking, shard consumers, graceful shutdown |
//! | [`stream`](mod@stream) | streams of a multi-stream application: [`StreamIdentifier`], [`StreamConfig`], the [`StreamTracker`] |
//! | [`config`] | tuning knobs with the Java KCL's defaults |
//! | [`lease`] | the lease model, [`LeaseStore`](lease::LeaseStore) (DynamoDB, in-memory), renewer and taker; load-aware [`assignment`](lease::assignment) by an elected leader |
//! | [`scaling`] | a [`WorkerHandle`] for autoscalers: readiness and graceful drain |
//! | [`shard`] | shard discovery, the parent/child hierarchy, the per-shard consumer |
//! | `retrieval` | reading records into a bounded queue: polling `GetRecords`, or enhanced fan-out `SubscribeToShard` ([`RetrievalMode`]) |
//! | [`metrics`] | metric names (the KCL's CloudWatch names) recorded via the `metrics` crate |
//!
//! One application can also consume several streams with one lease table, the Java KCL's
//! multi-stream mode: `.stream_tracker(StreamSet::new([StreamConfig::new(id, position), ...]))`
//! instead of `.stream(name)`. Lease keys are then `account:stream:creationEpoch:shardId` (with
//! the Java `streamName`/`shardId` attributes), each stream has its own initial position, streams
//! can be added and removed while the workers run, and processors learn their shard's stream in
//! [`InitializationInput::stream`]. See [`stream`](mod@stream) for a complete example.
//!
//! How it differs from the Java KCL where its users hurt:
//! - rebalancing converges in a few taker rounds (not one lease per worker per 20 s), and moves a
//!   lease by graceful handoff: the current owner checkpoints first, so nothing is processed twice;
//! - a worker that stops gracefully releases its leases, and others take them at their next scan
//!   instead of waiting out the failover time;
//! - a shard that fell behind is read back-to-back, not one call per idle interval;
//! - with [`LeaseAssignment::LoadAware`](lease::LeaseAssignment), the leader moves a joining
//!   fleet to balance in a few rounds with fewer lease moves and far fewer lease-table reads than
//!   lease counting (the simulation in `lease::assignment` measures both), and a
//!   [`WorkerHandle`] lets an autoscaler wait for readiness and drain a worker.
//!
//! Time comes from tokio's clock throughout, so tests can pause and advance it.

pub mod aggregation;
pub mod checkpoint;
pub mod config;
pub mod handler;
pub mod lease;
pub mod metrics;
pub mod processor;
mod retrieval;
pub mod runner;
pub mod scaling;
pub mod scheduler;
pub mod shard;
pub mod stream;

pub use checkpoint::{
    CheckpointError, Checkpointer, ExtendedSequenceNumber, PendingCheckpoint, PreparedCheckpoint,
    SequenceNumber,
};
pub use config::{Config, FormerStreamLeases, InitialPosition, RetrievalMode};
pub use handler::Json;
pub use kcl_macros::{main, processor};
pub use processor::{
    InitializationInput, LeaseLostInput, ProcessRecordsInput, ProcessorError, ProcessorFactory,
    Record, RecordProcessor, ShardEndedInput, ShutdownRequestedInput,
};
pub use runner::run_from_env;
pub use scaling::{WorkerHandle, WorkerState};
pub use scheduler::{BuildError, Scheduler, SchedulerBuilder, SchedulerError};
pub use stream::{StreamConfig, StreamIdentifier, StreamSet, StreamTracker};
