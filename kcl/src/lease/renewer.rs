//! The lease renewer: the authoritative copy of each lease this worker holds, and the loop that
//! keeps them alive with conditional counter increments.
//!
//! Every write of a held lease (renewal, checkpoint, release) is conditioned on the counter this
//! worker last wrote and goes through the lease's mutex, so they never race each other. A failed
//! condition means another worker took the lease: it is marked ended at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::load::{ThroughputEma, ThroughputKbps};
use super::model::{CheckpointUpdate, Expectation, Lease, LeaseUpdate};
use super::store::{LeaseStore, LeaseStoreError};
use crate::checkpoint::{ExtendedSequenceNumber, PendingCheckpoint};
use crate::metrics;
use crate::stream::StreamIdentifier;

/// A lease this worker holds.
pub(crate) struct HeldLease {
    key: String,
    shard_id: String,
    stream: Option<StreamIdentifier>,
    worker_id: String,
    store: Arc<dyn LeaseStore>,
    state: tokio::sync::Mutex<Lease>,
    /// When the last successful renewal was *sent*: the owner must give the lease up
    /// `failover_time` after it, before any other worker can see the counter standing still for
    /// that long.
    last_renewal: Mutex<Instant>,
    /// Fired when the lease is no longer ours: lost, or released by us.
    ended: CancellationToken,
    /// Fired when the shard should stop gracefully: another worker asked for the lease, or this
    /// worker is shutting down.
    shutdown: CancellationToken,
    /// Bytes delivered to the processor, averaged at each renewal into `throughputKBps`.
    throughput: Mutex<ThroughputEma>,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    Renewed,
    /// Renewed, and another worker asked for the lease (a graceful handoff).
    HandoffRequested,
    /// The lease is gone: taken by another worker, or not renewed within the failover time.
    Lost,
    /// The renewal failed for a transient reason; the lease is still held.
    Failed,
}

