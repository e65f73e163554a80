//! Firehose processing: dynamic partitioning by a JSON field (MetadataExtraction with jq),
//! a Lambda-style transform that changes, drops and fails records, and record de-aggregation.

mod firehose_support;

use aws_sdk_firehose::types::builders::ExtendedS3DestinationConfigurationBuilder;
use aws_sdk_firehose::types::{
    DynamicPartitioningConfiguration, ProcessingConfiguration, Processor, ProcessorParameter,
    ProcessorParameterName, ProcessorType,
};
use firehose_support::{
    buffered_s3, create_s3_stream, hints, metrics_page, sample, serve, try_create_s3_stream,
};
use integration_tests::{
    TempDir, broker_with_firehose, files_under, firehose_client, put_record_batch, service_error,
    wait_for_files,
};
use local_broker::LocalBroker;

const FUNCTION: &str = "arn:aws:lambda:us-east-1:000000000000:function:shout";

fn processor(kind: ProcessorType, parameters: &[(ProcessorParameterName, &str)]) -> Processor {
    let mut builder = Processor::builder().r#type(kind);
    for (name, value) in parameters {
        builder = builder.parameters(
            ProcessorParameter::builder()
                .parameter_name(name.clone())
                .parameter_value(*value)
                .build()
                .unwrap(),
        );
    }
    builder.build().unwrap()
}

