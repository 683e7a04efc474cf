//! `lanekeeper record`: a run made outside lanekeeper, such as a backup taken by hand.

use clap::ValueEnum;

use super::{Access, CliError, CliResult, Session, parse_at};
use crate::home::Home;
use crate::state::RunResult;

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Outcome {
    Success,
    Failure,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane the run belongs to.
    lane: String,
    /// How it went.
    #[arg(long, value_enum)]
    outcome: Outcome,
    /// When it happened (RFC 3339; default now).
    #[arg(long)]
    at: Option<String>,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let session = Session::open(home, Access::Create)?;
    let lane = session.lane(&args.lane)?;
    let now = session.now();
    let at = at.unwrap_or(now);
    if at > now {
        return Err(CliError::Usage(format!(
            "--at {at} is in the future (now {now}); record a run once it has happened"
        )));
    }
    let result = match args.outcome {
        Outcome::Success => RunResult::Success,
        Outcome::Failure => RunResult::Failure,
    };
    session.store.record_external(&lane.name, at, result)?;
    super::emit(&format!(
        "recorded {} run of `{}` at {at}\n",
        result.as_str(),
        lane.name
    ))?;
    Ok(0)
}
