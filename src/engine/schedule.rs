//! The built-in schedule gate: docs/DESIGN.md §4's due rule, exact at the boundaries.
//!
//! A lane with no recorded run is due; otherwise an `every:` lane is due iff
//! `now - last_run_at >= every` (equality is due), and a cron lane is due iff a slot passed in
//! `(last_run_at, now]`.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::clock::later;
use crate::config::{Retry, Schedule};
use crate::model::decision::TriggerSource;
use crate::model::duration::format_ms;
use crate::model::lane_state::{LaneState, RunResult};

/// What the schedule says.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// The schedule is off.
    Disabled,
    /// Not yet; due at `next` if known.
    NotDue {
        /// When it becomes due.
        next: Option<Timestamp>,
        /// Why, in words.
        detail: String,
    },
    /// Due now.
    Due {
        /// Periodic sweep or cron.
        source: TriggerSource,
        /// The trigger reason.
        reason: String,
        /// Why, in words.
        detail: String,
    },
}

fn ago(now: Timestamp, then: Timestamp) -> String {
    format_ms(i64::try_from(now.duration_since(then).as_millis()).unwrap_or(i64::MAX))
}

/// Applies the due rule.
pub fn due(
    schedule: &Schedule,
    zone: &TimeZone,
    last_run: Option<Timestamp>,
    now: Timestamp,
) -> Due {
    match schedule {
        Schedule::Disabled => Due::Disabled,
        Schedule::Every(every) => {
            let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            let reason = format!("periodic-sweep:{every_ms}");
            match last_run {
                None => Due::Due {
                    source: TriggerSource::PeriodicSweep,
                    reason,
                    detail: "no recorded run".into(),
                },
                Some(last) => {
                    let elapsed = now.as_millisecond() - last.as_millisecond();
                    if elapsed >= every_ms {
                        Due::Due {
                            source: TriggerSource::PeriodicSweep,
                            reason,
                            detail: format!(
                                "last run {} ago (every {})",
                                ago(now, last),
                                format_ms(every_ms)
                            ),
                        }
                    } else {
                        Due::NotDue {
                            next: Some(later(last, *every)),
                            detail: format!(
                                "last run {} ago; due every {}, in {}",
                                ago(now, last),
                                format_ms(every_ms),
                                format_ms(every_ms - elapsed)
                            ),
                        }
                    }
                }
            }
        }
        Schedule::Cron { expr, cron } => {
            let Some(last) = last_run else {
                return Due::Due {
                    source: TriggerSource::Cron,
                    reason: format!("cron:{expr}"),
                    detail: "no recorded run".into(),
                };
            };
            let from = last.to_zoned(zone.clone());
            match crate::config::cron::next(cron, &from) {
                Ok(slot) if slot.timestamp() <= now => Due::Due {
                    source: TriggerSource::Cron,
                    reason: format!("cron:{expr}"),
                    detail: format!(
                        "slot {} passed since the last run {} ago",
                        slot,
                        ago(now, last)
                    ),
                },
                Ok(slot) => Due::NotDue {
                    next: Some(slot.timestamp()),
                    detail: format!(
                        "next cron slot {} (in {})",
                        slot,
                        format_ms(slot.timestamp().as_millisecond() - now.as_millisecond())
                    ),
                },
                Err(e) => Due::NotDue {
                    next: None,
                    detail: format!("cron `{expr}` has no next slot: {e}"),
                },
            }
        }
    }
}

/// A failed run is retried `retry.delay` after it ended, for as long as the failure streak is
/// no older than `retry.window`. Returns the retry trigger when one is due now.
pub fn retry_due(retry: Option<Retry>, state: &LaneState, now: Timestamp) -> Option<Due> {
    let retry = retry?;
    let failed = matches!(
        state.last_result,
        Some(RunResult::Failure | RunResult::Interrupted)
    );
    let (ended, since) = (state.last_ended_at?, state.failure_since?);
    if !failed {
        return None;
    }
    let streak = now.as_millisecond() - since.as_millisecond();
    let waited = now.as_millisecond() - ended.as_millisecond();
    let window = i64::try_from(retry.window.as_millis()).unwrap_or(i64::MAX);
    let delay = i64::try_from(retry.delay.as_millis()).unwrap_or(i64::MAX);
    (waited >= delay && streak <= window).then(|| Due::Due {
        source: TriggerSource::FailedRunRetry,
        reason: format!("failed-run-retry:{streak}"),
        detail: format!(
            "last run failed {} ago; retrying every {} while the failures are under {} old (streak {})",
            format_ms(waited),
            format_ms(delay),
            format_ms(window),
            format_ms(streak)
        ),
    })
}

