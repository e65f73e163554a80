//! Metrics, named like the Java KCL's CloudWatch metrics and recorded through the [`metrics`]
//! facade: install any recorder (Prometheus, StatsD, ...) to export them. Labels: `worker_id`,
//! and `shard_id` for per-shard metrics (the lease key: in a multi-stream application
//! `account:stream:creationEpoch:shardId`, so shards of different streams stay apart).
//! `cargo run -p examples --bin kcl_prometheus` shows the Prometheus recipe end to end.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `MillisBehindLatest` | gauge | how far the last read of a shard is behind its tip |
//! | `RecordsProcessed` | counter | records handed to `process_records` that returned `Ok` |
//! | `BytesProcessed` | counter | their data bytes |
//! | `ProcessTime` | histogram | milliseconds spent in one `process_records` call |
//! | `ProcessorErrors` | counter | failed (or panicked) processor calls, each retried |
//! | `RecordsSkipped` | counter | records a `#[kcl::processor]` could not decode and skipped (`shard_id` only) |
//! | `LeasesHeld` | gauge | leases this worker holds |
//! | `LeaseOwned` | gauge | 1 while this worker holds the lease of `shard_id`, 0 after |
//! | `LeaseTaken` | counter | leases this worker took |
//! | `LeaseLost` | counter | leases this worker lost to another worker |
//! | `LeaseAssigned` | counter | leases the leader placed (`graceful`: `true` for handoffs from a live owner) |
//! | `WorkerLoad` | gauge | the load this worker reported: `metric` `cpu` (percent) or `throughput` (KB/s) |
//! | `ActiveStreams.Count` | gauge | multi-stream: streams this worker consumes |
//! | `PendingStreamsDeletion.Count` | gauge | multi-stream, leader: removed streams whose leases wait for deletion |

use std::time::Duration;

/// `MillisBehindLatest`.
pub const MILLIS_BEHIND_LATEST: &str = "MillisBehindLatest";
/// `RecordsProcessed`.
pub const RECORDS_PROCESSED: &str = "RecordsProcessed";
/// `BytesProcessed`.
pub const BYTES_PROCESSED: &str = "BytesProcessed";
/// `ProcessTime`.
pub const PROCESS_TIME: &str = "ProcessTime";
/// `ProcessorErrors`.
pub const PROCESSOR_ERRORS: &str = "ProcessorErrors";
/// `RecordsSkipped`.
pub const RECORDS_SKIPPED: &str = "RecordsSkipped";
/// `LeasesHeld`.
pub const LEASES_HELD: &str = "LeasesHeld";
/// `LeaseOwned`.
pub const LEASE_OWNED: &str = "LeaseOwned";
/// `LeaseTaken`.
pub const LEASE_TAKEN: &str = "LeaseTaken";
/// `LeaseLost`.
pub const LEASE_LOST: &str = "LeaseLost";
/// `LeaseAssigned`.
pub const LEASE_ASSIGNED: &str = "LeaseAssigned";
/// `WorkerLoad`.
pub const WORKER_LOAD: &str = "WorkerLoad";
/// `ActiveStreams.Count` (the Java KCL's `MultiStreamTracker` metric).
pub const ACTIVE_STREAMS: &str = "ActiveStreams.Count";
/// `PendingStreamsDeletion.Count` (the Java KCL's `MultiStreamTracker` metric).
pub const PENDING_STREAMS_DELETION: &str = "PendingStreamsDeletion.Count";

pub(crate) fn millis_behind_latest(worker_id: &str, shard_id: &str, millis: i64) {
    metrics::gauge!(MILLIS_BEHIND_LATEST, "worker_id" => worker_id.to_owned(), "shard_id" => shard_id.to_owned())
        .set(millis as f64);
}

pub(crate) fn processed(
    worker_id: &str,
    shard_id: &str,
    records: usize,
    bytes: usize,
    took: Duration,
) {
    let labels = [
        ("worker_id", worker_id.to_owned()),
        ("shard_id", shard_id.to_owned()),
    ];
    metrics::counter!(RECORDS_PROCESSED, &labels).increment(records as u64);
    metrics::counter!(BYTES_PROCESSED, &labels).increment(bytes as u64);
    metrics::histogram!(PROCESS_TIME, &labels).record(took.as_secs_f64() * 1000.0);
}

pub(crate) fn processor_error(worker_id: &str, shard_id: &str) {
    metrics::counter!(PROCESSOR_ERRORS, "worker_id" => worker_id.to_owned(), "shard_id" => shard_id.to_owned())
        .increment(1);
}

pub(crate) fn record_skipped(shard_id: &str) {
    metrics::counter!(RECORDS_SKIPPED, "shard_id" => shard_id.to_owned()).increment(1);
}

pub(crate) fn leases_held(worker_id: &str, count: usize) {
    metrics::gauge!(LEASES_HELD, "worker_id" => worker_id.to_owned()).set(count as f64);
}

pub(crate) fn lease_owned(worker_id: &str, shard_id: &str, owned: bool) {
    metrics::gauge!(LEASE_OWNED, "worker_id" => worker_id.to_owned(), "shard_id" => shard_id.to_owned())
        .set(if owned { 1.0 } else { 0.0 });
}

pub(crate) fn lease_taken(worker_id: &str) {
    metrics::counter!(LEASE_TAKEN, "worker_id" => worker_id.to_owned()).increment(1);
}

pub(crate) fn lease_lost(worker_id: &str) {
    metrics::counter!(LEASE_LOST, "worker_id" => worker_id.to_owned()).increment(1);
}

pub(crate) fn lease_assigned(leader_id: &str, graceful: bool) {
    metrics::counter!(LEASE_ASSIGNED, "worker_id" => leader_id.to_owned(), "graceful" => graceful.to_string())
        .increment(1);
}

pub(crate) fn worker_load(worker_id: &str, cpu_percent: Option<f64>, throughput_kbps: f64) {
    if let Some(cpu) = cpu_percent {
        metrics::gauge!(WORKER_LOAD, "worker_id" => worker_id.to_owned(), "metric" => "cpu")
            .set(cpu);
    }
    metrics::gauge!(WORKER_LOAD, "worker_id" => worker_id.to_owned(), "metric" => "throughput")
        .set(throughput_kbps);
}

pub(crate) fn active_streams(worker_id: &str, count: usize) {
    metrics::gauge!(ACTIVE_STREAMS, "worker_id" => worker_id.to_owned()).set(count as f64);
}

pub(crate) fn pending_streams_deletion(worker_id: &str, count: usize) {
    metrics::gauge!(PENDING_STREAMS_DELETION, "worker_id" => worker_id.to_owned())
        .set(count as f64);
}
