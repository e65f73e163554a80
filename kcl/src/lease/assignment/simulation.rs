//! A fleet simulation in virtual time through the real lease logic (in-memory stores,
//! `HeldLease` renewals and releases, the count taker, the load-aware coordinator): hundreds of
//! shards with skewed throughput, workers 2 → 10 → 3, both strategies in the same run.
//!
//! Full report (400 shards, 5 virtual minutes per phase):
//! `cargo test -p kcl --lib simulation -- --ignored --nocapture`
//!
//! Per phase it reports: when the assignment settled (the last lease start), lease moves (starts
//! of leases that had been processed before), the max/min ratio of worker load (true throughput
//! of the leases each worker processes), and lease-store traffic per minute: requests, and
//! capacity units as DynamoDB bills them (strongly consistent reads: 4 KB per unit of items read,
//! index queries half; writes: 1 KB per unit), both over the lease table and the coordinator
//! tables, renewals included (identical for both strategies).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Coordinator, LoadAwareConfig, LoadMetric, WorkerState as Input};
use crate::checkpoint::ExtendedSequenceNumber;
use crate::config::Config;
use crate::lease::coordination::{CoordinatorStore, InMemoryCoordinatorStore, LockRecord};
use crate::lease::load::{ThroughputKbps, WorkerLoad};
use crate::lease::renewer::HeldLease;
use crate::lease::taker::{Balance, LeaseTaker, request_handoff, take_lease};
use crate::lease::{
    Expectation, InMemoryLeaseStore, Lease, LeaseStore, LeaseStoreError, LeaseUpdate,
};

/// Item sizes of the capacity model, in bytes.
const LEASE_ITEM: u64 = 300;
const REPORT_ITEM: u64 = 100;
const LOCK_ITEM: u64 = 100;
const INDEX_KEYS: u64 = 60;

/// Requests and capacity units, counted by wrapping the stores.
#[derive(Default)]
struct Traffic {
    requests: AtomicU64,
    /// Renewals among the requests (the same for both strategies: one per lease per interval).
    renewals: AtomicU64,
    /// Capacity units × 2 (index queries cost half a unit per 4 KB).
    half_units: AtomicU64,
    /// `LeaseOwnerToLeaseKeyIndex` queries among the requests.
    index_queries: AtomicU64,
}

impl Traffic {
    fn read(&self, bytes: u64, consistent: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let units = bytes.div_ceil(4096).max(1);
        self.half_units.fetch_add(
            if consistent { units * 2 } else { units },
            Ordering::Relaxed,
        );
    }

    fn write(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.half_units
            .fetch_add(bytes.div_ceil(1024).max(1) * 2, Ordering::Relaxed);
    }

    /// (requests, renewals, capacity units).
    fn snapshot(&self) -> (u64, u64, f64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.renewals.load(Ordering::Relaxed),
            self.half_units.load(Ordering::Relaxed) as f64 / 2.0,
        )
    }
}

struct Counted<S> {
    inner: S,
    traffic: Arc<Traffic>,
}

#[async_trait]
impl LeaseStore for Counted<InMemoryLeaseStore> {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        Ok(())
    }
    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        let leases = self.inner.list_leases().await?;
        self.traffic.read(leases.len() as u64 * LEASE_ITEM, true);
        Ok(leases)
    }
    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.traffic.read(LEASE_ITEM, true);
        self.inner.get_lease(key).await
    }
    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.traffic.write(LEASE_ITEM);
        self.inner.create_lease_if_absent(lease).await
    }
    async fn update_lease(
        &self,
        key: &str,
        expect: &Expectation,
        update: &LeaseUpdate,
    ) -> Result<Lease, LeaseStoreError> {
        self.traffic.write(LEASE_ITEM);
        let renewal = LeaseUpdate {
            increment_counter: true,
            throughput: update.throughput,
            ..LeaseUpdate::default()
        };
        if *update == renewal {
            self.traffic.renewals.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.update_lease(key, expect, update).await
    }
    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>, LeaseStoreError> {
        let keys = self.inner.list_lease_keys_owned_by(owner).await?;
        self.traffic.read(keys.len() as u64 * INDEX_KEYS, false);
        self.traffic.index_queries.fetch_add(1, Ordering::Relaxed);
        Ok(keys)
    }
    async fn delete_finished_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
        self.traffic.write(LEASE_ITEM);
        self.inner.delete_finished_lease(key).await
    }
    async fn delete_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
        self.traffic.write(LEASE_ITEM);
        self.inner.delete_lease(key).await
    }
}

