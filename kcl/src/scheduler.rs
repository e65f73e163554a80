//! The scheduler: one worker of a fleet. It keeps the lease table in step with the shards of its
//! stream (or, in a multi-stream application, of every stream its [`StreamTracker`] lists),
//! takes its share of leases, runs a shard consumer for each, and on shutdown lets every
//! processor checkpoint and releases its leases so other workers take them at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, FormerStreamLeases, InitialPosition, RetrievalMode, retry_backoff};
use crate::lease::assignment::{Coordinator, WorkerState as AssignmentInput};
use crate::lease::renewer::{HeldLeases, run_renewer};
use crate::lease::taker::{Balance, LeaseTaker, request_handoff, take_lease};
use crate::lease::{
    CoordinatorStore, DynamoDbCoordinatorStore, DynamoDbLeaseStore, Expectation, HeldLease, Lease,
    LeaseAssignment, LeaseStore, LeaseStoreError, LeaseUpdate, ThroughputKbps,
};
use crate::metrics;
use crate::processor::ProcessorFactory;
use crate::scaling::{WorkerHandle, WorkerState, WorkerStatus};
use crate::shard::consumer::{self, ConsumerOutcome};
use crate::shard::hierarchy::finished_leases_to_delete;
use crate::shard::sync::sync_shards;
use crate::stream::{ConsumedStream, StreamConfig, StreamIdentifier, StreamTracker};

/// What every task of one worker shares.
pub(crate) struct WorkerContext {
    pub(crate) worker_id: String,
    pub(crate) kinesis: aws_sdk_kinesis::Client,
    pub(crate) store: Arc<dyn LeaseStore>,
    /// Worker reports and the leader lock; used by load-aware assignment only.
    pub(crate) coordination: Option<Arc<dyn CoordinatorStore>>,
    pub(crate) config: Config,
    pub(crate) factory: Arc<dyn ProcessorFactory>,
    /// The enhanced fan-out stream consumer's name; `None` when polling.
    pub(crate) fan_out_consumer: Option<String>,
}

/// Which streams a worker consumes.
enum Streams {
    /// The one stream named to the builder; lease keys are shard ids.
    Single(Arc<ConsumedStream>),
    /// Whatever the tracker lists; lease keys are `account:stream:creationEpoch:shardId`.
    Tracked(Arc<dyn StreamTracker>),
}

/// The builder's settings do not make a scheduler.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Set it with the builder method of the same name.
    #[error("Scheduler::builder() needs .{0}(...)")]
    Missing(&'static str),
    /// Two settings that exclude each other were both given.
    #[error("Scheduler::builder() takes .{0}(...) or .{1}(...), not both")]
    Conflicting(&'static str, &'static str),
}

/// Why [`Scheduler::run`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The lease table could not be created or reached.
    #[error("lease table unavailable: {0}")]
    LeaseTable(#[from] LeaseStoreError),
}

/// Configures a [`Scheduler`]. Required: `stream` (or `stream_tracker`), `application_name`,
/// `kinesis_client`, `processor_factory`, and `dynamodb_client` or `lease_store`.
#[derive(Default)]
pub struct SchedulerBuilder {
    stream: Option<String>,
    tracker: Option<Arc<dyn StreamTracker>>,
    application_name: Option<String>,
    worker_id: Option<String>,
    kinesis: Option<aws_sdk_kinesis::Client>,
    dynamodb: Option<aws_sdk_dynamodb::Client>,
    store: Option<Arc<dyn LeaseStore>>,
    coordination: Option<Arc<dyn CoordinatorStore>>,
    factory: Option<Arc<dyn ProcessorFactory>>,
    initial_position: InitialPosition,
    config: Config,
}

impl SchedulerBuilder {
    /// The stream to consume.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Consumes the streams `tracker` lists, with one lease table, instead of one stream (the
    /// Java KCL's multi-stream mode); the tracker is asked again every
    /// [`Config::stream_check_interval`], so streams can be added and removed at runtime. Each
    /// stream has its own initial position; [`initial_position`](Self::initial_position) does not
    /// apply. See [`crate::stream`].
    pub fn stream_tracker(mut self, tracker: impl StreamTracker) -> Self {
        self.tracker = Some(Arc::new(tracker));
        self
    }

