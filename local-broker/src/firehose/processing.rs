//! Record processing between the buffer and the destination (`ProcessingConfiguration`).
//!
//! Processors run in Firehose's order whatever order they are listed in: de-aggregation,
//! transformation, metadata extraction, then the delimiter is appended.

use super::api::ProcessingConfiguration;
use super::buffering::BufferedRecord;
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use std::collections::BTreeMap;

const PROCESSOR_TYPES: [&str; 6] = [
    "RecordDeAggregation",
    "Decompression",
    "CloudWatchLogProcessing",
    "Lambda",
    "MetadataExtraction",
    "AppendDelimiterToRecord",
];

const PARAMETER_NAMES: [&str; 11] = [
    "LambdaArn",
    "NumberOfRetries",
    "MetadataExtractionQuery",
    "JsonParsingEngine",
    "RoleArn",
    "BufferSizeInMBs",
    "BufferIntervalInSeconds",
    "SubRecordType",
    "Delimiter",
    "CompressionFormat",
    "DataMessageExtraction",
];

/// The configured processors of one destination.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// `AppendDelimiterToRecord`: the bytes appended to every record.
    delimiter: Option<Vec<u8>>,
}

/// A record on its way to the destination.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub data: Bytes,
    pub arrival_ms: i64,
    /// Partition keys from MetadataExtraction.
    pub query_keys: BTreeMap<String, String>,
    /// Partition keys from a transformation's response.
    pub lambda_keys: BTreeMap<String, String>,
}

/// What came out of processing one batch.
#[derive(Debug, Default)]
pub struct Processed {
    pub records: Vec<OutRecord>,
}

impl Pipeline {
    /// Checks a `ProcessingConfiguration`. Processors this server does not run are rejected by
    /// name.
    pub fn new(config: Option<&ProcessingConfiguration>) -> ApiResult<Self> {
        let Some(config) = config else {
            return Ok(Self::default());
        };
        let mut v = Validator::new();
        for processor in &config.processors {
            if let Some(kind) = v.required(
                &processor.kind,
                "processingConfiguration.processors.member.type",
            ) {
                v.one_of(
                    kind,
                    "processingConfiguration.processors.member.type",
                    &PROCESSOR_TYPES,
                );
            }
            for parameter in &processor.parameters {
                let name_member =
                    "processingConfiguration.processors.member.parameters.member.parameterName";
                let value_member =
                    "processingConfiguration.processors.member.parameters.member.parameterValue";
                if let Some(name) = v.required(&parameter.parameter_name, name_member) {
                    v.one_of(name, name_member, &PARAMETER_NAMES);
                }
                if let Some(value) = v.required(&parameter.parameter_value, value_member) {
                    v.length(value, value_member, 1, 5120);
                }
            }
        }
        v.finish()?;
        if config.enabled == Some(false) {
            return Ok(Self::default());
        }
        let mut pipeline = Self::default();
        for processor in &config.processors {
            let kind = processor.kind.as_deref().unwrap_or_default();
            let parameter = |name: &str| {
                processor
                    .parameters
                    .iter()
                    .find(|p| p.parameter_name.as_deref() == Some(name))
                    .and_then(|p| p.parameter_value.clone())
            };
            match kind {
                "AppendDelimiterToRecord" => {
                    let delimiter = match parameter("Delimiter") {
                        None => b"\n".to_vec(),
                        Some(encoded) => BASE64.decode(encoded.as_bytes()).map_err(|_| {
                            ApiError::invalid_argument(
                                "The AppendDelimiterToRecord Delimiter must be base64-encoded.",
                            )
                        })?,
                    };
                    pipeline.delimiter = Some(delimiter);
                }
                other => {
                    return Err(ApiError::invalid_argument(format!(
                        "The {other} processor is not supported by this server; supported processors: AppendDelimiterToRecord."
                    )));
                }
            }
        }
        Ok(pipeline)
    }

    /// True when a processor provides dynamic-partitioning keys.
    pub fn extracts_partition_keys(&self) -> bool {
        false
    }

    /// Runs the batch through the processors.
    pub async fn run(&self, batch: &[BufferedRecord]) -> Processed {
        let records = batch
            .iter()
            .map(|record| {
                let data = match &self.delimiter {
                    None => record.data.clone(),
                    Some(delimiter) => {
                        let mut data = Vec::with_capacity(record.data.len() + delimiter.len());
                        data.extend_from_slice(&record.data);
                        data.extend_from_slice(delimiter);
                        Bytes::from(data)
                    }
                };
                OutRecord {
                    data,
                    arrival_ms: record.arrival_ms,
                    query_keys: BTreeMap::new(),
                    lambda_keys: BTreeMap::new(),
                }
            })
            .collect();
        Processed { records }
    }
}
