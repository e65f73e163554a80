//! Shared set-up for the end-to-end tests: an in-process broker and real SDK clients for it.

use aws_credential_types::Credentials;

#[cfg(feature = "docker")]
pub mod container;

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

/// Creates an on-demand stream (the broker starts it with its default shard count).
pub async fn create_on_demand_stream(client: &aws_sdk_kinesis::Client, name: &str) {
    use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails};
    client
        .create_stream()
        .stream_name(name)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .expect("stream mode details with a mode"),
        )
        .send()
        .await
        .expect("CreateStream succeeds");
}

/// PutRecord of `data` under `partition_key` to `stream`, for the test to check the outcome.
pub async fn try_put_record(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    partition_key: &str,
    data: impl Into<Vec<u8>>,
) -> Result<
    aws_sdk_kinesis::operation::put_record::PutRecordOutput,
    aws_sdk_kinesis::error::SdkError<aws_sdk_kinesis::operation::put_record::PutRecordError>,
> {
    client
        .put_record()
        .stream_name(stream)
        .partition_key(partition_key)
        .data(aws_sdk_kinesis::primitives::Blob::new(data))
        .send()
        .await
}

/// One GetRecords page from `iterator`.
pub async fn get_records(
    client: &aws_sdk_kinesis::Client,
    iterator: &str,
) -> aws_sdk_kinesis::operation::get_records::GetRecordsOutput {
    client
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords succeeds")
}

/// An enhanced fan-out subscription of `consumer_arn` to `shard`, from its oldest record.
pub async fn subscribe_from_trim_horizon(
    client: &aws_sdk_kinesis::Client,
    consumer_arn: &str,
    shard: &str,
) -> aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput {
    use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition};
    client
        .subscribe_to_shard()
        .consumer_arn(consumer_arn)
        .shard_id(shard)
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .expect("a starting position with a type"),
        )
        .send()
        .await
        .expect("SubscribeToShard succeeds")
}

/// The service error (the AWS error code's type) of a request that must fail with one: panics if it
/// succeeded or failed without an answer from the service. Works for every SDK (they share
/// `SdkError`).
pub fn service_error<T: std::fmt::Debug, E: std::fmt::Debug, R: std::fmt::Debug>(
    result: Result<T, aws_sdk_kinesis::error::SdkError<E, R>>,
) -> E {
    match result {
        Err(aws_sdk_kinesis::error::SdkError::ServiceError(context)) => context.into_err(),
        other => panic!("expected a service error, got {other:?}"),
    }
}

/// The ARN of the Kinesis stream `name`, from DescribeStreamSummary.
pub async fn stream_arn(client: &aws_sdk_kinesis::Client, name: &str) -> String {
    client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .expect("DescribeStreamSummary succeeds")
        .stream_description_summary
        .expect("a stream summary")
        .stream_arn
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

/// A plain `GET path` over HTTP/1.1 to a broker (for its `/metrics`, `/health` and status page):
/// the status code and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the broker accepts connections");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("the response is UTF-8");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// An `aws-sdk-firehose` client for a broker endpoint.
pub fn firehose_client(endpoint: &str) -> aws_sdk_firehose::Client {
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials())
        .build();
    aws_sdk_firehose::Client::from_conf(config)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates `local-broker-<label>-<pid>-<nanos>` in the temp dir.
    pub fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "local-broker-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir` as (path relative to `dir` with `/` separators, contents), sorted by
/// path. Files still being written (dot-files) are left out.
pub fn files_under(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Waits (generously, up to 30 s) until at least `count` files exist under `dir`, and returns
/// them all.
pub async fn wait_for_files(dir: &std::path::Path, count: usize) -> Vec<(String, Vec<u8>)> {
    for _ in 0..300 {
        let files = files_under(dir);
        if files.len() >= count {
            return files;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "expected {count} files under {}, found {:?}",
        dir.display(),
        files_under(dir)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    );
}

/// A role ARN for Firehose configurations (the broker does not check roles).
pub const FIREHOSE_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/firehose";

/// Starts a broker whose Firehose S3 destinations write under `root`, with a Firehose client.
pub async fn broker_with_firehose(
    root: &TempDir,
) -> (local_broker::RunningBroker, aws_sdk_firehose::Client) {
    let broker = local_broker::LocalBroker::builder()
        .s3_root(&root.0)
        .start()
        .await
        .expect("the broker binds 127.0.0.1:0");
    let client = firehose_client(&broker.endpoint());
    (broker, client)
}

/// Puts `records` with one PutRecordBatch and checks none failed.
pub async fn put_record_batch(client: &aws_sdk_firehose::Client, stream: &str, records: &[&[u8]]) {
    use aws_sdk_firehose::types::Record;
    let out = client
        .put_record_batch()
        .delivery_stream_name(stream)
        .set_records(Some(
            records
                .iter()
                .map(|r| {
                    Record::builder()
                        .data(aws_sdk_firehose::primitives::Blob::new(r.to_vec()))
                        .build()
                        .expect("a record with data")
                })
                .collect(),
        ))
        .send()
        .await
        .expect("PutRecordBatch succeeds");
    assert_eq!(out.failed_put_count(), 0);
}

/// `AppendDelimiterToRecord` with its default newline.
pub fn newline_delimited() -> aws_sdk_firehose::types::ProcessingConfiguration {
    use aws_sdk_firehose::types::{Processor, ProcessorType};
    aws_sdk_firehose::types::ProcessingConfiguration::builder()
        .enabled(true)
        .processors(
            Processor::builder()
                .r#type(ProcessorType::AppendDelimiterToRecord)
                .build()
                .expect("a processor with a type"),
        )
        .build()
}
