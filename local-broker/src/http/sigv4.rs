//! AWS Signature Version 4 verification, for a broker that is reachable by more than its owner.
//!
//! Off by default (any signature is accepted, as every local peer does). When credentials are
//! configured, every request must carry a valid signature — in the `Authorization` header or as a
//! presigned query — from a known access key, dated within five minutes of the broker's clock.
//! Failures answer the errors AWS answers, so clients report them the same way.
//!
//! A body sent in signed chunks (`x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD`,
//! `Content-Encoding: aws-chunked`) has every chunk's signature checked, each chained to the one
//! before it starting from the request's signature, and is decoded for the operation.
//!
//! A body too long to read before answering (Kinesis Video PutMedia) is verified by its headers
//! first ([`Credentials::verify_streamed`]) and then piece by piece as it arrives
//! ([`PayloadCheck`]). Such a body must be sent unsigned or in signed chunks: a SHA-256 of the
//! whole body could only be checked once it ended, after its pieces had been acted on.

use super::error::ApiError;
use crate::clock::{civil_from_days, days_from_civil};
use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How far a request's date may be from the broker's clock.
const MAX_SKEW_MS: i64 = 5 * 60 * 1000;
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash that announces a body in signed chunks.
const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// The payload hash of a body the signature does not cover.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Access key id → secret access key.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    secrets: BTreeMap<String, String>,
}

impl Credentials {
    /// No credentials yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an access key and its secret.
    pub fn with(mut self, access_key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.secrets.insert(access_key_id.into(), secret.into());
        self
    }

    /// Parses `ACCESS_KEY_ID:SECRET`, the command line's form.
    pub fn parse_pair(pair: &str) -> Option<(String, String)> {
        let (id, secret) = pair.split_once(':')?;
        (!id.is_empty() && !secret.is_empty()).then(|| (id.to_owned(), secret.to_owned()))
    }
}

/// The parts of a request a signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    /// `Host` for HTTP/1.1, the `:authority` for HTTP/2.
    pub host: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    /// The signed parts of a request whose body has been read.
    pub fn new(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        Self {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            host: parts.uri.authority().map(|a| a.as_str()),
            body,
        }
    }
}

/// The fields of a signature, from the header or the query.
struct Signature {
    access_key: String,
    scope: String,
    date: String,
    signed_headers: Vec<String>,
    signature: String,
    presigned_expires: Option<i64>,
}

