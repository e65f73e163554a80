//! Destination settings: the wire configuration checked (model constraints, Firehose's rules,
//! what this server supports) and resolved into what delivery acts on.
//!
//! Model constraints fail with `ValidationException`; rules and unsupported options fail with
//! `InvalidArgumentException` naming the option.

use super::api::{BufferingHints, HttpEndpointDestination, S3Destination};
use super::buffering::Hints;
use super::compression::{COMPRESSION_FORMATS, Compression};
use super::prefix::KeyPrefixes;
use super::processing::{Functions, Pipeline};
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use std::time::Duration;

/// Default `BufferingHints` (S3 and HTTP endpoint): 5 MiB or 300 seconds.
pub const DEFAULT_SIZE_IN_MBS: i64 = 5;
/// Default `IntervalInSeconds`.
pub const DEFAULT_INTERVAL_IN_SECONDS: i64 = 300;
/// Most `SizeInMBs` for S3 destinations.
const MAX_S3_SIZE_IN_MBS: i64 = 128;
/// Most `SizeInMBs` for HTTP endpoint destinations.
const MAX_HTTP_SIZE_IN_MBS: i64 = 64;
/// Least `SizeInMBs` with dynamic partitioning.
const MIN_PARTITIONED_SIZE_IN_MBS: i64 = 64;
/// `RetryOptions.DurationInSeconds` when not set (the console's default).
const DEFAULT_RETRY_SECONDS: i64 = 300;

/// Where and how one S3 destination writes objects.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The bucket (a directory under the S3 root, or a bucket on the S3 endpoint).
    pub bucket: String,
    pub prefixes: KeyPrefixes,
    pub compression: Compression,
    /// `FileExtension` when set, else the compression's extension.
    pub extension: String,
    pub hints: Hints,
    pub pipeline: Pipeline,
    pub dynamic_partitioning: bool,
    /// `S3BackupMode: Enabled`: where untransformed source records are also written.
    pub source_backup: Option<Box<S3Settings>>,
}

/// Where and how one HTTP endpoint destination delivers.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub url: String,
    pub access_key: Option<String>,
    pub hints: Hints,
    pub gzip: bool,
    pub common_attributes: Vec<(String, String)>,
    pub retry_duration: Duration,
    /// `S3BackupMode: AllData` (else only failed data goes to S3).
    pub backup_all: bool,
    pub s3: S3Settings,
    pub pipeline: Pipeline,
}

/// The settings of a delivery stream's one destination.
// Cloned once per delivered batch: boxing either variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Target {
    S3(S3Settings),
    Http(HttpSettings),
}

impl Target {
    /// The buffering hints records wait on.
    pub fn hints(&self) -> Hints {
        match self {
            Target::S3(s3) => s3.hints,
            Target::Http(http) => http.hints,
        }
    }

    /// The S3 settings of a destination with dynamic partitioning.
    pub fn partitioned(&self) -> Option<&S3Settings> {
        match self {
            Target::S3(s3) if s3.dynamic_partitioning => Some(s3),
            _ => None,
        }
    }
}

fn reject(option: &str, why: &str) -> ApiError {
    ApiError::invalid_argument(format!("{option} is not supported by this server: {why}."))
}

/// Checks the model constraints of buffering hints; returns the resolved hints.
fn buffering_hints(
    hints: Option<&BufferingHints>,
    member: &str,
    max_size: i64,
    v: &mut Validator,
) -> ApiResult<(i64, i64)> {
    let Some(hints) = hints else {
        return Ok((DEFAULT_SIZE_IN_MBS, DEFAULT_INTERVAL_IN_SECONDS));
    };
    if let Some(size) = hints.size_in_mbs {
        v.range(size, &format!("{member}.sizeInMBs"), 1, max_size);
    }
    if let Some(interval) = hints.interval_in_seconds {
        v.range(interval, &format!("{member}.intervalInSeconds"), 0, 900);
    }
    match (hints.size_in_mbs, hints.interval_in_seconds) {
        (Some(size), Some(interval)) => Ok((size, interval)),
        (None, None) => Ok((DEFAULT_SIZE_IN_MBS, DEFAULT_INTERVAL_IN_SECONDS)),
        _ => Err(ApiError::invalid_argument(
            "BufferingHints must set both SizeInMBs and IntervalInSeconds, or neither.",
        )),
    }
}

/// `arn:<partition>:s3:::<bucket>` → bucket.
fn bucket_of(arn: &str, member: &str, v: &mut Validator) -> String {
    v.length(arn, member, 1, 2048);
    let bucket = arn
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":s3:::"))
        .map(|(_, bucket)| bucket)
        .filter(|b| {
            (1..=255).contains(&b.len())
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                && !b.starts_with('.')
        });
    match bucket {
        Some(bucket) => bucket.to_owned(),
        None => {
            v.violation(
                arn,
                member,
                "Member must satisfy regular expression pattern: arn:.*:s3:::[\\w\\.\\-]{1,255}",
            );
            String::new()
        }
    }
}

