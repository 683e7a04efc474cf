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
