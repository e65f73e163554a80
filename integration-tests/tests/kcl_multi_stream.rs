//! Multi-stream applications: one lease table for several streams, with the Java KCL's
//! multi-stream lease keys (`account:stream:creationEpoch:shardId`) and attributes, streams added
//! and removed at runtime through a `StreamSet`, and each stream's own initial position.

mod kcl_support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use aws_sdk_kinesis::types::ScalingType;
use kcl::{
    Config, FormerStreamLeases, InitialPosition, RetrievalMode, StreamConfig, StreamIdentifier,
    StreamSet,
};
use kcl_support::{Event, Fleet, Produced, assert_all_processed_in_order, balanced, test_config};
use tokio::time::Instant;

/// The scenarios' usual short times, plus a tracker asked every 200 ms and leases of removed
/// streams deleted after 1 s.
fn multi_config() -> Config {
    test_config()
        .stream_check_interval(Duration::from_millis(200))
        .former_stream_leases(FormerStreamLeases::DeleteAfter(Duration::from_secs(1)))
}

/// The data of every record processed from `stream`'s shards (the logging processor names a
/// shard `account:stream:epoch:shardId`).
fn processed_from(fleet: &Fleet, stream: &StreamIdentifier) -> HashSet<String> {
    let prefix = format!("{stream}:");
    fleet
        .log
        .processed()
        .into_iter()
        .filter(|(_, shard, _, _)| shard.starts_with(&prefix))
        .map(|(_, _, _, data)| data)
        .collect()
}

/// Fails with `what` if any of `records` (put into `stream`) was processed.
fn assert_none_processed(
    fleet: &Fleet,
    stream: &StreamIdentifier,
    records: &[Produced],
    what: &str,
) {
    let seen = processed_from(fleet, stream);
    let processed: Vec<&Produced> = records.iter().filter(|p| seen.contains(&p.data)).collect();
    assert!(processed.is_empty(), "{what}: {processed:?}");
}

