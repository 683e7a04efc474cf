//! `lanekeeper fire`: run a lane's command now, bypassing preconditions but not its lock.
//!
//! Without `--wait` the run is handed to a detached supervisor (this binary, in its own
//! session) which holds the lock, waits for the child and records the outcome; `fire` returns
//! as soon as the child has started. With `--wait` this process is the supervisor and exits
//! with the child's exit code.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use super::{Access, CliError, CliResult, Session};
use crate::dispatch::{self, RunReport};
use crate::engine;
use crate::home::Home;
use crate::state::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane to run.
    lane: String,
    /// Wait for the command and exit with its exit code (128 + N if killed by signal N).
    #[arg(long)]
    wait: bool,
    /// Internal: act as the detached supervisor, reporting the start on stdout.
    #[arg(long, hide = true)]
    detached: bool,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let session = Session::open(home, Access::Create)?;
    session.lane(&args.lane)?;
    if args.wait || args.detached {
        supervise(&session, &args)
    } else {
        detach(home, &args)
    }
}

fn supervise(session: &Session, args: &Args) -> CliResult {
    let lane = session.lane(&args.lane)?;
    let home = &session.config.home;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let detached = args.detached;
    let mut on_start = |pid: u32, log: &std::path::Path| {
        let decision = engine::manual(lane, session.now());
        if let Err(e) = session
            .store
            .record_decisions(&[decision], crate::engine::Origin::Fire)
        {
            tracing::warn!(lane = %lane.name, "Could not record the manual trigger: {e}.");
        }
        if detached {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "started {pid} {}", log.display());
            let _ = out.flush();
        } else {
            eprintln!(
                "lane `{}`: started pid {pid}, log {}",
                lane.name,
                log.display()
            );
        }
    };
    let (stop, stop_rx) = dispatch::stop_channel();
    runtime.block_on(async { dispatch::forward_signals(stop) })?;
    let request = dispatch::RunRequest {
        home,
        lane,
        log_rules: &session.config.settings.run_logs,
        store: &session.store,
        clock: &session.clock,
        source: engine::TriggerSource::Manual.as_str(),
    };
    let result = runtime.block_on(dispatch::run_lane(&request, &mut on_start, stop_rx));
    match result {
        Ok(report) => {
            if detached {
                if let Some(e) = &report.spawn_error {
                    let _ = writeln!(std::io::stdout(), "error lane `{}`: {e}", lane.name);
                }
            } else {
                eprintln!("{}", summary(&lane.name, &report));
            }
            Ok(report.shell_code())
        }
        Err(e) => {
            if detached {
                let _ = writeln!(std::io::stdout(), "error {e}");
            }
            Err(CliError::Failed(e.into()))
        }
    }
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
        crate::config::duration::format(r.duration),
        r.log_path.display()
    )
}

fn detach(home: &Home, args: &Args) -> CliResult {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home")
        .arg(home.root())
        .arg("fire")
        .arg(&args.lane)
        .arg("--detached")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let supervisor = child.id();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("started ") {
        let (pid, log) = rest.split_once(' ').unwrap_or((rest, "?"));
        super::emit(&format!(
            "lane `{}`: started pid {pid}, log {log}; lanekeeper pid {supervisor} supervises it and records the outcome\n",
            args.lane
        ))?;
        return Ok(0);
    }
    let status = child.wait()?;
    let message = line
        .strip_prefix("error ")
        .map(str::to_string)
        .unwrap_or_else(|| format!("the supervisor exited ({status}) before starting the run"));
    Err(CliError::Failed(anyhow::anyhow!(message)))
}
