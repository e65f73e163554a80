//! SigV4 authentication for a self-hosted broker, proven with the real SDK clients: the right
//! secret works, a wrong secret, an unknown key or a skewed clock get AWS's errors.

use aws_credential_types::Credentials;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_smithy_async::time::StaticTimeSource;
use local_broker::LocalBroker;
use std::time::{Duration, SystemTime};

fn client(
    endpoint: &str,
    key: &str,
    secret: &str,
    clock: Option<SystemTime>,
) -> aws_sdk_kinesis::Client {
    let mut config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "auth-test"));
    if let Some(at) = clock {
        // With retries on, the SDK learns the skew from the error response's Date header and
        // succeeds on the next attempt, as against AWS; one attempt shows the rejection itself.
        config = config
            .time_source(StaticTimeSource::new(at))
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled());
    }
    aws_sdk_kinesis::Client::from_conf(config.build())
}

#[tokio::test]
async fn only_correctly_signed_requests_are_served() {
    let broker = LocalBroker::builder()
        .auth(local_broker::Credentials::new().with("AKIDOWNER", "owner-secret"))
        .start()
        .await
        .unwrap();
    let endpoint = broker.endpoint();

    client(&endpoint, "AKIDOWNER", "owner-secret", None)
        .list_streams()
        .send()
        .await
        .expect("a correct signature is accepted");

    let err = client(&endpoint, "AKIDOWNER", "wrong-secret", None)
        .list_streams()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert_eq!(
        err.into_service_error().code(),
        Some("InvalidSignatureException")
    );

    let err = client(&endpoint, "AKIDSTRANGER", "owner-secret", None)
        .list_streams()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let err = client(&endpoint, "AKIDOWNER", "owner-secret", Some(an_hour_ago))
        .list_streams()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("Signature expired")
    );

    // DynamoDB requests are checked the same way.
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(Credentials::new(
                "AKIDOWNER",
                "wrong",
                None,
                None,
                "auth-test",
            ))
            .build(),
    );
    let err = dynamodb
        .list_tables()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&err),
        Some("InvalidSignatureException")
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn unsigned_requests_are_refused_when_auth_is_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = LocalBroker::builder()
        .auth(local_broker::Credentials::new().with("AKIDOWNER", "owner-secret"))
        .start()
        .await
        .unwrap();
    let mut tcp = tokio::net::TcpStream::connect(broker.local_addr())
        .await
        .unwrap();
    tcp.write_all(
        b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains("MissingAuthenticationTokenException"));
    broker.shutdown().await;
}
