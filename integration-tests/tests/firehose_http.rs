//! Firehose to an HTTP endpoint: the endpoint receives the documented request (headers, base64
//! records, access key, common attributes, gzip), and a failing endpoint is retried with the same
//! request id, then the batch is backed up to S3 under `http-endpoint-failed` — unless the broker
//! shuts down meanwhile with a data directory, which keeps the batch for after the restart. A 413
//! answer is final: no retry, no backup. Records waiting in dynamic partitions when the
//! destination changes to an HTTP endpoint are delivered there.

mod firehose_support;

use aws_sdk_firehose::types::{
    ContentEncoding, DynamicPartitioningConfiguration, FailureDescription,
    HttpEndpointBufferingHints, HttpEndpointCommonAttribute, HttpEndpointConfiguration,
    HttpEndpointDestinationConfiguration, HttpEndpointDestinationUpdate,
    HttpEndpointRequestConfiguration, HttpEndpointRetryOptions, HttpEndpointS3BackupMode,
    ProcessingConfiguration, Processor, ProcessorParameter, ProcessorParameterName, ProcessorType,
    S3DestinationConfiguration, S3DestinationUpdate,
};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use firehose_support::{
    buffered_s3, create_s3_stream, description, durable_broker, hints, metrics_page, sample, serve,
};
use integration_tests::{
    FIREHOSE_ROLE_ARN, TempDir, broker_with_firehose, files_under, firehose_client,
    put_record_batch, wait_for_files,
};
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the endpoint received: its headers and its (decompressed) JSON body.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: serde_json::Value,
}

#[derive(Clone)]
struct Endpoint {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<StatusCode>>,
}

async fn receive(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let plain = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let body: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let request_id = body["requestId"].as_str().unwrap_or_default().to_owned();
    let status = *endpoint.status.lock().unwrap();
    endpoint
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let answer = serde_json::json!({
        "requestId": request_id,
        "timestamp": 0,
        "errorMessage": if status.is_success() { "" } else { "not today" },
    });
    (status, answer.to_string())
}

/// Serves the Firehose HTTP endpoint contract on 127.0.0.1, answering every request with
/// `status`; returns its URL and what it received.
async fn spawn_endpoint(status: StatusCode) -> (String, Arc<Mutex<Vec<Received>>>) {
    let (url, received, _) = spawn_switchable_endpoint(status).await;
    (url, received)
}

/// Like [`spawn_endpoint`], with the status it answers in a cell the test may change.
async fn spawn_switchable_endpoint(
    status: StatusCode,
) -> (String, Arc<Mutex<Vec<Received>>>, Arc<Mutex<StatusCode>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(Mutex::new(status));
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(receive))
        .with_state(Endpoint {
            received: Arc::clone(&received),
            status: Arc::clone(&status),
        });
    let url = format!("http://{}/ingest", serve(app).await);
    (url, received, status)
}

/// Buffering hints that deliver within a second (or at 1 MiB).
fn every_second() -> HttpEndpointBufferingHints {
    HttpEndpointBufferingHints::builder()
        .size_in_mbs(1)
        .interval_in_seconds(1)
        .build()
}

fn destination(
    url: &str,
    retry_seconds: i32,
) -> aws_sdk_firehose::types::builders::HttpEndpointDestinationConfigurationBuilder {
    HttpEndpointDestinationConfiguration::builder()
        .endpoint_configuration(
            HttpEndpointConfiguration::builder()
                .url(url)
                .name("test endpoint")
                .access_key("s3cr3t")
                .build()
                .unwrap(),
        )
        .buffering_hints(every_second())
        .retry_options(
            HttpEndpointRetryOptions::builder()
                .duration_in_seconds(retry_seconds)
                .build(),
        )
        .role_arn(FIREHOSE_ROLE_ARN)
        .s3_configuration(
            S3DestinationConfiguration::builder()
                .role_arn(FIREHOSE_ROLE_ARN)
                .bucket_arn("arn:aws:s3:::backup")
                .error_output_prefix("failed/!{firehose:error-output-type}/")
                .buffering_hints(hints(1, 1))
                .build()
                .unwrap(),
        )
}

/// Creates the DirectPut stream `name` delivering to the HTTP endpoint `destination`.
async fn create(
    client: &aws_sdk_firehose::Client,
    name: &str,
    destination: aws_sdk_firehose::types::builders::HttpEndpointDestinationConfigurationBuilder,
) {
    client
        .create_delivery_stream()
        .delivery_stream_name(name)
        .http_endpoint_destination_configuration(destination.build())
        .send()
        .await
        .expect("CreateDeliveryStream succeeds");
}

