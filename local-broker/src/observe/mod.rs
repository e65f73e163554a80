//! What the broker tells about itself, on its own port, next to the AWS APIs:
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text: per-operation requests, latency and errors, per-shard incoming and outgoing records and bytes, iterator age, throttles, live fan-out subscriptions, stored records and items, KCL lease owners and lag, Firehose delivery (`IncomingBytes`, `DeliveryToS3.*`, `DataFreshness`, ... per `delivery_stream`) |
//! | `GET /health` (or `/_health`) | `{"status":"ok",...}` while the broker serves |
//! | `GET /` (or `/status`) | a plain HTML status page: streams, shard lineage, consumers, lease tables, lag |
//!
//! Only GET requests without an `X-Amz-Target` header are answered here; everything else goes to
//! the services untouched. Every request is timed and counted, and logged with its request id at
//! `debug` under the target `local_broker::access` (`RUST_LOG=local_broker::access=debug`).
//!
//! Each broker has its own [`Observer`] and so its own `metrics` recorder, installed only around
//! the work of its own requests ([`Observer::record`]): many brokers in one process (as in tests)
//! never share figures, and the process-wide recorder is left to the embedding application.
//! Background work that records (Firehose delivery) runs inside it with [`Observer::scope`].
//! This module owns no state of the services; it reads them ([`overview`]).

pub mod overview;
mod prometheus;
mod status;

use crate::http::Services;
use axum::body::Body;
use axum::extract::State;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use http::{HeaderValue, Method, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How often histogram samples are folded into their summaries when nobody scrapes, so memory
/// stays bounded under load.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// One broker's metrics recorder and start time.
pub struct Observer {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    started: Instant,
}

impl Default for Observer {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        Self {
            recorder,
            handle,
            started: Instant::now(),
        }
    }
}

impl Observer {
    /// Runs `work` with this broker's recorder as the current one: the `metrics` macros it calls
    /// record here.
    pub fn record<T>(&self, work: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, work)
    }

    /// An event stream whose every step records here (fan-out pushes happen after the request
    /// handler has returned).
    pub fn instrument(
        self: &Arc<Self>,
        events: BoxStream<'static, Bytes>,
    ) -> BoxStream<'static, Bytes> {
        Box::pin(Recorded {
            observer: Arc::clone(self),
            events,
        })
    }

    /// A background task whose every poll records here (Firehose delivery runs outside any
    /// request).
    pub fn scope<F: Future>(self: &Arc<Self>, work: F) -> impl Future<Output = F::Output> + use<F> {
        Scoped {
            observer: Arc::clone(self),
            work: Box::pin(work),
        }
    }

    /// Folds histogram samples into their summaries; see [`UPKEEP_INTERVAL`].
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Counts and times one answered request, and logs it.
    fn finish(&self, target: &str, response: &Response, elapsed: Duration) {
        let (service, operation) = operation_labels(target, response);
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let request_id = response
            .headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let latency_ms = elapsed.as_secs_f64() * 1e3;
        self.record(|| {
            let labels = [
                ("service", service.to_owned()),
                ("operation", operation.clone()),
            ];
            metrics::counter!("Requests", &labels).increment(1);
            metrics::histogram!("Latency", &labels).record(latency_ms);
            if status >= 400 {
                let with_code = [
                    ("service", service.to_owned()),
                    ("operation", operation.clone()),
                    ("code", code.to_owned()),
                ];
                metrics::counter!("Errors", &with_code).increment(1);
                if is_throttle(code) {
                    metrics::counter!("Throttles", &labels).increment(1);
                }
            }
        });
        tracing::debug!(
            target: "local_broker::access",
            request_id,
            service,
            operation = operation.as_str(),
            status,
            code,
            latency_ms,
            "request"
        );
    }
}

/// Whether an error code means "slow down".
fn is_throttle(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
    )
}

/// `service` and `operation` labels. Unknown targets are lumped together so a client cannot grow
/// the registry without bound.
fn operation_labels(target: &str, response: &Response) -> (&'static str, String) {
    let (prefix, operation) = target.split_once('.').unwrap_or(("", ""));
    let service = match prefix {
        "Kinesis_20131202" => "kinesis",
        "DynamoDB_20120810" => "dynamodb",
        "Firehose_20150804" => "firehose",
        _ => return ("unknown", "unknown".into()),
    };
    let unknown = response
        .headers()
        .get("x-amzn-errortype")
        .is_some_and(|code| code == "UnknownOperationException");
    if unknown {
        return (service, "unknown".into());
    }
    (service, operation.to_owned())
}

/// An event stream polled with its broker's recorder current.
struct Recorded {
    observer: Arc<Observer>,
    events: BoxStream<'static, Bytes>,
}

impl Stream for Recorded {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        let events = &mut this.events;
        this.observer.record(|| events.as_mut().poll_next(cx))
    }
}

/// A future polled with its broker's recorder current.
struct Scoped<F> {
    observer: Arc<Observer>,
    work: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let work = &mut this.work;
        this.observer.record(|| work.as_mut().poll(cx))
    }
}

/// Front-door middleware: answers the observability pages, and times and counts everything else.
pub async fn front_door(
    State(services): State<Arc<Services>>,
    request: http::Request<Body>,
    next: Next,
) -> Response {
    if request.method() == Method::GET && !request.headers().contains_key("x-amz-target") {
        match request.uri().path() {
            "/metrics" => return metrics_page(&services),
            "/health" | "/_health" => return health(&services),
            "/" | "/status" => return status_page(&services),
            _ => {}
        }
    }
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    services
        .observer
        .finish(&target, &response, started.elapsed());
    response
}

fn page(content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn metrics_page(services: &Services) -> Response {
    let overview = overview::Overview::take(services);
    let mut text = services.observer.handle.render();
    prometheus::render_state(&overview, services.observer.started.elapsed(), &mut text);
    page("text/plain; version=0.0.4; charset=utf-8", text)
}

fn health(services: &Services) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "uptimeSeconds": services.observer.started.elapsed().as_secs_f64(),
        "streams": services.kinesis.streams().len(),
        "tables": services.dynamodb.tables().len(),
        "durable": services.storage.is_durable(),
    });
    let mut response = page("application/json", body.to_string());
    *response.status_mut() = StatusCode::OK;
    response
}

fn status_page(services: &Services) -> Response {
    let overview = overview::Overview::take(services);
    page(
        "text/html; charset=utf-8",
        status::render(&overview, services.observer.started.elapsed()),
    )
}
