//! Workers process everything while the broker misbehaves like a bad day on AWS: GetRecords,
//! PutRecords and the lease table's UpdateItem (checkpoints, renewals, takes) are throttled, fail
//! with HTTP 500, answer slowly and drop connections. Nothing is lost and every shard's records
//! are processed in order.

mod kcl_support;

use std::time::Duration;

use kcl_support::{Fleet, assert_all_processed_in_order, test_config};
use local_broker::{FaultRule, LocalBroker};

fn bad_day() -> Vec<FaultRule> {
    let slow = Duration::from_millis(200);
    vec![
        // Often enough that the SDK's three attempts run out and the KCL's own retries act.
        FaultRule::new("GetRecords")
            .throttle(0.3)
            .internal_failure(0.2)
            .drop_connection(0.1)
            .slow(0.2, slow),
        FaultRule::new("PutRecords")
            .throttle(0.2)
            .internal_failure(0.1)
            .drop_connection(0.05),
        FaultRule::new("dynamodb:UpdateItem")
            .throttle(0.2)
            .internal_failure(0.2)
            .drop_connection(0.1)
            .slow(0.2, slow),
        FaultRule::new("*").throttle(0.02).internal_failure(0.02),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_process_everything_in_order_under_injected_faults() {
    let fleet = Fleet::with_broker(LocalBroker::builder().fault_seed(7), 4).await;
    fleet.broker.faults().set(bad_day());
    let first = fleet.start_worker("first", test_config());
    let second = fleet.start_worker("second", test_config());
    let (stop_producing, producer) = fleet.produce_continuously(20, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_producing.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(60))
        .await;
    // Shutting down checkpoints and releases leases through the same faulty lease table.
    first.stop().await;
    second.stop().await;
    assert_all_processed_in_order(&fleet.log, &produced);
}
