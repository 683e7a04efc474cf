//! Noticing that a failed lane's retries are used up, so the daemon can say so once per failure
//! streak: the engine only stops retrying, which on its own is silent.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::compile::Lane;
use crate::engine::schedule::{retry_at, retry_due};
use crate::state::{LaneState, LaneStates, RunResult};

/// A failure streak whose retries are used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// The lane.
    pub lane: String,
    /// When its failure streak began (it identifies the streak).
    pub failing_since: Timestamp,
    /// The lane's retry window.
    pub window: Duration,
}

/// The failure streaks already reported, by lane.
#[derive(Debug, Default)]
pub struct Retries {
    reported: HashMap<String, Timestamp>,
}

impl Retries {
    /// The lanes whose retries are used up and were not reported yet: each streak once.
    pub fn newly_exhausted(
        &mut self,
        lanes: &[Lane],
        states: &LaneStates,
        now: Timestamp,
    ) -> Vec<Exhausted> {
        let mut out = Vec::new();
        for lane in lanes {
            let Some(state) = states.get(&lane.name) else {
                continue;
            };
            let Some(e) = exhausted(lane, state, now) else {
                continue;
            };
            if self.reported.get(&lane.name) != Some(&e.failing_since) {
                self.reported.insert(lane.name.clone(), e.failing_since);
                out.push(e);
            }
        }
        out
    }
}

/// Whether no retry will be made any more in the lane's current failure streak: the last run
/// failed, and neither is a retry due now nor will one become due (the engine's own rule).
fn exhausted(lane: &Lane, state: &LaneState, now: Timestamp) -> Option<Exhausted> {
    let retry = lane.retry?;
    // The results the engine retries (engine::schedule::retry_due).
    let failed = matches!(
        state.last_result,
        Some(RunResult::Failure | RunResult::Interrupted)
    );
    if !failed || state.running.is_some() {
        return None;
    }
    // No streak start, no retries either (and nothing to tell one streak from the next).
    let failing_since = state.failure_since?;
    let pending = retry_due(Some(retry), state, now).is_some()
        || retry_at(Some(retry), state).is_some_and(|at| at > now);
    (!pending).then(|| Exhausted {
        lane: lane.name.clone(),
        failing_since,
        window: retry.window,
    })
}
