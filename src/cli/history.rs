//! `lanekeeper history`: what happened to a lane, from the store: its runs, its deferral
//! episodes (held back while due; "not due" is left out) and its pauses.

use jiff::Timestamp;
use serde::Serialize;

use super::output::{clean, or_dash, relative, table};
use super::{Access, CliResult, Offset, Session, emit};
use crate::home::Home;
use crate::model::decision::holds;
use crate::model::duration::format_ms;
use crate::state::{ENDED_EXPIRED, ENDED_REPLACED, ExitInfo, PauseRecord, RunRecord, RunResult};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane.
    lane: String,
    /// From when: an RFC 3339 time, or a duration back from now (`24h`, `7d`); default: all
    /// that is kept (`history.retention`).
    #[arg(long)]
    since: Option<String>,
    /// One JSON document: `{"lane", "since", "runs", "deferrals", "pauses"}`.
    #[arg(long)]
    json: bool,
}

/// One run, as `history` lists it.
#[derive(Debug, Serialize)]
struct Run {
    id: i64,
    source: String,
    started_at: Timestamp,
    ended_at: Option<Timestamp>,
    duration_ms: Option<i64>,
    result: Option<RunResult>,
    exit: Option<ExitInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_by: Option<String>,
    log_path: Option<String>,
}

/// One deferral episode.
#[derive(Debug, Serialize)]
struct Deferral {
    reason: Option<String>,
    gate: Option<String>,
    from: Timestamp,
    to: Timestamp,
    checks: i64,
}

/// One pause.
#[derive(Debug, Serialize)]
struct Paused {
    note: String,
    by: String,
    from: Timestamp,
    until: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    ended_by: Option<String>,
}

#[derive(Debug, Serialize)]
struct History {
    lane: String,
    since: Option<Timestamp>,
    runs: Vec<Run>,
    deferrals: Vec<Deferral>,
    pauses: Vec<Paused>,
}

fn run_of(r: RunRecord) -> Run {
    Run {
        id: r.id,
        duration_ms: r
            .ended_at
            .map(|e| e.as_millisecond() - r.started_at.as_millisecond()),
        source: r.source,
        started_at: r.started_at,
        ended_at: r.ended_at,
        result: r.result,
        exit: r.exit,
        stopped_by: r.stopped_by,
        log_path: r.log_path,
    }
}

fn pause_of(p: PauseRecord, now: Timestamp) -> Paused {
    let end = p.end(now).map(|(t, by)| (t, by.to_string()));
    Paused {
        note: p.pause.note,
        by: p.pause.by,
        from: p.pause.at,
        until: p.pause.until,
        ended_at: end.as_ref().map(|(t, _)| *t),
        ended_by: end.map(|(_, by)| by),
    }
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let (session, _) = Session::open_lenient(home, Access::Read)?;
    let now = session.now();
    let since = args
        .since
        .as_deref()
        .map(|s| super::time_or_offset("--since", s, now, Offset::Back))
        .transpose()?;
    let from = since.unwrap_or(Timestamp::UNIX_EPOCH);
    // Known by its configuration or its record.
    let mut runs: Vec<Run> = super::logs::lane_runs(&session, &args.lane)?
        .into_iter()
        .filter(|r| r.ended_at.unwrap_or(now) >= from)
        .map(run_of)
        .collect();
    runs.reverse();
    let deferrals = session
        .store
        .episodes_since(from)?
        .into_iter()
        .map(|e| e.summary)
        .filter(|e| e.lane == args.lane && e.outcome == "deferred" && holds(e.gate.as_deref()))
        .map(|e| Deferral {
            reason: e.reason,
            gate: e.gate,
            from: e.first_at,
            to: e.last_at,
            checks: e.count,
        })
        .collect();
    let pauses = session
        .store
        .pauses_since(Some(&args.lane), from)?
        .into_iter()
        .map(|p| pause_of(p, now))
        .collect();
    let history = History {
        lane: args.lane,
        since,
        runs,
        deferrals,
        pauses,
    };
    if args.json {
        return emit(&format!("{}\n", serde_json::to_string(&history)?)).map(|()| 0);
    }
    emit(&text(&history, now)).map(|()| 0)
}

fn text(h: &History, now: Timestamp) -> String {
    let when = |t: Timestamp| format!("{t} ({})", relative(now, Some(t)));
    let mut out = format!("lane `{}`", h.lane);
    if let Some(s) = h.since {
        out.push_str(&format!(" since {s}"));
    }
    out.push_str("\n\nruns:\n");
    if h.runs.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = h
            .runs
            .iter()
            .map(|r| {
                let outcome = match (&r.result, &r.stopped_by) {
                    (Some(res), Some(by)) => format!("{} by {}", res.as_str(), clean(by)),
                    (Some(res), None) => res.as_str().to_string(),
                    (None, _) => "running".into(),
                };
                vec![
                    when(r.started_at),
                    r.duration_ms.map_or("-".into(), format_ms),
                    outcome,
                    r.exit.map_or("-".into(), |e| e.to_string()),
                    clean(&r.source).into_owned(),
                    r.id.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["START", "DURATION", "OUTCOME", "EXIT", "SOURCE", "ID"],
            &rows,
        ));
    }
    out.push_str("\ndeferrals (due and held back):\n");
    if h.deferrals.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = h
            .deferrals
            .iter()
            .map(|d| {
                vec![
                    clean(&or_dash(d.reason.as_deref())).into_owned(),
                    when(d.from),
                    when(d.to),
                    d.checks.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["REASON", "FROM", "TO", "CHECKS"], &rows));
    }
    out.push_str("\npauses:\n");
    if h.pauses.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = h
            .pauses
            .iter()
            .map(|p| {
                let until = match (p.ended_at, &p.ended_by, p.until) {
                    (Some(t), Some(by), _) if by == ENDED_EXPIRED || by == ENDED_REPLACED => {
                        format!("{} ({by})", when(t))
                    }
                    (Some(t), Some(by), _) => format!("{} (resumed by {})", when(t), clean(by)),
                    (_, _, Some(u)) => format!("until {}", when(u)),
                    _ => "in force".into(),
                };
                vec![
                    when(p.from),
                    until,
                    clean(&p.by).into_owned(),
                    clean(&format!("{:?}", p.note)).into_owned(),
                ]
            })
            .collect();
        out.push_str(&table(&["FROM", "TO", "BY", "NOTE"], &rows));
    }
    out
}