#[async_trait]
impl CoordinatorStore for Counted<InMemoryCoordinatorStore> {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        Ok(())
    }
    async fn publish_worker_load(&self, load: &WorkerLoad) -> Result<(), LeaseStoreError> {
        self.traffic.write(REPORT_ITEM);
        self.inner.publish_worker_load(load).await
    }
    async fn remove_worker_load(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.traffic.write(REPORT_ITEM);
        self.inner.remove_worker_load(worker_id).await
    }
    async fn list_worker_loads(&self) -> Result<Vec<WorkerLoad>, LeaseStoreError> {
        let loads = self.inner.list_worker_loads().await?;
        self.traffic.read(loads.len() as u64 * REPORT_ITEM, true);
        Ok(loads)
    }
    async fn read_lock(&self, name: &str) -> Result<Option<LockRecord>, LeaseStoreError> {
        self.traffic.read(LOCK_ITEM, true);
        self.inner.read_lock(name).await
    }
    async fn write_lock(
        &self,
        name: &str,
        record: &LockRecord,
        expected_version: Option<&str>,
    ) -> Result<(), LeaseStoreError> {
        self.traffic.write(LOCK_ITEM);
        self.inner.write_lock(name, record, expected_version).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    LeaseCount,
    LoadAware,
}

struct SimWorker {
    id: String,
    held: HashMap<String, Arc<HeldLease>>,
    taker: LeaseTaker,
    coordinator: Option<Coordinator>,
}

struct Fleet {
    strategy: Strategy,
    config: Config,
    leases: Arc<Counted<InMemoryLeaseStore>>,
    coordination: Counted<InMemoryCoordinatorStore>,
    traffic: Arc<Traffic>,
    /// True throughput of each shard, KB/s.
    shards: BTreeMap<String, f64>,
    workers: Vec<SimWorker>,
    /// Leases ever started (to tell first starts from moves).
    started_once: HashSet<String>,
    starts: u64,
    moves: u64,
    last_start: Option<Instant>,
}

/// What one phase showed.
#[derive(Debug, Clone)]
struct PhaseReport {
    settled_after: Option<Duration>,
    /// From when on the load ratio stayed within 1.3 (`None`: not at the end).
    balanced_after: Option<Duration>,
    moves: u64,
    load_ratio: f64,
    requests_per_minute: f64,
    /// Requests other than renewals.
    other_per_minute: f64,
    units_per_minute: f64,
    /// Capacity units other than renewals' (one unit each).
    other_units_per_minute: f64,
}

/// Max/min worker load that counts as balanced.
const BALANCED: f64 = 1.3;

/// Skewed throughput: every 20th shard hot (800 KB/s), every 5th warm (200 KB/s), the rest 20.
fn shard_throughput(i: usize) -> f64 {
    if i.is_multiple_of(20) {
        800.0
    } else if i.is_multiple_of(5) {
        200.0
    } else {
        20.0
    }
}

impl Fleet {
    async fn new(strategy: Strategy, shards: usize) -> Self {
        let traffic = Arc::new(Traffic::default());
        let leases = Arc::new(Counted {
            inner: InMemoryLeaseStore::new(),
            traffic: traffic.clone(),
        });
        let mut throughput = BTreeMap::new();
        for i in 0..shards {
            let key = format!("shardId-{i:012}");
            leases
                .inner
                .create_lease_if_absent(&Lease::new(&key, ExtendedSequenceNumber::TrimHorizon))
                .await
                .expect("created");
            throughput.insert(key, shard_throughput(i));
        }
        Self {
            strategy,
            config: Config::default(),
            leases,
            coordination: Counted {
                inner: InMemoryCoordinatorStore::new(),
                traffic: traffic.clone(),
            },
            traffic,
            shards: throughput,
            workers: Vec::new(),
            started_once: HashSet::new(),
            starts: 0,
            moves: 0,
            last_start: None,
        }
    }

    fn add_worker(&mut self, id: &str) {
        let c = &self.config;
        let coordinator = (self.strategy == Strategy::LoadAware).then(|| {
            Coordinator::new(
                id,
                LoadAwareConfig::default().metric(LoadMetric::Throughput),
                c.failover_time,
                c.handoff_timeout,
                c.max_leases_for_worker,
            )
        });
        self.workers.push(SimWorker {
            id: id.to_owned(),
            held: HashMap::new(),
            taker: LeaseTaker::new(id),
            coordinator,
        });
    }

