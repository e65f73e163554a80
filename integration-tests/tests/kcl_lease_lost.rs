//! A lease taken away mid-batch: the old processor's checkpoint attempts fail with
//! `LeaseLost`, and it then gets `lease_lost`.

mod kcl_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use kcl::{CheckpointError, LeaseLostInput, ProcessRecordsInput, ProcessorError, RecordProcessor};
use kcl_support::{Fleet, test_config};
use tokio::sync::Notify;

#[derive(Default)]
struct Observations {
    checkpoint_results: Mutex<Vec<Result<(), String>>>,
    lease_lost_calls: Mutex<usize>,
    in_batch: Notify,
    resume: Notify,
}

/// Blocks in its first batch until the test lets it go, then tries to checkpoint.
struct SlowProcessor {
    seen: Arc<Observations>,
    first: bool,
}

#[async_trait]
impl RecordProcessor for SlowProcessor {
    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        if std::mem::take(&mut self.first) {
            self.seen.in_batch.notify_one();
            self.seen.resume.notified().await;
        }
        let result = match input.checkpointer.checkpoint().await {
            Ok(()) => Ok(()),
            Err(CheckpointError::LeaseLost { shard_id }) => Err(format!("lost {shard_id}")),
            Err(other) => Err(format!("unexpected: {other}")),
        };
        self.seen
            .checkpoint_results
            .lock()
            .expect("lock")
            .push(result);
        Ok(())
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput) {
        *self.seen.lease_lost_calls.lock().expect("lock") += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_lease_is_taken_mid_batch_cannot_checkpoint_and_is_told() {
    let fleet = Fleet::new(1).await;
    fleet.produce(0, 10).await;
    let seen = Arc::new(Observations::default());
    let factory_seen = seen.clone();
    // A long failover time: the worker must not simply take the lease back during the test.
    let config = test_config().failover_time(Duration::from_secs(30));
    let worker = fleet.start_worker_with("victim", config, move || SlowProcessor {
        seen: factory_seen.clone(),
        first: true,
    });
    tokio::time::timeout(Duration::from_secs(20), seen.in_batch.notified())
        .await
        .expect("the first batch arrives");

    // Another worker (any KCL implementation) takes the lease: owner and counter change.
    fleet
        .dynamodb
        .update_item()
        .table_name(&fleet.application)
        .key("leaseKey", AttributeValue::S("shardId-000000000000".into()))
        .update_expression("SET leaseOwner = :thief, leaseCounter = leaseCounter + :one")
        .condition_expression("leaseOwner = :victim")
        .expression_attribute_values(":thief", AttributeValue::S("thief".into()))
        .expression_attribute_values(":victim", AttributeValue::S("victim".into()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("the lease is taken");
    seen.resume.notify_one();

    fleet
        .wait_until(Duration::from_secs(10), "lease_lost", || async {
            *seen.lease_lost_calls.lock().expect("lock") == 1
        })
        .await;
    let results = seen.checkpoint_results.lock().expect("lock").clone();
    assert_eq!(
        results.len(),
        1,
        "one batch, one checkpoint attempt: {results:?}"
    );
    let error = results[0].clone().expect_err("the checkpoint must fail");
    assert_eq!(error, "lost shardId-000000000000");
    worker.stop().await;

    let lease = kcl::lease::DynamoDbLeaseStore::new(fleet.dynamodb.clone(), &fleet.application);
    let stored = kcl::lease::LeaseStore::get_lease(&lease, "shardId-000000000000")
        .await
        .expect("read lease")
        .expect("lease exists");
    assert_eq!(
        stored.owner.as_deref(),
        Some("thief"),
        "the victim never took it back"
    );
    assert_eq!(
        stored.checkpoint,
        kcl::ExtendedSequenceNumber::TrimHorizon,
        "the victim's checkpoint never landed"
    );
}
