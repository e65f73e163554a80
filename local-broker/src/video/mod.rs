//! Kinesis Video Streams: the control plane, PutMedia ingest, GetMedia, and archived media
//! (ListFragments, GetMediaForFragmentList, GetClip, HLS).
//!
//! KVS speaks REST-JSON: each operation is `POST /<operation>` (the tagging operations are
//! capitalised: `/TagResource`), so the front door hands over every request [`serves`] claims.
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | wire shapes and errors |
//! | [`control`] | streams, versions, statuses, retention, tags |
//! | [`ebml`], [`mkv`] | reading and writing Matroska |
//! | [`ingest`] | PutMedia: fragments from a body, validation, acknowledgements |
//! | [`fragments`] | the stored fragments of a stream, retention, tailing |
//! | [`store`] | streams and fragments in the data directory, and their recovery |
//! | [`media`] | GetMedia and GetMediaForFragmentList output |
//! | [`archive`] | ListFragments: fragments by time, paged |
//! | [`clip`] | GetClip: a time range as one MP4 file |
//! | [`hls`] | HLS and DASH sessions, playlists, manifests and fMP4 segments |
//! | [`remux`], [`mp4`] | stored H.264 frames as MP4 samples and boxes |

pub mod api;
pub mod archive;
pub mod clip;
pub mod control;
pub mod ebml;
pub mod fragments;
pub mod hls;
pub mod ingest;
pub mod media;
pub mod mkv;
pub mod mp4;
pub mod remux;
pub mod store;

use crate::config::BrokerConfig;
use crate::http::error::{ApiError, ApiResult};
use crate::http::sigv4;
use crate::storage::{self, Storage, StorageError};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest JSON request body a KVS operation takes.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Every modeled KVS operation path; those the broker does not implement answer
/// UnknownOperationException.
const OPERATIONS: &[&str] = &[
    "/createStream",
    "/describeStream",
    "/listStreams",
    "/deleteStream",
    "/updateStream",
    "/updateDataRetention",
    "/getDataEndpoint",
    "/tagStream",
    "/untagStream",
    "/listTagsForStream",
    "/TagResource",
    "/UntagResource",
    "/ListTagsForResource",
    "/createSignalingChannel",
    "/deleteSignalingChannel",
    "/describeSignalingChannel",
    "/getSignalingChannelEndpoint",
    "/listSignalingChannels",
    "/updateSignalingChannel",
    "/deleteEdgeConfiguration",
    "/describeEdgeConfiguration",
    "/startEdgeConfigurationUpdate",
    "/listEdgeAgentConfigurations",
    "/describeImageGenerationConfiguration",
    "/updateImageGenerationConfiguration",
    "/describeNotificationConfiguration",
    "/updateNotificationConfiguration",
    "/describeMediaStorageConfiguration",
    "/updateMediaStorageConfiguration",
    "/describeMappedResourceConfiguration",
    "/describeStreamStorageConfiguration",
    "/updateStreamStorageConfiguration",
    "/putMedia",
    "/getMedia",
    "/listFragments",
    "/getMediaForFragmentList",
    "/getClip",
    "/getHLSStreamingSessionURL",
    "/getDASHStreamingSessionURL",
    "/getImages",
];

/// Whether a request belongs to Kinesis Video Streams.
pub fn serves<B>(request: &Request<B>) -> bool {
    let path = request.uri().path();
    (request.method() == Method::POST && OPERATIONS.contains(&path))
        || (request.method() == Method::GET
            && (path.starts_with("/hls/v1/") || path.starts_with("/dash/v1/")))
}

/// The Kinesis Video Streams service of one broker. Cheap to clone.
#[derive(Clone)]
pub struct Video {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    /// `http` or `https`: how clients reached the broker, for GetDataEndpoint.
    scheme: &'static str,
    streams: control::Streams,
    /// Where stream state and fragments are kept; PutMedia waits on it before PERSISTED.
    storage: Storage,
    hls: hls::Sessions,
    /// The next fragment sequence number, shared by all streams so numbers only grow.
    next_fragment: AtomicU64,
}

/// What an operation answers.
enum Output {
    Json(Value),
    /// A response built by the operation (streams, media).
    Media(Response),
}

impl Video {
    /// The service for a broker serving `scheme` (`http` or `https`), keeping everything in
    /// memory.
    pub fn new(config: BrokerConfig, scheme: &'static str) -> Self {
        let streams = control::Streams::new(config.clone());
        Self::with_streams(config, scheme, Storage::memory(), streams, 0)
    }

