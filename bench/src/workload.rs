//! The measured phases, all through `aws-sdk-kinesis` over real HTTP:
//! PutRecords throughput, GetRecords read-back with verification, PutRecord latency, and
//! put→visible latency (how soon a reader sees an acknowledged record).
//!
//! Every record carries its writer and per-writer sequence in its first 12 bytes and a filler
//! derived from them, so the reader can check every byte, the partition key, the shard PutRecords
//! reported and the order, without keeping a copy of what was written.

use crate::target::{cpu_time, own_cpu_time};
use anyhow::{Context, Result, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_smithy_types::Blob;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Serialize;
use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ack marker for a record PutRecords did not acknowledge.
const UNACKED: u8 = u8::MAX;
/// A writer gives up after this many failed calls, so a dead server cannot spin the benchmark.
const MAX_WRITER_ERRORS: u64 = 10;
/// Bytes at the front of each record that name it: writer (u32) and sequence (u64).
pub const HEADER_BYTES: usize = 12;
/// Problems kept verbatim per shard; the rest are only counted.
const MAX_PROBLEMS_KEPT: usize = 5;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub shards: u32,
    pub concurrency: usize,
    pub batch_size: usize,
    pub record_size: usize,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub max_records: Option<u64>,
    #[serde(with = "secs")]
    pub latency_duration: Duration,
    pub latency_max_calls: u64,
    #[serde(with = "secs")]
    pub read_timeout: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// The bytes of record `seq` of writer `writer`.
pub fn record_data(writer: u32, seq: u64, size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size.max(HEADER_BYTES));
    data.extend_from_slice(&writer.to_be_bytes());
    data.extend_from_slice(&seq.to_be_bytes());
    let mut x = (u64::from(writer) << 40) ^ seq ^ 0x9E37_79B9_7F4A_7C15;
    while data.len() < size {
        // xorshift64*: a cheap deterministic filler, so every byte of every record is checkable.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (size - data.len()).min(word.len());
        data.extend_from_slice(&word[..take]);
    }
    data
}

/// The partition key of record `seq` of writer `writer`: distinct keys spread over all shards.
pub fn partition_key(writer: u32, seq: u64) -> String {
    format!("w{writer}-{seq}")
}

fn error_text<E: std::error::Error>(err: &E) -> String {
    DisplayErrorContext(err).to_string()
}

