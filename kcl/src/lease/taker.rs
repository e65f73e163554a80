//! The lease taker: scans the lease table, decides which leases this worker should take, and
//! takes them with conditional writes.
//!
//! Expiry is observed, never computed from another host's clock: a lease is expired when its
//! counter did not change for `failover_time` between this worker's scans (or it has no owner).
//!
//! Balancing, per round, with `L` unfinished leases and `W` live workers (owners of unexpired
//! leases, plus this worker), `target = ceil(L / W)`:
//! 1. take free or expired leases up to the target;
//! 2. if none are left, ask the most loaded workers for leases, one at a time, while the most
//!    loaded holds at least two more than this worker (so a transfer never makes the pair less
//!    even, and two balanced workers never trade back and forth).
//!
//! Asking is a graceful handoff (the Java KCL 3.x protocol): `leaseOwner` becomes this worker and
//! `checkpointOwner` the current one, without bumping the counter. The current owner sees it at
//! its next renewal, lets its processor checkpoint, and clears `checkpointOwner`; this worker then
//! takes the lease from that checkpoint, so rebalancing processes nothing twice. An owner that
//! keeps renewing but ignores the request loses the lease after `handoff_timeout`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::time::Instant;

use super::model::{Expectation, Lease, LeaseUpdate};
use super::store::{LeaseStore, LeaseStoreError};

/// What the taker knows of one lease.
#[derive(Debug, Clone)]
struct Observed {
    lease: Lease,
    /// When this worker saw the counter change; `None` for a lease never seen owned.
    last_change: Option<Instant>,
    /// When this worker first saw a handoff to itself still waiting for the current owner.
    handoff_waiting_since: Option<Instant>,
}

/// Limits of the balancing rule.
#[derive(Debug, Clone)]
pub(crate) struct Balance {
    pub(crate) failover_time: Duration,
    pub(crate) handoff_timeout: Duration,
    pub(crate) max_leases_for_worker: usize,
    pub(crate) max_leases_to_steal_at_one_time: usize,
}

/// One round's decisions.
#[derive(Debug, Default)]
pub(crate) struct TakePlan {
    /// Leases to take now (free, expired, handed over, or whose handoff timed out).
    pub(crate) take: Vec<Lease>,
    /// Leases to ask their owners for.
    pub(crate) request: Vec<Lease>,
}

/// The taker's memory between scans.
#[derive(Debug)]
pub(crate) struct LeaseTaker {
    worker_id: String,
    observed: HashMap<String, Observed>,
}

