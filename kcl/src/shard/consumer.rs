//! The shard consumer: drives one processor through one shard, from waiting on the shard's
//! parents to `SHARD_END`, lease loss or a graceful stop (the Java KCL's `ShardConsumer` states
//! WAITING_ON_PARENT_SHARDS → INITIALIZING → PROCESSING → SHUTTING_DOWN).
//!
//! Processor calls are never cancelled midway: a lost lease or a stop request takes effect
//! between calls. Failed calls are reported and retried with backoff on the same processor.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tracing::Instrument;

use crate::checkpoint::{Checkpointer, ExtendedSequenceNumber};
use crate::config::retry_backoff;
use crate::lease::{HeldLease, Lease};
use crate::metrics;
use crate::processor::{
    InitializationInput, LeaseLostInput, ProcessRecordsInput, ProcessorError, RecordProcessor,
    ShardEndedInput, ShutdownRequestedInput,
};
use crate::retrieval::{
    ChildShard, Fetched, RecordBatch, RecordsPublisher, ShardSource, StartingPosition,
};
use crate::scheduler::WorkerContext;
use crate::shard::hierarchy::parents_still_unleased;
use crate::stream::ConsumedStream;

/// How a shard consumer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerOutcome {
    /// The shard was processed to its end and its lease released.
    ShardEnded,
    /// Another worker has the lease.
    LeaseLost,
    /// Stopped on request; the lease was released (or handed over).
    Shutdown,
}

/// Runs the shard of `stream` held in `lease` to one of the outcomes.
pub(crate) async fn run(
    ctx: Arc<WorkerContext>,
    stream: Arc<ConsumedStream>,
    lease: Arc<HeldLease>,
) -> ConsumerOutcome {
    let span = tracing::info_span!("shard", shard_id = %lease.key(), worker_id = %ctx.worker_id);
    ShardConsumer { ctx, stream, lease }
        .run()
        .instrument(span)
        .await
}

/// Either the step's value, or why the shard stopped first.
enum Step<T> {
    Done(T),
    Stop(Stop),
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    LeaseLost,
    Shutdown,
}

struct ShardConsumer {
    ctx: Arc<WorkerContext>,
    stream: Arc<ConsumedStream>,
    lease: Arc<HeldLease>,
}

impl ShardConsumer {
    fn shard_id(&self) -> &str {
        self.lease.shard_id()
    }

    /// Names the shard in metrics: unique across the streams of a multi-stream application.
    fn metrics_shard(&self) -> &str {
        self.lease.key()
    }

    fn lease_lost_input(&self) -> LeaseLostInput {
        LeaseLostInput {
            shard_id: self.shard_id().to_owned(),
            stream: self.stream.id.clone(),
        }
    }

    async fn run(self) -> ConsumerOutcome {
        let snapshot = self.lease.snapshot().await;
        if let Step::Stop(stop) = self.wait_for_parents(&snapshot).await {
            return self.stop_without_processor(stop).await;
        }
        let Some(start) =
            StartingPosition::from_checkpoint(&snapshot.checkpoint, &self.stream.initial_position)
        else {
            // Already at SHARD_END (e.g. taken just before cleanup): nothing to do.
            self.release().await;
            return ConsumerOutcome::ShardEnded;
        };
        let mut processor = self.ctx.factory.create_processor();
        let checkpointer = Checkpointer::new(self.lease.clone(), snapshot.checkpoint.clone());
        let init = InitializationInput {
            shard_id: self.shard_id().to_owned(),
            stream: self.stream.id.clone(),
            extended_sequence_number: snapshot.checkpoint.clone(),
            pending_checkpoint: snapshot.pending_checkpoint.clone(),
        };
        let initialized = self.initialize(processor.as_mut(), init).await;
        if let Step::Stop(stop) = initialized {
            return self.stop(stop, processor.as_mut(), &checkpointer).await;
        }
        tracing::debug!(checkpoint = %snapshot.checkpoint, "processing");

        let source = ShardSource {
            kinesis: self.ctx.kinesis.clone(),
            stream: self.stream.name.clone(),
            shard_id: self.shard_id().to_owned(),
            lease_key: self.metrics_shard().to_owned(),
            worker_id: self.ctx.worker_id.clone(),
            hash_key_range: snapshot.hash_key_range.clone(),
        };
        let mut publisher =
            RecordsPublisher::start(&self.stream.retrieval, source, start, &self.ctx.config);
        loop {
            let fetched = tokio::select! {
                biased;
                () = self.lease.ended().cancelled() => {
                    return self.stop(Stop::LeaseLost, processor.as_mut(), &checkpointer).await;
                }
                () = self.lease.shutdown().cancelled() => {
                    return self.stop(Stop::Shutdown, processor.as_mut(), &checkpointer).await;
                }
                fetched = publisher.next() => fetched,
            };
            match fetched {
                Some(Fetched::Records(batch)) => {
                    if let Step::Stop(stop) =
                        self.deliver(batch, processor.as_mut(), &checkpointer).await
                    {
                        return self.stop(stop, processor.as_mut(), &checkpointer).await;
                    }
                }
                Some(Fetched::ShardEnd { child_shards }) => {
                    drop(publisher);
                    return self
                        .end_shard(child_shards, processor.as_mut(), &checkpointer)
                        .await;
                }
                None => {
                    // The reader task died (a panic); the lease expires and another worker (or
                    // this one, later) picks the shard up again.
                    tracing::error!("record reader stopped unexpectedly; giving the shard up");
                    return self
                        .stop(Stop::Shutdown, processor.as_mut(), &checkpointer)
                        .await;
                }
            }
        }
    }

