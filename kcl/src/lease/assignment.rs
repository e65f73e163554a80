//! Load-aware lease assignment: one elected [`leader`](super::leader) places leases by measured
//! [`load`](super::load) and moves them by graceful handoff; every other worker only picks up what
//! is named for it. The lease-count strategy ([`taker`](super::taker), every worker scanning and
//! taking its share) remains available as [`LeaseAssignment::LeaseCount`].
//!
//! Each round (every lease taker interval) every worker
//! 1. publishes its [`WorkerLoad`] (CPU utilization, throughput of its leases, lease count,
//!    draining) to the [`CoordinatorStore`] when it changed, else every third round (a report
//!    unchanged for two failover times marks the worker gone);
//! 2. takes part in the leader election; the leader then scans the lease table and
//!    - places free and expired leases, heaviest first, on the worker with the least projected
//!      load (ties: fewest leases);
//!    - moves every lease off draining workers the same way;
//!    - moves load from workers above `average × (1 + threshold)` and to workers below
//!      `average × (1 − threshold)`, each move taking from the most to the least loaded worker
//!      the lease that best evens out the two, among those that leave the receiver at least
//!      `threshold × average` below where the donor was;
//!    - announces, with its next lock write, which workers it named leases for (an epoch and
//!      the workers: [`Assignments`](super::Assignments));
//! 3. a follower lists the leases named for it (`LeaseOwnerToLeaseKeyIndex`, no scan) and starts
//!    them — but only when the announcement names it, when it cannot tell (a missed epoch, or a
//!    leader that announces nothing, like the Java KCL's), and every
//!    `DISCOVERY_SAFETY_ROUNDS` otherwise. Followers read the lock every round while
//!    assignments are moving and every third round when they are not, so a settled follower
//!    costs a lock read and a report every third round instead of an index query every round.
//!
//! Damping, so the fleet settles instead of oscillating: a lease moves only if the receiver ends
//! below where the donor was, so every move strictly lowers the sum of squared worker loads (a
//! static fleet cannot cycle); the threshold is a dead band, both for starting to move and for
//! the least gain a move must bring; a lease moved off a worker stays put for
//! `lease_cooldown_rounds` (a lease placed from no owner does not: its load was a guess until
//! its first renewal measured it); per-lease throughput travels with the lease (the new
//! owner's average starts from it); and with the CPU metric, which lags behind moves, the leader
//! rebalances only after `cpu_settle_rounds` rounds without a move.
//!
//! Moves are graceful handoffs (Java KCL 3.x semantics): the leader sets `leaseOwner` to the new
//! worker and `checkpointOwner` to the current one without bumping the counter; the current
//! owner's processor gets `shutdown_requested`, checkpoints and releases; the new owner starts
//! from that checkpoint. If the current owner keeps renewing without releasing for
//! [`Config::handoff_timeout`](crate::Config::handoff_timeout), the new owner takes the lease.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::coordination::CoordinatorStore;
use super::leader::LeaderElection;
use super::load::{CpuSampler, ThroughputKbps, WorkerLoad};
use super::model::Lease;
use super::store::{LeaseStore, LeaseStoreError};
use super::taker::{LeaseTaker, request_handoff, take_lease};

/// How leases are spread over the workers of a fleet.
///
/// ```
/// use kcl::Config;
/// use kcl::lease::{LeaseAssignment, LoadAwareConfig};
///
/// let config = Config::default().lease_assignment(LeaseAssignment::LoadAware(
///     LoadAwareConfig::default().threshold(0.15),
/// ));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub enum LeaseAssignment {
    /// Every worker scans the lease table and takes its share by count (the Java KCL 2.x way,
    /// with graceful handoffs and faster convergence). Needs nothing but the lease table.
    #[default]
    LeaseCount,
    /// An elected leader assigns by measured load (the Java KCL 3.x way); needs a
    /// [`CoordinatorStore`].
    LoadAware(LoadAwareConfig),
}

/// What measures a worker's load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadMetric {
    /// CPU when every worker reports it, else throughput.
    #[default]
    Auto,
    /// CPU utilization against the worker's CPU limit (one worker per process).
    Cpu,
    /// The summed throughput of the worker's leases.
    Throughput,
}

/// Settings of [`LeaseAssignment::LoadAware`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadAwareConfig {
    pub(crate) threshold: f64,
    pub(crate) metric: LoadMetric,
    pub(crate) lease_cooldown_rounds: u64,
    pub(crate) cpu_settle_rounds: u64,
    pub(crate) max_moves_per_round: usize,
    pub(crate) min_lease_kbps: f64,
    pub(crate) leader_lock_duration: Option<Duration>,
}

