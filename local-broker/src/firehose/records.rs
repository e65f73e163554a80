//! The data plane: PutRecord and PutRecordBatch into a stream's buffer.

use super::Firehose;
use super::api::*;
use super::buffering::BufferedRecord;
use super::model::{DeliveryStream, Source};
use super::store::store_failed;
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest record: 1,000 KiB before base64.
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Most records in one PutRecordBatch.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Most data in one PutRecordBatch.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Buffered bytes per stream beyond which puts are refused with `ServiceUnavailableException`
/// (the destination is not keeping up), instead of growing without bound.
pub const MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;

/// Record ids: unique per broker run, opaque to clients.
fn record_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:032x}{n:016x}", uuid::Uuid::new_v4().as_u128())
}

impl Firehose {
    /// Checks a stream accepts puts.
    fn writable(&self, name: &Option<String>, v: Validator) -> ApiResult<Arc<DeliveryStream>> {
        let stream = self.resolve_active(name, v)?;
        if !matches!(stream.source, Source::DirectPut { .. }) {
            return Err(ApiError::invalid_argument(format!(
                "This operation is not permitted on {} delivery stream type.",
                stream.source.type_name()
            )));
        }
        Ok(stream)
    }

    pub(super) fn put_record(&self, input: PutRecordInput) -> ApiResult<PutRecordOutput> {
        let mut v = Validator::new();
        let data = v
            .required(&input.record, "record")
            .and_then(|record| v.required(&record.data, "record.data"));
        if let Some(data) = data
            && data.0.len() > MAX_RECORD_BYTES
        {
            v.violation(
                "java.nio.HeapByteBuffer",
                "record.data",
                format_args!("Member must have length less than or equal to {MAX_RECORD_BYTES}"),
            );
        }
        let stream = self.writable(&input.delivery_stream_name, v)?;
        let data = input.record.and_then(|r| r.data).unwrap_or_default();
        let record_id = record_id();
        let records = [data.0];
        let batch = self.store.encode(&stream, &records);
        let now = self.now();
        let mut state = stream.state();
        self.check_active(&stream, state.status)?;
        if state.buffered_bytes() + records[0].len() > MAX_BUFFERED_BYTES {
            return Err(ApiError::new("ServiceUnavailableException", "Slow down."));
        }
        let log = self
            .store
            .append(now, &batch)
            .map_err(|err| store_failed(&err))?
            .into_iter()
            .next()
            .unwrap_or_default();
        let [data] = records;
        super::metrics::incoming_put(&stream.name, 1, data.len());
        state.buffer.push(BufferedRecord {
            data,
            arrival_ms: now,
            log,
        });
        let encrypted = state.encryption.enabled;
        drop(state);
        stream.wake.notify_one();
        Ok(PutRecordOutput {
            record_id,
            encrypted,
        })
    }

    pub(super) fn put_record_batch(
        &self,
        input: PutRecordBatchInput,
    ) -> ApiResult<PutRecordBatchOutput> {
        let mut v = Validator::new();
        if let Some(records) = v.required(&input.records, "records") {
            v.count(records.len(), "records", 1, MAX_BATCH_RECORDS);
            for (i, record) in records.iter().enumerate() {
                let member = format!("records.{}.member.data", i + 1);
                match &record.data {
                    None => {
                        v.required(&record.data, &member);
                    }
                    Some(data) if data.0.len() > MAX_RECORD_BYTES => v.violation(
                        "java.nio.HeapByteBuffer",
                        &member,
                        format_args!(
                            "Member must have length less than or equal to {MAX_RECORD_BYTES}"
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        let stream = self.writable(&input.delivery_stream_name, v)?;
        let records = input.records.unwrap_or_default();
        let total: usize = records
            .iter()
            .filter_map(|r| r.data.as_ref())
            .map(|d| d.0.len())
            .sum();
        if total > MAX_BATCH_BYTES {
            return Err(ApiError::invalid_argument(format!(
                "Records size ({total} bytes) exceeds the PutRecordBatch limit of {MAX_BATCH_BYTES} bytes."
            )));
        }
        // Records beyond the buffer's room fail one by one; the rest are logged as one batch,
        // encoded before the stream is locked again (puts racing this one may overshoot the
        // room by their own batches, at most MAX_BATCH_BYTES each).
        let mut room = MAX_BUFFERED_BYTES.saturating_sub(stream.state().buffered_bytes());
        let mut accepted: Vec<Bytes> = Vec::with_capacity(records.len());
        let fits: Vec<bool> = records
            .into_iter()
            .map(|record| {
                let data = record.data.unwrap_or_default().0;
                let fits = data.len() <= room;
                if fits {
                    room -= data.len();
                    accepted.push(data);
                }
                fits
            })
            .collect();
        let batch = self.store.encode(&stream, &accepted);
        let now = self.now();
        let mut state = stream.state();
        self.check_active(&stream, state.status)?;
        let marks = self
            .store
            .append(now, &batch)
            .map_err(|err| store_failed(&err))?;
        super::metrics::incoming_put(
            &stream.name,
            accepted.len(),
            accepted.iter().map(Bytes::len).sum(),
        );
        for (data, log) in accepted.into_iter().zip(marks) {
            state.buffer.push(BufferedRecord {
                data,
                arrival_ms: now,
                log,
            });
        }
        let mut failed = 0;
        let responses = fits
            .into_iter()
            .map(|fits| {
                if fits {
                    PutRecordBatchEntry {
                        record_id: Some(record_id()),
                        error_code: None,
                        error_message: None,
                    }
                } else {
                    failed += 1;
                    PutRecordBatchEntry {
                        record_id: None,
                        error_code: Some("ServiceUnavailableException"),
                        error_message: Some("Slow down.".to_owned()),
                    }
                }
            })
            .collect();
        let encrypted = state.encryption.enabled;
        drop(state);
        stream.wake.notify_one();
        Ok(PutRecordBatchOutput {
            failed_put_count: failed,
            encrypted,
            request_responses: responses,
        })
    }
}