    /// Waits until every parent shard is done: its lease is at `SHARD_END` or gone.
    async fn wait_for_parents(&self, lease: &Lease) -> Step<()> {
        let mut waiting: Vec<String> = lease.parent_shard_ids.clone();
        let mut logged = false;
        loop {
            let mut still = Vec::new();
            for parent in waiting {
                match self
                    .ctx
                    .store
                    .get_lease(&self.stream.lease_key(&parent))
                    .await
                {
                    Ok(Some(p)) if !p.is_finished() => still.push(parent),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(%parent, %err, "could not read parent lease; will retry");
                        still.push(parent);
                    }
                }
            }
            if still.is_empty() {
                return Step::Done(());
            }
            if !logged {
                tracing::info!(parents = ?still, "waiting for parent shards to end");
                logged = true;
            }
            waiting = still;
            let pause = tokio::time::sleep(self.ctx.config.parent_shard_poll_interval);
            if let Step::Stop(stop) = self.interruptible(pause).await {
                return Step::Stop(stop);
            }
        }
    }

    /// Runs `fut` unless the lease ends or a stop is requested first.
    async fn interruptible<T>(&self, fut: impl Future<Output = T>) -> Step<T> {
        tokio::select! {
            biased;
            () = self.lease.ended().cancelled() => Step::Stop(Stop::LeaseLost),
            () = self.lease.shutdown().cancelled() => Step::Stop(Stop::Shutdown),
            value = fut => Step::Done(value),
        }
    }

    /// Calls `initialize` until it succeeds, backing off between failures; gives up when the
    /// lease ends or a stop is requested.
    async fn initialize(
        &self,
        processor: &mut dyn RecordProcessor,
        input: InitializationInput,
    ) -> Step<()> {
        let mut backoff = retry_backoff();
        loop {
            match guarded(processor.initialize(input.clone())).await {
                Ok(()) => return Step::Done(()),
                Err(err) => {
                    let delay = backoff.next().unwrap_or_default();
                    metrics::processor_error(&self.ctx.worker_id, self.metrics_shard());
                    tracing::error!(error = %err, ?delay, "initialize failed; retrying");
                    if let Step::Stop(stop) = self.interruptible(tokio::time::sleep(delay)).await {
                        return Step::Stop(stop);
                    }
                }
            }
        }
    }

    async fn deliver(
        &self,
        batch: RecordBatch,
        processor: &mut dyn RecordProcessor,
        checkpointer: &Checkpointer,
    ) -> Step<()> {
        let Some(last) = batch.records.last().map(|r| r.position()) else {
            return Step::Done(());
        };
        let (count, bytes) = (batch.records.len(), batch.bytes);
        let input = ProcessRecordsInput {
            records: batch.records,
            millis_behind_latest: batch.millis_behind_latest,
            checkpointer: checkpointer.clone(),
        };
        let mut backoff = retry_backoff();
        loop {
            let before = checkpointer.set_largest_permitted(last.clone());
            let started = Instant::now();
            match guarded(processor.process_records(&input)).await {
                Ok(()) => {
                    self.lease.record_bytes(bytes);
                    metrics::processed(
                        &self.ctx.worker_id,
                        self.metrics_shard(),
                        count,
                        bytes,
                        started.elapsed(),
                    );
                    return Step::Done(());
                }
                Err(err) => {
                    // A failed batch does not count as delivered: `checkpoint()` must not skip it.
                    checkpointer.set_largest_permitted(before);
                    let delay = backoff.next().unwrap_or_default();
                    metrics::processor_error(&self.ctx.worker_id, self.metrics_shard());
                    tracing::error!(records = count, error = %err, ?delay, "process_records failed; retrying the batch");
                    if let Step::Stop(stop) = self.interruptible(tokio::time::sleep(delay)).await {
                        return Step::Stop(stop);
                    }
                }
            }
        }
    }

    async fn end_shard(
        &self,
        child_shards: Vec<ChildShard>,
        processor: &mut dyn RecordProcessor,
        checkpointer: &Checkpointer,
    ) -> ConsumerOutcome {
        // Children first, so that a parent at SHARD_END always has leases below it, except a
        // merge child whose other parent has no lease yet: that parent creates it when it ends.
        for child in &child_shards {
            match self.unleased_other_parents(child).await {
                Step::Done(unleased) if unleased.is_empty() => {}
                Step::Done(unleased) => {
                    tracing::info!(child = %child.shard_id, parents = ?unleased, "not creating the merge child's lease: its other parent has none yet and creates it when it ends");
                    continue;
                }
                Step::Stop(stop) => return self.stop(stop, processor, checkpointer).await,
            }
            let mut lease = self
                .stream
                .new_lease(&child.shard_id, ExtendedSequenceNumber::TrimHorizon);
            lease.parent_shard_ids = child.parent_shard_ids.clone();
            lease.hash_key_range = child.hash_key_range.clone();
            let mut backoff = retry_backoff();
            loop {
                match self.ctx.store.create_lease_if_absent(&lease).await {
                    Ok(created) => {
                        if created {
                            tracing::info!(child = %child.shard_id, "created child lease");
                        }
                        break;
                    }
                    Err(err) => {
                        let delay = backoff.next().unwrap_or_default();
                        tracing::warn!(child = %child.shard_id, %err, ?delay, "could not create child lease; retrying");
                        if let Step::Stop(stop) =
                            self.interruptible(tokio::time::sleep(delay)).await
                        {
                            return self.stop(stop, processor, checkpointer).await;
                        }
                    }
                }
            }
        }
        checkpointer.permit_shard_end(child_shards.into_iter().map(|c| c.shard_id).collect());
        tracing::info!("reached SHARD_END");
        let mut backoff = retry_backoff();
        loop {
            let input = ShardEndedInput {
                checkpointer: checkpointer.clone(),
            };
            let result = guarded(processor.shard_ended(input)).await;
            if self.lease.checkpoint().await == ExtendedSequenceNumber::ShardEnd {
                self.release().await;
                return ConsumerOutcome::ShardEnded;
            }
            if self.lease.is_ended() {
                processor.lease_lost(self.lease_lost_input()).await;
                return ConsumerOutcome::LeaseLost;
            }
            let delay = backoff.next().unwrap_or_default();
            metrics::processor_error(&self.ctx.worker_id, self.metrics_shard());
            match result {
                Err(err) => tracing::error!(error = %err, ?delay, "shard_ended failed; retrying"),
                Ok(()) => tracing::error!(
                    ?delay,
                    "shard_ended returned without checkpointing; the shard's children cannot \
                     start until it does. Retrying"
                ),
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// The parents of `child`, other than this shard, that have no lease yet (see
    /// [`parents_still_unleased`]); retries reads of the lease table until they succeed.
    async fn unleased_other_parents(&self, child: &ChildShard) -> Step<Vec<String>> {
        let mut leased = HashSet::new();
        for parent in child
            .parent_shard_ids
            .iter()
            .filter(|p| *p != self.shard_id())
        {
            let key = self.stream.lease_key(parent);
            let mut backoff = retry_backoff();
            loop {
                match self.ctx.store.get_lease(&key).await {
                    Ok(lease) => {
                        if lease.is_some() {
                            leased.insert(parent.clone());
                        }
                        break;
                    }
                    Err(err) => {
                        let delay = backoff.next().unwrap_or_default();
                        tracing::warn!(%parent, %err, ?delay, "could not read parent lease; retrying");
                        if let Step::Stop(stop) =
                            self.interruptible(tokio::time::sleep(delay)).await
                        {
                            return Step::Stop(stop);
                        }
                    }
                }
            }
        }
        Step::Done(
            parents_still_unleased(&child.parent_shard_ids, self.shard_id(), &leased)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        )
    }

    async fn stop(
        &self,
        stop: Stop,
        processor: &mut dyn RecordProcessor,
        checkpointer: &Checkpointer,
    ) -> ConsumerOutcome {
        match stop {
            Stop::LeaseLost => {
                processor.lease_lost(self.lease_lost_input()).await;
                ConsumerOutcome::LeaseLost
            }
            Stop::Shutdown => {
                let input = ShutdownRequestedInput {
                    checkpointer: checkpointer.clone(),
                };
                if let Err(err) = guarded(processor.shutdown_requested(input)).await {
                    metrics::processor_error(&self.ctx.worker_id, self.metrics_shard());
                    tracing::error!(error = %err, "shutdown_requested failed; releasing the shard anyway");
                }
                if self.lease.is_ended() {
                    return ConsumerOutcome::LeaseLost;
                }
                self.release().await;
                ConsumerOutcome::Shutdown
            }
        }
    }

    async fn stop_without_processor(&self, stop: Stop) -> ConsumerOutcome {
        match stop {
            Stop::LeaseLost => ConsumerOutcome::LeaseLost,
            Stop::Shutdown => {
                self.release().await;
                ConsumerOutcome::Shutdown
            }
        }
    }

    async fn release(&self) {
        if let Err(err) = self.lease.release().await {
            // The lease will expire instead; nothing is lost, the next owner just waits longer.
            tracing::warn!(%err, "could not release the lease");
        }
    }
}

/// Runs a processor call, turning a panic into an error so one bad shard cannot take the worker
/// down.
async fn guarded<F>(call: F) -> Result<(), ProcessorError>
where
    F: Future<Output = Result<(), ProcessorError>>,
{
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(format!("record processor panicked: {message}").into())
        }
    }
}
