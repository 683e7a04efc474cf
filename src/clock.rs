//! The one place that reads the wall clock.
//!
//! Everything else receives time from a [`Clock`], so tests and `--at` evaluations are
//! deterministic and the engine never calls `now()` itself. Readings are whole milliseconds,
//! the resolution of the due rule and of the store.

use jiff::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync {
    /// The current instant, in whole milliseconds.
    fn now(&self) -> Timestamp;

    /// How far this clock reads from the wall clock, in ms: handed to a run's supervisor so
    /// that it stamps the run's end on the same clock as its start.
    fn offset_ms(&self) -> i64 {
        0
    }
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one wall-clock read (clippy.toml bans it everywhere else).
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)
    }
}

/// The wall clock shifted by a fixed offset: `run --at` rehearses the daemon from a chosen
/// instant on a scratch home, and the runs it starts stamp their ends on the same clock.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset_ms: i64,
}

impl OffsetClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        Self::with_offset_ms(start.as_millisecond() - SystemClock.now().as_millisecond())
    }

    /// The wall clock plus `offset_ms`.
    pub fn with_offset_ms(offset_ms: i64) -> Self {
        Self { offset_ms }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let now = SystemClock.now();
        now.checked_add(jiff::SignedDuration::from_millis(self.offset_ms))
            .unwrap_or(now)
    }

    fn offset_ms(&self) -> i64 {
        self.offset_ms
    }
}

/// `t + d`, or the last moment a timestamp can hold: so far off is "never" either way, and
/// date arithmetic must never panic in the daemon.
pub fn later(t: Timestamp, d: std::time::Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// `t - d`, or the first moment a timestamp can hold.
pub fn earlier(t: Timestamp, d: std::time::Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn date_arithmetic_saturates_instead_of_panicking() {
        let now: Timestamp = "2026-05-10T00:00:00Z".parse().expect("time");
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(later(now, huge), Timestamp::MAX);
        assert_eq!(earlier(now, huge), Timestamp::MIN);
        assert_eq!(
            later(now, Duration::from_secs(60)),
            "2026-05-10T00:01:00Z".parse::<Timestamp>().expect("time")
        );
        assert_eq!(
            earlier(now, Duration::from_secs(60)),
            "2026-05-09T23:59:00Z".parse::<Timestamp>().expect("time")
        );
    }
}