impl Default for LoadAwareConfig {
    fn default() -> Self {
        Self {
            threshold: 0.1,
            metric: LoadMetric::Auto,
            lease_cooldown_rounds: 3,
            cpu_settle_rounds: 3,
            max_moves_per_round: usize::MAX,
            min_lease_kbps: 1.0,
            leader_lock_duration: None,
        }
    }
}

impl LoadAwareConfig {
    /// The dead band around the fleet average, as a fraction (default 0.1, as the Java KCL 3.x):
    /// no worker is relieved or fed while within `average × (1 ± threshold)`.
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = if threshold.is_finite() {
            threshold.clamp(0.0, 10.0)
        } else {
            0.1
        };
        self
    }

    /// What measures a worker's load (default [`LoadMetric::Auto`]).
    pub fn metric(mut self, metric: LoadMetric) -> Self {
        self.metric = metric;
        self
    }

    /// Rounds a lease moved off a worker stays where it went (default 3). Leases placed from no
    /// owner (new or expired) may move as soon as their load is measured.
    pub fn lease_cooldown_rounds(mut self, rounds: u64) -> Self {
        self.lease_cooldown_rounds = rounds;
        self
    }

    /// With the CPU metric, rounds without a move before the next rebalance (default 3): CPU
    /// reports show a move's effect only after a while.
    pub fn cpu_settle_rounds(mut self, rounds: u64) -> Self {
        self.cpu_settle_rounds = rounds;
        self
    }

    /// Cap on rebalancing moves per round (default none: the balancing rule bounds them).
    pub fn max_moves_per_round(mut self, moves: usize) -> Self {
        self.max_moves_per_round = moves.max(1);
        self
    }

    /// What an idle lease counts for, in KB/s (default 1): an idle shard still costs a reader, and
    /// without a floor an idle stream's leases would all go to one worker.
    pub fn min_lease_kbps(mut self, kbps: f64) -> Self {
        self.min_lease_kbps = ThroughputKbps::new(kbps).kbps();
        self
    }

    /// How long the leader lock outlives a silent leader (default: the failover time).
    pub fn leader_lock_duration(mut self, duration: Duration) -> Self {
        self.leader_lock_duration = Some(duration);
        self
    }
}

/// A lease as the planner sees it.
#[derive(Debug, Clone)]
pub(crate) struct PlannedLease {
    pub(crate) key: String,
    /// The worker it counts for (during a handoff: the next owner); `None` when it needs a new
    /// owner (free, expired, or owned by a worker that is gone).
    pub(crate) owner: Option<String>,
    pub(crate) load: f64,
    /// May move this round (no handoff in progress, not in cooldown).
    pub(crate) movable: bool,
}

/// A worker as the planner sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlannedWorker {
    /// Current load, in the unit of the lease loads.
    pub(crate) load: f64,
    pub(crate) leases: usize,
    /// Draining: give it nothing, take everything away.
    pub(crate) draining: bool,
}

/// One decision: `key` goes to `to` (from `from`, by graceful handoff, when it has an owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) key: String,
    pub(crate) from: Option<String>,
    pub(crate) to: String,
}

/// Limits of one planning round.
#[derive(Debug, Clone)]
pub(crate) struct PlanLimits {
    pub(crate) threshold: f64,
    pub(crate) rebalance: bool,
    pub(crate) max_moves: usize,
    pub(crate) max_leases_for_worker: usize,
}

