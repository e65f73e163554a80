//! Shared set-up for the end-to-end tests: an in-process broker and real SDK clients for it.

use aws_credential_types::Credentials;

/// Credentials the broker accepts (it accepts any).
fn credentials() -> Credentials {
    Credentials::new("AKIDTEST", "secret", None, None, "integration-tests")
}

/// An `aws-sdk-kinesis` client for a broker endpoint.
pub fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials())
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// Starts a broker on an ephemeral port and returns it with a Kinesis client for it.
pub async fn broker_with_kinesis() -> (local_broker::RunningBroker, aws_sdk_kinesis::Client) {
    let broker = local_broker::LocalBroker::builder()
        .start()
        .await
        .expect("the broker binds 127.0.0.1:0");
    let client = kinesis_client(&broker.endpoint());
    (broker, client)
}

/// Creates a provisioned stream with `shards` shards (ACTIVE at once: the test broker has no
/// state-transition delay).
pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream succeeds");
}

/// A shard iterator of type `kind`, from `sequence` or `at` where the type needs one.
pub async fn shard_iterator(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    kind: aws_sdk_kinesis::types::ShardIteratorType,
    sequence: Option<&str>,
    at: Option<aws_sdk_kinesis::primitives::DateTime>,
) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .set_starting_sequence_number(sequence.map(str::to_owned))
        .set_timestamp(at)
        .send()
        .await
        .expect("GetShardIterator succeeds")
        .shard_iterator
        .expect("GetShardIterator returns an iterator")
}

/// An `aws-sdk-dynamodb` client for a broker endpoint.
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An iterator at the oldest record of a shard.
pub async fn trim_horizon_iterator(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator succeeds")
        .shard_iterator
        .expect("an iterator")
}

/// Creates an on-demand table keyed by the string attribute `key`, like a KCL lease table.
pub async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    dynamodb
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("complete key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable succeeds");
}
