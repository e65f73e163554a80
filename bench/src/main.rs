//! `kinesis-bench`: a native load generator for any Kinesis endpoint.
//!
//! By default it embeds a `local-broker` in-process; `--spawn-binary` runs the broker binary as a
//! separate process so the server's CPU per record can be read from /proc; `--endpoint` measures
//! anything already running; `--compare kinesalite,kinesis-mock` also installs those peers with npm,
//! starts each under node on loopback and runs the same generator against it, one target after the
//! other so they never share the CPU. Each spawned server is also timed from spawn to its first
//! successful ListStreams, and its idle and peak resident memory are read from /proc.
//!
//! Everything goes through `aws-sdk-kinesis` over HTTP, as an application would: a boto3 client
//! costs ~10 ms of CPU per 500-record batch and would be the bottleneck, not the server.
//!
//! ```sh
//! cargo build --release -p local-broker -p bench
//! target/release/kinesis-bench --spawn-binary target/release/local-broker --compare kinesalite,kinesis-mock
//! ```

mod client;
mod report;
mod target;
mod workload;

use anyhow::{Context, Result, bail};
use clap::Parser;
use client::client;
use report::{Report, TargetResult};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use target::{Peer, Target};
use workload::Params;

/// Measure a Kinesis endpoint: PutRecords throughput, PutRecord latency, verified read-back and
/// server CPU per record, optionally side by side with kinesalite and kinesis-mock.
#[derive(Parser, Debug)]
#[command(name = "kinesis-bench", version, about)]
struct Args {
    /// Measure this endpoint (e.g. http://127.0.0.1:4567) instead of starting a broker.
    #[arg(long, value_name = "URL", conflicts_with = "spawn_binary")]
    endpoint: Option<String>,
    /// Run this local-broker binary as a separate process (so its CPU can be measured) instead
    /// of embedding the broker in the benchmark's own process.
    #[arg(long, value_name = "PATH")]
    spawn_binary: Option<PathBuf>,
    /// Also start these peers (installed with npm if missing) and measure them in the same run.
    #[arg(long, value_delimiter = ',', value_name = "PEER,...")]
    compare: Vec<Peer>,
    /// Where the peers are (or get) installed [default: <workspace>/target/peers].
    #[arg(long, value_name = "DIR")]
    peers_dir: Option<PathBuf>,
    /// Concurrent PutRecords writers.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Length of the PutRecords phase, in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Stop the PutRecords phase after about this many records (whole batches), if sooner.
    #[arg(long)]
    records: Option<u64>,
    /// Records per PutRecords call (1–500).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Bytes per record (at least 12: each record names itself for verification).
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Shards of the benchmark stream.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Length of the PutRecord latency phase, in seconds.
    #[arg(long, default_value_t = 3.0)]
    latency_secs: f64,
    /// Most PutRecord calls in the latency phase.
    #[arg(long, default_value_t = 100_000)]
    latency_max_calls: u64,
    /// Give up reading back after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    read_timeout_secs: f64,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

impl Args {
    fn params(&self) -> Result<Params> {
        if !(1..=500).contains(&self.batch_size) {
            bail!("--batch-size must be 1–500");
        }
        if self.record_size < workload::HEADER_BYTES || self.record_size > 1024 * 1024 {
            bail!(
                "--record-size must be {}–1048576 bytes",
                workload::HEADER_BYTES
            );
        }
        if !(1..=200).contains(&self.shards) {
            bail!("--shards must be 1–200");
        }
        if !(1..=256).contains(&self.concurrency) {
            bail!("--concurrency must be 1–256");
        }
        let secs = |v: f64, name: &str| -> Result<Duration> {
            if v.is_nan() || v <= 0.0 || v > 3600.0 {
                bail!("--{name} must be in (0, 3600]");
            }
            Ok(Duration::from_secs_f64(v))
        };
        Ok(Params {
            shards: self.shards,
            concurrency: self.concurrency,
            batch_size: self.batch_size,
            record_size: self.record_size,
            duration: secs(self.duration_secs, "duration-secs")?,
            max_records: self.records,
            latency_duration: secs(self.latency_secs, "latency-secs")?,
            latency_max_calls: self.latency_max_calls,
            read_timeout: secs(self.read_timeout_secs, "read-timeout-secs")?,
        })
    }
}

/// Runs the four phases against one target, then stops it.
async fn measure(mut target: Target, params: &Params) -> Result<TargetResult> {
    let facts = target.facts;
    eprintln!(
        "== {} ({}) at {}",
        target.name, target.mode, target.endpoint
    );
    let client = client(&target.endpoint);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let stream = format!("bench-{}-{stamp}", std::process::id());
    let pid = target.server_pid();
    let outcome = async {
        let shard_ids = workload::create_stream(&client, &stream, params.shards).await?;
        eprintln!(
            "   PutRecords: {} writers for {:.1} s",
            params.concurrency,
            params.duration.as_secs_f64()
        );
        let (put_records, acks) =
            workload::put_records_phase(&client, &stream, &shard_ids, params, pid).await?;
        eprintln!(
            "   {:.0} records/s; reading back {} records",
            put_records.records_per_sec, put_records.records
        );
        let read_back =
            workload::read_back_phase(&client, &stream, &shard_ids, acks, params, pid).await?;
        eprintln!(
            "   {:.0} records/s read, verified: {}; PutRecord latency for {:.1} s",
            read_back.records_per_sec,
            read_back.verified,
            params.latency_duration.as_secs_f64()
        );
        let put_record = workload::put_record_phase(&client, &stream, params, pid).await?;
        eprintln!(
            "   PutRecord p50 {:.2} ms; put→visible for {:.1} s",
            put_record.p50_ms,
            params.latency_duration.as_secs_f64()
        );
        let put_visible = workload::put_visible_phase(&client, &stream, &shard_ids, params).await?;
        workload::delete_stream(&client, &stream).await;
        Ok::<_, anyhow::Error>((put_records, read_back, put_record, put_visible))
    }
    .await;
    let server_alive = target.alive();
    let peak_rss_mib = pid.and_then(|pid| target::memory_mib(pid, "VmHWM"));
    let (name, mode, endpoint) = (target.name.clone(), target.mode, target.endpoint.clone());
    target.stop().await;
    let (put_records, read_back, put_record, put_visible) =
        outcome.with_context(|| format!("benchmarking {name} at {endpoint}"))?;
    Ok(TargetResult {
        name,
        mode,
        endpoint,
        put_records,
        read_back,
        put_record,
        put_visible,
        server_alive,
        process: facts,
        peak_rss_mib,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let params = args.params()?;
    if let Some(url) = &args.endpoint {
        // Load only ever goes to this machine.
        let loopback = [
            "http://127.",
            "http://localhost:",
            "http://localhost/",
            "http://[::1]",
        ];
        if !loopback.iter().any(|prefix| url.starts_with(prefix)) {
            bail!("--endpoint must be a loopback http URL (127.x, localhost, [::1]), got {url}");
        }
    }
    let ours = match (&args.endpoint, &args.spawn_binary) {
        (Some(url), _) => Target::external(url.clone()),
        (None, Some(binary)) => Target::spawn_broker(binary).await?,
        (None, None) => Target::embedded().await?,
    };
    let mut targets = vec![measure(ours, &params).await?];
    let peers_dir = args
        .peers_dir
        .clone()
        .unwrap_or_else(target::default_peers_dir);
    for &peer in &args.compare {
        let target = Target::spawn_peer(peer, &peers_dir).await?;
        targets.push(measure(target, &params).await?);
    }
    let rows = report::rows(&targets);
    let report = Report {
        params,
        targets,
        baseline_kinesalite_peers_md: report::KINESALITE_PEERS_MD,
        rows,
    };
    report::print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    let broken: Vec<&str> = report
        .targets
        .iter()
        .filter(|t| !t.read_back.verified || !t.server_alive || t.put_records.errors > 0)
        .map(|t| t.name.as_str())
        .collect();
    if !broken.is_empty() {
        bail!(
            "errors or verification failures against: {}",
            broken.join(", ")
        );
    }
    Ok(())
}