/// Decides one round. Pure: the same input always gives the same plan.
pub(crate) fn plan(
    leases: &[PlannedLease],
    workers: &BTreeMap<String, PlannedWorker>,
    limits: &PlanLimits,
) -> Vec<Placement> {
    let mut workers = workers.clone();
    let mut placements = Vec::new();
    let receivers = |workers: &BTreeMap<String, PlannedWorker>| -> Vec<String> {
        workers
            .iter()
            .filter(|(_, w)| !w.draining)
            .map(|(id, _)| id.clone())
            .collect()
    };
    if receivers(&workers).is_empty() {
        return placements;
    }
    let least_loaded = |workers: &BTreeMap<String, PlannedWorker>, skip: Option<&str>| {
        workers
            .iter()
            .filter(|(id, w)| {
                !w.draining && w.leases < limits.max_leases_for_worker && Some(id.as_str()) != skip
            })
            .min_by(|(a_id, a), (b_id, b)| {
                a.load
                    .total_cmp(&b.load)
                    .then(a.leases.cmp(&b.leases))
                    .then(a_id.cmp(b_id))
            })
            .map(|(id, _)| id.clone())
    };

    // 1. Leases without a (live) owner, and every movable lease of a draining worker.
    let mut homeless: Vec<&PlannedLease> = leases
        .iter()
        .filter(|l| match &l.owner {
            None => true,
            Some(owner) => l.movable && workers.get(owner).is_some_and(|w| w.draining),
        })
        .collect();
    homeless.sort_by(|a, b| b.load.total_cmp(&a.load).then(a.key.cmp(&b.key)));
    for lease in homeless {
        let Some(to) = least_loaded(&workers, None) else {
            break;
        };
        if let Some(from) = lease.owner.as_ref().and_then(|o| workers.get_mut(o)) {
            from.load -= lease.load;
            from.leases -= 1;
        }
        if let Some(w) = workers.get_mut(&to) {
            w.load += lease.load;
            w.leases += 1;
        }
        placements.push(Placement {
            key: lease.key.clone(),
            from: lease.owner.clone(),
            to,
        });
    }
    if !limits.rebalance {
        return placements;
    }

    // 2. Rebalance among the workers that take leases.
    let active = receivers(&workers);
    let total: f64 = active.iter().map(|id| workers[id].load).sum();
    let average = total / active.len() as f64;
    let (high, low) = (
        average * (1.0 + limits.threshold),
        average * (1.0 - limits.threshold),
    );
    let placed: HashSet<String> = placements.iter().map(|p| p.key.clone()).collect();
    let mut movable: BTreeMap<&str, Vec<&PlannedLease>> = BTreeMap::new();
    for lease in leases {
        if let Some(owner) = &lease.owner
            && lease.movable
            && !placed.contains(&lease.key)
        {
            movable.entry(owner.as_str()).or_default().push(lease);
        }
    }
    let mut exhausted: HashSet<String> = HashSet::new();
    let mut moves = 0;
    while moves < limits.max_moves {
        let donor = active
            .iter()
            .filter(|id| !exhausted.contains(*id))
            .max_by(|a, b| workers[*a].load.total_cmp(&workers[*b].load).then(b.cmp(a)))
            .cloned();
        let Some(donor) = donor else { break };
        let Some(receiver) = least_loaded(&workers, Some(&donor)) else {
            break;
        };
        let (d, r) = (workers[&donor].load, workers[&receiver].load);
        if d <= high && r >= low {
            break;
        }
        let gap = d - r;
        // The lease that best evens out the pair, among those that narrow the gap by more than
        // the dead band (so the receiver ends clearly below where the donor was) and, when the
        // donor is not above the band, do not push it below the band.
        let margin = limits.threshold * average;
        let floor = if d > high { f64::NEG_INFINITY } else { low };
        let candidates = movable.get_mut(donor.as_str());
        let best = candidates.as_ref().and_then(|c| {
            c.iter()
                .enumerate()
                .filter(|(_, l)| l.load <= gap - margin && d - l.load >= floor)
                .min_by(|(_, a), (_, b)| {
                    (gap - 2.0 * a.load)
                        .abs()
                        .total_cmp(&(gap - 2.0 * b.load).abs())
                        .then(a.key.cmp(&b.key))
                })
                .map(|(i, _)| i)
        });
        let (Some(index), Some(candidates)) = (best, candidates) else {
            exhausted.insert(donor);
            continue;
        };
        let lease = candidates.swap_remove(index);
        if let Some(w) = workers.get_mut(&donor) {
            w.load -= lease.load;
            w.leases -= 1;
        }
        if let Some(w) = workers.get_mut(&receiver) {
            w.load += lease.load;
            w.leases += 1;
        }
        placements.push(Placement {
            key: lease.key.clone(),
            from: Some(donor),
            to: receiver,
        });
        moves += 1;
    }
    placements
}

/// A worker republishes an unchanged report, and a follower reads the leader lock, every this
/// many rounds (≈ 10 s at the default interval); a changed report (lease count, draining) goes
/// out at once.
const REPORT_EVERY_ROUNDS: u64 = 3;

/// A follower whose leader announced nothing for it still queries for its leases every this many
/// rounds (≈ 33 s): a lease named without an announcement (a leader that died between its writes
/// and its next lock write) is found even before it expires and is assigned again.
const DISCOVERY_SAFETY_ROUNDS: u64 = 10;

/// A worker whose report did not change for this many failover times is gone.
const REPORT_EXPIRY_FAILOVERS: u32 = 2;

