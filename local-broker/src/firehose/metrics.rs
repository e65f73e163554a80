//! Delivery-stream metrics, named as Firehose names them in CloudWatch (`IncomingBytes`,
//! `DeliveryToS3.Records`, `BackupToS3.Success`, `ExecuteProcessing.Success`, ...), labelled with
//! `delivery_stream`.
//!
//! They go to whichever `metrics` recorder is current. Requests run with their broker's recorder
//! current (see `crate::observe`); the background tasks — delivery, HTTP retries, transforms,
//! the Kinesis source — are polled inside it too ([`crate::observe::Observer::scope`]).
//! `*.Success` gauges are 1 when the latest attempt succeeded and 0 when it failed, as each
//! CloudWatch datapoint is. `DataFreshness` is not kept here: it is read at scrape time from the
//! buffers (`crate::observe::prometheus`).

use bytes::Bytes;

fn labels(stream: &str) -> [(&'static str, String); 1] {
    [("delivery_stream", stream.to_owned())]
}

/// A PutRecord or PutRecordBatch call that put `records` records of `bytes` bytes in all.
pub fn incoming_put(stream: &str, records: usize, bytes: usize) {
    let labels = labels(stream);
    metrics::counter!("IncomingPutRequests", &labels).increment(1);
    metrics::counter!("IncomingRecords", &labels).increment(records as u64);
    metrics::counter!("IncomingBytes", &labels).increment(bytes as u64);
}

/// Records read from the source Kinesis stream.
pub fn read_from_kinesis(stream: &str, records: &[Bytes]) {
    let labels = labels(stream);
    let bytes: usize = records.iter().map(Bytes::len).sum();
    metrics::counter!("DataReadFromKinesisStream.Records", &labels).increment(records.len() as u64);
    metrics::counter!("DataReadFromKinesisStream.Bytes", &labels).increment(bytes as u64);
}

/// Where an object or request went.
#[derive(Debug, Clone, Copy)]
pub enum Channel {
    /// The S3 destination's data objects.
    DeliveryToS3,
    /// An HTTP endpoint destination.
    DeliveryToHttpEndpoint,
    /// Backups and error documents written to S3.
    BackupToS3,
}

impl Channel {
    fn names(self) -> [&'static str; 3] {
        match self {
            Channel::DeliveryToS3 => [
                "DeliveryToS3.Records",
                "DeliveryToS3.Bytes",
                "DeliveryToS3.Success",
            ],
            Channel::DeliveryToHttpEndpoint => [
                "DeliveryToHttpEndpoint.Records",
                "DeliveryToHttpEndpoint.Bytes",
                "DeliveryToHttpEndpoint.Success",
            ],
            Channel::BackupToS3 => [
                "BackupToS3.Records",
                "BackupToS3.Bytes",
                "BackupToS3.Success",
            ],
        }
    }
}

/// One attempt at delivering `records` records of `bytes` bytes; they count once delivered.
pub fn delivery(stream: &str, channel: Channel, records: usize, bytes: usize, success: bool) {
    let labels = labels(stream);
    let [records_name, bytes_name, success_name] = channel.names();
    if success {
        metrics::counter!(records_name, &labels).increment(records as u64);
        metrics::counter!(bytes_name, &labels).increment(bytes as u64);
    }
    metrics::gauge!(success_name, &labels).set(if success { 1.0 } else { 0.0 });
}

/// One invocation of a transformation function.
pub fn processing(stream: &str, success: bool, duration_ms: f64) {
    let labels = labels(stream);
    metrics::gauge!("ExecuteProcessing.Success", &labels).set(if success { 1.0 } else { 0.0 });
    metrics::histogram!("ExecuteProcessing.Duration", &labels).record(duration_ms);
}

/// The time one MetadataExtraction query took.
pub fn jq_processing(stream: &str, duration_ms: f64) {
    metrics::histogram!("JQProcessing.Duration", &labels(stream)).record(duration_ms);
}

/// Active dynamic partitions, after records are partitioned or a partition is delivered.
pub fn partition_count(stream: &str, active: usize) {
    metrics::gauge!("PartitionCount", &labels(stream)).set(active as f64);
}

/// Whether the latest records partitioned needed a partition beyond the limit (1) or not (0).
pub fn partition_count_exceeded(stream: &str, exceeded: bool) {
    metrics::gauge!("PartitionCountExceeded", &labels(stream)).set(if exceeded {
        1.0
    } else {
        0.0
    });
}