impl HeldLease {
    /// Holds `lease`, just written by this worker (so its counter is current).
    pub(crate) fn new(store: Arc<dyn LeaseStore>, worker_id: &str, lease: Lease) -> Arc<Self> {
        Arc::new(Self {
            throughput: Mutex::new(ThroughputEma::starting_at(lease.throughput)),
            key: lease.key.clone(),
            shard_id: lease.shard_id.clone(),
            stream: lease.stream.clone(),
            worker_id: worker_id.to_owned(),
            store,
            state: tokio::sync::Mutex::new(lease),
            last_renewal: Mutex::new(Instant::now()),
            ended: CancellationToken::new(),
            shutdown: CancellationToken::new(),
        })
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The shard's stream in a multi-stream application.
    pub(crate) fn stream(&self) -> Option<&StreamIdentifier> {
        self.stream.as_ref()
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    pub(crate) fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Counts bytes delivered to the processor.
    pub(crate) fn record_bytes(&self, bytes: usize) {
        self.ema().record(bytes);
    }

    /// The shard's throughput as of the last renewal.
    pub(crate) fn throughput(&self) -> ThroughputKbps {
        self.ema().current()
    }

    fn ema(&self) -> std::sync::MutexGuard<'_, ThroughputEma> {
        self.throughput
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn snapshot(&self) -> Lease {
        self.state.lock().await.clone()
    }

    pub(crate) async fn checkpoint(&self) -> ExtendedSequenceNumber {
        self.state.lock().await.checkpoint.clone()
    }

    fn lose(&self, why: &str) {
        if !self.ended.is_cancelled() {
            tracing::warn!(shard_id = %self.key, worker_id = %self.worker_id, why, "lease lost");
            metrics::lease_lost(&self.worker_id);
            self.ended.cancel();
        }
    }

    /// One conditional write on the current counter. A failed condition ends the lease.
    async fn write(&self, update: LeaseUpdate) -> Result<Lease, LeaseStoreError> {
        let mut state = self.state.lock().await;
        if self.is_ended() {
            return Err(LeaseStoreError::ConditionFailed);
        }
        let expect = Expectation {
            counter: Some(state.counter),
            ..Expectation::default()
        };
        let sent = Instant::now();
        match self.store.update_lease(&self.key, &expect, &update).await {
            Ok(lease) => {
                *state = lease.clone();
                *self
                    .last_renewal
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = sent;
                Ok(lease)
            }
            Err(LeaseStoreError::ConditionFailed) => {
                self.lose("the lease counter changed: another worker took the lease");
                Err(LeaseStoreError::ConditionFailed)
            }
            Err(err) => Err(err),
        }
    }

    /// Renews the lease; gives it up if it could not be renewed for `failover_time`.
    pub(crate) async fn renew(&self, failover_time: Duration, timeout: Duration) -> Renewal {
        if self.is_ended() {
            return Renewal::Lost;
        }
        let update = LeaseUpdate {
            increment_counter: true,
            throughput: Some(self.ema().sample(Instant::now())),
            ..LeaseUpdate::default()
        };
        match tokio::time::timeout(timeout, self.write(update)).await {
            Ok(Ok(lease)) => {
                if lease.owner.as_deref() == Some(&self.worker_id) {
                    Renewal::Renewed
                } else if lease.checkpoint_owner.as_deref() == Some(&self.worker_id) {
                    if !self.shutdown.is_cancelled() {
                        tracing::info!(
                            shard_id = %self.key,
                            worker_id = %self.worker_id,
                            to = lease.owner.as_deref().unwrap_or("-"),
                            "handoff requested: finishing the shard and handing it over"
                        );
                        self.shutdown.cancel();
                    }
                    Renewal::HandoffRequested
                } else {
                    self.lose("the lease names another owner");
                    Renewal::Lost
                }
            }
            Ok(Err(LeaseStoreError::ConditionFailed)) => Renewal::Lost,
            Ok(Err(err)) => self.renewal_failed(failover_time, &err.to_string()),
            Err(_) => self.renewal_failed(failover_time, "renewal timed out"),
        }
    }

    fn renewal_failed(&self, failover_time: Duration, error: &str) -> Renewal {
        let last = *self
            .last_renewal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() >= failover_time {
            self.lose("not renewed within the failover time");
            Renewal::Lost
        } else {
            tracing::warn!(shard_id = %self.key, error, "lease renewal failed; will retry");
            Renewal::Failed
        }
    }

    /// Writes a checkpoint (and the pending checkpoint, and at `SHARD_END` the children).
    pub(crate) async fn write_checkpoint(
        &self,
        checkpoint: ExtendedSequenceNumber,
        pending: Option<PendingCheckpoint>,
        child_shard_ids: Vec<String>,
    ) -> Result<(), LeaseStoreError> {
        self.write(LeaseUpdate {
            increment_counter: true,
            owner_switches_since_checkpoint: Some(0),
            checkpoint: Some(CheckpointUpdate {
                checkpoint,
                pending,
                child_shard_ids,
            }),
            ..LeaseUpdate::default()
        })
        .await
        .map(drop)
    }

    /// Gives the lease up so another worker can take it at once: during a handoff by clearing
    /// `checkpointOwner` (the new owner is already named), otherwise by removing `leaseOwner`.
    pub(crate) async fn release(&self) -> Result<(), LeaseStoreError> {
        let handoff = {
            let state = self.state.lock().await;
            state.owner.as_deref() != Some(&self.worker_id)
                && state.checkpoint_owner.as_deref() == Some(&self.worker_id)
        };
        let update = LeaseUpdate {
            increment_counter: true,
            owner: (!handoff).then_some(None),
            checkpoint_owner: Some(None),
            ..LeaseUpdate::default()
        };
        let result = self.write(update).await.map(drop);
        if result.is_ok() {
            tracing::info!(shard_id = %self.key, worker_id = %self.worker_id, handoff, "lease released");
            self.ended.cancel();
        }
        result
    }
}

/// The leases this worker holds, by shard id. Shared by the scheduler (which adds and removes)
/// and the renewer (which renews).
#[derive(Clone, Default)]
pub(crate) struct HeldLeases {
    inner: Arc<Mutex<HashMap<String, Arc<HeldLease>>>>,
}

impl HeldLeases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HeldLease>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, lease: Arc<HeldLease>) {
        self.map().insert(lease.key().to_owned(), lease);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.map().remove(key);
    }