/// What a worker should start after a round.
#[derive(Debug, Default)]
pub(crate) struct RoundOutcome {
    /// Leases named for this worker and free of a previous owner: hold them as read (the writer
    /// already bumped the counter, fencing anyone else).
    pub(crate) adopt: Vec<Lease>,
    /// Leases whose previous owner ignored the handoff for the handoff timeout: take them.
    pub(crate) force: Vec<Lease>,
    /// Nothing was named for this worker that it does not process, and nothing is on its way.
    pub(crate) settled: bool,
}

/// This worker's part in load-aware assignment, between rounds.
#[derive(Debug)]
pub(crate) struct Coordinator {
    worker_id: String,
    config: LoadAwareConfig,
    failover_time: Duration,
    handoff_timeout: Duration,
    max_leases_for_worker: usize,
    election: LeaderElection,
    cpu: CpuSampler,
    sequence: u64,
    /// (leases, draining) as last published.
    published: Option<(usize, bool)>,
    round: u64,
    /// Leader memory: lease expiry (observed counters).
    taker: LeaseTaker,
    /// Leader memory: each report's sequence and when it last changed.
    reports: HashMap<String, (u64, Instant)>,
    /// Leader memory: the round each lease last moved in.
    moved_in: HashMap<String, u64>,
    last_move_round: u64,
    /// When a handoff to this worker was first seen waiting for the previous owner.
    waiting: HashMap<String, Instant>,
    /// Follower memory: the leader's announcement epoch as of the last look for leases.
    seen_epoch: Option<u64>,
    /// Follower memory: the round of the last index query for this worker's leases.
    last_query_round: u64,
    /// Follower memory: the lock is read every round up to this round (assignments moving).
    active_until: u64,
}

/// What the worker tells its coordinator each round.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerState {
    pub(crate) held: HashSet<String>,
    pub(crate) throughput: ThroughputKbps,
    pub(crate) draining: bool,
}

impl Coordinator {
    pub(crate) fn new(
        worker_id: &str,
        config: LoadAwareConfig,
        failover_time: Duration,
        handoff_timeout: Duration,
        max_leases_for_worker: usize,
    ) -> Self {
        let lock = config.leader_lock_duration.unwrap_or(failover_time);
        Self {
            worker_id: worker_id.to_owned(),
            election: LeaderElection::new(worker_id, lock),
            cpu: CpuSampler::new(),
            sequence: 0,
            published: None,
            round: 0,
            taker: LeaseTaker::new(worker_id),
            reports: HashMap::new(),
            moved_in: HashMap::new(),
            last_move_round: 0,
            waiting: HashMap::new(),
            seen_epoch: None,
            last_query_round: 0,
            active_until: 0,
            config,
            failover_time,
            handoff_timeout,
            max_leases_for_worker,
        }
    }

    /// Whether this worker is the leader (as of its last round).
    pub(crate) fn is_leader(&self, now: Instant) -> bool {
        self.election.is_leader(now)
    }

    /// One round: report, elect, lead (if leader), and find what to start.
    pub(crate) async fn round(
        &mut self,
        leases: &dyn LeaseStore,
        coordinator: &dyn CoordinatorStore,
        state: &WorkerState,
        now: Instant,
    ) -> RoundOutcome {
        self.round += 1;
        let summary = (state.held.len(), state.draining);
        if self.published != Some(summary) || self.round % REPORT_EVERY_ROUNDS == 1 {
            self.publish(coordinator, state, now).await;
            self.published = Some(summary);
        }
        let was_leader = self.election.is_leader(now);
        // Followers look at the lock every few rounds, every round while assignments are moving
        // and once the leader looked silent: a leader that dies is replaced a few seconds later.
        if !was_leader
            && (self.election.suspects_leader()
                || self.round <= self.active_until
                || self.round % REPORT_EVERY_ROUNDS == 1)
        {
            self.election.round(coordinator, now).await;
        }
        if !self.election.is_leader(now) {
            return match self.discover(leases, &state.held).await {
                Ok(named) => self.pick_up(named, &state.held, now),
                Err(err) => {
                    tracing::warn!(%err, "could not list this worker's leases; will retry");
                    RoundOutcome::default()
                }
            };
        }
        let scan = self.lead(leases, coordinator, now).await;
        if was_leader {
            // Renewed after leading, so the lock announces this round's assignments at once.
            self.election.round(coordinator, now).await;
        }
        match scan {
            Ok(scan) => {
                let named = scan
                    .into_iter()
                    .filter(|l| l.owner.as_deref() == Some(&self.worker_id))
                    .collect();
                self.pick_up(named, &state.held, now)
            }
            Err(err) => {
                tracing::warn!(%err, "assignment round failed; will retry");
                RoundOutcome::default()
            }
        }
    }

