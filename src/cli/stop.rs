//! `lanekeeper stop`: end a lane's running run, whoever started it (the daemon or `fire`).
//!
//! The stop is recorded first (who, and the grace asked for), then SIGTERM goes to the run's
//! supervisor, checked by pid and start time so a reused pid is never signalled. The
//! supervisor forwards TERM to the command's process group and descendants, KILLs after the
//! grace, and records the run as `cancelled`. A command whose supervisor is gone (adopted by
//! the daemon) is signalled here directly, the same way.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::output::clean;
use super::{Access, CliError, CliResult, Session, emit, operator, wake_daemon};
use crate::dispatch::process;
use crate::home::Home;
use crate::model::duration::format;
use crate::state::RunRecord;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane whose run to stop.
    lane: String,
    /// How long after TERM its processes are KILLed (default: the lane's `grace`).
    #[arg(long)]
    grace: Option<String>,
}

/// How long `stop` waits, beyond the grace, for the run's end to be recorded.
const RECORD_WAIT: Duration = Duration::from_secs(30);

pub fn run(home: &Home, args: Args) -> CliResult {
    let grace = args
        .grace
        .as_deref()
        .map(|g| {
            crate::model::duration::parse(g)
                .map_err(|e| CliError::Usage(format!("--grace `{g}`: {e}")))
        })
        .transpose()?;
    let session = Session::open(home, Access::WriteExisting)?;
    let lane = session.lane(&args.lane)?.clone();
    let not_running = || {
        CliError::Failed(anyhow::anyhow!(
            "lane `{}` is not running; nothing to stop (`lanekeeper status` shows what runs)",
            lane.name
        ))
    };
    let Some(run) = session
        .store
        .lane_states()?
        .remove(&lane.name)
        .and_then(|s| s.running)
    else {
        return Err(not_running());
    };
    let supervisor = run
        .supervisor
        .filter(|&(pid, start)| process::is_alive(pid, start));
    let command_alive = process::is_alive(run.pid, run.pid_start);
    if supervisor.is_none() && !command_alive {
        return Err(not_running());
    }
    let by = operator();
    if !session.store.request_stop(run.run_id, &by, grace)? {
        return Err(not_running());
    }
    let grace = grace.unwrap_or(lane.command.grace);
    let started = Instant::now();
    match supervisor {
        Some((pid, _)) => {
            if let Err(e) = signal(pid, Signal::SIGTERM) {
                session.store.withdraw_stop(run.run_id)?;
                return Err(CliError::Failed(anyhow::anyhow!(
                    "lane `{}`: cannot signal run {}'s supervisor (pid {pid}): {e}; run `stop` as the user that runs lanekeeper",
                    lane.name,
                    run.run_id
                )));
            }
        }
        None => {
            // Nobody supervises it (its supervisor was killed; the daemon adopted it): the
            // same stop, from here.
            if !process::signal_group(run.pid, Signal::SIGTERM) {
                session.store.withdraw_stop(run.run_id)?;
                return Err(CliError::Failed(anyhow::anyhow!(
                    "lane `{}`: cannot signal run {}'s process group {}; run `stop` as the user that runs lanekeeper",
                    lane.name,
                    run.run_id,
                    run.pid
                )));
            }
            while process::is_alive(run.pid, run.pid_start) && started.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(20));
            }
            process::signal_group(run.pid, Signal::SIGKILL);
        }
    }
    wake_daemon(home);
    let ended = wait_recorded(&session, &lane.name, run.run_id, grace + RECORD_WAIT)?;
    let text = match ended {
        Some(r) => format!(
            "lane `{}`: run {} stopped by {}: {}{} after {}\n",
            lane.name,
            r.id,
            clean(&by),
            r.result.map_or("-", |r| r.as_str()),
            r.exit.map(|e| format!(" ({e})")).unwrap_or_default(),
            format(
                r.ended_at
                    .map(|e| e.duration_since(r.started_at).unsigned_abs())
                    .unwrap_or_default()
            ),
        ),
        None if !process::is_alive(run.pid, run.pid_start) => format!(
            "lane `{}`: run {} stopped by {}; its end is recorded as `cancelled` when the lane next starts or the daemon restarts\n",
            lane.name,
            run.run_id,
            clean(&by)
        ),
        None => {
            return Err(CliError::Failed(anyhow::anyhow!(
                "lane `{}`: run {} (pid {}) is still running {} after the stop was sent; check the process and its supervisor",
                lane.name,
                run.run_id,
                run.pid,
                format(started.elapsed())
            )));
        }
    };
    emit(&text)?;
    Ok(0)
}

fn signal(pid: u32, sig: Signal) -> Result<(), nix::errno::Errno> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
}

/// Polls the store until run `id` of `lane` has an end recorded, for at most `bound`.
fn wait_recorded(
    session: &Session,
    lane: &str,
    id: i64,
    bound: Duration,
) -> Result<Option<RunRecord>, CliError> {
    let until = Instant::now() + bound;
    loop {
        let found = session
            .store
            .recent_runs(lane, 16)?
            .into_iter()
            .find(|r| r.id == id && r.result.is_some());
        if found.is_some() || Instant::now() >= until {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
