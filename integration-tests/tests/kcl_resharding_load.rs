//! Resharding under load. While a producer writes and two workers consume, SplitShard,
//! MergeShards and UpdateShardCount (up and down, repeatedly) lose no record, keep every
//! partition key in write order across parent → child boundaries, and leave no finished lease
//! behind. Children of a shard trimmed by retention do not wait for it forever. AT_TIMESTAMP
//! applies to the leases a worker creates, and a worker says why it does not apply to leases that
//! already exist.
//!
//! The processors append every record to one shared log; [`replay`] checks that log against what
//! the producer wrote.

mod kcl_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ScalingType, Shard};
use aws_smithy_types::Blob;
use kcl::lease::{DynamoDbLeaseStore, LeaseStore};
use kcl::{
    Config, InitialPosition, InitializationInput, ProcessRecordsInput, ProcessorError,
    RecordProcessor,
};
use kcl_support::{Fleet, Worker, test_config};
use local_broker::{LocalBroker, ShiftableClock};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Partition keys the producer cycles through; every shard of these streams gets some of them.
const KEYS: u64 = 64;

/// Per-batch processing time: each shard keeps a backlog, so a child that started before its
/// parents ended would visibly overtake their records.
const PROCESSING_TIME: Duration = Duration::from_millis(20);

/// One record as written.
#[derive(Debug, Clone)]
struct Written {
    key: String,
    /// The record's number among its key's records, from 0 in write order.
    seq: u64,
    shard: String,
}

/// One record as a processor saw it. Its index in the log is the processing order.
#[derive(Debug, Clone)]
struct Processed {
    worker: String,
    shard: String,
    key: String,
    seq: u64,
}

/// Every record every processor of a test saw, in processing order.
#[derive(Default)]
struct ProcessedLog(Mutex<Vec<Processed>>);

impl ProcessedLog {
    fn snapshot(&self) -> Vec<Processed> {
        self.0.lock().expect("log lock").clone()
    }

    fn seen(&self) -> HashSet<(String, u64)> {
        let log = self.0.lock().expect("log lock");
        log.iter().map(|p| (p.key.clone(), p.seq)).collect()
    }
}

/// Logs each batch, then checkpoints it.
struct KeyedProcessor {
    worker: String,
    shard: String,
    log: Arc<ProcessedLog>,
}

#[async_trait]
impl RecordProcessor for KeyedProcessor {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        self.shard = input.shard_id;
        Ok(())
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        tokio::time::sleep(PROCESSING_TIME).await;
        {
            let mut log = self.log.0.lock().expect("log lock");
            for record in &input.records {
                let data = String::from_utf8_lossy(&record.data);
                let (key, seq) = data.rsplit_once('/').expect("producer's key/seq payload");
                assert_eq!(key, record.partition_key, "payload names its partition key");
                log.push(Processed {
                    worker: self.worker.clone(),
                    shard: self.shard.clone(),
                    key: key.to_owned(),
                    seq: seq.parse().expect("numeric seq"),
                });
            }
        }
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// A [`KeyedProcessor`] that holds the first batch of one shard until another shard has processed
/// a record (or a few seconds passed): the held shard keeps its backlog while the other runs.
struct HeldBackProcessor {
    inner: KeyedProcessor,
    held_shard: String,
    until_shard_processed: String,
    held: bool,
}

#[async_trait]
impl RecordProcessor for HeldBackProcessor {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        self.inner.initialize(input).await
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        if self.inner.shard == self.held_shard && !self.held {
            self.held = true;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5)
                && !self
                    .inner
                    .log
                    .snapshot()
                    .iter()
                    .any(|p| p.shard == self.until_shard_processed)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.inner.process_records(input).await
    }
}

/// Test timings plus small batches, so shards have a backlog to keep in order.
fn load_config() -> Config {
    test_config().max_records(10)
}

fn start(fleet: &Fleet, id: &str, log: &Arc<ProcessedLog>, initial: InitialPosition) -> Worker {
    let (worker, log) = (id.to_owned(), log.clone());
    fleet.start_worker_from(id, load_config(), initial, move || KeyedProcessor {
        worker: worker.clone(),
        shard: String::new(),
        log: log.clone(),
    })
}

