//! Load-aware lease assignment against the broker: an elected leader moves leases by graceful
//! handoff (the old owner checkpoints in `shutdown_requested`, the new one starts right after),
//! forces a handoff the old owner ignores once the handoff timeout passed, moves a hot shard off
//! an overloaded worker, and drains a worker for an autoscaler without duplicates.

mod kcl_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kcl::lease::{
    DynamoDbLeaseStore, Lease, LeaseAssignment, LeaseStore, LoadAwareConfig, LoadMetric,
};
use kcl::{
    Config, InitializationInput, LeaseLostInput, ProcessRecordsInput, ProcessorError,
    RecordProcessor, ShardEndedInput, ShutdownRequestedInput, WorkerState,
};
use kcl_support::{
    Event, Fleet, LoggingProcessor, Produced, assert_all_processed_in_order, test_config,
};
use tokio::time::Instant;

/// Load-aware assignment by throughput: every worker of a test shares one process, so CPU
/// would read the same for all.
fn load_aware() -> Config {
    test_config().lease_assignment(LeaseAssignment::LoadAware(
        LoadAwareConfig::default().metric(LoadMetric::Throughput),
    ))
}

/// Waits (up to 30 s) until `worker` holds all `count` leases.
async fn wait_until_owns_all(fleet: &Fleet, worker: &str, count: usize) {
    fleet
        .wait_until(
            Duration::from_secs(30),
            &format!("{worker} owns all {count}"),
            || async { fleet.owners().await.get(worker) == Some(&count) },
        )
        .await;
}

async fn leases(fleet: &Fleet) -> Vec<Lease> {
    DynamoDbLeaseStore::new(fleet.dynamodb.clone(), &fleet.application)
        .list_leases()
        .await
        .unwrap_or_default()
}

/// Shard id → owner, for leases not in a handoff.
async fn owner_by_shard(fleet: &Fleet) -> BTreeMap<String, String> {
    leases(fleet)
        .await
        .into_iter()
        .filter(|l| l.checkpoint_owner.is_none())
        .filter_map(|l| Some((l.key, l.owner?)))
        .collect()
}

/// Shard ids with the first hash key of each.
async fn shards(fleet: &Fleet) -> Vec<(String, String)> {
    let listed = fleet
        .kinesis
        .list_shards()
        .stream_name(&fleet.stream)
        .send()
        .await
        .expect("ListShards");
    listed
        .shards()
        .iter()
        .map(|s| {
            let start = s
                .hash_key_range()
                .map(|r| r.starting_hash_key().to_owned())
                .unwrap_or_default();
            (s.shard_id().to_owned(), start)
        })
        .collect()
}

/// Puts `count` records of `size` bytes into the shard whose range starts at `hash_key`.
async fn produce_to(
    fleet: &Fleet,
    hash_key: &str,
    first: usize,
    count: usize,
    size: usize,
) -> Vec<Produced> {
    let entries = (first..first + count)
        .map(|i| {
            let mut data = format!("record-{i}-");
            data.extend(std::iter::repeat_n('x', size.saturating_sub(data.len())));
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{i}"))
                .explicit_hash_key(hash_key)
                .data(aws_smithy_types::Blob::new(data))
                .build()
                .expect("complete entry")
        })
        .collect::<Vec<_>>();
    let put = fleet
        .kinesis
        .put_records()
        .stream_name(&fleet.stream)
        .set_records(Some(entries.clone()))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(put.failed_record_count(), Some(0));
    entries
        .iter()
        .zip(put.records())
        .map(|(entry, result)| Produced {
            shard: result.shard_id().unwrap_or_default().to_owned(),
            sequence: result.sequence_number().unwrap_or_default().to_owned(),
            data: String::from_utf8_lossy(entry.data().as_ref()).into_owned(),
        })
        .collect()
}

/// Keeps putting batches into the shards starting at `hash_keys` until stopped.
fn produce_continuously_to(
    fleet: &Arc<Fleet>,
    hash_keys: Vec<String>,
    batch: usize,
    size: usize,
    every: Duration,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Vec<Produced>>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let (fleet, halt) = (fleet.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let mut all = Vec::new();
        while !halt.is_cancelled() {
            for key in &hash_keys {
                all.extend(produce_to(&fleet, key, all.len(), batch, size).await);
            }
            tokio::time::sleep(every).await;
        }
        all
    });
    (stop, task)
}

