//! Bad input gets the AWS error a client switches on, with HTTP 400 — never a panic or a 500.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use integration_tests::{broker_with_kinesis, create_stream};

#[tokio::test]
async fn missing_and_duplicate_streams() {
    let (_broker, client) = broker_with_kinesis().await;
    let err = client
        .describe_stream()
        .stream_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception());
    create_stream(&client, "twice", 1).await;
    let err = client
        .create_stream()
        .stream_name("twice")
        .shard_count(1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_in_use_exception());
}

#[tokio::test]
async fn constraint_violations_are_validation_exceptions() {
    let (_broker, client) = broker_with_kinesis().await;
    let err = client
        .create_stream()
        .stream_name("bad name!")
        .shard_count(1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(err.message().unwrap().contains("streamName"));

    create_stream(&client, "s", 1).await;
    let err = client
        .put_record()
        .stream_name("s")
        .partition_key("")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));

    let too_many: Vec<PutRecordsRequestEntry> = (0..501)
        .map(|_| {
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new("x"))
                .build()
                .unwrap()
        })
        .collect();
    let err = client
        .put_records()
        .stream_name("s")
        .set_records(Some(too_many))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
}

#[tokio::test]
async fn oversized_records_and_bad_hash_keys_are_rejected_without_writing() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "s", 1).await;
    let err = client
        .put_record()
        .stream_name("s")
        .partition_key("k")
        .data(Blob::new(vec![0u8; 1024 * 1024 + 1]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
    let err = client
        .put_record()
        .stream_name("s")
        .partition_key("k")
        .explicit_hash_key(u128::MAX.to_string() + "0")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidArgumentException"));
    // A batch with one bad entry writes nothing.
    let entries = vec![
        PutRecordsRequestEntry::builder()
            .partition_key("k")
            .data(Blob::new("good"))
            .build()
            .unwrap(),
        PutRecordsRequestEntry::builder()
            .partition_key("k")
            .explicit_hash_key("not-a-number")
            .data(Blob::new("bad"))
            .build()
            .unwrap(),
    ];
    assert!(
        client
            .put_records()
            .stream_name("s")
            .set_records(Some(entries))
            .send()
            .await
            .is_err()
    );
    let it = client
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let page = client
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .unwrap();
    assert!(page.records.is_empty());
}

#[tokio::test]
async fn iterators_and_sequence_numbers_are_checked() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "s", 2).await;
    let err = client
        .get_records()
        .shard_iterator("AAAAforged")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let put = client
        .put_record()
        .stream_name("s")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    let other_shard = if put.shard_id == "shardId-000000000000" {
        "shardId-000000000001"
    } else {
        "shardId-000000000000"
    };
    let err = client
        .get_shard_iterator()
        .stream_name("s")
        .shard_id(other_shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&put.sequence_number)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let err = client
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000009")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    let err = client
        .get_shard_iterator()
        .stream_name("s")
        .shard_id(&put.shard_id)
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");
}

/// Raw HTTP: malformed bodies and unknown targets get AWS-shaped errors with HTTP 400.
#[tokio::test]
async fn malformed_requests_get_aws_errors_over_raw_http() {
    let (broker, _client) = broker_with_kinesis().await;
    let addr = broker.local_addr();
    let send = |target: &'static str, body: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = send("Kinesis_20131202.CreateStream", "{not json").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("SerializationException"));
    let response = send("Kinesis_20131202.NoSuchThing", "{}").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("UnknownOperationException"));
    let response = send("Kinesis_20131202.CreateStream", r#"{"StreamName": 5}"#).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("SerializationException"));
    let response = send("Kinesis_20131202.CreateQueue", "{}").await;
    assert!(response.contains("UnknownOperationException"), "{response}");
}
