//! When lanes fire, as far as the rules alone can tell: the schedule's due times, moved to when
//! the gates known statically let them through. A gate is known statically when the plugin
//! declares `window`-typed parameters (the off-peak kind): it passes only inside those daily
//! windows, in the lane's zone. Every other gate depends on runtime state (probes, metrics,
//! other lanes) and is assumed to pass; callers flag it by name. A soft window gate is waived
//! once the lane has been held `max_deferral`, as the starvation guard would.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::schedule::{Timing, next_due};
use crate::clock::later;
use crate::compile::Lane;
use crate::config::Schedule;
use crate::model::lane_state::LaneState;

/// One fire time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// When the lane fires, as the windows allow.
    pub at: Timestamp,
    /// When the schedule made it due.
    pub due: Timestamp,
    /// The window gates that moved it from `due` (empty when it fires when due).
    pub moved_by: Vec<String>,
    /// The starvation guard waived a soft window gate.
    pub forced: bool,
}

/// The gates of `lane` that the calendar cannot foresee: assumed to pass.
pub fn assumed(lane: &Lane) -> Vec<String> {
    lane.gates
        .iter()
        .filter(|g| g.windows.is_empty())
        .map(|g| g.name.clone())
        .collect()
}

/// When the lane is next due by its schedule, not before `from`, had it last run at `last`
/// (`from` itself when it never ran); `None` when disabled or past the end of time.
fn due_after(lane: &Lane, last: Option<Timestamp>, from: Timestamp) -> Option<Timestamp> {
    match last {
        None if matches!(lane.schedule, Schedule::Disabled) => None,
        None => Some(from),
        Some(l) => next_due(&Timing::of(lane), Some(l), None).map(|t| t.max(from)),
    }
}

/// The next `count` due times by the schedule alone, from `from`, as if the lane ran at each:
/// the first is `from` itself when the lane never ran or is overdue.
pub fn schedule_fires(
    lane: &Lane,
    last_run: Option<Timestamp>,
    from: Timestamp,
    count: usize,
) -> Vec<Timestamp> {
    let mut out = Vec::with_capacity(count);
    let mut last = last_run;
    while out.len() < count {
        let Some(due) = due_after(lane, last, from) else {
            break;
        };
        if last.is_some_and(|l| due <= l) {
            break; // the end of time
        }
        out.push(due);
        last = Some(due);
    }
    out
}

/// The next `count` fire times as the window gates allow, from `from`, as if the lane ran at
/// each (so an `every:` lane counts its interval from the moved time, as the daemon would).
pub fn gated_fires(
    lane: &Lane,
    last_run: Option<Timestamp>,
    from: Timestamp,
    count: usize,
) -> Vec<Fire> {
    let mut out = Vec::with_capacity(count);
    let mut last = last_run;
    while out.len() < count {
        let Some(due) = due_after(lane, last, from) else {
            break;
        };
        let Some(fire) = allowed_from(lane, due, due) else {
            break;
        };
        if last.is_some_and(|l| fire.at <= l) {
            break;
        }
        last = Some(fire.at);
        out.push(fire);
    }
    out
}

/// When the lane is next due, as the window gates allow: what `status` shows as NEXT DUE.
/// `None` when it never ran (due at once) and may run now, or is disabled. A lane overdue and
/// allowed now keeps its due time (it shows as overdue); one overdue outside its window gets
/// the time its window lets it through.
pub fn next_allowed(lane: &Lane, state: &LaneState, now: Timestamp) -> Option<Timestamp> {
    let due = match state.last_run_at {
        None if matches!(lane.schedule, Schedule::Disabled) => return None,
        None => now,
        Some(last) => next_due(&Timing::of(lane), Some(last), state.downtime)?,
    };
    if due > now {
        return allowed_from(lane, due, due).map(|f| f.at);
    }
    let held_since = state.deferral_since.unwrap_or(now);
    let fire = allowed_from(lane, now, held_since)?;
    match (fire.at == now, state.last_run_at) {
        (true, None) => None,
        (true, Some(_)) => Some(due),
        (false, _) => Some(fire.at),
    }
}

/// The first instant at or after `t` at which every window gate passes, or the starvation
/// guard (counting from `held_since`) waives the soft ones that do not. `None` if the windows
/// never open together (searched for a year).
pub fn allowed_from(lane: &Lane, t: Timestamp, held_since: Timestamp) -> Option<Fire> {
    let due = t;
    let guard = lane.max_deferral.map(|m| later(held_since, m));
    let mut t = t;
    let mut moved_by: Vec<String> = Vec::new();
    let horizon = later(t, std::time::Duration::from_secs(366 * 86_400));
    while t <= horizon {
        let starving = guard.is_some_and(|g| t >= g);
        let mut next: Option<Timestamp> = None;
        let mut soft_closed = false;
        let mut blocked = false;
        for g in lane.gates.iter().filter(|g| !g.windows.is_empty()) {
            let closed: Vec<&(u32, u32)> = g
                .windows
                .iter()
                .filter(|w| !inside(**w, t, &lane.zone))
                .collect();
            if closed.is_empty() {
                continue;
            }
            if g.soft && starving {
                soft_closed = true;
                continue;
            }
            blocked = true;
            if !moved_by.contains(&g.name) {
                moved_by.push(g.name.clone());
            }
            for w in closed {
                let opens = opening_after(*w, t, &lane.zone)?;
                next = Some(next.map_or(opens, |n| n.min(opens)));
            }
        }
        if !blocked {
            return Some(Fire {
                at: t,
                due,
                moved_by,
                forced: soft_closed,
            });
        }
        if let Some(g) = guard.filter(|g| *g > t && lane.gates.iter().any(|b| b.soft)) {
            next = Some(next.map_or(g, |n| n.min(g)));
        }
        t = next?.max(later(t, std::time::Duration::from_millis(1)));
    }
    None
}

/// Whether local time at `t` in `zone` is inside `window` (minutes of the day, start inclusive,
/// end exclusive, wrapping midnight when start > end), as the off-peak plugin reads it.
fn inside((start, end): (u32, u32), t: Timestamp, zone: &TimeZone) -> bool {
    let local = t.to_zoned(zone.clone());
    let m =
        u32::try_from(local.hour()).unwrap_or(0) * 60 + u32::try_from(local.minute()).unwrap_or(0);
    if start < end {
        m >= start && m < end
    } else {
        m >= start || m < end
    }
}

/// The first time after `t` at which `window` opens (its start, local time, on the day of `t` or
/// a later one; a start in a DST gap opens when the gap ends).
fn opening_after((start, _): (u32, u32), t: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let mut day = t.to_zoned(zone.clone()).date();
    let (h, m) = (
        i8::try_from(start / 60).ok()?,
        i8::try_from(start % 60).ok()?,
    );
    for _ in 0..3 {
        let opens = day.at(h, m, 0, 0).to_zoned(zone.clone()).ok()?.timestamp();
        if opens > t {
            return Some(opens);
        }
        day = day.tomorrow().ok()?;
    }
    None
}
