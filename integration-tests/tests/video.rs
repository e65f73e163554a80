//! Kinesis Video Streams over HTTP: REST-JSON errors, PutMedia acks streamed while the chunked
//! body is still being sent, and GetMedia reading the fragments back.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use local_broker::video::mkv::{Track, Tracks, write};
use std::time::SystemTime;

/// An H.264 track header and `(timecode, frames)` clusters, written like KVS producers do.
fn mkv_header() -> Vec<u8> {
    let track = Track {
        number: 1,
        track_type: 1,
        codec_id: "V_MPEG4/ISO/AVC".into(),
        codec_private: Bytes::from_static(&[1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 0]),
        width: 64,
        height: 48,
        sample_rate: 0,
        channels: 0,
    };
    let raw = Bytes::from(write::tracks_data(std::slice::from_ref(&track)));
    let mut out = Vec::new();
    write::ebml_header(&mut out);
    write::segment_start(
        &mut out,
        "test",
        &Tracks {
            tracks: vec![track],
            raw,
        },
    );
    out
}

fn mkv_cluster(timecode: u64, frames: u8) -> Vec<u8> {
    let mut out = Vec::new();
    write::cluster_start(&mut out, timecode);
    for i in 0..frames {
        let flags = if i == 0 { 0x80 } else { 0 };
        write::simple_block(
            &mut out,
            1,
            i16::from(i) * 40,
            flags,
            &[0, 0, 0, 2, 0x65, i],
        );
    }
    out
}

/// An HTTP/1.1 connection to the broker, and the `host` to send.
async fn connect<B>(endpoint: &str) -> (hyper::client::conn::http1::SendRequest<B>, String)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let authority = endpoint.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    (send, authority)
}

async fn post(
    endpoint: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, hyper::HeaderMap, Bytes) {
    post_as(endpoint, path, body, None).await
}

/// [`post`], signed by [`KEY`] with `secret` when given.
async fn post_as(
    endpoint: &str,
    path: &str,
    body: serde_json::Value,
    secret: Option<&str>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let body = Bytes::from(body.to_string());
    let mut request = hyper::Request::post(path)
        .header("host", authority(endpoint))
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    if let Some(secret) = secret {
        Signer::now(secret).sign(&mut request, SignableBody::Bytes(&body));
    }
    send(endpoint, request).await
}

/// [`post`] of a call that must succeed; answers its body.
async fn post_ok(endpoint: &str, path: &str, body: serde_json::Value) -> Bytes {
    let (status, _, answer) = post(endpoint, path, body).await;
    assert_eq!(status, 200, "{path}: {answer:?}");
    answer
}

/// [`post_ok`] of a call answering JSON.
async fn post_json(endpoint: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    serde_json::from_slice(&post_ok(endpoint, path, body).await).unwrap()
}

fn authority(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

/// Sends one request on a new connection; answers its status, headers and whole body.
async fn send(
    endpoint: &str,
    request: hyper::Request<Full<Bytes>>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let (mut send, _) = connect(endpoint).await;
    let response = send.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, bytes)
}

/// The access key of the brokers started with SigV4 on, and its secret.
const KEY: &str = "AKIDVIDEO";
const SECRET: &str = "video-secret";

/// Signs requests as KVS clients do: SigV4 with the signing name `kinesisvideo` (all three KVS
/// APIs use it), at one instant so signed chunks chain from the request's signature.
struct Signer<'a> {
    secret: &'a str,
    time: SystemTime,
}

impl<'a> Signer<'a> {
    fn now(secret: &'a str) -> Self {
        Self {
            secret,
            time: SystemTime::now(),
        }
    }

