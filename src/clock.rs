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
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)
    }
}

/// A clock stopped at one instant, for `--at` and tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// A clock that reads `start` when made and then advances with real time: `run --at`, which
/// rehearses the daemon from a chosen instant on a scratch home. The monotonic clock measures
/// the advance, so the wall clock is still read only by [`SystemClock`].
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    start: Timestamp,
    origin: std::time::Instant,
}

impl OffsetClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            start,
            origin: std::time::Instant::now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.start
            .checked_add(jiff::SignedDuration::from_millis(elapsed))
            .unwrap_or(self.start)
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
