//! The status report: what each lane did last, what it is doing, when it is next due, and its
//! current episode. `lanekeeper status --json` and the daemon's `/status` serve the same value.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::compile::Lane;
use crate::config::Schedule;
use crate::engine::calendar::next_allowed;
use crate::model::duration::format;
use crate::state::{
    Episode, EpisodeSummary, ExitInfo, LaneState, LaneStates, ReloadStatus, RunResult, Store,
    StoreError,
};

/// A run in progress.
#[derive(Debug, Serialize)]
pub struct Running {
    /// The child's pid.
    pub pid: u32,
    /// When it started.
    pub started_at: Timestamp,
}

/// The lane's current due-and-deferred streak.
#[derive(Debug, Serialize)]
pub struct Deferral {
    /// Its reason.
    pub reason: Option<String>,
    /// Since when.
    pub since: Timestamp,
}

/// One lane's status.
#[derive(Debug, Serialize)]
pub struct LaneStatus {
    /// The lane.
    pub lane: String,
    /// Its label.
    pub label: String,
    /// `every 24h`, `cron …` or `off`.
    pub schedule: String,
    /// Last run start.
    pub last_run_at: Option<Timestamp>,
    /// Last run result.
    pub last_result: Option<RunResult>,
    /// Last exit code or signal.
    pub last_exit: Option<ExitInfo>,
    /// Last success.
    pub last_success_at: Option<Timestamp>,
    /// The run in progress.
    pub running: Option<Running>,
    /// When it is (or was) next due, as its window gates allow (the calendar's); `None` if
    /// disabled, or never run and free to run now.
    pub next_due_at: Option<Timestamp>,
    /// The current deferral streak.
    pub deferral: Option<Deferral>,
    /// The current episode.
    pub episode: Option<EpisodeSummary>,
    /// Who stopped the last run, when it was `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// The operator's pause in force: note, who, when, until.
    pub paused: Option<crate::state::Pause>,
    /// The problems of the lane's file when it currently fails validation (a running daemon
    /// keeps the last good version of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// A cron schedule that matches no time from now on: the lane is never due.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub never_fires: bool,
}

/// The schedule shown for a lane whose file does not load.
pub const UNKNOWN_SCHEDULE: &str = "unknown";

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// When it was made.
    pub at: Timestamp,
    /// Every lane.
    pub lanes: Vec<LaneStatus>,
    /// The daemon's last configuration reload, if any.
    pub reload: Option<ReloadStatus>,
    /// On a store that replicas share, the leader's lease (live or lapsed), as the database
    /// tells any replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<crate::state::LeaderView>,
}

/// `every 24h`, `cron 0 3 * * *`, `off`.
pub fn describe(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Every(d) => format!("every {}", format(*d)),
        Schedule::Cron { expr, .. } => format!("cron {expr}"),
        Schedule::Disabled => "off".into(),
    }
}

fn lane_status(
    lane: &Lane,
    state: LaneState,
    episode: Option<Episode>,
    now: Timestamp,
) -> LaneStatus {
    let mut status = recorded(
        &lane.name,
        &lane.label,
        describe(&lane.schedule),
        next_allowed(lane, &state, now),
        state,
        episode,
    );
    status.never_fires = lane.schedule.never_fires(&lane.zone, now);
    status
}

fn recorded(
    name: &str,
    label: &str,
    schedule: String,
    next_due_at: Option<Timestamp>,
    state: LaneState,
    episode: Option<Episode>,
) -> LaneStatus {
    LaneStatus {
        lane: name.to_string(),
        label: label.to_string(),
        schedule,
        next_due_at,
        last_run_at: state.last_run_at,
        last_result: state.last_result,
        last_exit: state.last_exit,
        last_success_at: state.last_success_at,
        running: state.running.map(|r| Running {
            pid: r.pid,
            started_at: r.started_at,
        }),
        deferral: state.deferral_since.map(|since| Deferral {
            reason: state.deferral_reason,
            since,
        }),
        episode: episode.as_ref().map(Episode::summary),
        paused: state.pause,
        stopped_by: None,
        config_error: None,
        never_fires: false,
    }
}

/// Builds the report for `lanes` from states already checked for liveness.
pub fn build(
    lanes: &[Lane],
    states: LaneStates,
    store: &dyn Store,
    now: Timestamp,
) -> Result<Status, StoreError> {
    build_with_invalid(lanes, &BTreeMap::new(), states, store, now)
}

/// [`build`], also marking the lanes whose file fails validation (`invalid`: lane name → its
/// problems) and listing those that did not load at all with what the store recorded, so a
/// half-done edit hides no lane.
pub fn build_with_invalid(
    lanes: &[Lane],
    invalid: &BTreeMap<String, String>,
    mut states: LaneStates,
    store: &dyn Store,
    now: Timestamp,
) -> Result<Status, StoreError> {
    let reload = store.last_reload()?;
    let mut out = Vec::with_capacity(lanes.len() + invalid.len());
    for lane in lanes {
        let episode = store.episode_at(&lane.name, now)?;
        let mut status = lane_status(
            lane,
            states.remove(&lane.name).unwrap_or_default(),
            episode,
            now,
        );
        status.paused = status.paused.take().filter(|p| p.in_force(now));
        if status.last_result == Some(RunResult::Cancelled) {
            status.stopped_by = store
                .recent_runs(&lane.name, 1)?
                .into_iter()
                .next()
                .and_then(|r| r.stopped_by);
        }
        status.config_error = invalid.get(&lane.name).cloned();
        out.push(status);
    }
    for (name, error) in invalid {
        if lanes.iter().any(|l| &l.name == name) {
            continue;
        }
        let episode = store.episode_at(name, now)?;
        let mut status = recorded(
            name,
            name,
            UNKNOWN_SCHEDULE.to_string(),
            None,
            states.remove(name).unwrap_or_default(),
            episode,
        );
        status.paused = status.paused.take().filter(|p| p.in_force(now));
        status.config_error = Some(error.clone());
        out.push(status);
    }
    out.sort_by(|a, b| a.lane.cmp(&b.lane));
    Ok(Status {
        at: now,
        lanes: out,
        reload,
        leader: store.leader()?,
    })
}
