//! Tuning knobs, with the Java KCL's defaults, in one place.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::lease::LeaseAssignment;

/// Where a worker starts reading a shard that has no checkpoint yet. Applies only when a lease is
/// created: once a lease exists its checkpoint wins (children of processed shards always start at
/// their beginning).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InitialPosition {
    /// After the newest record: only records put from now on (the Java KCL default).
    #[default]
    Latest,
    /// At the oldest record still retained.
    TrimHorizon,
    /// At the first record that arrived at or after this time.
    AtTimestamp(SystemTime),
}

/// How a worker reads records from its shards.
///
/// ```
/// use kcl::{Config, RetrievalMode};
///
/// // Enhanced fan-out through a consumer named after the application (the Java KCL's default).
/// let config = Config::default().retrieval_mode(RetrievalMode::fan_out());
/// // Or through a consumer of another name.
/// let named = Config::default().retrieval_mode(RetrievalMode::FanOut {
///     consumer_name: Some("orders-fast-path".into()),
/// });
/// # let _ = (config, named);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RetrievalMode {
    /// `GetRecords` calls into a bounded prefetch queue (the default, as in the Java KCL 1.x and
    /// the 2.x `PollingConfig`). Shares the shard's 2 MB/s read throughput with every other
    /// reader; an idle shard is read every `idle_time_between_reads`.
    #[default]
    Polling,
    /// Enhanced fan-out: `SubscribeToShard` pushes records as they are written, through a
    /// registered stream consumer with its own 2 MB/s per shard. The consumer is registered on
    /// first use (or reused if it exists) and shared by every worker of the application.
    FanOut {
        /// The stream consumer's name; `None` is the application name, as in the Java KCL.
        consumer_name: Option<String>,
    },
}

impl RetrievalMode {
    /// Enhanced fan-out through a consumer named after the application.
    pub fn fan_out() -> Self {
        Self::FanOut {
            consumer_name: None,
        }
    }
}

/// What happens to the leases of a stream a multi-stream application no longer consumes (the
/// Java KCL's `FormerStreamsLeasesDeletionStrategy`). Whatever the choice, the stream stops being
/// processed as soon as its [`StreamTracker`](crate::StreamTracker) no longer lists it.
///
/// ```
/// use std::time::Duration;
/// use kcl::{Config, FormerStreamLeases};
///
/// let config = Config::default().former_stream_leases(FormerStreamLeases::DeleteAfter(Duration::from_secs(600)));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormerStreamLeases {
    /// Keep them with their checkpoints, for good: a stream added back resumes where it stopped.
    Keep,
    /// Delete them once the stream has been absent from the tracker this long (the Java KCL's
    /// deferred deletion), counted by the fleet's leader from when it noticed. The delay lets
    /// workers whose tracker lags behind catch up before progress is thrown away; a stream
    /// added back later starts over at its initial position.
    DeleteAfter(Duration),
}

/// Lease, retrieval and shutdown settings. `Config::default()` has the Java KCL's defaults; the
/// setters change one value each.
///
/// ```
/// use std::time::Duration;
/// let config = kcl::Config::default().failover_time(Duration::from_secs(2));
/// assert_eq!(config.renewal_interval(), Duration::from_millis(641));
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) failover_time: Duration,
    pub(crate) renewal_interval: Option<Duration>,
    pub(crate) lease_taker_interval: Option<Duration>,
    pub(crate) max_leases_for_worker: usize,
    pub(crate) max_leases_to_steal_at_one_time: usize,
    pub(crate) handoff_timeout: Duration,
    pub(crate) shard_sync_interval: Duration,
    pub(crate) lease_cleanup_interval: Duration,
    pub(crate) parent_shard_poll_interval: Duration,
    pub(crate) max_records: i32,
    pub(crate) idle_time_between_reads: Duration,
    pub(crate) max_prefetch_batches: usize,
    pub(crate) max_prefetch_records: usize,
    pub(crate) max_prefetch_bytes: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) retrieval_mode: RetrievalMode,
    pub(crate) lease_assignment: LeaseAssignment,
    pub(crate) stream_check_interval: Duration,
    pub(crate) former_stream_leases: FormerStreamLeases,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            failover_time: Duration::from_millis(10_000),
            renewal_interval: None,
            lease_taker_interval: None,
            max_leases_for_worker: usize::MAX,
            max_leases_to_steal_at_one_time: usize::MAX,
            handoff_timeout: Duration::from_secs(30),
            shard_sync_interval: Duration::from_millis(60_000),
            lease_cleanup_interval: Duration::from_millis(60_000),
            parent_shard_poll_interval: Duration::from_millis(10_000),
            max_records: 10_000,
            idle_time_between_reads: Duration::from_millis(1_500),
            max_prefetch_batches: 3,
            max_prefetch_records: 30_000,
            max_prefetch_bytes: 8 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(30),
            retrieval_mode: RetrievalMode::Polling,
            lease_assignment: LeaseAssignment::LeaseCount,
            stream_check_interval: Duration::from_secs(60),
            former_stream_leases: FormerStreamLeases::DeleteAfter(Duration::from_secs(60 * 60)),
        }
    }
}