async fn orders_stream(fleet: &Fleet) -> StreamIdentifier {
    StreamIdentifier::describe(&fleet.kinesis, &fleet.stream)
        .await
        .expect("DescribeStreamSummary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_consume_three_streams_from_one_lease_table_with_java_multi_stream_keys() {
    let fleet = Fleet::new(2).await;
    let orders = orders_stream(&fleet).await;
    let refunds = fleet.create_stream("refunds", 3).await;
    let audits = fleet.create_stream("audits", 1).await;
    assert_eq!(orders.account_id(), "000000000000");
    let streams: Vec<StreamConfig> = [&orders, &refunds, &audits]
        .into_iter()
        .map(|s| StreamConfig::new(s.clone(), InitialPosition::TrimHorizon))
        .collect();
    let mut produced = fleet.produce_to("orders", 0, 200).await;
    produced.extend(fleet.produce_to("refunds", 10_000, 300).await);
    produced.extend(fleet.produce_to("audits", 20_000, 100).await);

    let w1 = fleet.start_multi_stream_worker("w1", multi_config(), streams.clone());
    let w2 = fleet.start_multi_stream_worker("w2", multi_config(), streams);
    fleet
        .wait_until(Duration::from_secs(20), "3/3 over 6 shards", || async {
            balanced(&fleet.owners().await, 2, 6)
        })
        .await;

    // Resharding stays within its stream: audits' shard splits, its children wait for it.
    fleet
        .kinesis
        .update_shard_count()
        .stream_name("audits")
        .target_shard_count(2)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    produced.extend(fleet.produce_to("orders", 1_000, 100).await);
    produced.extend(fleet.produce_to("refunds", 11_000, 100).await);
    produced.extend(fleet.produce_to("audits", 21_000, 100).await);
    // Failover works across streams: w1 takes over every stream's shards of a crashed w2.
    w2.kill().await;
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    fleet
        .wait_until(Duration::from_secs(20), "w1 holds every lease", || async {
            let owners = fleet.owners().await;
            owners.len() == 1 && owners.contains_key("w1")
        })
        .await;
    w1.stop().await;
    assert_all_processed_in_order(&fleet.log, &produced);

    // The lease items are a Java multi-stream fleet's: key = streamName:shardId.
    let items = fleet
        .dynamodb
        .scan()
        .table_name(&fleet.application)
        .send()
        .await
        .expect("Scan")
        .items
        .unwrap_or_default();
    let attr = |item: &std::collections::HashMap<String, _>, name: &str| -> String {
        match item.get(name) {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.clone(),
            other => panic!("{name} should be a string, found {other:?}"),
        }
    };
    let mut shards_by_stream: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in &items {
        let (key, stream, shard) = (
            attr(item, "leaseKey"),
            attr(item, "streamName"),
            attr(item, "shardId"),
        );
        assert_eq!(key, format!("{stream}:{shard}"));
        shards_by_stream.entry(stream).or_default().insert(shard);
    }
    let shard = |n: u32| format!("shardId-{n:012}");
    assert_eq!(
        shards_by_stream.get(&orders.to_string()),
        Some(&[shard(0), shard(1)].into()),
        "lease keys {:?}",
        items
            .iter()
            .map(|i| attr(i, "leaseKey"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        shards_by_stream[&refunds.to_string()],
        [shard(0), shard(1), shard(2)].into()
    );
    assert_eq!(
        orders.lease_key(&shard(0)),
        format!(
            "000000000000:orders:{}:shardId-000000000000",
            orders.creation_epoch()
        )
    );

    // The children of audits' parent name it by shard id (as the Java KCL), and started only
    // after it ended.
    let leases = fleet.leases().await;
    let children: Vec<String> = leases
        .iter()
        .filter(|l| l.stream.as_ref() == Some(&audits) && l.parent_shard_ids == [shard(0)])
        .map(|l| l.key.clone())
        .collect();
    assert_eq!(children.len(), 2, "audits' children: {leases:?}");
    let events = fleet.log.events();
    let parent_key = audits.lease_key(&shard(0));
    let parent_end = events
        .iter()
        .position(|e| matches!(e, Event::ShardEnded { shard, .. } if *shard == parent_key))
        .expect("audits' parent shard ended");
    let first_child_batch = events
        .iter()
        .position(|e| matches!(e, Event::Batch { shard, .. } if children.contains(shard)))
        .expect("audits' children processed");
    assert!(
        first_child_batch > parent_end,
        "a child started before its parent ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_added_at_runtime_are_consumed_and_removed_ones_stop_and_lose_their_leases() {
    let fleet = Fleet::new(2).await;
    let orders = orders_stream(&fleet).await;
    let refunds = fleet.create_stream("refunds", 2).await;
    let audits = fleet.create_stream("audits", 1).await;
    let streams = StreamSet::new([
        StreamConfig::new(orders.clone(), InitialPosition::TrimHorizon),
        StreamConfig::new(refunds.clone(), InitialPosition::TrimHorizon),
    ]);
    let mut first = fleet.produce_to("orders", 0, 100).await;
    first.extend(fleet.produce_to("refunds", 10_000, 100).await);
    let worker = fleet.start_multi_stream_worker("w1", multi_config(), streams.clone());
    fleet.wait_processed(&first, Duration::from_secs(20)).await;

    // Added with records already in it: picked up from its trim horizon.
    let audit_records = fleet.produce_to("audits", 20_000, 100).await;
    assert!(streams.add(StreamConfig::new(
        audits.clone(),
        InitialPosition::TrimHorizon
    )));
    fleet
        .wait_processed(&audit_records, Duration::from_secs(20))
        .await;

    // Removed: its shards checkpoint and let go, nobody takes them, then the leases go.
    assert!(streams.remove(&refunds));
    let refunds_prefix = format!("{refunds}:");
    fleet
        .wait_until(Duration::from_secs(10), "refunds' shards shut down", || async {
            let stopped = fleet
                .log
                .events()
                .into_iter()
                .filter(|e| matches!(e, Event::ShutdownRequested { shard, .. } if shard.starts_with(&refunds_prefix)))
                .count();
            let held = fleet
                .leases()
                .await
                .iter()
                .filter(|l| l.stream.as_ref() == Some(&refunds) && l.owner.is_some())
                .count();
            stopped == 2 && held == 0
        })
        .await;
    let late_refunds = fleet.produce_to("refunds", 11_000, 50).await;
    let mut more = fleet.produce_to("orders", 1_000, 50).await;
    more.extend(fleet.produce_to("audits", 21_000, 50).await);
    fleet.wait_processed(&more, Duration::from_secs(20)).await;
    fleet
        .wait_until(
            Duration::from_secs(10),
            "refunds' leases deleted",
            || async {
                !fleet
                    .leases()
                    .await
                    .iter()
                    .any(|l| l.stream.as_ref() == Some(&refunds))
            },
        )
        .await;
    let still_tracked = fleet.leases().await;
    assert!(
        still_tracked.iter().all(|l| l.stream.is_some()),
        "every lease is a multi-stream lease"
    );
    assert_eq!(
        still_tracked.len(),
        3,
        "orders' and audits' leases stay: {still_tracked:?}"
    );
    worker.stop().await;

    assert_none_processed(
        &fleet,
        &refunds,
        &late_refunds,
        "records put after the stream was removed were processed",
    );
    let mut all = first;
    all.extend(audit_records);
    all.extend(more);
    assert_all_processed_in_order(&fleet.log, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_added_back_resumes_from_its_checkpoints_when_its_leases_are_kept() {
    let fleet = Fleet::new(2).await;
    let orders = orders_stream(&fleet).await;
    let refunds = fleet.create_stream("refunds", 2).await;
    let config = multi_config().former_stream_leases(FormerStreamLeases::Keep);
    let streams = StreamSet::new([
        StreamConfig::new(orders.clone(), InitialPosition::TrimHorizon),
        StreamConfig::new(refunds.clone(), InitialPosition::TrimHorizon),
    ]);
    let mut produced = fleet.produce_to("refunds", 10_000, 100).await;
    let worker = fleet.start_multi_stream_worker("w1", config, streams.clone());
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;

    streams.remove(&refunds);
    fleet
        .wait_until(
            Duration::from_secs(10),
            "refunds' leases released",
            || async {
                let leases = fleet.leases().await;
                let refunds_leases: Vec<_> = leases
                    .iter()
                    .filter(|l| l.stream.as_ref() == Some(&refunds))
                    .collect();
                refunds_leases.len() == 2 && refunds_leases.iter().all(|l| l.owner.is_none())
            },
        )
        .await;
    let while_removed = fleet.produce_to("refunds", 11_000, 50).await;
    // Several cleanup rounds pass: the leases stay.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fleet
            .leases()
            .await
            .iter()
            .filter(|l| l.stream.as_ref() == Some(&refunds))
            .count(),
        2
    );
    assert_none_processed(
        &fleet,
        &refunds,
        &while_removed,
        "a removed stream was processed",
    );

    streams.add(StreamConfig::new(
        refunds.clone(),
        InitialPosition::TrimHorizon,
    ));
    produced.extend(while_removed);
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;
    worker.stop().await;
    assert_all_processed_in_order(&fleet.log, &produced);
    let duplicates = fleet.log.duplicates();
    assert!(
        duplicates.is_empty(),
        "the stream added back did not resume from its checkpoints: {duplicates:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stream_starts_at_its_own_initial_position() {
    let fleet = Fleet::new(2).await;
    let orders = orders_stream(&fleet).await;
    let backlog = fleet.create_stream("backlog", 2).await;
    let old_orders = fleet.produce_to("orders", 0, 100).await;
    let old_backlog = fleet.produce_to("backlog", 10_000, 100).await;
    let worker = fleet.start_multi_stream_worker(
        "w1",
        multi_config(),
        vec![
            StreamConfig::new(orders.clone(), InitialPosition::Latest),
            StreamConfig::new(backlog.clone(), InitialPosition::TrimHorizon),
        ],
    );
    fleet
        .wait_processed(&old_backlog, Duration::from_secs(20))
        .await;

    // LATEST starts at the tip once a shard's reader is positioned: put records until every
    // orders shard delivered one, then everything put afterwards must arrive.
    let (start, mut next) = (Instant::now(), 1_000);
    let orders_prefix = format!("{orders}:");
    loop {
        fleet.produce_to("orders", next, 10).await;
        next += 10;
        let shards: HashSet<String> = fleet
            .log
            .processed()
            .into_iter()
            .filter(|(_, shard, _, _)| shard.starts_with(&orders_prefix))
            .map(|(_, shard, _, _)| shard)
            .collect();
        if shards.len() == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "orders never delivered from both shards"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_orders = fleet.produce_to("orders", 5_000, 100).await;
    fleet
        .wait_processed(&new_orders, Duration::from_secs(20))
        .await;
    worker.stop().await;

    assert_none_processed(
        &fleet,
        &orders,
        &old_orders,
        "LATEST delivered records put before the worker started",
    );
    assert_eq!(processed_from(&fleet, &backlog).len(), old_backlog.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_registers_one_consumer_per_stream() {
    let fleet = Fleet::new(1).await;
    let orders = orders_stream(&fleet).await;
    let refunds = fleet.create_stream("refunds", 2).await;
    let mut produced = fleet.produce_to("orders", 0, 100).await;
    produced.extend(fleet.produce_to("refunds", 10_000, 100).await);
    let config = multi_config().retrieval_mode(RetrievalMode::fan_out());
    let worker = fleet.start_multi_stream_worker(
        "w1",
        config,
        vec![
            StreamConfig::new(orders, InitialPosition::TrimHorizon),
            StreamConfig::new(refunds, InitialPosition::TrimHorizon),
        ],
    );
    fleet
        .wait_processed(&produced, Duration::from_secs(20))
        .await;
    worker.stop().await;
    assert_all_processed_in_order(&fleet.log, &produced);

    for stream in ["orders", "refunds"] {
        assert_eq!(
            fleet.consumer_names(stream).await,
            [fleet.application.as_str()],
            "consumers of {stream}"
        );
    }
}