    /// The application (consumer group) name; also the lease table's name, as in the Java KCL.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// This worker's id in the lease table (default: a random UUID). Unique per running worker.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// The Kinesis client used for listing shards and reading records.
    pub fn kinesis_client(mut self, client: aws_sdk_kinesis::Client) -> Self {
        self.kinesis = Some(client);
        self
    }

    /// The DynamoDB client for the lease table (named after the application).
    pub fn dynamodb_client(mut self, client: aws_sdk_dynamodb::Client) -> Self {
        self.dynamodb = Some(client);
        self
    }

    /// Keeps leases in another store instead of DynamoDB (e.g. an
    /// [`InMemoryLeaseStore`](crate::lease::InMemoryLeaseStore) shared by workers of one process).
    pub fn lease_store(mut self, store: impl LeaseStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Keeps worker load reports and the leader lock of load-aware assignment in another store
    /// (default with a DynamoDB client: the `<application>-WorkerMetricStats` and
    /// `<application>-CoordinatorState` tables; see
    /// [`DynamoDbCoordinatorStore`](crate::lease::DynamoDbCoordinatorStore)).
    pub fn coordinator_store(mut self, store: impl CoordinatorStore) -> Self {
        self.coordination = Some(Arc::new(store));
        self
    }

    /// Creates one processor per shard: any `Fn() -> impl RecordProcessor`.
    pub fn processor_factory(mut self, factory: impl ProcessorFactory) -> Self {
        self.factory = Some(Arc::new(factory));
        self
    }

    /// Where shards without a checkpoint start (default [`InitialPosition::Latest`]). With a
    /// [`stream_tracker`](Self::stream_tracker), each [`StreamConfig`] says instead.
    pub fn initial_position(mut self, position: InitialPosition) -> Self {
        self.initial_position = position;
        self
    }

    /// Tuning (default [`Config::default`], the Java KCL's defaults).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Scheduler, BuildError> {
        let application = self
            .application_name
            .ok_or(BuildError::Missing("application_name"))?;
        let kinesis = self.kinesis.ok_or(BuildError::Missing("kinesis_client"))?;
        let factory = self
            .factory
            .ok_or(BuildError::Missing("processor_factory"))?;
        let fan_out_consumer = match &self.config.retrieval_mode {
            RetrievalMode::Polling => None,
            RetrievalMode::FanOut { consumer_name } => {
                Some(consumer_name.clone().unwrap_or_else(|| application.clone()))
            }
        };
        let coordination: Option<Arc<dyn CoordinatorStore>> =
            match (self.coordination, &self.dynamodb) {
                (Some(store), _) => Some(store),
                (None, Some(client)) => Some(Arc::new(DynamoDbCoordinatorStore::new(
                    client.clone(),
                    &application,
                ))),
                (None, None) => None,
            };
        if matches!(self.config.lease_assignment, LeaseAssignment::LoadAware(_))
            && coordination.is_none()
        {
            return Err(BuildError::Missing("coordinator_store"));
        }
        let streams = match (self.stream, self.tracker) {
            (Some(name), None) => Streams::Single(Arc::new(ConsumedStream::new(
                &kinesis,
                None,
                name,
                self.initial_position,
                fan_out_consumer.as_deref(),
            ))),
            (None, Some(tracker)) => Streams::Tracked(tracker),
            (None, None) => return Err(BuildError::Missing("stream(...) or .stream_tracker")),
            (Some(_), Some(_)) => return Err(BuildError::Conflicting("stream", "stream_tracker")),
        };
        let store: Arc<dyn LeaseStore> = match (self.store, self.dynamodb) {
            (Some(store), _) => store,
            (None, Some(client)) => Arc::new(DynamoDbLeaseStore::new(client, application)),
            (None, None) => return Err(BuildError::Missing("dynamodb_client")),
        };
        let worker_id = self
            .worker_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(Scheduler {
            ctx: Arc::new(WorkerContext {
                worker_id,
                kinesis,
                store,
                coordination,
                config: self.config,
                factory,
                fan_out_consumer,
            }),
            status: WorkerStatus::new(),
            streams,
        })
    }
}