    /// Graceful stop: every processor checkpoints and its lease is released.
    async fn stop_worker(&mut self, id: &str) {
        let Some(index) = self.workers.iter().position(|w| w.id == id) else {
            return;
        };
        let mut worker = self.workers.remove(index);
        for lease in worker.held.values() {
            let _ = lease.release().await;
        }
        if let Some(coordinator) = worker.coordinator.as_mut() {
            coordinator.leave(&self.coordination).await;
        }
    }

    /// Abrupt stop: nothing is released, the report stays behind.
    fn crash_worker(&mut self, id: &str) {
        self.workers.retain(|w| w.id != id);
    }

    /// Owner → leases, over the lease table.
    async fn owners(&self) -> BTreeMap<String, usize> {
        let mut owners = BTreeMap::new();
        for lease in self.leases.inner.list_leases().await.expect("scan") {
            if let Some(owner) = lease.owner {
                *owners.entry(owner).or_default() += 1;
            }
        }
        owners
    }

    fn start(&mut self, key: &str) {
        self.starts += 1;
        if !self.started_once.insert(key.to_owned()) {
            self.moves += 1;
        }
        self.last_start = Some(Instant::now());
    }

    /// One renewal interval: every worker renews (handing over what was asked for, as a
    /// processor that checkpoints in `shutdown_requested` would), then takes.
    async fn tick(&mut self) {
        let interval = self.config.renewal_interval();
        let failover = self.config.failover_time;
        for w in &mut self.workers {
            for (key, lease) in &w.held {
                let bytes = self.shards[key] * 1024.0 * interval.as_secs_f64();
                lease.record_bytes(bytes as usize);
                lease.renew(failover, interval).await;
                if lease.shutdown().is_cancelled() && !lease.is_ended() {
                    let _ = lease.release().await;
                }
            }
            w.held.retain(|_, l| !l.is_ended());
        }
        let store: Arc<dyn LeaseStore> = self.leases.clone();
        let balance = Balance {
            failover_time: failover,
            handoff_timeout: self.config.handoff_timeout,
            max_leases_for_worker: self.config.max_leases_for_worker,
            max_leases_to_steal_at_one_time: self.config.max_leases_to_steal_at_one_time,
        };
        for i in 0..self.workers.len() {
            let now = Instant::now();
            let held: HashSet<String> = self.workers[i].held.keys().cloned().collect();
            let (mut adopt, mut take) = (Vec::new(), Vec::new());
            let id = self.workers[i].id.clone();
            match self.strategy {
                Strategy::LeaseCount => {
                    let scan = self.leases.list_leases().await.expect("scan");
                    let w = &mut self.workers[i];
                    w.taker.observe(scan, now);
                    let plan = w.taker.plan(&held, &balance, now);
                    take = plan.take;
                    for lease in plan.request {
                        let _ = request_handoff(store.as_ref(), &lease, &id).await;
                    }
                }
                Strategy::LoadAware => {
                    let throughput = self.workers[i]
                        .held
                        .values()
                        .map(|l| l.throughput().kbps())
                        .sum();
                    let input = Input {
                        held,
                        throughput: ThroughputKbps::new(throughput),
                        draining: false,
                    };
                    if let Some(c) = self.workers[i].coordinator.as_mut() {
                        let outcome = c
                            .round(self.leases.as_ref(), &self.coordination, &input, now)
                            .await;
                        adopt = outcome.adopt;
                        take = outcome.force;
                    }
                }
            }
            for lease in take {
                if let Ok(taken) = take_lease(store.as_ref(), &lease, &id).await {
                    adopt.push(taken);
                }
            }
            for lease in adopt {
                self.start(&lease.key);
                let key = lease.key.clone();
                self.workers[i]
                    .held
                    .insert(key, HeldLease::new(store.clone(), &id, lease));
            }
        }
        tokio::time::advance(interval).await;
    }

    /// Max/min of the true throughput each worker processes (∞ if one processes nothing).
    fn load_ratio(&self) -> f64 {
        let loads: Vec<f64> = self
            .workers
            .iter()
            .map(|w| w.held.keys().map(|k| self.shards[k]).sum())
            .collect();
        let max = loads.iter().copied().fold(0.0, f64::max);
        let min = loads.iter().copied().fold(f64::INFINITY, f64::min);
        if min > 0.0 { max / min } else { f64::INFINITY }
    }

