//! A worker that dies (its task aborted: no release, no checkpoint) loses its shards to the
//! others after the failover time; nothing is lost, and only records after its last checkpoint
//! are processed again — with polling and with enhanced fan-out.

mod kcl_support;

use std::time::Duration;

use kcl::{Config, RetrievalMode};
use kcl_support::{Fleet, assert_all_processed_in_order, seq_key, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_shards_resume_elsewhere_after_the_failover_time() {
    killed_worker_fails_over(test_config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fan_out_workers_shards_resume_elsewhere_after_the_failover_time() {
    killed_worker_fails_over(test_config().retrieval_mode(RetrievalMode::fan_out())).await;
}

async fn killed_worker_fails_over(config: Config) {
    let fleet = Fleet::new(4).await;
    let (stop_producing, producer) = fleet.produce_continuously(10, Duration::from_millis(20));
    let survivor = fleet.start_worker("survivor", config.clone());
    let doomed = fleet.start_worker("doomed", config);
    fleet
        .wait_until(Duration::from_secs(20), "2/2 split", || async {
            fleet.owners().await.values().all(|n| *n == 2) && fleet.owners().await.len() == 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    doomed.kill().await;
    // Well inside the failover time the dead worker's leases are still its own.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        fleet.owners().await.get("doomed"),
        Some(&2),
        "leases moved before the failover time"
    );
    let took = fleet
        .wait_until(Duration::from_secs(15), "survivor owns all 4", || async {
            fleet.owners().await.get("survivor") == Some(&4)
        })
        .await;
    eprintln!(
        "failover: survivor owned every shard {:?} after the kill (+600 ms)",
        took
    );

    stop_producing.cancel();
    let produced = producer.await.expect("producer");
    fleet
        .wait_processed(&produced, Duration::from_secs(30))
        .await;
    survivor.stop().await;

    assert_all_processed_in_order(&fleet.log, &produced);
    // Duplicates are records the dead worker processed after its last checkpoint.
    let checkpoints = fleet.log.last_checkpoints();
    for (data, seen_by) in fleet.log.duplicates() {
        assert_eq!(
            seen_by.len(),
            2,
            "{data} processed more than twice: {seen_by:?}"
        );
        let (dead, survived): (Vec<_>, Vec<_>) = seen_by.iter().partition(|(w, _)| w == "doomed");
        assert_eq!((dead.len(), survived.len()), (1, 1), "{data}: {seen_by:?}");
        let (_, seq) = dead[0];
        let shard = fleet
            .log
            .processed()
            .into_iter()
            .find(|(w, _, s, _)| w == "doomed" && s == seq)
            .map(|(_, shard, _, _)| shard)
            .expect("shard of the duplicate");
        if let Some(last) = checkpoints.get(&("doomed".to_owned(), shard.clone())) {
            assert!(
                seq_key(seq) > seq_key(last),
                "{data} (seq {seq}) in {shard} was checkpointed at {last} yet processed again"
            );
        }
    }
}
