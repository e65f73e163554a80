//! Wire shapes of the three KVS APIs (`kinesisvideo`, `kinesis-video-media`,
//! `kinesis-video-archived-media`, all REST-JSON) and the errors they answer.
//!
//! Every modeled operation is `POST /<operation>` with a JSON body; timestamps are epoch seconds
//! (fractions allowed). Errors carry the code in `x-amzn-ErrorType` and `{"Message": ...}` in
//! the body, with the model's HTTP status.

use crate::http::error::ApiError;
use http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Parses a request body into an operation's input; an empty body is an empty object.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|err| invalid_argument(format!("The request body is not valid: {err}")))
}

/// KVS has no ValidationException: constraint violations are InvalidArgumentException.
pub fn invalid_argument(message: impl Into<String>) -> ApiError {
    ApiError::invalid_argument(message)
}

/// The stream does not exist (HTTP 404).
pub fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::not_found(message).with_status(StatusCode::NOT_FOUND)
}

/// A request whose signature could not be verified. KVS is REST-JSON behind AWS's front end,
/// which answers every signature failure (UnrecognizedClientException, InvalidSignatureException,
/// IncompleteSignatureException, MissingAuthenticationTokenException) with 403.
pub fn not_signed(err: ApiError) -> ApiError {
    err.with_status(StatusCode::FORBIDDEN)
}

/// The caller may not use the resource: an HLS or DASH session token that is unknown or has
/// expired (HTTP 401, as the archived-media model declares).
pub fn not_authorized(message: impl Into<String>) -> ApiError {
    ApiError::new("NotAuthorizedException", message).with_status(StatusCode::UNAUTHORIZED)
}

/// The stream's `CurrentVersion` is not the one given.
pub fn version_mismatch(message: impl Into<String>) -> ApiError {
    ApiError::new("VersionMismatchException", message)
}

/// Archived-media operations need a stream that keeps data.
pub fn no_data_retention(stream: &str) -> ApiError {
    ApiError::new(
        "NoDataRetentionException",
        format!("Stream {stream} does not retain data (DataRetentionInHours is 0)."),
    )
}

/// Converts epoch seconds (fractions allowed) to epoch milliseconds.
pub fn seconds_to_millis(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// Converts epoch milliseconds to the epoch seconds KVS puts in JSON.
pub fn millis_to_seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// Names a stream by name or ARN (`StreamName` / `StreamARN`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamRef {
    pub stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateStreamInput {
    pub stream_name: Option<String>,
    pub device_name: Option<String>,
    pub media_type: Option<String>,
    pub kms_key_id: Option<String>,
    pub data_retention_in_hours: Option<i64>,
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsInput {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub stream_name_condition: Option<StreamNameCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamNameCondition {
    pub comparison_operator: Option<String>,
    pub comparison_value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteStreamInput {
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
    pub current_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStreamInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub current_version: Option<String>,
    pub device_name: Option<String>,
    pub media_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateDataRetentionInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub current_version: Option<String>,
    pub operation: Option<String>,
    pub data_retention_change_in_hours: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetDataEndpointInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    #[serde(rename = "APIName")]
    pub api_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagStreamInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagStreamInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub tag_key_list: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: Option<String>,
    pub tag_key_list: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMediaInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub start_selector: Option<StartSelector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartSelector {
    pub start_selector_type: Option<String>,
    pub after_fragment_number: Option<String>,
    pub start_timestamp: Option<f64>,
    pub continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimestampRange {
    pub start_timestamp: Option<f64>,
    pub end_timestamp: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FragmentSelector {
    pub fragment_selector_type: Option<String>,
    pub timestamp_range: Option<TimestampRange>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFragmentsInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub fragment_selector: Option<FragmentSelector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMediaForFragmentListInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub fragments: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetClipInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub clip_fragment_selector: Option<FragmentSelector>,
}

/// GetHLSStreamingSessionURL's input; GetDASHStreamingSessionURL's maps onto it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetHlsSessionInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub playback_mode: Option<String>,
    #[serde(rename = "HLSFragmentSelector")]
    pub hls_fragment_selector: Option<FragmentSelector>,
    pub container_format: Option<String>,
    pub discontinuity_mode: Option<String>,
    pub display_fragment_timestamp: Option<String>,
    pub expires: Option<i64>,
    pub max_media_playlist_fragment_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetDashSessionInput {
    #[serde(flatten)]
    pub stream: StreamRef,
    pub playback_mode: Option<String>,
    #[serde(rename = "DASHFragmentSelector")]
    pub dash_fragment_selector: Option<FragmentSelector>,
    pub display_fragment_timestamp: Option<String>,
    pub expires: Option<i64>,
    pub max_manifest_fragment_results: Option<i64>,
}

impl From<GetDashSessionInput> for GetHlsSessionInput {
    /// A DASH session picks fragments like an HLS one; it never marks discontinuities.
    fn from(dash: GetDashSessionInput) -> Self {
        Self {
            stream: dash.stream,
            playback_mode: dash.playback_mode,
            hls_fragment_selector: dash.dash_fragment_selector,
            discontinuity_mode: Some("NEVER".into()),
            display_fragment_timestamp: dash.display_fragment_timestamp,
            expires: dash.expires,
            max_media_playlist_fragment_results: dash.max_manifest_fragment_results,
            ..Self::default()
        }
    }
}
