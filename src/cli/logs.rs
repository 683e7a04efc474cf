//! `lanekeeper logs`: a run's log, the latest by default; `--follow` streams a live run's log
//! until the run ends.
//!
//! Logs live under `state/runs/<lane>/` and their paths are recorded with the runs. Following
//! polls the open file (so a log capped at the end is still read to its end) and the run's
//! record: the run is over once its end is recorded, or once its processes are gone.

use std::io::{Read, Write};
use std::time::Duration;

use super::{Access, CliError, CliResult, Session};
use crate::dispatch::process;
use crate::home::Home;
use crate::state::RunRecord;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane.
    lane: String,
    /// The run's id (`history` lists them); default: the latest run.
    #[arg(long)]
    run: Option<i64>,
    /// Keep printing what a live run writes, until it ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// How often `--follow` looks for new output and for the run's end.
const POLL: Duration = Duration::from_millis(100);

/// The runs of `lane` that `logs` and `history` can show: the lane need not be configured any
/// more, only recorded.
pub(super) fn lane_runs(session: &Session, lane: &str) -> Result<Vec<RunRecord>, CliError> {
    let runs = session.store.recent_runs(lane, usize::MAX)?;
    if runs.is_empty() && session.config.lane(lane).is_none() {
        session.lane(lane)?;
    }
    Ok(runs)
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let (session, _) = Session::open_lenient(home, Access::Read)?;
    let runs = lane_runs(&session, &args.lane)?;
    let run = match args.run {
        Some(id) => runs.into_iter().find(|r| r.id == id).ok_or_else(|| {
            CliError::Usage(format!(
                "lane `{}` has no run {id}; `lanekeeper history {}` lists its runs",
                args.lane, args.lane
            ))
        })?,
        None => runs.into_iter().next().ok_or_else(|| {
            CliError::Failed(anyhow::anyhow!(
                "lane `{}` has no recorded run yet, so no log",
                args.lane
            ))
        })?,
    };
    let Some(path) = run.log_path.clone() else {
        return Err(CliError::Failed(anyhow::anyhow!(
            "run {} of lane `{}` has no log (it was recorded with `lanekeeper record`, not run here)",
            run.id,
            args.lane
        )));
    };
    let mut file = std::fs::File::open(&path).map_err(|e| {
        CliError::Failed(anyhow::anyhow!(
            "run {} of lane `{}`: cannot read its log {path}: {e} (logs are pruned by run_logs.keep and run_logs.max_age)",
            run.id,
            args.lane
        ))
    })?;
    let mut out = std::io::stdout().lock();
    if !copy(&mut file, &mut out)? || !args.follow {
        return Ok(0);
    }
    loop {
        // The end is read before the file, so the last lines are never missed.
        let ended = ended(&session, &run)?;
        if !copy(&mut file, &mut out)? || ended {
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `run` is over: its end is recorded, or nothing of it lives (an unsupervised run
/// whose process is gone is settled later, but writes nothing more).
fn ended(session: &Session, run: &RunRecord) -> Result<bool, CliError> {
    let now = session
        .store
        .recent_runs(&run.lane, usize::MAX)?
        .into_iter()
        .find(|r| r.id == run.id);
    let Some(now) = now else { return Ok(true) };
    if now.result.is_some() {
        return Ok(true);
    }
    let running = session
        .store
        .lane_states()?
        .remove(&run.lane)
        .and_then(|s| s.running)
        .filter(|r| r.run_id == run.id);
    Ok(running.is_none_or(|r| !r.is_alive(process::is_alive)))
}

/// Copies what `from` has now to `to`. False once the reader has gone (`| head`), which
/// ends the command quietly.
fn copy(from: &mut std::fs::File, to: &mut impl Write) -> Result<bool, CliError> {
    let mut buf = Vec::new();
    from.read_to_end(&mut buf)?;
    match to.write_all(&buf).and_then(|()| to.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        other => other.map(|()| true).map_err(Into::into),
    }
}
