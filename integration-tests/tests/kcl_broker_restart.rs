//! A broker with a data directory is restarted under a KCL application: the stream, its records,
//! the lease table and the checkpoints all come back, so a worker started against the restarted
//! broker resumes exactly after its last checkpoint.

mod kcl_support;

use std::sync::Arc;
use std::time::Duration;

use integration_tests::{TempDir, dynamodb_client, kinesis_client};
use kcl_support::{Fleet, Log, assert_all_processed_in_order, test_config};
use local_broker::{LocalBroker, SyncMode};

fn durable_broker(dir: &TempDir) -> local_broker::LocalBrokerBuilder {
    LocalBroker::builder()
        .data_dir(&dir.0)
        .sync(SyncMode::Always)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_resumes_from_its_checkpoint_after_the_broker_restarts() {
    let dir = TempDir::new("kcl-restart");
    let fleet = Fleet::with_broker(durable_broker(&dir), 2).await;
    let before = fleet.produce(0, 100).await;
    let worker = fleet.start_worker("before", test_config());
    fleet.wait_processed(&before, Duration::from_secs(20)).await;
    worker.stop().await;

    let Fleet {
        broker,
        stream,
        application,
        log,
        ..
    } = fleet;
    broker.shutdown().await;
    let broker = durable_broker(&dir)
        .start()
        .await
        .expect("the broker recovers its data directory");
    let fleet = Fleet {
        kinesis: kinesis_client(&broker.endpoint()),
        dynamodb: dynamodb_client(&broker.endpoint()),
        broker,
        stream,
        application,
        log: Arc::clone(&log),
    };

    let after = fleet.produce(100, 100).await;
    let worker = fleet.start_worker("after", test_config());
    fleet.wait_processed(&after, Duration::from_secs(20)).await;
    worker.stop().await;

    let all: Vec<_> = before.iter().chain(&after).cloned().collect();
    assert_all_processed_in_order(&log, &all);
    let mut resumed = processed_by(&log, "after");
    let mut expected: Vec<String> = after.iter().map(|p| p.data.clone()).collect();
    resumed.sort();
    expected.sort();
    assert_eq!(
        resumed, expected,
        "after the restart the worker processed exactly the new records (per-shard order is \
         checked above)"
    );
}

/// Data of the records `worker` processed.
fn processed_by(log: &Log, worker: &str) -> Vec<String> {
    log.processed()
        .into_iter()
        .filter(|(w, ..)| w == worker)
        .map(|(.., data)| data)
        .collect()
}