/// Kinesis workers' logs at INFO, kept for assertions; also shown per `RUST_LOG`.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let capture = fmt::layer()
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .with_filter(Targets::new().with_target("kcl", LevelFilter::INFO));
        let show = fmt::layer()
            .with_test_writer()
            .with_filter(EnvFilter::from_default_env());
        // Every test of this file calls this before its fleet exists, so this subscriber wins.
        let _ = tracing_subscriber::registry()
            .with(capture)
            .with(show)
            .try_init();
        logs
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn fleet(broker: local_broker::LocalBrokerBuilder, shards: i32) -> Fleet {
    captured_logs();
    Fleet::with_broker(broker, shards).await
}

/// Numbers records per key: record `n` has key `key-{n % KEYS}` and seq `n / KEYS`.
#[derive(Default)]
struct KeyedWriter {
    next: u64,
}

impl KeyedWriter {
    async fn put(&mut self, fleet: &Fleet, count: u64) -> Vec<Written> {
        put(&fleet.kinesis, &fleet.stream, self, count).await
    }
}

async fn put(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    writer: &mut KeyedWriter,
    count: u64,
) -> Vec<Written> {
    let records: Vec<(String, u64)> = (writer.next..writer.next + count)
        .map(|n| (format!("key-{}", n % KEYS), n / KEYS))
        .collect();
    writer.next += count;
    let entries = records
        .iter()
        .map(|(key, seq)| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(format!("{key}/{seq}")))
                .build()
                .expect("complete entry")
        })
        .collect::<Vec<_>>();
    let out = kinesis
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords succeeds");
    assert_eq!(out.failed_record_count(), Some(0), "no record rejected");
    records
        .into_iter()
        .zip(out.records())
        .map(|((key, seq), result)| Written {
            key,
            seq,
            shard: result.shard_id().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Puts `batch` records every `every`, one `PutRecords` at a time, so each key's write order is
/// the order of the calls.
struct Producer {
    stop: CancellationToken,
    task: JoinHandle<Vec<Written>>,
}

impl Producer {
    fn start(fleet: &Fleet, batch: u64, every: Duration) -> Self {
        let stop = CancellationToken::new();
        let (kinesis, stream, halt) = (fleet.kinesis.clone(), fleet.stream.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let (mut writer, mut written) = (KeyedWriter::default(), Vec::new());
            while !halt.is_cancelled() {
                written.extend(put(&kinesis, &stream, &mut writer, batch).await);
                tokio::time::sleep(every).await;
            }
            written
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<Written> {
        self.stop.cancel();
        self.task.await.expect("producer ran")
    }
}

/// What replaying the processed log against the written records found.
#[derive(Debug, Default)]
struct Replay {
    /// Written but never processed: (key, seq).
    missing: Vec<(String, u64)>,
    /// Processed for the first time while an earlier record of the key was still unprocessed.
    out_of_order: Vec<String>,
    /// Processed more than once: (key, seq) → the (worker, shard) of each time.
    duplicates: BTreeMap<(String, u64), Vec<(String, String)>>,
    /// A child's first record processed before a parent's last one.
    early_children: Vec<String>,
}

impl Replay {
    fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.out_of_order.is_empty()
            && self.duplicates.is_empty()
            && self.early_children.is_empty()
    }
}

/// Checks `processed` (in processing order) against `written`:
/// - completeness: every written record was processed;
/// - per-key order: each key's records were first processed in write order (a repeat of an
///   already processed record is a duplicate, not an order violation);
/// - lineage: for every shard in `parents` (child → its parents), its first processed record comes
///   after the last processed record of each ancestor (UpdateShardCount puts empty intermediate
///   shards between a shard and its merge child: their parents are the ones to wait for).
fn replay(
    written: &[Written],
    processed: &[Processed],
    parents: &BTreeMap<String, Vec<String>>,
) -> Replay {
    let mut report = Replay::default();
    let mut next: HashMap<&str, u64> = HashMap::new();
    for w in written {
        let first = next.entry(&w.key).or_insert(w.seq);
        *first = (*first).min(w.seq);
    }
    let mut seen: HashMap<(&str, u64), Vec<(String, String)>> = HashMap::new();
    for p in processed {
        let times = seen.entry((&p.key, p.seq)).or_default();
        times.push((p.worker.clone(), p.shard.clone()));
        if times.len() > 1 {
            continue;
        }
        let expected = next.entry(&p.key).or_insert(p.seq);
        if p.seq == *expected {
            *expected += 1;
        } else {
            report.out_of_order.push(format!(
                "{}/{} processed by {} on {} while {}/{expected} was next",
                p.key, p.seq, p.worker, p.shard, p.key
            ));
            *expected = (*expected).max(p.seq + 1);
        }
    }
    report.missing = written
        .iter()
        .filter(|w| !seen.contains_key(&(w.key.as_str(), w.seq)))
        .map(|w| (w.key.clone(), w.seq))
        .collect();
    report.duplicates = seen
        .into_iter()
        .filter(|(_, times)| times.len() > 1)
        .map(|((key, seq), times)| ((key.to_owned(), seq), times))
        .collect();
    let (mut first, mut last): (HashMap<&str, usize>, HashMap<&str, usize>) = Default::default();
    for (i, p) in processed.iter().enumerate() {
        first.entry(&p.shard).or_insert(i);
        last.insert(&p.shard, i);
    }
    for child in parents.keys() {
        let Some(&started) = first.get(child.as_str()) else {
            continue;
        };
        for ancestor in ancestors(child, parents) {
            if let Some(&ended) = last.get(ancestor)
                && ended > started
            {
                report.early_children.push(format!(
                    "{child} processed its first record (#{started}) before its ancestor \
                     {ancestor} its last (#{ended})"
                ));
            }
        }
    }
    report
}

/// Every ancestor of `shard` in `parents` (child → its parents).
fn ancestors<'a>(shard: &str, parents: &'a BTreeMap<String, Vec<String>>) -> HashSet<&'a str> {
    let mut found = HashSet::new();
    let mut stack: Vec<&str> = parents
        .get(shard)
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    while let Some(ancestor) = stack.pop() {
        if found.insert(ancestor) {
            stack.extend(
                parents
                    .get(ancestor)
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            );
        }
    }
    found
}

/// Asserts the replay found nothing wrong, with a readable report if it did.
fn assert_clean(report: &Replay, written: usize, processed: usize) {
    assert!(
        report.is_clean(),
        "of {written} records written and {processed} processed: {} missing (e.g. {:?}), \
         {} out of order (e.g. {:?}), {} duplicated (e.g. {:?}), children started early: {:?}",
        report.missing.len(),
        report.missing.first(),
        report.out_of_order.len(),
        report.out_of_order.first(),
        report.duplicates.len(),
        report.duplicates.iter().next(),
        report.early_children
    );
}

async fn all_shards(fleet: &Fleet) -> Vec<Shard> {
    fleet
        .kinesis
        .list_shards()
        .stream_name(&fleet.stream)
        .send()
        .await
        .expect("ListShards")
        .shards()
        .to_vec()
}

/// Open shards, in hash key order.
async fn open_shards(fleet: &Fleet) -> Vec<Shard> {
    let mut open: Vec<Shard> = all_shards(fleet)
        .await
        .into_iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none())
        })
        .collect();
    open.sort_by_key(|s| hash_range(s).0);
    open
}

