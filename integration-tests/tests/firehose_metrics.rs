//! Firehose delivery shows on the broker's `/metrics`, named as Firehose names its CloudWatch
//! metrics and labelled with the delivery stream — including what the background delivery task
//! records after the put was answered.

use aws_sdk_firehose::types::{BufferingHints, ExtendedS3DestinationConfiguration};
use integration_tests::{
    FIREHOSE_ROLE_ARN, TempDir, broker_with_firehose, http_get, put_record_batch, wait_for_files,
};

/// The value of the sample `name{delivery_stream="stream"}` on a metrics page.
fn sample(page: &str, name: &str, stream: &str) -> Option<f64> {
    let prefix = format!("{name}{{delivery_stream=\"{stream}\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_to_s3_is_counted_per_delivery_stream() {
    let root = TempDir::new("fh-metrics");
    let (broker, client) = broker_with_firehose(&root).await;
    client
        .create_delivery_stream()
        .delivery_stream_name("counted")
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn(FIREHOSE_ROLE_ARN)
                .bucket_arn("arn:aws:s3:::metrics-bucket")
                .buffering_hints(
                    BufferingHints::builder()
                        .size_in_mbs(1)
                        .interval_in_seconds(1)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    put_record_batch(&client, "counted", &[b"one", b"two", b"three"]).await;
    put_record_batch(&client, "counted", &[b"four"]).await;
    let (_, page) = http_get(broker.local_addr(), "/metrics").await;
    // Buffered for up to a second: not delivered yet, and waiting.
    assert_eq!(
        sample(&page, "BufferedRecords", "counted"),
        Some(4.0),
        "{page}"
    );
    wait_for_files(&root.0, 1).await;

    let mut page = String::new();
    for _ in 0..100 {
        page = http_get(broker.local_addr(), "/metrics").await.1;
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