/// Waits (up to 5 s) for the FailureDescription DescribeDeliveryStream gives `name`.
async fn wait_for_failure(
    client: &aws_sdk_firehose::Client,
    name: &str,
) -> Option<FailureDescription> {
    for _ in 0..100 {
        let failure = description(client, name).await.failure_description;
        if failure.is_some() {
            return failure;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn wait_for_requests(received: &Mutex<Vec<Received>>, count: usize) -> Vec<Received> {
    for _ in 0..300 {
        let got = received.lock().unwrap().clone();
        if got.len() >= count {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the endpoint did not receive {count} requests");
}

fn records(body: &serde_json::Value) -> Vec<Vec<u8>> {
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| aws_smithy_types::base64::decode(r["data"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn the_endpoint_receives_the_documented_request() {
    let root = TempDir::new("fh-http");
    let (broker, client) = broker_with_firehose(&root).await;
    let (url, received) = spawn_endpoint(StatusCode::OK).await;
    let config = destination(&url, 60)
        .request_configuration(
            HttpEndpointRequestConfiguration::builder()
                .content_encoding(ContentEncoding::Gzip)
                .common_attributes(
                    HttpEndpointCommonAttribute::builder()
                        .attribute_name("team")
                        .attribute_value("data")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .s3_backup_mode(HttpEndpointS3BackupMode::AllData);
    create(&client, "to-http", config).await;
    put_record_batch(&client, "to-http", &[b"first", b"second"]).await;
    let requests = wait_for_requests(&received, 1).await;
    let request = &requests[0];
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    assert_eq!(header("x-amz-firehose-protocol-version"), "1.0");
    assert_eq!(header("x-amz-firehose-access-key"), "s3cr3t");
    assert_eq!(
        header("x-amz-firehose-request-id"),
        request.body["requestId"].as_str().unwrap()
    );
    assert_eq!(
        header("x-amz-firehose-source-arn"),
        "arn:aws:firehose:us-east-1:000000000000:deliverystream/to-http"
    );
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("content-encoding"), "gzip");
    let attributes: serde_json::Value =
        serde_json::from_str(header("x-amz-firehose-common-attributes")).unwrap();
    assert_eq!(
        attributes,
        serde_json::json!({"commonAttributes": {"team": "data"}})
    );
    assert!(request.body["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        records(&request.body),
        [b"first".to_vec(), b"second".to_vec()]
    );

    // AllData: delivered records are also kept in S3.
    let files = wait_for_files(&root.0, 1).await;
    assert!(files[0].0.starts_with("backup/"), "{files:?}");
    assert_eq!(files[0].1, b"firstsecond");

    // The access key is never described back.
    let described = description(&client, "to-http").await;
    let http = described.destinations()[0]
        .http_endpoint_destination_description()
        .unwrap();
    assert_eq!(
        http.endpoint_configuration().unwrap().url(),
        Some(url.as_str())
    );
    assert_eq!(
        http.endpoint_configuration().unwrap().name(),
        Some("test endpoint")
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_then_backed_up_to_s3() {
    let root = TempDir::new("fh-http-fail");
    let (broker, client) = broker_with_firehose(&root).await;
    let (url, received) = spawn_endpoint(StatusCode::SERVICE_UNAVAILABLE).await;
    create(&client, "flaky", destination(&url, 2)).await;
    put_record_batch(&client, "flaky", &[b"lost?", b"never"]).await;
    let files = wait_for_files(&root.0, 1).await;
    let requests = received.lock().unwrap().clone();
    assert!(requests.len() >= 2, "retried: {} requests", requests.len());
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| r.body["requestId"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one request id across retries: {ids:?}"
    );

    let (key, body) = &files[0];
    assert!(
        key.starts_with("backup/failed/http-endpoint-failed/"),
        "{key}"
    );
    let documents: Vec<serde_json::Value> = std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(documents.len(), 2);
    assert_eq!(
        documents[0]["errorCode"],
        "HttpEndpoint.DestinationException"
    );
    assert!(documents[0]["attemptsMade"].as_u64().unwrap() >= 2);
    let raw: Vec<Vec<u8>> = documents
        .iter()
        .map(|d| aws_smithy_types::base64::decode(d["rawData"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(raw, [b"lost?".to_vec(), b"never".to_vec()]);

    // The failure shows in DescribeDeliveryStream and on /metrics.
    let failure = wait_for_failure(&client, "flaky")
        .await
        .expect("a FailureDescription while the endpoint fails");
    assert_eq!(failure.r#type().as_str(), "UNKNOWN_ERROR");
    assert!(failure.details().contains(&url), "{}", failure.details());
    let page = metrics_page(&broker).await;
    for (name, value) in [
        ("DeliveryToHttpEndpoint_Success", 0.0),
        ("BackupToS3_Records", 2.0),
        ("BackupToS3_Success", 1.0),
    ] {
        assert_eq!(
            sample(&page, name, "flaky"),
            Some(value),
            "{name} in\n{page}"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn a_batch_the_endpoint_answers_413_is_neither_retried_nor_backed_up() {
    let root = TempDir::new("fh-http-413");
    let (broker, client) = broker_with_firehose(&root).await;
    let (url, received, status) = spawn_switchable_endpoint(StatusCode::PAYLOAD_TOO_LARGE).await;
    // A retry window long enough that a retried batch would be sent again within the test.
    create(&client, "too-big", destination(&url, 60)).await;
    put_record_batch(&client, "too-big", &[b"huge", b"batch"]).await;
    wait_for_requests(&received, 1).await;
    let failure = wait_for_failure(&client, "too-big")
        .await
        .expect("a FailureDescription for the refused batch");
    assert!(failure.details().contains("413"), "{}", failure.details());

    // The next batch is delivered, and the refused one is never sent again.
    *status.lock().unwrap() = StatusCode::OK;
    put_record_batch(&client, "too-big", &[b"next"]).await;
    let requests = wait_for_requests(&received, 2).await;
    assert_eq!(
        records(&requests[0].body),
        [b"huge".to_vec(), b"batch".to_vec()]
    );
    assert_eq!(records(&requests[1].body), [b"next".to_vec()]);
    broker.shutdown().await;
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "the 413 batch was not retried"
    );
    assert!(
        files_under(&root.0).is_empty(),
        "nothing under http-endpoint-failed: {:?}",
        files_under(&root.0)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_data_dir_a_batch_failing_at_shutdown_is_delivered_after_the_restart() {
    let (data, root) = (TempDir::new("fh-http-dur"), TempDir::new("fh-http-dur-s3"));
    let start = || durable_broker(&data, &root).start();
    let broker = start().await.unwrap();
    let client = firehose_client(&broker.endpoint());
    let (url, received, status) = spawn_switchable_endpoint(StatusCode::SERVICE_UNAVAILABLE).await;
    create(&client, "patient", destination(&url, 600)).await;
    put_record_batch(&client, "patient", &[b"kept", b"for later"]).await;
    wait_for_requests(&received, 1).await;
    broker.shutdown().await;
    assert!(
        files_under(&root.0).is_empty(),
        "nothing backed up as failed at shutdown"
    );

    *status.lock().unwrap() = StatusCode::OK;
    received.lock().unwrap().clear();
    let broker = start().await.unwrap();
    let requests = wait_for_requests(&received, 1).await;
    assert_eq!(
        records(&requests[0].body),
        [b"kept".to_vec(), b"for later".to_vec()]
    );
    assert_eq!(
        requests[0].headers["x-amz-firehose-access-key"], "s3cr3t",
        "the access key survived the restart"
    );
    broker.shutdown().await;
    assert!(
        files_under(&root.0).is_empty(),
        "delivered, so nothing backed up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_partitioned_before_an_update_to_an_http_endpoint_are_delivered_there() {
    let root = TempDir::new("fh-http-from-partitions");
    let (broker, client) = broker_with_firehose(&root).await;
    let (url, received) = spawn_endpoint(StatusCode::OK).await;
    let parameter = |name, value: &str| {
        ProcessorParameter::builder()
            .parameter_name(name)
            .parameter_value(value)
            .build()
            .unwrap()
    };
    let extraction = Processor::builder()
        .r#type(ProcessorType::MetadataExtraction)
        .parameters(parameter(
            ProcessorParameterName::MetadataExtractionQuery,
            "{customer: .customer}",
        ))
        .parameters(parameter(
            ProcessorParameterName::JsonParsingEngine,
            "JQ-1.6",
        ))
        .build()
        .unwrap();
    let partitioned = buffered_s3("partitioned", 64, 900)
        .prefix("customer=!{partitionKeyFromQuery:customer}/")
        .error_output_prefix("failed/!{firehose:error-output-type}/")
        .processing_configuration(
            ProcessingConfiguration::builder()
                .enabled(true)
                .processors(extraction)
                .build(),
        )
        .dynamic_partitioning_configuration(
            DynamicPartitioningConfiguration::builder()
                .enabled(true)
                .build(),
        );
    create_s3_stream(&client, "moving", partitioned).await;
    put_record_batch(
        &client,
        "moving",
        &[br#"{"customer":"a"}"#, br#"{"customer":"b"}"#],
    )
    .await;
    let mut page = String::new();
    for _ in 0..300 {
        page = metrics_page(&broker).await;
        if sample(&page, "PartitionCount", "moving") == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&page, "PartitionCount", "moving"),
        Some(2.0),
        "{page}"
    );

    let update = HttpEndpointDestinationUpdate::builder()
        .endpoint_configuration(
            HttpEndpointConfiguration::builder()
                .url(url)
                .build()
                .unwrap(),
        )
        .buffering_hints(every_second())
        .role_arn(FIREHOSE_ROLE_ARN)
        .s3_update(
            S3DestinationUpdate::builder()
                .role_arn(FIREHOSE_ROLE_ARN)
                .bucket_arn("arn:aws:s3:::backup")
                .build(),
        )
        .build();
    client
        .update_destination()
        .delivery_stream_name("moving")
        .current_delivery_stream_version_id("1")
        .destination_id("destinationId-000000000001")
        .http_endpoint_destination_update(update)
        .send()
        .await
        .expect("UpdateDestination succeeds");
    let requests = wait_for_requests(&received, 1).await;
    let mut delivered: Vec<Vec<u8>> = requests.iter().flat_map(|r| records(&r.body)).collect();
    delivered.sort();
    assert_eq!(
        delivered,
        [
            br#"{"customer":"a"}"#.to_vec(),
            br#"{"customer":"b"}"#.to_vec()
        ],
        "the records waiting in partitions go to the new destination"
    );
}
