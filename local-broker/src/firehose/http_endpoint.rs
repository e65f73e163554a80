//! The Firehose HTTP endpoint delivery contract, client side.
//!
//! Each batch is one `POST` of `{"requestId", "timestamp", "records": [{"data": <base64>}]}`
//! with the `X-Amz-Firehose-*` headers (gzip-encoded when configured). The response decides:
//! - 200 whose body echoes the `requestId` and has a `timestamp`: delivered;
//! - 413 (size exceeded): a permanent failure — not retried, and, as the contract says, the batch
//!   is *not* sent to the error output (an `AllData` backup still holds it);
//! - anything else — other 2xx, 3xx (redirects are not followed), 4xx, 5xx, a malformed answer
//!   (treated as a 500), a timeout or a refused connection — is retried with exponential backoff
//!   (1 s doubling, ±15 % jitter, at most 2 minutes apart) until `RetryOptions.DurationInSeconds`
//!   has passed since the first failure, and then goes to the error output as
//!   `http-endpoint-failed`. The same request id is sent on every retry.

use super::compression::Compression;
use super::processing::OutRecord;
use super::settings::HttpSettings;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng as _;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long an endpoint has to answer one request.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(180);
/// The first pause after a failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// Largest response body read (the contract allows 1 MiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A plain-HTTP client shared by every delivery task (endpoints and transforms).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client for `http://` URLs.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// How delivery of one batch ended badly.
#[derive(Debug, Clone)]
pub struct DeliveryFailure {
    /// `HttpEndpoint.…` error code for the error documents.
    pub code: &'static str,
    pub message: String,
    pub attempts: u32,
    /// The endpoint refused the batch for good (413): it is not retried and, unlike a batch
    /// whose retries ran out, not sent to the error output.
    pub rejected: bool,
}

