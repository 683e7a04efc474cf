//! The lint inside `validate`: rules that load but cannot do what their author meant.
//!
//! Each finding is a warning at the place it concerns, with a fix; `validate --strict` makes
//! them errors. Findings about time (cron slots, DST gaps) look ahead a year from `now`.
//! Whether a gate always defers is found by running the lane's chain through the engine under
//! the best conditions lanekeeper can pretend (every probe up, every metric 0, every lane that
//! is on just succeeded, nothing running), at every half hour of a week: a gate that defers
//! even then defers always.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::compile::{Config, Lane};
use crate::config::{Diagnostic, Diagnostics, Schedule};
use crate::engine;
use crate::model::decision::GateVerdict;
use crate::model::duration::format;
use crate::model::lane_state::{LaneState, LaneStates};
use crate::model::observer::Canned;

/// The rules, by the name a finding carries.
pub const RULES: [&str; 8] = [
    "cron-outside-window",
    "hard-gate-on-off-lane",
    "soft-without-max-deferral",
    "max-deferral-below-recheck",
    "retry-window-below-delay",
    "window-in-dst-gap",
    "gate-after-always-deferring-gate",
    "group-starves-priority",
];

/// Cron slots looked at per lane.
const SLOTS: usize = 500;
/// The pretend week is sampled every this often.
const SAMPLE_EVERY_MINUTES: i64 = 30;

/// Every finding for `config`, looking ahead from `now`.
pub fn lint(config: &Config, now: Timestamp) -> Diagnostics {
    let mut out = Diagnostics::default();
    for lane in &config.lanes {
        settings_rules(lane, &mut out);
        cron_outside_window(lane, now, &mut out);
        window_in_dst_gap(lane, now, &mut out);
        always_deferring_gates(config, lane, now, &mut out);
    }
    group_starves_priority(config, &mut out);
    out
}

fn finding(lane: &Lane, at: serde_saphyr::Location, message: String) -> Diagnostic {
    let d = if at == serde_saphyr::Location::UNKNOWN {
        Diagnostic::file(&lane.file, message)
    } else {
        Diagnostic::yaml(&lane.file, at, message)
    };
    d.for_lane(&lane.name)
}

/// `soft` with nothing to waive it, a guard shorter than a recheck, a retry window shorter
/// than its delay.
fn settings_rules(lane: &Lane, out: &mut Diagnostics) {
    if lane.max_deferral.is_none() {
        for g in lane.gates.iter().filter(|g| g.soft) {
            out.push(
                finding(
                    lane,
                    g.at,
                    format!(
                        "gate `{}` is `soft: true`, but the lane has no `max_deferral`, so nothing ever waives it",
                        g.name
                    ),
                )
                .lint(
                    "soft-without-max-deferral",
                    "add `max_deferral:` to the lane (e.g. 12h), or drop `soft: true`",
                ),
            );
        }
    }
    if let Some(max) = lane.max_deferral
        && max < lane.recheck
    {
        out.push(
            finding(
                lane,
                lane.places.max_deferral.unwrap_or(lane.places.schedule),
                format!(
                    "max_deferral {} is shorter than recheck {}: the guard fires at the first recheck, so soft gates are waived at once",
                    format(max),
                    format(lane.recheck)
                ),
            )
            .lint(
                "max-deferral-below-recheck",
                format!(
                    "make max_deferral longer than {} or recheck shorter",
                    format(lane.recheck)
                ),
            ),
        );
    }
    if let Some(retry) = lane.retry
        && retry.window < retry.delay
    {
        out.push(
            finding(
                lane,
                lane.places.retry_window.unwrap_or(lane.places.schedule),
                format!(
                    "retry.window {} is shorter than retry.delay {}: the streak is too old by the time a retry is due, so the lane never retries",
                    format(retry.window),
                    format(retry.delay)
                ),
            )
            .lint(
                "retry-window-below-delay",
                format!(
                    "make retry.window at least {} (a multiple of the delay allows that many retries)",
                    format(retry.delay)
                ),
            ),
        );
    }
}