/// Checks a role ARN's shape.
pub fn role_arn(arn: &str, member: &str, v: &mut Validator) {
    v.length(arn, member, 1, 512);
    let ok = arn.starts_with("arn:")
        && arn
            .split_once(":iam::")
            .and_then(|(_, rest)| rest.split_once(":role/"))
            .is_some_and(|(account, role)| {
                account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && !role.is_empty()
            });
    if !ok {
        v.violation(arn, member, "Member must satisfy regular expression pattern: arn:.*:iam::\\d{12}:role/[a-zA-Z_0-9+=,.@\\-_/]+");
    }
}

/// Resolves an (Extended)S3 destination configuration. `member` is its name in messages.
pub fn s3_settings(
    config: &S3Destination,
    member: &str,
    functions: &Functions,
) -> ApiResult<S3Settings> {
    let mut v = Validator::new();
    if let Some(role) = v.required(&config.role_arn, &format!("{member}.roleARN")) {
        role_arn(role, &format!("{member}.roleARN"), &mut v);
    }
    let bucket = match v.required(&config.bucket_arn, &format!("{member}.bucketARN")) {
        Some(arn) => bucket_of(arn, &format!("{member}.bucketARN"), &mut v),
        None => String::new(),
    };
    for (value, name) in [
        (&config.prefix, "prefix"),
        (&config.error_output_prefix, "errorOutputPrefix"),
    ] {
        if let Some(value) = value {
            v.length(value, &format!("{member}.{name}"), 0, 1024);
        }
    }
    let (size, interval) = buffering_hints(
        config.buffering_hints.as_ref(),
        &format!("{member}.bufferingHints"),
        MAX_S3_SIZE_IN_MBS,
        &mut v,
    )?;
    if let Some(format) = &config.compression_format {
        v.one_of(
            format,
            &format!("{member}.compressionFormat"),
            &COMPRESSION_FORMATS,
        );
    }
    if let Some(mode) = &config.s3_backup_mode {
        v.one_of(
            mode,
            &format!("{member}.s3BackupMode"),
            &["Disabled", "Enabled"],
        );
    }
    if let Some(extension) = &config.file_extension {
        v.length(extension, &format!("{member}.fileExtension"), 0, 128);
        let ok = extension.is_empty()
            || (extension.starts_with('.')
                && extension.len() > 1
                && extension[1..].chars().all(|c| {
                    c.is_ascii_digit() || c.is_ascii_lowercase() || "!-_.*'()".contains(c)
                }));
        if !ok {
            v.violation(
                extension,
                &format!("{member}.fileExtension"),
                "Member must satisfy regular expression pattern: ^$|\\.[0-9a-z!\\-_.*'()]+",
            );
        }
    }
    let dynamic_partitioning = config
        .dynamic_partitioning_configuration
        .as_ref()
        .is_some_and(|d| d.enabled == Some(true));
    if let Some(retry) = config
        .dynamic_partitioning_configuration
        .as_ref()
        .and_then(|d| d.retry_options.as_ref())
        .and_then(|r| r.duration_in_seconds)
    {
        v.range(
            retry,
            &format!("{member}.dynamicPartitioningConfiguration.retryOptions.durationInSeconds"),
            0,
            7200,
        );
    }
    v.finish()?;

    if config
        .data_format_conversion_configuration
        .as_ref()
        .is_some_and(|c| c.get("Enabled").and_then(|e| e.as_bool()) != Some(false))
    {
        return Err(reject(
            "DataFormatConversionConfiguration",
            "records are delivered as they are (no Parquet/ORC conversion); set Enabled to false or leave it out",
        ));
    }
    if let Some(zone) = config
        .custom_time_zone
        .as_deref()
        .filter(|z| !z.is_empty() && *z != "UTC")
    {
        return Err(reject(
            "CustomTimeZone",
            &format!("prefixes are evaluated in UTC only, not {zone}"),
        ));
    }
    let compression = Compression::parse(config.compression_format.as_deref())
        .unwrap_or(Compression::Uncompressed);
    if dynamic_partitioning && size < MIN_PARTITIONED_SIZE_IN_MBS {
        return Err(ApiError::invalid_argument(format!(
            "BufferingHints.SizeInMBs must be at least {MIN_PARTITIONED_SIZE_IN_MBS} when Dynamic Partitioning is enabled."
        )));
    }
    let prefixes = KeyPrefixes::new(
        config.prefix.as_deref(),
        config.error_output_prefix.as_deref(),
        dynamic_partitioning,
    )
    .map_err(ApiError::invalid_argument)?;
    let pipeline = Pipeline::new(config.processing_configuration.as_ref(), functions)?;
    if dynamic_partitioning && !pipeline.extracts_partition_keys() {
        return Err(ApiError::invalid_argument(
            "Dynamic partitioning needs a MetadataExtraction or Lambda processor that provides the partition keys.",
        ));
    }
    let source_backup = match (config.s3_backup_mode.as_deref(), &config.s3_backup) {
        (Some("Enabled"), Some(backup)) => Some(Box::new(s3_settings(
            backup,
            &format!("{member}.s3BackupConfiguration"),
            functions,
        )?)),
        (Some("Enabled"), None) => {
            return Err(ApiError::invalid_argument(
                "S3BackupConfiguration is required when S3BackupMode is Enabled.",
            ));
        }
        _ => None,
    };
    let extension = match &config.file_extension {
        Some(extension) if !extension.is_empty() => extension.clone(),
        _ => compression.extension().to_owned(),
    };
    Ok(S3Settings {
        bucket,
        prefixes,
        compression,
        extension,
        hints: Hints::new(size, interval),
        pipeline,
        dynamic_partitioning,
        source_backup,
    })
}