    /// The service with the streams and fragments `storage` holds (`meta` is the metadata map
    /// it was opened with), keeping new ones there. In memory mode this is [`Self::new`].
    pub fn restore(
        config: BrokerConfig,
        scheme: &'static str,
        storage: &Storage,
        meta: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, StorageError> {
        let records = store::streams(meta)?;
        let mut replay = store::Replay::new(&records, config.clock.now_millis());
        let log = storage.service_log(store::LOG_NAME, |_, position, record| {
            replay.record(position, record)
        })?;
        let max_sequence = replay.max_sequence();
        let streams = control::Streams::restore(
            config.clone(),
            storage.clone(),
            log,
            records,
            replay.into_fragments(),
        );
        Ok(Self::with_streams(
            config,
            scheme,
            storage.clone(),
            streams,
            max_sequence,
        ))
    }

    fn with_streams(
        config: BrokerConfig,
        scheme: &'static str,
        storage: Storage,
        streams: control::Streams,
        max_sequence: u64,
    ) -> Self {
        // Start from the clock (and past every stored fragment) so numbers keep growing across
        // broker restarts.
        let next = (config.clock.now_millis().max(0) as u64 * 1000).max(max_sequence + 1);
        Self {
            inner: Arc::new(Inner {
                streams,
                storage,
                hls: hls::Sessions::default(),
                next_fragment: AtomicU64::new(next),
                config,
                scheme,
            }),
        }
    }

    fn now_millis(&self) -> i64 {
        self.inner.config.clock.now_millis()
    }

    fn next_fragment_sequence(&self) -> u64 {
        self.inner.next_fragment.fetch_add(1, Ordering::Relaxed)
    }

    fn streams(&self) -> &control::Streams {
        &self.inner.streams
    }

    /// The stream named, if it exists.
    fn stream(&self, reference: &api::StreamRef) -> Option<control::VideoStream> {
        self.inner.streams.get(reference).ok()
    }

    /// A stream for reading media, with fragments past retention dropped first.
    fn readable(&self, reference: &api::StreamRef) -> ApiResult<control::VideoStream> {
        let stream = self.inner.streams.get(reference)?;
        stream
            .fragments
            .expire(self.now_millis(), stream.record.retention_hours);
        Ok(stream)
    }

    /// A stream for the archived-media APIs, which need retention.
    fn archived(&self, reference: &api::StreamRef) -> ApiResult<control::VideoStream> {
        let stream = self.readable(reference)?;
        if stream.record.retention_hours == 0 {
            return Err(api::no_data_retention(&stream.record.name));
        }
        Ok(stream)
    }

    /// Drops fragments past each stream's retention, and deletes the log segments no stream
    /// needs any more (all older than the longest retention); returns how many segments.
    pub fn expire_fragments(&self) -> Result<usize, StorageError> {
        self.inner.streams.expire_fragments();
        let keep_millis = fragments::retention_millis(self.inner.streams.longest_retention_hours());
        self.inner
            .streams
            .expire_log(self.now_millis().saturating_sub(keep_millis))
    }

    /// Answers a request [`serves`] claimed.
    pub async fn handle(&self, request: Request<Body>) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let path = request.uri().path().to_owned();
        let span = tracing::debug_span!("video", %path, %request_id);
        let outcome = tracing::Instrument::instrument(self.answer(request), span).await;
        match outcome {
            Ok(Output::Json(value)) => {
                let mut response = Response::new(Body::from(value.to_string()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                with_request_id(response, &request_id)
            }
            Ok(Output::Media(response)) => with_request_id(response, &request_id),
            Err(err) => error_response(&path, &request_id, err),
        }
    }

    async fn answer(&self, request: Request<Body>) -> ApiResult<Output> {
        let (parts, body) = request.into_parts();
        if parts.method == Method::GET {
            // HLS and DASH resources are authorised by their session token, like KVS's.
            let resource = hls::Resource::parse(parts.uri.path(), parts.uri.query());
            let (content_type, body) =
                hls::serve(&self.inner.hls, self, &resource, self.now_millis())?;
            return Ok(Output::Media(media_response(
                content_type,
                Body::from(body),
            )));
        }
        if parts.uri.path() == "/putMedia" {
            // The body streams for as long as the producer records: never buffered, so the
            // signature is checked on the headers before any ack, and the body as it arrives.
            let body = match &self.inner.config.auth {
                Some(credentials) => {
                    let signed = sigv4::SignedRequest::new(&parts, &[]);
                    let check = credentials
                        .verify_streamed(&signed, self.now_millis())
                        .map_err(api::not_signed)?;
                    checked_body(body, check)
                }
                None => body,
            };
            return ingest::put_media(self, &parts.headers, body).map(Output::Media);
        }
        let body = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
            .await
            .map_err(|_| {
                api::invalid_argument(format!(
                    "Request body is larger than the {MAX_REQUEST_BYTES} bytes this server accepts"
                ))
            })?;
        let body = match &self.inner.config.auth {
            Some(credentials) => {
                let signed = sigv4::SignedRequest::new(&parts, &body);
                match credentials
                    .verify(&signed, self.now_millis())
                    .map_err(api::not_signed)?
                {
                    Some(decoded) => Bytes::from(decoded),
                    None => body,
                }
            }
            None => body,
        };
        let streams = &self.inner.streams;
        // Operations run synchronously on this thread; the write mark tells what they wrote,
        // and so what must be durable before answering.
        let (output, mark) = storage::write_mark::during(|| -> ApiResult<Output> {
            let json = match parts.uri.path() {
                "/createStream" => streams.create(api::parse(&body)?)?,
                "/describeStream" => streams.describe(&api::parse(&body)?)?,
                "/listStreams" => streams.list(api::parse(&body)?)?,
                "/deleteStream" => streams.delete(api::parse(&body)?)?,
                "/updateStream" => streams.update_stream(api::parse(&body)?)?,
                "/updateDataRetention" => streams.update_retention(api::parse(&body)?)?,
                "/getDataEndpoint" => self.data_endpoint(&parts, api::parse(&body)?)?,
                "/tagStream" => streams.tag_stream(api::parse(&body)?)?,
                "/untagStream" => {
                    let input: api::UntagStreamInput = api::parse(&body)?;
                    streams.untag(&input.stream, input.tag_key_list)?
                }
                "/listTagsForStream" => streams.list_tags(&api::parse(&body)?)?,
                "/TagResource" => streams.tag_resource(api::parse(&body)?)?,
                "/UntagResource" => {
                    let input: api::UntagResourceInput = api::parse(&body)?;
                    streams.untag(&control::by_arn(input.resource_arn)?, input.tag_key_list)?
                }
                "/ListTagsForResource" => {
                    let input: api::ListTagsForResourceInput = api::parse(&body)?;
                    streams.list_tags(&control::by_arn(input.resource_arn)?)?
                }
                "/getMedia" => {
                    let input: api::GetMediaInput = api::parse(&body)?;
                    let stream = self.readable(&input.stream)?;
                    let selector = input
                        .start_selector
                        .ok_or_else(|| api::invalid_argument("StartSelector must be specified."))?;
                    let chunks = media::get_media(
                        stream.fragments,
                        &selector,
                        Arc::clone(&self.inner.config.clock),
                    )?;
                    let body = Body::from_stream(futures::StreamExt::map(
                        chunks,
                        Ok::<_, std::convert::Infallible>,
                    ));
                    return Ok(Output::Media(media_response(media::CONTENT_TYPE, body)));
                }
                "/getMediaForFragmentList" => {
                    let input: api::GetMediaForFragmentListInput = api::parse(&body)?;
                    let stream = self.readable(&input.stream)?;
                    let numbers = input
                        .fragments
                        .ok_or_else(|| api::invalid_argument("Fragments must be specified."))?;
                    let payload =
                        media::fragment_list(&stream.fragments, &numbers, self.now_millis())?;
                    return Ok(Output::Media(media_response(
                        media::CONTENT_TYPE,
                        Body::from(payload),
                    )));
                }
                "/listFragments" => {
                    let input: api::ListFragmentsInput = api::parse(&body)?;
                    let stream = self.readable(&input.stream)?;
                    archive::list_fragments(&stream.fragments, &input)?
                }
                "/getClip" => {
                    let input: api::GetClipInput = api::parse(&body)?;
                    let stream = self.archived(&input.stream)?;
                    let clip = clip::get_clip(&stream.fragments, &input)?;
                    return Ok(Output::Media(media_response(
                        clip::CONTENT_TYPE,
                        Body::from(clip),
                    )));
                }
                "/getHLSStreamingSessionURL" => {
                    let input: api::GetHlsSessionInput = api::parse(&body)?;
                    let stream = self.archived(&input.stream)?;
                    let token = self
                        .inner
                        .hls
                        .open(input, &stream.fragments, self.now_millis())?;
                    let url = format!(
                        "{}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}",
                        self.endpoint(&parts)?
                    );
                    serde_json::json!({ "HLSStreamingSessionURL": url })
                }
                "/getDASHStreamingSessionURL" => {
                    let input: api::GetDashSessionInput = api::parse(&body)?;
                    let stream = self.archived(&input.stream)?;
                    let token =
                        self.inner
                            .hls
                            .open(input.into(), &stream.fragments, self.now_millis())?;
                    let url = format!(
                        "{}/dash/v1/getDASHManifest.mpd?SessionToken={token}",
                        self.endpoint(&parts)?
                    );
                    serde_json::json!({ "DASHStreamingSessionURL": url })
                }
                other => return Err(ApiError::unknown_operation(other.trim_start_matches('/'))),
            };
            Ok(Output::Json(json))
        });
        self.inner
            .storage
            .durable(mark)
            .await
            .map_err(ApiError::not_durable)?;
        output
    }

    /// Every data-plane API is served by this broker, at the address the client reached it by.
    fn data_endpoint(
        &self,
        parts: &http::request::Parts,
        input: api::GetDataEndpointInput,
    ) -> ApiResult<Value> {
        const API_NAMES: [&str; 8] = [
            "PUT_MEDIA",
            "GET_MEDIA",
            "LIST_FRAGMENTS",
            "GET_MEDIA_FOR_FRAGMENT_LIST",
            "GET_HLS_STREAMING_SESSION_URL",
            "GET_DASH_STREAMING_SESSION_URL",
            "GET_CLIP",
            "GET_IMAGES",
        ];
        match input.api_name.as_deref() {
            Some(name) if API_NAMES.contains(&name) => {}
            other => {
                return Err(api::invalid_argument(format!(
                    "APIName {} is not one of {}.",
                    other.unwrap_or("null"),
                    API_NAMES.join(", ")
                )));
            }
        }
        self.inner.streams.get(&input.stream)?;
        Ok(serde_json::json!({ "DataEndpoint": self.endpoint(parts)? }))
    }

    /// This broker's URL as the client reached it.
    fn endpoint(&self, parts: &http::request::Parts) -> ApiResult<String> {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .ok_or_else(|| api::invalid_argument("The request has no Host header."))?;
        Ok(format!("{}://{host}", self.inner.scheme))
    }
}

impl hls::StreamLookup for Video {
    fn fragments(&self, stream: &api::StreamRef) -> ApiResult<Arc<fragments::FragmentStore>> {
        self.readable(stream).map(|s| s.fragments)
    }
}

/// A PutMedia body passed on only as far as it is verified: unsigned pieces as they come,
/// signed chunks once each has matched its signature. A piece that fails its check ends the
/// body with that error, which the ingest acks as a read error, dropping the fragment it was
/// in; nothing of it reaches the ingest.
fn checked_body(body: Body, check: sigv4::PayloadCheck) -> Body {
    let pieces =
        futures::stream::unfold(Some((body.into_data_stream(), check)), |state| async move {
            let (mut data, mut check) = state?;
            let refused = |err: ApiError| Err(Box::new(err) as axum::BoxError);
            match futures::StreamExt::next(&mut data).await {
                Some(Ok(piece)) => match check.push(piece) {
                    Ok(payload) => Some((Ok(payload), Some((data, check)))),
                    Err(err) => Some((refused(err), None)),
                },
                Some(Err(err)) => Some((Err(Box::new(err) as axum::BoxError), None)),
                None => check.finish().err().map(|err| (refused(err), None)),
            }
        });
    Body::from_stream(pieces)
}

/// A 200 response carrying media of `content_type`.
fn media_response(content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

/// The REST-JSON error shape: the code in `x-amzn-ErrorType`, `{"Message"}` in the body.
fn error_response(path: &str, request_id: &str, err: ApiError) -> Response {
    if err.status.is_server_error() {
        tracing::error!(%path, code = err.code, message = %err.message, "video request failed");
    } else {
        tracing::debug!(%path, code = err.code, message = %err.message, "video request rejected");
    }
    let body = serde_json::json!({ "Message": err.message });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = if err.code == "UnknownOperationException" {
        StatusCode::BAD_REQUEST
    } else {
        err.status
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(code) = HeaderValue::from_str(err.code) {
        headers.insert("x-amzn-errortype", code);
    }
    with_request_id(response, request_id)
}
