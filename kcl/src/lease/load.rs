//! Load: what one lease costs (its throughput, an exponential moving average of bytes/s written to
//! the lease as the Java KCL 3.x attribute `throughputKBps`) and what one worker carries (its CPU
//! utilization from `/proc/self/stat` against its cgroup CPU limit, with the throughput of its
//! leases as the fallback), published by each worker as a [`WorkerLoad`] report.
//!
//! This module only measures; the leader's [`assignment`](super::assignment) decides with it.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

/// Kilobytes per second (`throughputKBps`), finite and never negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct ThroughputKbps(f64);

// `new` refuses NaN, so equality is reflexive.
impl Eq for ThroughputKbps {}

impl ThroughputKbps {
    /// Zero.
    pub const ZERO: Self = Self(0.0);

    /// `kbps`, with NaN, infinities and negative values read as zero.
    pub fn new(kbps: f64) -> Self {
        if kbps.is_finite() && kbps > 0.0 {
            Self(kbps)
        } else {
            Self::ZERO
        }
    }

    /// The value in KB/s.
    pub fn kbps(self) -> f64 {
        self.0
    }
}

/// An exponential moving average of the bytes/s a shard consumer delivers: bytes are added as
/// batches are processed, and the rate is sampled at each lease renewal, which writes it to the
/// lease.
#[derive(Debug)]
pub(crate) struct ThroughputEma {
    alpha: f64,
    bytes_since_sample: u64,
    last_sample: Instant,
    average: Option<f64>,
}

/// Weight of the newest sample. At one sample per renewal (3.3 s), a step change is 90 % reflected
/// after ~3 renewals (10 s): quick enough to follow a hot shard, slow enough to ignore one burst.
const EMA_ALPHA: f64 = 0.5;

impl ThroughputEma {
    /// An average starting from `seed`: the throughput the previous owner measured, so a lease
    /// that just moved does not look idle (and draw more leases onto its new owner).
    pub(crate) fn starting_at(seed: Option<ThroughputKbps>) -> Self {
        Self {
            alpha: EMA_ALPHA,
            bytes_since_sample: 0,
            last_sample: Instant::now(),
            average: seed.map(ThroughputKbps::kbps),
        }
    }

    /// The average as of the last sample.
    pub(crate) fn current(&self) -> ThroughputKbps {
        ThroughputKbps::new(self.average.unwrap_or(0.0))
    }

    /// Counts `bytes` delivered to the processor.
    pub(crate) fn record(&mut self, bytes: usize) {
        self.bytes_since_sample = self
            .bytes_since_sample
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Folds the bytes since the last sample into the average and returns it. Samples closer
    /// than 100 ms to the previous one only accumulate (a rate over a sliver of time is noise).
    pub(crate) fn sample(&mut self, now: Instant) -> ThroughputKbps {
        let elapsed = now.saturating_duration_since(self.last_sample);
        if elapsed >= Duration::from_millis(100) {
            let rate = self.bytes_since_sample as f64 / 1024.0 / elapsed.as_secs_f64();
            self.average = Some(match self.average {
                Some(avg) => self.alpha * rate + (1.0 - self.alpha) * avg,
                None => rate,
            });
            self.bytes_since_sample = 0;
            self.last_sample = now;
        }
        self.current()
    }
}

/// What a worker publishes about itself for the leader (see
/// [`CoordinatorStore`](super::CoordinatorStore)).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerLoad {
    /// The worker id (`wid`).
    pub worker_id: String,
    /// Bumped by every report: the leader sees a worker alive while this changes (observed, like
    /// lease counters, never compared with another host's clock).
    pub sequence: u64,
    /// Percent of the CPU the worker may use (its cgroup limit, else all cores), if measurable.
    pub cpu_percent: Option<f64>,
    /// Sum of the throughput of the leases it holds.
    pub throughput: ThroughputKbps,
    /// Leases it holds.
    pub leases: usize,
    /// The worker is draining: assign it nothing, move its leases away.
    pub draining: bool,
}

/// Samples this process's CPU utilization: CPU time from `/proc/self/stat` (user + system)
/// over wall time, against the CPUs the process may use (cgroup v2 `cpu.max`, cgroup v1
/// `cpu.cfs_quota_us`/`cpu.cfs_period_us`, else the number of cores).
///
/// Every worker in one process reports the process's CPU; run load-aware workers one per process
/// (or use [`LoadMetric::Throughput`](super::LoadMetric::Throughput)).
#[derive(Debug)]
pub(crate) struct CpuSampler {
    cpus: f64,
    last: Option<(Instant, f64)>,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

impl CpuSampler {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let cpus = cgroup_cpu_limit(Path::new("/sys/fs/cgroup")).map_or(cores, |l| l.min(cores));
        Self { cpus, last: None }
    }

