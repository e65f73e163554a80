//! A worker that stops gracefully checkpoints and releases its leases: the others own its shards
//! at their next scan — not after the failover time — and nothing is processed twice.

mod kcl_support;

use std::time::Duration;

use kcl_support::{Fleet, assert_all_processed_in_order, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gracefully_stopped_workers_shards_move_at_once_without_duplicates() {
    // A long failover time makes the difference plain: the shards must move long before it.
    let config = test_config().failover_time(Duration::from_secs(6));
    let renewal = config.renewal_interval();
    let fleet = Fleet::new(4).await;
    let (stop_producing, producer) = fleet.produce_continuously(10, Duration::from_millis(20));
    let staying = fleet.start_worker("staying", config.clone());
    let leaving = fleet.start_worker("leaving", config.clone());
    fleet
        .wait_until(Duration::from_secs(30), "2/2 split", || async {
            let owners = fleet.owners().await;
            owners.len() == 2 && owners.values().all(|n| *n == 2)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    leaving.stop().await;
    let took = fleet
        .wait_until(Duration::from_secs(30), "staying owns all 4", || async {
            fleet.owners().await.get("staying") == Some(&4)
        })
        .await;
    eprintln!("graceful stop: shards moved in {took:?} (renewal interval {renewal:?})");
    assert!(
        took < Duration::from_secs(6),
        "shards moved only after {took:?}: the release was not seen, the leases expired"
    );

    stop_producing.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    staying.stop().await;
    assert_all_processed_in_order(&fleet.log, &produced);
    assert!(
        fleet.log.duplicates().is_empty(),
        "a graceful stop caused duplicates: {:?}",
        fleet.log.duplicates()
    );
}
