//! With limits enforced, a shard pushes back like AWS: PutRecords reports throttled entries one by
//! one (HTTP 200), a producer that retries them gets everything in, and fast readers are throttled.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use integration_tests::{create_stream, kinesis_client};
use local_broker::LocalBroker;
use std::time::Duration;

#[tokio::test]
async fn a_producer_over_the_shard_limit_is_throttled_per_entry_and_retries_land_everything() {
    let broker = LocalBroker::builder()
        .enforce_limits(true)
        .start()
        .await
        .unwrap();
    let client = kinesis_client(&broker.endpoint());
    create_stream(&client, "limited", 1).await;
    // 2 MB in one go: about twice what a shard takes per second.
    let mut pending: Vec<(usize, PutRecordsRequestEntry)> = (0..500)
        .map(|i| {
            let entry = PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(Blob::new(vec![(i % 251) as u8; 4096]))
                .build()
                .unwrap();
            (i, entry)
        })
        .collect();
    let mut throttled_once = false;
    let mut landed = 0;
    for _attempt in 0..50 {
        if pending.is_empty() {
            break;
        }
        let out = client
            .put_records()
            .stream_name("limited")
            .set_records(Some(pending.iter().map(|(_, e)| e.clone()).collect()))
            .send()
            .await
            .unwrap();
        let mut retry = Vec::new();
        for ((i, entry), result) in pending.into_iter().zip(out.records) {
            match result.error_code.as_deref() {
                None => landed += 1,
                Some(code) => {
                    assert_eq!(code, "ProvisionedThroughputExceededException");
                    assert!(result.sequence_number.is_none());
                    throttled_once = true;
                    retry.push((i, entry));
                }
            }
        }
        assert_eq!(out.failed_record_count.unwrap_or(0) as usize, retry.len());
        pending = retry;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(throttled_once, "2 MiB at once exceeds a shard's 1 MiB/s");
    assert_eq!(landed, 500, "retried entries all land");

    // Read it all back; the reader retries when throttled, as the KCL does.
    let mut iterator = client
        .get_shard_iterator()
        .stream_name("limited")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator;
    let mut read = 0;
    while let Some(it) = iterator.take() {
        let page = client
            .get_records()
            .shard_iterator(&it)
            .send()
            .await
            .unwrap();
        read += page.records.len();
        if page.records.is_empty() {
            break;
        }
        iterator = page.next_shard_iterator;
    }
    assert_eq!(read, 500);
    broker.shutdown().await;
}

#[tokio::test]
async fn more_than_five_reads_a_second_are_throttled() {
    let broker = LocalBroker::builder()
        .enforce_limits(true)
        .start()
        .await
        .unwrap();
    // One attempt per call: the SDK would otherwise retry throttling errors by itself.
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .endpoint_url(broker.endpoint())
            .credentials_provider(aws_credential_types::Credentials::new(
                "a", "b", None, None, "t",
            ))
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .build(),
    );
    create_stream(&client, "reads", 1).await;
    let it = client
        .get_shard_iterator()
        .stream_name("reads")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut throttled = 0;
    for _ in 0..8 {
        if let Err(err) = client.get_records().shard_iterator(&it).send().await {
            let err = err.into_service_error();
            assert!(
                err.is_provisioned_throughput_exceeded_exception(),
                "{err:?}"
            );
            throttled += 1;
        }
    }
    assert!(
        throttled >= 1,
        "eight reads in a burst exceed five per second"
    );
    broker.shutdown().await;
}