    /// Utilization since the previous sample in percent; `None` on the first call or where
    /// `/proc` is unavailable.
    pub(crate) fn sample(&mut self, now: Instant) -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let cpu_seconds = process_cpu_seconds(&stat)?;
        let previous = self.last.replace((now, cpu_seconds));
        let (then, before) = previous?;
        let wall = now.saturating_duration_since(then).as_secs_f64();
        (wall > 0.0).then(|| ((cpu_seconds - before) / wall / self.cpus * 100.0).clamp(0.0, 100.0))
    }
}

/// User + system CPU seconds from the text of `/proc/<pid>/stat` (fields 14 and 15; the command
/// name in field 2 may contain spaces and parentheses, so fields are counted after the last `)`).
fn process_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The CPUs the cgroup at `root` may use, if limited.
fn cgroup_cpu_limit(root: &Path) -> Option<f64> {
    let quota_period = |quota: &str, period: &str| -> Option<f64> {
        let (quota, period): (f64, f64) = (quota.trim().parse().ok()?, period.trim().parse().ok()?);
        (quota > 0.0 && period > 0.0).then(|| quota / period)
    };
    if let Ok(max) = std::fs::read_to_string(root.join("cpu.max")) {
        let mut parts = max.split_whitespace();
        return quota_period(parts.next()?, parts.next()?);
    }
    let v1 = root.join("cpu");
    let quota = std::fs::read_to_string(v1.join("cpu.cfs_quota_us")).ok()?;
    let period = std::fs::read_to_string(v1.join("cpu.cfs_period_us")).ok()?;
    quota_period(&quota, &period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_never_nan_or_negative() {
        assert_eq!(ThroughputKbps::new(f64::NAN), ThroughputKbps::ZERO);
        assert_eq!(ThroughputKbps::new(-3.0), ThroughputKbps::ZERO);
        assert_eq!(ThroughputKbps::new(2.5).kbps(), 2.5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_average_follows_the_rate_and_smooths_bursts() {
        let mut ema = ThroughputEma::starting_at(None);
        for _ in 0..10 {
            ema.record(10 * 1024);
            tokio::time::advance(Duration::from_secs(1)).await;
            ema.sample(Instant::now());
        }
        let steady = ema.sample(Instant::now()).kbps();
        assert!((steady - 10.0).abs() < 1e-9, "{steady}");
        ema.record(100 * 1024);
        tokio::time::advance(Duration::from_secs(1)).await;
        let burst = ema.sample(Instant::now()).kbps();
        assert!(burst > 10.0 && burst < 100.0, "{burst}");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(ema.sample(Instant::now()).kbps() < burst);
    }

    #[test]
    fn cpu_seconds_are_read_after_the_command_name() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(process_cpu_seconds(stat), Some(3.0));
        assert_eq!(process_cpu_seconds("garbage"), None);
    }

    #[test]
    fn cgroup_limits_are_read_from_v2_then_v1() {
        let dir = std::env::temp_dir().join(format!("kcl-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cpu")).expect("temp dir");
        assert_eq!(cgroup_cpu_limit(&dir), None);
        std::fs::write(dir.join("cpu/cpu.cfs_quota_us"), "50000\n").expect("write");
        std::fs::write(dir.join("cpu/cpu.cfs_period_us"), "100000\n").expect("write");
        assert_eq!(cgroup_cpu_limit(&dir), Some(0.5));
        std::fs::write(dir.join("cpu.max"), "max 100000\n").expect("write");
        assert_eq!(cgroup_cpu_limit(&dir), None);
        std::fs::write(dir.join("cpu.max"), "200000 100000\n").expect("write");
        assert_eq!(cgroup_cpu_limit(&dir), Some(2.0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn this_process_cpu_is_measurable_on_linux() {
        let mut cpu = CpuSampler::new();
        let start = Instant::now();
        if cpu.sample(start).is_none() && !Path::new("/proc/self/stat").exists() {
            return;
        }
        // Burn a little CPU so the second sample has something to see.
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let used = cpu.sample(Instant::now()).expect("second sample");
        assert!((0.0..=100.0).contains(&used), "{used} ({x})");
    }
}
