//! Shared set-up for the `firehose_*` scenarios: S3 destinations and their buffering hints,
//! creating, describing and updating delivery streams, a broker on a data directory to restart,
//! what was delivered under the S3 root, `/metrics` samples, and a local HTTP server for the
//! endpoints and functions Firehose calls. Broker-wide helpers stay in `integration_tests`.
#![allow(dead_code)] // each scenario uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_firehose::error::SdkError;
use aws_sdk_firehose::operation::create_delivery_stream::builders::CreateDeliveryStreamFluentBuilder;
use aws_sdk_firehose::operation::create_delivery_stream::{
    CreateDeliveryStreamError, CreateDeliveryStreamOutput,
};
use aws_sdk_firehose::operation::delete_delivery_stream::{
    DeleteDeliveryStreamError, DeleteDeliveryStreamOutput,
};
use aws_sdk_firehose::operation::put_record::{PutRecordError, PutRecordOutput};
use aws_sdk_firehose::operation::update_destination::{
    UpdateDestinationError, UpdateDestinationOutput,
};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::builders::ExtendedS3DestinationConfigurationBuilder;
use aws_sdk_firehose::types::{
    BufferingHints, DeliveryStreamDescription, DeliveryStreamEncryptionConfigurationInput,
    DeliveryStreamStatus, DeliveryStreamType, ExtendedS3DestinationUpdate, KeyType,
    KinesisStreamSourceConfiguration, Record,
};
use integration_tests::{FIREHOSE_ROLE_ARN, TempDir, files_under, http_get, try_put_record};
use local_broker::{LocalBroker, LocalBrokerBuilder, RunningBroker};

/// Buffering hints of `size_in_mbs` MiB or `interval_in_seconds`, whichever comes first.
pub fn hints(size_in_mbs: i32, interval_in_seconds: i32) -> BufferingHints {
    BufferingHints::builder()
        .size_in_mbs(size_in_mbs)
        .interval_in_seconds(interval_in_seconds)
        .build()
}

/// An ExtendedS3 destination into `bucket`, with Firehose's default buffering.
pub fn s3_destination(bucket: &str) -> ExtendedS3DestinationConfigurationBuilder {
    aws_sdk_firehose::types::ExtendedS3DestinationConfiguration::builder()
        .role_arn(FIREHOSE_ROLE_ARN)
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
}

/// An ExtendedS3 destination into `bucket`, delivering every `size_in_mbs` MiB or
/// `interval_in_seconds`.
pub fn buffered_s3(
    bucket: &str,
    size_in_mbs: i32,
    interval_in_seconds: i32,
) -> ExtendedS3DestinationConfigurationBuilder {
    s3_destination(bucket).buffering_hints(hints(size_in_mbs, interval_in_seconds))
}

/// CreateDeliveryStream for a DirectPut stream `name` delivering to `destination`.
pub async fn try_create_s3_stream(
    client: &aws_sdk_firehose::Client,
    name: &str,
    destination: ExtendedS3DestinationConfigurationBuilder,
) -> Result<CreateDeliveryStreamOutput, SdkError<CreateDeliveryStreamError>> {
    create_request(client, name, destination).send().await
}

/// A CreateDeliveryStream request for `name` delivering to `destination`.
fn create_request(
    client: &aws_sdk_firehose::Client,
    name: &str,
    destination: ExtendedS3DestinationConfigurationBuilder,
) -> CreateDeliveryStreamFluentBuilder {
    client
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(
            destination
                .build()
                .expect("a destination with role and bucket"),
        )
}

/// Creates a DirectPut stream `name` delivering to `destination`, and returns its ARN.
pub async fn create_s3_stream(
    client: &aws_sdk_firehose::Client,
    name: &str,
    destination: ExtendedS3DestinationConfigurationBuilder,
) -> String {
    try_create_s3_stream(client, name, destination)
        .await
        .expect("CreateDeliveryStream succeeds")
        .delivery_stream_arn
        .expect("the stream's ARN")
}

/// Creates a stream `name` reading the Kinesis stream `kinesis_stream_arn` into `destination`.
pub async fn create_kinesis_sourced_stream(
    client: &aws_sdk_firehose::Client,
    name: &str,
    kinesis_stream_arn: &str,
    destination: ExtendedS3DestinationConfigurationBuilder,
) -> Result<CreateDeliveryStreamOutput, SdkError<CreateDeliveryStreamError>> {
    create_request(client, name, destination)
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(
            KinesisStreamSourceConfiguration::builder()
                .kinesis_stream_arn(kinesis_stream_arn)
                .role_arn(FIREHOSE_ROLE_ARN)
                .build()
                .expect("a source with stream and role"),
        )
        .send()
        .await
}

/// UpdateDestination of the first (only) destination of `name`, from `version`.
pub async fn update_s3_destination(
    client: &aws_sdk_firehose::Client,
    name: &str,
    version: &str,
    update: ExtendedS3DestinationUpdate,
) -> Result<UpdateDestinationOutput, SdkError<UpdateDestinationError>> {
    client
        .update_destination()
        .delivery_stream_name(name)
        .current_delivery_stream_version_id(version)
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(update)
        .send()
        .await
}

