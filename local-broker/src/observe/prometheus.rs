//! Gauges read from the broker's state at scrape time, appended to the recorder's output in the
//! Prometheus text format. They are not kept in the recorder, so a deleted stream or table
//! disappears from the next scrape instead of lingering at its last value.

use super::overview::Overview;
use std::fmt::Write as _;
use std::time::Duration;

/// One gauge family: `# TYPE` line, then one sample per label set.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        Self { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the state gauges to `out`.
pub fn render_state(overview: &Overview, uptime: Duration, out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let name = "UptimeSeconds";
    Family::new(out, name, "Seconds since the broker started.").sample(
        name,
        &[],
        uptime.as_secs_f64(),
    );

    let name = "OpenShardCount";
    let mut family = Family::new(out, name, "Open shards of each stream.");
    for s in &overview.streams {
        let open = s.shards.iter().filter(|sh| sh.open).count();
        family.sample(name, &[("stream", &s.name)], open as f64);
    }

    for (name, help, bytes) in [
        (
            "StoredRecords",
            "Records a shard holds (within retention).",
            false,
        ),
        (
            "StoredBytes",
            "Bytes of data a shard holds (within retention).",
            true,
        ),
    ] {
        let mut family = Family::new(out, name, help);
        for s in &overview.streams {
            for shard in &s.shards {
                let value = if bytes {
                    shard.stats.bytes
                } else {
                    shard.stats.records
                };
                family.sample(
                    name,
                    &[("stream", &s.name), ("shard", &shard.id)],
                    value as f64,
                );
            }
        }
    }

    let name = "SubscribeToShard_ActiveSubscriptions";
    let mut family = Family::new(out, name, "SubscribeToShard streams being served now.");
    for s in &overview.streams {
        for c in &s.consumers {
            family.sample(
                name,
                &[("stream", &s.name), ("consumer", &c.name)],
                c.subscribed_shards.len() as f64,
            );
        }
    }

    let name = "TableItemCount";
    let mut family = Family::new(out, name, "Items of each DynamoDB table.");
    for t in &overview.tables {
        family.sample(name, &[("table", &t.name)], t.items as f64);
    }
    let name = "TableSizeBytes";
    let mut family = Family::new(out, name, "Bytes of items of each DynamoDB table.");
    for t in &overview.tables {
        family.sample(name, &[("table", &t.name)], t.bytes as f64);
    }

    let name = "StorageSizeBytes";
    let records: u64 = overview
        .streams
        .iter()
        .flat_map(|s| &s.shards)
        .map(|sh| sh.stats.bytes)
        .sum();
    let items: usize = overview.tables.iter().map(|t| t.bytes).sum();
    let mut family = Family::new(out, name, "Bytes held: record data and DynamoDB items.");
    family.sample(name, &[("kind", "records")], records as f64);
    family.sample(name, &[("kind", "items")], items as f64);

    let name = "LeaseOwner";
    let mut family = Family::new(
        out,
        name,
        "1 for each KCL lease and its owner (lease tables are those keyed by leaseKey).",
    );
    for t in &overview.lease_tables {
        for lease in &t.leases {
            let owner = lease.owner.as_deref().unwrap_or("");
            family.sample(
                name,
                &[
                    ("table", &t.name),
                    ("lease", &lease.lease_key),
                    ("owner", owner),
                ],
                1.0,
            );
        }
    }
    for (name, help, millis) in [
        (
            "LeaseMillisBehindLatest",
            "How far each KCL lease's checkpoint is behind its shard's newest record.",
            true,
        ),
        (
            "LeaseRecordsBehindLatest",
            "Records after each KCL lease's checkpoint in its shard.",
            false,
        ),
    ] {
        let mut family = Family::new(out, name, help);
        for t in &overview.lease_tables {
            for lease in &t.leases {
                if let Some(lag) = &lease.lag {
                    let value = if millis {
                        lag.millis as f64
                    } else {
                        lag.records as f64
                    };
                    family.sample(
                        name,
                        &[
                            ("table", &t.name),
                            ("lease", &lease.lease_key),
                            ("stream", &lag.stream),
                        ],
                        value,
                    );
                }
            }
        }
    }

    for (name, destination) in [
        ("DeliveryToS3_DataFreshness", "DeliveryToS3"),
        (
            "DeliveryToHttpEndpoint_DataFreshness",
            "DeliveryToHttpEndpoint",
        ),
    ] {
        let mut family = Family::new(
            out,
            name,
            "Seconds the oldest record of each Firehose delivery stream has waited for delivery (0 when none waits).",
        );
        for d in overview
            .delivery_streams
            .iter()
            .filter(|d| d.destination == destination)
        {
            let waited_ms = d.oldest_ms.map_or(0, |at| (overview.now_ms - at).max(0));
            family.sample(
                name,
                &[("delivery_stream", &d.name)],
                waited_ms as f64 / 1e3,
            );
        }
    }
    let name = "BufferedRecords";
    let mut family = Family::new(
        out,
        name,
        "Records each Firehose delivery stream holds for delivery.",
    );
    for d in &overview.delivery_streams {
        family.sample(name, &[("delivery_stream", &d.name)], d.records as f64);
    }
}
