//! Firehose delivery shows on the broker's `/metrics`, named as Firehose names its CloudWatch
//! metrics and labelled with the delivery stream — including what the background delivery task
//! records after the put was answered.

mod firehose_support;

use aws_sdk_firehose::types::ExtendedS3DestinationUpdate;
use firehose_support::{
    buffered_s3, create_s3_stream, metrics_page, sample, update_s3_destination,
};
use integration_tests::{TempDir, firehose_client, put_record_batch, wait_for_files};
use local_broker::{LocalBroker, ShiftableClock};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_to_s3_is_counted_per_delivery_stream() {
    let root = TempDir::new("fh-metrics");
    let clock = ShiftableClock::new();
    let broker = LocalBroker::builder()
        .s3_root(&root.0)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = firehose_client(&broker.endpoint());
    create_s3_stream(&client, "counted", buffered_s3("metrics-bucket", 1, 900)).await;
    put_record_batch(&client, "counted", &[b"one", b"two", b"three"]).await;
    put_record_batch(&client, "counted", &[b"four"]).await;
    let page = metrics_page(&broker).await;
    // Buffered for 900 s of the test's clock: not delivered yet, and waiting.
    assert_eq!(
        sample(&page, "BufferedRecords", "counted"),
        Some(4.0),
        "{page}"
    );
    // Make the buffer due; new hints wake the delivery task.
    clock.advance(Duration::from_secs(901));
    let update = ExtendedS3DestinationUpdate::builder().prefix("p/").build();
    update_s3_destination(&client, "counted", "1", update)
        .await
        .unwrap();
    wait_for_files(&root.0, 1).await;

    let mut page = String::new();
    for _ in 0..100 {
        page = metrics_page(&broker).await;
        if sample(&page, "DeliveryToS3_Records", "counted").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = [
        ("IncomingPutRequests", 2.0),
        ("IncomingRecords", 4.0),
        ("IncomingBytes", 15.0),
        ("DeliveryToS3_Records", 4.0),
        ("DeliveryToS3_Bytes", 15.0),
        ("DeliveryToS3_Success", 1.0),
        ("DeliveryToS3_DataFreshness", 0.0),
        ("BufferedRecords", 0.0),
    ];
    for (name, value) in expected {
        assert_eq!(
            sample(&page, name, "counted"),
            Some(value),
            "{name} in\n{page}"
        );
    }
    broker.shutdown().await;
}