fn missing_token() -> ApiError {
    ApiError::new(
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
    .with_status(StatusCode::FORBIDDEN)
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::new("IncompleteSignatureException", message).with_status(StatusCode::FORBIDDEN)
}

fn invalid_signature(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidSignatureException", message)
}

/// A request whose headers carry a valid signature, and what its body was signed as.
struct Authenticated {
    signing_key: Vec<u8>,
    date: String,
    scope: String,
    /// The request's own signature, which the first signed chunk chains from.
    signature: String,
    /// The payload hash the signature covers: a SHA-256, `UNSIGNED-PAYLOAD` or
    /// [`STREAMING_PAYLOAD`].
    payload_hash: String,
}

impl Credentials {
    /// Verifies a request's signature at `now_ms`. A body in signed chunks comes back decoded
    /// (`Some`); any other body is the payload as sent (`None`). A declared SHA-256 must be the
    /// body's: the signature covers the declared hash, not the body itself.
    pub fn verify(
        &self,
        request: &SignedRequest<'_>,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let authenticated = self.authenticate(request, now_ms, false)?;
        match authenticated.payload_hash.as_str() {
            STREAMING_PAYLOAD => {}
            UNSIGNED_PAYLOAD => return Ok(None),
            declared => {
                let computed = hex(&Sha256::digest(request.body));
                if !constant_time_eq(
                    computed.as_bytes(),
                    declared.to_ascii_lowercase().as_bytes(),
                ) {
                    return Err(invalid_signature(
                        "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    ));
                }
                return Ok(None);
            }
        }
        let mut chunks = ChunkChain::new(authenticated, request.headers)?;
        let decoded = chunks.push(request.body)?;
        chunks.finish()?;
        Ok(Some(decoded))
    }

    /// Verifies the signature of a request whose body is still arriving (PutMedia streams for
    /// as long as the producer records), from its headers alone. The payload must be signed as
    /// `UNSIGNED-PAYLOAD` (declared or not) or in signed chunks, which the answer checks piece by
    /// piece as they arrive. A declared SHA-256 of the whole body is refused up front: it could
    /// only be compared when the body ends, after its pieces were stored and acknowledged.
    pub fn verify_streamed(
        &self,
        request: &SignedRequest<'_>,
        now_ms: i64,
    ) -> Result<PayloadCheck, ApiError> {
        let authenticated = self.authenticate(request, now_ms, true)?;
        let check = match authenticated.payload_hash.as_str() {
            STREAMING_PAYLOAD => {
                Check::Chunked(Box::new(ChunkChain::new(authenticated, request.headers)?))
            }
            UNSIGNED_PAYLOAD => Check::Unsigned,
            hash => {
                return Err(incomplete(format!(
                    "x-amz-content-sha256 {hash} is not supported on a streamed body, which \
                     cannot be held until its hash is known: sign the payload as \
                     {UNSIGNED_PAYLOAD} or in signed chunks ({STREAMING_PAYLOAD})."
                )));
            }
        };
        Ok(PayloadCheck(check))
    }

    /// Checks the key, the date and the header (or query) signature against every payload hash
    /// the request may have been signed with. `streamed`: the body has not been read, so an
    /// undeclared payload hash can only be `UNSIGNED-PAYLOAD`.
    fn authenticate(
        &self,
        request: &SignedRequest<'_>,
        now_ms: i64,
        streamed: bool,
    ) -> Result<Authenticated, ApiError> {
        let signature = parse(request)?;
        let secret = self.secrets.get(&signature.access_key).ok_or_else(|| {
            ApiError::new(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        })?;
        let signed_at = parse_amz_date(&signature.date)
            .ok_or_else(|| incomplete(format!("Invalid X-Amz-Date: {}", signature.date)))?;
        if let Some(expires) = signature.presigned_expires {
            if now_ms > signed_at + expires * 1000 {
                return Err(invalid_signature(
                    "Signature expired: the presigned request has expired.",
                ));
            }
        } else if (now_ms - signed_at).abs() > MAX_SKEW_MS {
            return Err(invalid_signature(format!(
                "Signature expired: {} is now earlier than {} ({} - 5 min.)",
                signature.date,
                format_amz_date(now_ms - MAX_SKEW_MS),
                format_amz_date(now_ms)
            )));
        }
        let scope_parts: Vec<&str> = signature.scope.split('/').collect();
        let [day, region, service, terminator] = scope_parts[..] else {
            return Err(incomplete(format!(
                "Credential scope {} is malformed.",
                signature.scope
            )));
        };
        if terminator != "aws4_request" || !signature.date.starts_with(day) {
            return Err(invalid_signature(format!(
                "Credential should be scoped to a valid date and end in aws4_request: {}",
                signature.scope
            )));
        }
        let signing_key = {
            let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
            let k_region = hmac(&k_date, region.as_bytes());
            let k_service = hmac(&k_region, service.as_bytes());
            hmac(&k_service, terminator.as_bytes())
        };
        let payload_hashes: Vec<String> = match request
            .headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
        {
            Some(declared) => vec![declared.to_owned()],
            None if streamed => vec![UNSIGNED_PAYLOAD.to_owned()],
            None if signature.presigned_expires.is_some() => {
                vec![
                    hex(&Sha256::digest(request.body)),
                    UNSIGNED_PAYLOAD.to_owned(),
                ]
            }
            None => vec![hex(&Sha256::digest(request.body))],
        };
        for payload_hash in payload_hashes {
            let canonical = canonical_request(request, &signature, &payload_hash)?;
            let string_to_sign = format!(
                "{ALGORITHM}\n{}\n{}\n{}",
                signature.date,
                signature.scope,
                hex(&Sha256::digest(canonical.as_bytes()))
            );
            let expected = hex(&hmac(&signing_key, string_to_sign.as_bytes()));
            if constant_time_eq(expected.as_bytes(), signature.signature.as_bytes()) {
                return Ok(Authenticated {
                    signing_key,
                    date: signature.date,
                    scope: signature.scope,
                    signature: expected,
                    payload_hash,
                });
            }
        }
        Err(invalid_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    }
}

/// The body check of a request verified by its headers ([`Credentials::verify_streamed`]):
/// feed it the body as it arrives, and tell it when the body ends.
pub struct PayloadCheck(Check);

enum Check {
    /// Nothing to check: the producer did not sign the payload.
    Unsigned,
    /// Signed chunks, each checked as it completes.
    Chunked(Box<ChunkChain>),
}

impl PayloadCheck {
    /// Takes the next piece of the body as sent; answers the payload it completes (chunk
    /// framing removed), or why the body is refused.
    pub fn push(&mut self, data: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
        match &mut self.0 {
            Check::Unsigned => Ok(data),
            Check::Chunked(chunks) => chunks.push(&data).map(bytes::Bytes::from),
        }
    }

    /// The body ended: succeeds only if all of it was as signed.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0 {
            Check::Unsigned => Ok(()),
            Check::Chunked(chunks) => chunks.finish(),
        }
    }
}

/// Verifies and decodes an `aws-chunked` body: `SIZE_HEX;chunk-signature=SIG\r\nDATA\r\n`
/// repeated, ending with a zero-size chunk. Each signature covers the chunk's data and the
/// signature before it, so chunks cannot be dropped, reordered or altered. The body may arrive
/// split anywhere; an incomplete chunk waits for the rest.
struct ChunkChain {
    signing_key: Vec<u8>,
    date: String,
    scope: String,
    previous: String,
    /// The start of a chunk whose end has not arrived.
    pending: Vec<u8>,
    /// The zero-size chunk has been seen.
    ended: bool,
    decoded_length: usize,
    /// `x-amz-decoded-content-length`, when sent.
    declared_length: Option<usize>,
}

/// Longest chunk header (`SIZE_HEX;chunk-signature=SIG`) accepted.
const MAX_CHUNK_HEADER: usize = 256;

impl ChunkChain {
    fn new(authenticated: Authenticated, headers: &http::HeaderMap) -> Result<Self, ApiError> {
        let declared_length = headers
            .get("x-amz-decoded-content-length")
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| {
                        invalid_signature("X-Amz-Decoded-Content-Length must be a number of bytes.")
                    })
            })
            .transpose()?;
        Ok(Self {
            signing_key: authenticated.signing_key,
            date: authenticated.date,
            scope: authenticated.scope,
            previous: authenticated.signature,
            pending: Vec::new(),
            ended: false,
            decoded_length: 0,
            declared_length,
        })
    }

    /// Takes the next piece of the body; answers the data of the chunks it completes.
    fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, ApiError> {
        let malformed = || incomplete("The aws-chunked body is malformed.");
        let empty_hash = hex(&Sha256::digest(b""));
        self.pending.extend_from_slice(data);
        let mut decoded = Vec::new();
        let mut consumed = 0;
        while consumed < self.pending.len() {
            if self.ended {
                return Err(malformed());
            }
            let rest = &self.pending[consumed..];
            let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
                if rest.len() > MAX_CHUNK_HEADER {
                    return Err(malformed());
                }
                break;
            };
            let header = std::str::from_utf8(&rest[..line_end]).map_err(|_| malformed())?;
            let (size, signature) = header
                .split_once(";chunk-signature=")
                .ok_or_else(malformed)?;
            let size = usize::from_str_radix(size, 16).map_err(|_| malformed())?;
            if size > super::MAX_REQUEST_BYTES {
                return Err(malformed());
            }
            let data_start = line_end + 2;
            let data_end = data_start + size;
            if rest.len() < data_end + 2 {
                break;
            }
            let data = &rest[data_start..data_end];
            if &rest[data_end..data_end + 2] != b"\r\n" {
                return Err(malformed());
            }
            let string_to_sign = format!(
                "{ALGORITHM}-PAYLOAD\n{}\n{}\n{}\n{empty_hash}\n{}",
                self.date,
                self.scope,
                self.previous,
                hex(&Sha256::digest(data))
            );
            let expected = hex(&hmac(&self.signing_key, string_to_sign.as_bytes()));
            if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                return Err(invalid_signature(
                    "The chunk signature we calculated does not match the signature you provided.",
                ));
            }
            decoded.extend_from_slice(data);
            consumed += data_end + 2;
            self.ended = size == 0;
            self.previous = expected;
        }
        self.pending.drain(..consumed);
        self.decoded_length += decoded.len();
        Ok(decoded)
    }

    /// The body ended: it must have ended with the zero-size chunk, after the declared length.
    fn finish(self) -> Result<(), ApiError> {
        if !self.ended || !self.pending.is_empty() {
            return Err(incomplete("The aws-chunked body is malformed."));
        }
        match self.declared_length {
            Some(length) if length != self.decoded_length => Err(invalid_signature(format!(
                "X-Amz-Decoded-Content-Length does not match the {} bytes of the chunks.",
                self.decoded_length
            ))),
            _ => Ok(()),
        }
    }
}