/// Resolves an HTTP endpoint destination configuration.
pub fn http_settings(
    config: &HttpEndpointDestination,
    member: &str,
    functions: &Functions,
) -> ApiResult<HttpSettings> {
    let mut v = Validator::new();
    let endpoint = v.required(
        &config.endpoint_configuration,
        &format!("{member}.endpointConfiguration"),
    );
    let url =
        endpoint.and_then(|e| v.required(&e.url, &format!("{member}.endpointConfiguration.url")));
    if let Some(url) = url {
        v.length(url, &format!("{member}.endpointConfiguration.url"), 1, 1000);
    }
    if let Some(key) = endpoint.and_then(|e| e.access_key.as_ref()) {
        v.length(
            key,
            &format!("{member}.endpointConfiguration.accessKey"),
            0,
            4096,
        );
    }
    if let Some(role) = &config.role_arn {
        role_arn(role, &format!("{member}.roleARN"), &mut v);
    }
    let (size, interval) = buffering_hints(
        config.buffering_hints.as_ref(),
        &format!("{member}.bufferingHints"),
        MAX_HTTP_SIZE_IN_MBS,
        &mut v,
    )?;
    let request = config.request_configuration.clone().unwrap_or_default();
    if let Some(encoding) = &request.content_encoding {
        v.one_of(
            encoding,
            &format!("{member}.requestConfiguration.contentEncoding"),
            &["NONE", "GZIP"],
        );
    }
    v.count(
        request.common_attributes.len(),
        &format!("{member}.requestConfiguration.commonAttributes"),
        0,
        50,
    );
    let mut common_attributes = Vec::new();
    for attribute in &request.common_attributes {
        let name_member =
            format!("{member}.requestConfiguration.commonAttributes.member.attributeName");
        let value_member =
            format!("{member}.requestConfiguration.commonAttributes.member.attributeValue");
        let name = v.required(&attribute.attribute_name, &name_member).cloned();
        let value = v
            .required(&attribute.attribute_value, &value_member)
            .cloned();
        if let (Some(name), Some(value)) = (name, value) {
            v.length(&name, &name_member, 1, 256);
            v.length(&value, &value_member, 0, 1024);
            common_attributes.push((name, value));
        }
    }
    let retry = config
        .retry_options
        .as_ref()
        .and_then(|r| r.duration_in_seconds)
        .unwrap_or(DEFAULT_RETRY_SECONDS);
    v.range(
        retry,
        &format!("{member}.retryOptions.durationInSeconds"),
        0,
        7200,
    );
    if let Some(mode) = &config.s3_backup_mode {
        v.one_of(
            mode,
            &format!("{member}.s3BackupMode"),
            &["FailedDataOnly", "AllData"],
        );
    }
    let s3 = v.required(&config.s3, &format!("{member}.s3Configuration"));
    v.finish()?;
    let url = url.cloned().unwrap_or_default();
    // AWS demands https; a local broker delivers to local servers, which rarely have TLS.
    if !url.starts_with("http://") {
        return Err(ApiError::invalid_argument(format!(
            "EndpointConfiguration.Url must be an http:// URL on this server (https endpoints are not supported), got '{url}'."
        )));
    }
    if config
        .secrets_manager_configuration
        .as_ref()
        .is_some_and(|c| c.get("Enabled").and_then(|e| e.as_bool()) == Some(true))
    {
        return Err(reject(
            "SecretsManagerConfiguration",
            "give the endpoint's key as EndpointConfiguration.AccessKey",
        ));
    }
    let Some(s3) = s3 else {
        return Err(ApiError::validation("S3Configuration is required."));
    };
    let s3 = s3_settings(s3, &format!("{member}.s3Configuration"), functions)?;
    Ok(HttpSettings {
        url,
        access_key: endpoint.and_then(|e| e.access_key.clone()),
        hints: Hints::new(size, interval),
        gzip: request.content_encoding.as_deref() == Some("GZIP"),
        common_attributes,
        retry_duration: Duration::from_secs(u64::try_from(retry).unwrap_or(0)),
        backup_all: config.s3_backup_mode.as_deref() == Some("AllData"),
        s3,
        pipeline: Pipeline::new(config.processing_configuration.as_ref(), functions)?,
    })
}
