//! The built-in schedule gate: docs/DESIGN.md §4's due rule, exact at the boundaries.
//!
//! A lane with no recorded run is due; otherwise an `every:` lane is due iff
//! `now - last_run_at >= every + jitter offset` (equality is due), and a cron lane is due iff a
//! slot, delayed by the offset, passed in `(last_run_at, now]`. With `catch_up: skip`, slots
//! that fell while no daemon ran owe nothing: the lane waits for the first one after.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::clock::{earlier, later};
use crate::compile::Lane;
use crate::config::{CatchUp, Retry, Schedule};
use crate::model::decision::TriggerSource;
use crate::model::duration::format_ms;
use crate::model::lane_state::Downtime;
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

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Counting missed cron slots stops here: each is a step of the cron, asked on every pass
/// until the lane runs again, and past a thousand the exact number tells an operator nothing
/// more ("at least").
pub const MISSED_CAP: u64 = 1_000;

/// What the due rule reads of a lane besides its recorded state.
#[derive(Clone, Copy)]
pub struct Timing<'a> {
    /// `every:` or `cron:`.
    pub schedule: &'a Schedule,
    /// The zone of cron slots.
    pub zone: &'a TimeZone,
    /// The lane's fixed delay on this host (`jitter`), added to every slot.
    pub offset: Duration,
    /// What slots missed while no daemon ran owe.
    pub catch_up: CatchUp,
}

impl<'a> Timing<'a> {
    /// A lane's timing.
    pub fn of(lane: &'a Lane) -> Self {
        Self {
            schedule: &lane.schedule,
            zone: &lane.zone,
            offset: lane.jitter_offset,
            catch_up: lane.catch_up,
        }
    }

    /// A schedule alone: no jitter, catch-up `once`.
    pub fn plain(schedule: &'a Schedule, zone: &'a TimeZone) -> Self {
        Self {
            schedule,
            zone,
            offset: Duration::ZERO,
            catch_up: CatchUp::Once,
        }
    }

    /// The first slot after `after` (or at it, if `inclusive`), jitter included. Cron slots
    /// are looked up on the clock shifted back by the offset, so a run at a jittered slot
    /// still owes nothing until the next one.
    fn cron_after(
        &self,
        cron: &croner::Cron,
        after: Timestamp,
        inclusive: bool,
    ) -> Result<Timestamp, String> {
        let shifted = crate::clock::earlier(after, self.offset);
        crate::config::cron::next_from(cron, &shifted.to_zoned(self.zone.clone()), inclusive)
            .map(|z| later(z.timestamp(), self.offset))
            .map_err(|e| e.to_string())
    }
}

/// When a lane that last ran at `last` is next due, and what a downtime did to it.
struct Plan {
    /// Due from here on.
    next: Timestamp,
    /// Slots that fell while no daemon ran (after the last run).
    missed: u64,
    /// `catch_up: skip` moved `next` past the downtime.
    skipped: bool,
}

fn plan(t: &Timing<'_>, last: Timestamp, down: Option<Downtime>) -> Result<Option<Plan>, String> {
    let down = down.filter(|d| last < d.to);
    let plan = match t.schedule {
        Schedule::Disabled => return Ok(None),
        // The delay lengthens the interval: lanes started together drift apart.
        Schedule::Every(every) => {
            let period = ms(*every).saturating_add(ms(t.offset)).max(1);
            let last_ms = last.as_millisecond();
            let next = later(last, Duration::from_millis(period as u64));
            // Slots at last + k·period, k ≥ 1, up to and including x.
            let upto = |x: i64| {
                if x <= last_ms {
                    0
                } else {
                    (x - last_ms) / period
                }
            };
            let mut plan = Plan {
                next,
                missed: 0,
                skipped: false,
            };
            if let Some(d) = down {
                let lo = last.max(d.from).as_millisecond();
                let hi = d.to.as_millisecond() - 1;
                plan.missed = u64::try_from(upto(hi) - upto(lo)).unwrap_or(0);
                if t.catch_up == CatchUp::Skip && next > d.from && next < d.to {
                    let k = (d.to.as_millisecond() - last_ms + period - 1) / period;
                    plan.next = later(
                        last,
                        Duration::from_millis(
                            u64::try_from(k.saturating_mul(period)).unwrap_or(u64::MAX),
                        ),
                    );
                    plan.skipped = true;
                }
            }
            plan
        }
        Schedule::Cron { cron, .. } => {
            let next = t.cron_after(cron, last, false)?;
            let mut plan = Plan {
                next,
                missed: 0,
                skipped: false,
            };
            if let Some(d) = down {
                let mut slot = t.cron_after(cron, last.max(d.from), false);
                while let Ok(s) = slot
                    && s < d.to
                    && plan.missed < MISSED_CAP
                {
                    plan.missed += 1;
                    slot = t.cron_after(cron, s, false);
                }
                if t.catch_up == CatchUp::Skip && next > d.from && next < d.to {
                    plan.next = t.cron_after(cron, d.to, true)?;
                    plan.skipped = true;
                }
            }
            plan
        }
    };
    Ok(Some(plan))
}

