//! Recipe: export the kcl metrics to Prometheus. A consumer only has to install a recorder before
//! it starts its `Scheduler`; every kcl metric (see `kcl::metrics`) then shows up at
//! `http://127.0.0.1:9464/metrics`, labelled by `worker_id` and `shard_id`: per-shard lag
//! (`MillisBehindLatest`), lease ownership (`LeaseOwned` 1/0 per shard, `LeasesHeld` per
//! worker), records and bytes processed, processing time, errors.
//!
//! ```rust,ignore
//! metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .with_http_listener(([127, 0, 0, 1], 9464))
//!     .install()?;                       // before Scheduler::run
//! ```
//!
//! This program runs that recipe end to end: an embedded broker, a 4-shard stream with a steady
//! producer, two workers sharing the shards, and the exporter. While it runs:
//!
//! ```text
//! cargo run --release -p examples --bin kcl_prometheus -- --seconds 60
//! curl -s http://127.0.0.1:9464/metrics | grep -E 'MillisBehindLatest|LeaseOwned'
//! # the broker's own view, on its endpoint: /metrics and the status page at /
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_kinesis::primitives::Blob;
use clap::Parser;
use kcl::{InitialPosition, Record, Scheduler};
use tokio_util::sync::CancellationToken;

/// Run a kcl consumer with its metrics exported to Prometheus.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where the Prometheus exporter listens (loopback by default).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// How long to run, in seconds (0: until Ctrl-C).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Records produced per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
}

#[kcl::processor]
async fn count(record: &Record) -> Result<(), std::io::Error> {
    tracing::trace!(sequence_number = %record.sequence_number, "processed");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging("warn");
    let args = Args::parse();
    // The recipe: one line before any Scheduler runs.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(args.metrics_addr)
        .install()
        .context("installing the Prometheus exporter")?;

    let broker = local_broker::LocalBroker::builder().start().await?;
    let endpoint = broker.endpoint();
    let (kinesis, dynamodb) = examples::local_clients(&endpoint);
    examples::create_stream(&kinesis, "metered", 4).await?;

    let stop = CancellationToken::new();
    let producer = tokio::spawn(produce(kinesis.clone(), args.rate, stop.clone()));
    let mut workers = Vec::new();
    for worker in ["worker-1", "worker-2"] {
        let scheduler = Scheduler::builder()
            .stream("metered")
            .application_name("metered-app")
            .worker_id(worker)
            .kinesis_client(kinesis.clone())
            .dynamodb_client(dynamodb.clone())
            .processor_factory(count)
            .initial_position(InitialPosition::TrimHorizon)
            .build()?;
        workers.push(tokio::spawn(scheduler.run(stop.clone())));
    }
    println!("kcl metrics:        http://{}/metrics", args.metrics_addr);
    println!("broker status page: {endpoint}/   (and {endpoint}/metrics)");
    let ctrl_c = tokio::signal::ctrl_c();
    if args.seconds == 0 {
        ctrl_c.await?;
    } else {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.seconds)) => {}
            _ = ctrl_c => {}
        }
    }
    stop.cancel();
    producer.await??;
    for worker in workers {
        worker.await??;
    }
    broker.shutdown().await;
    Ok(())
}

/// Puts `rate` small records per second until stopped.
async fn produce(
    kinesis: aws_sdk_kinesis::Client,
    rate: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        kinesis
            .put_record()
            .stream_name("metered")
            .partition_key(format!("key-{}", n % 64))
            .data(Blob::new(format!("record {n}")))
            .send()
            .await
            .context("PutRecord")?;
        n += 1;
    }
    Ok(())
}
