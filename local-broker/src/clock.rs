//! The broker's one notion of "now", so tests can move time (retention, iterator expiry).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in epoch milliseconds.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The real system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// The system clock plus an offset that tests can advance, e.g. past a retention period.
///
/// ```
/// use local_broker::{Clock, ShiftableClock};
/// use std::time::Duration;
/// let clock = ShiftableClock::new();
/// let before = clock.now_millis();
/// clock.advance(Duration::from_secs(3600));
/// assert!(clock.now_millis() >= before + 3_600_000);
/// ```
#[derive(Debug, Default, Clone)]
pub struct ShiftableClock {
    offset_millis: Arc<AtomicI64>,
}

impl ShiftableClock {
    /// A clock that starts at the system time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_millis
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ShiftableClock {
    fn now_millis(&self) -> i64 {
        SystemClock.now_millis() + self.offset_millis.load(Ordering::SeqCst)
    }
}
