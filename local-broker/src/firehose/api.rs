//! Wire shapes of the Firehose API (names as in botocore's `firehose` model, 2015-08-04).
//!
//! Inputs make every member optional so that a missing required member is reported as AWS does
//! (a `ValidationException` naming it), not as a parse failure. Destination configurations are
//! stored as they arrived and serialize as their *description*: the member names that differ
//! between configuration, update and description (`S3BackupConfiguration` / `S3BackupUpdate` /
//! `S3BackupDescription`, ...) are spelled per direction, and secrets (`AccessKey`) are never
//! written back. Descriptions also read back as configurations, which is how the data directory
//! stores them (`store`).

use crate::http::protocol::{Blob, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Output of operations that return nothing.
#[derive(Serialize)]
pub struct Empty {}

/// A configuration member this server accepts and echoes but does not act on
/// (CloudWatch logging, S3 server-side encryption settings).
pub type Echoed = Value;

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct BufferingHints {
    #[serde(rename = "SizeInMBs", skip_serializing_if = "Option::is_none")]
    pub size_in_mbs: Option<i64>,
    #[serde(rename = "IntervalInSeconds", skip_serializing_if = "Option::is_none")]
    pub interval_in_seconds: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorParameter {
    pub parameter_name: Option<String>,
    pub parameter_value: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Processor {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ProcessorParameter>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessingConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processors: Vec<Processor>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RetryOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_in_seconds: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DynamicPartitioningConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_options: Option<RetryOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `S3DestinationConfiguration` / `S3DestinationUpdate` / `S3DestinationDescription`, and
/// `ExtendedS3DestinationConfiguration` / `…Update` / `…Description` (a superset).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct S3Destination {
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(rename = "BucketARN", skip_serializing_if = "Option::is_none")]
    pub bucket_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_output_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffering_hints: Option<BufferingHints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<Echoed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logging_options: Option<Echoed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_backup_mode: Option<String>,
    #[serde(
        rename(
            serialize = "S3BackupDescription",
            deserialize = "S3BackupConfiguration"
        ),
        alias = "S3BackupUpdate",
        alias = "S3BackupDescription",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_backup: Option<Box<S3Destination>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_format_conversion_configuration: Option<Echoed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_partitioning_configuration: Option<DynamicPartitioningConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_extension: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_time_zone: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HttpEndpointConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sent to the endpoint, never described back.
    #[serde(skip_serializing)]
    pub access_key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CommonAttribute {
    pub attribute_name: Option<String>,
    pub attribute_value: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HttpEndpointRequestConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_attributes: Vec<CommonAttribute>,
}

/// `HttpEndpointDestinationConfiguration` / `…Update` / `…Description`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HttpEndpointDestination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_configuration: Option<HttpEndpointConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffering_hints: Option<BufferingHints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logging_options: Option<Echoed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_configuration: Option<HttpEndpointRequestConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_options: Option<RetryOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_backup_mode: Option<String>,
    #[serde(
        rename(
            serialize = "S3DestinationDescription",
            deserialize = "S3Configuration"
        ),
        alias = "S3Update",
        alias = "S3DestinationDescription",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3: Option<S3Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_manager_configuration: Option<Echoed>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct KinesisStreamSourceConfiguration {
    #[serde(rename = "KinesisStreamARN")]
    pub kinesis_stream_arn: Option<String>,
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DirectPutSourceConfiguration {
    pub throughput_hint_in_m_bs: Option<i64>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionInput {
    #[serde(rename = "KeyARN")]
    pub key_arn: Option<String>,
    pub key_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateDeliveryStreamInput {
    pub delivery_stream_name: Option<String>,
    pub delivery_stream_type: Option<String>,
    pub direct_put_source_configuration: Option<DirectPutSourceConfiguration>,
    pub kinesis_stream_source_configuration: Option<KinesisStreamSourceConfiguration>,
    pub delivery_stream_encryption_configuration_input: Option<EncryptionInput>,
    pub s3_destination_configuration: Option<S3Destination>,
    pub extended_s3_destination_configuration: Option<S3Destination>,
    pub http_endpoint_destination_configuration: Option<HttpEndpointDestination>,
    pub tags: Option<Vec<Tag>>,
    // Known members this server rejects by name.
    #[serde(rename = "MSKSourceConfiguration")]
    pub msk_source_configuration: Option<Value>,
    pub database_source_configuration: Option<Value>,
    pub redshift_destination_configuration: Option<Value>,
    pub elasticsearch_destination_configuration: Option<Value>,
    pub amazonopensearchservice_destination_configuration: Option<Value>,
    pub splunk_destination_configuration: Option<Value>,
    pub amazon_open_search_serverless_destination_configuration: Option<Value>,
    pub snowflake_destination_configuration: Option<Value>,
    pub iceberg_destination_configuration: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateDeliveryStreamOutput {
    #[serde(rename = "DeliveryStreamARN")]
    pub delivery_stream_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteDeliveryStreamInput {
    pub delivery_stream_name: Option<String>,
    pub allow_force_delete: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDeliveryStreamInput {
    pub delivery_stream_name: Option<String>,
    pub limit: Option<i64>,
    pub exclusive_start_destination_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionDescription {
    #[serde(rename = "KeyARN", skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    pub status: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KinesisStreamSourceDescription {
    #[serde(rename = "KinesisStreamARN")]
    pub kinesis_stream_arn: String,
    #[serde(rename = "RoleARN")]
    pub role_arn: String,
    pub delivery_start_timestamp: Timestamp,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DirectPutSourceDescription {
    pub throughput_hint_in_m_bs: i64,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SourceDescription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_put_source_description: Option<DirectPutSourceDescription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinesis_stream_source_description: Option<KinesisStreamSourceDescription>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationDescription {
    pub destination_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_destination_description: Option<S3Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_s3_destination_description: Option<S3Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_endpoint_destination_description: Option<HttpEndpointDestination>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveryStreamDescription {
    pub delivery_stream_name: String,
    #[serde(rename = "DeliveryStreamARN")]
    pub delivery_stream_arn: String,
    pub delivery_stream_status: &'static str,
    pub delivery_stream_encryption_configuration: EncryptionDescription,
    pub delivery_stream_type: &'static str,
    pub version_id: String,
    pub create_timestamp: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_timestamp: Option<Timestamp>,
    pub source: SourceDescription,
    pub destinations: Vec<DestinationDescription>,
    pub has_more_destinations: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_description: Option<FailureDescription>,
}

/// `FailureDescription`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailureDescription {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub details: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDeliveryStreamOutput {
    pub delivery_stream_description: DeliveryStreamDescription,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDeliveryStreamsInput {
    pub limit: Option<i64>,
    pub delivery_stream_type: Option<String>,
    pub exclusive_start_delivery_stream_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDeliveryStreamsOutput {
    pub delivery_stream_names: Vec<String>,
    pub has_more_delivery_streams: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForDeliveryStreamInput {
    pub delivery_stream_name: Option<String>,
    pub exclusive_start_tag_key: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForDeliveryStreamOutput {
    pub tags: Vec<Tag>,
    pub has_more_tags: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagDeliveryStreamInput {
    pub delivery_stream_name: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagDeliveryStreamInput {
    pub delivery_stream_name: Option<String>,
    pub tag_keys: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartEncryptionInput {
    pub delivery_stream_name: Option<String>,
    pub delivery_stream_encryption_configuration_input: Option<EncryptionInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopEncryptionInput {
    pub delivery_stream_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateDestinationInput {
    pub delivery_stream_name: Option<String>,
    pub current_delivery_stream_version_id: Option<String>,
    pub destination_id: Option<String>,
    pub s3_destination_update: Option<S3Destination>,
    pub extended_s3_destination_update: Option<S3Destination>,
    pub http_endpoint_destination_update: Option<HttpEndpointDestination>,
    pub redshift_destination_update: Option<Value>,
    pub elasticsearch_destination_update: Option<Value>,
    pub amazonopensearchservice_destination_update: Option<Value>,
    pub splunk_destination_update: Option<Value>,
    pub amazon_open_search_serverless_destination_update: Option<Value>,
    pub snowflake_destination_update: Option<Value>,
    pub iceberg_destination_update: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordIn {
    pub data: Option<Blob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordInput {
    pub delivery_stream_name: Option<String>,
    pub record: Option<RecordIn>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    pub record_id: String,
    pub encrypted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordBatchInput {
    pub delivery_stream_name: Option<String>,
    pub records: Option<Vec<RecordIn>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordBatchEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordBatchOutput {
    pub failed_put_count: usize,
    pub encrypted: bool,
    pub request_responses: Vec<PutRecordBatchEntry>,
}
