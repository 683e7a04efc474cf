//! What a simulation found, lane by lane: its triggers, its deferral episodes and its runs.
//! `simulate --json` prints this; the text view is drawn from it at the command line, and the
//! web endpoint reads it back to draw a published one (`/simulation`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::decision::TriggerSource;
use crate::model::lane_state::RunResult;

/// The whole simulation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The first instant simulated.
    pub from: Timestamp,
    /// The end (exclusive).
    pub to: Timestamp,
    /// `wake-rule` (the daemon's), or the fixed step (`5m`).
    pub stepping: String,
    /// Evaluation passes made.
    pub passes: u64,
    /// Every lane, by name.
    pub lanes: Vec<LaneReport>,
}

/// One lane's timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaneReport {
    /// The lane.
    pub lane: String,
    /// Its zone (IANA name), in which its text timeline is shown.
    pub zone: String,
    /// How long its runs were taken to last.
    pub run_length: String,
    /// Why that long: `given`, `median of N recorded runs`, `timeout`.
    pub run_length_basis: String,
    /// Every trigger, in order.
    pub triggers: Vec<Trigger>,
    /// Every deferral episode (due and held back by a gate), in order.
    pub deferrals: Vec<Deferral>,
    /// Every run, in order of start.
    pub runs: Vec<Run>,
}

/// A trigger: the lane was dispatched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trigger {
    /// When.
    pub at: Timestamp,
    /// Why (docs/DESIGN.md §4).
    pub source: TriggerSource,
    /// The trigger reason.
    pub reason: String,
    /// The starvation guard waived soft gates.
    pub forced: bool,
}

/// Consecutive passes that held the lane back for the same reason at the same gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deferral {
    /// The first pass that held it.
    pub from: Timestamp,
    /// The first pass that did not; `None` when it still held at the end.
    pub to: Option<Timestamp>,
    /// The deferral reason.
    pub reason: String,
    /// The gate that gave it.
    pub gate: String,
    /// The first pass's detail.
    pub detail: String,
    /// How many passes it spans.
    pub checks: u64,
}

/// A simulated run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended; `None` when it was still running at the end.
    pub ended_at: Option<Timestamp>,
    /// How it ended.
    pub result: Option<RunResult>,
    /// Ended by its lane's `timeout`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

impl LaneReport {
    /// How many triggers were forced by the starvation guard.
    pub fn forced(&self) -> usize {
        self.triggers.iter().filter(|t| t.forced).count()
    }

    /// How many runs failed.
    pub fn failed(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| matches!(r.result, Some(RunResult::Failure)))
            .count()
    }
}