/// One worker. Build it with [`Scheduler::builder`], then [`run`](Scheduler::run) it.
pub struct Scheduler {
    ctx: Arc<WorkerContext>,
    status: WorkerStatus,
    streams: Streams,
}

impl Scheduler {
    /// A builder with the Java KCL's defaults.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// This worker's id in the lease table.
    pub fn worker_id(&self) -> &str {
        &self.ctx.worker_id
    }

    /// A handle for autoscalers: readiness and graceful drain ([`WorkerHandle`]).
    pub fn handle(&self) -> WorkerHandle {
        self.status.handle()
    }

    /// Processes the stream until `shutdown` fires, then shuts down gracefully: every processor
    /// gets `shutdown_requested` (to checkpoint) and every lease is released, so other workers
    /// take the shards at their next scan instead of waiting out the failover time.
    ///
    /// Dropping (or aborting) the future stops everything at once without releasing anything;
    /// other workers then take the shards after the failover time.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        let span = tracing::info_span!("worker", worker_id = %self.ctx.worker_id);
        let result = self.run_worker(shutdown).instrument(span).await;
        result.0.set(WorkerState::Stopped);
        result.1
    }

    async fn run_worker(
        self,
        shutdown: CancellationToken,
    ) -> (WorkerStatus, Result<(), SchedulerError>) {
        let (ctx, status) = (self.ctx, self.status);
        let coordinator = match &ctx.config.lease_assignment {
            LeaseAssignment::LeaseCount => None,
            LeaseAssignment::LoadAware(config) => Some(Coordinator::new(
                &ctx.worker_id,
                config.clone(),
                ctx.config.failover_time,
                ctx.config.handoff_timeout,
                ctx.config.max_leases_for_worker,
            )),
        };
        let mut initialized = ctx.store.initialize().await;
        if let (Ok(()), Some(_), Some(store)) = (&initialized, &coordinator, &ctx.coordination) {
            initialized = store.initialize().await;
        }
        if let Err(err) = initialized {
            return (status, Err(err.into()));
        }
        let (tracker, streams) = match self.streams {
            Streams::Single(stream) => {
                tracing::info!(stream = %stream.name, "worker starting");
                let entry = TrackedStream {
                    stream,
                    synced: false,
                };
                (None, HashMap::from([(None, entry)]))
            }
            Streams::Tracked(tracker) => {
                tracing::info!("worker starting with a stream tracker");
                (Some(tracker), HashMap::new())
            }
        };
        let mut worker = Worker {
            taker: LeaseTaker::new(ctx.worker_id.clone()),
            held: HeldLeases::default(),
            consumers: JoinSet::new(),
            consumer_keys: HashMap::new(),
            coordinator,
            status,
            settled_rounds: 0,
            ctx,
            tracker,
            tracker_answered: false,
            streams,
            former_streams: HashMap::new(),
        };
        if !worker.initial_sync(&shutdown).await {
            return (worker.status, Ok(()));
        }
        let stop_renewer = CancellationToken::new();
        let mut background = JoinSet::new();
        background.spawn(run_renewer(
            worker.held.clone(),
            worker.ctx.config.renewal_interval(),
            worker.ctx.config.failover_time,
            stop_renewer.clone(),
        ));

        worker.run_until(&shutdown).await;
        worker.shut_down().await;

        stop_renewer.cancel();
        while background.join_next().await.is_some() {}
        tracing::info!("worker stopped");
        (worker.status, Ok(()))
    }
}