/// When a pending retry becomes due, if one is pending.
pub fn retry_at(retry: Option<Retry>, state: &LaneState) -> Option<Timestamp> {
    let retry = retry?;
    if !matches!(
        state.last_result,
        Some(RunResult::Failure | RunResult::Interrupted)
    ) {
        return None;
    }
    let at = later(state.last_ended_at?, retry.delay);
    let window_end = later(state.failure_since?, retry.window);
    (at <= window_end).then_some(at)
}

/// When the lane is (or was) next due: `None` when disabled or never run (due at once).
pub fn next_due(
    schedule: &Schedule,
    zone: &TimeZone,
    last_run: Option<Timestamp>,
) -> Option<Timestamp> {
    let last = last_run?;
    match schedule {
        Schedule::Disabled => None,
        Schedule::Every(every) => Some(later(last, *every)),
        Schedule::Cron { cron, .. } => {
            crate::config::cron::next(cron, &last.to_zoned(zone.clone()))
                .ok()
                .map(|z| z.timestamp())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).expect("in range")
    }

    proptest! {
        /// The due rule is exactly `now - last >= every`, for any interval and offset.
        #[test]
        fn every_is_due_iff_elapsed_reaches_the_interval(
            last in 1_600_000_000_000i64..1_900_000_000_000,
            every_ms in 1i64..(30 * 86_400_000),
            delta in -86_400_000i64..(60 * 86_400_000),
        ) {
            let schedule = Schedule::Every(Duration::from_millis(every_ms as u64));
            let now = at(last + delta);
            let verdict = due(&schedule, &TimeZone::UTC, Some(at(last)), now);
            let is_due = matches!(verdict, Due::Due { .. });
            prop_assert_eq!(is_due, delta >= every_ms, "{:?}", verdict);
            if let Due::NotDue { next: Some(next), .. } = verdict {
                prop_assert_eq!(next, at(last + every_ms));
            }
        }
    }

    #[test]
    fn never_run_is_due_and_disabled_is_never_due() {
        let every = Schedule::Every(Duration::from_secs(60));
        assert!(matches!(
            due(&every, &TimeZone::UTC, None, at(0)),
            Due::Due { .. }
        ));
        assert_eq!(
            due(&Schedule::Disabled, &TimeZone::UTC, None, at(0)),
            Due::Disabled
        );
        assert_eq!(
            next_due(&every, &TimeZone::UTC, Some(at(1_000))),
            Some(at(61_000))
        );
    }

    #[test]
    fn an_interval_beyond_the_last_timestamp_is_due_at_the_end_of_time() {
        let every = Schedule::Every(Duration::from_secs(u64::MAX / 2));
        assert_eq!(
            next_due(&every, &TimeZone::UTC, Some(at(1_000))),
            Some(Timestamp::MAX)
        );
        let retry = Some(Retry {
            delay: Duration::from_secs(u64::MAX / 2),
            window: Duration::from_secs(u64::MAX / 2),
        });
        let failed = LaneState {
            last_result: Some(RunResult::Failure),
            last_ended_at: Some(at(1_000)),
            failure_since: Some(at(1_000)),
            ..LaneState::default()
        };
        assert_eq!(retry_at(retry, &failed), Some(Timestamp::MAX));
        assert!(matches!(
            due(&every, &TimeZone::UTC, Some(at(1_000)), at(2_000)),
            Due::NotDue { next: Some(t), .. } if t == Timestamp::MAX
        ));
    }
}
