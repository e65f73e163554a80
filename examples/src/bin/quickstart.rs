//! Quickstart: an embedded local broker, a 4-shard stream, a producer, and three KCL workers
//! sharing the shards through a lease table. Prints progress every second and a closing summary
//! (records produced and processed, lost — must be 0 —, duplicates, throughput, latency).
//!
//! ```text
//! cargo run -p examples --bin quickstart
//! RUST_LOG=kcl=info cargo run -p examples --bin quickstart   # also show lease decisions
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use clap::Parser;
use examples::{create_stream, local_clients, now_micros, percentile};
use kcl::lease::{DynamoDbLeaseStore, LeaseStore};
use kcl::{
    Config, InitialPosition, ProcessRecordsInput, ProcessorError, RecordProcessor, Scheduler,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Run a local stream with a fleet of KCL workers and report what they did")]
struct Args {
    /// Records to produce.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Records per second to produce.
    #[arg(long, default_value_t = 4_000)]
    rate: u64,
    /// Shards in the stream.
    #[arg(long, default_value_t = 4)]
    shards: i32,
    /// Workers sharing the shards.
    #[arg(long, default_value_t = 3)]
    workers: usize,
}

const STREAM: &str = "quickstart";
const APPLICATION: &str = "quickstart-app";

/// What the processors saw: deliveries per record id, and put→process latencies.
#[derive(Default)]
struct Tally {
    deliveries: Mutex<HashMap<u64, u32>>,
    latencies: Mutex<Vec<Duration>>,
}

struct CountingProcessor {
    tally: Arc<Tally>,
}

#[async_trait]
impl RecordProcessor for CountingProcessor {
    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        let now = now_micros();
        {
            let mut deliveries = self.tally.deliveries.lock().map_err(|_| "tally poisoned")?;
            let mut latencies = self.tally.latencies.lock().map_err(|_| "tally poisoned")?;
            for record in &input.records {
                // Payload: "<id>:<sent at, µs since the epoch>".
                let text = std::str::from_utf8(&record.data)?;
                let (id, sent) = text.split_once(':').ok_or("payload without ':'")?;
                *deliveries.entry(id.parse()?).or_default() += 1;
                let sent: u128 = sent.parse()?;
                let micros = u64::try_from(now.saturating_sub(sent)).unwrap_or(u64::MAX);
                latencies.push(Duration::from_micros(micros));
            }
        }
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging("warn");
    let args = Args::parse();

    let broker = local_broker::LocalBroker::builder().start().await?;
    let (kinesis, dynamodb) = local_clients(&broker.endpoint());
    create_stream(&kinesis, STREAM, args.shards).await?;
    println!(
        "broker at {}; stream {STREAM} with {} shards; {} workers; {} records at {}/s",
        broker.endpoint(),
        args.shards,
        args.workers,
        args.records,
        args.rate
    );

    let tally = Arc::new(Tally::default());
    let config = Config::default()
        .failover_time(Duration::from_secs(3))
        .idle_time_between_reads(Duration::from_millis(200));
    let mut workers = Vec::new();
    for n in 1..=args.workers {
        let tally = tally.clone();
        let scheduler = Scheduler::builder()
            .stream(STREAM)
            .application_name(APPLICATION)
            .worker_id(format!("worker-{n}"))
            .kinesis_client(kinesis.clone())
            .dynamodb_client(dynamodb.clone())
            .processor_factory(move || CountingProcessor {
                tally: tally.clone(),
            })
            .initial_position(InitialPosition::TrimHorizon)
            .config(config.clone())
            .build()?;
        let stop = CancellationToken::new();
        workers.push((stop.clone(), tokio::spawn(scheduler.run(stop))));
    }

    let started = Instant::now();
    let producer = tokio::spawn(produce(kinesis.clone(), args.records, args.rate));
    let leases = DynamoDbLeaseStore::new(dynamodb.clone(), APPLICATION);
    let deadline = Duration::from_secs(args.records / args.rate.max(1) + 60);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let distinct = tally.deliveries.lock().map(|d| d.len()).unwrap_or(0) as u64;
        println!(
            "{:>5.1}s  processed {distinct:>7}  leases {}",
            started.elapsed().as_secs_f64(),
            lease_counts(&leases).await
        );
        if producer.is_finished() && distinct >= args.records {
            break;
        }
        if started.elapsed() > deadline {
            println!("giving up waiting after {deadline:?}");
            break;
        }
    }
    let produced = producer.await.context("producer task")??;
    let elapsed = started.elapsed();

    for (stop, _) in &workers {
        stop.cancel();
    }
    for (_, task) in workers {
        task.await.context("worker task")??;
    }
    broker.shutdown().await;

    let deliveries = tally
        .deliveries
        .lock()
        .map_err(|_| anyhow::anyhow!("tally poisoned"))?
        .clone();
    let processed = deliveries.len() as u64;
    let duplicates: u64 = deliveries.values().map(|n| u64::from(n - 1)).sum();
    let lost = produced.saturating_sub(processed);
    let mut latencies = tally
        .latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("tally poisoned"))?
        .clone();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!();
    println!("records produced   {produced}");
    println!("records processed  {processed}");
    println!("lost               {lost}");
    println!("duplicates         {duplicates}");
    println!(
        "throughput         {:.0} records/s over {:.1}s",
        processed as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "put→process        p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        ms(percentile(&mut latencies, 50.0)),
        ms(percentile(&mut latencies, 90.0)),
        ms(percentile(&mut latencies, 99.0)),
        ms(percentile(&mut latencies, 100.0)),
    );
    anyhow::ensure!(lost == 0, "{lost} records were never processed");
    Ok(())
}

/// Puts `total` records at about `rate` per second, in batches of up to 100.
async fn produce(kinesis: aws_sdk_kinesis::Client, total: u64, rate: u64) -> anyhow::Result<u64> {
    let batch = 100.min(total.max(1));
    let pause = Duration::from_secs_f64(batch as f64 / rate.max(1) as f64);
    let mut next = 0;
    while next < total {
        let end = (next + batch).min(total);
        let entries = (next..end)
            .map(|id| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("customer-{}", id % 1000))
                    .data(aws_smithy_types::Blob::new(format!(
                        "{id}:{}",
                        now_micros()
                    )))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = kinesis
            .put_records()
            .stream_name(STREAM)
            .set_records(Some(entries))
            .send()
            .await
            .context("PutRecords")?;
        anyhow::ensure!(
            out.failed_record_count().unwrap_or(0) == 0,
            "PutRecords rejected {} records",
            out.failed_record_count().unwrap_or(0)
        );
        next = end;
        tokio::time::sleep(pause).await;
    }
    Ok(next)
}

/// "worker-1:2 worker-2:1 ..." from the lease table.
async fn lease_counts(store: &DynamoDbLeaseStore) -> String {
    let Ok(leases) = store.list_leases().await else {
        return "(lease table not ready)".to_owned();
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for lease in leases.iter().filter(|l| !l.is_finished()) {
        let owner = lease.owner.clone().unwrap_or_else(|| "free".to_owned());
        *counts.entry(owner).or_default() += 1;
    }
    counts
        .iter()
        .map(|(owner, n)| format!("{owner}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}