struct Worker {
    ctx: Arc<WorkerContext>,
    taker: LeaseTaker,
    held: HeldLeases,
    consumers: JoinSet<ConsumerOutcome>,
    consumer_keys: HashMap<Id, String>,
    /// Load-aware assignment; `None` for lease counting.
    coordinator: Option<Coordinator>,
    status: WorkerStatus,
    /// Consecutive rounds in which nothing was left for this worker to take.
    settled_rounds: u32,
    /// Multi-stream mode: where the streams come from.
    tracker: Option<Arc<dyn StreamTracker>>,
    /// Whether the tracker answered at least once: until then no stream counts as removed.
    tracker_answered: bool,
    /// The streams consumed now, by identifier (`None`: the single stream of single-stream mode).
    streams: HashMap<Option<StreamIdentifier>, TrackedStream>,
    /// Leader only: streams that left the tracker but still have leases, and since when this
    /// worker knows it.
    former_streams: HashMap<StreamIdentifier, Instant>,
}

/// A stream this worker consumes.
struct TrackedStream {
    stream: Arc<ConsumedStream>,
    /// Whether this worker synced its shards once (leases exist for them).
    synced: bool,
}

impl Worker {
    fn balance(&self) -> Balance {
        let c = &self.ctx.config;
        Balance {
            failover_time: c.failover_time,
            handoff_timeout: c.handoff_timeout,
            max_leases_for_worker: c.max_leases_for_worker,
            max_leases_to_steal_at_one_time: c.max_leases_to_steal_at_one_time,
        }
    }

    /// Creates leases for the stream's shards before the first take, retrying until it works;
    /// `false` if shutdown fired first. In multi-stream mode: asks the tracker and syncs each
    /// stream once; a stream that fails (e.g. does not exist yet) is retried at each stream check
    /// without holding up the others.
    async fn initial_sync(&mut self, shutdown: &CancellationToken) -> bool {
        if self.tracker.is_some() {
            self.check_streams().await;
            return true;
        }
        let mut backoff = retry_backoff();
        while !self.sync(true).await {
            let delay = backoff.next().unwrap_or_default();
            tracing::warn!(?delay, "retrying the shard sync");
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
        }
        true
    }

    /// Syncs the shards of every stream (`all`), or of the streams this worker has not synced yet,
    /// against one scan of the lease table; returns whether every sync succeeded. A stream's
    /// first sync on this worker also logs which leases keep their checkpoint.
    async fn sync(&mut self, all: bool) -> bool {
        let pending: Vec<(Option<StreamIdentifier>, Arc<ConsumedStream>, bool)> = self
            .streams
            .iter()
            .filter(|(_, entry)| all || !entry.synced)
            .map(|(key, entry)| (key.clone(), entry.stream.clone(), entry.synced))
            .collect();
        if pending.is_empty() {
            return true;
        }
        let ctx = &self.ctx;
        let leases = match ctx.store.list_leases().await {
            Ok(leases) => leases,
            Err(err) => {
                tracing::warn!(%err, "shard sync could not scan the lease table");
                return false;
            }
        };
        let mut all_synced = true;
        for (key, stream, synced) in pending {
            let store = ctx.store.as_ref();
            match sync_shards(&ctx.kinesis, &stream, store, &leases, !synced).await {
                Ok(created) => {
                    tracing::debug!(stream = %stream.name, created, "shard sync done");
                    if let Some(entry) = self.streams.get_mut(&key) {
                        entry.synced = true;
                    }
                }
                Err(err) => {
                    tracing::warn!(stream = %stream.name, %err, "shard sync failed; will retry");
                    all_synced = false;
                }
            }
        }
        all_synced
    }

    /// Multi-stream mode: asks the tracker for the streams, starts consuming new ones (syncing
    /// their shards at once) and stops consuming removed ones.
    async fn check_streams(&mut self) {
        let Some(tracker) = &self.tracker else {
            return;
        };
        match tracker.stream_configs().await {
            Ok(configs) => {
                self.tracker_answered = true;
                self.follow(configs);
            }
            Err(err) => {
                tracing::warn!(%err, "the stream tracker failed; keeping the current streams");
            }
        }
        self.sync(false).await;
    }

