//! `storage-bench`: the measurement behind local-broker's on-disk record log (issue #7).
//!
//! Compares hand-written per-shard append-only segment files (length + CRC32 framing, one
//! group-commit fsync thread) with redb (one B-tree, one transaction per commit group), under the
//! same load: `PRODUCERS` threads each appending batches of `BATCH` records of `RECORD` bytes to
//! their own shard and waiting for the acknowledgement. Prints throughput, p50/p99 append
//! latency, disk use, and recovery time (reopen + rebuild the per-shard position of every record).
//!
//! `cargo run --release -p bench --bin storage-bench -- [MiB] [dir]`

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

fn run(name: &str, dir: PathBuf, total_mib: usize, sync: bool, mut engine: Box<dyn Engine>) {
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
    println!(
        "{name:<22} {:>9.0} rec/s {:>7.1} MiB/s  p50 {:>8.2?}  p99 {:>8.2?}  disk {:>7.1} MiB ({:.2}x)  recovery {:>8.2?} ({:.2} s/GiB)",
        records as f64 / elapsed.as_secs_f64(),
        logical / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        disk,
        disk / logical,
        recovery,
        recovery.as_secs_f64() * 1024.0 / logical,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "target/storage-bench".into()));
    println!(
        "{PRODUCERS} producers x batches of {BATCH} x {RECORD} B records, {mib} MiB per engine"
    );
    for sync in [true, false] {
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
            run(&label, dir.clone(), mib, sync, engine);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