/// Starts server-side encryption of `name` with an AWS-owned key.
pub async fn start_encryption(client: &aws_sdk_firehose::Client, name: &str) {
    client
        .start_delivery_stream_encryption()
        .delivery_stream_name(name)
        .delivery_stream_encryption_configuration_input(
            DeliveryStreamEncryptionConfigurationInput::builder()
                .key_type(KeyType::AwsOwnedCmk)
                .build()
                .expect("an encryption input with a key type"),
        )
        .send()
        .await
        .expect("StartDeliveryStreamEncryption succeeds");
}

/// What DescribeDeliveryStream says about `name`, which must exist.
pub async fn description(
    client: &aws_sdk_firehose::Client,
    name: &str,
) -> DeliveryStreamDescription {
    client
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .expect("DescribeDeliveryStream succeeds")
        .delivery_stream_description
        .expect("a description")
}

/// The status of `name`, or `None` once it is gone (ResourceNotFoundException).
pub async fn status(client: &aws_sdk_firehose::Client, name: &str) -> Option<DeliveryStreamStatus> {
    match client
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
    {
        Ok(out) => Some(
            out.delivery_stream_description
                .expect("a description")
                .delivery_stream_status,
        ),
        Err(err) => {
            let err = err.into_service_error();
            assert!(err.is_resource_not_found_exception(), "{err:?}");
            None
        }
    }
}

/// A Firehose record holding `data`.
pub fn record(data: impl Into<Vec<u8>>) -> Record {
    Record::builder()
        .data(Blob::new(data.into()))
        .build()
        .expect("a record with data")
}

/// PutRecord of one record holding `data` to the delivery stream `stream`, for the test to check
/// the outcome.
pub async fn try_put(
    client: &aws_sdk_firehose::Client,
    stream: &str,
    data: impl Into<Vec<u8>>,
) -> Result<PutRecordOutput, SdkError<PutRecordError>> {
    client
        .put_record()
        .delivery_stream_name(stream)
        .record(record(data))
        .send()
        .await
}

/// DeleteDeliveryStream of `name`, for the test to check the outcome.
pub async fn try_delete(
    client: &aws_sdk_firehose::Client,
    name: &str,
) -> Result<DeleteDeliveryStreamOutput, SdkError<DeleteDeliveryStreamError>> {
    client
        .delete_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
}

/// Puts one record with `partition_key` to the Kinesis stream `stream`.
pub async fn put_kinesis_record(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    partition_key: &str,
    data: impl Into<Vec<u8>>,
) {
    try_put_record(kinesis, stream, partition_key, data)
        .await
        .expect("PutRecord succeeds");
}

/// A broker keeping its state under `data` and delivering S3 objects under `root`; start it
/// again on the same directories to restart it.
pub fn durable_broker(data: &TempDir, root: &TempDir) -> LocalBrokerBuilder {
    LocalBroker::builder().data_dir(&data.0).s3_root(&root.0)
}

/// Every non-empty line of every object under `root`, objects in key order (which starts with
/// the time of their oldest record).
pub fn delivered_lines(root: &TempDir) -> Vec<Vec<u8>> {
    files_under(&root.0)
        .into_iter()
        .flat_map(|(_, body)| {
            body.split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits (generously, up to 30 s) until at least `count` lines were delivered under `root`, and
/// returns them all (fewer if they never came, for the caller's assertion to show).
pub async fn wait_for_lines(root: &TempDir, count: usize) -> Vec<Vec<u8>> {
    for _ in 0..300 {
        let lines = delivered_lines(root);
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    delivered_lines(root)
}

/// `lines` as text, sorted: for records whose delivery order does not matter.
pub fn sorted_text(lines: &[Vec<u8>]) -> Vec<String> {
    let mut text: Vec<String> = lines
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    text.sort();
    text
}

/// The broker's `/metrics` page.
pub async fn metrics_page(broker: &RunningBroker) -> String {
    http_get(broker.local_addr(), "/metrics").await.1
}

/// The value of the sample `name{delivery_stream="stream"}` on a metrics page.
pub fn sample(page: &str, name: &str, stream: &str) -> Option<f64> {
    let prefix = format!("{name}{{delivery_stream=\"{stream}\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
}

/// Waits (generously, up to 30 s) until `/metrics` shows `count` records buffered in `stream`,
/// and fails (showing the page) if it never does.
pub async fn assert_buffered(broker: &RunningBroker, stream: &str, count: usize) {
    let mut page = String::new();
    for _ in 0..300 {
        page = metrics_page(broker).await;
        if sample(&page, "BufferedRecords", stream) == Some(count as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&page, "BufferedRecords", stream),
        Some(count as f64),
        "{page}"
    );
}

/// Serves `app` on 127.0.0.1 (an HTTP endpoint or a function Firehose calls) until the test
/// ends, and returns its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("127.0.0.1:0 binds");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the server runs") });
    addr
}
