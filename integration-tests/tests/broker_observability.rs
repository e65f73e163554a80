//! What the broker says about itself on its own port: `/metrics`, `/health` and the status page,
//! read over plain HTTP while the SDKs keep using the same endpoint.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use integration_tests::{
    broker_with_kinesis, create_stream, create_table, dynamodb_client, http_get,
    subscribe_from_trim_horizon,
};

/// The value of the Prometheus sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Creates a KCL-shaped lease table (hash key `leaseKey`) with one lease for `shard` owned by
/// `owner`, checkpointed at `checkpoint`.
async fn lease_table(endpoint: &str, table: &str, shard: &str, owner: &str, checkpoint: &str) {
    let dynamodb = dynamodb_client(endpoint);
    create_table(&dynamodb, table, "leaseKey").await;
    dynamodb
        .put_item()
        .table_name(table)
        .item("leaseKey", AttributeValue::S(shard.into()))
        .item("leaseOwner", AttributeValue::S(owner.into()))
        .item("leaseCounter", AttributeValue::N("7".into()))
        .item("checkpoint", AttributeValue::S(checkpoint.into()))
        .item(
            "ownerSwitchesSinceCheckpoint",
            AttributeValue::N("0".into()),
        )
        .send()
        .await
        .expect("PutItem succeeds");
}

#[tokio::test]
async fn status_page_shows_streams_lineage_consumers_and_leases_with_lag() {
    let (broker, kinesis) = broker_with_kinesis().await;
    create_stream(&kinesis, "orders", 1).await;
    let mut sequence_numbers = Vec::new();
    for i in 0..5 {
        let put = kinesis
            .put_record()
            .stream_name("orders")
            .partition_key(format!("k{i}"))
            .data(Blob::new(vec![b'x'; 10]))
            .send()
            .await
            .expect("PutRecord succeeds");
        sequence_numbers.push(put.sequence_number().to_owned());
    }
    kinesis
        .split_shard()
        .stream_name("orders")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .expect("SplitShard succeeds");
    let stream_arn = kinesis
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_owned();
    kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("fan-out-reader")
        .send()
        .await
        .expect("RegisterStreamConsumer succeeds");
    // The worker has processed the second record: three remain behind it.
    lease_table(
        &broker.endpoint(),
        "order-app",
        "shardId-000000000000",
        "worker-a",
        &sequence_numbers[1],
    )
    .await;

    let (status, page) = http_get(broker.local_addr(), "/").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    for expected in [
        "orders",
        "fan-out-reader",
        // Lineage: the split's children name their parent, the parent names its children.
        "shardId-000000000001, shardId-000000000002",
        "<td>shardId-000000000000</td><td>CLOSED</td>",
        "<td>shardId-000000000001</td><td>OPEN</td><td>shardId-000000000000</td>",
        // The lease table, recognized by its leaseKey hash key, with owner and checkpoint.
        "Lease tables (KCL)",
        "order-app",
        "worker-a",
        &sequence_numbers[1],
    ] {
        assert!(
            page.contains(expected),
            "status page lacks {expected:?}:\n{page}"
        );
    }
    assert!(
        page.contains("<td class=\"n\">3</td>"),
        "three records behind the checkpoint:\n{page}"
    );
    let (status, same) = http_get(broker.local_addr(), "/status").await;
    assert_eq!(status, 200);
    assert!(same.contains("order-app"));
    broker.shutdown().await;
}

