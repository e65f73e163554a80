//! Firehose delivery shows on the broker's `/metrics`, named as Firehose names its CloudWatch
//! metrics and labelled with the delivery stream — including what the background delivery task
//! records after the put was answered.

mod firehose_support;

use firehose_support::{buffered_s3, create_s3_stream, metrics_page, sample};
use integration_tests::{TempDir, broker_with_firehose, put_record_batch, wait_for_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_to_s3_is_counted_per_delivery_stream() {
    let root = TempDir::new("fh-metrics");
    let (broker, client) = broker_with_firehose(&root).await;
    create_s3_stream(&client, "counted", buffered_s3("metrics-bucket", 1, 1)).await;
    put_record_batch(&client, "counted", &[b"one", b"two", b"three"]).await;
    put_record_batch(&client, "counted", &[b"four"]).await;
    let page = metrics_page(&broker).await;
    // Buffered for up to a second: not delivered yet, and waiting.
    assert_eq!(
        sample(&page, "BufferedRecords", "counted"),
        Some(4.0),
        "{page}"
    );
    wait_for_files(&root.0, 1).await;

    let mut page = String::new();
    for _ in 0..100 {
        page = metrics_page(&broker).await;
        if sample(&page, "DeliveryToS3_Records", "counted").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