fn parse(request: &SignedRequest<'_>) -> Result<Signature, ApiError> {
    if let Some(header) = request.headers.get(http::header::AUTHORIZATION) {
        let header = header
            .to_str()
            .map_err(|_| incomplete("Authorization header is not valid text."))?;
        let rest = header.strip_prefix(ALGORITHM).ok_or_else(|| {
            incomplete(format!(
                "Authorization header requires the {ALGORITHM} algorithm."
            ))
        })?;
        let mut fields = BTreeMap::new();
        for part in rest.split(',') {
            if let Some((k, v)) = part.trim().split_once('=') {
                fields.insert(k.trim(), v.trim());
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (
            fields.get("Credential"),
            fields.get("SignedHeaders"),
            fields.get("Signature"),
        ) else {
            return Err(incomplete(format!(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. Authorization={header}"
            )));
        };
        let (access_key, scope) = credential
            .split_once('/')
            .ok_or_else(|| incomplete("Credential must be ACCESS_KEY/SCOPE."))?;
        let date = request
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| incomplete("Authorization header requires an X-Amz-Date header."))?;
        return Ok(Signature {
            access_key: access_key.to_owned(),
            scope: scope.to_owned(),
            date: date.to_owned(),
            signed_headers: signed.split(';').map(str::to_owned).collect(),
            signature: signature.to_string(),
            presigned_expires: None,
        });
    }
    let query: BTreeMap<String, String> = query_pairs(request.query.unwrap_or(""))
        .into_iter()
        .collect();
    if !query.contains_key("X-Amz-Signature") {
        return Err(missing_token());
    }
    let field = |name: &str| {
        query
            .get(name)
            .cloned()
            .ok_or_else(|| incomplete(format!("Presigned request requires {name}.")))
    };
    let credential = field("X-Amz-Credential")?;
    let (access_key, scope) = credential
        .split_once('/')
        .ok_or_else(|| incomplete("X-Amz-Credential must be ACCESS_KEY/SCOPE."))?;
    Ok(Signature {
        access_key: access_key.to_owned(),
        scope: scope.to_owned(),
        date: field("X-Amz-Date")?,
        signed_headers: field("X-Amz-SignedHeaders")?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: field("X-Amz-Signature")?,
        presigned_expires: Some(
            field("X-Amz-Expires")?
                .parse()
                .map_err(|_| incomplete("X-Amz-Expires must be a number of seconds."))?,
        ),
    })
}

fn canonical_request(
    request: &SignedRequest<'_>,
    signature: &Signature,
    payload_hash: &str,
) -> Result<String, ApiError> {
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    // Non-S3 services sign the path as sent, encoded once more.
    let canonical_path: String = path
        .split('/')
        .map(|segment| uri_encode(segment, true))
        .collect::<Vec<_>>()
        .join("/");
    let mut pairs: Vec<(String, String)> = query_pairs(request.query.unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (uri_encode(&k, true), uri_encode(&v, true)))
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in &signature.signed_headers {
        let value = if name == "host" {
            request
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .or(request.host)
                .map(str::to_owned)
        } else {
            let values: Vec<String> = request
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        let value = value.ok_or_else(|| {
            incomplete(format!("Signed header {name} is missing from the request."))
        })?;
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    Ok(format!(
        "{}\n{canonical_path}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
        request.method,
        signature.signed_headers.join(";")
    ))
}

/// Decoded `name=value` pairs of a query string.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_decode(k), uri_decode(v))
        })
        .collect()
}

