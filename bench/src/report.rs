//! The comparison table and the JSON report.

use crate::target::ProcessFacts;
use crate::workload::{
    Params, PutRecordResult, PutRecordsResult, PutVisibleResult, ReadBackResult,
};
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
    pub put_visible: PutVisibleResult,
    /// Whether the server process was still alive after the run.
    pub server_alive: bool,
    /// Startup time and idle memory (servers in their own process only).
    pub process: ProcessFacts,
    /// Peak resident memory of the server process over the whole run.
    pub peak_rss_mib: Option<f64>,
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
    pub put_visible_p50_ms: (f64, f64),
}

pub const KINESALITE_PEERS_MD: Baseline = Baseline {
    put_records_per_sec: (6_300.0, 10_200.0),
    server_cpu_us_per_record: (92.0, 140.0),
    put_record_calls_per_sec: (341.0, 573.0),
    put_record_p50_ms: (1.6, 2.7),
    read_back_per_sec: (12_700.0, 17_200.0),
    put_visible_p50_ms: (3.5, 5.7),
};

/// One row of the comparison: a metric for every target, ours over each other target, and the
/// peers.md baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub higher_is_better: bool,
    /// One value per target, in the order of [`Report::targets`] (ours first).
    pub values: Vec<Option<f64>>,
    /// ours / each other target (measured in this run), in the same order.
    pub ratios: Vec<Option<f64>>,
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

/// The comparison rows; `targets[0]` is ours, the rest are peers.
pub fn rows(targets: &[TargetResult]) -> Vec<Row> {
    let b = KINESALITE_PEERS_MD;
    /// (metric, higher is better, how to read it, peers.md baseline).
    type Spec = (
        &'static str,
        bool,
        fn(&TargetResult) -> Option<f64>,
        Option<(f64, f64)>,
    );
    let specs: [Spec; 15] = [
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
        (
            "put→visible p50 ms",
            false,
            |t| Some(t.put_visible.p50_ms),
            Some(b.put_visible_p50_ms),
        ),
        (
            "put→visible p99 ms",
            false,
            |t| Some(t.put_visible.p99_ms),
            None,
        ),
        (
            "startup ms (spawn → ListStreams)",
            false,
            |t| t.process.startup_ms,
            None,
        ),
        ("idle RSS MiB", false, |t| t.process.idle_rss_mib, None),
        ("peak RSS MiB", false, |t| t.peak_rss_mib, None),
    ];
    specs
        .into_iter()
        .map(|(metric, higher_is_better, get, baseline)| {
            let values: Vec<Option<f64>> = targets.iter().map(get).collect();
            let o = values.first().copied().flatten();
            Row {
                metric,
                higher_is_better,
                ratios: values.iter().skip(1).map(|&peer| ratio(o, peer)).collect(),
                values,
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
    let peers = &report.targets[1..];
    let mut header = format!("{:<w$} {:>10}", "metric", "ours");
    let widths: Vec<usize> = peers.iter().map(|p| p.name.len().max(7) + 5).collect();
    for (peer, &width) in peers.iter().zip(&widths) {
        header += &format!(
            " {:>12} {:>width$}",
            peer.name,
            format!("ours/{}", peer.name)
        );
    }
    header += &format!(" {:>16} {:>14}", "peers.md kin.", "ours/peers.md");
    println!("{header}");
    println!("{}", "-".repeat(header.chars().count()));
    let dash = || "—".to_owned();
    for row in &report.rows {
        let name = if row.higher_is_better {
            row.metric.to_owned()
        } else {
            format!("{} ↓", row.metric)
        };
        let ours = row.values.first().copied().flatten();
        let mut line = format!("{:<w$} {:>10}", name, ours.map_or_else(dash, num));
        for ((value, ratio), &width) in row.values.iter().skip(1).zip(&row.ratios).zip(&widths) {
            line += &format!(
                " {:>12} {:>width$}",
                value.map_or_else(dash, num),
                ratio.map_or_else(dash, ratio_text)
            );
        }
        line += &format!(
            " {:>16} {:>14}",
            row.baseline
                .map_or_else(dash, |(lo, hi)| format!("{}–{}", num(lo), num(hi))),
            row.ratio_vs_baseline.map_or_else(dash, |(lo, hi)| format!(
                "{}–{}",
                ratio_text(lo).trim_end_matches('×'),
                ratio_text(hi)
            )),
        );
        println!("{line}");
    }
    println!(
        "↓ = lower is better (a ratio below 1 favours ours). peers.md figures were taken with boto3, one client thread; \
         every other column uses this native generator, one server at a time."
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
        for e in [
            &t.put_records.first_error,
            &t.put_record.first_error,
            &t.put_visible.first_error,
        ]
        .into_iter()
        .flatten()
        {
            println!("  - first error: {e}");
        }
    }
}
