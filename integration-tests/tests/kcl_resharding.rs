//! Resharding under a running worker: children start only after their parent reached SHARD_END,
//! nothing is lost or repeated, and the finished parents' leases are cleaned up.

mod kcl_support;

use std::time::Duration;

use aws_sdk_kinesis::types::ScalingType;
use kcl::lease::{DynamoDbLeaseStore, LeaseStore};
use kcl_support::{Event, Fleet, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_after_their_parents_end_and_finished_leases_are_cleaned_up() {
    let fleet = Fleet::new(2).await;
    let mut produced = fleet.produce(0, 300).await;
    let worker = fleet.start_worker("resharder", test_config());
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;

    fleet
        .kinesis
        .update_shard_count()
        .stream_name(&fleet.stream)
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    produced.extend(fleet.produce(300, 300).await);
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;

    let store = DynamoDbLeaseStore::new(fleet.dynamodb.clone(), &fleet.application);
    fleet
        .wait_until(Duration::from_secs(20), "parent leases deleted", || async {
            let leases = store.list_leases().await.expect("scan");
            !leases.iter().any(|l| l.is_finished())
                && leases.iter().all(|l| !l.parent_shard_ids.is_empty())
        })
        .await;
    worker.stop().await;

    assert!(
        fleet.log.duplicates().is_empty(),
        "resharding repeated records: {:?}",
        fleet.log.duplicates()
    );
    let events = fleet.log.events();
    let ended: Vec<(usize, String)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::ShardEnded { shard, .. } => Some((i, shard.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 2, "both parents reached SHARD_END: {ended:?}");
    let leases = store.list_leases().await.expect("scan");
    for child in &leases {
        let started = events
            .iter()
            .position(|e| matches!(e, Event::Initialized { shard, .. } if *shard == child.key))
            .expect("child initialized");
        for parent in &child.parent_shard_ids {
            let (end, _) = ended
                .iter()
                .find(|(_, s)| s == parent)
                .expect("parent ended");
            assert!(
                *end < started,
                "{} started before its parent {parent} ended",
                child.key
            );
        }
    }
}
