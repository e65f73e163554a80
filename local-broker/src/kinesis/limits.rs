//! Per-shard throughput limits, enforced only when the broker is asked to (`--enforce-limits`).
//!
//! Token buckets with AWS's rates: writes 1 MiB/s and 1,000 records/s, reads 5 GetRecords calls/s
//! and 2 MiB/s. Buckets hold one second of tokens (AWS's burst). Reads may overdraw the byte
//! bucket — a 10 MiB GetRecords is allowed and then throttles the shard for about five seconds,
//! as AWS documents.
//!
//! Refused writes are also remembered as *write pressure*: an ON_DEMAND stream splits a shard
//! whose writes have been refused for [`ON_DEMAND_SCALE_AFTER_MS`] (AWS adds capacity when
//! sustained write traffic exceeds it; the window is short here so local tests see it).

/// One refilling allowance.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_ms: f64,
    last_ms: i64,
}

impl Bucket {
    fn new(per_second: f64, now_ms: i64) -> Self {
        Self {
            tokens: per_second,
            capacity: per_second,
            per_ms: per_second / 1000.0,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: i64) {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        self.last_ms = now_ms.max(self.last_ms);
    }
}

/// AWS's per-shard rates.
pub const WRITE_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
pub const WRITE_RECORDS_PER_SECOND: f64 = 1000.0;
pub const READ_CALLS_PER_SECOND: f64 = 5.0;
pub const READ_BYTES_PER_SECOND: f64 = 2.0 * 1024.0 * 1024.0;

/// How long an ON_DEMAND shard's writes must keep being refused before it is split.
pub const ON_DEMAND_SCALE_AFTER_MS: i64 = 1_000;
/// A pause in refusals this long ends a period of write pressure.
const PRESSURE_GAP_MS: i64 = 500;

/// A period during which a shard kept refusing writes.
#[derive(Debug, Clone, Copy)]
struct Pressure {
    since_ms: i64,
    last_ms: i64,
}

/// The buckets of one shard.
#[derive(Debug, Clone)]
pub struct ShardLimits {
    write_bytes: Bucket,
    write_records: Bucket,
    read_calls: Bucket,
    read_bytes: Bucket,
    pressure: Option<Pressure>,
}

impl ShardLimits {
    /// Full buckets at `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            write_bytes: Bucket::new(WRITE_BYTES_PER_SECOND, now_ms),
            write_records: Bucket::new(WRITE_RECORDS_PER_SECOND, now_ms),
            read_calls: Bucket::new(READ_CALLS_PER_SECOND, now_ms),
            read_bytes: Bucket::new(READ_BYTES_PER_SECOND, now_ms),
            pressure: None,
        }
    }

    /// Takes the allowance for one record of `bytes`, or refuses it without taking anything.
    pub fn admit_write(&mut self, bytes: usize, now_ms: i64) -> bool {
        self.write_bytes.refill(now_ms);
        self.write_records.refill(now_ms);
        if self.write_records.tokens < 1.0 || self.write_bytes.tokens < bytes as f64 {
            self.pressure = match self.pressure {
                Some(p) if now_ms - p.last_ms < PRESSURE_GAP_MS => Some(Pressure {
                    last_ms: now_ms.max(p.last_ms),
                    ..p
                }),
                _ => Some(Pressure {
                    since_ms: now_ms,
                    last_ms: now_ms,
                }),
            };
            return false;
        }
        self.write_records.tokens -= 1.0;
        self.write_bytes.tokens -= bytes as f64;
        true
    }

    /// Whether writes have been refused for at least `window_ms` without a pause, up to now.
    pub fn under_sustained_write_pressure(&self, now_ms: i64, window_ms: i64) -> bool {
        self.pressure.is_some_and(|p| {
            now_ms - p.last_ms < PRESSURE_GAP_MS && p.last_ms - p.since_ms >= window_ms
        })
    }

    /// Takes one GetRecords call, or refuses it (too many calls, or bytes overdrawn).
    pub fn admit_read(&mut self, now_ms: i64) -> bool {
        self.read_calls.refill(now_ms);
        self.read_bytes.refill(now_ms);
        if self.read_calls.tokens < 1.0 || self.read_bytes.tokens <= 0.0 {
            return false;
        }
        self.read_calls.tokens -= 1.0;
        true
    }

    /// Charges the bytes a GetRecords returned; may overdraw.
    pub fn charge_read(&mut self, bytes: usize) {
        self.read_bytes.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_capped_at_a_thousand_records_per_second() {
        let mut limits = ShardLimits::new(0);
        let admitted = (0..1500).filter(|_| limits.admit_write(10, 0)).count();
        assert_eq!(admitted, 1000);
        assert!(limits.admit_write(10, 1)); // one ms refills one record
        assert!(!limits.admit_write(10, 1));
    }

    #[test]
    fn writes_are_capped_at_a_mebibyte_per_second() {
        let mut limits = ShardLimits::new(0);
        assert!(limits.admit_write(1024 * 1024, 0));
        assert!(!limits.admit_write(1, 0));
        assert!(limits.admit_write(100 * 1024, 100));
    }

    #[test]
    fn a_large_read_throttles_the_next_seconds() {
        let mut limits = ShardLimits::new(0);
        assert!(limits.admit_read(0));
        limits.charge_read(10 * 1024 * 1024);
        assert!(!limits.admit_read(1000));
        assert!(limits.admit_read(4100));
    }

    #[test]
    fn only_refusals_without_a_pause_make_sustained_pressure() {
        let mut limits = ShardLimits::new(0);
        let mut now = 0;
        // Refused now and then, with long pauses: never sustained.
        for _ in 0..5 {
            while limits.admit_write(1024, now) {}
            assert!(!limits.under_sustained_write_pressure(now, 1000));
            now += 2000;
        }
        // Refused every 100 ms for a second: sustained.
        let start = now;
        while now <= start + 1000 {
            while limits.admit_write(1024, now) {}
            now += 100;
        }
        assert!(limits.under_sustained_write_pressure(now - 100, 1000));
        // Once the refusals stop, the pressure is gone.
        assert!(!limits.under_sustained_write_pressure(now + PRESSURE_GAP_MS, 1000));
    }

    #[test]
    fn five_reads_per_second() {
        let mut limits = ShardLimits::new(0);
        assert_eq!((0..10).filter(|_| limits.admit_read(0)).count(), 5);
    }
}
