//! Enhanced fan-out through aws-sdk-kinesis: consumer registration and SubscribeToShard event
//! streams that push records as they are appended and lead to child shards at a shard's end.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEvent,
    SubscribeToShardEventStream,
};
use integration_tests::{broker_with_kinesis, create_stream, kinesis_client};
use local_broker::LocalBroker;
use std::time::{Duration, Instant};

const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/fan";

async fn register(client: &aws_sdk_kinesis::Client, name: &str) -> String {
    client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name(name)
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap()
        .consumer_arn
}

async fn subscribe(
    client: &aws_sdk_kinesis::Client,
    consumer_arn: &str,
    shard: &str,
    position: StartingPosition,
) -> aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput {
    client
        .subscribe_to_shard()
        .consumer_arn(consumer_arn)
        .shard_id(shard)
        .starting_position(position)
        .send()
        .await
        .unwrap()
}

fn position(kind: ShardIteratorType) -> StartingPosition {
    StartingPosition::builder().r#type(kind).build().unwrap()
}

/// The next event that carries records, skipping heartbeats; `None` when the stream ends.
async fn next_event(
    output: &mut aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
) -> Option<SubscribeToShardEvent> {
    match output.event_stream.recv().await.unwrap()? {
        SubscribeToShardEventStream::SubscribeToShardEvent(event) => Some(event),
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test]
async fn consumers_register_list_describe_and_deregister() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "fan", 1).await;
    let arn = register(&client, "app-a").await;
    assert!(arn.starts_with(&format!("{STREAM_ARN}/consumer/app-a:")));
    for i in 0..4 {
        register(&client, &format!("app-{i}")).await;
    }
    let described = client
        .describe_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .unwrap()
        .consumer_description
        .unwrap();
    assert_eq!(described.consumer_status, ConsumerStatus::Active);
    assert_eq!(described.stream_arn, STREAM_ARN);

    let first = client
        .list_stream_consumers()
        .stream_arn(STREAM_ARN)
        .max_results(3)
        .send()
        .await
        .unwrap();
    assert_eq!(first.consumers.unwrap_or_default().len(), 3);
    let rest = client
        .list_stream_consumers()
        .stream_arn(STREAM_ARN)
        .next_token(first.next_token.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.consumers.unwrap_or_default().len(), 2);

    let duplicate = client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("app-a")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(duplicate.is_resource_in_use_exception());
    for i in 4..19 {
        register(&client, &format!("app-{i}")).await;
    }
    let over = client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("one-too-many")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(over.is_limit_exceeded_exception(), "{over:?}");

    let in_use = client
        .delete_stream()
        .stream_name("fan")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(in_use.is_resource_in_use_exception());
    client
        .deregister_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("app-a")
        .send()
        .await
        .unwrap();
    let gone = client
        .describe_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(gone.is_resource_not_found_exception());
    client
        .delete_stream()
        .stream_name("fan")
        .enforce_consumer_deletion(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_pushes_existing_then_new_records_in_order() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "fan", 1).await;
    let consumer = register(&client, "pusher").await;
    for i in 0..3 {
        client
            .put_record()
            .stream_name("fan")
            .partition_key("k")
            .data(Blob::new(format!("old-{i}")))
            .send()
            .await
            .unwrap();
    }
    let mut sub = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::TrimHorizon),
    )
    .await;
    let first = next_event(&mut sub).await.unwrap();
    let data: Vec<Vec<u8>> = first
        .records
        .iter()
        .map(|r| r.data.clone().into_inner())
        .collect();
    assert_eq!(
        data,
        [b"old-0".to_vec(), b"old-1".to_vec(), b"old-2".to_vec()]
    );
    assert_eq!(
        first.continuation_sequence_number,
        first.records[2].sequence_number
    );

    // New records are pushed as they are appended, not on a polling tick.
    let mut latencies = Vec::new();
    for i in 0..20 {
        let sent = Instant::now();
        client
            .put_record()
            .stream_name("fan")
            .partition_key("k")
            .data(Blob::new(format!("new-{i}")))
            .send()
            .await
            .unwrap();
        let event = loop {
            let event = next_event(&mut sub).await.unwrap();
            if !event.records.is_empty() {
                break event;
            }
        };
        latencies.push(sent.elapsed());
        assert_eq!(
            event.records[0].data.clone().into_inner(),
            format!("new-{i}").into_bytes()
        );
    }
    latencies.sort();
    // Informational only: timing is never asserted on shared machines.
    println!(
        "put -> pushed p50 {:?} max {:?}",
        latencies[10], latencies[19]
    );

    // A second subscription for the same consumer and shard right away is refused.
    let err = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_in_use_exception(), "{err:?}");
}

#[tokio::test]
async fn subscription_resumes_after_continuation_and_ends_at_shard_end_with_children() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "fan", 1).await;
    let consumer = register(&client, "resharder").await;
    let put = client
        .put_record()
        .stream_name("fan")
        .partition_key("k")
        .data(Blob::new("a"))
        .send()
        .await
        .unwrap();
    client
        .put_record()
        .stream_name("fan")
        .partition_key("k")
        .data(Blob::new("b"))
        .send()
        .await
        .unwrap();
    client
        .split_shard()
        .stream_name("fan")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((u128::MAX / 2).to_string())
        .send()
        .await
        .unwrap();
    let mut sub = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        StartingPosition::builder()
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(&put.sequence_number)
            .build()
            .unwrap(),
    )
    .await;
    let event = next_event(&mut sub).await.unwrap();
    assert_eq!(event.records.len(), 1);
    assert_eq!(event.records[0].data.clone().into_inner(), b"b".to_vec());
    // AWS sends no continuation at a shard's end; the Rust SDK reads the absent value as "".
    assert!(
        event.continuation_sequence_number.is_empty(),
        "the shard is finished"
    );
    let children: Vec<String> = event
        .child_shards
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.shard_id)
        .collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    assert!(
        next_event(&mut sub).await.is_none(),
        "the stream ends after the last event"
    );
}

#[tokio::test]
async fn subscriptions_end_after_their_lifetime() {
    let broker = LocalBroker::builder()
        .subscription_lifetime(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let client = kinesis_client(&broker.endpoint());
    create_stream(&client, "fan", 1).await;
    let consumer = register(&client, "short").await;
    let mut sub = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::Latest),
    )
    .await;
    let started = Instant::now();
    while next_event(&mut sub).await.is_some() {}
    assert!(started.elapsed() < Duration::from_secs(5));
    broker.shutdown().await;
}

#[tokio::test]
async fn consumers_carry_their_own_tags_and_policies() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "fan", 1).await;
    let consumer = client
        .register_stream_consumer()
        .stream_arn(STREAM_ARN)
        .consumer_name("tagged")
        .tags("team", "payments")
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap()
        .consumer_arn;
    client
        .tag_resource()
        .resource_arn(&consumer)
        .tags("env", "test")
        .send()
        .await
        .unwrap();
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&consumer)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    let keys: Vec<&str> = tags.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["env", "team"]);
    let stream_tags = client
        .list_tags_for_resource()
        .resource_arn(STREAM_ARN)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert!(stream_tags.is_empty(), "consumer tags stay on the consumer");

    let policy = r#"{"Version":"2012-10-17","Statement":[]}"#;
    client
        .put_resource_policy()
        .resource_arn(&consumer)
        .policy(policy)
        .send()
        .await
        .unwrap();
    let got = client
        .get_resource_policy()
        .resource_arn(&consumer)
        .send()
        .await
        .unwrap();
    assert_eq!(got.policy, policy);
}
