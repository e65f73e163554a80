//! Record processing between the buffer and the destination (`ProcessingConfiguration`).
//!
//! Processors run in Firehose's order whatever order they are listed in:
//! 1. `RecordDeAggregation` splits records holding several JSON documents or delimited parts;
//! 2. `Lambda` transforms through a function speaking the Lambda transform contract, reached over
//!    HTTP ([`Functions`] maps function ARNs to URLs; an `http://` LambdaArn is used as is);
//! 3. `MetadataExtraction` runs a jq query (via `jaq`) for dynamic-partitioning keys;
//! 4. `AppendDelimiterToRecord` appends a delimiter (newline unless `Delimiter` is given, base64).
//!
//! Records a transform answers `ProcessingFailed` for (or that it fails on, after
//! `NumberOfRetries` more attempts) and records a query cannot handle come out as failures for
//! the error prefix.

use super::api::ProcessingConfiguration;
use super::buffering::BufferedRecord;
use super::delivery::FailedRecord;
use super::http_endpoint::HttpClient;
use super::store::LogMark;
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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

/// Lambda invocations retry this many times by default.
const DEFAULT_LAMBDA_RETRIES: u32 = 3;
/// How long a transform has to answer (Lambda's longest timeout).
const LAMBDA_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest transform response read (Lambda's response limit).
const MAX_LAMBDA_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Lambda function ARN → the URL of an HTTP server speaking the Lambda transform contract.
pub type Functions = Arc<BTreeMap<String, String>>;

/// How RecordDeAggregation splits a record.
#[derive(Debug, Clone)]
enum SubRecords {
    /// Concatenated JSON documents.
    Json,
    /// Parts separated by a delimiter.
    Delimited(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Transform {
    arn: String,
    url: String,
    retries: u32,
}

/// The configured processors of one destination.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    deaggregation: Option<SubRecords>,
    transform: Option<Transform>,
    /// MetadataExtraction: a jq program yielding an object of partition keys. Compiled per
    /// batch: jaq's values are not `Send`, and batches are few.
    query: Option<String>,
    /// AppendDelimiterToRecord: the bytes appended to every record.
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
    /// Where the record it came from is in the data directory's log.
    pub log: LogMark,
}

/// What came out of processing one batch.
#[derive(Debug, Default)]
pub struct Processed {
    pub records: Vec<OutRecord>,
    /// Records processing failed on, for the `processing-failed` error prefix.
    pub failed: Vec<FailedRecord>,
}

/// What a transform invocation needs from the delivery stream.
pub struct InvocationContext<'a> {
    pub client: &'a HttpClient,
    pub stream_name: &'a str,
    pub stream_arn: &'a str,
    pub region: &'a str,
}

fn base64_parameter(value: &str, processor: &str) -> ApiResult<Vec<u8>> {
    BASE64.decode(value.as_bytes()).map_err(|_| {
        ApiError::invalid_argument(format!("The {processor} Delimiter must be base64-encoded."))
    })
}

impl Pipeline {
    /// Checks a `ProcessingConfiguration`. Processors this server does not run are rejected by
    /// name.
    pub fn new(config: Option<&ProcessingConfiguration>, functions: &Functions) -> ApiResult<Self> {
        let Some(config) = config else {
            return Ok(Self::default());
        };
        let mut v = Validator::new();
        for processor in &config.processors {
            let type_member = "processingConfiguration.processors.member.type";
            if let Some(kind) = v.required(&processor.kind, type_member) {
                v.one_of(kind, type_member, &PROCESSOR_TYPES);
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
                    pipeline.delimiter = Some(match parameter("Delimiter") {
                        None => b"\n".to_vec(),
                        Some(encoded) => base64_parameter(&encoded, kind)?,
                    });
                }
                "RecordDeAggregation" => {
                    pipeline.deaggregation = Some(match parameter("SubRecordType").as_deref() {
                        None | Some("JSON") => SubRecords::Json,
                        Some("DELIMITED") => {
                            let delimiter = parameter("Delimiter").ok_or_else(|| {
                                ApiError::invalid_argument(
                                    "RecordDeAggregation with SubRecordType DELIMITED needs a Delimiter.",
                                )
                            })?;
                            SubRecords::Delimited(base64_parameter(&delimiter, kind)?)
                        }
                        Some(other) => {
                            return Err(ApiError::invalid_argument(format!(
                                "SubRecordType {other} is not valid; use JSON or DELIMITED."
                            )));
                        }
                    });
                }
                "MetadataExtraction" => {
                    let query = parameter("MetadataExtractionQuery").ok_or_else(|| {
                        ApiError::invalid_argument(
                            "MetadataExtraction needs a MetadataExtractionQuery.",
                        )
                    })?;
                    match parameter("JsonParsingEngine").as_deref() {
                        None | Some("JQ-1.6") => {}
                        Some(other) => {
                            return Err(ApiError::invalid_argument(format!(
                                "JsonParsingEngine {other} is not supported; use JQ-1.6."
                            )));
                        }
                    }
                    metadata_query(&query, &json!({}))
                        .err()
                        .filter(|e| e.starts_with("invalid query"))
                        .map_or(Ok(()), |e| {
                            Err(ApiError::invalid_argument(format!(
                                "MetadataExtractionQuery {query}: {e}"
                            )))
                        })?;
                    pipeline.query = Some(query);
                }
                "Lambda" => {
                    let arn = parameter("LambdaArn").ok_or_else(|| {
                        ApiError::invalid_argument("The Lambda processor needs a LambdaArn.")
                    })?;
                    let url = match functions.get(&arn) {
                        Some(url) => url.clone(),
                        None if arn.starts_with("http://") => arn.clone(),
                        None => {
                            return Err(ApiError::invalid_argument(format!(
                                "Lambda function {arn} is unknown to this server: start it with --lambda {arn}=http://HOST:PORT/PATH (LocalBrokerBuilder::lambda_function), or give an http:// URL as LambdaArn."
                            )));
                        }
                    };
                    let retries = match parameter("NumberOfRetries") {
                        None => DEFAULT_LAMBDA_RETRIES,
                        Some(n) => n.parse().map_err(|_| {
                            ApiError::invalid_argument(format!(
                                "NumberOfRetries must be a whole number, got {n}."
                            ))
                        })?,
                    };
                    pipeline.transform = Some(Transform { arn, url, retries });
                }
                other => {
                    return Err(ApiError::invalid_argument(format!(
                        "The {other} processor is not supported by this server; supported processors: RecordDeAggregation, Lambda, MetadataExtraction, AppendDelimiterToRecord."
                    )));
                }
            }
        }
        Ok(pipeline)
    }

    /// True when a processor provides dynamic-partitioning keys.
    pub fn extracts_partition_keys(&self) -> bool {
        self.query.is_some() || self.transform.is_some()
    }

    /// Runs the batch through the processors.
    pub async fn run(
        &self,
        batch: &[BufferedRecord],
        context: &InvocationContext<'_>,
    ) -> Processed {
        let mut processed = Processed::default();
        let mut records: Vec<OutRecord> = Vec::with_capacity(batch.len());
        for record in batch {
            let parts = match &self.deaggregation {
                None => vec![record.data.clone()],
                Some(SubRecords::Json) => split_json(&record.data),
                Some(SubRecords::Delimited(delimiter)) => split_delimited(&record.data, delimiter),
            };
            records.extend(parts.into_iter().map(|data| OutRecord {
                data,
                arrival_ms: record.arrival_ms,
                query_keys: BTreeMap::new(),
                lambda_keys: BTreeMap::new(),
                log: record.log,
            }));
        }
        if let Some(transform) = &self.transform {
            records = transform.run(records, context, &mut processed.failed).await;
        }
        if let Some(query) = &self.query {
            let mut kept = Vec::with_capacity(records.len());
            for mut record in records {
                let started = std::time::Instant::now();
                let keys = serde_json::from_slice::<Value>(&record.data)
                    .map_err(|e| format!("the record is not JSON: {e}"))
                    .and_then(|value| metadata_query(query, &value));
                super::metrics::jq_processing(
                    context.stream_name,
                    started.elapsed().as_secs_f64() * 1e3,
                );
                match keys {
                    Ok(keys) => {
                        record.query_keys = keys;
                        kept.push(record);
                    }
                    Err(why) => processed.failed.push(FailedRecord {
                        raw: record.data,
                        arrival_ms: record.arrival_ms,
                        error_code: "DynamicPartitioning.MetadataExtractionFailed".to_owned(),
                        error_message: why,
                        attempts: 1,
                    }),
                }
            }
            records = kept;
        }
        if let Some(delimiter) = &self.delimiter {
            for record in &mut records {
                let mut data = Vec::with_capacity(record.data.len() + delimiter.len());
                data.extend_from_slice(&record.data);
                data.extend_from_slice(delimiter);
                record.data = Bytes::from(data);
            }
        }
        processed.records = records;
        processed
    }
}