/// Whether minute-of-day `m` is in `window` (start inclusive, end exclusive, may wrap).
fn in_window(m: u32, (start, end): (u32, u32)) -> bool {
    if start < end {
        (start..end).contains(&m)
    } else {
        m >= start || m < end
    }
}

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn window_text((start, end): (u32, u32)) -> String {
    format!("{}-{}", hhmm(start), hhmm(end))
}

/// A cron lane whose slots never fall inside the windows its gates name: every run waits for
/// the window, hours after its slot.
fn cron_outside_window(lane: &Lane, now: Timestamp, out: &mut Diagnostics) {
    let Schedule::Cron { expr, cron } = &lane.schedule else {
        return;
    };
    let windows: Vec<(&str, (u32, u32))> = lane
        .gates
        .iter()
        .flat_map(|g| g.windows.iter().map(move |w| (g.name.as_str(), *w)))
        .collect();
    let Some(&(gate, window)) = windows.first() else {
        return;
    };
    let mut from = now.to_zoned(lane.zone.clone());
    let mut seen = 0;
    for _ in 0..SLOTS {
        let Ok(next) = crate::config::cron::next(cron, &from) else {
            break;
        };
        if next.timestamp() > now.saturating_add((366 * 24).hours()).unwrap_or(now) {
            break;
        }
        seen += 1;
        // The lane starts at its slot plus its jitter on this host.
        let starts =
            crate::clock::later(next.timestamp(), lane.jitter_offset).to_zoned(lane.zone.clone());
        let m = u32::from(starts.hour().unsigned_abs()) * 60
            + u32::from(starts.minute().unsigned_abs());
        if windows.iter().all(|(_, w)| in_window(m, *w)) {
            return;
        }
        from = next;
    }
    if seen == 0 {
        return; // a cron that never fires is an error of its own
    }
    out.push(
        finding(
            lane,
            lane.places.schedule,
            format!(
                "no slot of cron `{expr}` ({}) falls inside the window {} of gate `{gate}`: every run waits for the window, hours after its slot",
                lane.zone.iana_name().unwrap_or("UTC"),
                window_text(window)
            ),
        )
        .lint(
            "cron-outside-window",
            format!(
                "move the slots into {} (e.g. `{} {} * * *`), or use `every:`",
                window_text(window),
                window.0 % 60,
                window.0 / 60
            ),
        ),
    );
}

/// A window that lies wholly in a daylight-saving gap of the lane's zone: on that day it does
/// not occur at all.
fn window_in_dst_gap(lane: &Lane, now: Timestamp, out: &mut Diagnostics) {
    let until = now.saturating_add((366 * 24).hours()).unwrap_or(now);
    for g in &lane.gates {
        for &window in &g.windows {
            if let Some((day, gap)) = dst_gap_holding(&lane.zone, now, until, window) {
                out.push(
                    finding(
                        lane,
                        g.at,
                        format!(
                            "the window {} of gate `{}` falls inside the daylight-saving gap of {} on {day} (local time skips {}), so that day it never opens",
                            window_text(window),
                            g.name,
                            lane.zone.iana_name().unwrap_or("its zone"),
                            window_text(gap)
                        ),
                    )
                    .lint(
                        "window-in-dst-gap",
                        "widen the window past the gap, or move it out of it",
                    ),
                );
            }
        }
    }
}

/// The first gap (local minutes skipped) between `from` and `until` that holds all of `window`.
fn dst_gap_holding(
    zone: &TimeZone,
    from: Timestamp,
    until: Timestamp,
    window: (u32, u32),
) -> Option<(jiff::civil::Date, (u32, u32))> {
    let (start, end) = window;
    if start >= end {
        return None; // a window across midnight is longer than any gap
    }
    for t in zone.following(from) {
        let at = t.timestamp();
        if at > until {
            break;
        }
        let before = zone.to_offset(at.checked_sub(1.second()).ok()?);
        let jump = t.offset().seconds() - before.seconds();
        if jump <= 0 {
            continue; // a fold, not a gap
        }
        let local = at.to_zoned(TimeZone::fixed(before));
        let gap_start =
            u32::from(local.hour().unsigned_abs()) * 60 + u32::from(local.minute().unsigned_abs());
        let gap_end = gap_start + jump.unsigned_abs() / 60;
        if start >= gap_start && end <= gap_end {
            return Some((local.date(), (gap_start, gap_end)));
        }
    }
    None
}

