//! `storage-bench`: the measurements behind local-broker's data directory (issue #7).
//!
//! **Engines.** Compares hand-written per-shard append-only segment files (length + CRC32
//! framing, one group-commit fsync thread) with redb (one B-tree, one transaction per commit
//! group), under the same load: `PRODUCERS` threads each appending batches of `BATCH` records of
//! `RECORD` bytes to their own shard and waiting for the acknowledgement. Prints throughput,
//! p50/p99 append latency, disk use, and recovery time (reopen + rebuild the per-shard position
//! of every record), each as a ratio against the shared segment log the broker uses.
//!
//! **Broker.** Writes `broker-MiB` into a local-broker with a data directory (64 MiB hot tail)
//! and into one in memory, each in its own child process, and reports the child's peak RSS
//! (`VmHWM`) against the data size, memory per record, and GetRecords throughput reading
//! everything back (beyond the cache: from the segment files, via the OS page cache) and reading
//! the newest records (within the cache), as ratios against the in-memory broker.
//!
//! `cargo run --release -p bench --bin storage-bench -- [MiB] [dir] [broker-MiB]`
//! (defaults 200, `target/storage-bench`, 1024; a broker-MiB of 0 skips the broker run)

#[path = "../client.rs"]
mod client;

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PRODUCERS: usize = 4;
const BATCH: usize = 50;
const RECORD: usize = 1024;

struct Request {
    shard: usize,
    first_counter: u64,
    records: Vec<Vec<u8>>,
    done: mpsc::Sender<()>,
}

trait Engine: Send {
    /// Writes a commit group and makes it durable (when `sync`).
    fn commit(&mut self, group: &[Request], sync: bool);
}

struct Segments {
    files: Vec<std::fs::File>,
}

impl Segments {
    /// `files` = 1: one log shared by every shard (one fsync per group); `PRODUCERS`: one per shard.
    fn open(dir: &Path, files: usize) -> Self {
        let files = (0..files)
            .map(|s| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("shard-{s}.seg")))
                    .unwrap()
            })
            .collect();
        Self { files }
    }

    /// Rebuilds each shard's index (offset per record) by scanning and checking every frame.
    fn recover(dir: &Path) -> usize {
        let mut total = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let file = std::fs::File::open(entry.unwrap().path()).unwrap();
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut index: Vec<u64> = Vec::new();
            let mut offset = 0u64;
            let mut header = [0u8; 16];
            let mut body = Vec::new();
            while reader.read_exact(&mut header).is_ok() {
                let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
                let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
                body.resize(len, 0);
                if reader.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
                    break;
                }
                index.push(offset);
                offset += 16 + len as u64;
            }
            total += index.len();
        }
        total
    }
}

impl Engine for Segments {
    fn commit(&mut self, group: &[Request], sync: bool) {
        let files = self.files.len();
        let mut dirty = vec![false; files];
        let mut buf = Vec::new();
        for (shard, (file, dirty)) in self.files.iter_mut().zip(&mut dirty).enumerate() {
            buf.clear();
            for req in group.iter().filter(|r| r.shard % files == shard) {
                for (i, rec) in req.records.iter().enumerate() {
                    buf.extend_from_slice(&(rec.len() as u32).to_le_bytes());
                    buf.extend_from_slice(&crc32fast::hash(rec).to_le_bytes());
                    buf.extend_from_slice(&(req.first_counter + i as u64).to_le_bytes());
                    buf.extend_from_slice(rec);
                }
            }
            if !buf.is_empty() {
                file.write_all(&buf).unwrap();
                *dirty = true;
            }
        }
        if sync {
            for (file, dirty) in self.files.iter().zip(dirty) {
                if dirty {
                    file.sync_data().unwrap();
                }
            }
        }
    }
}