    /// Makes the consumed streams those of `configs`. The shards of a removed stream stop as on
    /// a graceful shutdown (a last checkpoint, then the lease is released); no worker that
    /// tracks the same streams takes them again.
    fn follow(&mut self, configs: Vec<StreamConfig>) {
        let wanted: HashMap<StreamIdentifier, StreamConfig> =
            configs.into_iter().map(|c| (c.stream.clone(), c)).collect();
        self.streams.retain(|key, _| {
            let keep = key.as_ref().is_some_and(|id| wanted.contains_key(id));
            if !keep && let Some(id) = key {
                tracing::info!(stream = %id, "stream no longer tracked: stopping its shards");
            }
            keep
        });
        for lease in self.held.all() {
            if !self.streams.contains_key(&lease.stream().cloned()) {
                lease.shutdown().cancel();
            }
        }
        for (id, config) in wanted {
            let key = Some(id);
            let synced = match self.streams.get(&key) {
                Some(entry) if entry.stream.initial_position == config.initial_position => continue,
                Some(entry) => entry.synced,
                None => {
                    tracing::info!(stream = %config.stream, initial_position = ?config.initial_position, "consuming stream");
                    false
                }
            };
            let stream = ConsumedStream::new(
                &self.ctx.kinesis,
                key.clone(),
                config.stream.name().to_owned(),
                config.initial_position,
                self.ctx.fan_out_consumer.as_deref(),
            );
            let stream = Arc::new(stream);
            self.streams.insert(key, TrackedStream { stream, synced });
        }
        metrics::active_streams(&self.ctx.worker_id, self.streams.len());
    }

    /// The consumed stream `lease` belongs to, if any.
    fn stream_of(&self, lease: &Lease) -> Option<Arc<ConsumedStream>> {
        self.streams.get(&lease.stream).map(|e| e.stream.clone())
    }

    async fn run_until(&mut self, shutdown: &CancellationToken) {
        let config = &self.ctx.config;
        let mut taker_tick = tokio::time::interval(config.lease_taker_interval());
        let mut sync_tick = delayed_interval(config.shard_sync_interval);
        let mut cleanup_tick = delayed_interval(config.lease_cleanup_interval);
        let mut stream_tick = delayed_interval(config.stream_check_interval);
        for tick in [
            &mut taker_tick,
            &mut sync_tick,
            &mut cleanup_tick,
            &mut stream_tick,
        ] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let drain = self.status.drain_requested().clone();
        let mut drain_deadline = None;
        loop {
            if let Some(deadline) = drain_deadline
                && (self.held.len() == 0 || Instant::now() >= deadline)
            {
                return;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = drain.cancelled(), if drain_deadline.is_none() => {
                    tracing::info!(leases = self.held.len(), "draining: handing every lease over");
                    self.status.set(WorkerState::Draining);
                    if self.coordinator.is_none() {
                        // Lease counting: the graceful shutdown releases every lease.
                        return;
                    }
                    drain_deadline = Some(Instant::now() + self.ctx.config.shutdown_timeout);
                }
                Some(done) = self.consumers.join_next_with_id() => self.consumer_done(done),
                _ = taker_tick.tick() => self.take_round().await,
                _ = sync_tick.tick() => {
                    if self.is_leader() {
                        self.sync(true).await;
                    }
                }
                _ = cleanup_tick.tick() => {
                    if self.is_leader() {
                        self.clean_up().await;
                        self.clean_up_former_streams().await;
                    }
                }
                _ = stream_tick.tick() => self.check_streams().await,
            }
        }
    }

    /// The worker with the smallest id among the live ones syncs shards and cleans up, so a fleet
    /// does that work once instead of once per worker.
    fn is_leader(&self) -> bool {
        if let Some(coordinator) = &self.coordinator {
            return coordinator.is_leader(Instant::now());
        }
        let live = self
            .taker
            .live_workers(Instant::now(), self.ctx.config.failover_time);
        live.keys().next() == Some(&self.ctx.worker_id)
    }