/// Runs `lane` through the engine under the best conditions at every half hour of a week and
/// reports a hard gate that defers every time: one that reads a lane which is off, and every
/// gate after it (never reached).
fn always_deferring_gates(config: &Config, lane: &Lane, now: Timestamp, out: &mut Diagnostics) {
    if lane.gates.is_empty() || matches!(lane.schedule, Schedule::Disabled) {
        return;
    }
    let fresh = now.checked_sub(1.minute()).unwrap_or(now);
    // Every lane it may read has just succeeded, unless it is off: a lane whose file failed
    // to load is given the benefit of the doubt (that file has its own error).
    let states: LaneStates = lane
        .gates
        .iter()
        .flat_map(|g| g.reads.iter())
        .chain(config.lanes.iter().map(|l| &l.name))
        .filter(|name| {
            **name != lane.name
                && config
                    .lane(name)
                    .is_none_or(|l| !matches!(l.schedule, Schedule::Disabled))
        })
        .map(|name| {
            (
                name.clone(),
                LaneState {
                    last_run_at: Some(fresh),
                    last_success_at: Some(fresh),
                    last_ended_at: Some(fresh),
                    ..LaneState::default()
                },
            )
        })
        .collect();
    let states = Arc::new(states);
    let observer = Arc::new(Canned::up());
    // For each gate: every sampled time it deferred, and a reason it gave.
    let mut deferred: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    let samples = 7 * 24 * 60 / SAMPLE_EVERY_MINUTES;
    for k in 0..samples {
        let Ok(at) = now.checked_add((k * SAMPLE_EVERY_MINUTES).minutes()) else {
            break;
        };
        let decisions = engine::pass(
            &[lane],
            Arc::clone(&states),
            at,
            observer.clone(),
            &config.settings,
            Some(&lane.name),
        );
        let Some(d) = decisions.first() else { return };
        // The chain's first entry is the schedule gate.
        for (i, entry) in d.chain.iter().skip(1).enumerate() {
            if entry.verdict == GateVerdict::Defer {
                let e = deferred.entry(i).or_insert((0, String::new()));
                e.0 += 1;
                if e.1.is_empty() {
                    e.1 = entry
                        .detail
                        .clone()
                        .or(entry.reason.clone())
                        .unwrap_or_default();
                }
            }
        }
    }
    let always = deferred
        .iter()
        .filter(|(i, (n, _))| *n as i64 == samples && !lane.gates[**i].soft)
        .map(|(i, (_, why))| (*i, why.clone()))
        .next();
    let Some((i, why)) = always else { return };
    let gate = &lane.gates[i];
    let off: Vec<&str> = gate
        .reads
        .iter()
        .filter(|r| {
            config
                .lane(r)
                .is_some_and(|l| matches!(l.schedule, Schedule::Disabled))
        })
        .map(String::as_str)
        .collect();
    if let Some(first) = off.first() {
        out.push(
            finding(
                lane,
                gate.at,
                format!(
                    "hard gate `{}` reads lane `{first}`, which is off, and so defers always ({why})",
                    gate.name
                ),
            )
            .lint(
                "hard-gate-on-off-lane",
                format!(
                    "turn `{first}` back on, make the gate `soft: true` with a `max_deferral`, or remove it"
                ),
            ),
        );
    }
    for later in &lane.gates[i + 1..] {
        out.push(
            finding(
                lane,
                later.at,
                format!(
                    "gate `{}` is never reached: hard gate `{}` before it defers even with every probe up, every metric at 0 and every lane fresh ({why})",
                    later.name, gate.name
                ),
            )
            .lint(
                "gate-after-always-deferring-gate",
                format!("fix or remove gate `{}`", gate.name),
            ),
        );
    }
}