/// Runs a MetadataExtraction query on one document; the result must be an object whose values
/// become the partition keys (strings as they are, other values as JSON).
fn metadata_query(query: &str, input: &Value) -> Result<BTreeMap<String, String>, String> {
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{Compiler, Ctx, RcIter};
    let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: query,
                path: (),
            },
        )
        .map_err(|errors| format!("invalid query: {} parse error(s)", errors.len()))?;
    let filter = Compiler::default()
        .with_funs(jaq_std::funs().chain(jaq_json::funs()))
        .compile(modules)
        .map_err(|errors| format!("invalid query: {} compile error(s)", errors.len()))?;
    let inputs = RcIter::new(core::iter::empty());
    let mut outputs = filter.run((Ctx::new([], &inputs), jaq_json::Val::from(input.clone())));
    let output = match outputs.next() {
        Some(Ok(value)) => Value::from(value),
        Some(Err(err)) => return Err(format!("the query failed: {err}")),
        None => return Err("the query yielded nothing".to_owned()),
    };
    let Value::Object(map) = output else {
        return Err(format!("the query must yield an object, got {output}"));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// Concatenated JSON documents, each as its own record (bytes as sent, whitespace between
/// documents dropped). A record that is not a stream of JSON documents stays whole.
fn split_json(data: &Bytes) -> Vec<Bytes> {
    let mut parts = Vec::new();
    let mut stream =
        serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    while let Some(next) = stream.next() {
        if next.is_err() {
            return vec![data.clone()];
        }
        let end = stream.byte_offset();
        let part = data.slice(start..end);
        let trimmed = part
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(part.len());
        parts.push(part.slice(trimmed..));
        start = end;
    }
    if parts.is_empty() {
        vec![data.clone()]
    } else {
        parts
    }
}

/// Parts separated by `delimiter`; a trailing delimiter does not make an empty part.
fn split_delimited(data: &Bytes, delimiter: &[u8]) -> Vec<Bytes> {
    if delimiter.is_empty() {
        return vec![data.clone()];
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + delimiter.len() <= data.len() {
        if &data[i..i + delimiter.len()] == delimiter {
            parts.push(data.slice(start..i));
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if start < data.len() {
        parts.push(data.slice(start..));
    }
    parts
}

impl Transform {
    /// Invokes the function with every record; returns the records it answered `Ok` for (with
    /// its data and partition keys) and adds the others to `failed`. `Dropped` records vanish.
    async fn run(
        &self,
        records: Vec<OutRecord>,
        context: &InvocationContext<'_>,
        failed: &mut Vec<FailedRecord>,
    ) -> Vec<OutRecord> {
        if records.is_empty() {
            return records;
        }
        let ids: Vec<String> = (0..records.len()).map(|i| format!("{i:08}")).collect();
        let event = json!({
            "invocationId": uuid::Uuid::new_v4().to_string(),
            "deliveryStreamArn": context.stream_arn,
            "region": context.region,
            "records": records.iter().zip(&ids).map(|(r, id)| json!({
                "recordId": id,
                "approximateArrivalTimestamp": r.arrival_ms,
                "data": BASE64.encode(&r.data),
            })).collect::<Vec<_>>(),
        })
        .to_string();
        let mut attempts = 0;
        let answer = loop {
            attempts += 1;
            let started = std::time::Instant::now();
            let invoked = self.invoke(context.client, &event).await;
            let duration_ms = started.elapsed().as_secs_f64() * 1e3;
            super::metrics::processing(context.stream_name, invoked.is_ok(), duration_ms);
            match invoked {
                Ok(answer) => break Ok(answer),
                Err(why) if attempts > self.retries => break Err(why),
                Err(why) => {
                    tracing::warn!(function = %self.arn, attempts, %why, "transform invocation failed; retrying");
                }
            }
        };
        let fail = |record: OutRecord, code: &str, message: String| FailedRecord {
            raw: record.data,
            arrival_ms: record.arrival_ms,
            error_code: code.to_owned(),
            error_message: message,
            attempts,
        };
        let answers = match answer {
            Ok(answers) => answers,
            Err(why) => {
                failed.extend(
                    records
                        .into_iter()
                        .map(|r| fail(r, "Lambda.InvokeFailed", why.clone())),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(records.len());
        for (record, id) in records.into_iter().zip(&ids) {
            let Some(answer) = answers.get(id) else {
                failed.push(fail(
                    record,
                    "Lambda.MissingRecordId",
                    format!("The function's response has no record {id}."),
                ));
                continue;
            };
            match answer["result"].as_str() {
                Some("Ok") => {
                    let data = answer["data"].as_str().and_then(|d| BASE64.decode(d).ok());
                    let Some(data) = data else {
                        failed.push(fail(
                            record,
                            "Lambda.InvalidData",
                            "An Ok record must carry base64 data.".to_owned(),
                        ));
                        continue;
                    };
                    let keys = answer["metadata"]["partitionKeys"]
                        .as_object()
                        .map(|keys| {
                            keys.iter()
                                .map(|(k, v)| {
                                    (
                                        k.clone(),
                                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(OutRecord {
                        data: Bytes::from(data),
                        arrival_ms: record.arrival_ms,
                        query_keys: record.query_keys,
                        lambda_keys: keys,
                        log: record.log,
                    });
                }
                Some("Dropped") => {}
                Some("ProcessingFailed") => failed.push(fail(
                    record,
                    "Lambda.ProcessingFailed",
                    "The function answered ProcessingFailed.".to_owned(),
                )),
                other => failed.push(fail(
                    record,
                    "Lambda.InvalidResult",
                    format!("Unknown result {other:?}; use Ok, Dropped or ProcessingFailed."),
                )),
            }
        }
        out
    }

    /// One invocation: the response's records by recordId.
    async fn invoke(
        &self,
        client: &HttpClient,
        event: &str,
    ) -> Result<BTreeMap<String, Value>, String> {
        let request = http::Request::post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(event.to_owned())))
            .map_err(|e| format!("invalid function URL {}: {e}", self.url))?;
        let response = tokio::time::timeout(LAMBDA_TIMEOUT, client.request(request))
            .await
            .map_err(|_| "the function timed out".to_owned())?
            .map_err(|e| format!("cannot reach the function: {e}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_LAMBDA_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("cannot read the function's response: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("the function answered {status}"));
        }
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("the function's response is not JSON: {e}"))?;
        let records = answer["records"]
            .as_array()
            .ok_or("the function's response has no records")?;
        Ok(records
            .iter()
            .filter_map(|r| Some((r["recordId"].as_str()?.to_owned(), r.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_queries_yield_partition_keys() {
        let keys = metadata_query(
            "{customer: .customer_id, year: .when.year}",
            &json!({"customer_id": "c-1", "when": {"year": 2024}}),
        )
        .unwrap();
        assert_eq!(keys["customer"], "c-1");
        assert_eq!(keys["year"], "2024");
        assert!(metadata_query(".customer_id", &json!({"customer_id": "x"})).is_err());
        assert!(
            metadata_query("{a: .[", &json!({}))
                .unwrap_err()
                .starts_with("invalid query")
        );
    }

    #[test]
    fn deaggregation_splits_json_documents_and_delimited_parts() {
        let json = split_json(&Bytes::from_static(b"{\"a\":1} {\"a\":2}\n{\"a\":3}"));
        assert_eq!(json, [&b"{\"a\":1}"[..], b"{\"a\":2}", b"{\"a\":3}"]);
        assert_eq!(
            split_json(&Bytes::from_static(b"not json")),
            [&b"not json"[..]]
        );
        let parts = split_delimited(&Bytes::from_static(b"a####b####"), b"####");
        assert_eq!(parts, [&b"a"[..], b"b"]);
    }
}
