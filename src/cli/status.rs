//! `lanekeeper status`: what each lane did last, what it is doing, and when it is next due.
//! Reads the store only (no probes), so it is instant and safe to run while anything else runs.

use std::collections::BTreeMap;

use super::output::{clean, clean_lines, or_dash, relative, table};
use super::{Access, CliResult, Session, emit};
use crate::home::Home;
use crate::status;

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

pub fn run(home: &Home, args: Args) -> CliResult {
    // Status must work while an edit is half done: that is when the operator needs it most.
    let (session, problems) = Session::open_lenient(home, Access::Read)?;
    // Warnings are `validate`'s; status reports what stops a configuration from loading.
    let problems = problems.errors();
    if !problems.is_empty() {
        eprint!("{}", clean_lines(&problems.to_string()));
        eprintln!(
            "lanekeeper: the rules under {} have {} problem(s); lanes whose file fails to load are listed as `config invalid` (a running daemon keeps its last good configuration)",
            home.root().display(),
            problems.len()
        );
    }
    let mut invalid: BTreeMap<String, String> = BTreeMap::new();
    for d in problems.iter() {
        if let Some(lane) = &d.lane {
            let text = invalid.entry(lane.clone()).or_default();
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&d.to_string());
        }
    }
    let now = session.now();
    let status = status::build_with_invalid(
        &session.config.lanes,
        &invalid,
        session.states()?,
        &*session.store,
        now,
    )?;
    if args.json {
        emit(&format!("{}\n", serde_json::to_string(&status)?))?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = status
        .lanes
        .iter()
        .map(|s| {
            let mut state = match (&s.running, &s.config_error) {
                (Some(r), Some(_)) => format!("config invalid, running pid {}", r.pid),
                (None, Some(_)) => "config invalid".into(),
                (Some(r), None) => format!("running pid {}", r.pid),
                (None, None) if s.schedule == "off" => "disabled".into(),
                (None, None) => "idle".into(),
            };
            if s.paused.is_some() {
                state = if s.running.is_some() {
                    format!("paused, {state}")
                } else {
                    "paused".into()
                };
            }
            let last = match (s.last_run_at, s.last_result, s.last_exit) {
                (None, _, _) => "never".to_string(),
                (Some(t), Some(r), _) if s.stopped_by.is_some() => format!(
                    "{} ({} by {})",
                    relative(now, Some(t)),
                    r.as_str(),
                    s.stopped_by.as_deref().unwrap_or("-")
                ),
                (Some(t), Some(r), Some(e)) => {
                    format!("{} ({}, {e})", relative(now, Some(t)), r.as_str())
                }
                (Some(t), Some(r), None) => format!("{} ({})", relative(now, Some(t)), r.as_str()),
                (Some(t), None, _) => relative(now, Some(t)),
            };
            let next = match (s.next_due_at, s.schedule.as_str()) {
                _ if s.never_fires => "never".to_string(),
                (_, "off" | status::UNKNOWN_SCHEDULE) => "-".to_string(),
                (None, _) => "now (never run)".into(),
                (Some(t), _) if t <= now => format!(
                    "now (overdue {})",
                    relative(now, Some(t)).trim_end_matches(" ago")
                ),
                (Some(t), _) if s.last_run_at.is_none() => {
                    format!("{} (never run)", relative(now, Some(t)))
                }
                (Some(t), _) => relative(now, Some(t)),
            };
            let deferral = match (&s.deferral, &s.episode) {
                (Some(d), Some(e)) if e.outcome == "deferred" && e.reason == d.reason => format!(
                    "{} for {}, {} check{}",
                    or_dash(d.reason.as_deref()),
                    relative(now, Some(e.first_at)).trim_end_matches(" ago"),
                    thousands(e.count),
                    if e.count == 1 { "" } else { "s" }
                ),
                (Some(d), _) => format!(
                    "{} for {}",
                    or_dash(d.reason.as_deref()),
                    relative(now, Some(d.since)).trim_end_matches(" ago")
                ),
                (None, _) => "-".into(),
            };
            [
                s.lane.clone(),
                state,
                last,
                relative(now, s.last_success_at),
                next,
                deferral,
            ]
            .iter()
            .map(|cell| clean(cell).into_owned())
            .collect()
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
    if let Some(view) = &status.leader {
        text.push_str(&leader_line(view));
    }
    let paused: Vec<String> = status
        .lanes
        .iter()
        .filter_map(|s| {
            let p = s.paused.as_ref()?;
            let until = p
                .until
                .map(|u| format!(", until {u} ({})", relative(now, Some(u))))
                .unwrap_or_default();
            Some(format!(
                "  {}: paused by {} {} ({}){until}: {}\n",
                s.lane,
                clean(&p.by),
                relative(now, Some(p.at)),
                p.at,
                clean(&format!("{:?}", p.note))
            ))
        })
        .collect();
    if !paused.is_empty() {
        text.push_str("\npaused:\n");
        text.extend(paused);
    }
    if let Some(r) = &status.reload {
        if r.ok {
            text.push_str(&format!(
                "\nlast reload: applied {} ({})\n",
                relative(now, Some(r.at)),
                clean(&r.trigger)
            ));
        } else {
            text.push_str(&format!(
                "\nlast reload FAILED {} ({}); the daemon keeps its last good configuration:\n{}\n",
                relative(now, Some(r.at)),
                clean(&r.trigger),
                clean_lines(r.error.as_deref().unwrap_or("")).trim_end()
            ));
        }
    }
    emit(&text)?;
    Ok(0)
}

/// `leader: HOST (token N), lease held 5m, renewed 2s ago, lapses in 8s`, by the database's clock.
fn leader_line(view: &crate::state::LeaderView) -> String {
    let l = &view.lease;
    let span = |d: jiff::SignedDuration| {
        crate::config::duration::format(std::time::Duration::try_from(d.abs()).unwrap_or_default())
    };
    let life = match view.live() {
        true => format!("lapses in {}", span(l.expires_at.duration_since(view.now))),
        false => format!(
            "LAPSED {} ago: no replica leads",
            span(view.now.duration_since(l.expires_at))
        ),
    };
    format!(
        "\nleader: {} (token {}), lease held {}, renewed {} ago, {life}\n",
        clean(&l.host),
        l.token,
        span(view.age()),
        span(view.now.duration_since(l.renewed_at)),
    )
}