/// The Java KCL's margin between a renewal and the failover time (`epsilonMillis`).
const EPSILON: Duration = Duration::from_millis(25);

impl Config {
    /// How long a lease's counter must stay unchanged before other workers may take it
    /// (`failoverTimeMillis`, default 10 s). Renewal and taking intervals derive from it.
    pub fn failover_time(mut self, failover_time: Duration) -> Self {
        self.failover_time = failover_time;
        self
    }

    /// How often held leases are renewed. Default `failover_time / 3 − 25 ms` (3308 ms).
    pub fn with_renewal_interval(mut self, interval: Duration) -> Self {
        self.renewal_interval = Some(interval);
        self
    }

    /// How often the lease table is scanned to take free, expired or surplus leases. Default: the
    /// renewal interval. The Java KCL 2.x scans every `2 × (failover + 25 ms)` (20 s); scanning as
    /// often as renewing is what lets a released lease move within one renewal interval, and a
    /// scan costs little next to the renewals themselves (one write per lease per interval).
    pub fn with_lease_taker_interval(mut self, interval: Duration) -> Self {
        self.lease_taker_interval = Some(interval);
        self
    }

    /// Never hold more than this many leases (`maxLeasesForWorker`, default unlimited).
    pub fn max_leases_for_worker(mut self, max: usize) -> Self {
        self.max_leases_for_worker = max.max(1);
        self
    }

    /// Cap on leases requested from other workers in one taker round
    /// (`maxLeasesToStealAtOneTime`). The Java KCL defaults to 1, which is why its fleets take
    /// minutes to rebalance; here the default is no cap beyond the balancing rule itself (take
    /// from a worker only while it holds at least two more leases than this one).
    pub fn max_leases_to_steal_at_one_time(mut self, max: usize) -> Self {
        self.max_leases_to_steal_at_one_time = max.max(1);
        self
    }

    /// How long a worker waits for another worker to hand over a lease it asked for (or the
    /// leader moved to it) before it takes the lease anyway (default 30 s, as the Java KCL 3.x).
    /// Reached only if the other worker keeps renewing but does not release (its processor does
    /// not return from `shutdown_requested`, or it is a Java KCL 2.x worker).
    pub fn handoff_timeout(mut self, timeout: Duration) -> Self {
        self.handoff_timeout = timeout;
        self
    }

    /// How often shards are listed to create leases for new ones (`shardSyncIntervalMillis`,
    /// default 60 s).
    pub fn shard_sync_interval(mut self, interval: Duration) -> Self {
        self.shard_sync_interval = interval;
        self
    }

    /// How often leases of shards processed to their end are deleted (default 60 s).
    pub fn lease_cleanup_interval(mut self, interval: Duration) -> Self {
        self.lease_cleanup_interval = interval;
        self
    }

    /// How often a shard waiting for its parents checks them (`parentShardPollIntervalMillis`,
    /// default 10 s).
    pub fn parent_shard_poll_interval(mut self, interval: Duration) -> Self {
        self.parent_shard_poll_interval = interval;
        self
    }

    /// Records per `GetRecords` call (`maxRecords`, default 10,000, at most 10,000).
    pub fn max_records(mut self, max_records: i32) -> Self {
        self.max_records = max_records.clamp(1, 10_000);
        self
    }

    /// Pause after a `GetRecords` call that returned nothing (`idleTimeBetweenReadsInMillis`,
    /// default 1500 ms). Unlike the Java KCL, a call that returned records is followed at once, so
    /// a shard that fell behind catches up at full speed.
    pub fn idle_time_between_reads(mut self, idle: Duration) -> Self {
        self.idle_time_between_reads = idle;
        self
    }

