//! AWS CBOR 1.1, the Java SDK v2's default for Kinesis: requests and responses in CBOR, blobs as
//! byte strings, timestamps as tag-1 epoch values, and CBOR event-stream payloads.

use bytes::Bytes;
use ciborium::Value;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use local_broker::LocalBroker;

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

fn get<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {value:?}"))
}

type Http1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(broker: &local_broker::RunningBroker) -> Http1 {
    let tcp = tokio::net::TcpStream::connect(broker.local_addr())
        .await
        .unwrap();
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    send
}

async fn call(client: &mut Http1, target: &str, body: Value) -> (u16, String, Bytes) {
    let mut encoded = Vec::new();
    ciborium::into_writer(&body, &mut encoded).unwrap();
    let request = hyper::Request::post("/")
        .header("host", "localhost")
        .header("x-amz-target", format!("Kinesis_20131202.{target}"))
        .header("content-type", "application/x-amz-cbor-1.1")
        .body(Full::new(Bytes::from(encoded)))
        .unwrap();
    let response = client.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    if content_type == "application/vnd.amazon.eventstream" {
        return (status, content_type, Bytes::new());
    }
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body)
}

fn decode(body: &[u8]) -> Value {
    ciborium::from_reader(body).unwrap()
}

#[tokio::test]
async fn put_and_get_records_speak_cbor() {
    let broker = LocalBroker::builder().start().await.unwrap();
    let mut client = connect(&broker).await;
    let (status, content_type, _) = call(
        &mut client,
        "CreateStream",
        map(vec![
            ("StreamName", Value::Text("cbor".into())),
            ("ShardCount", Value::Integer(1.into())),
        ]),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-amz-cbor-1.1")
    );

    let payload = vec![0u8, 159, 146, 150, 255];
    let (status, _, body) = call(
        &mut client,
        "PutRecords",
        map(vec![
            ("StreamName", Value::Text("cbor".into())),
            (
                "Records",
                Value::Array(vec![map(vec![
                    ("Data", Value::Bytes(payload.clone())),
                    ("PartitionKey", Value::Text("k".into())),
                ])]),
            ),
        ]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        get(&decode(&body), "FailedRecordCount"),
        &Value::Integer(0.into())
    );

    let (_, _, body) = call(
        &mut client,
        "GetShardIterator",
        map(vec![
            ("StreamName", Value::Text("cbor".into())),
            ("ShardId", Value::Text("shardId-000000000000".into())),
            ("ShardIteratorType", Value::Text("TRIM_HORIZON".into())),
        ]),
    )
    .await;
    let iterator = get(&decode(&body), "ShardIterator").clone();
    let (status, _, body) = call(
        &mut client,
        "GetRecords",
        map(vec![("ShardIterator", iterator)]),
    )
    .await;
    assert_eq!(status, 200);
    let records = decode(&body);
    let record = &get(&records, "Records").as_array().unwrap()[0];
    assert_eq!(
        get(record, "Data"),
        &Value::Bytes(payload),
        "blobs are byte strings"
    );
    match get(record, "ApproximateArrivalTimestamp") {
        Value::Tag(1, inner) => assert!(inner.is_integer(), "epoch milliseconds"),
        other => panic!("timestamps are tag-1 values, got {other:?}"),
    }

    // Errors come back in CBOR too, with the AWS type.
    let (status, _, body) = call(
        &mut client,
        "DescribeStream",
        map(vec![("StreamName", Value::Text("missing".into()))]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        get(&decode(&body), "__type"),
        &Value::Text("ResourceNotFoundException".into())
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn timestamps_in_requests_accept_tagged_millis_and_seconds() {
    let broker = LocalBroker::builder().start().await.unwrap();
    let mut client = connect(&broker).await;
    call(
        &mut client,
        "CreateStream",
        map(vec![
            ("StreamName", Value::Text("ts".into())),
            ("ShardCount", Value::Integer(1.into())),
        ]),
    )
    .await;
    for timestamp in [
        Value::Tag(1, Box::new(Value::Integer(1_000i64.into()))),
        Value::Tag(1, Box::new(Value::Float(1.5))),
        Value::Integer(0.into()),
    ] {
        let (status, _, body) = call(
            &mut client,
            "GetShardIterator",
            map(vec![
                ("StreamName", Value::Text("ts".into())),
                ("ShardId", Value::Text("shardId-000000000000".into())),
                ("ShardIteratorType", Value::Text("AT_TIMESTAMP".into())),
                ("Timestamp", timestamp.clone()),
            ]),
        )
        .await;
        assert_eq!(status, 200, "{timestamp:?}: {:?}", decode(&body));
    }
    broker.shutdown().await;
}