const RECORDS: redb::TableDefinition<(u32, u64), &[u8]> = redb::TableDefinition::new("records");

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn recover(dir: &Path) -> usize {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let db = redb::Database::create(dir.join("records.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(RECORDS).unwrap();
        table.len().unwrap() as usize
    }
}

impl Engine for Redb {
    fn commit(&mut self, group: &[Request], sync: bool) {
        let mut txn = self.db.begin_write().unwrap();
        txn.set_durability(if sync {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .unwrap();
        {
            let mut table = txn.open_table(RECORDS).unwrap();
            for req in group {
                for (i, rec) in req.records.iter().enumerate() {
                    table
                        .insert(
                            (req.shard as u32, req.first_counter + i as u64),
                            rec.as_slice(),
                        )
                        .unwrap();
                }
            }
        }
        txn.commit().unwrap();
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// What one engine achieved.
struct EngineResult {
    label: String,
    records_per_sec: f64,
    mib_per_sec: f64,
    p50: Duration,
    p99: Duration,
    disk_mib: f64,
    amplification: f64,
    recovery: Duration,
    recovery_s_per_gib: f64,
}

fn run(
    name: &str,
    label: String,
    dir: PathBuf,
    total_mib: usize,
    sync: bool,
    mut engine: Box<dyn Engine>,
) -> EngineResult {
    eprintln!("{name}: writing {total_mib} MiB");
    let (tx, rx) = mpsc::channel::<Request>();
    // The group-commit thread: whatever arrived while the last fsync ran is the next group.
    let writer = std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            group.extend(rx.try_iter());
            engine.commit(&group, sync);
            for req in group {
                let _ = req.done.send(());
            }
        }
    });
    let per_producer = total_mib * 1024 * 1024 / RECORD / BATCH / PRODUCERS;
    let start = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|shard| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(per_producer);
                for b in 0..per_producer {
                    let (done, ack) = mpsc::channel();
                    let records = (0..BATCH).map(|i| vec![(b + i) as u8; RECORD]).collect();
                    let t = Instant::now();
                    tx.send(Request {
                        shard,
                        first_counter: (b * BATCH) as u64,
                        records,
                        done,
                    })
                    .unwrap();
                    ack.recv().unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    drop(tx);
    let mut latencies: Vec<Duration> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    writer.join().unwrap();
    let elapsed = start.elapsed();
    latencies.sort();
    let records = latencies.len() * BATCH;
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let logical = (records * RECORD) as f64 / 1048576.0;
    let disk = dir_size(&dir) as f64 / 1048576.0;
    let t = Instant::now();
    let recovered = if name.starts_with("segments") {
        Segments::recover(&dir)
    } else {
        Redb::recover(&dir)
    };
    let recovery = t.elapsed();
    assert_eq!(recovered, records);
    EngineResult {
        label,
        records_per_sec: records as f64 / elapsed.as_secs_f64(),
        mib_per_sec: logical / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        disk_mib: disk,
        amplification: disk / logical,
        recovery,
        recovery_s_per_gib: recovery.as_secs_f64() * 1024.0 / logical,
    }
}

/// `value / baseline`, for the ratio columns.
fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        value / baseline
    } else {
        f64::NAN
    }
}

/// One line per engine; ratios are against `baseline` (the shared log, same sync mode).
fn print_engine(result: &EngineResult, baseline: &EngineResult) {
    let r = |value: f64, base: f64| ratio(value, base);
    println!(
        "{:<26} {:>9.0} rec/s ({:.2}x) {:>7.1} MiB/s  p50 {:>8.2?} ({:.2}x)  p99 {:>8.2?} ({:.2}x)  disk {:>7.1} MiB ({:.2}x data)  recovery {:>8.2?} ({:.2}x, {:.2} s/GiB)",
        result.label,
        result.records_per_sec,
        r(result.records_per_sec, baseline.records_per_sec),
        result.mib_per_sec,
        result.p50,
        r(result.p50.as_secs_f64(), baseline.p50.as_secs_f64()),
        result.p99,
        r(result.p99.as_secs_f64(), baseline.p99.as_secs_f64()),
        result.disk_mib,
        result.amplification,
        result.recovery,
        r(
            result.recovery.as_secs_f64(),
            baseline.recovery.as_secs_f64()
        ),
        result.recovery_s_per_gib,
    );
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some(broker::CHILD_FLAG) {
        args.next();
        broker::child(args);
        return;
    }
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "target/storage-bench".into()));
    let broker_mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    println!(
        "engines: {PRODUCERS} producers x batches of {BATCH} x {RECORD} B records, {mib} MiB per engine; ratios against segments/shared with the same sync mode"
    );
    for sync in [true, false] {
        let mut results = Vec::new();
        for name in ["segments/shard", "segments/shared", "redb"] {
            let label = format!("{name} sync={}", if sync { "always" } else { "never" });
            let dir = root.join(label.replace(['=', ' ', '/'], "-"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let engine: Box<dyn Engine> = if name == "segments/shard" {
                Box::new(Segments::open(&dir, PRODUCERS))
            } else if name == "segments/shared" {
                Box::new(Segments::open(&dir, 1))
            } else {
                Box::new(Redb {
                    db: redb::Database::create(dir.join("records.redb")).unwrap(),
                })
            };
            results.push(run(name, label, dir.clone(), mib, sync, engine));
            let _ = std::fs::remove_dir_all(&dir);
        }
        for result in &results {
            print_engine(result, &results[1]);
        }
    }
    if broker_mib > 0 {
        broker::compare(&root, broker_mib);
    }
}

/// The broker run: a child process per storage mode, so each peak RSS is that mode's alone.
mod broker {
    use super::ratio;
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
    use serde::{Deserialize, Serialize};
    use std::path::Path;
    use std::time::Instant;

    /// First argument that makes the process a measured broker child.
    pub const CHILD_FLAG: &str = "--broker-child";
    const SHARDS: u128 = 4;
    const RECORD: usize = 1024;
    const BATCH: usize = 500;
    /// The disk-mode broker's hot tail: the broker's default.
    const CACHE: usize = local_broker::storage::DEFAULT_CACHE_BYTES;
    /// How much of the newest data per shard the cached read reads (within the hot tail).
    const HOT_PER_SHARD: usize = CACHE / SHARDS as usize / 2;

    /// What a child measured.
    #[derive(Serialize, Deserialize)]
    struct Measured {
        records: u64,
        bytes: u64,
        write_secs: f64,
        rss_before_kib: u64,
        rss_after_write_kib: u64,
        peak_rss_kib: u64,
        cached_bytes: u64,
        cold_read_secs: f64,
        hot_read_bytes: u64,
        hot_read_secs: f64,
    }

    /// A field of /proc/self/status, in KiB.
    fn status_kib(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    }

    /// Runs both modes and prints the comparison.
    pub fn compare(root: &Path, mib: usize) {
        let mut measured = Vec::new();
        for mode in ["memory", "disk"] {
            let dir = root.join(format!("broker-{mode}"));
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("broker {mode}: writing {mib} MiB");
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([CHILD_FLAG, mode, &mib.to_string()])
                .arg(&dir)
                .stderr(std::process::Stdio::inherit())
                .output()
                .unwrap();
            assert!(out.status.success(), "broker {mode} child failed");
            let line = String::from_utf8(out.stdout).unwrap();
            measured.push((mode, serde_json::from_str::<Measured>(line.trim()).unwrap()));
            let _ = std::fs::remove_dir_all(&dir);
        }
        let baseline = &measured[0].1;
        println!(
            "broker: {mib} MiB as {RECORD} B records over {SHARDS} shards; disk mode with a {} MiB hot tail; ratios against the in-memory broker",
            CACHE >> 20
        );
        let mib_of = |kib: u64| kib as f64 / 1024.0;
        let rate = |bytes: u64, secs: f64| bytes as f64 / secs / 1048576.0;
        for (mode, m) in &measured {
            let data_mib = m.bytes as f64 / 1048576.0;
            let per_record = (m.rss_after_write_kib.saturating_sub(m.rss_before_kib) * 1024)
                .saturating_sub(m.cached_bytes) as f64
                / m.records as f64;
            let base_per_record = (baseline
                .rss_after_write_kib
                .saturating_sub(baseline.rss_before_kib)
                * 1024) as f64
                / baseline.records as f64;
            println!(
                "{mode:<7} peak RSS {:>7.1} MiB ({:.3}x data, {:.3}x)  memory/record {:>6.0} B ({:.3}x)  write {:>6.1} MiB/s ({:.2}x)  read all {:>6.1} MiB/s ({:.2}x)  read newest {:>6.1} MiB/s ({:.2}x)",
                mib_of(m.peak_rss_kib),
                mib_of(m.peak_rss_kib) / data_mib,
                ratio(m.peak_rss_kib as f64, baseline.peak_rss_kib as f64),
                per_record,
                ratio(per_record, base_per_record),
                rate(m.bytes, m.write_secs),
                ratio(baseline.write_secs, m.write_secs),
                rate(m.bytes, m.cold_read_secs),
                ratio(baseline.cold_read_secs, m.cold_read_secs),
                rate(m.hot_read_bytes, m.hot_read_secs),
                ratio(
                    rate(m.hot_read_bytes, m.hot_read_secs),
                    rate(baseline.hot_read_bytes, baseline.hot_read_secs)
                ),
            );
        }
    }

    /// The child: `--broker-child <memory|disk> <MiB> <dir>`; prints one JSON line.
    pub fn child(mut args: impl Iterator<Item = String>) {
        let disk = args.next().as_deref() == Some("disk");
        let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap();
        let dir = args.next().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let measured = runtime.block_on(measure(disk, mib, Path::new(&dir)));
        println!("{}", serde_json::to_string(&measured).unwrap());
    }

    async fn measure(disk: bool, mib: usize, dir: &Path) -> Measured {
        let rss_before_kib = status_kib("VmRSS");
        let mut builder = local_broker::LocalBroker::builder();
        if disk {
            builder = builder
                .data_dir(dir)
                .sync(local_broker::SyncMode::Never)
                .cache_size(CACHE);
        }
        let broker = builder.start().await.unwrap();
        let client = super::client::client(&broker.endpoint());
        client
            .create_stream()
            .stream_name("bench")
            .shard_count(SHARDS as i32)
            .send()
            .await
            .unwrap();
        let batches_per_shard = (mib << 20) / RECORD / BATCH / SHARDS as usize;
        let started = Instant::now();
        let writers: Vec<_> = (0..SHARDS)
            .map(|shard| {
                let client = client.clone();
                tokio::spawn(async move {
                    // The first record of each batch, to start the cached read from.
                    let mut firsts = Vec::new();
                    // The middle of the shard's hash range: writer `shard` owns shard `shard`.
                    let width = u128::MAX / SHARDS;
                    let hash_key = (width * shard + width / 2).to_string();
                    for b in 0..batches_per_shard {
                        let entries = (0..BATCH)
                            .map(|i| {
                                let mut data = vec![(b + i) as u8; RECORD];
                                data[..8].copy_from_slice(&(b * BATCH + i).to_le_bytes());
                                PutRecordsRequestEntry::builder()
                                    .partition_key("k")
                                    .explicit_hash_key(&hash_key)
                                    .data(Blob::new(data))
                                    .build()
                                    .unwrap()
                            })
                            .collect();
                        let out = client
                            .put_records()
                            .stream_name("bench")
                            .set_records(Some(entries))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(out.failed_record_count(), Some(0));
                        let first = &out.records()[0];
                        firsts.push((
                            first.shard_id().unwrap().to_owned(),
                            first.sequence_number().unwrap().to_owned(),
                        ));
                    }
                    firsts
                })
            })
            .collect();
        let mut firsts = Vec::new();
        for writer in writers {
            firsts.push(writer.await.unwrap());
        }
        let write_secs = started.elapsed().as_secs_f64();
        let rss_after_write_kib = status_kib("VmRSS");
        let records = (batches_per_shard * BATCH) as u64 * SHARDS as u64;
        let bytes = records * RECORD as u64;

        // Everything, oldest first: in disk mode nearly all of it is beyond the hot tail.
        let started = Instant::now();
        let mut read = 0;
        for shard in &firsts {
            read += read_from(&client, &shard[0].0, ShardIteratorType::TrimHorizon, None).await;
        }
        let cold_read_secs = started.elapsed().as_secs_f64();
        assert_eq!(read, bytes, "read back everything written");

        // The newest records, within the hot tail, a few times over.
        let from_batch = batches_per_shard.saturating_sub(HOT_PER_SHARD / RECORD / BATCH);
        let started = Instant::now();
        let mut hot_read_bytes = 0;
        for _ in 0..4 {
            for shard in &firsts {
                let (shard_id, sequence) = &shard[from_batch];
                hot_read_bytes += read_from(
                    &client,
                    shard_id,
                    ShardIteratorType::AtSequenceNumber,
                    Some(sequence),
                )
                .await;
            }
        }
        let hot_read_secs = started.elapsed().as_secs_f64();
        let measured = Measured {
            records,
            bytes,
            write_secs,
            rss_before_kib,
            rss_after_write_kib,
            peak_rss_kib: status_kib("VmHWM"),
            cached_bytes: broker.cached_record_bytes() as u64,
            cold_read_secs,
            hot_read_bytes,
            hot_read_secs,
        };
        broker.shutdown().await;
        measured
    }

    /// Reads a shard from an iterator until caught up; returns the bytes of data read.
    async fn read_from(
        client: &aws_sdk_kinesis::Client,
        shard: &str,
        kind: ShardIteratorType,
        sequence: Option<&str>,
    ) -> u64 {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name("bench")
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_starting_sequence_number(sequence.map(str::to_owned))
            .send()
            .await
            .unwrap()
            .shard_iterator;
        let mut bytes = 0;
        while let Some(it) = iterator {
            let out = client
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            bytes += out
                .records()
                .iter()
                .map(|r| r.data().as_ref().len() as u64)
                .sum::<u64>();
            if out.records().is_empty() {
                break;
            }
            iterator = out.next_shard_iterator().map(str::to_owned);
        }
        bytes
    }
}