fn hash_range(shard: &Shard) -> (u128, u128) {
    let range = shard.hash_key_range().expect("hash key range");
    (
        range.starting_hash_key().parse().expect("decimal"),
        range.ending_hash_key().parse().expect("decimal"),
    )
}

/// Child → parents, for every listed shard that has parents.
fn lineage(shards: &[Shard]) -> BTreeMap<String, Vec<String>> {
    shards
        .iter()
        .filter_map(|s| {
            let parents: Vec<String> = s
                .parent_shard_id()
                .into_iter()
                .chain(s.adjacent_parent_shard_id())
                .map(str::to_owned)
                .collect();
            (!parents.is_empty()).then(|| (s.shard_id().to_owned(), parents))
        })
        .collect()
}

async fn split_in_the_middle(fleet: &Fleet, shard: &Shard) {
    let (start, end) = hash_range(shard);
    fleet
        .kinesis
        .split_shard()
        .stream_name(&fleet.stream)
        .shard_to_split(shard.shard_id())
        .new_starting_hash_key((start + (end - start) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
}

async fn scale_to(fleet: &Fleet, shards: i32) {
    fleet
        .kinesis
        .update_shard_count()
        .stream_name(&fleet.stream)
        .target_shard_count(shards)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
}

/// Runs `reshard`, then waits until every shard it opened has processed records (so the next
/// step reshards a stream whose children are live).
async fn reshard_and_wait<F, Fut>(fleet: &Fleet, log: &ProcessedLog, reshard: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let before: HashSet<String> = open_shards(fleet)
        .await
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();
    reshard().await;
    let opened: Vec<String> = open_shards(fleet)
        .await
        .iter()
        .map(|s| s.shard_id().to_owned())
        .filter(|id| !before.contains(id))
        .collect();
    let started = Instant::now();
    loop {
        let busy: HashSet<String> = log.snapshot().into_iter().map(|p| p.shard).collect();
        if opened.iter().all(|id| busy.contains(id)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "new shards {opened:?} processed nothing within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every record of `written` was processed.
async fn wait_processed(log: &ProcessedLog, written: &[Written], timeout: Duration) {
    let started = Instant::now();
    loop {
        let seen = log.seen();
        let missing: Vec<&Written> = written
            .iter()
            .filter(|w| !seen.contains(&(w.key.clone(), w.seq)))
            .collect();
        if missing.is_empty() {
            return;
        }
        if started.elapsed() > timeout {
            let mut per_shard: BTreeMap<&str, usize> = BTreeMap::new();
            for w in &missing {
                *per_shard.entry(&w.shard).or_default() += 1;
            }
            panic!(
                "after {timeout:?}, {} of {} records unprocessed (per shard {per_shard:?})",
                missing.len(),
                written.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the lease table holds exactly the open shards' leases: every finished parent's
/// lease was deleted.
async fn wait_leases_only_for_open_shards(fleet: &Fleet) {
    let store = DynamoDbLeaseStore::new(fleet.dynamodb.clone(), &fleet.application);
    let open: HashSet<String> = open_shards(fleet)
        .await
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();
    fleet
        .wait_until(
            Duration::from_secs(10),
            "only the open shards' leases left",
            || async {
                let leases = store.list_leases().await.expect("scan leases");
                leases.iter().all(|l| !l.is_finished())
                    && leases.iter().map(|l| l.key.clone()).collect::<HashSet<_>>() == open
            },
        )
        .await;
}

/// Waits until both workers hold leases, and returns two adjacent open shards held by different
/// workers.
async fn adjacent_shards_of_different_workers(fleet: &Fleet) -> (Shard, Shard) {
    let store = DynamoDbLeaseStore::new(fleet.dynamodb.clone(), &fleet.application);
    let started = Instant::now();
    loop {
        let leases = match store.list_leases().await {
            Ok(leases) => leases,
            // The workers have not created the table yet.
            Err(kcl::lease::LeaseStoreError::TableNotFound(_)) => Vec::new(),
            Err(err) => panic!("scan leases: {err}"),
        };
        let owners: HashMap<String, String> = leases
            .into_iter()
            .filter(|l| l.checkpoint_owner.is_none())
            .filter_map(|l| Some((l.key, l.owner?)))
            .collect();
        let open = open_shards(fleet).await;
        for pair in open.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let (oa, ob) = (owners.get(a.shard_id()), owners.get(b.shard_id()));
            if oa.is_some() && ob.is_some() && oa != ob {
                return (a.clone(), b.clone());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no two adjacent open shards held by different workers: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_merge_and_scaling_under_load_lose_nothing_and_keep_each_keys_order() {
    let fleet = fleet(LocalBroker::builder(), 3).await;
    let log = Arc::new(ProcessedLog::default());
    let workers = [
        start(&fleet, "worker-a", &log, InitialPosition::TrimHorizon),
        start(&fleet, "worker-b", &log, InitialPosition::TrimHorizon),
    ];
    let producer = Producer::start(&fleet, 32, Duration::from_millis(20));

    // Merge two shards held by different workers: whoever takes the child waits for a parent
    // that the other worker is still processing.
    let (left, right) = adjacent_shards_of_different_workers(&fleet).await;
    reshard_and_wait(&fleet, &log, || async {
        fleet
            .kinesis
            .merge_shards()
            .stream_name(&fleet.stream)
            .shard_to_merge(left.shard_id())
            .adjacent_shard_to_merge(right.shard_id())
            .send()
            .await
            .expect("MergeShards");
    })
    .await;
    let widest = open_shards(&fleet)
        .await
        .into_iter()
        .max_by_key(|s| hash_range(s).1 - hash_range(s).0)
        .expect("an open shard");
    reshard_and_wait(&fleet, &log, || split_in_the_middle(&fleet, &widest)).await;
    reshard_and_wait(&fleet, &log, || scale_to(&fleet, 6)).await;
    reshard_and_wait(&fleet, &log, || scale_to(&fleet, 3)).await;

    let written = producer.stop().await;
    wait_processed(&log, &written, Duration::from_secs(10)).await;
    wait_leases_only_for_open_shards(&fleet).await;
    for worker in workers {
        worker.stop().await;
    }

    let processed = log.snapshot();
    // The lineage check covers the merge child: its first record came after the last record of
    // each parent, and the parents were held by different workers when they were merged.
    let report = replay(&written, &processed, &lineage(&all_shards(&fleet).await));
    assert_clean(&report, written.len(), processed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_scaling_under_load_replays_complete_and_in_order_without_duplicates() {
    let fleet = fleet(LocalBroker::builder(), 4).await;
    let log = Arc::new(ProcessedLog::default());
    let workers = [
        start(&fleet, "worker-a", &log, InitialPosition::TrimHorizon),
        start(&fleet, "worker-b", &log, InitialPosition::TrimHorizon),
    ];
    let producer = Producer::start(&fleet, 32, Duration::from_millis(20));
    // Halving is the most one update may scale down, so 8 → 3 goes through 4.
    for shards in [8, 4, 3, 6] {
        reshard_and_wait(&fleet, &log, || scale_to(&fleet, shards)).await;
    }
    let written = producer.stop().await;
    wait_processed(&log, &written, Duration::from_secs(10)).await;
    wait_leases_only_for_open_shards(&fleet).await;
    for worker in workers {
        worker.stop().await;
    }

    let processed = log.snapshot();
    // No worker failed and leases move only by graceful handoff: nothing may be repeated.
    let report = replay(&written, &processed, &lineage(&all_shards(&fleet).await));
    assert_clean(&report, written.len(), processed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_child_of_an_empty_intermediate_shard_waits_for_that_shards_parent() {
    let fleet = fleet(LocalBroker::builder(), 2).await;
    let log = Arc::new(ProcessedLog::default());
    let shards = open_shards(&fleet).await;
    let (slow, fast) = (
        shards[0].shard_id().to_owned(),
        shards[1].shard_id().to_owned(),
    );
    // 2 → 3 splits both shards at 1/3 and 2/3 and merges the two empty middle pieces into one
    // child: its parents are the intermediate children of `slow` and `fast`. Shard ids are
    // numbered in creation order: 2..=5 are the pieces, 6 the merge child.
    let merged = "shardId-000000000006";
    // Only the first sync creates leases: after that, only shards ending create their children's.
    let config = load_config().shard_sync_interval(Duration::from_secs(3600));
    let worker = {
        let (log, slow) = (log.clone(), slow.clone());
        fleet.start_worker_from("worker", config, InitialPosition::TrimHorizon, move || {
            HeldBackProcessor {
                inner: KeyedProcessor {
                    worker: "worker".to_owned(),
                    shard: String::new(),
                    log: log.clone(),
                },
                held_shard: slow.clone(),
                until_shard_processed: merged.to_owned(),
                held: false,
            }
        })
    };
    let mut writer = KeyedWriter::default();
    let mut written = writer.put(&fleet, 256).await;
    // `fast` is read; `slow` keeps its backlog: held until the merge child processed a record,
    // which it must not before `slow` ended.
    let on_fast: Vec<Written> = written
        .iter()
        .filter(|w| w.shard == fast)
        .cloned()
        .collect();
    wait_processed(&log, &on_fast, Duration::from_secs(5)).await;
    scale_to(&fleet, 3).await;
    assert_eq!(open_shards(&fleet).await[1].shard_id(), merged);
    written.extend(writer.put(&fleet, 256).await);
    wait_processed(&log, &written, Duration::from_secs(20)).await;
    worker.stop().await;

    let processed = log.snapshot();
    let report = replay(&written, &processed, &lineage(&all_shards(&fleet).await));
    assert_clean(&report, written.len(), processed.len());
}

/// Retention: 24 h by default; a shard closed longer ago is neither listed nor readable.
const PAST_RETENTION: Duration = Duration::from_secs(25 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_trimmed_parent_without_a_lease_start_at_once() {
    let clock = ShiftableClock::new();
    let fleet = fleet(LocalBroker::builder().clock(clock.clone()), 1).await;
    let log = Arc::new(ProcessedLog::default());
    let mut writer = KeyedWriter::default();
    writer.put(&fleet, 100).await;
    let parent = open_shards(&fleet).await.remove(0);
    split_in_the_middle(&fleet, &parent).await;
    clock.advance(PAST_RETENTION);
    let after_trim = writer.put(&fleet, 100).await;

    let worker = start(&fleet, "worker", &log, InitialPosition::TrimHorizon);
    wait_processed(&log, &after_trim, Duration::from_secs(5)).await;
    worker.stop().await;
    let processed = log.snapshot();
    assert!(
        processed.iter().all(|p| p.shard != parent.shard_id()),
        "the trimmed parent had nothing left to read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_parent_trimmed_mid_shard_do_not_wait_for_its_lease_forever() {
    let clock = ShiftableClock::new();
    let fleet = fleet(LocalBroker::builder().clock(clock.clone()), 1).await;
    let log = Arc::new(ProcessedLog::default());
    let mut writer = KeyedWriter::default();
    let early = writer.put(&fleet, 100).await;
    let crashed = start(&fleet, "crashed", &log, InitialPosition::TrimHorizon);
    wait_processed(&log, &early, Duration::from_secs(5)).await;
    // The parent's lease stays behind unfinished, checkpointed at its last record so far.
    crashed.kill().await;
    let parent = open_shards(&fleet).await.remove(0);
    split_in_the_middle(&fleet, &parent).await;
    clock.advance(PAST_RETENTION);
    let after_trim = writer.put(&fleet, 100).await;

    let successor = start(&fleet, "successor", &log, InitialPosition::TrimHorizon);
    wait_processed(&log, &after_trim, Duration::from_secs(8)).await;
    wait_leases_only_for_open_shards(&fleet).await;
    successor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_timestamp_applies_to_new_leases_including_children_of_closed_shards() {
    let fleet = fleet(LocalBroker::builder(), 1).await;
    let log = Arc::new(ProcessedLog::default());
    let mut writer = KeyedWriter::default();
    let mut before = writer.put(&fleet, 50).await;
    let parent = open_shards(&fleet).await.remove(0);
    split_in_the_middle(&fleet, &parent).await;
    before.extend(writer.put(&fleet, 50).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = writer.put(&fleet, 100).await;

    let worker = start(&fleet, "worker", &log, InitialPosition::AtTimestamp(at));
    wait_processed(&log, &after, Duration::from_secs(5)).await;
    worker.stop().await;
    // Each shard is read in order, so anything from before the timestamp would already be here.
    let early: HashSet<(String, u64)> = before.into_iter().map(|w| (w.key, w.seq)).collect();
    let wrongly: Vec<Processed> = log
        .snapshot()
        .into_iter()
        .filter(|p| early.contains(&(p.key.clone(), p.seq)))
        .collect();
    assert!(
        wrongly.is_empty(),
        "{} records from before the timestamp were processed, e.g. {:?}",
        wrongly.len(),
        wrongly.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_leases_keep_their_checkpoints_over_at_timestamp_and_the_worker_says_so() {
    let fleet = fleet(LocalBroker::builder(), 2).await;
    let log = Arc::new(ProcessedLog::default());
    let mut writer = KeyedWriter::default();
    let first = writer.put(&fleet, 50).await;
    let worker = start(&fleet, "first-run", &log, InitialPosition::TrimHorizon);
    wait_processed(&log, &first, Duration::from_secs(5)).await;
    worker.stop().await;
    let while_stopped = writer.put(&fleet, 50).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // As in the Java KCL, the checkpoints win: the records put while no worker ran are processed
    // although they are older than the timestamp.
    let restarted = "restarted-at-timestamp";
    let worker = start(
        &fleet,
        restarted,
        &log,
        InitialPosition::AtTimestamp(SystemTime::now()),
    );
    wait_processed(&log, &while_stopped, Duration::from_secs(5)).await;
    worker.stop().await;

    let logs = String::from_utf8_lossy(&captured_logs().lock().expect("capture lock")).into_owned();
    let said = logs
        .lines()
        .find(|l| l.contains(restarted) && l.contains("initial position not applied"));
    let said = said.unwrap_or_else(|| panic!("no line says why AT_TIMESTAMP was not applied"));
    assert!(
        said.contains("AT_TIMESTAMP") && said.contains("leases=2"),
        "the line names the position and the leases: {said}"
    );
}
