//! Injected faults reach the SDK as AWS would send them: each service's throttling error, HTTP 500,
//! a connection closed without an answer, a slow answer; an injected fault changes nothing, and a
//! test can switch faults off while the broker runs.

use aws_sdk_dynamodb::operation::get_item::{GetItemError, GetItemOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::retry::RetryConfig;
use integration_tests::{
    create_stream, create_table, dynamodb_client, get_records, kinesis_client, service_error,
    trim_horizon_iterator, try_put_record,
};
use local_broker::{FaultRule, LocalBroker, LocalBrokerBuilder, RunningBroker};
use std::time::{Duration, Instant};

/// Clients that report the first answer instead of retrying it away.
fn clients(broker: &RunningBroker) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    let kinesis = kinesis_client(&broker.endpoint());
    let dynamodb = dynamodb_client(&broker.endpoint());
    (
        aws_sdk_kinesis::Client::from_conf(
            kinesis
                .config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .build(),
        ),
        aws_sdk_dynamodb::Client::from_conf(
            dynamodb
                .config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .build(),
        ),
    )
}

/// Starts the broker `builder` configures, with clients for it that do not retry.
async fn start(
    builder: LocalBrokerBuilder,
) -> (
    RunningBroker,
    aws_sdk_kinesis::Client,
    aws_sdk_dynamodb::Client,
) {
    let broker = builder.start().await.unwrap();
    let (kinesis, dynamodb) = clients(&broker);
    (broker, kinesis, dynamodb)
}

/// Creates what the faults hit: the one-shard stream `faulty` and the lease table `leases`.
async fn create_faulty_stream_and_leases(
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
) {
    create_stream(kinesis, "faulty", 1).await;
    create_table(dynamodb, "leases", "leaseKey").await;
}

/// A checkpoint-like UpdateItem on the `leases` table.
async fn write_checkpoint(
    dynamodb: &aws_sdk_dynamodb::Client,
) -> Result<(), aws_sdk_dynamodb::error::SdkError<UpdateItemError>> {
    dynamodb
        .update_item()
        .table_name("leases")
        .key("leaseKey", AttributeValue::S("shardId-0".into()))
        .update_expression("SET checkpoint = :c")
        .expression_attribute_values(":c", AttributeValue::S("TRIM_HORIZON".into()))
        .send()
        .await
        .map(drop)
}

/// The GetItem of the lease [`write_checkpoint`] writes.
async fn read_lease(
    dynamodb: &aws_sdk_dynamodb::Client,
) -> Result<GetItemOutput, aws_sdk_dynamodb::error::SdkError<GetItemError>> {
    dynamodb
        .get_item()
        .table_name("leases")
        .key("leaseKey", AttributeValue::S("shardId-0".into()))
        .send()
        .await
}

#[tokio::test]
async fn throttles_use_the_error_code_of_each_operation() {
    let (broker, kinesis, dynamodb) = start(LocalBroker::builder()).await;
    create_faulty_stream_and_leases(&kinesis, &dynamodb).await;
    broker.faults().set([
        FaultRule::new("kinesis:*").throttle(1.0),
        FaultRule::new("dynamodb:*").throttle(1.0),
    ]);

    let err = kinesis
        .get_shard_iterator()
        .stream_name("faulty")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    let err = service_error(try_put_record(&kinesis, "faulty", "k", "x").await);
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    let err = kinesis
        .list_shards()
        .stream_name("faulty")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_limit_exceeded_exception(), "{err:?}");

    let err = service_error(read_lease(&dynamodb).await);
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    let err = dynamodb
        .describe_table()
        .table_name("leases")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&err),
        Some("ThrottlingException")
    );
    let err = dynamodb
        .delete_table()
        .table_name("leases")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_limit_exceeded_exception(), "{err:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn internal_failures_are_http_500_in_each_services_spelling() {
    let (broker, kinesis, dynamodb) = start(
        LocalBroker::builder()
            .fault("GetRecords:error=1".parse().unwrap())
            .fault("dynamodb:UpdateItem:error=1".parse().unwrap()),
    )
    .await;
    create_faulty_stream_and_leases(&kinesis, &dynamodb).await;
    let iterator = trim_horizon_iterator(&kinesis, "faulty", "shardId-000000000000").await;

    let err = kinesis
        .get_records()
        .shard_iterator(&iterator)
        .send()
        .await
        .unwrap_err();
    let raw = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(500));
    assert_eq!(
        aws_sdk_kinesis::error::ProvideErrorMetadata::code(&err),
        Some("InternalFailure")
    );
    let err = service_error(write_checkpoint(&dynamodb).await);
    assert!(err.is_internal_server_error(), "{err:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_gives_no_response_and_the_next_one_works() {
    let (broker, kinesis, dynamodb) =
        start(LocalBroker::builder().fault(FaultRule::new("ListStreams").drop_connection(1.0)))
            .await;
    let err = kinesis.list_streams().send().await.unwrap_err();
    assert!(
        matches!(err, aws_sdk_kinesis::error::SdkError::DispatchFailure(_)),
        "no HTTP response at all: {err:?}"
    );
    // Other operations, on a fresh connection, are unaffected.
    create_stream(&kinesis, "after-drop", 1).await;
    broker
        .faults()
        .set([FaultRule::new("dynamodb:*").drop_connection(1.0)]);
    let err = dynamodb.list_tables().send().await.unwrap_err();
    assert!(
        matches!(err, aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)),
        "{err:?}"
    );
    broker.faults().clear();
    assert_eq!(
        kinesis.list_streams().send().await.unwrap().stream_names,
        vec!["after-drop".to_owned()]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_slow_answer_arrives_after_the_latency() {
    let latency = Duration::from_millis(300);
    let (broker, kinesis, _) =
        start(LocalBroker::builder().fault(FaultRule::new("ListStreams").slow(1.0, latency))).await;
    let started = Instant::now();
    kinesis.list_streams().send().await.unwrap();
    assert!(started.elapsed() >= latency);
    broker.shutdown().await;
}

#[tokio::test]
async fn an_injected_fault_changes_nothing_and_faults_switch_off_at_runtime() {
    let (broker, kinesis, dynamodb) = start(
        LocalBroker::builder()
            .fault(
                FaultRule::new("PutRecord")
                    .throttle(0.5)
                    .internal_failure(0.5),
            )
            .fault(FaultRule::new("dynamodb:UpdateItem").drop_connection(1.0))
            .fault_seed(1),
    )
    .await;
    create_faulty_stream_and_leases(&kinesis, &dynamodb).await;
    for _ in 0..10 {
        let put = try_put_record(&kinesis, "faulty", "k", "lost").await;
        assert!(put.is_err());
        assert!(write_checkpoint(&dynamodb).await.is_err());
    }
    broker.faults().clear();
    write_checkpoint(&dynamodb).await.unwrap();
    let iterator = trim_horizon_iterator(&kinesis, "faulty", "shardId-000000000000").await;
    let records = get_records(&kinesis, &iterator).await.records;
    assert!(records.is_empty(), "faulted PutRecords wrote nothing");
    let item = read_lease(&dynamodb).await.unwrap().item.unwrap();
    assert_eq!(item["checkpoint"], AttributeValue::S("TRIM_HORIZON".into()));
    broker.shutdown().await;
}
