//! The front door: one HTTP endpoint that routes each request to its service by `X-Amz-Target`
//! and encodes the answer. It knows nothing about streams or tables. Before a request reaches its
//! service it checks the signature ([`sigv4`]) and rolls the injected faults ([`faults`]).

pub mod error;
pub mod eventstream;
pub mod faults;
pub mod protocol;
pub mod sigv4;
pub mod validation;

use crate::dynamodb::DynamoDb;
use crate::firehose::Firehose;
use crate::kinesis::Kinesis;
use crate::storage;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use bytes::Bytes;
use error::ApiError;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use protocol::{Protocol, Wire};
use std::sync::Arc;

/// Largest request body accepted. PutRecords may carry 10 MiB of data, which base64 inflates by a
/// third; anything bigger is refused before it is buffered.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The services behind the front door, and what it checks before calling them.
pub struct Services {
    /// Shared with Firehose, whose Kinesis-sourced streams read through it.
    pub kinesis: Arc<Kinesis>,
    pub dynamodb: DynamoDb,
    pub firehose: Firehose,
    /// When set, every request must be signed (SigV4) by one of these credentials.
    pub auth: Option<sigv4::Credentials>,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Where writes go; the handler waits on it before acknowledging them.
    pub storage: crate::storage::Storage,
    /// Faults injected into requests (none by default).
    pub faults: faults::Faults,
    /// This broker's metrics recorder (see [`crate::observe`]).
    pub observer: Arc<crate::observe::Observer>,
    /// Kinesis Video Streams, routed by REST path rather than `X-Amz-Target`.
    pub video: crate::video::Video,
}

/// What an operation answers: a body, or an event stream that is pushed until it ends.
pub enum Reply {
    /// A complete response body in the request's protocol.
    Body(Bytes),
    /// Event-stream messages (`application/vnd.amazon.eventstream`), produced as the client
    /// reads them: a slow reader slows the producer instead of growing a buffer.
    EventStream(BoxStream<'static, Bytes>),
}

/// Which service a target prefix belongs to, and how its errors are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Kinesis Data Streams (`Kinesis_20131202.*`).
    Kinesis,
    /// DynamoDB (`DynamoDB_20120810.*`).
    DynamoDb,
    /// Firehose (`Firehose_20150804.*`).
    Firehose,
}

impl Service {
    fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "Kinesis_20131202" => Some(Service::Kinesis),
            "DynamoDB_20120810" => Some(Service::DynamoDb),
            "Firehose_20150804" => Some(Service::Firehose),
            _ => None,
        }
    }

    /// The `__type` value of an error body.
    fn error_type(self, code: &str) -> String {
        match self {
            Service::DynamoDb => format!("com.amazonaws.dynamodb.v20120810#{code}"),
            Service::Kinesis | Service::Firehose => code.to_owned(),
        }
    }
}

/// Builds the router for all services; [`crate::observe::front_door`] answers the GET pages
/// (`/metrics`, `/health`, `/`) and times every request.
pub fn router(services: Arc<Services>) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&services),
            crate::observe::front_door,
        ))
        .with_state(services)
}

async fn handle(State(services): State<Arc<Services>>, request: http::Request<Body>) -> Response {
    if crate::video::serves(&request) {
        return services.video.handle(request).await;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let protocol = Protocol::from_content_type(
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (prefix, operation) = target.split_once('.').unwrap_or(("", ""));
    let service = Service::from_prefix(prefix);
    let outcome = match service {
        None => Err(ApiError::unknown_operation(&target)),
        Some(_) if parts.method != http::Method::POST => Err(ApiError::unknown_operation(&target)),
        Some(service) => match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
            Err(_) => Err(ApiError::validation(format!(
                "Request body is larger than the {MAX_REQUEST_BYTES} bytes this server accepts"
            ))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)),
            Ok(body) => {
                let signed = sigv4::SignedRequest::new(&parts, &body);
                let verified = match &services.auth {
                    Some(credentials) => credentials.verify(&signed, services.clock.now_millis()),
                    None => Ok(None),
                };
                let body = match verified {
                    Ok(Some(decoded)) => Bytes::from(decoded),
                    Ok(None) => body,
                    Err(err) => {
                        return error_response(Some(service), protocol, &request_id, &target, err);
                    }
                };
                let injection = services.faults.roll(service, operation);
                if !injection.delay.is_zero() {
                    tokio::time::sleep(injection.delay).await;
                }
                if let Some(fault) = injection.fault {
                    tracing::debug!(%target, ?fault, "injecting a fault");
                    let severance = parts.extensions.get::<ConnectInfo<faults::Severance>>();
                    if let (faults::Fault::DropConnection, Some(ConnectInfo(severance))) =
                        (fault, severance)
                    {
                        severance.sever();
                    }
                    let err = fault.error(service, operation);
                    return error_response(Some(service), protocol, &request_id, &target, err);
                }
                let wire = Wire { protocol, body };
                let (outcome, mark) = {
                    let span = tracing::debug_span!("request", %target, %request_id);
                    let _enter = span.enter();
                    // Operations run synchronously on this thread; the write mark tells what
                    // they wrote, and so what must be durable before answering.
                    storage::write_mark::during(|| {
                        services.observer.record(|| match service {
                            Service::Kinesis => services.kinesis.dispatch(operation, &wire),
                            Service::DynamoDb => services
                                .dynamodb
                                .dispatch(operation, &wire)
                                .map(Reply::Body),
                            Service::Firehose => services
                                .firehose
                                .dispatch(operation, &wire)
                                .map(Reply::Body),
                        })
                    })
                };
                match services.storage.durable(mark).await {
                    Ok(()) => outcome,
                    Err(err) => Err(ApiError::not_durable(err)),
                }
            }
        },
    };
    match outcome {
        Ok(Reply::Body(body)) => respond(
            StatusCode::OK,
            protocol,
            &request_id,
            Body::from(body),
            None,
        ),
        Ok(Reply::EventStream(events)) => {
            let body = Body::from_stream(futures::StreamExt::map(
                services.observer.instrument(events),
                Ok::<_, std::convert::Infallible>,
            ));
            let mut response = respond(StatusCode::OK, protocol, &request_id, body, None);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.amazon.eventstream"),
            );
            response
        }
        Err(err) => error_response(service, protocol, &request_id, &target, err),
    }
}

fn error_response(
    service: Option<Service>,
    protocol: Protocol,
    request_id: &str,
    target: &str,
    err: ApiError,
) -> Response {
    let service = service.unwrap_or(Service::Kinesis);
    if err.status.is_server_error() {
        tracing::error!(%target, code = err.code, message = %err.message, "request failed");
    } else {
        tracing::debug!(%target, code = err.code, message = %err.message, "request rejected");
    }
    let mut body = err.details.unwrap_or_default();
    body.insert("__type".into(), service.error_type(err.code).into());
    body.insert("message".into(), err.message.into());
    let encoded = protocol::encode(protocol, &body).unwrap_or_default();
    respond(
        err.status,
        protocol,
        request_id,
        Body::from(encoded),
        Some(err.code),
    )
}

fn respond(
    status: StatusCode,
    protocol: Protocol,
    request_id: &str,
    body: Body,
    error_code: Option<&str>,
) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(protocol.content_type()),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id.clone());
        headers.insert("x-amz-id-2", id);
    }
    if let Some(code) = error_code.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert("x-amzn-errortype", code);
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