    async fn phase(&mut self, ticks: u32) -> PhaseReport {
        let (start, moves) = (Instant::now(), self.moves);
        let (requests, renewals, units) = self.traffic.snapshot();
        self.last_start = None;
        let mut balanced_since = None;
        for _ in 0..ticks {
            self.tick().await;
            if self.load_ratio() > BALANCED {
                balanced_since = None;
            } else if balanced_since.is_none() {
                balanced_since = Some(Instant::now().duration_since(start));
            }
        }
        let minutes = start.elapsed().as_secs_f64() / 60.0;
        let (requests_after, renewals_after, units_after) = self.traffic.snapshot();
        PhaseReport {
            settled_after: self.last_start.map(|t| t.duration_since(start)),
            balanced_after: balanced_since,
            moves: self.moves - moves,
            load_ratio: self.load_ratio(),
            requests_per_minute: (requests_after - requests) as f64 / minutes,
            other_per_minute: ((requests_after - requests) - (renewals_after - renewals)) as f64
                / minutes,
            units_per_minute: (units_after - units) / minutes,
            other_units_per_minute: (units_after - units - (renewals_after - renewals) as f64)
                / minutes,
        }
    }
}

/// Runs 2 → 10 → 3 workers with `ticks` renewal intervals per phase.
async fn run(strategy: Strategy, shards: usize, ticks: u32) -> Vec<PhaseReport> {
    let mut fleet = Fleet::new(strategy, shards).await;
    let mut reports = Vec::new();
    for i in 0..2 {
        fleet.add_worker(&format!("w{i:02}"));
    }
    reports.push(fleet.phase(ticks).await);
    for i in 2..10 {
        fleet.add_worker(&format!("w{i:02}"));
    }
    reports.push(fleet.phase(ticks).await);
    for i in 3..10 {
        fleet.stop_worker(&format!("w{i:02}")).await;
    }
    reports.push(fleet.phase(ticks).await);
    let total = fleet.leases.inner.list_leases().await.expect("scan");
    assert!(
        total.iter().all(|l| l.owner.is_some()),
        "{strategy:?}: every lease has an owner at the end"
    );
    reports
}

