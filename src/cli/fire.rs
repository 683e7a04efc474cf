//! `lanekeeper fire`: run a lane's command now, bypassing preconditions but not its lock.
//!
//! The run is handed to its own detached supervisor, which holds the lock, records the run and
//! its outcome. Without `--wait`, `fire` returns as soon as the command runs; with it, `fire`
//! waits for the outcome and exits with the command's exit code. Either way, killing `fire`
//! never leaves the run unrecorded.

use nix::sys::signal::Signal;

use super::{Access, CliResult, Session};
use crate::dispatch::{self, RunReport, Start, SupervisorLog};
use crate::engine;
use crate::home::Home;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane to run.
    lane: String,
    /// Wait for the command and exit with its exit code (128 + N if killed by signal N).
    #[arg(long)]
    wait: bool,
    /// Run it even if the lane is paused.
    #[arg(long)]
    force: bool,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let session = Session::open(home, Access::Create)?;
    let lane = session.lane(&args.lane)?;
    let now = session.now();
    if !args.force
        && let Some(p) = session
            .states()?
            .remove(&lane.name)
            .and_then(|s| s.pause)
            .filter(|p| p.in_force(now))
    {
        return Err(refused(
            &lane.name,
            &crate::model::decision::pause_words(&p),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut spec = dispatch::RunSpec::new(
        lane,
        &session.config.settings,
        engine::TriggerSource::Manual.as_str(),
        &session.clock,
        &session.location,
    );
    spec.force = args.force;
    spec.host = Some(home.host().to_string());
    let wiring = if args.wait {
        SupervisorLog::Inherit
    } else {
        SupervisorLog::Discard
    };
    // With --wait, SIGTERM and SIGINT stop the run: listen before it starts, so a signal sent
    // as soon as the run shows as running is not lost (it is forwarded once it has started).
    let signals = if args.wait {
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            Some((
                signal(SignalKind::terminate()).ok()?,
                signal(SignalKind::interrupt()).ok()?,
            ))
        })
    } else {
        None
    };
    let started = match runtime.block_on(dispatch::start(&session.config.home, &spec, wiring)) {
        Err(dispatch::DispatchError::Paused { lane, detail }) => {
            return Err(refused(&lane, &detail));
        }
        other => other?,
    };
    let handle = match started {
        Start::Failed(report) => {
            eprintln!("{}", summary(&lane.name, &report));
            return Ok(report.shell_code());
        }
        Start::Running(handle) => handle,
    };
    let decision = engine::manual(lane, session.now());
    if let Err(e) = session
        .store
        .record_decisions(&[decision], engine::Origin::Fire)
    {
        tracing::warn!(lane = %lane.name, "Could not record the manual trigger: {e}.");
    }
    if !args.wait {
        super::emit(&format!(
            "lane `{}`: started pid {}, log {}; lanekeeper pid {} supervises it and records the outcome\n",
            lane.name,
            handle.pid,
            handle.log_path.display(),
            handle.supervisor()
        ))?;
        return Ok(0);
    }
    eprintln!(
        "lane `{}`: started pid {}, log {}",
        lane.name,
        handle.pid,
        handle.log_path.display()
    );
    let stopper = handle.stopper();
    let report = runtime.block_on(async {
        // SIGTERM and SIGINT to `fire --wait` stop the run, through its supervisor.
        if let Some((mut term, mut int)) = signals {
            tokio::spawn(async move {
                loop {
                    let sig = tokio::select! {
                        Some(()) = term.recv() => Signal::SIGTERM,
                        Some(()) = int.recv() => Signal::SIGINT,
                        else => return,
                    };
                    stopper.stop(sig);
                }
            });
        }
        handle.wait(&*session.store).await
    })?;
    eprintln!("{}", summary(&lane.name, &report));
    on_failure(&session, lane, &report, &runtime);
    Ok(report.shell_code())
}

/// `fire --wait` runs the lane's `on_failure` hook itself for a failed run, and waits for it
/// (up to its timeout): it claims the firing first, so a daemon never runs it again.
fn on_failure(
    session: &Session,
    lane: &crate::compile::Lane,
    report: &RunReport,
    runtime: &tokio::runtime::Runtime,
) {
    use crate::dispatch::hook::{self, Firing};
    use crate::state::{HookEvent, HookResult, RunResult};
    let Some(hook) = &lane.hooks.on_failure else {
        return;
    };
    if !matches!(report.result, RunResult::Failure | RunResult::Interrupted) {
        return;
    }
    let key = format!("run:{}", report.run_id);
    let id = match session
        .store
        .claim_hook(&lane.name, HookEvent::Failure, &key, session.now())
    {
        Ok(Some(id)) => id,
        Ok(None) => return,
        Err(e) => {
            eprintln!("lane `{}`: on_failure not run: {e}", lane.name);
            return;
        }
    };
    let record = session
        .store
        .recent_runs(&lane.name, 8)
        .ok()
        .and_then(|runs| runs.into_iter().find(|r| r.id == report.run_id));
    let firing = Firing {
        lane: lane.name.clone(),
        event: HookEvent::Failure,
        key,
        reason: None,
        run_id: Some(report.run_id),
        result: Some(report.result.as_str().to_string()),
        payload: serde_json::json!({ "run": record, "report": report }),
    };
    let outcome = runtime.block_on(hook::run(&session.config.home, hook, &firing));
    if let Err(e) = session
        .store
        .finish_hook(id, outcome.result, &outcome.detail, session.now())
    {
        eprintln!(
            "lane `{}`: could not record how on_failure ended: {e}",
            lane.name
        );
    }
    if outcome.result != HookResult::Success {
        eprintln!(
            "lane `{}`: on_failure hook {}: {}",
            lane.name,
            outcome.result.as_str(),
            outcome.detail
        );
    }
}

/// The refusal to fire a paused lane, naming the pause and its note (exit 1, as a lane
/// already running is).
fn refused(lane: &str, pause: &str) -> super::CliError {
    super::CliError::Failed(anyhow::anyhow!(
        "lane `{lane}` is {}; not started. Resume it with `lanekeeper resume {lane}`, or run it anyway with `lanekeeper fire {lane} --force`",
        super::output::clean(pause)
    ))
}

/// One line describing how a run ended.
pub fn summary(lane: &str, r: &RunReport) -> String {
    if let Some(e) = &r.spawn_error {
        return format!("lane `{lane}`: failed to start: {e}");
    }
    let how = match r.exit {
        Some(e) => e.to_string(),
        None => "exit unknown".into(),
    };
    format!(
        "lane `{lane}`: {} ({how}{}) in {}, log {}",
        r.result.as_str(),
        if r.timed_out { ", timed out" } else { "" },
        crate::model::duration::format(r.duration),
        r.log_path.display()
    )
}
