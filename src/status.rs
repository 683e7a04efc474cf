//! The status report: what each lane did last, what it is doing, when it is next due, and its
//! current episode. `lanekeeper status --json` and the daemon's `/status` serve the same value.

use jiff::Timestamp;
use serde::Serialize;

use crate::config::duration::format;
use crate::config::{Lane, Schedule};
use crate::daemon::{RELOAD_KEY, ReloadStatus};
use crate::engine::schedule::next_due;
use crate::state::{
    Episode, EpisodeSummary, ExitInfo, LaneState, LaneStates, RunResult, Store, StoreError,
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
    /// When it is (or was) next due; `None` if never run or disabled.
    pub next_due_at: Option<Timestamp>,
    /// The current deferral streak.
    pub deferral: Option<Deferral>,
    /// The current episode.
    pub episode: Option<EpisodeSummary>,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// When it was made.
    pub at: Timestamp,
    /// Every lane.
    pub lanes: Vec<LaneStatus>,
    /// The daemon's last configuration reload, if any.
    pub reload: Option<ReloadStatus>,
}

/// `every 24h`, `cron 0 3 * * *`, `off`.
pub fn describe(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Every(d) => format!("every {}", format(*d)),
        Schedule::Cron { expr, .. } => format!("cron {expr}"),
        Schedule::Disabled => "off".into(),
    }
}

fn lane_status(lane: &Lane, state: LaneState, episode: Option<Episode>) -> LaneStatus {
    LaneStatus {
        lane: lane.name.clone(),
        label: lane.label.clone(),
        schedule: describe(&lane.schedule),
        next_due_at: next_due(&lane.schedule, &lane.zone, state.last_run_at),
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
    }
}

/// Builds the report for `lanes` from states already checked for liveness.
pub fn build(
    lanes: &[Lane],
    mut states: LaneStates,
    store: &dyn Store,
    now: Timestamp,
) -> Result<Status, StoreError> {
    let reload = store
        .meta(RELOAD_KEY)?
        .and_then(|json| serde_json::from_str::<ReloadStatus>(&json).ok());
    let mut out = Vec::with_capacity(lanes.len());
    for lane in lanes {
        let episode = store.episode_at(&lane.name, now)?;
        out.push(lane_status(
            lane,
            states.remove(&lane.name).unwrap_or_default(),
            episode,
        ));
    }
    Ok(Status {
        at: now,
        lanes: out,
        reload,
    })
}
