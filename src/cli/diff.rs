//! `lanekeeper diff --rules DIR`: replays a period of recorded history through the current
//! rules and through candidate rules, and prints where the decisions differ, lane by lane.
//! Exit 0 when nothing differs, 1 when something does (as `kubectl diff`), 2 on a usage or
//! configuration error, so CI on a rules repository can gate on it. Writes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::output::clean;
use super::{CliError, CliResult, Offset, Session, emit, time_or_offset};
use crate::compile::Config;
use crate::home::Home;
use crate::simulate::diff::{LaneDiff, compare};
use crate::simulate::replay::{Replay, recorded_facts};
use crate::simulate::report::Report;
use crate::simulate::{self, Plan, SimError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The candidate rules: a directory laid out like `rules/` (the home's plugins and
    /// lanekeeper.yaml are used with it).
    #[arg(long, value_name = "DIR")]
    rules: PathBuf,
    /// Start of the period: an RFC 3339 time or a duration ago (default: 7 days before --to,
    /// or the start of the recorded history if later).
    #[arg(long, value_name = "TIME|DURATION")]
    from: Option<String>,
    /// End of the period (exclusive): an RFC 3339 time or a duration ago (default: now).
    #[arg(long, value_name = "TIME|DURATION")]
    to: Option<String>,
    /// A pass every DURATION instead of the daemon's wake rule.
    #[arg(long, value_name = "DURATION")]
    step: Option<String>,
    /// `{"from", "to", "differs", "lanes": [{lane, current, candidate, differences}]}`.
    #[arg(long)]
    json: bool,
}

/// How far back the period reaches by default.
const DEFAULT_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

/// A configuration that does not load is a usage error here (exit 2), not a difference.
fn load(home: &Home, which: &str) -> Result<Config, CliError> {
    crate::compile::load(home).map_err(|diags| {
        usage(format!(
            "the {which} rules in {} do not load ({} problem(s)):\n{}",
            home.rules_dir().display(),
            diags.len(),
            super::output::clean_lines(&diags.to_string()).trim_end()
        ))
    })
}

pub fn run(home: &Home, args: Args) -> CliResult {
    if !args.rules.is_dir() {
        return Err(usage(format!(
            "--rules {}: not a directory (give one laid out like rules/)",
            args.rules.display()
        )));
    }
    let current = load(home, "current")?;
    let candidate = load(&home.with_rules(&args.rules), "candidate")?;
    let session = Session::with_config(home, current, super::Access::Read)?;
    let now = session.now();
    let to = match args.to.as_deref() {
        Some(t) => time_or_offset("--to", t, now, Offset::Back)?,
        None => now,
    };
    let from = match args.from.as_deref() {
        Some(t) => time_or_offset("--from", t, now, Offset::Back)?,
        None => {
            let week = crate::clock::earlier(to, DEFAULT_PERIOD);
            let first = session.store.lane_states_at(to)?.coverage.first_record;
            first.map_or(week, |f| f.max(week))
        }
    };
    let step = args
        .step
        .as_deref()
        .map(|s| crate::model::duration::parse(s).map_err(|e| usage(format!("--step: {e}"))))
        .transpose()?;
    let (states, notes) = session.states_at(from)?;
    for note in notes {
        eprintln!("lanekeeper: note: {}", clean(&note));
    }
    let replay = |config: &Config, which: &str| -> Result<Report, CliError> {
        let facts = recorded_facts(&*session.store, config, Replay { runs: true })?;
        let run_lengths = simulate::run_lengths(&config.lanes, &BTreeMap::new(), &*session.store)
            .map_err(|e| sim_error(which, e))?;
        let plan = Plan {
            from,
            to,
            step,
            run_lengths,
        };
        simulate::simulate(config, states.clone(), &plan, Arc::new(facts), &mut |_| {})
            .map_err(|e| sim_error(which, e))
    };
    let before = replay(&session.config, "current")?;
    let after = replay(&candidate, "candidate")?;
    let lanes = compare(&before, &after);
    if args.json {
        let doc = serde_json::json!({
            "from": from,
            "to": to,
            "differs": !lanes.is_empty(),
            "lanes": lanes,
        });
        emit(&format!("{doc}\n"))?;
    } else {
        emit(&render(&lanes, from, to))?;
    }
    Ok(if lanes.is_empty() { 0 } else { 1 })
}

fn sim_error(which: &str, e: SimError) -> CliError {
    let msg = format!("replaying the {which} rules: {e}");
    match e {
        SimError::UnknownLane { .. } | SimError::UnknownMetric(_) | SimError::EmptyRange { .. } => {
            usage(msg)
        }
        _ => CliError::Failed(anyhow::anyhow!(msg)),
    }
}

/// One line per difference, `lane: what`, under a heading naming the period.
fn render(lanes: &[LaneDiff], from: Timestamp, to: Timestamp) -> String {
    if lanes.is_empty() {
        return format!("No differences from {from} to {to}.\n");
    }
    let mut out = format!(
        "From {from} to {to}, the candidate rules decide {} differently:\n",
        if lanes.len() == 1 {
            "1 lane".to_string()
        } else {
            format!("{} lanes", lanes.len())
        }
    );
    for lane in lanes {
        for d in &lane.differences {
            out.push_str(&format!("{}: {}\n", clean(&lane.lane), clean(d)));
        }
    }
    out
}