    /// Readiness: the worker is ready after `needed` consecutive settled rounds.
    fn settled(&mut self, settled: bool, needed: u32) {
        self.settled_rounds = if settled { self.settled_rounds + 1 } else { 0 };
        if self.settled_rounds >= needed && self.status.state() == WorkerState::Starting {
            tracing::info!(leases = self.held.len(), "lease assignment settled: ready");
            self.status.set(WorkerState::Ready);
        }
    }

    /// A load-aware round ([`crate::lease::assignment`]): report, elect, lead, pick up.
    async fn assigned_round(&mut self) {
        let (Some(coordinator), Some(coordination)) =
            (self.coordinator.as_mut(), self.ctx.coordination.clone())
        else {
            return;
        };
        let held = self.held.all();
        let state = AssignmentInput {
            held: held.iter().map(|l| l.key().to_owned()).collect(),
            throughput: ThroughputKbps::new(held.iter().map(|l| l.throughput().kbps()).sum()),
            draining: self.status.state() == WorkerState::Draining,
        };
        let outcome = coordinator
            .round(
                self.ctx.store.as_ref(),
                coordination.as_ref(),
                &state,
                Instant::now(),
            )
            .await;
        if state.draining {
            return;
        }
        let me = self.ctx.worker_id.clone();
        for lease in outcome.adopt {
            let Some(stream) = self.stream_of(&lease) else {
                continue;
            };
            tracing::info!(shard_id = %lease.key, "starting lease assigned to this worker");
            metrics::lease_taken(&me);
            self.start_consumer(stream, HeldLease::new(self.ctx.store.clone(), &me, lease));
        }
        self.take_leases(outcome.force).await;
        self.settled(outcome.settled, 2);
        metrics::leases_held(&me, self.held.len());
    }

    async fn take_round(&mut self) {
        if self.coordinator.is_some() {
            return self.assigned_round().await;
        }
        let leases = match self.ctx.store.list_leases().await {
            Ok(leases) => leases,
            Err(err) => {
                tracing::warn!(%err, "could not scan the lease table; will retry");
                return;
            }
        };
        // Leases of streams this worker does not consume (removed from the tracker, or another
        // application's) are neither taken nor counted.
        let leases = leases
            .into_iter()
            .filter(|l| self.streams.contains_key(&l.stream))
            .collect();
        let now = Instant::now();
        self.taker.observe(leases, now);
        let held: HashSet<String> = self.held.all().iter().map(|l| l.key().to_owned()).collect();
        let plan = self.taker.plan(&held, &self.balance(), now);
        self.taker
            .log_plan(&plan, now, self.ctx.config.failover_time);
        // Settled: nothing to take or ask for, and nothing named for this worker still on its way.
        let me = self.ctx.worker_id.as_str();
        let arriving = self
            .taker
            .leases()
            .any(|l| l.owner.as_deref() == Some(me) && !l.is_finished() && !held.contains(&l.key));
        self.settled(
            plan.take.is_empty() && plan.request.is_empty() && !arriving,
            1,
        );
        if self.status.state() == WorkerState::Draining {
            return;
        }
        self.take_leases(plan.take).await;
        let (store, me) = (self.ctx.store.clone(), self.ctx.worker_id.clone());
        for lease in plan.request {
            match request_handoff(store.as_ref(), &lease, &me).await {
                Ok(_) => tracing::info!(
                    shard_id = %lease.key,
                    from = lease.owner.as_deref().unwrap_or("-"),
                    "asked for lease"
                ),
                Err(LeaseStoreError::ConditionFailed) => {
                    tracing::debug!(shard_id = %lease.key, "lease changed before it could be asked for");
                }
                Err(err) => tracing::warn!(shard_id = %lease.key, %err, "could not ask for lease"),
            }
        }
        metrics::leases_held(&me, self.held.len());
    }