    /// Signs `request` with its payload as `payload` (sent in `x-amz-content-sha256` unless it
    /// is the body's own hash); answers the request's signature.
    fn sign<B>(&self, request: &mut hyper::Request<B>, payload: SignableBody<'_>) -> String {
        let identity = Credentials::new(KEY, self.secret, None, None, "video-auth").into();
        let mut settings = SigningSettings::default();
        if !matches!(payload, SignableBody::Bytes(_)) {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("kinesisvideo")
            .time(self.time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            request.uri().to_string(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            payload,
        )
        .unwrap();
        let (instructions, signature) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(request);
        signature
    }

    /// `pieces` as an `aws-chunked` body, each chunk signed after the one before, the first
    /// after the request's `signature`.
    fn chunked(&self, mut signature: String, pieces: &[&[u8]]) -> Vec<u8> {
        let identity = Credentials::new(KEY, self.secret, None, None, "video-auth").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("kinesisvideo")
            .time(self.time)
            .settings(())
            .build()
            .unwrap();
        let mut body = Vec::new();
        for piece in pieces.iter().copied().chain([&[][..]]) {
            let chunk = Bytes::copy_from_slice(piece);
            signature = v4::sign_chunk(&chunk, &signature, &params)
                .unwrap()
                .into_parts()
                .1;
            body.extend_from_slice(
                format!("{:x};chunk-signature={signature}\r\n", piece.len()).as_bytes(),
            );
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
        body
    }
}

#[tokio::test]
async fn errors_are_rest_json_with_the_code_in_x_amzn_errortype() {
    let broker = local_broker::LocalBroker::builder().start().await.unwrap();
    let endpoint = broker.endpoint();
    let (status, headers, body) = post(
        &endpoint,
        "/describeStream",
        serde_json::json!({"StreamName": "missing"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-amzn-errortype"], "ResourceNotFoundException");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["Message"].as_str().unwrap().contains("missing"));
    let (status, headers, _) =
        post(&endpoint, "/createSignalingChannel", serde_json::json!({})).await;
    assert_eq!(
        (status, &headers["x-amzn-errortype"]),
        (400, &"UnknownOperationException".parse().unwrap())
    );
    let (status, _, body) = post(
        &endpoint,
        "/getDataEndpoint",
        serde_json::json!({"StreamName": "missing", "APIName": "PUT_MEDIA"}),
    )
    .await;
    assert_eq!(status, 404, "{body:?}");
    broker.shutdown().await;
}

/// A broker requiring SigV4 from [`KEY`], with a stream `cam` that keeps data.
async fn broker_with_auth() -> local_broker::RunningBroker {
    let broker = local_broker::LocalBroker::builder()
        .auth(local_broker::Credentials::new().with(KEY, SECRET))
        .start()
        .await
        .unwrap();
    let (status, _, body) = post_as(
        &broker.endpoint(),
        "/createStream",
        serde_json::json!({"StreamName": "cam", "DataRetentionInHours": 1}),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    broker
}

/// ListFragments input for every fragment `stream` holds.
fn list_all(stream: &str) -> serde_json::Value {
    serde_json::json!({"StreamName": stream, "FragmentSelector": {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": 4_000_000_000u64},
    }})
}

/// Asserts a refusal's status and `x-amzn-ErrorType`, and that it is the REST-JSON shape.
fn assert_refused(answer: &(u16, hyper::HeaderMap, Bytes), status: u16, code: &str) {
    let (actual, headers, body) = answer;
    assert_eq!(
        (*actual, headers["x-amzn-errortype"].to_str().unwrap()),
        (status, code),
        "{body:?}"
    );
    let body: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert!(body["Message"].is_string(), "{body}");
}

#[tokio::test]
async fn with_auth_on_control_and_archived_media_calls_need_a_valid_signature() {
    let broker = broker_with_auth().await;
    let endpoint = broker.endpoint();
    let describe = serde_json::json!({"StreamName": "cam"});
    let (status, _, body) =
        post_as(&endpoint, "/describeStream", describe.clone(), Some(SECRET)).await;
    assert_eq!(status, 200, "{body:?}");
    let answer = post_as(
        &endpoint,
        "/describeStream",
        describe.clone(),
        Some("wrong"),
    )
    .await;
    assert_refused(&answer, 403, "InvalidSignatureException");
    let answer = post(&endpoint, "/describeStream", describe).await;
    assert_refused(&answer, 403, "MissingAuthenticationTokenException");

    let mut stranger = hyper::Request::post("/listStreams")
        .header("host", authority(&endpoint))
        .body(Full::new(Bytes::new()))
        .unwrap();
    Signer::now(SECRET).sign(&mut stranger, SignableBody::Bytes(b""));
    let signed = stranger.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    stranger.headers_mut().insert(
        "authorization",
        signed.replace(KEY, "AKIDSTRANGER").parse().unwrap(),
    );
    assert_refused(
        &send(&endpoint, stranger).await,
        403,
        "UnrecognizedClientException",
    );

    // The archived-media and media APIs are checked the same way.
    let list = list_all("cam");
    let (status, _, body) = post_as(&endpoint, "/listFragments", list.clone(), Some(SECRET)).await;
    assert_eq!(status, 200, "{body:?}");
    let answer = post_as(&endpoint, "/listFragments", list, Some("wrong")).await;
    assert_refused(&answer, 403, "InvalidSignatureException");
    let get_media = serde_json::json!({"StreamName": "cam", "StartSelector": {"StartSelectorType": "EARLIEST"}});
    let answer = post_as(&endpoint, "/getMedia", get_media, Some("wrong")).await;
    assert_refused(&answer, 403, "InvalidSignatureException");
    let session = serde_json::json!({"StreamName": "cam"});
    let answer = post_as(&endpoint, "/getHLSStreamingSessionURL", session, None).await;
    assert_refused(&answer, 403, "MissingAuthenticationTokenException");
    broker.shutdown().await;
}

#[tokio::test]
async fn with_auth_on_put_media_is_verified_before_any_ack_and_hls_needs_its_session_token() {
    let broker = broker_with_auth().await;
    let endpoint = broker.endpoint();
    let mut body = mkv_header();
    body.extend(mkv_cluster(0, 25));

    // The header signature is checked before the stream is even looked up.
    let answer = send(&endpoint, put_media_request(&endpoint, "cam", body.clone())).await;
    assert_refused(&answer, 403, "MissingAuthenticationTokenException");
    let mut request = put_media_request(&endpoint, "cam", body.clone());
    Signer::now("wrong").sign(&mut request, SignableBody::UnsignedPayload);
    assert_refused(
        &send(&endpoint, request).await,
        403,
        "InvalidSignatureException",
    );

    // A body still arriving cannot be held until its SHA-256 is known: a declared digest is
    // refused before any ack, and an undeclared payload hash must be UNSIGNED-PAYLOAD.
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let mut request = put_media_request(&endpoint, "cam", body.clone());
    Signer::now(SECRET).sign(&mut request, SignableBody::Precomputed(EMPTY_SHA256.into()));
    let answer = send(&endpoint, request).await;
    assert_refused(&answer, 403, "IncompleteSignatureException");
    assert!(
        String::from_utf8_lossy(&answer.2).contains("UNSIGNED-PAYLOAD"),
        "{answer:?}"
    );
    let mut request = put_media_request(&endpoint, "cam", body.clone());
    Signer::now(SECRET).sign(&mut request, SignableBody::Bytes(b""));
    assert_refused(
        &send(&endpoint, request).await,
        403,
        "InvalidSignatureException",
    );

    // A producer that leaves the payload unsigned, as the KVS producer SDKs do.
    let mut request = put_media_request(&endpoint, "cam", body.clone());
    Signer::now(SECRET).sign(&mut request, SignableBody::UnsignedPayload);
    assert_eq!(
        acked_events(&endpoint, request).await,
        ["BUFFERING", "RECEIVED", "PERSISTED"]
    );

    // Signed chunks: each verified as it arrives; the clusters split across chunks anywhere.
    let mut second = mkv_header();
    second.extend(mkv_cluster(2000, 25));
    let (left, right) = second.split_at(second.len() / 3);
    let signer = Signer::now(SECRET);
    let mut request = put_media_request(&endpoint, "cam", Vec::new());
    let headers = request.headers_mut();
    headers.insert("content-encoding", "aws-chunked".parse().unwrap());
    headers.insert("x-amz-decoded-content-length", second.len().into());
    let seed = signer.sign(
        &mut request,
        SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()),
    );
    let chunked = signer.chunked(seed.clone(), &[left, right]);
    *request.body_mut() = Full::new(Bytes::from(chunked.clone()));
    assert_eq!(
        acked_events(&endpoint, request.clone()).await,
        ["BUFFERING", "RECEIVED", "PERSISTED"]
    );

    // A chunk altered in transit cuts the body off before it with an error ack. The Cluster
    // (its timecode too) is in that chunk, so however the body is split in transit nothing of
    // it is buffered or stored.
    let mut altered = chunked;
    let in_right = altered.len() - 100;
    altered[in_right] ^= 1;
    *request.body_mut() = Full::new(Bytes::from(altered));
    let (status, _, acks) = send(&endpoint, request).await;
    assert_eq!(status, 200);
    let acks = parse_acks(&acks);
    let events: Vec<_> = acks
        .iter()
        .map(|a| (a["EventType"].as_str(), a["ErrorId"].as_u64()))
        .collect();
    assert_eq!(events, [(Some("ERROR"), Some(4000))], "{acks:?}");

    let (status, _, listed) =
        post_as(&endpoint, "/listFragments", list_all("cam"), Some(SECRET)).await;
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(listed["Fragments"].as_array().unwrap().len(), 2, "{listed}");

    // HLS resources are authorised by the session token in their URL, not by SigV4.
    let (status, _, body) = post_as(
        &endpoint,
        "/getHLSStreamingSessionURL",
        serde_json::json!({"StreamName": "cam", "PlaybackMode": "LIVE"}),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    let session: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let url = session["HLSStreamingSessionURL"].as_str().unwrap();
    let path = url.strip_prefix(endpoint.as_str()).unwrap();
    let get = |path: String| {
        hyper::Request::get(path)
            .header("host", authority(&endpoint))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (status, _, playlist) = send(&endpoint, get(path.to_owned())).await;
    assert_eq!(status, 200);
    assert!(playlist.starts_with(b"#EXTM3U"));
    let bogus = "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=hls-bogus";
    let answer = send(&endpoint, get(bogus.to_owned())).await;
    assert_refused(&answer, 401, "NotAuthorizedException");
    let answer = send(
        &endpoint,
        get("/hls/v1/getHLSMasterPlaylist.m3u8".to_owned()),
    )
    .await;
    assert_refused(&answer, 401, "NotAuthorizedException");
    // A valid signature is no substitute for the token.
    let mut signed = get(bogus.to_owned());
    Signer::now(SECRET).sign(&mut signed, SignableBody::Bytes(b""));
    assert_refused(
        &send(&endpoint, signed).await,
        401,
        "NotAuthorizedException",
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn put_media_acks_stream_while_the_body_is_sent_and_get_media_reads_it_back() {
    let broker = local_broker::LocalBroker::builder().start().await.unwrap();
    let endpoint = broker.endpoint();
    post_ok(
        &endpoint,
        "/createStream",
        serde_json::json!({"StreamName": "cam", "DataRetentionInHours": 1}),
    )
    .await;
    let data = post_json(
        &endpoint,
        "/getDataEndpoint",
        serde_json::json!({"StreamName": "cam", "APIName": "PUT_MEDIA"}),
    )
    .await;
    assert_eq!(data["DataEndpoint"], endpoint.as_str());

    let (mut send, authority) = connect(&endpoint).await;
    let (mut pieces, receiver) =
        futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let request = hyper::Request::post("/putMedia")
        .header("host", &authority)
        .header("x-amzn-stream-name", "cam")
        .header("x-amzn-fragment-timecode-type", "RELATIVE")
        .header("x-amzn-producer-start-timestamp", "1700000000.000")
        .body(StreamBody::new(receiver))
        .unwrap();
    let mut first = mkv_header();
    first.extend(mkv_cluster(0, 25));
    // An unknown-size Cluster ends when the next one's header (ID and size, 12 bytes) arrives.
    let second = mkv_cluster(1000, 25);
    first.extend_from_slice(&second[..12]);
    pieces
        .send(Ok(Frame::data(Bytes::from(first))))
        .await
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut acks = response.into_body().into_data_stream();
    let mut lines = String::new();
    while !lines.contains("PERSISTED") {
        let chunk = acks.next().await.unwrap().unwrap();
        lines.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    // The first fragment is persisted while the body is still open.
    pieces
        .send(Ok(Frame::data(Bytes::copy_from_slice(&second[12..]))))
        .await
        .unwrap();
    drop(pieces);
    while let Some(chunk) = acks.next().await {
        lines.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let events: Vec<(String, u64)> = lines
        .lines()
        .map(|line| {
            let ack: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(ack["FragmentNumber"].is_string(), "{lines}");
            (
                ack["EventType"].as_str().unwrap().to_owned(),
                ack["FragmentTimecode"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [0, 1000]
        .into_iter()
        .flat_map(|t| ["BUFFERING", "RECEIVED", "PERSISTED"].map(|e| (e.to_owned(), t)))
        .collect();
    assert_eq!(events, expected);

    let (status, headers, payload) = post(
        &endpoint,
        "/getMedia",
        serde_json::json!({"StreamName": "cam", "StartSelector": {"StartSelectorType": "EARLIEST"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "video/webm");
    let chunks = payload
        .windows(4)
        .filter(|w| *w == [0x1A, 0x45, 0xDF, 0xA3])
        .count();
    assert_eq!(chunks, 2, "one MKV document per fragment");
    let producer = b"AWS_KINESISVIDEO_PRODUCER_TIMESTAMP";
    assert!(payload.windows(producer.len()).any(|w| w == producer));
    let first_time = b"1700000000.000";
    assert!(payload.windows(first_time.len()).any(|w| w == first_time));
    broker.shutdown().await;
}

/// Sends `body` as one PutMedia request and returns the acknowledgement event types.
async fn put_media(endpoint: &str, stream: &str, body: Vec<u8>) -> Vec<String> {
    acked_events(endpoint, put_media_request(endpoint, stream, body)).await
}

/// Sends a PutMedia request and returns the acknowledgement event types.
async fn acked_events(endpoint: &str, request: hyper::Request<Full<Bytes>>) -> Vec<String> {
    let (status, _, acks) = send(endpoint, request).await;
    assert_eq!(status, 200);
    parse_acks(&acks)
        .iter()
        .map(|ack| ack["EventType"].as_str().unwrap().to_owned())
        .collect()
}

/// A PutMedia request for `stream` carrying `body` (RELATIVE timecodes from 1700000000 s).
fn put_media_request(endpoint: &str, stream: &str, body: Vec<u8>) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post("/putMedia")
        .header("host", authority(endpoint))
        .header("x-amzn-stream-name", stream)
        .header("x-amzn-fragment-timecode-type", "RELATIVE")
        .header("x-amzn-producer-start-timestamp", "1700000000.000")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The acknowledgements of a PutMedia response: one JSON object a line.
fn parse_acks(body: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Every frame of a GetMedia-style payload as `(cluster timecode, track, block timecode, bytes)`.
fn frames_of(payload: &[u8]) -> Vec<(u64, u64, i16, Bytes)> {
    use local_broker::video::mkv::{Demuxer, Event};
    let mut demuxer = Demuxer::new(1 << 20);
    let mut events = Vec::new();
    demuxer.push(payload, &mut events).unwrap();
    demuxer.finish(&mut events).unwrap();
    let mut cluster = 0;
    let mut frames = Vec::new();
    for event in events {
        match event {
            Event::ClusterTimecode(timecode) => cluster = timecode,
            Event::Block(block) => frames.push((cluster, block.track, block.timecode, block.frame)),
            _ => {}
        }
    }
    frames
}

/// What a stream holds, read through ListFragments, GetMediaForFragmentList, GetMedia and
/// GetClip.
#[derive(Debug, PartialEq)]
struct Archived {
    listed: serde_json::Value,
    fragment_list_frames: Vec<(u64, u64, i16, Bytes)>,
    get_media_frames: Vec<(u64, u64, i16, Bytes)>,
    clip: Bytes,
}

async fn archived(endpoint: &str, stream: &str) -> Archived {
    // The producer timestamps put_media sends, within the 24 hours GetClip allows.
    let range = serde_json::json!({
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": 1_700_000_000u64, "EndTimestamp": 1_700_003_600u64},
    });
    let listed = post_json(
        endpoint,
        "/listFragments",
        serde_json::json!({"StreamName": stream, "FragmentSelector": range}),
    )
    .await;
    let mut listed = listed["Fragments"].clone();
    listed
        .as_array_mut()
        .unwrap()
        .sort_by_key(|f| f["FragmentNumber"].as_str().unwrap().to_owned());
    let numbers: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FragmentNumber"].as_str().unwrap())
        .collect();
    let fragment_list_frames = frames_of(
        &post_ok(
            endpoint,
            "/getMediaForFragmentList",
            serde_json::json!({"StreamName": stream, "Fragments": numbers}),
        )
        .await,
    );
    let get_media_frames = frames_of(
        &post_ok(
            endpoint,
            "/getMedia",
            serde_json::json!({"StreamName": stream, "StartSelector": {"StartSelectorType": "EARLIEST"}}),
        )
        .await,
    );
    let clip = post_ok(
        endpoint,
        "/getClip",
        serde_json::json!({"StreamName": stream, "ClipFragmentSelector": range}),
    )
    .await;
    Archived {
        listed,
        fragment_list_frames,
        get_media_frames,
        clip,
    }
}

/// Total bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> usize {
    integration_tests::files_under(dir)
        .iter()
        .map(|(_, contents)| contents.len())
        .sum()
}

#[tokio::test]
async fn fragments_survive_a_restart_and_deleted_or_unretained_streams_keep_none() {
    let dir = integration_tests::TempDir::new("video-restart");
    let start = || {
        local_broker::LocalBroker::builder()
            .data_dir(&dir.0)
            .sync(local_broker::SyncMode::Always)
            .start()
    };
    let broker = start().await.unwrap();
    let endpoint = broker.endpoint();
    for (name, hours) in [("cam", 2), ("gone", 1), ("live", 0)] {
        post_ok(
            &endpoint,
            "/createStream",
            serde_json::json!({"StreamName": name, "DataRetentionInHours": hours, "Tags": {"k": name}}),
        )
        .await;
    }
    let mut body = mkv_header();
    for second in 0..3 {
        body.extend(mkv_cluster(second * 1000, 25));
    }
    let persisted = ["BUFFERING", "RECEIVED", "PERSISTED"].repeat(3);
    assert_eq!(put_media(&endpoint, "cam", body.clone()).await, persisted);
    assert_eq!(put_media(&endpoint, "gone", body.clone()).await, persisted);
    let before = archived(&endpoint, "cam").await;
    assert_eq!(before.listed.as_array().unwrap().len(), 3);
    assert_eq!(before.get_media_frames.len(), 75);
    assert_eq!(before.fragment_list_frames, before.get_media_frames);

    // A stream without retention keeps its short buffer in memory only.
    let logged = bytes_under(&dir.0.join("video"));
    assert_eq!(
        put_media(&endpoint, "live", body.clone()).await,
        ["BUFFERING", "RECEIVED"].repeat(3)
    );
    assert_eq!(bytes_under(&dir.0.join("video")), logged);

    // Deleted, then re-created under the same name: the old fragments are not the new stream's.
    let described = post_json(
        &endpoint,
        "/describeStream",
        serde_json::json!({"StreamName": "gone"}),
    )
    .await;
    let arn = described["StreamInfo"]["StreamARN"].clone();
    post_ok(
        &endpoint,
        "/deleteStream",
        serde_json::json!({"StreamARN": arn}),
    )
    .await;
    broker.shutdown().await;

    let broker = start().await.unwrap();
    let endpoint = broker.endpoint();
    assert_eq!(archived(&endpoint, "cam").await, before);
    let tags = post_json(
        &endpoint,
        "/listTagsForStream",
        serde_json::json!({"StreamName": "cam"}),
    )
    .await;
    assert_eq!(tags["Tags"], serde_json::json!({"k": "cam"}));
    let (status, _, _) = post(
        &endpoint,
        "/describeStream",
        serde_json::json!({"StreamName": "gone"}),
    )
    .await;
    assert_eq!(status, 404, "a deleted stream stays deleted");
    post_ok(
        &endpoint,
        "/createStream",
        serde_json::json!({"StreamName": "gone", "DataRetentionInHours": 1}),
    )
    .await;
    for name in ["gone", "live"] {
        let listed = post_json(&endpoint, "/listFragments", list_all(name)).await;
        assert_eq!(listed["Fragments"], serde_json::json!([]), "{name}");
    }
    // New fragments get numbers after the recovered ones.
    assert_eq!(put_media(&endpoint, "cam", body).await, persisted);
    let after = archived(&endpoint, "cam").await;
    assert_eq!(after.listed.as_array().unwrap().len(), 6);
    assert_eq!(
        after.listed.as_array().unwrap()[..3],
        before.listed.as_array().unwrap()[..]
    );
    broker.shutdown().await;
}
