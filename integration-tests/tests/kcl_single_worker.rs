//! One worker processes every record once, in order per shard; a restarted worker resumes from
//! its checkpoints; throttling and failing processors slow it down but lose nothing.

mod kcl_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kcl::{InitializationInput, ProcessRecordsInput, ProcessorError, RecordProcessor};
use kcl_support::{Fleet, assert_all_processed_in_order, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_processes_every_record_once_in_order_per_shard() {
    let fleet = Fleet::new(4).await;
    let produced = fleet.produce(0, 1000).await;
    let worker = fleet.start_worker("solo", test_config());

    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    worker.stop().await;

    assert_all_processed_in_order(&fleet.log, &produced);
    assert!(
        fleet.log.duplicates().is_empty(),
        "processed twice: {:?}",
        fleet.log.duplicates()
    );
    let shards: std::collections::BTreeSet<_> = fleet
        .log
        .processed()
        .into_iter()
        .map(|(_, s, _, _)| s)
        .collect();
    assert_eq!(shards.len(), 4, "every shard processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_resumes_from_its_checkpoints() {
    let fleet = Fleet::new(4).await;
    let mut produced = fleet.produce(0, 400).await;
    let first = fleet.start_worker("first-run", test_config());
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    first.stop().await;

    produced.extend(fleet.produce(400, 200).await);
    let second = fleet.start_worker("second-run", test_config());
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    second.stop().await;

    assert_all_processed_in_order(&fleet.log, &produced);
    assert!(
        fleet.log.duplicates().is_empty(),
        "the restart re-processed records: {:?}",
        fleet.log.duplicates()
    );
    let by_second = fleet
        .log
        .processed()
        .into_iter()
        .filter(|(w, _, _, _)| w == "second-run")
        .count();
    assert_eq!(
        by_second, 200,
        "the second run processed only the new records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_throttled_by_shard_read_limits_backs_off_and_processes_everything() {
    // 5 GetRecords calls/s per shard: polling every 50 ms is throttled and must back off.
    let broker = local_broker::LocalBroker::builder().enforce_limits(true);
    let fleet = Fleet::with_broker(broker, 2).await;
    let produced = fleet.produce(0, 600).await;
    let worker = fleet.start_worker("throttled", test_config());
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    worker.stop().await;
    assert_all_processed_in_order(&fleet.log, &produced);
    assert!(fleet.log.duplicates().is_empty());
}

/// Fails its first call on one shard, panics on the second, then behaves.
struct Flaky {
    inner: kcl_support::LoggingProcessor,
    failures: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RecordProcessor for Flaky {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        self.inner.initialize(input).await
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        if self.inner.shard == "shardId-000000000000" {
            match self.failures.fetch_add(1, Ordering::SeqCst) {
                0 => return Err("downstream unavailable".into()),
                1 => panic!("processor bug"),
                _ => {}
            }
        }
        self.inner.process_records(input).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_processor_is_retried_and_other_shards_carry_on() {
    let fleet = Fleet::new(2).await;
    let produced = fleet.produce(0, 200).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let (log, count) = (fleet.log.clone(), failures.clone());
    let worker = fleet.start_worker_with("flaky", test_config(), move || Flaky {
        inner: kcl_support::LoggingProcessor {
            worker: "flaky".into(),
            shard: String::new(),
            log: log.clone(),
        },
        failures: count.clone(),
    });
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    worker.stop().await;
    assert!(
        failures.load(Ordering::SeqCst) >= 3,
        "the failing batch was retried"
    );
    assert_all_processed_in_order(&fleet.log, &produced);
    assert!(fleet.log.duplicates().is_empty());
}