impl LeaseTaker {
    pub(crate) fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            observed: HashMap::new(),
        }
    }

    /// Records a fresh scan of the whole table, taken at `now`.
    pub(crate) fn observe(&mut self, leases: Vec<Lease>, now: Instant) {
        let mut previous = std::mem::take(&mut self.observed);
        for lease in leases {
            let before = previous.remove(&lease.key);
            let last_change = match &before {
                Some(old) if old.lease.counter == lease.counter => old.last_change,
                // A lease first seen free was never renewed: available at once.
                None if is_free(&lease) => None,
                _ => Some(now),
            };
            let waiting =
                lease.owner.as_deref() == Some(&self.worker_id) && lease.checkpoint_owner.is_some();
            let handoff_waiting_since = waiting.then(|| {
                before
                    .as_ref()
                    .and_then(|o| o.handoff_waiting_since)
                    .unwrap_or(now)
            });
            self.observed.insert(
                lease.key.clone(),
                Observed {
                    lease,
                    last_change,
                    handoff_waiting_since,
                },
            );
        }
    }

    /// The leases of the last scan.
    pub(crate) fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.observed.values().map(|o| &o.lease)
    }

    /// Whether the lease `key` of the last scan is free or expired (unknown keys are not).
    pub(crate) fn expired(&self, key: &str, now: Instant, failover_time: Duration) -> bool {
        self.observed
            .get(key)
            .is_some_and(|o| self.is_expired(o, now, failover_time))
    }

    /// Free (released, or never owned), or its counter stood still for the failover time.
    fn is_expired(&self, o: &Observed, now: Instant, failover_time: Duration) -> bool {
        is_free(&o.lease)
            || o.last_change
                .is_none_or(|t| now.saturating_duration_since(t) >= failover_time)
    }

    /// Lease counts of live workers (this one included), over unfinished, unexpired leases.
    pub(crate) fn live_workers(
        &self,
        now: Instant,
        failover_time: Duration,
    ) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::from([(self.worker_id.clone(), 0)]);
        for o in self.observed.values() {
            if o.lease.is_finished() || self.is_expired(o, now, failover_time) {
                continue;
            }
            if let Some(owner) = &o.lease.owner {
                *counts.entry(owner.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Decides this round. `held` are the leases this worker is processing.
    pub(crate) fn plan(&self, held: &HashSet<String>, balance: &Balance, now: Instant) -> TakePlan {
        let me = self.worker_id.as_str();
        let mut plan = TakePlan::default();
        let mut rng = rand::rng();
        let active: Vec<&Observed> = self
            .observed
            .values()
            .filter(|o| !o.lease.is_finished())
            .collect();
        if active.is_empty() {
            return plan;
        }
        let counts = self.live_workers(now, balance.failover_time);
        let mine = counts.get(me).copied().unwrap_or(0);
        let workers = counts.len();
        let target = active
            .len()
            .div_ceil(workers)
            .min(balance.max_leases_for_worker);

        // Leases already named for this worker but not processed here: handed over (or left by
        // an earlier run with the same worker id). A handoff still waiting for the previous owner
        // is taken only once that owner ignored it for too long.
        for o in &active {
            if o.lease.owner.as_deref() != Some(me) || held.contains(&o.lease.key) {
                continue;
            }
            let ready = match o.handoff_waiting_since {
                None => true,
                Some(since) => now.saturating_duration_since(since) >= balance.handoff_timeout,
            };
            if ready || self.is_expired(o, now, balance.failover_time) {
                plan.take.push(o.lease.clone());
            }
        }

        let mut available: Vec<&Lease> = active
            .iter()
            .filter(|o| {
                o.lease.owner.as_deref() != Some(me)
                    && self.is_expired(o, now, balance.failover_time)
            })
            .map(|o| &o.lease)
            .collect();
        available.shuffle(&mut rng);
        let wanted = target.saturating_sub(mine);
        let taking = wanted.min(available.len());
        plan.take.extend(available.drain(..taking).cloned());
        let mut planned = mine + taking;
        if !available.is_empty() || planned >= target {
            return plan;
        }

        // Water-fill from the most loaded workers.
        let mut donors: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for o in &active {
            match o.lease.owner.as_deref() {
                Some(owner)
                    if owner != me
                        && o.lease.checkpoint_owner.is_none()
                        && !self.is_expired(o, now, balance.failover_time) =>
                {
                    donors.entry(owner).or_default().push(&o.lease);
                }
                _ => {}
            }
        }
        let mut loads: Vec<(usize, &str)> = Vec::new();
        for (owner, leases) in donors.iter_mut() {
            leases.shuffle(&mut rng);
            loads.push((counts.get(*owner).copied().unwrap_or(leases.len()), owner));
        }
        // Random order among equally loaded donors spreads concurrent requests.
        loads.shuffle(&mut rng);
        while planned < target && plan.request.len() < balance.max_leases_to_steal_at_one_time {
            let Some(most) = loads.iter_mut().max_by_key(|(load, _)| *load) else {
                break;
            };
            if most.0 < planned + 2 {
                break;
            }
            let Some(lease) = donors.get_mut(most.1).and_then(Vec::pop) else {
                most.0 = 0;
                continue;
            };
            most.0 -= 1;
            planned += 1;
            plan.request.push(lease.clone());
        }
        plan
    }

    /// Logs a round's decision (only rounds that change something are logged at info).
    pub(crate) fn log_plan(&self, plan: &TakePlan, now: Instant, failover_time: Duration) {
        let counts = self.live_workers(now, failover_time);
        let leases = self
            .observed
            .values()
            .filter(|o| !o.lease.is_finished())
            .count();
        let take: Vec<&str> = plan.take.iter().map(|l| l.key.as_str()).collect();
        let request: Vec<String> = plan
            .request
            .iter()
            .map(|l| format!("{}<-{}", l.key, l.owner.as_deref().unwrap_or("-")))
            .collect();
        if take.is_empty() && request.is_empty() {
            tracing::debug!(worker_id = %self.worker_id, leases, ?counts, "balanced: nothing to take");
        } else {
            tracing::info!(
                worker_id = %self.worker_id,
                leases,
                workers = counts.len(),
                target = leases.div_ceil(counts.len().max(1)),
                ?counts,
                ?take,
                ?request,
                "lease taker decision"
            );
        }
    }
}

/// No owner and no handoff in progress. (A lease without an owner but with a `checkpointOwner` is
/// still being finished by that worker, whose next requester left; it becomes free when that
/// worker releases it.)
fn is_free(lease: &Lease) -> bool {
    lease.owner.is_none() && lease.checkpoint_owner.is_none()
}

/// Takes `observed` for `worker_id`: succeeds only if nobody wrote the lease since the scan.
pub(crate) async fn take_lease(
    store: &dyn LeaseStore,
    observed: &Lease,
    worker_id: &str,
) -> Result<Lease, LeaseStoreError> {
    let switched = observed
        .owner
        .as_deref()
        .is_some_and(|owner| owner != worker_id)
        || observed.checkpoint_owner.is_some();
    store
        .update_lease(
            &observed.key,
            &Expectation {
                counter: Some(observed.counter),
                ..Expectation::default()
            },
            &LeaseUpdate {
                increment_counter: true,
                owner: Some(Some(worker_id.to_owned())),
                checkpoint_owner: Some(None),
                owner_switches_since_checkpoint: Some(
                    observed.owner_switches_since_checkpoint + u64::from(switched),
                ),
                ..LeaseUpdate::default()
            },
        )
        .await
}

/// Asks the owner of `observed` to hand it to `worker_id` (see the module docs).
pub(crate) async fn request_handoff(
    store: &dyn LeaseStore,
    observed: &Lease,
    worker_id: &str,
) -> Result<Lease, LeaseStoreError> {
    let Some(owner) = observed.owner.clone() else {
        return Err(LeaseStoreError::ConditionFailed);
    };
    store
        .update_lease(
            &observed.key,
            &Expectation {
                owner: Some(owner.clone()),
                no_checkpoint_owner: true,
                ..Expectation::default()
            },
            &LeaseUpdate {
                owner: Some(Some(worker_id.to_owned())),
                checkpoint_owner: Some(Some(owner)),
                ..LeaseUpdate::default()
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::ExtendedSequenceNumber;
    use crate::lease::InMemoryLeaseStore;
    use crate::lease::renewer::HeldLease;

    const FAILOVER: Duration = Duration::from_secs(10);

    fn balance() -> Balance {
        Balance {
            failover_time: FAILOVER,
            handoff_timeout: Duration::from_secs(30),
            max_leases_for_worker: usize::MAX,
            max_leases_to_steal_at_one_time: usize::MAX,
        }
    }

    async fn store_with(leases: usize) -> Arc<InMemoryLeaseStore> {
        let store = Arc::new(InMemoryLeaseStore::new());
        for i in 0..leases {
            let lease = Lease::new(
                format!("shardId-{i:012}"),
                ExtendedSequenceNumber::TrimHorizon,
            );
            store.create_lease_if_absent(&lease).await.expect("created");
        }
        store
    }

    /// A worker reduced to its lease logic: scan, plan, take, and hand over on request the
    /// way a shard consumer would (release at once, as after a checkpoint).
    struct SimWorker {
        id: String,
        taker: LeaseTaker,
        held: HashMap<String, Arc<HeldLease>>,
    }

    impl SimWorker {
        fn new(id: &str) -> Self {
            Self {
                id: id.to_owned(),
                taker: LeaseTaker::new(id),
                held: HashMap::new(),
            }
        }

        async fn renew(&mut self) {
            for lease in self.held.values() {
                lease.renew(FAILOVER, Duration::from_secs(1)).await;
                if lease.shutdown().is_cancelled() && !lease.is_ended() {
                    lease.release().await.expect("released");
                }
            }
            self.held.retain(|_, l| !l.is_ended());
        }

        async fn take_round(&mut self, store: &Arc<InMemoryLeaseStore>) -> usize {
            let plan = self.scan_and_plan(store).await;
            self.act(store, plan).await
        }

        async fn scan_and_plan(&mut self, store: &InMemoryLeaseStore) -> TakePlan {
            let now = Instant::now();
            self.taker
                .observe(store.list_leases().await.expect("scan"), now);
            let held: HashSet<String> = self.held.keys().cloned().collect();
            self.taker.plan(&held, &balance(), now)
        }

        async fn act(&mut self, store: &Arc<InMemoryLeaseStore>, plan: TakePlan) -> usize {
            let moves = plan.take.len() + plan.request.len();
            for lease in plan.take {
                if let Ok(taken) = take_lease(store.as_ref(), &lease, &self.id).await {
                    self.held.insert(
                        taken.key.clone(),
                        HeldLease::new(store.clone(), &self.id, taken),
                    );
                }
            }
            for lease in plan.request {
                // Failures are fine: someone else got there first.
                let _ = request_handoff(store.as_ref(), &lease, &self.id).await;
            }
            moves
        }
    }

    async fn owners(store: &InMemoryLeaseStore) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for lease in store.list_leases().await.expect("scan") {
            if lease.checkpoint_owner.is_none()
                && let Some(owner) = lease.owner
            {
                *counts.entry(owner).or_insert(0) += 1;
            }
        }
        counts
    }

    fn spread(counts: &BTreeMap<String, usize>, workers: usize) -> usize {
        let max = counts.values().copied().max().unwrap_or(0);
        let min = if counts.len() < workers {
            0
        } else {
            counts.values().copied().min().unwrap_or(0)
        };
        max - min
    }

    /// Runs rounds (every worker renews, then takes) until balanced ±1 with everything owned.
    /// `together`: all workers scan before any acts (worst case for contention); otherwise each
    /// scans and acts in turn (worst case for visibility: the first takes everything).
    async fn rounds_to_balance(
        store: &Arc<InMemoryLeaseStore>,
        workers: &mut [SimWorker],
        leases: usize,
        together: bool,
    ) -> usize {
        for round in 1..=20 {
            for w in workers.iter_mut() {
                w.renew().await;
            }
            if together {
                let mut plans = Vec::new();
                for w in workers.iter_mut() {
                    plans.push(w.scan_and_plan(store).await);
                }
                // Interleave the writes, one lease per worker at a time, as concurrent
                // workers would.
                while plans
                    .iter()
                    .any(|p| !p.take.is_empty() || !p.request.is_empty())
                {
                    for (w, plan) in workers.iter_mut().zip(plans.iter_mut()) {
                        let one = TakePlan {
                            take: plan.take.pop().into_iter().collect(),
                            request: plan.request.pop().into_iter().collect(),
                        };
                        w.act(store, one).await;
                    }
                }
            } else {
                for w in workers.iter_mut() {
                    w.take_round(store).await;
                }
            }
            tokio::time::advance(Duration::from_secs(3)).await;
            let counts = owners(store).await;
            if counts.values().sum::<usize>() == leases && spread(&counts, workers.len()) <= 1 {
                return round;
            }
        }
        panic!("not balanced after 20 rounds: {:?}", owners(store).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_worker_takes_every_free_lease_in_one_round() {
        let store = store_with(8).await;
        let mut w = SimWorker::new("a");
        w.take_round(&store).await;
        assert_eq!(owners(&store).await.get("a"), Some(&8));
    }

    #[tokio::test(start_paused = true)]
    async fn workers_starting_together_balance_within_five_rounds() {
        for _ in 0..20 {
            let store = store_with(12).await;
            let mut workers: Vec<_> = ["a", "b", "c"].into_iter().map(SimWorker::new).collect();
            let rounds = rounds_to_balance(&store, &mut workers, 12, true).await;
            // Usually 2–3; a 4th or 5th when two workers ask for the same lease at once.
            assert!(rounds <= 5, "took {rounds} rounds");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn staggered_workers_balance_within_six_rounds() {
        for _ in 0..20 {
            let store = store_with(12).await;
            let mut workers: Vec<_> = ["a", "b", "c"].into_iter().map(SimWorker::new).collect();
            let rounds = rounds_to_balance(&store, &mut workers, 12, false).await;
            assert!(rounds <= 6, "took {rounds} rounds");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_joining_worker_gets_its_share_and_then_nothing_moves() {
        let store = store_with(10).await;
        let mut workers: Vec<_> = ["a", "b"].into_iter().map(SimWorker::new).collect();
        rounds_to_balance(&store, &mut workers, 10, true).await;
        workers.push(SimWorker::new("c"));
        let rounds = rounds_to_balance(&store, &mut workers, 10, false).await;
        assert!(rounds <= 3, "took {rounds} rounds");
        assert!(owners(&store).await.get("c").copied().unwrap_or(0) >= 3);
        // Stable: further rounds move nothing.
        for _ in 0..5 {
            for w in workers.iter_mut() {
                w.renew().await;
            }
            for w in workers.iter_mut() {
                assert_eq!(w.take_round(&store).await, 0, "{} moved a lease", w.id);
            }
            tokio::time::advance(Duration::from_secs(3)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leases_of_a_silent_worker_are_taken_only_after_the_failover_time() {
        let store = store_with(4).await;
        let mut dead = SimWorker::new("dead");
        dead.take_round(&store).await;
        let mut alive = SimWorker::new("alive");
        alive.take_round(&store).await;
        // The counters stand still from now on.
        tokio::time::advance(FAILOVER - Duration::from_secs(1)).await;
        alive.take_round(&store).await;
        assert_eq!(
            owners(&store).await.get("dead"),
            Some(&2),
            "taken too early"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        alive.take_round(&store).await;
        assert_eq!(owners(&store).await.get("alive"), Some(&4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_in_the_next_round_without_waiting_for_expiry() {
        let store = store_with(2).await;
        let mut leaving = SimWorker::new("leaving");
        leaving.take_round(&store).await;
        let mut staying = SimWorker::new("staying");
        staying.take_round(&store).await;
        for lease in leaving.held.values() {
            lease.release().await.expect("released");
        }
        staying.take_round(&store).await;
        assert_eq!(owners(&store).await.get("staying"), Some(&2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_ignored_handoff_request_is_forced_after_the_handoff_timeout() {
        let store = store_with(2).await;
        let mut stubborn = SimWorker::new("stubborn");
        stubborn.take_round(&store).await;
        let mut asking = SimWorker::new("asking");
        asking.take_round(&store).await;
        let requested = store
            .list_leases()
            .await
            .expect("scan")
            .into_iter()
            .filter(|l| l.checkpoint_owner.is_some())
            .count();
        assert_eq!(requested, 1);
        // The owner keeps renewing and never releases.
        for _ in 0..12 {
            for lease in stubborn.held.values() {
                lease.renew(FAILOVER, Duration::from_secs(1)).await;
            }
            tokio::time::advance(Duration::from_secs(3)).await;
            asking.take_round(&store).await;
        }
        assert_eq!(owners(&store).await.get("asking"), Some(&1));
        assert_eq!(stubborn.held.values().filter(|l| l.is_ended()).count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_leases_are_neither_taken_nor_counted() {
        let store = store_with(2).await;
        let mut done = Lease::new("shardId-000000000009", ExtendedSequenceNumber::ShardEnd);
        done.owner = None;
        store.create_lease_if_absent(&done).await.expect("created");
        let mut w = SimWorker::new("a");
        w.take_round(&store).await;
        assert_eq!(owners(&store).await.get("a"), Some(&2));
    }
}