    /// Takes `leases` with conditional writes and starts a consumer for each one taken.
    async fn take_leases(&mut self, leases: Vec<Lease>) {
        let (store, me) = (self.ctx.store.clone(), self.ctx.worker_id.clone());
        for lease in leases {
            let Some(stream) = self.stream_of(&lease) else {
                continue;
            };
            match take_lease(store.as_ref(), &lease, &me).await {
                Ok(taken) => {
                    tracing::info!(shard_id = %taken.key, from = lease.owner.as_deref().unwrap_or("-"), "took lease");
                    metrics::lease_taken(&me);
                    self.start_consumer(stream, HeldLease::new(store.clone(), &me, taken));
                }
                Err(LeaseStoreError::ConditionFailed) => {
                    tracing::debug!(shard_id = %lease.key, "lease changed before it could be taken");
                }
                Err(err) => tracing::warn!(shard_id = %lease.key, %err, "could not take lease"),
            }
        }
    }

    fn start_consumer(&mut self, stream: Arc<ConsumedStream>, lease: Arc<HeldLease>) {
        self.held.insert(lease.clone());
        let key = lease.key().to_owned();
        metrics::lease_owned(&self.ctx.worker_id, &key, true);
        let handle = self
            .consumers
            .spawn(consumer::run(self.ctx.clone(), stream, lease));
        self.consumer_keys.insert(handle.id(), key);
    }

    fn consumer_done(&mut self, done: Result<(Id, ConsumerOutcome), JoinError>) {
        let (id, outcome) = match done {
            Ok((id, outcome)) => (id, Some(outcome)),
            Err(err) => (err.id(), None),
        };
        let Some(key) = self.consumer_keys.remove(&id) else {
            return;
        };
        self.held.remove(&key);
        metrics::lease_owned(&self.ctx.worker_id, &key, false);
        match outcome {
            Some(outcome) => tracing::info!(shard_id = %key, ?outcome, "shard consumer finished"),
            // Processor panics are caught inside the consumer; this is a bug in this crate.
            None => {
                tracing::error!(shard_id = %key, "shard consumer crashed; the lease will expire")
            }
        }
        metrics::leases_held(&self.ctx.worker_id, self.held.len());
    }

