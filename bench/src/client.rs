//! The benchmarks' Kinesis client: static credentials, no retries (a retried call would be
//! measured twice and could write a batch twice), every call bounded in time. Shared by
//! `kinesis-bench` and `storage-bench`.

use aws_sdk_kinesis::config::Region;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use std::time::Duration;

/// A client for the Kinesis endpoint at `endpoint`.
pub fn client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKID", "SECRET", None, None, "bench",
        ))
        // A retried call would be measured twice and could write a batch twice: count errors.
        .retry_config(RetryConfig::disabled())
        // Every call is bounded, so a hung server cannot hang the benchmark.
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}