/// Stops producing, waits until everything was processed, stops the workers, and checks that
/// every record was processed in order and exactly once.
async fn finish_without_duplicates<const N: usize>(
    fleet: &Fleet,
    stop: tokio_util::sync::CancellationToken,
    producer: tokio::task::JoinHandle<Vec<Produced>>,
    workers: [kcl_support::Worker; N],
    what: &str,
) {
    stop.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(60))
        .await;
    finish(fleet, &produced, workers, what).await;
}

async fn finish<const N: usize>(
    fleet: &Fleet,
    produced: &[Produced],
    workers: [kcl_support::Worker; N],
    what: &str,
) {
    for worker in workers {
        worker.stop().await;
    }
    assert_all_processed_in_order(&fleet.log, produced);
    assert!(
        fleet.log.duplicates().is_empty(),
        "{what} caused duplicates: {:?}",
        fleet.log.duplicates()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_leases_by_graceful_handoff_without_duplicates() {
    let fleet = Arc::new(Fleet::new(4).await);
    let (stop, producer) = fleet.produce_continuously(10, Duration::from_millis(20));
    let first = fleet.start_worker("first", load_aware());
    first.handle.ready().await.expect("first settles");
    wait_until_owns_all(&fleet, "first", 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let second = fleet.start_worker("second", load_aware());
    second.handle.ready().await.expect("second settles");
    fleet
        .wait_until(Duration::from_secs(30), "second owns leases", || async {
            fleet.owners().await.get("second").copied().unwrap_or(0) >= 1
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    let events = fleet.log.events();
    let handed: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::ShutdownRequested { worker, shard } if worker == "first" => Some(shard),
            _ => None,
        })
        .collect();
    assert!(!handed.is_empty(), "first's processors were asked to stop");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::LeaseLost { worker, .. } if worker == "first")),
        "the handoff was graceful: no lease was lost"
    );
    finish(&fleet, &produced, [second, first], "a graceful handoff").await;
}

/// Checkpoints after every batch, but never returns from `shutdown_requested`.
struct Stubborn(LoggingProcessor);

