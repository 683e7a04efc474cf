//! The daemon's log of decisions: one line per *change* of a lane's decision, not per pass.
//! A deferral is logged when it starts, again only when its reason changes, and once when it
//! ends; the original platform flooded its log otherwise. (The store keeps every decision; this
//! only keeps the log readable.)

use std::collections::HashMap;

use crate::engine::{Decision, Outcome, PAUSE_GATE};

#[derive(Clone, PartialEq, Eq)]
struct Key {
    outcome: Outcome,
    reason: Option<String>,
    gate: Option<String>,
}

fn key(d: &Decision) -> Key {
    // Trigger reasons carry counters (starvation, retry streaks); the source is what matters.
    let reason = match d.outcome {
        Outcome::Trigger => d.source.map(|s| s.as_str().to_string()),
        _ => d.reason.clone(),
    };
    Key {
        outcome: d.outcome,
        reason,
        gate: d.gate.clone(),
    }
}

/// The last decision recorded per lane.
#[derive(Default)]
pub struct Changelog {
    last: HashMap<String, (Key, bool)>,
}

impl Changelog {
    /// Logs each decision that differs from its lane's previous one.
    pub fn log_changes(&mut self, decisions: &[Decision]) {
        for d in decisions {
            let k = key(d);
            let held = d.is_held();
            let prev = self.last.get(&d.lane);
            if prev.is_some_and(|(p, _)| *p == k) {
                continue;
            }
            let was_held = prev.is_some_and(|(_, h)| *h);
            let reason = d.reason.as_deref().unwrap_or("-");
            let detail = d.detail.as_deref().unwrap_or("");
            match (was_held, held) {
                (false, true) => {
                    tracing::info!(lane = %d.lane, reason, gate = d.gate.as_deref().unwrap_or("-"), detail, "Deferral started.")
                }
                (true, true) => {
                    tracing::info!(lane = %d.lane, reason, gate = d.gate.as_deref().unwrap_or("-"), detail, "Deferral reason changed.")
                }
                (true, false) => {
                    tracing::info!(lane = %d.lane, outcome = d.outcome.as_str(), "Deferral ended.")
                }
                (false, false) if d.outcome == Outcome::Disabled => {
                    tracing::info!(lane = %d.lane, "Lane is disabled.")
                }
                (_, false) if d.gate.as_deref() == Some(PAUSE_GATE) => {
                    tracing::info!(lane = %d.lane, detail, "Lane is paused.")
                }
                (false, false) => {}
            }
            self.last.insert(d.lane.clone(), (k, held));
        }
    }
}