fn table(shards: usize, count: &[PhaseReport], load: &[PhaseReport]) -> String {
    let mut out = format!(
        "{shards} shards (5% at 800 KB/s, 15% at 200, 80% at 20), renewal interval 3.3 s\n\
         | phase | strategy | balanced (≤ {BALANCED}) after | settled after | lease moves | max/min load | requests/min | non-renewal requests/min | capacity units/min | non-renewal units/min |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    let phases = ["2 workers", "2 → 10", "10 → 3"];
    for (i, phase) in phases.iter().enumerate() {
        for (name, r) in [("lease count", &count[i]), ("load-aware", &load[i])] {
            out.push_str(&format!(
                "| {phase} | {name} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
                r.balanced_after.map_or_else(
                    || "never".to_owned(),
                    |d| format!("{:.1} s", d.as_secs_f64())
                ),
                r.settled_after
                    .map_or_else(|| "-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
                r.moves,
                r.load_ratio,
                r.requests_per_minute,
                r.other_per_minute,
                r.units_per_minute,
                r.other_units_per_minute,
            ));
        }
    }
    let sum = |r: &[PhaseReport], f: fn(&PhaseReport) -> f64| r.iter().map(f).sum::<f64>();
    let moves = |r: &PhaseReport| r.moves as f64;
    let units = |r: &PhaseReport| r.units_per_minute;
    let other = |r: &PhaseReport| r.other_units_per_minute;
    let requests = |r: &PhaseReport| r.requests_per_minute;
    let other_requests = |r: &PhaseReport| r.other_per_minute;
    out.push_str(&format!(
        "load-aware / lease count over all phases: moves {:.2}, requests {:.3} (non-renewal \
         {:.2}), capacity units {:.2} (non-renewal {:.2})\n",
        sum(load, moves) / sum(count, moves).max(1.0),
        sum(load, requests) / sum(count, requests),
        sum(load, other_requests) / sum(count, other_requests),
        sum(load, units) / sum(count, units),
        sum(load, other) / sum(count, other),
    ));
    out
}

/// The qualitative outcome: load-aware balances load (within 1.3 max/min after every phase; lease
/// counting balances counts, so its load ratio is luck), with no more moves over the scaling
/// phases, fewer capacity units in every phase and fewer requests over all phases.
fn assert_load_aware_wins(count: &[PhaseReport], load: &[PhaseReport]) {
    for (i, (c, l)) in count.iter().zip(load).enumerate() {
        assert!(
            l.load_ratio <= BALANCED && l.balanced_after.is_some(),
            "phase {i}: load-aware left load ratio {:.2}",
            l.load_ratio
        );
        assert!(
            l.units_per_minute < c.units_per_minute,
            "phase {i}: capacity units {:.0} vs {:.0}",
            l.units_per_minute,
            c.units_per_minute
        );
    }
    let requests = |r: &[PhaseReport]| r.iter().map(|p| p.requests_per_minute).sum::<f64>();
    let other = |r: &[PhaseReport]| r.iter().map(|p| p.other_per_minute).sum::<f64>();
    assert!(
        requests(load) < requests(count) && other(load) < other(count),
        "requests/min summed over the phases: {:.0} ({:.0} non-renewal) load-aware vs {:.0} \
         ({:.0}) by count",
        requests(load),
        other(load),
        requests(count),
        other(count)
    );
    let moves = |r: &[PhaseReport]| r[1..].iter().map(|p| p.moves).sum::<u64>();
    assert!(
        moves(load) <= moves(count),
        "scaling moved {} leases load-aware vs {} by count",
        moves(load),
        moves(count)
    );
}

#[tokio::test(start_paused = true)]
async fn load_aware_assignment_balances_load_with_fewer_moves_and_less_traffic() {
    let (shards, ticks) = (200, 40);
    let count = run(Strategy::LeaseCount, shards, ticks).await;
    let load = run(Strategy::LoadAware, shards, ticks).await;
    println!("{}", table(shards, &count, &load));
    assert_load_aware_wins(&count, &load);
}

#[tokio::test(start_paused = true)]
async fn followers_look_for_new_leases_only_when_the_leader_names_them() {
    let mut fleet = Fleet::new(Strategy::LoadAware, 30).await;
    for id in ["w00", "w01", "w02"] {
        fleet.add_worker(id);
    }
    fleet.phase(20).await;
    let traffic = fleet.traffic.clone();
    let queries = || traffic.index_queries.load(Ordering::Relaxed);

    // Settled: the two followers query only on the safety cadence.
    let before = queries();
    let quiet = 30;
    fleet.phase(quiet).await;
    let safety_only = 2 * (u64::from(quiet) / super::DISCOVERY_SAFETY_ROUNDS + 1);
    assert!(
        queries() - before <= safety_only,
        "{} index queries in {quiet} quiet rounds",
        queries() - before
    );

    // A follower leaves: the leader names its leases for the others, who find them at once.
    fleet.stop_worker("w02").await;
    let (before, left) = (queries(), Instant::now());
    while fleet.workers.iter().map(|w| w.held.len()).sum::<usize>() < 30 {
        fleet.tick().await;
        assert!(
            left.elapsed() < fleet.config.failover_time * 3,
            "never picked up"
        );
    }
    assert!(queries() > before, "the named follower looked");
    let held: usize = fleet.workers.iter().map(|w| w.held.len()).sum();
    assert_eq!(held, 30, "every lease is processed again");
    assert!(
        left.elapsed() < fleet.config.failover_time,
        "picked up within a failover time, not at the safety cadence"
    );
}

#[tokio::test(start_paused = true)]
async fn leases_of_a_crashed_worker_and_of_a_crashed_leader_move_after_the_failover_time() {
    let mut fleet = Fleet::new(Strategy::LoadAware, 30).await;
    for id in ["w00", "w01", "w02"] {
        fleet.add_worker(id);
    }
    fleet.phase(10).await;
    assert_eq!(fleet.owners().await.len(), 3);
    let failover = fleet.config.failover_time;

    // A follower crashes: its leases stay put until they expire, then go to the others.
    fleet.crash_worker("w02");
    let crashed = Instant::now();
    while fleet.owners().await.contains_key("w02") {
        fleet.tick().await;
        assert!(crashed.elapsed() < failover * 3, "w02's leases never moved");
    }
    assert!(
        crashed.elapsed() >= failover,
        "moved before the failover time"
    );

    // The leader crashes: the last worker takes the lock (after the lock duration, the failover
    // time by default, counted from its first read of the last version) and then the leases
    // (after the failover time, counted from its first scan as leader).
    fleet.crash_worker("w00");
    let crashed = Instant::now();
    while fleet.owners().await.keys().collect::<Vec<_>>() != ["w01"] {
        fleet.tick().await;
        assert!(
            crashed.elapsed() < failover * 5,
            "the leader's leases never moved"
        );
    }
    assert!(crashed.elapsed() >= failover);
    assert_eq!(fleet.owners().await.get("w01"), Some(&30));
}

#[tokio::test(start_paused = true)]
#[ignore = "the full report; run with --ignored --nocapture"]
async fn simulation_report() {
    // 5 virtual minutes per phase.
    let (shards, ticks) = (400, 91);
    let count = run(Strategy::LeaseCount, shards, ticks).await;
    let load = run(Strategy::LoadAware, shards, ticks).await;
    println!("{}", table(shards, &count, &load));
    assert_load_aware_wins(&count, &load);
}
