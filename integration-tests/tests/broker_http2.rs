//! HTTP/2 over TLS (ALPN `h2`), the only way the Java SDK calls SubscribeToShard: the broker's
//! self-signed certificate is trusted, a request succeeds, and an event stream flows over h2.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use local_broker::{LocalBroker, TlsSettings};
use std::sync::Arc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn connect_h2(broker: &local_broker::RunningBroker) -> H2 {
    let mut roots = RootCertStore::empty();
    let pem = broker
        .certificate_pem()
        .expect("a TLS broker has a certificate");
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(broker.local_addr())
        .await
        .unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN chose h2"
    );
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    send
}

async fn call(
    h2: &mut H2,
    target: &str,
    body: serde_json::Value,
) -> hyper::Response<hyper::body::Incoming> {
    let request = hyper::Request::post("https://localhost/")
        .header("x-amz-target", format!("Kinesis_20131202.{target}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    h2.send_request(request).await.unwrap()
}

#[tokio::test]
async fn subscribe_to_shard_streams_over_http2_with_tls() {
    let broker = LocalBroker::builder()
        .tls(TlsSettings::SelfSigned)
        .start()
        .await
        .unwrap();
    assert!(broker.endpoint().starts_with("https://"));
    let mut h2 = connect_h2(&broker).await;
    let created = call(
        &mut h2,
        "CreateStream",
        serde_json::json!({"StreamName": "tls", "ShardCount": 1}),
    )
    .await;
    assert_eq!(created.status(), 200);
    assert_eq!(created.version(), hyper::Version::HTTP_2);
    let consumer = call(
        &mut h2,
        "RegisterStreamConsumer",
        serde_json::json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/tls", "ConsumerName": "java-like"}),
    )
    .await;
    let consumer: serde_json::Value =
        serde_json::from_slice(&consumer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let consumer_arn = consumer["Consumer"]["ConsumerARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = call(
        &mut h2,
        "PutRecord",
        serde_json::json!({"StreamName": "tls", "PartitionKey": "k", "Data": "aGVsbG8="}),
    )
    .await;
    assert_eq!(put.status(), 200);

    let subscription = call(
        &mut h2,
        "SubscribeToShard",
        serde_json::json!({
            "ConsumerARN": consumer_arn,
            "ShardId": "shardId-000000000000",
            "StartingPosition": {"Type": "TRIM_HORIZON"}
        }),
    )
    .await;
    assert_eq!(subscription.status(), 200);
    assert_eq!(
        subscription.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    // Read frames until the first record event arrived; the initial-response comes first.
    let mut body = subscription.into_body();
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("aGVsbG8=") {
        let frame = body.frame().await.expect("the stream stays open").unwrap();
        if let Some(data) = frame.data_ref() {
            received.extend_from_slice(data);
        }
    }
    let text = String::from_utf8_lossy(&received);
    let initial = text.find("initial-response").unwrap();
    let event = text.find("SubscribeToShardEvent").unwrap();
    assert!(initial < event, "initial-response precedes the first event");
    drop(body);
    broker.shutdown().await;
}

#[tokio::test]
async fn an_injected_dropped_connection_closes_the_tls_connection_unanswered() {
    let broker = LocalBroker::builder()
        .tls(TlsSettings::SelfSigned)
        .fault(local_broker::FaultRule::new("ListStreams").drop_connection(1.0))
        .start()
        .await
        .unwrap();
    let mut h2 = connect_h2(&broker).await;
    let request = hyper::Request::post("https://localhost/")
        .header("x-amz-target", "Kinesis_20131202.ListStreams")
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    assert!(
        h2.send_request(request).await.is_err(),
        "no response on a dropped connection"
    );
    // A new connection works once the fault is off.
    broker.faults().clear();
    let mut h2 = connect_h2(&broker).await;
    let response = call(&mut h2, "ListStreams", serde_json::json!({})).await;
    assert_eq!(response.status(), 200);
    broker.shutdown().await;
}
