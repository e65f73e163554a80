//! The control plane: Create/Delete/Describe/ListDeliveryStreams, UpdateDestination, tags and
//! server-side encryption.

use super::api::*;
use super::buffering::Buffer;
use super::model::{
    DESTINATION_ID, DeliveryStream, DestinationConfig, Encryption, Source, Status, StreamState,
};
use super::settings::{self, Target};
use super::source::KinesisReader;
use super::store::store_failed;
use super::{DELIVERY_STREAM_LIMIT, Firehose, validate_name};
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Timestamp;
use crate::http::validation::Validator;
use crate::kinesis::parse_stream_arn;
use std::collections::BTreeMap;
use std::sync::Arc;

const STREAM_TYPES: [&str; 4] = [
    "DirectPut",
    "KinesisStreamAsSource",
    "MSKAsSource",
    "DatabaseAsSource",
];
const KEY_TYPES: [&str; 2] = ["AWS_OWNED_CMK", "CUSTOMER_MANAGED_CMK"];
/// Tags one delivery stream may carry.
const MAX_TAGS: usize = 50;
/// `ListDeliveryStreams` answers this many names when no `Limit` is given.
const DEFAULT_LIST_LIMIT: i64 = 10;

fn validate_tags(tags: &[Tag], member: &str, v: &mut Validator) {
    v.count(tags.len(), member, 1, MAX_TAGS);
    for tag in tags {
        if let Some(key) = v.required(&tag.key, &format!("{member}.member.key")) {
            validate_tag_key(key, &format!("{member}.member.key"), v);
        }
        if let Some(value) = &tag.value {
            v.length(value, &format!("{member}.member.value"), 0, 256);
        }
    }
}

fn validate_tag_key(key: &str, member: &str, v: &mut Validator) {
    v.length(key, member, 1, 128);
    if key.starts_with("aws:") {
        v.violation(key, member, "Member must satisfy regular expression pattern: ^(?!aws:)[\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@%]*$");
    }
}

fn validate_encryption(input: &EncryptionInput, v: &mut Validator) -> ApiResult<Encryption> {
    let member = "deliveryStreamEncryptionConfigurationInput";
    if let Some(key_type) = v.required(&input.key_type, &format!("{member}.keyType")) {
        v.one_of(key_type, &format!("{member}.keyType"), &KEY_TYPES);
    }
    if let Some(arn) = &input.key_arn {
        v.length(arn, &format!("{member}.keyARN"), 1, 512);
    }
    match (input.key_type.as_deref(), &input.key_arn) {
        (Some("CUSTOMER_MANAGED_CMK"), None) => Err(ApiError::invalid_argument(
            "KeyARN is required when KeyType is CUSTOMER_MANAGED_CMK.",
        )),
        (Some("AWS_OWNED_CMK"), Some(_)) => Err(ApiError::invalid_argument(
            "KeyARN must not be specified when KeyType is AWS_OWNED_CMK.",
        )),
        _ => Ok(Encryption {
            enabled: true,
            key_type: input.key_type.clone(),
            key_arn: input.key_arn.clone(),
        }),
    }
}

/// Options that are part of the API but not served here, rejected by name.
fn reject_unsupported(options: &[(bool, &str)]) -> ApiResult<()> {
    match options.iter().find(|(present, _)| *present) {
        Some((_, option)) => Err(ApiError::invalid_argument(format!(
            "{option} is not supported by this server; supported destinations are S3DestinationConfiguration, ExtendedS3DestinationConfiguration and HttpEndpointDestinationConfiguration, and the supported sources are DirectPut and KinesisStreamAsSource."
        ))),
        None => Ok(()),
    }
}