    /// Bounds of each shard's prefetch queue: batches, records and bytes fetched but not yet
    /// processed (defaults 3 batches, 30,000 records, 8 MiB, as the Java KCL). With fan-out a
    /// batch is one subscription event, and the next event is read only when the queue has room.
    pub fn max_prefetch(mut self, batches: usize, records: usize, bytes: usize) -> Self {
        self.max_prefetch_batches = batches.max(1);
        self.max_prefetch_records = records.max(1);
        self.max_prefetch_bytes = bytes.max(1);
        self
    }

    /// How leases are spread over the fleet: by count, each worker taking its share (default), or
    /// by measured load, placed by an elected leader ([`LeaseAssignment`]).
    pub fn lease_assignment(mut self, assignment: LeaseAssignment) -> Self {
        self.lease_assignment = assignment;
        self
    }

    /// How records are read: polling (default) or enhanced fan-out.
    pub fn retrieval_mode(mut self, mode: RetrievalMode) -> Self {
        self.retrieval_mode = mode;
        self
    }

    /// On a graceful shutdown, how long processors get to finish and checkpoint before their
    /// shards are abandoned to expire (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Multi-stream applications: how often the [`StreamTracker`](crate::StreamTracker) is asked
    /// which streams to consume (default 60 s, as the Java KCL). Asking a
    /// [`StreamSet`](crate::StreamSet) costs nothing, so a short interval makes its changes take
    /// effect sooner.
    pub fn stream_check_interval(mut self, interval: Duration) -> Self {
        self.stream_check_interval = interval;
        self
    }

    /// Multi-stream applications: what happens to the leases of a stream the tracker no longer
    /// lists (default: deleted after one hour). Checked every `lease_cleanup_interval`.
    pub fn former_stream_leases(mut self, policy: FormerStreamLeases) -> Self {
        self.former_stream_leases = policy;
        self
    }

    /// The renewal interval in force: the explicit one, else `failover_time / 3 − 25 ms`.
    pub fn renewal_interval(&self) -> Duration {
        self.renewal_interval.unwrap_or_else(|| {
            // Whole milliseconds, as the Java KCL computes it: 10 000 ms → 3308 ms.
            let third = self.failover_time.as_millis() / 3;
            Duration::from_millis(u64::try_from(third).unwrap_or(u64::MAX))
                .saturating_sub(EPSILON)
                .max(Duration::from_millis(1))
        })
    }

    /// The lease taker interval in force.
    pub fn lease_taker_interval(&self) -> Duration {
        self.lease_taker_interval
            .unwrap_or_else(|| self.renewal_interval())
    }
}

/// The one retry policy: exponential backoff with jitter from 100 ms to 5 s, never giving up
/// (callers stop retrying when their shard or worker stops).
pub(crate) fn retry_backoff() -> impl Iterator<Item = Duration> + Send {
    let mut inner = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    std::iter::from_fn(move || Some(inner.next().unwrap_or(Duration::from_secs(5))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_java_kcl() {
        let c = Config::default();
        assert_eq!(c.failover_time, Duration::from_secs(10));
        assert_eq!(c.renewal_interval(), Duration::from_millis(3308));
        assert_eq!(c.shard_sync_interval, Duration::from_secs(60));
        assert_eq!(c.stream_check_interval, Duration::from_secs(60));
        assert_eq!(c.max_records, 10_000);
        assert_eq!(c.idle_time_between_reads, Duration::from_millis(1500));
        assert_eq!(
            (
                c.max_prefetch_batches,
                c.max_prefetch_records,
                c.max_prefetch_bytes
            ),
            (3, 30_000, 8 * 1024 * 1024)
        );
    }

    #[test]
    fn renewal_and_taking_follow_the_failover_time_unless_set() {
        let c = Config::default().failover_time(Duration::from_millis(1500));
        assert_eq!(c.renewal_interval(), Duration::from_millis(475));
        assert_eq!(c.lease_taker_interval(), Duration::from_millis(475));
        let c = c.with_lease_taker_interval(Duration::from_secs(1));
        assert_eq!(c.lease_taker_interval(), Duration::from_secs(1));
    }

    #[test]
    fn the_retry_policy_grows_and_stays_bounded() {
        let delays: Vec<_> = retry_backoff().take(20).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[19] > delays[0]);
    }
}