/// What the detail adds for a jitter and a downtime.
fn notes(t: &Timing<'_>, plan: &Plan, down: Option<Downtime>) -> String {
    let mut out = String::new();
    if !t.offset.is_zero() {
        out.push_str(&format!("; jitter +{}", format_ms(ms(t.offset))));
    }
    if plan.missed > 0
        && let Some(d) = down
    {
        let n = plan.missed;
        out.push_str(&format!(
            "; {n}{} slot{} missed while the daemon was down ({} to {}); catch_up: {}",
            if n >= MISSED_CAP { "+" } else { "" },
            if n == 1 { "" } else { "s" },
            d.from,
            d.to,
            match t.catch_up {
                CatchUp::Once => "once, so one run catches up",
                CatchUp::Skip if plan.skipped => "skip, so the lane waits for the next slot",
                CatchUp::Skip => "skip",
            }
        ));
    }
    out
}

/// Applies the due rule: the slots and interval of the schedule, delayed by the lane's jitter,
/// with the slots missed during `down` owing one run (`catch_up: once`) or none (`skip`).
pub fn due(
    t: &Timing<'_>,
    last_run: Option<Timestamp>,
    down: Option<Downtime>,
    now: Timestamp,
) -> Due {
    let (source, reason) = match t.schedule {
        Schedule::Disabled => return Due::Disabled,
        Schedule::Every(every) => (
            TriggerSource::PeriodicSweep,
            format!("periodic-sweep:{}", ms(*every)),
        ),
        Schedule::Cron { expr, .. } => (TriggerSource::Cron, format!("cron:{expr}")),
    };
    let Some(last) = last_run else {
        // Never run: due at once, so the offset only says what later slots will carry.
        let jitter = if t.offset.is_zero() {
            String::new()
        } else {
            format!("; later slots jitter +{}", format_ms(ms(t.offset)))
        };
        return Due::Due {
            source,
            reason,
            detail: format!("no recorded run{jitter}"),
        };
    };
    let plan = match plan(t, last, down) {
        Ok(Some(p)) => p,
        Ok(None) => return Due::Disabled,
        Err(e) => {
            let expr = match t.schedule {
                Schedule::Cron { expr, .. } => expr.as_str(),
                _ => "",
            };
            return Due::NotDue {
                next: None,
                detail: format!("cron `{expr}` has no next slot: {e}"),
            };
        }
    };
    let notes = notes(t, &plan, down);
    let next = plan.next;
    let nominal = |at: Timestamp| earlier(at, t.offset).to_zoned(t.zone.clone());
    match t.schedule {
        Schedule::Every(every) if next <= now => Due::Due {
            source,
            reason,
            detail: format!(
                "last run {} ago (every {}){notes}",
                ago(now, last),
                format_ms(ms(*every))
            ),
        },
        Schedule::Every(every) => Due::NotDue {
            next: Some(next),
            detail: format!(
                "last run {} ago; due every {}, in {}{notes}",
                ago(now, last),
                format_ms(ms(*every)),
                format_ms(next.as_millisecond() - now.as_millisecond())
            ),
        },
        _ if next <= now => Due::Due {
            source,
            reason,
            detail: format!(
                "slot {} passed since the last run {} ago{notes}",
                nominal(next),
                ago(now, last)
            ),
        },
        _ => Due::NotDue {
            next: Some(next),
            detail: format!(
                "next cron slot {} (in {}){notes}",
                nominal(next),
                format_ms(next.as_millisecond() - now.as_millisecond())
            ),
        },
    }
}

