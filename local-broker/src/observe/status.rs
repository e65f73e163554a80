//! The status page: plain HTML with inline CSS, no script, refreshed by the browser every five
//! seconds. Every value is escaped; names come from clients.

use super::overview::{LeaseTable, Overview, ShardView, StreamView};
use std::fmt::Write as _;
use std::time::Duration;

/// Text made safe for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(text: Option<&str>) -> String {
    text.map_or_else(|| "—".to_owned(), esc)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.4em 0 1em}th,td{border:1px solid #ddd;padding:.25em .6em;\
text-align:left;font-size:.9em}th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
td:first-child{white-space:nowrap}.closed{color:#888}.muted{color:#777}code{font-size:.9em}";

/// The whole page.
pub fn render(overview: &Overview, uptime: Duration) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>local-broker status</title>\
         <style>{STYLE}</style></head><body><h1>local-broker status</h1>\
         <p class=\"muted\">up {:.0} s · {} streams · {} tables · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/health\">/health</a></p>",
        uptime.as_secs_f64(),
        overview.streams.len(),
        overview.tables.len()
    );
    html.push_str("<h2>Streams</h2>");
    if overview.streams.is_empty() {
        html.push_str("<p class=\"muted\">No streams.</p>");
    }
    for stream in &overview.streams {
        render_stream(&mut html, stream, overview.now_ms);
    }
    html.push_str("<h2>Lease tables (KCL)</h2>");
    if overview.lease_tables.is_empty() {
        html.push_str("<p class=\"muted\">No table keyed by <code>leaseKey</code>.</p>");
    }
    for table in &overview.lease_tables {
        render_leases(&mut html, table);
    }
    html.push_str("<h2>DynamoDB tables</h2>");
    if overview.tables.is_empty() {
        html.push_str("<p class=\"muted\">No tables.</p>");
    } else {
        html.push_str(
            "<table><tr><th>table</th><th>status</th><th>hash key</th><th>items</th><th>size</th></tr>",
        );
        for t in &overview.tables {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&t.name),
                t.status,
                esc(&t.hash_key),
                t.items,
                bytes(t.bytes as u64)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    html
}

fn render_stream(html: &mut String, stream: &StreamView, now_ms: i64) {
    let open = stream.shards.iter().filter(|s| s.open).count();
    let _ = write!(
        html,
        "<h3 id=\"stream-{0}\">{0}</h3><p>{1} · {2} · {3} open of {4} shards · retention {5} h</p>",
        esc(&stream.name),
        stream.status,
        stream.mode,
        open,
        stream.shards.len(),
        stream.retention_hours
    );
    html.push_str(
        "<table><tr><th>shard</th><th>state</th><th>parent</th><th>adjacent parent</th>\
         <th>children</th><th>hash range</th><th>records</th><th>bytes</th><th>last record</th></tr>",
    );
    for shard in &stream.shards {
        render_shard(html, shard, now_ms);
    }
    html.push_str("</table>");
    if !stream.consumers.is_empty() {
        html.push_str(
            "<table><tr><th>consumer (enhanced fan-out)</th><th>status</th><th>subscribed shards</th></tr>",
        );
        for c in &stream.consumers {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.name),
                c.status,
                if c.subscribed_shards.is_empty() {
                    "—".to_owned()
                } else {
                    esc(&c.subscribed_shards.join(", "))
                }
            );
        }
        html.push_str("</table>");
    }
}

fn render_shard(html: &mut String, shard: &ShardView, now_ms: i64) {
    let last = shard.stats.last_arrival_ms.map_or_else(
        || "—".to_owned(),
        |at| format!("{} ms ago", (now_ms - at).max(0)),
    );
    let range_width = shard.ending_hash_key - shard.starting_hash_key;
    let share = (range_width as f64 + 1.0) / (u128::MAX as f64 + 1.0) * 100.0;
    let _ = write!(
        html,
        "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td title=\"{}–{}\">{:.1} %</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
        if shard.open { "open" } else { "closed" },
        esc(&shard.id),
        if shard.open { "OPEN" } else { "CLOSED" },
        opt(shard.parent.as_deref()),
        opt(shard.adjacent_parent.as_deref()),
        if shard.children.is_empty() {
            "—".to_owned()
        } else {
            esc(&shard.children.join(", "))
        },
        shard.starting_hash_key,
        shard.ending_hash_key,
        share,
        shard.stats.records,
        bytes(shard.stats.bytes),
        last
    );
}

fn render_leases(html: &mut String, table: &LeaseTable) {
    let _ = write!(
        html,
        "<h3>{}</h3><table><tr><th>lease</th><th>owner</th><th>counter</th><th>checkpoint</th>\
         <th>parents</th><th>records behind</th><th>ms behind latest</th></tr>",
        esc(&table.name)
    );
    for lease in &table.leases {
        let (records, millis) = lease.lag.as_ref().map_or_else(
            || ("—".to_owned(), "—".to_owned()),
            |lag| (lag.records.to_string(), lag.millis.to_string()),
        );
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&lease.lease_key),
            lease
                .owner
                .as_deref()
                .map_or_else(|| "<i>unowned</i>".to_owned(), esc),
            opt(lease.counter.as_deref()),
            opt(lease.checkpoint.as_deref()),
            if lease.parents.is_empty() {
                "—".to_owned()
            } else {
                esc(&lease.parents.join(", "))
            },
            records,
            millis
        );
    }
    html.push_str("</table>");
}