    pub(crate) fn all(&self) -> Vec<Arc<HeldLease>> {
        self.map().values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

/// Renews every held lease, concurrently, every `renewal_interval`, until `stop` fires.
pub(crate) async fn run_renewer(
    held: HeldLeases,
    renewal_interval: Duration,
    failover_time: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(renewal_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leases = held.all();
        futures::future::join_all(
            leases
                .iter()
                .map(|lease| lease.renew(failover_time, renewal_interval)),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::InMemoryLeaseStore;

    async fn held_by(worker: &str, store: &Arc<InMemoryLeaseStore>) -> Arc<HeldLease> {
        let mut lease = Lease::new("shard-0", ExtendedSequenceNumber::TrimHorizon);
        lease.owner = Some(worker.to_owned());
        store.create_lease_if_absent(&lease).await.expect("created");
        HeldLease::new(store.clone(), worker, lease)
    }

    async fn steal(store: &InMemoryLeaseStore, thief: &str) {
        let current = store
            .get_lease("shard-0")
            .await
            .ok()
            .flatten()
            .expect("lease");
        store
            .update_lease(
                "shard-0",
                &Expectation {
                    counter: Some(current.counter),
                    ..Expectation::default()
                },
                &LeaseUpdate {
                    increment_counter: true,
                    owner: Some(Some(thief.to_owned())),
                    ..LeaseUpdate::default()
                },
            )
            .await
            .expect("stolen");
    }

    #[tokio::test]
    async fn renewal_increments_the_counter() {
        let store = Arc::new(InMemoryLeaseStore::new());
        let held = held_by("a", &store).await;
        let second = Duration::from_secs(1);
        assert_eq!(held.renew(second * 10, second).await, Renewal::Renewed);
        assert_eq!(held.renew(second * 10, second).await, Renewal::Renewed);
        let stored = store.get_lease("shard-0").await.ok().flatten();
        assert_eq!(stored.map(|l| l.counter), Some(2));
    }

    #[tokio::test]
    async fn a_lease_taken_by_another_worker_is_lost_at_the_next_renewal() {
        let store = Arc::new(InMemoryLeaseStore::new());
        let held = held_by("a", &store).await;
        steal(&store, "b").await;
        let second = Duration::from_secs(1);
        assert_eq!(held.renew(second * 10, second).await, Renewal::Lost);
        assert!(held.is_ended());
        let stored = store.get_lease("shard-0").await.ok().flatten();
        assert_eq!(stored.and_then(|l| l.owner).as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn checkpoints_fail_once_the_lease_moved() {
        let store = Arc::new(InMemoryLeaseStore::new());
        let held = held_by("a", &store).await;
        steal(&store, "b").await;
        let written = held
            .write_checkpoint(ExtendedSequenceNumber::ShardEnd, None, Vec::new())
            .await;
        assert!(matches!(written, Err(LeaseStoreError::ConditionFailed)));
        assert!(held.is_ended());
    }

    #[tokio::test]
    async fn a_handoff_request_lets_the_owner_finish_then_names_the_new_owner() {
        let store = Arc::new(InMemoryLeaseStore::new());
        let held = held_by("a", &store).await;
        store
            .update_lease(
                "shard-0",
                &Expectation {
                    owner: Some("a".into()),
                    no_checkpoint_owner: true,
                    ..Expectation::default()
                },
                &LeaseUpdate {
                    owner: Some(Some("b".into())),
                    checkpoint_owner: Some(Some("a".into())),
                    ..LeaseUpdate::default()
                },
            )
            .await
            .expect("handoff requested");
        let second = Duration::from_secs(1);
        assert_eq!(
            held.renew(second * 10, second).await,
            Renewal::HandoffRequested
        );
        assert!(held.shutdown().is_cancelled());
        // The old owner may still checkpoint until it releases.
        held.write_checkpoint(ExtendedSequenceNumber::ShardEnd, None, Vec::new())
            .await
            .expect("checkpoint during handoff");
        held.release().await.expect("released");
        let stored = store
            .get_lease("shard-0")
            .await
            .ok()
            .flatten()
            .expect("lease");
        assert_eq!(stored.owner.as_deref(), Some("b"));
        assert_eq!(stored.checkpoint_owner, None);
        assert!(held.is_ended());
    }

    /// A store whose writes fail (a network outage) while `down` is set.
    #[derive(Default)]
    struct Flaky {
        inner: InMemoryLeaseStore,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl LeaseStore for Flaky {
        async fn initialize(&self) -> Result<(), LeaseStoreError> {
            Ok(())
        }
        async fn list_leases(&self) -> Result<Vec<Lease>, LeaseStoreError> {
            self.inner.list_leases().await
        }
        async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
            self.inner.get_lease(key).await
        }
        async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
            self.inner.create_lease_if_absent(lease).await
        }
        async fn update_lease(
            &self,
            key: &str,
            expect: &Expectation,
            update: &LeaseUpdate,
        ) -> Result<Lease, LeaseStoreError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(LeaseStoreError::Request("connection refused".into()));
            }
            self.inner.update_lease(key, expect, update).await
        }
        async fn delete_finished_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
            self.inner.delete_finished_lease(key).await
        }
        async fn delete_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
            self.inner.delete_lease(key).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_cannot_be_renewed_for_the_failover_time_is_given_up() {
        let store = Arc::new(Flaky::default());
        let mut lease = Lease::new("shard-0", ExtendedSequenceNumber::TrimHorizon);
        lease.owner = Some("a".into());
        store.create_lease_if_absent(&lease).await.expect("created");
        let held = HeldLease::new(store.clone(), "a", lease);
        let (failover, second) = (Duration::from_secs(10), Duration::from_secs(1));
        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::advance(failover - second).await;
        assert_eq!(held.renew(failover, second).await, Renewal::Failed);
        assert!(
            !held.is_ended(),
            "still ours: others cannot have taken it yet"
        );
        tokio::time::advance(second).await;
        assert_eq!(held.renew(failover, second).await, Renewal::Lost);
        assert!(held.is_ended(), "others may take it now; so must we stop");
    }

    #[tokio::test]
    async fn a_graceful_release_removes_the_owner() {
        let store = Arc::new(InMemoryLeaseStore::new());
        let held = held_by("a", &store).await;
        held.release().await.expect("released");
        let stored = store
            .get_lease("shard-0")
            .await
            .ok()
            .flatten()
            .expect("lease");
        assert_eq!(stored.owner, None);
        assert!(held.is_ended());
    }
}