/// Slots that fell during the home's last downtime after the lane's last run (at most
/// [`MISSED_CAP`] for a cron): what `lanekeeper_missed_slots_total` counts.
pub fn missed_slots(t: &Timing<'_>, last_run: Option<Timestamp>, down: Option<Downtime>) -> u64 {
    last_run
        .and_then(|last| plan(t, last, down).ok().flatten())
        .map_or(0, |p| p.missed)
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
    t: &Timing<'_>,
    last_run: Option<Timestamp>,
    down: Option<Downtime>,
) -> Option<Timestamp> {
    plan(t, last_run?, down).ok().flatten().map(|p| p.next)
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
            let verdict = due(&Timing::plain(&schedule, &TimeZone::UTC), Some(at(last)), None, now);
            let is_due = matches!(verdict, Due::Due { .. });
            prop_assert_eq!(is_due, delta >= every_ms, "{:?}", verdict);
            if let Due::NotDue { next: Some(next), .. } = verdict {
                prop_assert_eq!(next, at(last + every_ms));
            }
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn hourly() -> Schedule {
        Schedule::Cron {
            expr: "0 * * * *".into(),
            cron: Box::new("0 * * * *".parse().expect("cron")),
        }
    }

    /// Down from 00:30 to 05:30 after a run at 00:00: the slots 01:00 to 05:00 were missed.
    #[test]
    fn a_downtime_owes_one_run_or_none_and_its_slots_are_counted() {
        let down = Some(Downtime {
            from: ts("2026-05-10T00:30:00Z"),
            to: ts("2026-05-10T05:30:00Z"),
        });
        let (cron, every) = (hourly(), Schedule::Every(Duration::from_secs(3600)));
        let utc = TimeZone::UTC;
        let last = Some(ts("2026-05-10T00:00:00Z"));
        let now = ts("2026-05-10T05:30:00Z");
        for schedule in [&cron, &every] {
            let once = Timing::plain(schedule, &utc);
            let skip = Timing {
                catch_up: CatchUp::Skip,
                ..once
            };
            assert_eq!(missed_slots(&once, last, down), 5);
            let Due::Due { detail, .. } = due(&once, last, down, now) else {
                panic!("once is due");
            };
            assert!(
                detail.contains("5 slots missed while the daemon was down"),
                "{detail}"
            );
            assert!(matches!(
                due(&skip, last, down, now),
                Due::NotDue { next: Some(t), .. } if t == ts("2026-05-10T06:00:00Z")
            ));
            assert!(matches!(
                due(&skip, last, down, ts("2026-05-10T06:00:00Z")),
                Due::Due { .. }
            ));
            // Without a downtime, or once the lane ran after it, nothing was missed.
            assert_eq!(missed_slots(&skip, last, None), 0);
            assert_eq!(missed_slots(&skip, Some(now), down), 0);
        }
    }

    /// A slot that fell while a daemon still ran (the lane was held back) is owed by `skip`
    /// too: only slots inside the downtime are skipped.
    #[test]
    fn skip_still_owes_a_slot_from_before_the_downtime() {
        let (cron, utc) = (hourly(), TimeZone::UTC);
        let skip = Timing {
            catch_up: CatchUp::Skip,
            ..Timing::plain(&cron, &utc)
        };
        let down = Some(Downtime {
            from: ts("2026-05-10T01:30:00Z"),
            to: ts("2026-05-10T05:30:00Z"),
        });
        let last = Some(ts("2026-05-10T00:00:00Z"));
        assert_eq!(missed_slots(&skip, last, down), 4);
        assert!(matches!(
            due(&skip, last, down, ts("2026-05-10T05:30:00Z")),
            Due::Due { .. }
        ));
    }

    #[test]
    fn jitter_delays_every_slot_by_the_offset_and_no_more() {
        let (cron, utc) = (hourly(), TimeZone::UTC);
        let t = Timing {
            offset: Duration::from_secs(90),
            ..Timing::plain(&cron, &utc)
        };
        // Ran at its jittered 01:01:30; next due at 02:01:30.
        let last = Some(ts("2026-05-10T01:01:30Z"));
        assert_eq!(next_due(&t, last, None), Some(ts("2026-05-10T02:01:30Z")));
        assert!(matches!(
            due(&t, last, None, ts("2026-05-10T02:01:29Z")),
            Due::NotDue { .. }
        ));
        assert!(matches!(
            due(&t, last, None, ts("2026-05-10T02:01:30Z")),
            Due::Due { .. }
        ));
    }

    #[test]
    fn never_run_is_due_and_disabled_is_never_due() {
        let every = Schedule::Every(Duration::from_secs(60));
        assert!(matches!(
            due(&Timing::plain(&every, &TimeZone::UTC), None, None, at(0)),
            Due::Due { .. }
        ));
        assert_eq!(
            due(
                &Timing::plain(&Schedule::Disabled, &TimeZone::UTC),
                None,
                None,
                at(0)
            ),
            Due::Disabled
        );
        assert_eq!(
            next_due(
                &Timing::plain(&every, &TimeZone::UTC),
                Some(at(1_000)),
                None
            ),
            Some(at(61_000))
        );
    }

    #[test]
    fn an_interval_beyond_the_last_timestamp_is_due_at_the_end_of_time() {
        let every = Schedule::Every(Duration::from_secs(u64::MAX / 2));
        assert_eq!(
            next_due(
                &Timing::plain(&every, &TimeZone::UTC),
                Some(at(1_000)),
                None
            ),
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
            due(&Timing::plain(&every, &TimeZone::UTC), Some(at(1_000)), None, at(2_000)),
            Due::NotDue { next: Some(t), .. } if t == Timestamp::MAX
        ));
    }
}