/// Creates a stream, waits until it is ACTIVE and returns its shard ids in order.
///
/// DescribeStream (not the newer Summary / ListShards) because every peer implements it.
pub async fn create_stream(client: &Client, name: &str, shards: u32) -> Result<Vec<String>> {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(i32::try_from(shards).context("too many shards")?)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("CreateStream: {}", error_text(&e)))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = client
            .describe_stream()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DescribeStream: {}", error_text(&e)))?;
        if let Some(desc) = out.stream_description()
            && *desc.stream_status() == StreamStatus::Active
        {
            let ids: Vec<String> = desc
                .shards()
                .iter()
                .map(|s| s.shard_id().to_owned())
                .collect();
            if ids.len() != shards as usize {
                bail!("stream {name} has {} shards, wanted {shards}", ids.len());
            }
            return Ok(ids);
        }
        if Instant::now() > deadline {
            bail!("stream {name} is not ACTIVE after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn delete_stream(client: &Client, name: &str) {
    // Best effort: the server is stopped right after anyway.
    let _ = client.delete_stream().stream_name(name).send().await;
}

/// Opens `n` connections before a clock starts, so connection setup is not measured.
async fn warm_up(client: &Client, stream: &str, n: usize) -> Result<()> {
    let calls = (0..n).map(|_| {
        let client = client.clone();
        let stream = stream.to_owned();
        tokio::spawn(async move { client.describe_stream().stream_name(stream).send().await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await?
            .map_err(|e| anyhow::anyhow!("warm-up DescribeStream: {}", error_text(&e)))?;
    }
    Ok(())
}

/// CPU of a process between two points, per unit of work.
struct CpuMeter {
    pid: Option<u32>,
    server_start: Option<Duration>,
    own_start: Option<Duration>,
}

impl CpuMeter {
    fn start(pid: Option<u32>) -> Self {
        Self {
            pid,
            server_start: pid.and_then(|p| cpu_time(p).ok()),
            own_start: own_cpu_time().ok(),
        }
    }

    /// (server µs per unit, generator µs per unit).
    fn per_unit_us(&self, units: u64) -> (Option<f64>, Option<f64>) {
        if units == 0 {
            return (None, None);
        }
        let per = |start: Option<Duration>, now: Option<Duration>| {
            Some((now?.saturating_sub(start?)).as_secs_f64() * 1e6 / units as f64)
        };
        (
            per(self.server_start, self.pid.and_then(|p| cpu_time(p).ok())),
            per(self.own_start, own_cpu_time().ok()),
        )
    }
}

fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// Results of the PutRecords throughput phase.
#[derive(Debug, Clone, Serialize)]
pub struct PutRecordsResult {
    pub records: u64,
    pub batches: u64,
    pub errors: u64,
    pub failed_records: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    /// CPU of the server process per acknowledged record (spawned servers only).
    pub server_cpu_us_per_record: Option<f64>,
    /// CPU of this process per acknowledged record (includes an embedded broker).
    pub generator_cpu_us_per_record: Option<f64>,
    pub first_error: Option<String>,
}

/// For each writer, for each of its records: the index of the shard PutRecords put it on, or
/// [`UNACKED`].
pub struct Acks(Vec<Vec<u8>>);

impl Acks {
    fn per_shard(&self, shards: usize) -> Vec<u64> {
        let mut counts = vec![0u64; shards];
        for &ack in self.0.iter().flatten() {
            if let Some(c) = counts.get_mut(usize::from(ack)) {
                *c += 1;
            }
        }
        counts
    }
}

#[derive(Default)]
struct WriterOutcome {
    acks: Vec<u8>,
    latencies: Vec<Duration>,
    batches: u64,
    errors: u64,
    failed: u64,
    first_error: Option<String>,
}

struct WriterJob {
    client: Client,
    stream: String,
    shard_ids: Arc<Vec<String>>,
    writer: u32,
    params: Params,
    deadline: Instant,
    budget: Arc<AtomicU64>,
}

async fn writer(job: WriterJob) -> Result<WriterOutcome> {
    let WriterJob {
        client,
        stream,
        shard_ids,
        writer,
        params: p,
        deadline,
        budget,
    } = job;
    let mut out = WriterOutcome::default();
    let mut seq = 0u64;
    let batch = p.batch_size as u64;
    while Instant::now() < deadline {
        if let Some(max) = p.max_records
            && budget.fetch_add(batch, Ordering::Relaxed) >= max
        {
            break;
        }
        let mut entries = Vec::with_capacity(p.batch_size);
        for s in seq..seq + batch {
            entries.push(
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(record_data(writer, s, p.record_size)))
                    .partition_key(partition_key(writer, s))
                    .build()?,
            );
        }
        let started = Instant::now();
        let resp = client
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await;
        out.latencies.push(started.elapsed());
        out.batches += 1;
        match resp {
            Ok(resp) => {
                let results = resp.records();
                for i in 0..p.batch_size {
                    let ack = results
                        .get(i)
                        .filter(|r| r.error_code().is_none())
                        .and_then(|r| r.shard_id())
                        .and_then(|id| shard_ids.iter().position(|s| s == id))
                        .and_then(|i| u8::try_from(i).ok())
                        .unwrap_or(UNACKED);
                    if ack == UNACKED {
                        out.failed += 1;
                    }
                    out.acks.push(ack);
                }
            }
            Err(e) => {
                out.errors += 1;
                out.acks.extend(std::iter::repeat_n(UNACKED, p.batch_size));
                out.first_error.get_or_insert_with(|| error_text(&e));
                if out.errors >= MAX_WRITER_ERRORS {
                    break;
                }
            }
        }
        seq += batch;
    }
    Ok(out)
}

/// Phase (a): `concurrency` writers send PutRecords batches until the duration or record budget
/// is spent.
pub async fn put_records_phase(
    client: &Client,
    stream: &str,
    shard_ids: &[String],
    p: &Params,
    server_pid: Option<u32>,
) -> Result<(PutRecordsResult, Acks)> {
    warm_up(client, stream, p.concurrency).await?;
    let budget = Arc::new(AtomicU64::new(0));
    let shard_ids = Arc::new(shard_ids.to_vec());
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let deadline = started + p.duration;
    let handles: Vec<_> = (0..p.concurrency)
        .map(|w| {
            tokio::spawn(writer(WriterJob {
                client: client.clone(),
                stream: stream.to_owned(),
                shard_ids: Arc::clone(&shard_ids),
                writer: w as u32,
                params: p.clone(),
                deadline,
                budget: Arc::clone(&budget),
            }))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for h in handles {
        outcomes.push(h.await??);
    }
    let elapsed = started.elapsed();
    let records: u64 = outcomes
        .iter()
        .map(|o| o.acks.iter().filter(|&&a| a != UNACKED).count() as u64)
        .sum();
    let (server_cpu, own_cpu) = cpu.per_unit_us(records);
    let mut latencies: Vec<Duration> = outcomes
        .iter()
        .flat_map(|o| o.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    let result = PutRecordsResult {
        records,
        batches: outcomes.iter().map(|o| o.batches).sum(),
        errors: outcomes.iter().map(|o| o.errors).sum(),
        failed_records: outcomes.iter().map(|o| o.failed).sum(),
        seconds: elapsed.as_secs_f64(),
        records_per_sec: records as f64 / elapsed.as_secs_f64(),
        batch_p50_ms: percentile_ms(&latencies, 0.50),
        batch_p99_ms: percentile_ms(&latencies, 0.99),
        server_cpu_us_per_record: server_cpu,
        generator_cpu_us_per_record: own_cpu,
        first_error: outcomes.iter().find_map(|o| o.first_error.clone()),
    };
    Ok((result, Acks(outcomes.into_iter().map(|o| o.acks).collect())))
}

/// Results of the read-back phase.
#[derive(Debug, Clone, Serialize)]
pub struct ReadBackResult {
    pub records: u64,
    pub expected: u64,
    pub calls: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub server_cpu_us_per_record: Option<f64>,
    pub generator_cpu_us_per_record: Option<f64>,
    /// Every acknowledged record read exactly once, byte-exact, on its shard, in order.
    pub verified: bool,
    pub bad_records: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub problems: Vec<String>,
}

struct ShardRead {
    ids: Vec<(u32, u64)>,
    calls: u64,
    bad: u64,
    problems: Vec<String>,
}

struct ReaderJob {
    client: Client,
    stream: String,
    shard_id: String,
    shard_index: u8,
    expected: u64,
    acks: Arc<Acks>,
    record_size: usize,
    deadline: Instant,
}

/// Compares two decimal sequence numbers of any length as numbers.
fn cmp_sequence(a: &str, b: &str) -> CmpOrdering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

async fn read_shard(job: ReaderJob) -> Result<ShardRead> {
    let ReaderJob {
        client,
        stream,
        shard_id,
        shard_index,
        expected,
        acks,
        record_size,
        deadline,
    } = job;
    let mut out = ShardRead {
        ids: Vec::with_capacity(expected as usize),
        calls: 0,
        bad: 0,
        problems: Vec::new(),
    };
    let note = |out: &mut ShardRead, problem: String| {
        out.bad += 1;
        if out.problems.len() < MAX_PROBLEMS_KEPT {
            out.problems.push(format!("{shard_id}: {problem}"));
        }
    };
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(&shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GetShardIterator: {}", error_text(&e)))?
        .shard_iterator()
        .map(str::to_owned)
        .context("GetShardIterator returned no iterator")?;
    let mut last_sequence: Option<String> = None;
    let mut last_per_writer: Vec<Option<u64>> = vec![None; acks.0.len()];
    let mut empty_streak = 0u32;
    loop {
        if Instant::now() > deadline {
            let read = out.ids.len();
            note(
                &mut out,
                format!("timed out after {read} of {expected} records"),
            );
            break;
        }
        let page = client
            .get_records()
            .shard_iterator(&iterator)
            .limit(10_000)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetRecords: {}", error_text(&e)))?;
        out.calls += 1;
        for record in page.records() {
            let data = record.data().as_ref();
            if data.len() != record_size || data.len() < HEADER_BYTES {
                note(&mut out, format!("record of {} bytes", data.len()));
                continue;
            }
            let mut w = [0u8; 4];
            w.copy_from_slice(&data[0..4]);
            let mut s = [0u8; 8];
            s.copy_from_slice(&data[4..12]);
            let (writer, seq) = (u32::from_be_bytes(w), u64::from_be_bytes(s));
            match acks
                .0
                .get(writer as usize)
                .and_then(|a| a.get(seq as usize))
            {
                None => {
                    note(
                        &mut out,
                        format!("record w{writer}-{seq} was never written"),
                    );
                    continue;
                }
                Some(&UNACKED) => {
                    note(
                        &mut out,
                        format!("record w{writer}-{seq} was not acknowledged"),
                    );
                }
                Some(&on) if on != shard_index => {
                    note(
                        &mut out,
                        format!("record w{writer}-{seq} acknowledged on shard #{on}, read here"),
                    );
                }
                Some(_) => {}
            }
            if data != record_data(writer, seq, record_size).as_slice() {
                note(&mut out, format!("record w{writer}-{seq}: data differs"));
            }
            if record.partition_key() != Some(partition_key(writer, seq).as_str()) {
                note(
                    &mut out,
                    format!(
                        "record w{writer}-{seq}: partition key {:?}",
                        record.partition_key()
                    ),
                );
            }
            let sequence = record.sequence_number();
            if let Some(last) = &last_sequence
                && cmp_sequence(sequence, last) != CmpOrdering::Greater
            {
                note(&mut out, format!("sequence number {sequence} after {last}"));
            }
            last_sequence = Some(sequence.to_owned());
            if let Some(last) = last_per_writer.get_mut(writer as usize) {
                if last.is_some_and(|l| l >= seq) {
                    note(
                        &mut out,
                        format!("record w{writer}-{seq} read after w{writer}-{last:?}"),
                    );
                }
                *last = Some(seq);
            }
            out.ids.push((writer, seq));
        }
        let n = page.records().len();
        match page.next_shard_iterator() {
            Some(next) => iterator = next.to_owned(),
            None => {
                note(&mut out, "open shard returned no NextShardIterator".into());
                break;
            }
        }
        if n == 0 {
            if out.ids.len() as u64 >= expected {
                break;
            }
            // Empty pages are legal before the end; give up only after a long run of them.
            empty_streak += 1;
            if empty_streak >= 100 {
                let read = out.ids.len();
                note(
                    &mut out,
                    format!("only {read} of {expected} records after {empty_streak} empty reads"),
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            empty_streak = 0;
        }
    }
    Ok(out)
}

/// Phase (c): one reader per shard reads from TRIM_HORIZON to the end and verifies everything.
pub async fn read_back_phase(
    client: &Client,
    stream: &str,
    shard_ids: &[String],
    acks: Acks,
    p: &Params,
    server_pid: Option<u32>,
) -> Result<ReadBackResult> {
    let expected_per_shard = acks.per_shard(shard_ids.len());
    let expected: u64 = expected_per_shard.iter().sum();
    let acks = Arc::new(acks);
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let deadline = started + p.read_timeout;
    let handles: Vec<_> = shard_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            tokio::spawn(read_shard(ReaderJob {
                client: client.clone(),
                stream: stream.to_owned(),
                shard_id: id.clone(),
                shard_index: u8::try_from(i).unwrap_or(UNACKED),
                expected: expected_per_shard[i],
                acks: Arc::clone(&acks),
                record_size: p.record_size,
                deadline,
            }))
        })
        .collect();
    let mut reads = Vec::with_capacity(handles.len());
    for h in handles {
        reads.push(h.await??);
    }
    let elapsed = started.elapsed();
    let records: u64 = reads.iter().map(|r| r.ids.len() as u64).sum();
    let (server_cpu, own_cpu) = cpu.per_unit_us(records);

    // Exactly once: mark every record read, then count acknowledged records never seen.
    let mut seen: Vec<Vec<bool>> = acks.0.iter().map(|a| vec![false; a.len()]).collect();
    let mut duplicates = 0u64;
    for (writer, seq) in reads.iter().flat_map(|r| r.ids.iter()) {
        if let Some(slot) = seen
            .get_mut(*writer as usize)
            .and_then(|s| s.get_mut(*seq as usize))
        {
            if *slot {
                duplicates += 1;
            }
            *slot = true;
        }
    }
    let missing = acks
        .0
        .iter()
        .zip(&seen)
        .flat_map(|(a, s)| a.iter().zip(s))
        .filter(|(ack, seen)| **ack != UNACKED && !**seen)
        .count() as u64;
    let bad: u64 = reads.iter().map(|r| r.bad).sum();
    let mut problems: Vec<String> = reads.iter().flat_map(|r| r.problems.clone()).collect();
    if missing > 0 {
        problems.push(format!("{missing} acknowledged records never read"));
    }
    if duplicates > 0 {
        problems.push(format!("{duplicates} records read twice"));
    }
    Ok(ReadBackResult {
        records,
        expected,
        calls: reads.iter().map(|r| r.calls).sum(),
        seconds: elapsed.as_secs_f64(),
        records_per_sec: records as f64 / elapsed.as_secs_f64(),
        server_cpu_us_per_record: server_cpu,
        generator_cpu_us_per_record: own_cpu,
        verified: bad == 0 && missing == 0 && duplicates == 0,
        bad_records: bad,
        missing,
        duplicates,
        problems,
    })
}

/// Results of the PutRecord latency phase.
#[derive(Debug, Clone, Serialize)]
pub struct PutRecordResult {
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
    pub calls_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub server_cpu_us_per_call: Option<f64>,
    pub generator_cpu_us_per_call: Option<f64>,
    pub first_error: Option<String>,
}

/// Phase (b): one caller, one PutRecord in flight at a time, as a simple producer does.
pub async fn put_record_phase(
    client: &Client,
    stream: &str,
    p: &Params,
    server_pid: Option<u32>,
) -> Result<PutRecordResult> {
    // Writer ids at the top of the range never collide with the throughput writers'.
    let writer = u32::MAX;
    for seq in 0..20 {
        client
            .put_record()
            .stream_name(stream)
            .data(Blob::new(record_data(writer, seq, p.record_size)))
            .partition_key(partition_key(writer, seq))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("warm-up PutRecord: {}", error_text(&e)))?;
    }
    let writer = writer - 1;
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let deadline = started + p.latency_duration;
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut first_error = None;
    let mut seq = 0u64;
    while Instant::now() < deadline && seq < p.latency_max_calls {
        let data = Blob::new(record_data(writer, seq, p.record_size));
        let key = partition_key(writer, seq);
        let call = Instant::now();
        let resp = client
            .put_record()
            .stream_name(stream)
            .data(data)
            .partition_key(key)
            .send()
            .await;
        latencies.push(call.elapsed());
        if let Err(e) = resp {
            errors += 1;
            first_error.get_or_insert_with(|| error_text(&e));
            if errors >= MAX_WRITER_ERRORS {
                break;
            }
        }
        seq += 1;
    }
    let elapsed = started.elapsed();
    let calls = latencies.len() as u64;
    let (server_cpu, own_cpu) = cpu.per_unit_us(calls);
    let mean_ms = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / latencies.len() as f64
    };
    latencies.sort_unstable();
    Ok(PutRecordResult {
        calls,
        errors,
        seconds: elapsed.as_secs_f64(),
        calls_per_sec: calls as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        max_ms: percentile_ms(&latencies, 1.0),
        mean_ms,
        server_cpu_us_per_call: server_cpu,
        generator_cpu_us_per_call: own_cpu,
        first_error,
    })
}

/// Results of the put→visible phase.
#[derive(Debug, Clone, Serialize)]
pub struct PutVisibleResult {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// GetRecords calls per sample: how many polls it took to see the record.
    pub polls_per_sample: f64,
    pub first_error: Option<String>,
}

/// Phase (d): one writer puts a record while one reader polls its shard from `LATEST` without
/// pausing; a sample is the time from sending the PutRecord until a GetRecords returns it.
pub async fn put_visible_phase(
    client: &Client,
    stream: &str,
    shard_ids: &[String],
    p: &Params,
) -> Result<PutVisibleResult> {
    let mut iterators = std::collections::HashMap::new();
    for shard in shard_ids {
        let iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::Latest)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetShardIterator: {}", error_text(&e)))?
            .shard_iterator
            .context("GetShardIterator returned no iterator")?;
        iterators.insert(shard.clone(), iterator);
    }
    // Writer ids below the PutRecord phase's never collide with anyone's.
    let writer = u32::MAX - 2;
    let deadline = Instant::now() + p.latency_duration;
    let (mut latencies, mut polls, mut first_error) = (Vec::new(), 0u64, None);
    let mut seq = 0u64;
    'samples: while Instant::now() < deadline && seq < p.latency_max_calls {
        let started = Instant::now();
        let put = client
            .put_record()
            .stream_name(stream)
            .data(Blob::new(record_data(writer, seq, p.record_size)))
            .partition_key(partition_key(writer, seq))
            .send()
            .await;
        seq += 1;
        let put = match put {
            Ok(put) => put,
            Err(e) => {
                first_error.get_or_insert_with(|| error_text(&e));
                break;
            }
        };
        let Some(iterator) = iterators.get_mut(put.shard_id()) else {
            bail!(
                "PutRecord named shard {} the stream does not list",
                put.shard_id()
            );
        };
        let wait_until = Instant::now() + p.read_timeout;
        loop {
            polls += 1;
            let got = client
                .get_records()
                .shard_iterator(iterator.as_str())
                .send()
                .await;
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    first_error.get_or_insert_with(|| error_text(&e));
                    break 'samples;
                }
            };
            if let Some(next) = got.next_shard_iterator {
                *iterator = next;
            }
            if got
                .records
                .iter()
                .any(|r| r.sequence_number == put.sequence_number)
            {
                latencies.push(started.elapsed());
                break;
            }
            if Instant::now() > wait_until {
                first_error.get_or_insert_with(|| {
                    format!("record {} never became visible", put.sequence_number)
                });
                break 'samples;
            }
        }
    }
    let samples = latencies.len() as u64;
    latencies.sort_unstable();
    Ok(PutVisibleResult {
        samples,
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        max_ms: percentile_ms(&latencies, 1.0),
        polls_per_sample: polls as f64 / samples.max(1) as f64,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_themselves_and_are_deterministic() {
        let a = record_data(3, 77, 100);
        assert_eq!(a.len(), 100);
        assert_eq!(&a[0..4], &3u32.to_be_bytes());
        assert_eq!(&a[4..12], &77u64.to_be_bytes());
        assert_eq!(a, record_data(3, 77, 100));
        assert_ne!(a, record_data(3, 78, 100));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(cmp_sequence("10", "9"), CmpOrdering::Greater);
        assert_eq!(cmp_sequence("0009", "9"), CmpOrdering::Equal);
        assert_eq!(
            cmp_sequence(
                "49000000000001000000000000000000000100000001795310524985",
                "49000000000001000000000000000000000099000001795310524985"
            ),
            CmpOrdering::Greater
        );
    }

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v, 1.0), 100.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}