    /// Publishes this worker's load report.
    async fn publish(
        &mut self,
        coordinator: &dyn CoordinatorStore,
        state: &WorkerState,
        now: Instant,
    ) {
        self.sequence += 1;
        let report = WorkerLoad {
            worker_id: self.worker_id.clone(),
            sequence: self.sequence,
            cpu_percent: match self.config.metric {
                LoadMetric::Throughput => None,
                _ => self.cpu.sample(now),
            },
            throughput: state.throughput,
            leases: state.held.len(),
            draining: state.draining,
        };
        crate::metrics::worker_load(
            &self.worker_id,
            report.cpu_percent,
            report.throughput.kbps(),
        );
        if let Err(err) = coordinator.publish_worker_load(&report).await {
            tracing::warn!(%err, "could not publish this worker's load; will retry");
        }
    }

    /// Leases that may be named for this worker, read consistently: every lease it owns (an
    /// index query) when the leader's announcement names it, cannot tell (no announcement, missed
    /// ones) or has been silent for [`DISCOVERY_SAFETY_ROUNDS`]; otherwise only the leases whose
    /// previous owner it waits for.
    async fn discover(
        &mut self,
        store: &dyn LeaseStore,
        held: &HashSet<String>,
    ) -> Result<Vec<Lease>, LeaseStoreError> {
        let announced = self.election.announced();
        let epoch = announced.map(|a| a.epoch);
        let named_for_me = match (announced, self.seen_epoch) {
            (Some(a), Some(seen)) if a.epoch == seen => false,
            (Some(a), Some(seen)) if a.epoch == seen + 1 => a.workers.contains(&self.worker_id),
            _ => true,
        };
        let query = named_for_me
            || self.round.saturating_sub(self.last_query_round) >= DISCOVERY_SAFETY_ROUNDS;
        let keys = if query {
            let keys = store.list_lease_keys_owned_by(&self.worker_id).await?;
            self.last_query_round = self.round;
            keys
        } else {
            self.waiting.keys().cloned().collect()
        };
        let mut named = Vec::new();
        for key in keys {
            if held.contains(&key) {
                continue;
            }
            if let Some(lease) = store.get_lease(&key).await? {
                named.push(lease);
            }
        }
        // Only now is the announcement handled: a failed read above looks again next round.
        if epoch != self.seen_epoch {
            self.active_until = self.round + REPORT_EVERY_ROUNDS;
        }
        self.seen_epoch = epoch;
        Ok(named)
    }

    fn pick_up(&mut self, named: Vec<Lease>, held: &HashSet<String>, now: Instant) -> RoundOutcome {
        let mut outcome = RoundOutcome {
            settled: true,
            ..RoundOutcome::default()
        };
        let mut still_waiting = HashMap::new();
        for lease in named {
            if held.contains(&lease.key)
                || lease.owner.as_deref() != Some(&self.worker_id)
                || lease.is_finished()
            {
                continue;
            }
            outcome.settled = false;
            match &lease.checkpoint_owner {
                None => outcome.adopt.push(lease),
                Some(previous) if previous == &self.worker_id => outcome.adopt.push(lease),
                Some(previous) => {
                    let since = self.waiting.get(&lease.key).copied().unwrap_or(now);
                    if now.saturating_duration_since(since) >= self.handoff_timeout {
                        tracing::warn!(
                            shard_id = %lease.key,
                            %previous,
                            timeout = ?self.handoff_timeout,
                            "previous owner did not hand the lease over in time; taking it"
                        );
                        outcome.force.push(lease);
                    } else {
                        still_waiting.insert(lease.key.clone(), since);
                    }
                }
            }
        }
        self.waiting = still_waiting;
        outcome
    }