#[async_trait]
impl RecordProcessor for Stubborn {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        self.0.initialize(input).await
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        self.0.process_records(input).await
    }

    async fn lease_lost(&mut self, input: LeaseLostInput) {
        self.0.lease_lost(input).await;
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) -> Result<(), ProcessorError> {
        self.0.shard_ended(input).await
    }

    async fn shutdown_requested(
        &mut self,
        _input: ShutdownRequestedInput,
    ) -> Result<(), ProcessorError> {
        self.0.log.push(Event::ShutdownRequested {
            worker: self.0.worker.clone(),
            shard: self.0.shard.clone(),
        });
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_the_old_owner_ignores_is_forced_after_the_handoff_timeout() {
    let timeout = Duration::from_secs(4);
    let fleet = Arc::new(Fleet::new(2).await);
    let (stop, producer) = fleet.produce_continuously(5, Duration::from_millis(50));
    let log = fleet.log.clone();
    let stubborn = fleet.start_worker_with(
        "stubborn",
        load_aware().handoff_timeout(timeout),
        move || {
            Stubborn(LoggingProcessor {
                worker: "stubborn".into(),
                shard: String::new(),
                log: log.clone(),
            })
        },
    );
    wait_until_owns_all(&fleet, "stubborn", 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asking = fleet.start_worker("asking", load_aware().handoff_timeout(timeout));

    // The leader names `asking` as the next owner; `stubborn` never hands over.
    let started = Instant::now();
    let (shard, asked_at) = loop {
        let pending = leases(&fleet).await.into_iter().find(|l| {
            l.owner.as_deref() == Some("asking")
                && l.checkpoint_owner.as_deref() == Some("stubborn")
        });
        if let Some(lease) = pending {
            break (lease.key, Instant::now());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no handoff to asking was requested"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    fleet
        .wait_until(
            Duration::from_secs(30),
            "asking takes the shard",
            || async {
                owner_by_shard(&fleet).await.get(&shard).map(String::as_str) == Some("asking")
            },
        )
        .await;
    let waited = asked_at.elapsed();
    assert!(
        waited + Duration::from_millis(1500) >= timeout,
        "the lease moved after {waited:?}, before the handoff timeout {timeout:?}"
    );

    stop.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    let events = fleet.log.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ShutdownRequested { worker, shard: s } if worker == "stubborn" && *s == shard
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Initialized { worker, shard: s, .. } if worker == "asking" && *s == shard
    )));
    asking.stop().await;
    stubborn.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_shard_moves_off_an_overloaded_worker() {
    let fleet = Arc::new(Fleet::new(4).await);
    let shards = shards(&fleet).await;
    let hot: Vec<String> = shards[..2].iter().map(|(id, _)| id.clone()).collect();
    let hash_keys = shards[..2].iter().map(|(_, key)| key.clone()).collect();
    // Two hot shards (~100 KB/s each), two idle ones.
    let (stop, producer) =
        produce_continuously_to(&fleet, hash_keys, 10, 1000, Duration::from_millis(100));
    let first = fleet.start_worker("first", load_aware());
    wait_until_owns_all(&fleet, "first", 4).await;
    // Long enough for the throughput averages to reflect the load.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let second = fleet.start_worker("second", load_aware());
    fleet
        .wait_until(
            Duration::from_secs(30),
            "the hot shards on different workers",
            || async {
                let owners = owner_by_shard(&fleet).await;
                let a = owners.get(&hot[0]);
                a.is_some() && owners.contains_key(&hot[1]) && a != owners.get(&hot[1])
            },
        )
        .await;
    // And it stays that way: the assignment is damped, not oscillating.
    let settled = owner_by_shard(&fleet).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = owner_by_shard(&fleet).await;
    assert_eq!(
        hot.iter().map(|s| settled.get(s)).collect::<Vec<_>>(),
        hot.iter().map(|s| later.get(s)).collect::<Vec<_>>(),
        "a hot shard moved again"
    );
    let throughput: BTreeMap<String, f64> = leases(&fleet)
        .await
        .into_iter()
        .map(|l| (l.key, l.throughput.map_or(0.0, |t| t.kbps())))
        .collect();
    eprintln!("throughputKBps by shard: {throughput:?}; owners: {later:?}");
    assert!(
        hot.iter()
            .all(|s| throughput.get(s).copied().unwrap_or(0.0) > 10.0),
        "the hot shards' throughput is recorded on their leases"
    );

    finish_without_duplicates(
        &fleet,
        stop,
        producer,
        [second, first],
        "moving the hot shard",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_worker_hands_every_lease_over_and_stops() {
    let fleet = Arc::new(Fleet::new(4).await);
    let (stop, producer) = fleet.produce_continuously(10, Duration::from_millis(20));
    let staying = fleet.start_worker("staying", load_aware());
    let leaving = fleet.start_worker("leaving", load_aware());
    leaving.handle.ready().await.expect("leaving settles");
    fleet
        .wait_until(Duration::from_secs(30), "both hold leases", || async {
            let owners = fleet.owners().await;
            owners.len() == 2 && owners.values().sum::<usize>() == 4
        })
        .await;

    leaving.handle.drain().await;
    assert_eq!(leaving.handle.state(), WorkerState::Stopped);
    wait_until_owns_all(&fleet, "staying", 4).await;

    finish_without_duplicates(&fleet, stop, producer, [leaving, staying], "draining").await;
}

#[tokio::test]
async fn the_leader_lock_carries_its_announcement_and_a_java_lock_announces_nothing() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    use kcl::lease::{Assignments, CoordinatorStore, DynamoDbCoordinatorStore, LockRecord};
    let broker = local_broker::LocalBroker::builder()
        .start()
        .await
        .expect("broker starts");
    let client = integration_tests::dynamodb_client(&broker.endpoint());
    let store = DynamoDbCoordinatorStore::new(client.clone(), "announce-app");
    store.initialize().await.expect("tables created");
    let lock = LockRecord {
        owner: "rust-1".into(),
        version: "v1".into(),
        lease_duration: Duration::from_secs(10),
        assignments: Some(Assignments {
            epoch: 7,
            workers: vec!["rust-2".into(), "rust-3".into()],
        }),
    };
    store
        .write_lock("Leader", &lock, None)
        .await
        .expect("lock written");
    assert_eq!(
        store.read_lock("Leader").await.expect("read"),
        Some(lock.clone())
    );

    // A Java KCL 3.x leader (the DynamoDB Lock Client) replaces the item with its own attributes.
    client
        .put_item()
        .table_name("announce-app-CoordinatorState")
        .item("key", S("Leader".into()))
        .item("ownerName", S("java-1".into()))
        .item("recordVersionNumber", S("v2".into()))
        .item("leaseDuration", N("10000".into()))
        .send()
        .await
        .expect("Java-shaped lock written");
    let java = store
        .read_lock("Leader")
        .await
        .expect("read")
        .expect("held");
    assert_eq!((java.owner.as_str(), java.assignments), ("java-1", None));
}
