//! A worker joining a running fleet receives its share, and no shard is ever processed by two
//! workers at once (checked on a per-shard ownership log of every `process_records` call).

mod kcl_support;

use std::collections::BTreeMap;
use std::time::Duration;

use kcl_support::{Event, Fleet, assert_all_processed_in_order, balanced, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_its_share_and_shards_never_have_two_active_owners() {
    let fleet = Fleet::new(4).await;
    let (stop_producing, producer) = fleet.produce_continuously(10, Duration::from_millis(10));
    let mut workers = vec![
        fleet.start_worker("first", test_config()),
        fleet.start_worker("second", test_config()),
    ];
    fleet
        .wait_until(Duration::from_secs(20), "2/2 split", || async {
            balanced(&fleet.owners().await, 2, 4)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    workers.push(fleet.start_worker("joiner", test_config()));
    let took = fleet
        .wait_until(Duration::from_secs(20), "2/1/1 split", || async {
            balanced(&fleet.owners().await, 3, 4)
        })
        .await;
    eprintln!("joiner received its share in {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop_producing.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    for worker in workers {
        worker.stop().await;
    }

    assert_all_processed_in_order(&fleet.log, &produced);
    assert!(
        fleet.log.duplicates().is_empty(),
        "records processed twice: {:?}",
        fleet.log.duplicates()
    );
    let joiner_batches = fleet
        .log
        .processed()
        .iter()
        .filter(|(w, _, _, _)| w == "joiner")
        .count();
    assert!(joiner_batches > 0, "the joiner processed nothing");

    // Per shard, every batch of one worker ends before the next worker's batch starts.
    let mut by_shard: BTreeMap<String, Vec<(String, tokio::time::Instant, tokio::time::Instant)>> =
        BTreeMap::new();
    for event in fleet.log.events() {
        if let Event::Batch {
            worker,
            shard,
            started,
            finished,
            ..
        } = event
        {
            by_shard
                .entry(shard)
                .or_default()
                .push((worker, started, finished));
        }
    }
    for (shard, mut batches) in by_shard {
        batches.sort_by_key(|(_, started, _)| *started);
        for pair in batches.windows(2) {
            let ((w1, _, end1), (w2, start2, _)) = (&pair[0], &pair[1]);
            assert!(
                w1 == w2 || end1 <= start2,
                "{shard}: {w2} started a batch while {w1} was still processing one"
            );
        }
    }
}
