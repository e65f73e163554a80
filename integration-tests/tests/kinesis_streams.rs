//! Stream lifecycle and settings through aws-sdk-kinesis: create/describe/list/delete, pagination,
//! tags, encryption, monitoring, retention (expired records become unreadable), policies.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    EncryptionType, MetricsName, ShardIteratorType, StreamMode, StreamStatus,
};
use integration_tests::{
    broker_with_kinesis, create_on_demand_stream, create_stream, kinesis_client, service_error,
    try_put_record,
};
use local_broker::{LocalBroker, ShiftableClock};
use std::time::Duration;

#[tokio::test]
async fn lifecycle_create_describe_list_delete() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "orders", 3).await;
    create_on_demand_stream(&client, "clicks").await;

    let described = client
        .describe_stream()
        .stream_name("orders")
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    assert_eq!(described.stream_status, StreamStatus::Active);
    assert_eq!(described.shards.len(), 3);
    assert_eq!(described.retention_period_hours, 24);
    assert_eq!(
        described.stream_arn,
        "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
    );

    let summary = client
        .describe_stream_summary()
        .stream_arn(&described.stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap();
    assert_eq!(summary.open_shard_count, 3);
    let clicks = client
        .describe_stream_summary()
        .stream_name("clicks")
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap();
    assert_eq!(
        clicks.stream_mode_details.unwrap().stream_mode,
        StreamMode::OnDemand
    );
    assert_eq!(clicks.open_shard_count, 4);

    // Paged listing visits every stream once.
    for name in ["a1", "a2", "a3"] {
        create_stream(&client, name, 1).await;
    }
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_streams()
            .limit(2)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        names.extend(page.stream_names);
        assert!(!page.stream_summaries.unwrap_or_default().is_empty());
        token = page.next_token;
        if !page.has_more_streams {
            break;
        }
    }
    assert_eq!(names, ["a1", "a2", "a3", "clicks", "orders"]);

    client
        .delete_stream()
        .stream_name("orders")
        .send()
        .await
        .unwrap();
    let err = client
        .describe_stream()
        .stream_name("orders")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception());
}

#[tokio::test]
async fn describe_stream_pages_shards() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "wide", 5).await;
    let first = client
        .describe_stream()
        .stream_name("wide")
        .limit(3)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    assert_eq!(first.shards.len(), 3);
    assert!(first.has_more_shards);
    let rest = client
        .describe_stream()
        .stream_name("wide")
        .exclusive_start_shard_id(&first.shards[2].shard_id)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    assert_eq!(rest.shards.len(), 2);
    assert!(!rest.has_more_shards);
}

#[tokio::test]
async fn streams_become_active_after_the_transition_delay() {
    let broker = LocalBroker::builder()
        .state_transition_delay(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let client = kinesis_client(&broker.endpoint());
    create_stream(&client, "slow", 1).await;
    let status = |client: aws_sdk_kinesis::Client| async move {
        client
            .describe_stream_summary()
            .stream_name("slow")
            .send()
            .await
            .unwrap()
            .stream_description_summary
            .unwrap()
            .stream_status
    };
    assert_eq!(status(client.clone()).await, StreamStatus::Creating);
    let err = service_error(try_put_record(&client, "slow", "k", "x").await);
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(client.clone()).await, StreamStatus::Active);
    broker.shutdown().await;
}

#[tokio::test]
async fn tags_by_stream_and_by_arn() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "tagged", 1).await;
    client
        .add_tags_to_stream()
        .stream_name("tagged")
        .tags("team", "data")
        .tags("env", "test")
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/tagged";
    client
        .tag_resource()
        .resource_arn(arn)
        .tags("cost", "42")
        .send()
        .await
        .unwrap();
    let page = client
        .list_tags_for_stream()
        .stream_name("tagged")
        .limit(2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.tags.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        ["cost", "env"]
    );
    assert!(page.has_more_tags);
    client
        .remove_tags_from_stream()
        .stream_name("tagged")
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    client
        .untag_resource()
        .resource_arn(arn)
        .tag_keys("cost")
        .send()
        .await
        .unwrap();
    let tags = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].key, "team");
}

#[tokio::test]
async fn encryption_monitoring_limits_and_policies() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "secure", 2).await;
    client
        .start_stream_encryption()
        .stream_name("secure")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    let put = client
        .put_record()
        .stream_name("secure")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.encryption_type, Some(EncryptionType::Kms));
    client
        .stop_stream_encryption()
        .stream_name("secure")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();

    let enabled = client
        .enable_enhanced_monitoring()
        .stream_name("secure")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .unwrap();
    assert_eq!(
        enabled.desired_shard_level_metrics.unwrap(),
        [MetricsName::IncomingBytes]
    );
    let disabled = client
        .disable_enhanced_monitoring()
        .stream_name("secure")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .unwrap();
    assert!(disabled.desired_shard_level_metrics.unwrap().is_empty());

    let limits = client.describe_limits().send().await.unwrap();
    assert_eq!(limits.open_shard_count, 2);
    assert!(limits.shard_limit >= 2);

    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/secure";
    let policy = r#"{"Version":"2012-10-17","Statement":[]}"#;
    client
        .put_resource_policy()
        .resource_arn(arn)
        .policy(policy)
        .send()
        .await
        .unwrap();
    let got = client
        .get_resource_policy()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(got.policy, policy);
    client
        .delete_resource_policy()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();

    let settings = client.describe_account_settings().send().await.unwrap();
    assert!(settings.minimum_throughput_billing_commitment.is_some());
    client
        .update_max_record_size()
        .stream_arn(arn)
        .max_record_size_in_kib(2048)
        .send()
        .await
        .unwrap();
    let summary = client
        .describe_stream_summary()
        .stream_name("secure")
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap();
    assert_eq!(summary.max_record_size_in_kib, Some(2048));
}

#[tokio::test]
async fn records_older_than_retention_become_unreadable() {
    let clock = ShiftableClock::new();
    let broker = LocalBroker::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = kinesis_client(&broker.endpoint());
    create_stream(&client, "retained", 1).await;
    client
        .increase_stream_retention_period()
        .stream_name("retained")
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    client
        .put_record()
        .stream_name("retained")
        .partition_key("k")
        .data(Blob::new("old"))
        .send()
        .await
        .unwrap();
    clock.advance(Duration::from_secs(30 * 3600));
    client
        .decrease_stream_retention_period()
        .stream_name("retained")
        .retention_period_hours(24)
        .send()
        .await
        .unwrap();
    client
        .put_record()
        .stream_name("retained")
        .partition_key("k")
        .data(Blob::new("new"))
        .send()
        .await
        .unwrap();
    let it = client
        .get_shard_iterator()
        .stream_name("retained")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = client
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .unwrap()
        .records;
    let data: Vec<Vec<u8>> = records.into_iter().map(|r| r.data.into_inner()).collect();
    assert_eq!(data, [b"new".to_vec()]);

    let err = client
        .decrease_stream_retention_period()
        .stream_name("retained")
        .retention_period_hours(12)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");
    broker.shutdown().await;
}