/// How long a lane can wait for its group before it is late: its `max_deferral`, else its
/// interval. `None` when nothing says (a cron lane with no guard).
fn patience(lane: &Lane) -> Option<Duration> {
    lane.max_deferral.or(match lane.schedule {
        Schedule::Every(d) => Some(d),
        _ => None,
    })
}

/// In a group, a lane of lower priority whose runs can hold a slot longer than a
/// higher-priority lane can wait (no timeout, or timeout + grace beyond its patience), with
/// as many such lanes as the group has slots.
fn group_starves_priority(config: &Config, out: &mut Diagnostics) {
    let mut groups: BTreeMap<&str, Vec<&Lane>> = BTreeMap::new();
    for lane in config
        .lanes
        .iter()
        .filter(|l| !matches!(l.schedule, Schedule::Disabled))
    {
        if let Some(g) = &lane.group {
            groups.entry(g.as_str()).or_default().push(lane);
        }
    }
    for (group, lanes) in groups {
        let slots = config.settings.max_concurrent(group);
        for a in &lanes {
            let Some(wait) = patience(a) else { continue };
            let blockers: Vec<(&Lane, Option<Duration>)> = lanes
                .iter()
                .filter(|b| b.priority > a.priority)
                .map(|b| (*b, b.command.timeout.map(|t| t + b.command.grace)))
                .filter(|(_, hold)| hold.is_none_or(|h| h > wait))
                .collect();
            if blockers.len() < slots {
                continue;
            }
            let (b, hold) = blockers[0];
            let holds = match hold {
                Some(h) => format!("may take up to {} (timeout + grace)", format(h)),
                None => "have no timeout, so may hold the slot for ever".to_string(),
            };
            let waits = if a.max_deferral.is_some() {
                format!("its max_deferral {}", format(wait))
            } else {
                format!("its interval {}", format(wait))
            };
            out.push(
                finding(
                    a,
                    a.places.group.unwrap_or(a.places.schedule),
                    format!(
                        "lane `{}` (priority {}) can wait behind `{}` (priority {}) in group `{group}` (max_concurrent {slots}): `{}`'s runs {holds}, longer than {waits}",
                        a.name, a.priority, b.name, b.priority, b.name
                    ),
                )
                .lint(
                    "group-starves-priority",
                    format!(
                        "give `{}` a timeout shorter than {}, raise groups.{group}.max_concurrent, or move one of them to another group",
                        b.name,
                        format(wait)
                    ),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_midnight_start_inclusive_end_exclusive() {
        assert!(in_window(60, (60, 360)));
        assert!(!in_window(360, (60, 360)));
        assert!(in_window(23 * 60, (22 * 60, 2 * 60)));
        assert!(in_window(60, (22 * 60, 2 * 60)));
        assert!(!in_window(3 * 60, (22 * 60, 2 * 60)));
    }

    #[test]
    fn a_window_inside_berlins_spring_gap_is_found_and_one_across_it_is_not() {
        let zone = jiff::tz::db().get("Europe/Berlin").expect("zone");
        let from: Timestamp = "2027-01-01T00:00:00Z".parse().expect("ts");
        let until: Timestamp = "2027-12-31T00:00:00Z".parse().expect("ts");
        let found = dst_gap_holding(&zone, from, until, (2 * 60 + 10, 2 * 60 + 40));
        assert_eq!(
            found.map(|(d, g)| (d.to_string(), g)),
            Some(("2027-03-28".into(), (120, 180)))
        );
        assert_eq!(dst_gap_holding(&zone, from, until, (60, 360)), None);
        let utc = TimeZone::UTC;
        assert_eq!(dst_gap_holding(&utc, from, until, (130, 160)), None);
    }
}
