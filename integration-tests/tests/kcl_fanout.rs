//! Enhanced fan-out retrieval through the real `kcl::Scheduler` and SDK clients: the same
//! processing contract as polling (every record once, in shard order, resumed from checkpoints,
//! children after parents) across re-subscriptions, restarts and lease moves.
//!
//! Kinesis (and the broker) refuse a subscription for a consumer and shard within 5 s of the
//! previous one, so scenarios that move a shard or re-subscribe take at least that long.

mod kcl_support;

use std::time::Duration;

use kcl::{Config, RetrievalMode};
use kcl_support::{Event, Fleet, assert_all_processed_in_order, balanced, test_config};

fn fan_out_config() -> Config {
    test_config().retrieval_mode(RetrievalMode::fan_out())
}

fn assert_no_duplicates(fleet: &Fleet) {
    let duplicates = fleet.log.duplicates();
    assert!(
        duplicates.is_empty(),
        "records processed twice: {duplicates:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_processes_every_record_once_in_order_through_its_consumer() {
    let fleet = Fleet::new(2).await;
    let mut produced = fleet.produce(0, 200).await;
    let worker = fleet.start_worker("fan", fan_out_config());
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;
    // Records put while subscribed are pushed.
    produced.extend(fleet.produce(200, 100).await);
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;
    worker.stop().await;

    assert_all_processed_in_order(&fleet.log, &produced);
    assert_no_duplicates(&fleet);
    let names = fleet.consumer_names(&fleet.stream).await;
    assert_eq!(
        names,
        [fleet.application.as_str()],
        "one consumer, named after the application"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_resumes_from_the_checkpoint_with_the_existing_consumer() {
    let fleet = Fleet::new(1).await;
    let first = fleet.produce(0, 100).await;
    let worker = fleet.start_worker("before", fan_out_config());
    fleet.wait_processed(&first, Duration::from_secs(20)).await;
    worker.stop().await;

    let second = fleet.produce(100, 100).await;
    // Registering again finds the consumer; subscribing again waits out the 5 s guard.
    let worker = fleet.start_worker("after", fan_out_config());
    fleet.wait_processed(&second, Duration::from_secs(20)).await;
    worker.stop().await;

    assert_no_duplicates(&fleet);
    let resumed: Vec<String> = fleet
        .log
        .processed()
        .into_iter()
        .filter(|(worker, ..)| worker == "after")
        .map(|(.., data)| data)
        .collect();
    let expected: Vec<String> = second.iter().map(|p| p.data.clone()).collect();
    assert_eq!(
        resumed, expected,
        "the restarted worker processed exactly the new records, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_ending_mid_stream_are_renewed_without_loss_or_repeats() {
    let lifetime = Duration::from_millis(1000);
    let fleet = Fleet::with_broker(
        local_broker::LocalBroker::builder().subscription_lifetime(lifetime),
        2,
    )
    .await;
    let worker = fleet.start_worker("renewer", fan_out_config());
    let (stop_producing, producer) = fleet.produce_continuously(5, Duration::from_millis(20));
    // Produce past the first subscriptions' end, so records arrive while none is open.
    tokio::time::sleep(lifetime * 2).await;
    stop_producing.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;
    worker.stop().await;

    assert_all_processed_in_order(&fleet.log, &produced);
    assert_no_duplicates(&fleet);
    let initialized = fleet
        .log
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Initialized { .. }))
        .count();
    assert_eq!(
        initialized, 2,
        "re-subscribing stays inside the shard consumer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_split_are_processed_after_their_parent() {
    let fleet = Fleet::new(1).await;
    let mut produced = fleet.produce(0, 100).await;
    let worker = fleet.start_worker("splitter", fan_out_config());
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;
    fleet
        .kinesis
        .split_shard()
        .stream_name(&fleet.stream)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((u128::MAX / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    produced.extend(fleet.produce(100, 200).await);
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;
    worker.stop().await;

    assert_all_processed_in_order(&fleet.log, &produced);
    assert_no_duplicates(&fleet);
    let events = fleet.log.events();
    let parent_ended = events
        .iter()
        .position(
            |e| matches!(e, Event::ShardEnded { shard, .. } if shard == "shardId-000000000000"),
        )
        .expect("the parent reached SHARD_END");
    for child in ["shardId-000000000001", "shardId-000000000002"] {
        let started = events
            .iter()
            .position(|e| matches!(e, Event::Initialized { shard, .. } if shard == child))
            .expect("child initialized");
        assert!(
            parent_ended < started,
            "{child} started before its parent ended"
        );
    }
    let children_records = fleet
        .log
        .processed()
        .iter()
        .filter(|(_, shard, ..)| shard != "shardId-000000000000")
        .count();
    assert_eq!(children_records, 200, "records put after the split");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_balance_and_a_graceful_stop_hands_over_without_loss_or_repeats() {
    let fleet = Fleet::new(4).await;
    let (stop_producing, producer) = fleet.produce_continuously(10, Duration::from_millis(20));
    let first = fleet.start_worker("w1", fan_out_config());
    let second = fleet.start_worker("w2", fan_out_config());
    fleet
        .wait_until(Duration::from_secs(20), "2/2 balance", || async {
            balanced(&fleet.owners().await, 2, 4)
        })
        .await;
    // Owning leases is not yet processing: fan-out subscribes first. Stop w1 only once its
    // processors run, so the graceful stop has something to checkpoint.
    fleet
        .wait_until(Duration::from_secs(20), "w1 processing", || async {
            fleet
                .log
                .processed()
                .iter()
                .any(|(worker, ..)| worker == "w1")
        })
        .await;

    first.stop().await;
    fleet
        .wait_until(Duration::from_secs(20), "w2 holds every lease", || async {
            balanced(&fleet.owners().await, 1, 4)
        })
        .await;
    stop_producing.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    second.stop().await;

    assert_all_processed_in_order(&fleet.log, &produced);
    assert_no_duplicates(&fleet);
    let stopped = fleet
        .log
        .events()
        .iter()
        .filter(|e| matches!(e, Event::ShutdownRequested { worker, .. } if worker == "w1"))
        .count();
    assert!(stopped >= 1, "w1 checkpointed its shards on the way out");
}
