//! Three workers starting together share the shards evenly, quickly, and — because leases move
//! by graceful handoff — without processing any record twice.

mod kcl_support;

use std::time::Duration;

use kcl_support::{Fleet, assert_all_processed_in_order, balanced, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_starting_together_balance_within_one_and_process_nothing_twice() {
    let fleet = Fleet::new(8).await;
    let (stop_producing, producer) = fleet.produce_continuously(20, Duration::from_millis(20));
    let workers: Vec<_> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|id| fleet.start_worker(id, test_config()))
        .collect();

    // A few taker rounds (475 ms each), far below the Java KCL's one lease per 20 s round.
    let took = fleet
        .wait_until(Duration::from_secs(20), "3/3/2 balance", || async {
            balanced(&fleet.owners().await, 3, 8)
        })
        .await;
    eprintln!("balanced 3 workers over 8 shards in {took:?}");
    // Stable: nothing moves any more.
    let settled = fleet.owners().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fleet.owners().await,
        settled,
        "leases kept moving after balancing"
    );

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
        "rebalancing processed records twice: {:?}",
        fleet.log.duplicates()
    );
}