    /// The leader's part: scan, plan, write. Returns the scan.
    async fn lead(
        &mut self,
        store: &dyn LeaseStore,
        coordinator: &dyn CoordinatorStore,
        now: Instant,
    ) -> Result<Vec<Lease>, LeaseStoreError> {
        let scan = store.list_leases().await?;
        self.taker.observe(scan.clone(), now);
        let reports = coordinator.list_worker_loads().await?;
        let (leases, workers) = self.view(&scan, &reports, now);
        let cpu = self.uses_cpu(&reports, &workers);
        let settled_for = self.round.saturating_sub(self.last_move_round);
        let limits = PlanLimits {
            threshold: self.config.threshold,
            rebalance: !cpu || settled_for >= self.config.cpu_settle_rounds,
            max_moves: self.config.max_moves_per_round,
            max_leases_for_worker: self.max_leases_for_worker,
        };
        let placements = plan(&leases, &workers, &limits);
        let mut scan = scan;
        let mut moved = 0;
        let mut named = BTreeSet::new();
        for placement in &placements {
            // The lock is renewed after leading: a slow round stops assigning once it may have
            // lapsed, before any other worker can have taken it.
            if !self.election.is_leader(Instant::now()) {
                tracing::warn!(worker_id = %self.worker_id, "leader lock may have lapsed; assigning no more this round");
                break;
            }
            let Some(lease) = scan.iter_mut().find(|l| l.key == placement.key) else {
                continue;
            };
            let live_owner = placement.from.is_some()
                && !self.taker.expired(&lease.key, now, self.failover_time);
            let written = if live_owner {
                request_handoff(store, lease, &placement.to).await
            } else {
                take_lease(store, lease, &placement.to).await
            };
            match written {
                Ok(stored) => {
                    // What this worker picks up below must reflect this round's writes.
                    *lease = stored;
                    moved += 1;
                    named.insert(placement.to.clone());
                    if placement.from.is_some() {
                        self.moved_in.insert(placement.key.clone(), self.round);
                    }
                    crate::metrics::lease_assigned(&self.worker_id, live_owner);
                }
                Err(LeaseStoreError::ConditionFailed) => {
                    tracing::debug!(shard_id = %placement.key, "lease changed before it could be assigned");
                }
                Err(err) => {
                    tracing::warn!(shard_id = %placement.key, %err, "could not assign lease")
                }
            }
        }
        self.election.announce(named.into_iter().collect());
        if moved > 0 {
            self.last_move_round = self.round;
            tracing::info!(
                worker_id = %self.worker_id,
                placements = ?placements.iter().map(|p| format!("{}:{}->{}", p.key, p.from.as_deref().unwrap_or("-"), p.to)).collect::<Vec<_>>(),
                "leader assigned leases"
            );
        }
        Ok(scan)
    }

    /// Whether worker load is CPU this round.
    fn uses_cpu(&self, reports: &[WorkerLoad], workers: &BTreeMap<String, PlannedWorker>) -> bool {
        match self.config.metric {
            LoadMetric::Throughput => false,
            LoadMetric::Cpu | LoadMetric::Auto => workers.keys().all(|id| {
                reports
                    .iter()
                    .any(|r| &r.worker_id == id && r.cpu_percent.is_some())
            }),
        }
    }

    /// The planner's view: live workers (fresh reports), and every unfinished lease with its load.
    fn view(
        &mut self,
        scan: &[Lease],
        reports: &[WorkerLoad],
        now: Instant,
    ) -> (Vec<PlannedLease>, BTreeMap<String, PlannedWorker>) {
        let mut live = BTreeMap::new();
        let mut seen = HashMap::new();
        for report in reports {
            let since = match self.reports.get(&report.worker_id) {
                Some((sequence, since)) if *sequence == report.sequence => *since,
                _ => now,
            };
            seen.insert(report.worker_id.clone(), (report.sequence, since));
            if now.saturating_duration_since(since) < self.failover_time * REPORT_EXPIRY_FAILOVERS {
                live.insert(
                    report.worker_id.clone(),
                    PlannedWorker {
                        draining: report.draining,
                        ..PlannedWorker::default()
                    },
                );
            }
        }
        self.reports = seen;
        let active: Vec<&Lease> = scan.iter().filter(|l| !l.is_finished()).collect();
        let known: Vec<f64> = active
            .iter()
            .filter_map(|l| l.throughput.map(ThroughputKbps::kbps))
            .collect();
        let unknown_kbps = if known.is_empty() {
            0.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        let cooldown = self.config.lease_cooldown_rounds;
        let expired: HashSet<&str> = active
            .iter()
            .filter(|l| self.taker.expired(&l.key, now, self.failover_time))
            .map(|l| l.key.as_str())
            .collect();
        // A live worker renews every lease it holds: one that let a lease expire is gone, even if
        // its last report is still fresh.
        for lease in &active {
            if let Some(owner) = &lease.owner
                && expired.contains(lease.key.as_str())
            {
                live.remove(owner);
            }
        }
        let mut leases: Vec<PlannedLease> = active
            .iter()
            .map(|l| {
                let cooling = self
                    .moved_in
                    .get(&l.key)
                    .is_some_and(|r| self.round.saturating_sub(*r) < cooldown);
                PlannedLease {
                    key: l.key.clone(),
                    owner: if expired.contains(l.key.as_str()) {
                        None
                    } else {
                        l.owner.clone()
                    },
                    load: l.throughput.map_or(unknown_kbps, ThroughputKbps::kbps)
                        + self.config.min_lease_kbps,
                    movable: l.checkpoint_owner.is_none() && !cooling,
                }
            })
            .collect();
        self.moved_in
            .retain(|_, r| self.round.saturating_sub(*r) < cooldown);
        // Unexpired leases of workers that do not report (lease-count or Java workers, or a
        // handoff to a worker that left) stay where they are until they expire: neither placed
        // nor counted.
        leases.retain(|l| l.owner.as_ref().is_none_or(|o| live.contains_key(o)));
        for lease in &leases {
            if let Some(w) = lease.owner.as_ref().and_then(|o| live.get_mut(o)) {
                w.load += lease.load;
                w.leases += 1;
            }
        }
        if self.uses_cpu(reports, &live) {
            // Spread each worker's CPU over its leases in proportion to their throughput.
            for (id, worker) in live.iter_mut() {
                let cpu = reports
                    .iter()
                    .find(|r| &r.worker_id == id)
                    .and_then(|r| r.cpu_percent)
                    .unwrap_or(0.0);
                let throughput = worker.load;
                for lease in leases.iter_mut().filter(|l| l.owner.as_ref() == Some(id)) {
                    lease.load = if throughput > 0.0 {
                        cpu * lease.load / throughput
                    } else {
                        0.0
                    };
                }
                worker.load = cpu;
            }
            let owned: Vec<f64> = leases
                .iter()
                .filter(|l| l.owner.is_some())
                .map(|l| l.load)
                .collect();
            let average = if owned.is_empty() {
                1.0
            } else {
                owned.iter().sum::<f64>() / owned.len() as f64
            };
            for lease in leases.iter_mut().filter(|l| l.owner.is_none()) {
                lease.load = average;
            }
        }
        (leases, live)
    }

    /// The leases of this worker's last scan as leader.
    pub(crate) fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.taker.leases()
    }

