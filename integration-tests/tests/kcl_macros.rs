//! `#[kcl::processor]` functions run by real workers against the in-process broker: the
//! checkpoint policies, JSON decoding (an undecodable record is skipped), a failing record retried
//! without repeating the records before it, and the checkpoints at a graceful shutdown and at a
//! shard's end.

mod kcl_support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kcl::lease::{DynamoDbLeaseStore, LeaseStore};
use kcl::{ExtendedSequenceNumber, Json, ProcessorError, Record};
use kcl_support::{Fleet, test_config};

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

/// Puts each payload in order (one shard) and returns their sequence numbers.
async fn put(fleet: &Fleet, payloads: &[String]) -> Vec<String> {
    let mut sequences = Vec::new();
    for payload in payloads {
        let out = fleet
            .kinesis
            .put_record()
            .stream_name(&fleet.stream)
            .partition_key("key")
            .data(aws_smithy_types::Blob::new(payload.as_bytes()))
            .send()
            .await
            .expect("PutRecord succeeds");
        sequences.push(out.sequence_number().to_owned());
    }
    sequences
}

/// The checkpoint of the stream's only shard.
async fn checkpoint(fleet: &Fleet) -> Option<ExtendedSequenceNumber> {
    let store = DynamoDbLeaseStore::new(fleet.dynamodb.clone(), &fleet.application);
    let leases = store.list_leases().await.ok()?;
    leases.first().map(|lease| lease.checkpoint.clone())
}

fn at(sequence: &str) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::record(sequence.parse().expect("a sequence number"), 0)
}

static ORDERS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[kcl::processor(checkpoint(every = 3))]
async fn orders(Json(order): Json<Order>) -> Result<(), std::io::Error> {
    ORDERS.lock().expect("orders lock").push(order.id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_records_are_decoded_the_bad_one_skipped_and_every_third_checkpointed() {
    let fleet = Fleet::new(1).await;
    let payloads: Vec<String> = (0..10)
        .map(|i| match i {
            4 => "not json".to_owned(),
            i => format!(r#"{{"id":{i}}}"#),
        })
        .collect();
    let sequences = put(&fleet, &payloads).await;
    let worker = fleet.start_worker_with("w1", test_config(), orders);

    // 10 records, checkpoint every 3 (the skipped one counts): at the 9th record.
    fleet
        .wait_until(
            Duration::from_secs(30),
            "checkpoint at the 9th record",
            || async { checkpoint(&fleet).await == Some(at(&sequences[8])) },
        )
        .await;
    fleet
        .wait_until(Duration::from_secs(10), "all orders handled", || async {
            ORDERS.lock().expect("orders lock").len() == 9
        })
        .await;
    assert_eq!(
        *ORDERS.lock().expect("orders lock"),
        vec![0, 1, 2, 3, 5, 6, 7, 8, 9],
        "the undecodable record is skipped, the others handled once in order"
    );

    worker.stop().await;
    assert_eq!(
        checkpoint(&fleet).await,
        Some(at(&sequences[9])),
        "a graceful shutdown checkpoints the last handled record"
    );
}

static BATCHED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[kcl::processor(checkpoint(seconds = 3600))]
async fn hourly(records: &[Record]) -> Result<(), ProcessorError> {
    let mut batched = BATCHED.lock().map_err(|_| "batched lock poisoned")?;
    batched.extend(records.iter().map(|r| r.sequence_number.to_string()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hourly_batch_processor_checkpoints_only_when_the_worker_stops() {
    let fleet = Fleet::new(1).await;
    let payloads: Vec<String> = (0..5).map(|i| format!("batch-{i}")).collect();
    let sequences = put(&fleet, &payloads).await;
    let worker = fleet.start_worker_with("w1", test_config(), hourly);
    fleet
        .wait_until(Duration::from_secs(30), "all records handled", || async {
            BATCHED.lock().expect("batched lock").len() == 5
        })
        .await;
    assert_eq!(*BATCHED.lock().expect("batched lock"), sequences);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        checkpoint(&fleet).await,
        Some(ExtendedSequenceNumber::TrimHorizon),
        "no checkpoint before the hour is up"
    );

    worker.stop().await;
    assert_eq!(checkpoint(&fleet).await, Some(at(&sequences[4])));
}

static HANDLED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

#[kcl::processor]
async fn flaky(record: &Record) -> Result<(), String> {
    if record.data.as_ref() == b"flaky-2" && !FAILED_ONCE.swap(true, Ordering::SeqCst) {
        return Err("transient failure".to_owned());
    }
    let data = String::from_utf8_lossy(&record.data).into_owned();
    HANDLED.lock().map_err(|e| e.to_string())?.push(data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_record_is_retried_without_repeating_the_records_before_it() {
    let fleet = Fleet::new(1).await;
    let payloads: Vec<String> = (0..5).map(|i| format!("flaky-{i}")).collect();
    let sequences = put(&fleet, &payloads).await;
    let worker = fleet.start_worker_with("w1", test_config(), flaky);
    // Each batch is checkpointed (the default policy) once it is handled.
    fleet
        .wait_until(
            Duration::from_secs(30),
            "checkpoint at the last record",
            || async { checkpoint(&fleet).await == Some(at(&sequences[4])) },
        )
        .await;
    assert!(FAILED_ONCE.load(Ordering::SeqCst));
    assert_eq!(*HANDLED.lock().expect("handled lock"), payloads);
    worker.stop().await;
}

static RESHARDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[kcl::processor(checkpoint(seconds = 3600))]
async fn resharded(record: Record) -> Result<(), ProcessorError> {
    let data = String::from_utf8(record.data.to_vec())?;
    RESHARDED
        .lock()
        .map_err(|_| "resharded lock poisoned")?
        .push(data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_shard_is_checkpointed_so_its_children_start() {
    let fleet = Fleet::new(1).await;
    let before: Vec<String> = (0..3).map(|i| format!("parent-{i}")).collect();
    put(&fleet, &before).await;
    let worker = fleet.start_worker_with("w1", test_config(), resharded);
    fleet
        .wait_until(
            Duration::from_secs(30),
            "parent records handled",
            || async { RESHARDED.lock().expect("resharded lock").len() == 3 },
        )
        .await;

    fleet
        .kinesis
        .update_shard_count()
        .stream_name(&fleet.stream)
        .target_shard_count(2)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    let after: Vec<String> = (0..3).map(|i| format!("child-{i}")).collect();
    put(&fleet, &after).await;
    // Children start only once their parent's lease is checkpointed at SHARD_END, which the
    // hourly policy would never do on its own: `shard_ended` must.
    fleet
        .wait_until(Duration::from_secs(30), "child records handled", || async {
            RESHARDED.lock().expect("resharded lock").len() == 6
        })
        .await;
    worker.stop().await;
}