    /// Deletes leases of shards processed to their end whose children have leases.
    async fn clean_up(&self) {
        let scanned: Box<dyn Iterator<Item = &Lease>> = match &self.coordinator {
            Some(coordinator) => Box::new(coordinator.leases()),
            None => Box::new(self.taker.leases()),
        };
        let leases: Vec<Lease> = scanned.cloned().collect();
        let finished: Vec<String> = finished_leases_to_delete(&leases)
            .into_iter()
            .map(|l| l.key.clone())
            .collect();
        for key in finished {
            match self.ctx.store.delete_finished_lease(&key).await {
                Ok(true) => tracing::info!(shard_id = %key, "deleted finished lease"),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(shard_id = %key, %err, "could not delete finished lease")
                }
            }
        }
    }

    /// Multi-stream mode, leader only: deletes the leases of streams the tracker no longer lists
    /// once they have been gone for the configured delay ([`FormerStreamLeases`]).
    async fn clean_up_former_streams(&mut self) {
        let FormerStreamLeases::DeleteAfter(delay) = self.ctx.config.former_stream_leases else {
            return;
        };
        if self.tracker.is_none() || !self.tracker_answered {
            return;
        }
        let leases = match self.ctx.store.list_leases().await {
            Ok(leases) => leases,
            Err(err) => {
                tracing::warn!(%err, "could not scan for leases of former streams; will retry");
                return;
            }
        };
        let mut former: HashMap<StreamIdentifier, Vec<String>> = HashMap::new();
        for lease in leases {
            if let Some(id) = &lease.stream
                && !self.streams.contains_key(&lease.stream)
            {
                former.entry(id.clone()).or_default().push(lease.key);
            }
        }
        self.former_streams.retain(|id, _| former.contains_key(id));
        metrics::pending_streams_deletion(&self.ctx.worker_id, former.len());
        let now = Instant::now();
        for (id, keys) in former {
            let since = *self.former_streams.entry(id.clone()).or_insert_with(|| {
                tracing::info!(stream = %id, leases = keys.len(), ?delay, "stream no longer tracked; its leases will be deleted after the delay");
                now
            });
            if now.saturating_duration_since(since) < delay {
                continue;
            }
            let mut deleted = 0;
            for key in &keys {
                match self.ctx.store.delete_lease(key).await {
                    Ok(existed) => deleted += usize::from(existed),
                    Err(err) => {
                        tracing::warn!(shard_id = %key, %err, "could not delete lease of former stream")
                    }
                }
            }
            tracing::info!(stream = %id, deleted, "deleted the leases of a former stream");
        }
    }

    async fn shut_down(&mut self) {
        let held = self.held.all();
        tracing::info!(
            leases = held.len(),
            "shutting down: checkpointing and releasing leases"
        );
        for lease in &held {
            lease.shutdown().cancel();
        }
        let timeout = self.ctx.config.shutdown_timeout;
        let drained = tokio::time::timeout(timeout, async {
            while let Some(done) = self.consumers.join_next_with_id().await {
                self.consumer_done(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?timeout,
                remaining = self.consumers.len(),
                "processors did not finish in time; their leases will expire"
            );
            self.consumers.shutdown().await;
        }
        self.release_unprocessed().await;
        if let (Some(coordinator), Some(store)) =
            (self.coordinator.as_mut(), &self.ctx.coordination)
        {
            coordinator.leave(store.as_ref()).await;
        }
    }

    /// Releases leases named for this worker that it never started processing: handed over to
    /// it, or still being handed over, since its last scan. Without this they would wait out
    /// the failover time.
    async fn release_unprocessed(&self) {
        let me = &self.ctx.worker_id;
        let leases = match self.ctx.store.list_leases().await {
            Ok(leases) => leases,
            Err(err) => {
                tracing::warn!(%err, "could not scan for leases handed to this worker; they will expire");
                return;
            }
        };
        for lease in leases {
            if lease.owner.as_ref() != Some(me) || lease.is_finished() {
                continue;
            }
            // No counter bump: during a handoff the previous owner still holds the counter, and
            // clearing `leaseOwner` lets it release the lease as free when it is done.
            let expect = Expectation {
                owner: Some(me.clone()),
                ..Expectation::default()
            };
            let update = LeaseUpdate {
                owner: Some(None),
                ..LeaseUpdate::default()
            };
            match self
                .ctx
                .store
                .update_lease(&lease.key, &expect, &update)
                .await
            {
                Ok(_) => {
                    tracing::info!(shard_id = %lease.key, "released lease handed to this worker")
                }
                Err(err) => tracing::debug!(shard_id = %lease.key, %err, "lease moved on"),
            }
        }
    }
}

/// An interval whose first tick comes after one period (the initial work is done at start).
fn delayed_interval(period: Duration) -> tokio::time::Interval {
    tokio::time::interval_at(Instant::now() + period, period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::InMemoryLeaseStore;
    use crate::processor::{ProcessRecordsInput, ProcessorError, RecordProcessor};

    struct Noop;

    #[async_trait::async_trait]
    impl RecordProcessor for Noop {
        async fn process_records(&mut self, _: &ProcessRecordsInput) -> Result<(), ProcessorError> {
            Ok(())
        }
    }

    fn builder() -> SchedulerBuilder {
        let kinesis = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version_latest()
                .build(),
        );
        Scheduler::builder()
            .application_name("app")
            .kinesis_client(kinesis)
            .lease_store(InMemoryLeaseStore::new())
            .processor_factory(|| Noop)
    }

    #[test]
    fn a_scheduler_consumes_one_stream_or_a_tracker_of_streams_not_both() {
        assert!(builder().stream("orders").build().is_ok());
        assert!(builder().stream_tracker(Vec::new()).build().is_ok());
        let both = builder()
            .stream("orders")
            .stream_tracker(Vec::new())
            .build();
        assert!(matches!(
            both,
            Err(BuildError::Conflicting("stream", "stream_tracker"))
        ));
        let neither = builder().build().err().map(|e| e.to_string());
        assert_eq!(
            neither.as_deref(),
            Some("Scheduler::builder() needs .stream(...) or .stream_tracker(...)")
        );
    }
}