#[tokio::test]
async fn metrics_count_shard_traffic_latency_errors_and_leases() {
    let (broker, kinesis) = broker_with_kinesis().await;
    create_stream(&kinesis, "clicks", 2).await;
    let put = kinesis
        .put_record()
        .stream_name("clicks")
        .partition_key("a")
        .explicit_hash_key("0")
        .data(Blob::new(vec![b'y'; 100]))
        .send()
        .await
        .unwrap();
    assert_eq!(put.shard_id(), "shardId-000000000000");
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name("clicks")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let read = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap();
    assert_eq!(read.records().len(), 1);
    let missing = kinesis
        .describe_stream_summary()
        .stream_name("nope")
        .send()
        .await;
    assert!(missing.is_err());
    lease_table(
        &broker.endpoint(),
        "click-app",
        "shardId-000000000000",
        "worker-b",
        "TRIM_HORIZON",
    )
    .await;

    let (status, metrics) = http_get(broker.local_addr(), "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let shard0 = r#"{stream="clicks",shard="shardId-000000000000"}"#;
    assert_eq!(
        sample(&metrics, &format!("IncomingRecords{shard0}")),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("IncomingBytes{shard0}")),
        Some(101.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("OutgoingRecords{shard0}")),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("GetRecords_Bytes{shard0}")),
        Some(100.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("GetRecords_IteratorAgeMilliseconds{shard0}")),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"Requests{service="kinesis",operation="PutRecord"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"Latency{service="kinesis",operation="GetRecords",quantile="0.5"}"#),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"Errors{service="kinesis",operation="DescribeStreamSummary",code="ResourceNotFoundException"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("StoredRecords{shard0}")),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"OpenShardCount{stream="clicks"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"LeaseOwner{table="click-app",lease="shardId-000000000000",owner="worker-b"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"LeaseRecordsBehindLatest{table="click-app",lease="shardId-000000000000",stream="clicks"}"#
        ),
        Some(1.0),
        "a TRIM_HORIZON checkpoint owes every record:\n{metrics}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn brokers_in_one_process_keep_their_metrics_apart() {
    let (busy, busy_client) = broker_with_kinesis().await;
    let (idle, _idle_client) = broker_with_kinesis().await;
    create_stream(&busy_client, "only-here", 1).await;
    busy_client
        .put_record()
        .stream_name("only-here")
        .partition_key("k")
        .data(Blob::new(b"z".to_vec()))
        .send()
        .await
        .unwrap();
    let (_, busy_metrics) = http_get(busy.local_addr(), "/metrics").await;
    let (_, idle_metrics) = http_get(idle.local_addr(), "/metrics").await;
    assert!(busy_metrics.contains("IncomingRecords{"), "{busy_metrics}");
    assert!(!idle_metrics.contains("IncomingRecords{"), "{idle_metrics}");
    assert!(!idle_metrics.contains("only-here"), "{idle_metrics}");
    busy.shutdown().await;
    idle.shutdown().await;
}

#[tokio::test]
async fn health_answers_ok_and_aws_calls_on_the_same_port_are_untouched() {
    let (broker, kinesis) = broker_with_kinesis().await;
    let (status, body) = http_get(broker.local_addr(), "/health").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(health["status"], "ok");
    let (status, _) = http_get(broker.local_addr(), "/_health").await;
    assert_eq!(status, 200);
    // The SDK posts to `/` as before.
    create_stream(&kinesis, "still-works", 1).await;
    let listed = kinesis.list_streams().send().await.unwrap();
    assert_eq!(listed.stream_names(), ["still-works"]);
    broker.shutdown().await;
}

#[tokio::test]
async fn fan_out_subscriptions_and_pushed_records_are_counted() {
    use aws_sdk_kinesis::types::SubscribeToShardEventStream;
    let (broker, kinesis) = broker_with_kinesis().await;
    create_stream(&kinesis, "pushed", 1).await;
    let consumer_arn = kinesis
        .register_stream_consumer()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/pushed")
        .consumer_name("pusher")
        .send()
        .await
        .expect("RegisterStreamConsumer succeeds")
        .consumer
        .expect("a consumer")
        .consumer_arn;
    kinesis
        .put_record()
        .stream_name("pushed")
        .partition_key("k")
        .data(Blob::new(vec![b'p'; 42]))
        .send()
        .await
        .unwrap();
    let mut subscription =
        subscribe_from_trim_horizon(&kinesis, &consumer_arn, "shardId-000000000000").await;
    let mut pushed = 0;
    while pushed == 0 {
        match subscription.event_stream.recv().await.unwrap() {
            Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)) => {
                pushed += event.records().len();
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    let (_, metrics) = http_get(broker.local_addr(), "/metrics").await;
    let shard0 = r#"{stream="pushed",shard="shardId-000000000000"}"#;
    assert_eq!(
        sample(&metrics, &format!("SubscribeToShardEvent_Records{shard0}")),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("SubscribeToShardEvent_Bytes{shard0}")),
        Some(42.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"SubscribeToShard_ActiveSubscriptions{stream="pushed",consumer="pusher"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    let (_, page) = http_get(broker.local_addr(), "/").await;
    assert!(
        page.contains("<td>pusher</td><td>ACTIVE</td><td>shardId-000000000000</td>"),
        "{page}"
    );
    drop(subscription);
    broker.shutdown().await;
}
