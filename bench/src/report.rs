//! The comparison table and the JSON report.

use crate::workload::{Params, PutRecordResult, PutRecordsResult, ReadBackResult};
use serde::Serialize;

/// Everything measured against one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub name: String,
    pub mode: &'static str,
    pub endpoint: String,
    pub put_records: PutRecordsResult,
    pub read_back: ReadBackResult,
    pub put_record: PutRecordResult,
    /// Whether the server process was still alive after the run.
    pub server_alive: bool,
}

/// kinesalite 3.3.3 as measured with boto3 (one client thread) on this machine, from
/// shared/reference/peers.md: (low, high).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Baseline {
    pub put_records_per_sec: (f64, f64),
    pub server_cpu_us_per_record: (f64, f64),
    pub put_record_calls_per_sec: (f64, f64),
    pub put_record_p50_ms: (f64, f64),
    pub read_back_per_sec: (f64, f64),
}

pub const KINESALITE_PEERS_MD: Baseline = Baseline {
    put_records_per_sec: (6_300.0, 10_200.0),
    server_cpu_us_per_record: (92.0, 140.0),
    put_record_calls_per_sec: (341.0, 573.0),
    put_record_p50_ms: (1.6, 2.7),
    read_back_per_sec: (12_700.0, 17_200.0),
};

/// One row of the comparison: a metric for us, for kinesalite measured now, and the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub higher_is_better: bool,
    pub ours: Option<f64>,
    pub kinesalite: Option<f64>,
    /// ours / kinesalite (measured in this run).
    pub ratio_vs_kinesalite: Option<f64>,
    pub baseline: Option<(f64, f64)>,
    /// ours / baseline, for the baseline's high and low ends (so the range reads low–high).
    pub ratio_vs_baseline: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub params: Params,
    pub targets: Vec<TargetResult>,
    pub baseline_kinesalite_peers_md: Baseline,
    pub rows: Vec<Row>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub fn rows(ours: &TargetResult, kinesalite: Option<&TargetResult>) -> Vec<Row> {
    let b = KINESALITE_PEERS_MD;
    /// (metric, higher is better, how to read it, peers.md baseline).
    type Spec = (
        &'static str,
        bool,
        fn(&TargetResult) -> Option<f64>,
        Option<(f64, f64)>,
    );
    let specs: [Spec; 10] = [
        (
            "PutRecords records/s",
            true,
            |t| Some(t.put_records.records_per_sec),
            Some(b.put_records_per_sec),
        ),
        (
            "server CPU µs/record (PutRecords)",
            false,
            |t| t.put_records.server_cpu_us_per_record,
            Some(b.server_cpu_us_per_record),
        ),
        (
            "generator CPU µs/record (PutRecords)",
            false,
            |t| t.put_records.generator_cpu_us_per_record,
            None,
        ),
        (
            "PutRecords call p50 ms",
            false,
            |t| Some(t.put_records.batch_p50_ms),
            None,
        ),
        (
            "PutRecord calls/s (1 in flight)",
            true,
            |t| Some(t.put_record.calls_per_sec),
            Some(b.put_record_calls_per_sec),
        ),
        (
            "PutRecord p50 ms",
            false,
            |t| Some(t.put_record.p50_ms),
            Some(b.put_record_p50_ms),
        ),
        (
            "PutRecord p99 ms",
            false,
            |t| Some(t.put_record.p99_ms),
            None,
        ),
        (
            "server CPU µs/call (PutRecord)",
            false,
            |t| t.put_record.server_cpu_us_per_call,
            None,
        ),
        (
            "read-back records/s",
            true,
            |t| Some(t.read_back.records_per_sec),
            Some(b.read_back_per_sec),
        ),
        (
            "server CPU µs/record (read-back)",
            false,
            |t| t.read_back.server_cpu_us_per_record,
            None,
        ),
    ];
    specs
        .into_iter()
        .map(|(metric, higher_is_better, get, baseline)| {
            let o = get(ours);
            let k = kinesalite.and_then(get);
            Row {
                metric,
                higher_is_better,
                ours: o,
                kinesalite: k,
                ratio_vs_kinesalite: ratio(o, k),
                baseline,
                ratio_vs_baseline: baseline
                    .and_then(|(lo, hi)| Some((ratio(o, Some(hi))?, ratio(o, Some(lo))?))),
            }
        })
        .collect()
}

fn num(v: f64) -> String {
    if v >= 1_000.0 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio_text(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.3}×")
    }
}

pub fn print_table(report: &Report) {
    let ours = &report.targets[0];
    println!();
    println!(
        "{} ({}, {}) — {} shards, {} writers × {}-record PutRecords of {} B",
        ours.name,
        ours.mode,
        ours.endpoint,
        report.params.shards,
        report.params.concurrency,
        report.params.batch_size,
        report.params.record_size
    );
    let w = 38;
    println!(
        "{:<w$} {:>10} {:>11} {:>10} {:>16} {:>14}",
        "metric", "ours", "kinesalite", "ours/kin.", "peers.md kin.", "ours/peers.md"
    );
    println!("{}", "-".repeat(w + 66));
    for row in &report.rows {
        let dash = || "—".to_owned();
        let name = if row.higher_is_better {
            row.metric.to_owned()
        } else {
            format!("{} ↓", row.metric)
        };
        println!(
            "{:<w$} {:>10} {:>11} {:>10} {:>16} {:>14}",
            name,
            row.ours.map_or_else(dash, num),
            row.kinesalite.map_or_else(dash, num),
            row.ratio_vs_kinesalite.map_or_else(dash, ratio_text),
            row.baseline
                .map_or_else(dash, |(lo, hi)| format!("{}–{}", num(lo), num(hi))),
            row.ratio_vs_baseline.map_or_else(dash, |(lo, hi)| format!(
                "{}–{}",
                ratio_text(lo).trim_end_matches('×'),
                ratio_text(hi)
            )),
        );
    }
    println!(
        "↓ = lower is better (a ratio below 1 favours ours). peers.md figures were taken with boto3, one client thread; \
         the columns 'ours' and 'kinesalite' use this native generator."
    );
    for t in &report.targets {
        let rb = &t.read_back;
        println!(
            "{}: {} records written ({} errors, {} failed entries); read back {} of {} in {} GetRecords calls: {}{}",
            t.name,
            t.put_records.records,
            t.put_records.errors,
            t.put_records.failed_records,
            rb.records,
            rb.expected,
            rb.calls,
            if rb.verified {
                "verified (count, bytes, partition keys, shard, per-shard order)"
            } else {
                "VERIFICATION FAILED"
            },
            if t.server_alive {
                ""
            } else {
                "; SERVER EXITED"
            }
        );
        for p in rb.problems.iter().take(10) {
            println!("  - {p}");
        }
        for e in [&t.put_records.first_error, &t.put_record.first_error]
            .into_iter()
            .flatten()
        {
            println!("  - first error: {e}");
        }
    }
}
