//! `lanekeeper run`: the daemon. `--once` runs one pass, waits for what it dispatched, prints
//! what happened and exits; without it, the loop serves until SIGTERM or SIGINT.

use super::check::render;
use super::fire::summary;
use std::sync::Arc;

use super::output::clean;
use super::{CliError, CliResult, emit, parse_at, print_json_lines};
use crate::clock::{Clock, OffsetClock, SystemClock};
use crate::daemon::{self, DaemonError};
use crate::home::Home;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run one pass, wait for what it dispatched, and exit.
    #[arg(long)]
    pub(super) once: bool,
    /// With --once: print the decisions as JSON lines.
    #[arg(long)]
    json: bool,
    /// Serve /metrics, /status and the status page here: PORT (loopback) or HOST:PORT.
    /// Overrides `listen:` in lanekeeper.yaml.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Rehearse: start the clock at this RFC 3339 time (not in the future) and let it advance
    /// in real time. Runs and decisions are recorded at those times, so use a scratch home.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let listen = args
        .listen
        .as_deref()
        .map(crate::config::settings::parse_listen)
        .transpose()
        .map_err(|e| CliError::Usage(format!("--listen: {e}")))?;
    let clock: Arc<dyn Clock> = match args.at.as_deref().map(parse_at).transpose()? {
        Some(at) => {
            let now = SystemClock.now();
            if at > now {
                return Err(CliError::Usage(format!(
                    "--at {at} is in the future (now {now}); a rehearsal records runs at its times, and future records would hold the lanes back"
                )));
            }
            Arc::new(OffsetClock::starting_at(at))
        }
        None => Arc::new(SystemClock),
    };
    let report = daemon::run(home, args.once, listen, clock).map_err(|e| match e {
        DaemonError::Config(diags) => CliError::Config(diags),
        other => CliError::Failed(other.into()),
    })?;
    if args.once {
        if args.json {
            print_json_lines(&report.decisions, &report.secrets)?;
        } else {
            emit(&crate::config::env::redact(
                &render(&report.decisions),
                &report.secrets,
            ))?;
        }
        for (lane, run) in &report.runs {
            match run {
                Ok(r) => eprintln!("{}", clean(&summary(lane, r))),
                Err(e) => eprintln!("lane `{lane}`: {}", clean(e)),
            }
        }
    }
    Ok(0)
}
