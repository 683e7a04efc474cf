//! The daemon's wake rule, pure: after a pass, the earliest moment at which any decision could
//! change without an event (a child exiting, a file edit, a signal). The daemon sleeps until
//! then, and a simulation jumps there, so both wake at exactly the same instants.

use std::time::Duration;

use jiff::Timestamp;

use super::schedule::{Timing, next_due, retry_at};
use crate::clock::later;
use crate::compile::Lane;
use crate::model::decision::{Decision, Outcome, PAUSE_GATE, SCHEDULE_GATE};
use crate::model::lane_state::LaneStates;

/// The longest the daemon sleeps without a reason, as a guard against clock jumps: a
/// simulation wakes at least this often too, so both make the same passes.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// When a pass's decisions could next change by themselves:
/// - a lane not due yet, when it becomes due (or its failed run's retry does);
/// - a due lane held back by a gate, after its `recheck`;
/// - a paused lane, when its pause ends by itself (`until`); a resume is an event;
/// - a trigger or a disabled lane, never (a trigger changes through the run it starts, which
///   is an event).
///
/// `None` when nothing would change without an event.
pub fn next_wake(
    decisions: &[Decision],
    lanes: &[Lane],
    states: &LaneStates,
    now: Timestamp,
) -> Option<Timestamp> {
    let by_name: std::collections::HashMap<&str, &Lane> =
        lanes.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut wake: Option<Timestamp> = None;
    for d in decisions {
        let Some(lane) = by_name.get(d.lane.as_str()) else {
            continue;
        };
        let state = states.get(&d.lane).cloned().unwrap_or_default();
        let candidates = match d.outcome {
            Outcome::Disabled | Outcome::Trigger => [None, None],
            Outcome::Deferred if d.gate.as_deref() == Some(SCHEDULE_GATE) => [
                next_due(&Timing::of(lane), state.last_run_at, state.downtime),
                // A retry already past is over (else the lane would be due): its window
                // closed while a gate held the lane back.
                retry_at(lane.retry, &state).filter(|t| *t > now),
            ],
            Outcome::Deferred if d.gate.as_deref() == Some(PAUSE_GATE) => {
                [state.pause.as_ref().and_then(|p| p.until), None]
            }
            Outcome::Deferred => [Some(later(now, lane.recheck)), None],
        };
        for t in candidates.into_iter().flatten() {
            let t = t.max(now);
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
    }
    wake
}
