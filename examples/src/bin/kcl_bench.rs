//! KCL benchmark against an embedded broker, with baselines run in the same process:
//!
//! 1. Throughput: records/s one worker processes from a pre-filled stream, against a bare
//!    `GetRecords` loop over the same shards (the ceiling the broker and SDK allow).
//! 2. Latency: put→process p50/p99 at a steady produce rate: polling with the Java KCL's default
//!    idle time between empty reads (1500 ms) and with 200 ms (the Java KCL's minimum), then
//!    enhanced fan-out (`SubscribeToShard`), with the polling / fan-out ratios.
//!
//! ```text
//! cargo run --release -p examples --bin kcl_bench
//! cargo run --release -p examples --bin kcl_bench -- --latency-only
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use clap::Parser;
use examples::{create_stream, local_clients, now_micros, percentile};
use kcl::{
    Config, InitialPosition, ProcessRecordsInput, ProcessorError, RecordProcessor, RetrievalMode,
    Scheduler,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Measure KCL throughput and latency against an embedded broker")]
struct Args {
    /// Records pre-filled for the throughput run.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Shards per stream.
    #[arg(long, default_value_t = 4)]
    shards: i32,
    /// Records per second during the latency runs.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds each latency run produces for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Skip the throughput run.
    #[arg(long)]
    latency_only: bool,
}

/// Counts records and, when payloads carry a send time, put→process latencies.
struct Probe {
    count: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

#[async_trait]
impl RecordProcessor for Probe {
    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        let now = now_micros();
        let mut stamped = Vec::new();
        for record in &input.records {
            if let Some(sent) = std::str::from_utf8(&record.data)
                .ok()
                .and_then(|t| t.split(':').next())
                .and_then(|t| t.parse::<u128>().ok())
            {
                let micros = u64::try_from(now.saturating_sub(sent)).unwrap_or(u64::MAX);
                stamped.push(Duration::from_micros(micros));
            }
        }
        self.latencies.lock().await.extend(stamped);
        self.count
            .fetch_add(input.records.len() as u64, Ordering::Relaxed);
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let broker = local_broker::LocalBroker::builder().start().await?;
    let (kinesis, dynamodb) = local_clients(&broker.endpoint());

    if !args.latency_only {
        throughput(&args, &kinesis, &dynamodb).await?;
    }
    // 2. Latency.
    println!();
    println!(
        "put→process latency ({} records/s for {}s, one worker)",
        args.rate, args.seconds
    );
    let runs = [
        (
            "polling, idle 1500 ms",
            "polling-1500",
            Config::default().idle_time_between_reads(Duration::from_millis(1500)),
        ),
        (
            "polling, idle  200 ms",
            "polling-200",
            Config::default().idle_time_between_reads(Duration::from_millis(200)),
        ),
        (
            "enhanced fan-out     ",
            "fan-out",
            Config::default().retrieval_mode(RetrievalMode::fan_out()),
        ),
    ];
    let mut results = Vec::new();
    for (label, name, config) in runs {
        let (p50, p99, samples) = latency(&args, &kinesis, &dynamodb, name, config).await?;
        println!("  {label}   p50 {p50:>7.1} ms   p99 {p99:>7.1} ms   ({samples} records)");
        results.push((p50, p99));
    }
    if let [slow, fast, fan_out] = results[..] {
        println!(
            "  ratio p50 polling 1500 ms / 200 ms     {:.2}",
            slow.0 / fast.0
        );
        println!(
            "  ratio polling 200 ms / fan-out         p50 {:.1}x   p99 {:.1}x",
            fast.0 / fan_out.0,
            fast.1 / fan_out.1
        );
    }
    broker.shutdown().await;
    Ok(())
}

/// Records/s one worker processes from a pre-filled stream, against a bare `GetRecords` loop.
async fn throughput(
    args: &Args,
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
) -> anyhow::Result<()> {
    create_stream(kinesis, "bench-throughput", args.shards).await?;
    let filled = Instant::now();
    put(
        kinesis,
        "bench-throughput",
        args.records,
        args.record_size,
        false,
    )
    .await?;
    println!(
        "filled {} records of {} B into {} shards in {:.1}s",
        args.records,
        args.record_size,
        args.shards,
        filled.elapsed().as_secs_f64()
    );
    let raw = raw_read(kinesis, "bench-throughput").await?;
    let raw_rate = raw.0 as f64 / raw.1.as_secs_f64();
    let count = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (stop, worker) = start_worker(
        kinesis,
        dynamodb,
        "bench-throughput",
        Config::default().idle_time_between_reads(Duration::from_millis(200)),
        &count,
        &latencies,
    )?;
    let started = Instant::now();
    while count.load(Ordering::Relaxed) < args.records {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "throughput run stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kcl_time = started.elapsed();
    stop.cancel();
    worker.await.context("worker")??;
    let kcl_rate = args.records as f64 / kcl_time.as_secs_f64();
    println!();
    println!("throughput (one worker, {} shards)", args.shards);
    println!(
        "  bare GetRecords loop   {:>9.0} records/s  ({} records in {:.2}s)",
        raw_rate,
        raw.0,
        raw.1.as_secs_f64()
    );
    println!(
        "  kcl worker             {:>9.0} records/s  ({:.2}s, incl. lease table set-up)",
        kcl_rate,
        kcl_time.as_secs_f64()
    );
    println!("  ratio kcl / bare       {:>9.2}", kcl_rate / raw_rate);
    Ok(())
}

/// One latency run on a fresh stream: (p50 ms, p99 ms, samples).
async fn latency(
    args: &Args,
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    name: &str,
    config: Config,
) -> anyhow::Result<(f64, f64, usize)> {
    let stream = format!("bench-latency-{name}");
    create_stream(kinesis, &stream, args.shards).await?;
    let count = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (stop, worker) = start_worker(kinesis, dynamodb, &stream, config, &count, &latencies)?;
    // Let the worker take its leases (and subscribe) before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = args.rate * args.seconds;
    let batch_size = total.div_ceil(args.seconds * 10).max(1);
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while sent < total {
        tick.tick().await;
        let n = batch_size.min(total - sent);
        put(kinesis, &stream, n, args.record_size, true).await?;
        sent += n;
    }
    let waited = Instant::now();
    while count.load(Ordering::Relaxed) < total {
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(60),
            "latency run stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    worker.await.context("worker")??;
    let mut samples = latencies.lock().await.clone();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    Ok((
        ms(percentile(&mut samples, 50.0)),
        ms(percentile(&mut samples, 99.0)),
        samples.len(),
    ))
}

fn start_worker(
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    config: Config,
    count: &Arc<AtomicU64>,
    latencies: &Arc<Mutex<Vec<Duration>>>,
) -> anyhow::Result<(
    CancellationToken,
    tokio::task::JoinHandle<Result<(), kcl::SchedulerError>>,
)> {
    let (count, latencies) = (count.clone(), latencies.clone());
    let scheduler = Scheduler::builder()
        .stream(stream)
        .application_name(format!("{stream}-app"))
        .worker_id("bench")
        .kinesis_client(kinesis.clone())
        .dynamodb_client(dynamodb.clone())
        .processor_factory(move || Probe {
            count: count.clone(),
            latencies: latencies.clone(),
        })
        .initial_position(InitialPosition::TrimHorizon)
        .config(config)
        .build()?;
    let stop = CancellationToken::new();
    Ok((stop.clone(), tokio::spawn(scheduler.run(stop))))
}

/// Puts `count` records of `size` bytes; with `stamp`, each payload starts with the send time.
async fn put(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    count: u64,
    size: usize,
    stamp: bool,
) -> anyhow::Result<()> {
    let mut left = count;
    let mut n = 0u64;
    while left > 0 {
        let batch = left.min(500);
        let entries = (0..batch)
            .map(|_| {
                n += 1;
                let mut payload = if stamp {
                    format!("{}:", now_micros()).into_bytes()
                } else {
                    Vec::new()
                };
                payload.resize(size.max(payload.len()), b'x');
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{n}"))
                    .data(aws_smithy_types::Blob::new(payload))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .context("PutRecords")?;
        anyhow::ensure!(
            out.failed_record_count().unwrap_or(0) == 0,
            "records rejected"
        );
        left -= batch;
    }
    Ok(())
}

/// Reads every shard from TRIM_HORIZON to its tip with bare `GetRecords` calls, all shards
/// concurrently; returns (records, time).
async fn raw_read(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> anyhow::Result<(u64, Duration)> {
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .context("ListShards")?;
    let started = Instant::now();
    let readers = shards.shards().iter().map(|shard| {
        let kinesis = kinesis.clone();
        let (stream, shard) = (stream.to_owned(), shard.shard_id().to_owned());
        tokio::spawn(async move {
            let mut iterator = kinesis
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(&shard)
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator
                .unwrap_or_default();
            let mut total = 0u64;
            loop {
                let out = kinesis
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(10_000)
                    .send()
                    .await?;
                total += out.records.len() as u64;
                let caught_up = out.millis_behind_latest == Some(0) && out.records.len() < 10_000;
                if out.records.is_empty() || caught_up {
                    return Ok::<u64, anyhow::Error>(total);
                }
                match out.next_shard_iterator {
                    Some(next) => iterator = next,
                    None => return Ok(total),
                }
            }
        })
    });
    let mut total = 0;
    for reader in readers.collect::<Vec<_>>() {
        total += reader.await??;
    }
    Ok((total, started.elapsed()))
}
