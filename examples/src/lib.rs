//! Helpers shared by the example binaries: logging, SDK clients for an endpoint, stream creation,
//! and latency percentiles.

use std::time::Duration;

use anyhow::Context;
use aws_credential_types::Credentials;

/// Logs to stderr (stdout stays the program's own output), filtered by `RUST_LOG` or else
/// `default_filter`.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Kinesis and DynamoDB clients for a local endpoint (any credentials are accepted there).
pub fn local_clients(endpoint: &str) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    let credentials = Credentials::new("AKID", "SECRET", None, None, "examples");
    let region = aws_sdk_kinesis::config::Region::new("us-east-1");
    let kinesis = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(region.clone())
        .endpoint_url(endpoint)
        .credentials_provider(credentials.clone())
        .build();
    let dynamodb = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(region)
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .build();
    (
        aws_sdk_kinesis::Client::from_conf(kinesis),
        aws_sdk_dynamodb::Client::from_conf(dynamodb),
    )
}

/// Creates a stream and waits until it is ACTIVE.
pub async fn create_stream(
    kinesis: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> anyhow::Result<()> {
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .with_context(|| format!("CreateStream {name}"))?;
    for _ in 0..600 {
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .with_context(|| format!("DescribeStreamSummary {name}"))?;
        let active = summary
            .stream_description_summary()
            .map(|s| s.stream_status())
            == Some(&aws_sdk_kinesis::types::StreamStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("stream {name} did not become ACTIVE within a minute")
}

/// The `p`-th percentile (0–100) of `samples`, sorting them in place; `None` if empty.
pub fn percentile(samples: &mut [Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples.get(rank.min(samples.len() - 1)).copied()
}

/// Microseconds since the Unix epoch, for latency stamps inside record payloads.
pub fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default()
}
