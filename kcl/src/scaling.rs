//! Scaling a fleet from outside: a [`WorkerHandle`] tells an autoscaler when a new worker has
//! settled into its share of leases ([`ready`](WorkerHandle::ready)) and takes a worker out of
//! the fleet gracefully ([`drain`](WorkerHandle::drain)).
//!
//! ```no_run
//! # async fn demo(scheduler: kcl::Scheduler) {
//! use tokio_util::sync::CancellationToken;
//!
//! let handle = scheduler.handle();
//! let run = tokio::spawn(scheduler.run(CancellationToken::new()));
//! // Scale-out: report the new worker healthy once it processes its share.
//! handle.ready().await.ok();
//! // Scale-in: hand every lease over (each processor checkpoints first), then stop.
//! handle.drain().await;
//! # let _ = run.await;
//! # }
//! ```

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Creating tables, syncing shards, taking its first leases.
    Starting,
    /// Its assignment settled: for lease counting, it holds its share; for load-aware
    /// assignment, two rounds passed in which nothing new was named for it.
    Ready,
    /// Handing its leases over before stopping.
    Draining,
    /// [`Scheduler::run`](crate::Scheduler::run) returned.
    Stopped,
}

/// The worker stopped before it became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the worker stopped before its lease assignment settled")]
pub struct WorkerStopped;

/// Watches and steers one running [`Scheduler`](crate::Scheduler); cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    state: watch::Receiver<WorkerState>,
    drain: CancellationToken,
}

impl WorkerHandle {
    /// The state now.
    pub fn state(&self) -> WorkerState {
        *self.state.borrow()
    }

    /// Resolves once the worker's lease assignment settled (its initial share is processing);
    /// fails if it stops first.
    pub async fn ready(&self) -> Result<(), WorkerStopped> {
        let mut state = self.state.clone();
        let reached = state
            .wait_for(|s| !matches!(s, WorkerState::Starting))
            .await
            .map(|s| *s);
        match reached {
            Ok(WorkerState::Ready) => Ok(()),
            _ => Err(WorkerStopped),
        }
    }

    /// Takes the worker out of the fleet and waits until it stopped. With load-aware assignment
    /// the leader hands each of its leases to another worker (the processor checkpoints in
    /// `shutdown_requested`, the next owner starts right after that checkpoint); with lease
    /// counting each lease is checkpointed and released for the others to take at their next
    /// scan. Either way nothing is processed twice and nothing waits out the failover time.
    /// Leases still held after the shutdown timeout are released the same way.
    pub async fn drain(&self) {
        self.drain.cancel();
        self.stopped().await;
    }

    /// Resolves once the worker stopped.
    pub async fn stopped(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| *s == WorkerState::Stopped).await;
    }
}

/// The scheduler's side of its handles.
#[derive(Debug)]
pub(crate) struct WorkerStatus {
    state: watch::Sender<WorkerState>,
    drain: CancellationToken,
}

impl WorkerStatus {
    pub(crate) fn new() -> Self {
        Self {
            state: watch::Sender::new(WorkerState::Starting),
            drain: CancellationToken::new(),
        }
    }

    pub(crate) fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            state: self.state.subscribe(),
            drain: self.drain.clone(),
        }
    }

    pub(crate) fn set(&self, state: WorkerState) {
        self.state.send_if_modified(|s| {
            // Never back from draining or stopped.
            let allowed = match (*s, state) {
                (WorkerState::Stopped, _) => false,
                (WorkerState::Draining, WorkerState::Starting | WorkerState::Ready) => false,
                (current, new) => current != new,
            };
            if allowed {
                *s = state;
            }
            allowed
        });
    }

    pub(crate) fn state(&self) -> WorkerState {
        *self.state.borrow()
    }

    /// Fires when a handle asked to drain.
    pub(crate) fn drain_requested(&self) -> &CancellationToken {
        &self.drain
    }
}
