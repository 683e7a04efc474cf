//! What is recorded about each lane, as plain data: the engine and plugins read it, the store
//! keeps it, and neither needs to know about the other.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Exit code 0.
    Success,
    /// Non-zero exit, a signal, a timeout or a spawn failure.
    Failure,
    /// lanekeeper lost track of the child (it died with its supervisor, or the host rebooted).
    Interrupted,
    /// An adopted child ended, but not as our child, so its exit code cannot be known.
    Unknown,
    /// Stopped by an operator (`lanekeeper stop`): neither a success nor a failure, so it
    /// is never retried.
    Cancelled,
}

impl RunResult {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Interrupted => "interrupted",
            RunResult::Unknown => "unknown",
            RunResult::Cancelled => "cancelled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(RunResult::Success),
            "failure" => Some(RunResult::Failure),
            "interrupted" => Some(RunResult::Interrupted),
            "unknown" => Some(RunResult::Unknown),
            "cancelled" => Some(RunResult::Cancelled),
            _ => None,
        }
    }
}

/// How a child process ended, as the OS reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitInfo {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitInfo::Code(c) => write!(f, "exit {c}"),
            ExitInfo::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// A run in progress, as recorded when its child started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRun {
    /// The run's row id.
    pub run_id: i64,
    /// The child's pid.
    pub pid: u32,
    /// The child's start time in clock ticks since boot, so a reused pid is never mistaken for it.
    pub pid_start: u64,
    /// When the run started.
    pub started_at: Timestamp,
    /// The run's supervisor (pid and start time), which holds the lane's lock and records the
    /// outcome; `None` for runs recorded before runs had their own supervisor.
    #[serde(default)]
    pub supervisor: Option<(u32, u64)>,
}

impl RunningRun {
    /// Whether the run is still going: its command, or its supervisor finishing it, lives.
    pub fn is_alive(&self, alive: impl Fn(u32, u64) -> bool) -> bool {
        alive(self.pid, self.pid_start) || self.supervisor.is_some_and(|(p, s)| alive(p, s))
    }
}

/// Everything recorded about one lane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneState {
    /// When the command was last started (the due rule counts from here).
    pub last_run_at: Option<Timestamp>,
    /// When a run last succeeded.
    pub last_success_at: Option<Timestamp>,
    /// The result of the last finished run.
    pub last_result: Option<RunResult>,
    /// The exit code or signal of the last finished run.
    pub last_exit: Option<ExitInfo>,
    /// The run in progress, if its process is alive.
    pub running: Option<RunningRun>,
    /// Since when the lane has been due and deferred without a break.
    pub deferral_since: Option<Timestamp>,
    /// The reason of the current deferral streak.
    pub deferral_reason: Option<String>,
    /// Since when runs have been failing without a success in between (for `retry`).
    pub failure_since: Option<Timestamp>,
    /// When the last run ended.
    pub last_ended_at: Option<Timestamp>,
    /// The operator's pause in force (`lanekeeper pause`), if any; the engine ignores one
    /// whose `until` has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// The home's last downtime (no daemon deciding), the same for every lane: the due rule
    /// counts the slots that fell in it and `catch_up` says what they owe. Not a lane's own
    /// record, so not serialized.
    #[serde(default, skip)]
    pub downtime: Option<Downtime>,
    /// The replicas alive now (seen within the lease TTL on a shared store; this one alone
    /// otherwise), the same for every lane: `hosts:` needs one of them. `None` when nobody
    /// asked (simulations, past instants): then `hosts:` holds nothing back. Not recorded.
    #[serde(default, skip)]
    pub alive_hosts: Option<std::sync::Arc<[String]>>,
    /// Not recorded: set within a pass for a lane that an earlier decision of the same pass
    /// dispatches, so later lanes see it as running.
    #[serde(default, skip)]
    pub starting: bool,
}

impl LaneState {
    /// Running now, or starting in this pass.
    pub fn is_running(&self) -> bool {
        self.running.is_some() || self.starting
    }
}

/// A lane held back by an operator, with a note for colleagues: it defers with `paused` until
/// resumed, or until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Why, for whoever finds the lane paused.
    pub note: String,
    /// Who paused it (user name, or `uid N`).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// When it ends by itself, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl Pause {
    /// Whether it still holds at `now`: an expired pause is none, whether or not its end has
    /// been recorded yet.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// A stretch of time no daemon decided on the home: from its last pass (or its shutdown) to
/// the start of the next one. Slots inside it were missed, not deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downtime {
    /// The last moment a daemon was seen deciding.
    pub from: Timestamp,
    /// When the next daemon started (exclusive: a slot at this instant is its to run).
    pub to: Timestamp,
}

/// Every lane's recorded state, by lane name.
pub type LaneStates = BTreeMap<String, LaneState>;