/// Copies every member `update` sets over `base` (UpdateDestination merges like this when the
/// destination type stays the same).
fn merge_s3(base: &mut S3Destination, update: S3Destination) {
    macro_rules! take {
        ($($field:ident),*) => {$(
            if update.$field.is_some() { base.$field = update.$field; }
        )*};
    }
    take!(
        role_arn,
        bucket_arn,
        prefix,
        error_output_prefix,
        buffering_hints,
        compression_format,
        encryption_configuration,
        cloud_watch_logging_options,
        processing_configuration,
        s3_backup_mode,
        data_format_conversion_configuration,
        dynamic_partitioning_configuration,
        file_extension,
        custom_time_zone
    );
    match (&mut base.s3_backup, update.s3_backup) {
        (Some(base), Some(update)) => merge_s3(base, *update),
        (base, update @ Some(_)) => *base = update,
        (_, None) => {}
    }
}

fn merge_http(base: &mut HttpEndpointDestination, update: HttpEndpointDestination) {
    macro_rules! take {
        ($($field:ident),*) => {$(
            if update.$field.is_some() { base.$field = update.$field; }
        )*};
    }
    take!(
        buffering_hints,
        cloud_watch_logging_options,
        request_configuration,
        processing_configuration,
        role_arn,
        retry_options,
        s3_backup_mode,
        secrets_manager_configuration
    );
    match (
        &mut base.endpoint_configuration,
        update.endpoint_configuration,
    ) {
        (Some(base), Some(update)) => {
            if update.url.is_some() {
                base.url = update.url;
            }
            if update.name.is_some() {
                base.name = update.name;
            }
            if update.access_key.is_some() {
                base.access_key = update.access_key;
            }
        }
        (base, update @ Some(_)) => *base = update,
        (_, None) => {}
    }
    match (&mut base.s3, update.s3) {
        (Some(base), Some(update)) => merge_s3(base, update),
        (base, update @ Some(_)) => *base = update,
        (_, None) => {}
    }
}

/// The destination as DescribeDeliveryStream shows it: the configuration with the defaults
/// AWS always describes.
fn describe_s3(config: &S3Destination) -> S3Destination {
    let mut described = config.clone();
    let hints = described
        .buffering_hints
        .get_or_insert_with(Default::default);
    hints
        .size_in_mbs
        .get_or_insert(settings::DEFAULT_SIZE_IN_MBS);
    hints
        .interval_in_seconds
        .get_or_insert(settings::DEFAULT_INTERVAL_IN_SECONDS);
    described
        .compression_format
        .get_or_insert_with(|| "UNCOMPRESSED".to_owned());
    described
        .encryption_configuration
        .get_or_insert_with(|| serde_json::json!({"NoEncryptionConfig": "NoEncryption"}));
    if let Some(backup) = &mut described.s3_backup {
        **backup = describe_s3(backup);
    }
    described
}

/// The legacy `S3DestinationDescription` of an (Extended)S3 destination: its S3 subset.
fn legacy_s3(described: &S3Destination) -> S3Destination {
    S3Destination {
        role_arn: described.role_arn.clone(),
        bucket_arn: described.bucket_arn.clone(),
        prefix: described.prefix.clone(),
        error_output_prefix: described.error_output_prefix.clone(),
        buffering_hints: described.buffering_hints.clone(),
        compression_format: described.compression_format.clone(),
        encryption_configuration: described.encryption_configuration.clone(),
        cloud_watch_logging_options: described.cloud_watch_logging_options.clone(),
        ..Default::default()
    }
}

impl Firehose {
    /// Writes a changed stream's configuration and status (under its state lock); a failure
    /// is the client's internal error.
    fn persist(&self, stream: &DeliveryStream, state: &StreamState) -> ApiResult<()> {
        self.store
            .persist(stream, state)
            .map_err(|err| store_failed(&err))
    }