fn uri_decode(text: &str) -> String {
    let hex_value = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex_value(*bytes.get(i + 1)?)? * 16 + hex_value(*bytes.get(i + 2)?)?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SigV4's URI encoding: unreserved characters stay, everything else is `%XX`.
fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `20261122T015800Z` → epoch milliseconds.
fn parse_amz_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(((days_from_civil(y, m, d) * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

fn format_amz_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amz_dates_round_trip() {
        let ms = parse_amz_date("20261122T015800Z").unwrap();
        assert_eq!(format_amz_date(ms), "20261122T015800Z");
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("2026-11-22"), None);
    }

    /// The worked example of the AWS SigV4 documentation (IAM ListUsers, GET).
    #[test]
    fn verifies_the_documented_example() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                .parse()
                .unwrap(),
        );
        let request = SignedRequest {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: &headers,
            host: None,
            body: b"",
        };
        let credentials =
            Credentials::new().with("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let at = parse_amz_date("20150830T123600Z").unwrap();
        credentials.verify(&request, at).unwrap();
        let wrong = Credentials::new().with("AKIDEXAMPLE", "not-the-secret");
        assert_eq!(
            wrong.verify(&request, at).unwrap_err().code,
            "InvalidSignatureException"
        );
        let err = credentials
            .verify(&request, at + 10 * 60 * 1000)
            .unwrap_err();
        assert!(err.message.starts_with("Signature expired"));
    }

    /// The chunked upload example of the AWS documentation (S3 PUT, 66,560 bytes of `a` in a
    /// 64 KiB chunk, a 1 KiB chunk and the final empty one).
    fn documented_chunked_request() -> (http::HeaderMap, Vec<u8>) {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("content-encoding", "aws-chunked"),
            ("content-length", "66824"),
            ("x-amz-content-sha256", STREAMING_PAYLOAD),
            ("x-amz-decoded-content-length", "66560"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        let mut body = Vec::new();
        for (size, signature) in [
            (
                65536,
                "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            ),
            (
                1024,
                "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            ),
            (
                0,
                "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
            ),
        ] {
            body.extend_from_slice(format!("{size:x};chunk-signature={signature}\r\n").as_bytes());
            body.extend(std::iter::repeat_n(b'a', size));
            body.extend_from_slice(b"\r\n");
        }
        assert_eq!(body.len(), 66824);
        (headers, body)
    }

    /// Runs `verify` (one of the [`Credentials`] checks) on the documented upload with `headers`
    /// and `body`, with the documentation's credentials at its signing time.
    fn verify_documented<T>(
        headers: &http::HeaderMap,
        body: &[u8],
        verify: impl FnOnce(&Credentials, &SignedRequest<'_>, i64) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let request = SignedRequest {
            method: "PUT",
            path: "/examplebucket/chunkObject.txt",
            query: None,
            headers,
            host: None,
            body,
        };
        let credentials = Credentials::new().with(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        verify(
            &credentials,
            &request,
            parse_amz_date("20130524T000000Z").unwrap(),
        )
    }

    fn verify_chunked(headers: &http::HeaderMap, body: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        verify_documented(headers, body, Credentials::verify)
    }

    #[test]
    fn verifies_and_decodes_the_documented_chunked_upload() {
        let (headers, body) = documented_chunked_request();
        assert_eq!(
            verify_chunked(&headers, &body).unwrap(),
            Some(vec![b'a'; 66560])
        );
    }

    #[test]
    fn an_altered_chunk_fails_its_signature() {
        let (headers, mut body) = documented_chunked_request();
        let data = body.iter().position(|b| *b == b'a').unwrap();
        body[data + 100] = b'b';
        let err = verify_chunked(&headers, &body).unwrap_err();
        assert_eq!(err.code, "InvalidSignatureException");
        assert!(err.message.contains("chunk signature"), "{}", err.message);
    }

    #[test]
    fn a_dropped_or_truncated_chunk_is_refused() {
        let (headers, body) = documented_chunked_request();
        // Without the second chunk, the final chunk's signature no longer chains.
        let second = body.windows(4).position(|w| w == b"400;").unwrap();
        let last = body.windows(2).rposition(|w| w == b"0;").unwrap();
        let mut dropped = body[..second].to_vec();
        dropped.extend_from_slice(&body[last..]);
        assert_eq!(
            verify_chunked(&headers, &dropped).unwrap_err().code,
            "InvalidSignatureException"
        );
        let truncated = &body[..body.len() - 10];
        assert_eq!(
            verify_chunked(&headers, truncated).unwrap_err().code,
            "IncompleteSignatureException"
        );
    }

    fn verify_streamed(headers: &http::HeaderMap) -> Result<PayloadCheck, ApiError> {
        verify_documented(headers, b"", Credentials::verify_streamed)
    }

    /// Feeds `body` in pieces of `piece` bytes; answers the payload and how the body ended.
    fn stream(mut check: PayloadCheck, body: &[u8], piece: usize) -> Result<Vec<u8>, ApiError> {
        let mut payload = Vec::new();
        for part in body.chunks(piece) {
            payload.extend_from_slice(&check.push(bytes::Bytes::copy_from_slice(part))?);
        }
        check.finish()?;
        Ok(payload)
    }

    #[test]
    fn a_streamed_chunked_body_is_verified_however_it_is_split() {
        let (headers, body) = documented_chunked_request();
        for piece in [1, 7, 100, 65_600, body.len()] {
            let check = verify_streamed(&headers).unwrap();
            assert_eq!(stream(check, &body, piece).unwrap(), vec![b'a'; 66560]);
        }
        let (_, mut altered) = documented_chunked_request();
        altered[66_000] = b'b';
        let err = stream(verify_streamed(&headers).unwrap(), &altered, 4096).unwrap_err();
        assert_eq!(err.code, "InvalidSignatureException");
        let err = stream(verify_streamed(&headers).unwrap(), &body[..66_000], 4096).unwrap_err();
        assert_eq!(err.code, "IncompleteSignatureException");
    }

    #[test]
    fn a_streamed_request_is_refused_on_its_headers_alone() {
        let (mut headers, _) = documented_chunked_request();
        headers.insert("x-amz-date", "20130524T000001Z".parse().unwrap());
        assert_eq!(
            verify_streamed(&headers).err().map(|e| e.code),
            Some("InvalidSignatureException")
        );
        headers.remove("authorization");
        assert_eq!(
            verify_streamed(&headers).err().map(|e| e.code),
            Some("MissingAuthenticationTokenException")
        );
    }

    /// Headers of a PutMedia request signed (by key `AKID`, secret `secret`) over the payload
    /// hash `payload`, which `x-amz-content-sha256` declares when `declared`.
    fn signed_put_media(payload: &str, declared: bool) -> http::HeaderMap {
        let date = "20260101T000000Z";
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "localhost".parse().unwrap());
        headers.insert("x-amz-date", date.parse().unwrap());
        let mut signed_headers = vec!["host".to_owned(), "x-amz-date".to_owned()];
        if declared {
            headers.insert("x-amz-content-sha256", payload.parse().unwrap());
            signed_headers.insert(1, "x-amz-content-sha256".to_owned());
        }
        let scope = "20260101/us-east-1/kinesisvideo/aws4_request";
        let signature = Signature {
            access_key: "AKID".into(),
            scope: scope.into(),
            date: date.into(),
            signed_headers,
            signature: String::new(),
            presigned_expires: None,
        };
        let request = put_media_request(&headers);
        let canonical = canonical_request(&request, &signature, payload).unwrap();
        let string_to_sign = format!(
            "{ALGORITHM}\n{date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(b"AWS4secret", b"20260101");
        for part in ["us-east-1", "kinesisvideo", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let authorization = format!(
            "{ALGORITHM} Credential=AKID/{scope}, SignedHeaders={}, Signature={}",
            signature.signed_headers.join(";"),
            hex(&hmac(&key, string_to_sign.as_bytes()))
        );
        headers.insert("authorization", authorization.parse().unwrap());
        headers
    }

    fn put_media_request(headers: &http::HeaderMap) -> SignedRequest<'_> {
        SignedRequest {
            method: "POST",
            path: "/putMedia",
            query: None,
            headers,
            host: None,
            body: b"",
        }
    }

    /// Verifies a streamed PutMedia request with `headers` at its signing time.
    fn verify_put_media(headers: &http::HeaderMap) -> Result<PayloadCheck, ApiError> {
        Credentials::new().with("AKID", "secret").verify_streamed(
            &put_media_request(headers),
            parse_amz_date("20260101T000000Z").unwrap(),
        )
    }

    #[test]
    fn a_streamed_body_declared_by_its_sha256_is_refused_up_front() {
        let digest = hex(&Sha256::digest(b"the whole body"));
        let err = verify_put_media(&signed_put_media(&digest, true))
            .err()
            .unwrap();
        assert_eq!(
            (err.code, err.status),
            ("IncompleteSignatureException", StatusCode::FORBIDDEN)
        );
        assert!(err.message.contains(UNSIGNED_PAYLOAD), "{}", err.message);
        assert!(err.message.contains(STREAMING_PAYLOAD), "{}", err.message);
    }

    #[test]
    fn a_read_body_must_match_its_declared_sha256() {
        let headers = signed_put_media(&hex(&Sha256::digest(b"the body")), true);
        let at = parse_amz_date("20260101T000000Z").unwrap();
        let credentials = Credentials::new().with("AKID", "secret");
        let with_body = |body| SignedRequest {
            body,
            ..put_media_request(&headers)
        };
        assert_eq!(
            credentials.verify(&with_body(b"the body"), at).unwrap(),
            None
        );
        let err = credentials
            .verify(&with_body(b"another body"), at)
            .unwrap_err();
        assert_eq!(err.code, "InvalidSignatureException");
        assert!(
            err.message.contains("x-amz-content-sha256"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_undeclared_streamed_payload_must_be_signed_as_unsigned() {
        let check = verify_put_media(&signed_put_media(UNSIGNED_PAYLOAD, false)).unwrap();
        assert_eq!(stream(check, b"any body", 3).unwrap(), b"any body");
        let check = verify_put_media(&signed_put_media(UNSIGNED_PAYLOAD, true)).unwrap();
        assert_eq!(stream(check, b"any body", 3).unwrap(), b"any body");
        // The empty body's hash does not describe a body that is still arriving.
        let empty = hex(&Sha256::digest(b""));
        assert_eq!(
            verify_put_media(&signed_put_media(&empty, false))
                .err()
                .map(|e| e.code),
            Some("InvalidSignatureException")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_chunked_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (headers, _) = documented_chunked_request();
            let _ = verify_chunked(&headers, &body);
        }

        #[test]
        fn arbitrary_authorization_headers_never_panic(value in "[ -~]{0,200}", query in "[ -~]{0,100}") {
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = value.parse() {
                headers.insert("authorization", v);
            }
            let request = SignedRequest { method: "POST", path: "/", query: Some(&query), headers: &headers, host: None, body: b"" };
            let _ = Credentials::new().with("a", "b").verify(&request, 0);
        }

        #[test]
        fn civil_dates_round_trip(days in -100_000i64..100_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
