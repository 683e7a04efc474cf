//! `lanekeeper status`: what each lane did last, what it is doing, and when it is next due.
//! Reads the store only (no probes), so it is instant and safe to run while anything else runs.

use jiff::Timestamp;
use serde::Serialize;

use super::output::{or_dash, relative, table};
use super::{CliResult, Session, emit};
use crate::config::duration::format;
use crate::config::{Lane, Schedule};
use crate::daemon::{RELOAD_KEY, ReloadStatus};
use crate::engine::schedule::next_due;
use crate::home::Home;
use crate::state::{Episode, ExitInfo, LaneState, RunResult, Store};

/// `3842` -> `3,842`.
fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON document: `{"at": …, "lanes": […]}`.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Running {
    pid: u32,
    started_at: Timestamp,
}

#[derive(Serialize)]
struct Deferral {
    reason: Option<String>,
    since: Timestamp,
}

#[derive(Serialize)]
struct EpisodeSummary {
    outcome: String,
    reason: Option<String>,
    gate: Option<String>,
    since: Timestamp,
    last_at: Timestamp,
    checks: i64,
}

#[derive(Serialize)]
struct LaneStatus {
    lane: String,
    label: String,
    schedule: String,
    last_run_at: Option<Timestamp>,
    last_result: Option<RunResult>,
    last_exit: Option<ExitInfo>,
    last_success_at: Option<Timestamp>,
    running: Option<Running>,
    next_due_at: Option<Timestamp>,
    deferral: Option<Deferral>,
    /// The current episode of identical decisions.
    episode: Option<EpisodeSummary>,
}

#[derive(Serialize)]
struct Status {
    at: Timestamp,
    lanes: Vec<LaneStatus>,
    /// The daemon's last configuration reload, if any.
    reload: Option<ReloadStatus>,
}

fn describe(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Every(d) => format!("every {}", format(*d)),
        Schedule::Cron { expr, .. } => format!("cron {expr}"),
        Schedule::Disabled => "off".into(),
    }
}

fn lane_status(lane: &Lane, state: LaneState, episode: Option<Episode>) -> LaneStatus {
    LaneStatus {
        episode: episode.map(|e| EpisodeSummary {
            outcome: e.outcome,
            reason: e.reason,
            gate: e.gate,
            since: e.first_at,
            last_at: e.last_at,
            checks: e.count,
        }),
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
    }
}

pub fn run(home: &Home, args: Args) -> CliResult {
    // Status must work while an edit is half done: that is when the operator needs it most.
    let (session, problems) = Session::open_lenient(home)?;
    if !problems.is_empty() {
        eprint!("{problems}");
        eprintln!(
            "lanekeeper: the rules under {} have {} problem(s); lanes that fail to load are not listed (a running daemon keeps its last good configuration)",
            home.root().display(),
            problems.0.len()
        );
    }
    let now = session.now();
    let mut states = session.states()?;
    let reload = session
        .store
        .meta(RELOAD_KEY)?
        .and_then(|json| serde_json::from_str::<ReloadStatus>(&json).ok());
    let status = Status {
        reload,
        at: now,
        lanes: session
            .config
            .lanes
            .iter()
            .map(|l| {
                let episode = session.store.episode_at(&l.name, now).ok().flatten();
                lane_status(l, states.remove(&l.name).unwrap_or_default(), episode)
            })
            .collect(),
    };
    if args.json {
        emit(&format!("{}\n", serde_json::to_string(&status)?))?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = status
        .lanes
        .iter()
        .map(|s| {
            let state = match &s.running {
                Some(r) => format!("running pid {}", r.pid),
                None if s.schedule == "off" => "disabled".into(),
                None => "idle".into(),
            };
            let last = match (s.last_run_at, s.last_result, s.last_exit) {
                (None, _, _) => "never".to_string(),
                (Some(t), Some(r), Some(e)) => {
                    format!("{} ({}, {e})", relative(now, Some(t)), r.as_str())
                }
                (Some(t), Some(r), None) => format!("{} ({})", relative(now, Some(t)), r.as_str()),
                (Some(t), None, _) => relative(now, Some(t)),
            };
            let next = match (s.next_due_at, s.schedule.as_str()) {
                (_, "off") => "-".to_string(),
                (None, _) => "now (never run)".into(),
                (Some(t), _) if t <= now => format!(
                    "now (overdue {})",
                    relative(now, Some(t)).trim_end_matches(" ago")
                ),
                (Some(t), _) => relative(now, Some(t)),
            };
            let deferral = match (&s.deferral, &s.episode) {
                (Some(d), Some(e)) if e.outcome == "deferred" && e.reason == d.reason => format!(
                    "{} for {}, {} check{}",
                    or_dash(d.reason.as_deref()),
                    relative(now, Some(e.since)).trim_end_matches(" ago"),
                    thousands(e.checks),
                    if e.checks == 1 { "" } else { "s" }
                ),
                (Some(d), _) => format!(
                    "{} for {}",
                    or_dash(d.reason.as_deref()),
                    relative(now, Some(d.since)).trim_end_matches(" ago")
                ),
                (None, _) => "-".into(),
            };
            vec![
                s.lane.clone(),
                state,
                last,
                relative(now, s.last_success_at),
                next,
                deferral,
            ]
        })
        .collect();
    let header = [
        "LANE",
        "STATE",
        "LAST RUN",
        "LAST SUCCESS",
        "NEXT DUE",
        "DEFERRED",
    ];
    let mut text = table(&header, &rows);
    if let Some(r) = &status.reload {
        if r.ok {
            text.push_str(&format!(
                "\nlast reload: applied {} ({})\n",
                relative(now, Some(r.at)),
                r.trigger
            ));
        } else {
            text.push_str(&format!(
                "\nlast reload FAILED {} ({}); the daemon keeps its last good configuration:\n{}\n",
                relative(now, Some(r.at)),
                r.trigger,
                r.error.as_deref().unwrap_or("")
            ));
        }
    }
    emit(&text)?;
    Ok(0)
}