    /// Stops leading and forgets this worker's report, so the others move on at once.
    pub(crate) async fn leave(&mut self, coordinator: &dyn CoordinatorStore) {
        self.election.resign(coordinator).await;
        if let Err(err) = coordinator.remove_worker_load(&self.worker_id).await {
            tracing::debug!(%err, "could not remove this worker's load report");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: &str, owner: Option<&str>, load: f64) -> PlannedLease {
        PlannedLease {
            key: key.into(),
            owner: owner.map(str::to_owned),
            load,
            movable: true,
        }
    }

    fn workers(ids: &[&str]) -> BTreeMap<String, PlannedWorker> {
        ids.iter()
            .map(|id| ((*id).to_owned(), PlannedWorker::default()))
            .collect()
    }

    fn with_loads(
        leases: &[PlannedLease],
        mut workers: BTreeMap<String, PlannedWorker>,
    ) -> BTreeMap<String, PlannedWorker> {
        for l in leases {
            if let Some(w) = l.owner.as_ref().and_then(|o| workers.get_mut(o)) {
                w.load += l.load;
                w.leases += 1;
            }
        }
        workers
    }

    fn limits() -> PlanLimits {
        PlanLimits {
            threshold: 0.1,
            rebalance: true,
            max_moves: usize::MAX,
            max_leases_for_worker: usize::MAX,
        }
    }

    fn apply(leases: &mut [PlannedLease], placements: &[Placement]) {
        for p in placements {
            if let Some(l) = leases.iter_mut().find(|l| l.key == p.key) {
                l.owner = Some(p.to.clone());
            }
        }
    }

    #[test]
    fn free_leases_go_heaviest_first_to_the_least_loaded_worker() {
        let leases = vec![
            lease("a", None, 10.0),
            lease("b", None, 1.0),
            lease("c", None, 1.0),
            lease("d", None, 8.0),
        ];
        let placements = plan(
            &leases,
            &with_loads(&leases, workers(&["w1", "w2"])),
            &limits(),
        );
        let to = |k: &str| placements.iter().find(|p| p.key == k).map(|p| p.to.clone());
        assert_eq!(to("a"), Some("w1".into()));
        assert_eq!(to("d"), Some("w2".into()));
        // 10 vs 8: both small ones to w2.
        assert_eq!(to("b"), Some("w2".into()));
        assert_eq!(to("c"), Some("w2".into()));
    }

    #[test]
    fn a_hot_worker_sheds_load_to_a_new_one_and_then_nothing_moves() {
        let mut leases: Vec<PlannedLease> = (0..10)
            .map(|i| {
                lease(
                    &format!("s{i}"),
                    Some("w1"),
                    if i == 0 { 20.0 } else { 2.0 },
                )
            })
            .collect();
        leases.extend((10..20).map(|i| lease(&format!("s{i}"), Some("w2"), 2.0)));
        let ws = workers(&["w1", "w2", "w3"]);
        let placements = plan(&leases, &with_loads(&leases, ws.clone()), &limits());
        assert!(!placements.is_empty());
        apply(&mut leases, &placements);
        let after = with_loads(&leases, ws.clone());
        let loads: Vec<f64> = after.values().map(|w| w.load).collect();
        let (max, min) = (
            loads.iter().copied().fold(f64::MIN, f64::max),
            loads.iter().copied().fold(f64::MAX, f64::min),
        );
        assert!(max / min <= 1.25, "{loads:?}");
        // Damped: the next round moves nothing.
        assert_eq!(plan(&leases, &after, &limits()), Vec::new());
    }

    #[test]
    fn a_lease_hotter_than_the_gap_stays_put() {
        let leases = vec![lease("hot", Some("w1"), 50.0), lease("x", Some("w2"), 10.0)];
        let ws = with_loads(&leases, workers(&["w1", "w2"]));
        assert_eq!(plan(&leases, &ws, &limits()), Vec::new());
    }

    #[test]
    fn a_draining_worker_gives_every_lease_away() {
        let leases: Vec<PlannedLease> = (0..6)
            .map(|i| {
                lease(
                    &format!("s{i}"),
                    Some(if i < 3 { "old" } else { "w1" }),
                    1.0,
                )
            })
            .collect();
        let mut ws = with_loads(&leases, workers(&["old", "w1", "w2"]));
        if let Some(w) = ws.get_mut("old") {
            w.draining = true;
        }
        let placements = plan(&leases, &ws, &limits());
        let from_old = placements
            .iter()
            .filter(|p| p.from.as_deref() == Some("old"))
            .count();
        assert_eq!(from_old, 3);
        assert!(placements.iter().all(|p| p.to != "old"));
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_cpu_metric_a_workers_cpu_is_spread_over_its_leases_by_throughput() {
        let mut coordinator = Coordinator::new(
            "a",
            LoadAwareConfig::default().metric(LoadMetric::Cpu),
            Duration::from_secs(10),
            Duration::from_secs(30),
            usize::MAX,
        );
        let scan: Vec<Lease> = (0..4)
            .map(|i| {
                let mut lease = Lease::new(
                    format!("s{i}"),
                    crate::checkpoint::ExtendedSequenceNumber::TrimHorizon,
                );
                lease.owner = Some(if i < 2 { "a" } else { "b" }.into());
                lease.counter = 1;
                lease.throughput = Some(ThroughputKbps::new(if i == 0 { 29.0 } else { 9.0 }));
                lease
            })
            .collect();
        let report = |id: &str, cpu: f64| WorkerLoad {
            worker_id: id.into(),
            sequence: 1,
            cpu_percent: Some(cpu),
            throughput: ThroughputKbps::ZERO,
            leases: 2,
            draining: false,
        };
        coordinator.taker.observe(scan.clone(), Instant::now());
        let (leases, workers) = coordinator.view(
            &scan,
            &[report("a", 80.0), report("b", 20.0)],
            Instant::now(),
        );
        assert_eq!(workers["a"].load, 80.0);
        assert_eq!(workers["b"].load, 20.0);
        let load = |k: &str| leases.iter().find(|l| l.key == k).map(|l| l.load);
        // 80 % over leases of 30 and 10 KB/s (with the 1 KB/s floor): 60 and 20.
        assert_eq!(load("s0"), Some(60.0));
        assert_eq!(load("s1"), Some(20.0));
        assert_eq!(load("s2"), Some(10.0));
        let placements = plan(&leases, &workers, &limits());
        assert_eq!(
            placements,
            vec![Placement {
                key: "s1".into(),
                from: Some("a".into()),
                to: "b".into()
            }]
        );
    }

    #[test]
    fn leases_in_handoff_or_cooldown_do_not_move() {
        let mut leases: Vec<PlannedLease> = (0..8)
            .map(|i| lease(&format!("s{i}"), Some("w1"), 1.0))
            .collect();
        for l in &mut leases {
            l.movable = false;
        }
        let ws = with_loads(&leases, workers(&["w1", "w2"]));
        assert_eq!(plan(&leases, &ws, &limits()), Vec::new());
    }
}

#[cfg(test)]
mod simulation;