/// Bucket `lake`, delivering after a second, with `processors` and an error prefix by type.
fn destination(processors: Vec<Processor>) -> ExtendedS3DestinationConfigurationBuilder {
    buffered_s3("lake", 64, 1)
        .error_output_prefix("errors/!{firehose:error-output-type}/")
        .processing_configuration(
            ProcessingConfiguration::builder()
                .enabled(true)
                .set_processors(Some(processors))
                .build(),
        )
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

/// The raw data of the error documents in `body`.
fn raw_data(body: &[u8]) -> Vec<String> {
    text(body)
        .lines()
        .map(|line| {
            let document: serde_json::Value = serde_json::from_str(line).unwrap();
            text(&aws_smithy_types::base64::decode(document["rawData"].as_str().unwrap()).unwrap())
        })
        .collect()
}

/// [`destination`] partitioned by the JSON field `customer` (extracted with jq), under
/// `customer=<value>/`, with `processors` after the extraction.
fn partitioned_by_customer(
    processors: Vec<Processor>,
) -> ExtendedS3DestinationConfigurationBuilder {
    let extraction = processor(
        ProcessorType::MetadataExtraction,
        &[
            (
                ProcessorParameterName::MetadataExtractionQuery,
                "{customer: .customer}",
            ),
            (ProcessorParameterName::JsonParsingEngine, "JQ-1.6"),
        ],
    );
    destination([vec![extraction], processors].concat())
        .prefix("customer=!{partitionKeyFromQuery:customer}/")
        .dynamic_partitioning_configuration(
            DynamicPartitioningConfiguration::builder()
                .enabled(true)
                .build(),
        )
}

#[tokio::test]
async fn dynamic_partitioning_splits_objects_by_a_json_field() {
    let root = TempDir::new("fh-partition");
    let (broker, client) = broker_with_firehose(&root).await;
    let config =
        partitioned_by_customer(vec![processor(ProcessorType::AppendDelimiterToRecord, &[])]);
    create_s3_stream(&client, "orders", config).await;
    put_record_batch(
        &client,
        "orders",
        &[
            br#"{"customer":"a","n":1}"#,
            br#"{"customer":"b","n":2}"#,
            br#"{"customer":"a","n":3}"#,
            b"not json",
        ],
    )
    .await;
    let files = wait_for_files(&root.0, 3).await;
    assert_eq!(files.len(), 3, "{files:?}");
    let find = |prefix: &str| {
        files
            .iter()
            .find(|(k, _)| k.starts_with(prefix))
            .unwrap_or_else(|| panic!("an object under {prefix}: {files:?}"))
    };
    let (key, body) = find("lake/customer=a/");
    assert!(
        key["lake/customer=a/".len()..].starts_with("orders-1-"),
        "{key}"
    );
    assert_eq!(
        text(body),
        "{\"customer\":\"a\",\"n\":1}\n{\"customer\":\"a\",\"n\":3}\n"
    );
    assert_eq!(
        text(&find("lake/customer=b/").1),
        "{\"customer\":\"b\",\"n\":2}\n"
    );
    assert_eq!(
        raw_data(&find("lake/errors/processing-failed/").1),
        ["not json"]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn dynamic_partitioning_needs_partition_keys_in_the_prefix() {
    let root = TempDir::new("fh-partition-rules");
    let (_broker, client) = broker_with_firehose(&root).await;
    let config = destination(vec![processor(
        ProcessorType::MetadataExtraction,
        &[(ProcessorParameterName::MetadataExtractionQuery, "{c: .c}")],
    )])
    .prefix("static/")
    .dynamic_partitioning_configuration(
        DynamicPartitioningConfiguration::builder()
            .enabled(true)
            .build(),
    );
    let err = service_error(try_create_s3_stream(&client, "bad", config).await);
    assert!(err.is_invalid_argument_exception(), "{err:?}");
}

/// A transform function: upper-cases records, drops "drop", fails "fail".
async fn shout(body: axum::body::Bytes) -> String {
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let records = event["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let data =
                text(&aws_smithy_types::base64::decode(r["data"].as_str().unwrap()).unwrap());
            let result = match data.as_str() {
                "drop" => "Dropped",
                "fail" => "ProcessingFailed",
                _ => "Ok",
            };
            serde_json::json!({
                "recordId": r["recordId"],
                "result": result,
                "data": aws_smithy_types::base64::encode(data.to_uppercase()),
            })
        })
        .collect::<Vec<_>>();
    serde_json::json!({ "records": records }).to_string()
}

#[tokio::test]
async fn a_transform_changes_drops_and_fails_records_as_it_answers() {
    let app = axum::Router::new().route("/invoke", axum::routing::post(shout));
    let url = format!("http://{}/invoke", serve(app).await);

    let root = TempDir::new("fh-transform");
    let broker = LocalBroker::builder()
        .s3_root(&root.0)
        .lambda_function(FUNCTION, url)
        .start()
        .await
        .unwrap();
    let client = firehose_client(&broker.endpoint());
    let config = destination(vec![
        processor(ProcessorType::AppendDelimiterToRecord, &[]),
        processor(
            ProcessorType::Lambda,
            &[(ProcessorParameterName::LambdaArn, FUNCTION)],
        ),
    ]);
    create_s3_stream(&client, "shouting", config).await;
    put_record_batch(&client, "shouting", &[b"hello", b"drop", b"fail", b"world"]).await;
    let files = wait_for_files(&root.0, 2).await;
    let data = files.iter().find(|(k, _)| !k.contains("errors/")).unwrap();
    assert_eq!(
        text(&data.1),
        "HELLO\nWORLD\n",
        "the delimiter follows the transform"
    );
    let errors = files
        .iter()
        .find(|(k, _)| k.starts_with("lake/errors/processing-failed/"))
        .unwrap();
    assert_eq!(raw_data(&errors.1), ["fail"]);
    let page = metrics_page(&broker).await;
    assert_eq!(
        sample(&page, "ExecuteProcessing_Success", "shouting"),
        Some(1.0),
        "{page}"
    );

    let unknown = destination(vec![processor(
        ProcessorType::Lambda,
        &[(
            ProcessorParameterName::LambdaArn,
            "arn:aws:lambda:us-east-1:000000000000:function:nope",
        )],
    )]);
    let err = service_error(try_create_s3_stream(&client, "unknown-function", unknown).await);
    assert!(err.is_invalid_argument_exception(), "{err:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn deaggregation_splits_concatenated_json_documents() {
    let root = TempDir::new("fh-deaggregate");
    let (broker, client) = broker_with_firehose(&root).await;
    let config = destination(vec![
        processor(
            ProcessorType::RecordDeAggregation,
            &[(ProcessorParameterName::SubRecordType, "JSON")],
        ),
        processor(ProcessorType::AppendDelimiterToRecord, &[]),
    ]);
    create_s3_stream(&client, "packed", config).await;
    put_record_batch(&client, "packed", &[br#"{"a":1}{"a":2} {"a":3}"#]).await;
    let files = wait_for_files(&root.0, 1).await;
    assert_eq!(text(&files[0].1), "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    broker.shutdown().await;
}

/// A stream partitioned by customer, with a long interval: only size or shutdown delivers.
async fn partitioned_stream(client: &aws_sdk_firehose::Client, name: &str) {
    let config = partitioned_by_customer(Vec::new()).buffering_hints(hints(64, 900));
    create_s3_stream(client, name, config).await;
}

#[tokio::test]
async fn records_beyond_500_active_partitions_go_to_the_error_prefix() {
    let root = TempDir::new("fh-partition-limit");
    let (broker, client) = broker_with_firehose(&root).await;
    partitioned_stream(&client, "wide").await;
    let records: Vec<Vec<u8>> = (0..501)
        .map(|i| format!(r#"{{"customer":"c{i:03}"}}"#).into_bytes())
        .collect();
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    put_record_batch(&client, "wide", &refs[..500]).await;
    put_record_batch(&client, "wide", &refs[500..]).await;
    // Shutdown without a data directory delivers every partition.
    broker.shutdown().await;
    let files = files_under(&root.0);
    let (errors, data): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|(key, _)| key.starts_with("lake/errors/"));
    assert_eq!(data.len(), 500, "one object per active partition");
    for i in 0..500 {
        let prefix = format!("lake/customer=c{i:03}/");
        let (_, body) = data
            .iter()
            .find(|(key, _)| key.starts_with(&prefix))
            .unwrap_or_else(|| panic!("an object under {prefix}"));
        assert_eq!(text(body), format!(r#"{{"customer":"c{i:03}"}}"#));
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (key, body) = errors[0];
    assert!(key.starts_with("lake/errors/partitioning-failed/"), "{key}");
    let document: serde_json::Value = serde_json::from_str(text(body).trim()).unwrap();
    assert_eq!(document["errorCode"], "activePartitionExceeded");
    assert_eq!(raw_data(body), [r#"{"customer":"c500"}"#]);
}

/// A JSON record of about 1,000,000 bytes for `customer`.
fn large_record(customer: &str) -> Vec<u8> {
    let pad = "x".repeat(999_950);
    format!(r#"{{"customer":"{customer}","pad":"{pad}"}}"#).into_bytes()
}

#[tokio::test]
async fn partitions_fill_and_deliver_independently_by_size() {
    let root = TempDir::new("fh-partition-size");
    let (broker, client) = broker_with_firehose(&root).await;
    partitioned_stream(&client, "skewed").await;
    let busy = large_record("busy");
    let quiet = br#"{"customer":"quiet","n":1}"#;
    // 68 records of ~1 MB pass the 64 MiB hint of the busy partition; the quiet one gets a
    // small record now and then.
    for round in 0..17 {
        put_record_batch(&client, "skewed", &[&busy, &busy, &busy, &busy]).await;
        if round % 4 == 0 {
            put_record_batch(&client, "skewed", &[quiet]).await;
        }
    }
    let files = wait_for_files(&root.0, 1).await;
    assert_eq!(files.len(), 1, "only the busy partition is due");
    let (key, body) = &files[0];
    assert!(key.starts_with("lake/customer=busy/"), "{key}");
    assert_eq!(
        body.len(),
        67 * busy.len(),
        "objects stay within the size hint"
    );
    // Now the quiet partition fills up while the busy one keeps its one leftover record.
    let quiet_large = large_record("quiet");
    for _ in 0..17 {
        put_record_batch(
            &client,
            "skewed",
            &[&quiet_large, &quiet_large, &quiet_large, &quiet_large],
        )
        .await;
    }
    let files = wait_for_files(&root.0, 2).await;
    assert_eq!(
        files.len(),
        2,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        files
            .iter()
            .any(|(key, _)| key.starts_with("lake/customer=quiet/"))
    );
    broker.shutdown().await;
    let files = files_under(&root.0);
    let delivered: usize = files
        .iter()
        .map(|(_, body)| text(body).matches("\"customer\"").count())
        .sum();
    assert_eq!(delivered, 68 + 5 + 68, "every record delivered once");
}
