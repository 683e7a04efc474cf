//! `lanekeeper pause` and `resume`: hold a lane back with a note for colleagues, and let it go.
//!
//! The pause is stored, so it outlives restarts and reloads, and the daemon is woken at once
//! (through the home's wake file) so it decides again without waiting for its next pass.

use super::output::clean;
use super::{Access, CliError, CliResult, Offset, Session, emit, operator, wake_daemon};
use crate::home::Home;
use crate::model::decision::pause_words;
use crate::state::Pause;

#[derive(clap::Args, Debug)]
pub struct PauseArgs {
    /// The lanes to pause.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    lanes: Vec<String>,
    /// Every configured lane (a maintenance window).
    #[arg(long)]
    all: bool,
    /// Why, for whoever finds the lane paused.
    #[arg(long)]
    note: String,
    /// When the pause ends by itself: an RFC 3339 time, or a duration from now (`2h`, `90m`).
    #[arg(long)]
    until: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ResumeArgs {
    /// The lanes to resume.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    lanes: Vec<String>,
    /// Every paused lane.
    #[arg(long)]
    all: bool,
}

/// The lanes named, or every configured lane with `all`.
fn lane_names(session: &Session, names: &[String], all: bool) -> Result<Vec<String>, CliError> {
    if all {
        return Ok(session
            .config
            .lanes
            .iter()
            .map(|l| l.name.clone())
            .collect());
    }
    names
        .iter()
        .map(|n| session.lane(n).map(|l| l.name.clone()))
        .collect()
}

pub fn pause(home: &Home, args: PauseArgs) -> CliResult {
    if args.note.trim().is_empty() {
        return Err(CliError::Usage(
            "--note is empty; say why the lane is paused, for whoever finds it so".into(),
        ));
    }
    let session = Session::open(home, Access::Create)?;
    let now = session.now();
    let until = args
        .until
        .as_deref()
        .map(|t| super::time_or_offset("--until", t, now, Offset::Ahead))
        .transpose()?;
    if let Some(u) = until
        && u <= now
    {
        return Err(CliError::Usage(format!(
            "--until {u} is not in the future (now {now})"
        )));
    }
    let pause = Pause {
        note: args.note,
        by: operator(),
        at: now,
        until,
    };
    let lanes = lane_names(&session, &args.lanes, args.all)?;
    let states = session.states()?;
    let mut text = String::new();
    for lane in &lanes {
        let replaced = session.store.pause(lane, &pause)?;
        text.push_str(&format!("lane `{lane}`: {}\n", clean(&pause_words(&pause))));
        if let Some(old) = replaced {
            text.push_str(&format!(
                "  (it replaces the pause {})\n",
                clean(&pause_words(&old))
            ));
        }
        if let Some(r) = states.get(lane).and_then(|s| s.running.as_ref()) {
            text.push_str(&format!(
                "  its run started {} (pid {}) goes on; `lanekeeper stop {lane}` ends it\n",
                r.started_at, r.pid
            ));
        }
    }
    wake_daemon(home);
    emit(&text)?;
    Ok(0)
}

pub fn resume(home: &Home, args: ResumeArgs) -> CliResult {
    let session = Session::open(home, Access::WriteExisting)?;
    let now = session.now();
    let lanes = if args.all {
        let mut paused: Vec<String> = session
            .store
            .lane_states()?
            .into_iter()
            .filter(|(_, s)| s.pause.as_ref().is_some_and(|p| p.in_force(now)))
            .map(|(l, _)| l)
            .collect();
        paused.sort();
        paused
    } else {
        lane_names(&session, &args.lanes, false)?
    };
    let by = operator();
    let mut text = String::new();
    let mut resumed = 0;
    for lane in &lanes {
        match session.store.resume(lane, now, &by)? {
            Some(p) => {
                resumed += 1;
                text.push_str(&format!(
                    "lane `{lane}`: resumed by {by} (it was {})\n",
                    clean(&pause_words(&p))
                ));
            }
            None => text.push_str(&format!("lane `{lane}`: not paused\n")),
        }
    }
    if args.all && lanes.is_empty() {
        text.push_str("no lane is paused\n");
    }
    if resumed > 0 {
        wake_daemon(home);
    }
    emit(&text)?;
    Ok(0)
}