/// Why one attempt failed.
enum Failure {
    /// Retry later.
    Retryable(&'static str, String),
    /// Do not retry, and do not send to the error output (413).
    Rejected(&'static str, String),
    /// Do not retry: the request cannot be made.
    Permanent(&'static str, String),
}

/// Delivers records to the endpoint, retrying as the contract says; `stop` (broker shutdown)
/// ends the retries early.
pub async fn deliver(
    client: &HttpClient,
    settings: &HttpSettings,
    source_arn: &str,
    records: &[OutRecord],
    now_ms: impl Fn() -> i64,
    stop: &CancellationToken,
) -> Result<u32, DeliveryFailure> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut attempts = 0;
    let mut first_failure: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        attempts += 1;
        let (code, message) =
            match attempt(client, settings, source_arn, &request_id, records, now_ms()).await {
                Ok(()) => return Ok(attempts),
                Err(Failure::Rejected(code, message)) => {
                    return Err(DeliveryFailure {
                        code,
                        message,
                        attempts,
                        rejected: true,
                    });
                }
                Err(Failure::Permanent(code, message)) => {
                    return Err(DeliveryFailure {
                        code,
                        message,
                        attempts,
                        rejected: false,
                    });
                }
                Err(Failure::Retryable(code, message)) => (code, message),
            };
        tracing::warn!(url = %settings.url, attempts, %message, "HTTP endpoint delivery failed");
        let since = *first_failure.get_or_insert_with(Instant::now);
        let jitter = rand::rng().random_range(0.85..1.15);
        let pause = backoff.mul_f64(jitter);
        if since.elapsed() + pause > settings.retry_duration || stop.is_cancelled() {
            return Err(DeliveryFailure {
                code,
                message,
                attempts,
                rejected: false,
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn attempt(
    client: &HttpClient,
    settings: &HttpSettings,
    source_arn: &str,
    request_id: &str,
    records: &[OutRecord],
    now_ms: i64,
) -> Result<(), Failure> {
    let body = serde_json::json!({
        "requestId": request_id,
        "timestamp": now_ms,
        "records": records
            .iter()
            .map(|r| serde_json::json!({"data": BASE64.encode(&r.data)}))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let body = if settings.gzip {
        Compression::Gzip
            .compress(&body, "")
            .map_err(|e| Failure::Permanent("HttpEndpoint.RequestEncodingFailed", e.to_string()))?
    } else {
        body
    };
    let mut request = http::Request::post(&settings.url)
        .header("X-Amz-Firehose-Protocol-Version", "1.0")
        .header("X-Amz-Firehose-Request-Id", request_id)
        .header("X-Amz-Firehose-Source-Arn", source_arn)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &settings.access_key {
        request = request.header("X-Amz-Firehose-Access-Key", key);
    }
    if !settings.common_attributes.is_empty() {
        let attributes: serde_json::Map<String, serde_json::Value> = settings
            .common_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        request = request.header(
            "X-Amz-Firehose-Common-Attributes",
            serde_json::json!({ "commonAttributes": attributes }).to_string(),
        );
    }
    if settings.gzip {
        request = request.header(http::header::CONTENT_ENCODING, "gzip");
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failure::Permanent("HttpEndpoint.InvalidUrl", e.to_string()))?;
    let response = match tokio::time::timeout(RESPONSE_TIMEOUT, client.request(request)).await {
        Err(_) => {
            return Err(Failure::Retryable(
                "HttpEndpoint.Timeout",
                "The endpoint did not answer within 180 seconds.".to_owned(),
            ));
        }
        Ok(Err(err)) => {
            return Err(Failure::Retryable(
                "HttpEndpoint.ConnectionFailed",
                format!("Cannot reach the endpoint: {err}"),
            ));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    answered(status, &body, request_id)
}

/// What the endpoint's answer means for the batch sent as `request_id`.
fn answered(status: http::StatusCode, body: &[u8], request_id: &str) -> Result<(), Failure> {
    let answer: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error_message = answer
        .as_ref()
        .and_then(|a| a.get("errorMessage"))
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_owned();
    match status.as_u16() {
        200 => {
            let echoed = answer
                .as_ref()
                .and_then(|a| a.get("requestId"))
                .and_then(|id| id.as_str());
            let timestamped = answer
                .as_ref()
                .is_some_and(|a| a.get("timestamp").is_some());
            if echoed == Some(request_id) && timestamped {
                Ok(())
            } else {
                // A malformed answer counts as a 500 without a body.
                Err(Failure::Retryable(
                    "HttpEndpoint.InvalidResponseFromDestination",
                    "The response did not echo the request's requestId with a timestamp."
                        .to_owned(),
                ))
            }
        }
        413 => Err(Failure::Rejected(
            "HttpEndpoint.PayloadTooLarge",
            format!("The endpoint answered 413. {error_message}"),
        )),
        code => Err(Failure::Retryable(
            "HttpEndpoint.DestinationException",
            format!("The endpoint answered {code}. {error_message}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn outcome(status: u16, body: &str) -> &'static str {
        let status = StatusCode::from_u16(status).unwrap();
        match answered(status, body.as_bytes(), "id-1") {
            Ok(()) => "delivered",
            Err(Failure::Retryable(..)) => "retried",
            Err(Failure::Rejected(..)) => "rejected",
            Err(Failure::Permanent(..)) => "permanent",
        }
    }

    #[test]
    fn only_a_well_formed_200_delivers_and_only_413_is_not_retried() {
        let echo = r#"{"requestId":"id-1","timestamp":1578090903599}"#;
        assert_eq!(outcome(200, echo), "delivered");
        for malformed in [
            "",
            "not json",
            r#"{"requestId":"id-2","timestamp":1}"#,
            r#"{"requestId":"id-1"}"#,
        ] {
            assert_eq!(outcome(200, malformed), "retried", "{malformed:?}");
        }
        for status in [
            201, 202, 204, 301, 302, 400, 401, 403, 404, 429, 500, 502, 503,
        ] {
            assert_eq!(outcome(status, echo), "retried", "{status}");
        }
        assert_eq!(outcome(413, echo), "rejected");
        assert_eq!(outcome(413, ""), "rejected");
    }
}