    /// Resolves a destination configuration and checks the broker can deliver to it.
    pub(super) fn target(
        &self,
        destination: &DestinationConfig,
        member: &str,
    ) -> ApiResult<Target> {
        let target = match destination {
            DestinationConfig::S3(config) => {
                Target::S3(settings::s3_settings(config, member, &self.functions)?)
            }
            DestinationConfig::HttpEndpoint(config) => {
                Target::Http(settings::http_settings(config, member, &self.functions)?)
            }
        };
        if !self.deliverer.objects().is_configured() {
            return Err(ApiError::invalid_argument(
                "S3 delivery needs the broker started with --s3-root DIR or --s3-endpoint URL (LocalBrokerBuilder::s3_root / s3_endpoint); neither is configured.",
            ));
        }
        Ok(target)
    }

    pub(super) fn create_delivery_stream(
        &self,
        input: CreateDeliveryStreamInput,
    ) -> ApiResult<CreateDeliveryStreamOutput> {
        let mut v = Validator::new();
        if let Some(name) = v.required(&input.delivery_stream_name, "deliveryStreamName") {
            validate_name(name, "deliveryStreamName", &mut v);
        }
        if let Some(kind) = &input.delivery_stream_type {
            v.one_of(kind, "deliveryStreamType", &STREAM_TYPES);
        }
        if let Some(tags) = &input.tags {
            validate_tags(tags, "tags", &mut v);
        }
        let throughput_hint = match &input.direct_put_source_configuration {
            Some(direct) => {
                let hint = v.required(
                    &direct.throughput_hint_in_m_bs,
                    "directPutSourceConfiguration.throughputHintInMBs",
                );
                if let Some(hint) = hint {
                    v.range(
                        *hint,
                        "directPutSourceConfiguration.throughputHintInMBs",
                        1,
                        100,
                    );
                }
                hint.copied()
            }
            None => None,
        };
        if let Some(config) = &input.kinesis_stream_source_configuration {
            let member = "kinesisStreamSourceConfiguration";
            if let Some(arn) = v.required(
                &config.kinesis_stream_arn,
                &format!("{member}.kinesisStreamARN"),
            ) {
                v.length(arn, &format!("{member}.kinesisStreamARN"), 1, 512);
            }
            if let Some(role) = v.required(&config.role_arn, &format!("{member}.roleARN")) {
                settings::role_arn(role, &format!("{member}.roleARN"), &mut v);
            }
        }
        let encryption = input
            .delivery_stream_encryption_configuration_input
            .as_ref()
            .map(|encryption| validate_encryption(encryption, &mut v));
        v.finish()?;
        let encryption = encryption.transpose()?.unwrap_or_default();
        reject_unsupported(&[
            (
                input.msk_source_configuration.is_some(),
                "MSKSourceConfiguration",
            ),
            (
                input.database_source_configuration.is_some(),
                "DatabaseSourceConfiguration",
            ),
            (
                input.redshift_destination_configuration.is_some(),
                "RedshiftDestinationConfiguration",
            ),
            (
                input.elasticsearch_destination_configuration.is_some(),
                "ElasticsearchDestinationConfiguration",
            ),
            (
                input
                    .amazonopensearchservice_destination_configuration
                    .is_some(),
                "AmazonopensearchserviceDestinationConfiguration",
            ),
            (
                input.splunk_destination_configuration.is_some(),
                "SplunkDestinationConfiguration",
            ),
            (
                input
                    .amazon_open_search_serverless_destination_configuration
                    .is_some(),
                "AmazonOpenSearchServerlessDestinationConfiguration",
            ),
            (
                input.snowflake_destination_configuration.is_some(),
                "SnowflakeDestinationConfiguration",
            ),
            (
                input.iceberg_destination_configuration.is_some(),
                "IcebergDestinationConfiguration",
            ),
        ])?;
        let kind = input.delivery_stream_type.as_deref().unwrap_or("DirectPut");
        let (source, reader) = match kind {
            "DirectPut" => {
                if input.kinesis_stream_source_configuration.is_some() {
                    return Err(ApiError::invalid_argument(
                        "KinesisStreamSourceConfiguration is only allowed with DeliveryStreamType KinesisStreamAsSource.",
                    ));
                }
                let source = Source::DirectPut {
                    throughput_hint_in_mbs: throughput_hint,
                };
                (source, None)
            }
            "KinesisStreamAsSource" => {
                let Some(config) = &input.kinesis_stream_source_configuration else {
                    return Err(ApiError::invalid_argument(
                        "KinesisStreamSourceConfiguration is required for DeliveryStreamType KinesisStreamAsSource.",
                    ));
                };
                if input.direct_put_source_configuration.is_some() || encryption.enabled {
                    return Err(ApiError::invalid_argument(
                        "DirectPutSourceConfiguration and DeliveryStreamEncryptionConfigurationInput are not allowed with KinesisStreamAsSource (encrypt the Kinesis stream instead).",
                    ));
                }
                let stream_arn = config.kinesis_stream_arn.clone().unwrap_or_default();
                let stream_name = parse_stream_arn(&stream_arn)
                    .filter(|arn| {
                        arn.region == self.config.region && arn.account == self.config.account_id
                    })
                    .map(|arn| arn.name)
                    .ok_or_else(|| {
                        ApiError::invalid_argument(format!(
                            "Kinesis stream {stream_arn} is not a stream of this broker's account and region."
                        ))
                    })?;
                let reader = KinesisReader::new(Arc::clone(&self.kinesis), stream_name.clone());
                let start_ms = self.now();
                let cursors = reader.start_at_latest(start_ms).map_err(|err| {
                    ApiError::invalid_argument(format!(
                        "Cannot read Kinesis stream {stream_arn}: {}",
                        err.message
                    ))
                })?;
                let source = Source::KinesisStream {
                    stream_arn,
                    stream_name,
                    role_arn: config.role_arn.clone().unwrap_or_default(),
                    start_ms,
                };
                (source, Some((reader, cursors)))
            }
            other => {
                return Err(ApiError::invalid_argument(format!(
                    "DeliveryStreamType {other} is not supported by this server; use DirectPut or KinesisStreamAsSource."
                )));
            }
        };
        let mut destinations = Vec::new();
        if let Some(config) = input.s3_destination_configuration {
            destinations.push((DestinationConfig::S3(config), "s3DestinationConfiguration"));
        }
        if let Some(config) = input.extended_s3_destination_configuration {
            destinations.push((
                DestinationConfig::S3(config),
                "extendedS3DestinationConfiguration",
            ));
        }
        if let Some(config) = input.http_endpoint_destination_configuration {
            destinations.push((
                DestinationConfig::HttpEndpoint(config),
                "httpEndpointDestinationConfiguration",
            ));
        }
        let (destination, member) = match destinations.len() {
            1 => destinations.remove(0),
            _ => {
                return Err(ApiError::invalid_argument(
                    "Exactly one destination configuration must be specified.",
                ));
            }
        };
        let target = self.target(&destination, member)?;
        let name = input.delivery_stream_name.unwrap_or_default();
        let tags: BTreeMap<String, String> = input
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
            .collect();
        let arn = self.arn(&name);
        let stream = {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            if streams.contains_key(&name) {
                return Err(ApiError::in_use(format!(
                    "Firehose {name} under accountId {} already exists",
                    self.config.account_id
                )));
            }
            if streams.len() >= DELIVERY_STREAM_LIMIT {
                return Err(ApiError::limit_exceeded(format!(
                    "You have already consumed your firehose quota of {DELIVERY_STREAM_LIMIT} hoses. Firehose names: {}",
                    streams
                        .keys()
                        .take(10)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let state = StreamState {
                status: Status::Creating,
                version: 1,
                last_update_ms: None,
                destination,
                target,
                tags,
                encryption,
                buffer: Buffer::default(),
                partitions: Default::default(),
                delivering: None,
                failure: None,
            };
            let stream = Arc::new(DeliveryStream::new(
                name.clone(),
                arn.clone(),
                self.now(),
                source,
                state,
                self.stop.child_token(),
            ));
            self.persist(&stream, &stream.state())?;
            if let Some((_, cursors)) = &reader {
                self.store
                    .persist_source(&name, &cursors.saved())
                    .map_err(|err| store_failed(&err))?;
            }
            streams.insert(name, Arc::clone(&stream));
            stream
        };
        self.start_delivery(&stream, reader);
        self.become_active(stream);
        Ok(CreateDeliveryStreamOutput {
            delivery_stream_arn: arn,
        })
    }

    pub(super) fn delete_delivery_stream(
        &self,
        input: DeleteDeliveryStreamInput,
    ) -> ApiResult<Empty> {
        let _ = input.allow_force_delete;
        let stream = self.resolve(&input.delivery_stream_name, Validator::new())?;
        {
            let mut state = stream.state();
            if state.status == Status::Creating {
                return Err(ApiError::in_use(format!(
                    "Firehose {} is in the CREATING state and cannot be deleted yet.",
                    stream.name
                )));
            }
            state.status = Status::Deleting;
            self.persist(&stream, &state)?;
        }
        self.finish_deleting(stream);
        Ok(Empty {})
    }

    pub(super) fn describe_delivery_stream(
        &self,
        input: DescribeDeliveryStreamInput,
    ) -> ApiResult<DescribeDeliveryStreamOutput> {
        let mut v = Validator::new();
        if let Some(limit) = input.limit {
            v.range(limit, "limit", 1, 10_000);
        }
        if let Some(start) = &input.exclusive_start_destination_id {
            v.length(start, "exclusiveStartDestinationId", 1, 100);
        }
        let stream = self.resolve(&input.delivery_stream_name, v)?;
        let state = stream.state();
        let skip_ours = input.exclusive_start_destination_id.as_deref() >= Some(DESTINATION_ID);
        let destinations = if skip_ours {
            Vec::new()
        } else {
            vec![match &state.destination {
                DestinationConfig::S3(config) => {
                    let described = describe_s3(config);
                    DestinationDescription {
                        destination_id: DESTINATION_ID.to_owned(),
                        s3_destination_description: Some(legacy_s3(&described)),
                        extended_s3_destination_description: Some(described),
                        http_endpoint_destination_description: None,
                    }
                }
                DestinationConfig::HttpEndpoint(config) => {
                    let mut described = config.clone();
                    described.s3 = described.s3.as_ref().map(|s3| legacy_s3(&describe_s3(s3)));
                    let hints = described
                        .buffering_hints
                        .get_or_insert_with(Default::default);
                    hints
                        .size_in_mbs
                        .get_or_insert(settings::DEFAULT_SIZE_IN_MBS);
                    hints
                        .interval_in_seconds
                        .get_or_insert(settings::DEFAULT_INTERVAL_IN_SECONDS);
                    DestinationDescription {
                        destination_id: DESTINATION_ID.to_owned(),
                        s3_destination_description: None,
                        extended_s3_destination_description: None,
                        http_endpoint_destination_description: Some(described),
                    }
                }
            }]
        };
        let source = match &stream.source {
            Source::DirectPut {
                throughput_hint_in_mbs,
            } => SourceDescription {
                direct_put_source_description: throughput_hint_in_mbs.map(|hint| {
                    DirectPutSourceDescription {
                        throughput_hint_in_m_bs: hint,
                    }
                }),
                ..Default::default()
            },
            Source::KinesisStream {
                stream_arn,
                role_arn,
                start_ms,
                ..
            } => SourceDescription {
                kinesis_stream_source_description: Some(KinesisStreamSourceDescription {
                    kinesis_stream_arn: stream_arn.clone(),
                    role_arn: role_arn.clone(),
                    delivery_start_timestamp: Timestamp(*start_ms),
                }),
                ..Default::default()
            },
        };
        Ok(DescribeDeliveryStreamOutput {
            delivery_stream_description: DeliveryStreamDescription {
                delivery_stream_name: stream.name.clone(),
                delivery_stream_arn: stream.arn.clone(),
                delivery_stream_status: state.status.as_str(),
                delivery_stream_encryption_configuration: EncryptionDescription {
                    key_arn: state.encryption.key_arn.clone(),
                    key_type: state.encryption.key_type.clone(),
                    status: if state.encryption.enabled {
                        "ENABLED"
                    } else {
                        "DISABLED"
                    },
                },
                delivery_stream_type: stream.source.type_name(),
                version_id: state.version.to_string(),
                create_timestamp: Timestamp(stream.created_ms),
                last_update_timestamp: state.last_update_ms.map(Timestamp),
                source,
                destinations,
                has_more_destinations: false,
                // The model's place for why a stream is failing; its types are about KMS and
                // VPCs, so a failing destination is an UNKNOWN_ERROR with the reason spelled out.
                failure_description: state.failure.as_ref().map(|f| FailureDescription {
                    kind: "UNKNOWN_ERROR",
                    details: f.details.clone(),
                }),
            },
        })
    }

    pub(super) fn list_delivery_streams(
        &self,
        input: ListDeliveryStreamsInput,
    ) -> ApiResult<ListDeliveryStreamsOutput> {
        let mut v = Validator::new();
        if let Some(limit) = input.limit {
            v.range(limit, "limit", 1, 10_000);
        }
        if let Some(kind) = &input.delivery_stream_type {
            v.one_of(kind, "deliveryStreamType", &STREAM_TYPES);
        }
        if let Some(start) = &input.exclusive_start_delivery_stream_name {
            validate_name(start, "exclusiveStartDeliveryStreamName", &mut v);
        }
        v.finish()?;
        let limit = usize::try_from(input.limit.unwrap_or(DEFAULT_LIST_LIMIT)).unwrap_or(10);
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let mut names = streams
            .values()
            .filter(|s| {
                input
                    .delivery_stream_type
                    .as_deref()
                    .is_none_or(|kind| s.source.type_name() == kind)
            })
            .map(|s| s.name.clone())
            .filter(|name| {
                input
                    .exclusive_start_delivery_stream_name
                    .as_ref()
                    .is_none_or(|start| name > start)
            });
        let page: Vec<String> = names.by_ref().take(limit).collect();
        let has_more = names.next().is_some();
        Ok(ListDeliveryStreamsOutput {
            delivery_stream_names: page,
            has_more_delivery_streams: has_more,
        })
    }

    pub(super) fn update_destination(&self, input: UpdateDestinationInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(version) = v.required(
            &input.current_delivery_stream_version_id,
            "currentDeliveryStreamVersionId",
        ) {
            v.length(version, "currentDeliveryStreamVersionId", 1, 50);
            v.chars(version, "currentDeliveryStreamVersionId", "[0-9]+", |c| {
                c.is_ascii_digit()
            });
        }
        if let Some(id) = v.required(&input.destination_id, "destinationId") {
            v.length(id, "destinationId", 1, 100);
        }
        let stream = self.resolve(&input.delivery_stream_name, v)?;
        reject_unsupported(&[
            (
                input.redshift_destination_update.is_some(),
                "RedshiftDestinationUpdate",
            ),
            (
                input.elasticsearch_destination_update.is_some(),
                "ElasticsearchDestinationUpdate",
            ),
            (
                input.amazonopensearchservice_destination_update.is_some(),
                "AmazonopensearchserviceDestinationUpdate",
            ),
            (
                input.splunk_destination_update.is_some(),
                "SplunkDestinationUpdate",
            ),
            (
                input
                    .amazon_open_search_serverless_destination_update
                    .is_some(),
                "AmazonOpenSearchServerlessDestinationUpdate",
            ),
            (
                input.snowflake_destination_update.is_some(),
                "SnowflakeDestinationUpdate",
            ),
            (
                input.iceberg_destination_update.is_some(),
                "IcebergDestinationUpdate",
            ),
        ])?;
        if input.destination_id.as_deref() != Some(DESTINATION_ID) {
            return Err(ApiError::invalid_argument(format!(
                "Destination Id {} not found for Firehose {}.",
                input.destination_id.unwrap_or_default(),
                stream.name
            )));
        }
        let mut state = stream.state();
        if state.status != Status::Active {
            return Err(ApiError::in_use(format!(
                "Firehose {} is not in the ACTIVE state (status {}).",
                stream.name,
                state.status.as_str()
            )));
        }
        let current = state.version.to_string();
        if input.current_delivery_stream_version_id.as_deref() != Some(current.as_str()) {
            return Err(ApiError::new(
                "ConcurrentModificationException",
                format!(
                    "Firehose {} version mismatch: current version is {current}, request names {}.",
                    stream.name,
                    input.current_delivery_stream_version_id.unwrap_or_default()
                ),
            ));
        }
        let updates = [
            input.s3_destination_update.is_some(),
            input.extended_s3_destination_update.is_some(),
            input.http_endpoint_destination_update.is_some(),
        ];
        if updates.iter().filter(|u| **u).count() != 1 {
            return Err(ApiError::invalid_argument(
                "Exactly one destination update must be specified.",
            ));
        }
        let s3_update = input
            .s3_destination_update
            .or(input.extended_s3_destination_update);
        let (destination, member) = match (
            &state.destination,
            s3_update,
            input.http_endpoint_destination_update,
        ) {
            (DestinationConfig::S3(current), Some(update), _) => {
                let was_partitioned = current
                    .dynamic_partitioning_configuration
                    .as_ref()
                    .and_then(|d| d.enabled);
                let sets_partitioning = update
                    .dynamic_partitioning_configuration
                    .as_ref()
                    .and_then(|d| d.enabled);
                if sets_partitioning.is_some()
                    && sets_partitioning.unwrap_or(false) != was_partitioned.unwrap_or(false)
                {
                    return Err(ApiError::invalid_argument(
                        "Dynamic partitioning can only be enabled when the Firehose stream is created, and cannot be disabled.",
                    ));
                }
                let mut merged = current.clone();
                merge_s3(&mut merged, update);
                (DestinationConfig::S3(merged), "extendedS3DestinationUpdate")
            }
            (_, Some(update), _) => (DestinationConfig::S3(update), "extendedS3DestinationUpdate"),
            (DestinationConfig::HttpEndpoint(current), None, Some(update)) => {
                let mut merged = current.clone();
                merge_http(&mut merged, update);
                (
                    DestinationConfig::HttpEndpoint(merged),
                    "httpEndpointDestinationUpdate",
                )
            }
            (_, None, Some(update)) => (
                DestinationConfig::HttpEndpoint(update),
                "httpEndpointDestinationUpdate",
            ),
            (_, None, None) => {
                return Err(ApiError::invalid_argument(
                    "Exactly one destination update must be specified.",
                ));
            }
        };
        state.target = self.target(&destination, member)?;
        if state.target.partitioned().is_none() {
            state.unpartition();
        }
        state.destination = destination;
        state.version += 1;
        state.last_update_ms = Some(self.now());
        self.persist(&stream, &state)?;
        drop(state);
        // New hints may make the buffer due sooner.
        stream.wake.notify_one();
        Ok(Empty {})
    }

    pub(super) fn tag_delivery_stream(&self, input: TagDeliveryStreamInput) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(tags) = v.required(&input.tags, "tags") {
            validate_tags(tags, "tags", &mut v);
        }
        let stream = self.resolve(&input.delivery_stream_name, v)?;
        let mut state = stream.state();
        let tags = input.tags.unwrap_or_default();
        let added = tags
            .iter()
            .filter_map(|t| t.key.as_ref())
            .filter(|k| !state.tags.contains_key(*k))
            .count();
        if state.tags.len() + added > MAX_TAGS {
            return Err(ApiError::limit_exceeded(format!(
                "A Firehose stream can have at most {MAX_TAGS} tags; it has {} and the request adds {added}.",
                state.tags.len()
            )));
        }
        for tag in tags {
            if let Some(key) = tag.key {
                state.tags.insert(key, tag.value.unwrap_or_default());
            }
        }
        self.persist(&stream, &state)?;
        Ok(Empty {})
    }

    pub(super) fn untag_delivery_stream(
        &self,
        input: UntagDeliveryStreamInput,
    ) -> ApiResult<Empty> {
        let mut v = Validator::new();
        if let Some(keys) = v.required(&input.tag_keys, "tagKeys") {
            v.count(keys.len(), "tagKeys", 1, MAX_TAGS);
            for key in keys {
                validate_tag_key(key, "tagKeys.member", &mut v);
            }
        }
        let stream = self.resolve(&input.delivery_stream_name, v)?;
        let mut state = stream.state();
        for key in input.tag_keys.unwrap_or_default() {
            state.tags.remove(&key);
        }
        self.persist(&stream, &state)?;
        Ok(Empty {})
    }

    pub(super) fn list_tags_for_delivery_stream(
        &self,
        input: ListTagsForDeliveryStreamInput,
    ) -> ApiResult<ListTagsForDeliveryStreamOutput> {
        let mut v = Validator::new();
        if let Some(limit) = input.limit {
            v.range(limit, "limit", 1, 50);
        }
        if let Some(start) = &input.exclusive_start_tag_key {
            validate_tag_key(start, "exclusiveStartTagKey", &mut v);
        }
        let stream = self.resolve(&input.delivery_stream_name, v)?;
        let state = stream.state();
        let limit = usize::try_from(input.limit.unwrap_or(50)).unwrap_or(50);
        let mut tags = state
            .tags
            .iter()
            .filter(|(k, _)| {
                input
                    .exclusive_start_tag_key
                    .as_ref()
                    .is_none_or(|s| *k > s)
            })
            .map(|(k, v)| Tag {
                key: Some(k.clone()),
                value: Some(v.clone()),
            });
        let page: Vec<Tag> = tags.by_ref().take(limit).collect();
        let has_more = tags.next().is_some();
        Ok(ListTagsForDeliveryStreamOutput {
            tags: page,
            has_more_tags: has_more,
        })
    }

    pub(super) fn start_delivery_stream_encryption(
        &self,
        input: StartEncryptionInput,
    ) -> ApiResult<Empty> {
        let mut v = Validator::new();
        let encryption = input
            .delivery_stream_encryption_configuration_input
            .as_ref()
            .map(|e| validate_encryption(e, &mut v));
        let stream = self.resolve(&input.delivery_stream_name, v)?;
        let encryption = encryption.transpose()?.unwrap_or(Encryption {
            enabled: true,
            key_type: Some("AWS_OWNED_CMK".to_owned()),
            key_arn: None,
        });
        if !matches!(stream.source, Source::DirectPut { .. }) {
            return Err(ApiError::invalid_argument(format!(
                "Firehose {} reads a Kinesis stream; encrypt that stream instead.",
                stream.name
            )));
        }
        let mut state = stream.state();
        if state.status != Status::Active {
            return Err(ApiError::in_use(format!(
                "Firehose {} is not in the ACTIVE state.",
                stream.name
            )));
        }
        state.encryption = encryption;
        self.persist(&stream, &state)?;
        Ok(Empty {})
    }

    pub(super) fn stop_delivery_stream_encryption(
        &self,
        input: StopEncryptionInput,
    ) -> ApiResult<Empty> {
        let stream = self.resolve(&input.delivery_stream_name, Validator::new())?;
        let mut state = stream.state();
        if state.status != Status::Active {
            return Err(ApiError::in_use(format!(
                "Firehose {} is not in the ACTIVE state.",
                stream.name
            )));
        }
        state.encryption.enabled = false;
        self.persist(&stream, &state)?;
        Ok(Empty {})
    }
}
