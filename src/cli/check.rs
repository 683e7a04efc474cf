//! `lanekeeper check`: decide lanes now (recorded, where a history exists) or at `--at` (a
//! what-if, never recorded). A what-if in the past is decided on the lane states as they stood
//! then, rebuilt from the history; one in the future on today's states.

use super::output::{clean, or_dash, table};
use super::{Access, CliResult, Session, emit, parse_at, print_json_lines};
use crate::engine::Decision;
use crate::home::Home;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Lanes to decide (default: all).
    lanes: Vec<String>,
    /// Decide at this RFC 3339 time instead of now; nothing is recorded.
    #[arg(long)]
    at: Option<String>,
    /// One JSON decision per line (docs/DESIGN.md §4).
    #[arg(long)]
    json: bool,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let session = Session::open(home, Access::WriteExisting)?;
    let lanes = session.select(&args.lanes)?;
    let decisions = match at {
        None => session.decide(&lanes, session.now(), None)?,
        Some(at) => {
            let (states, notes) = session.states_at(at)?;
            for note in notes {
                eprintln!("lanekeeper: note: {note}");
            }
            session.decide_on(states, &lanes, at, None)
        }
    };
    if at.is_none() {
        // On a home with no history yet, the store is in memory: nothing is kept.
        session
            .store
            .record_decisions(&decisions, crate::engine::Origin::Check)?;
    }
    if args.json {
        // docs/DESIGN.md §4's shape; fingerprints are kept in the history and shown by `explain`.
        let shown: Vec<Decision> = decisions
            .into_iter()
            .map(|mut d| {
                d.hashes = None;
                d
            })
            .collect();
        print_json_lines(&shown, &session.config.secrets())?;
    } else {
        emit(&crate::config::env::redact(
            &render(&decisions),
            &session.config.secrets(),
        ))?;
    }
    Ok(0)
}

/// The decision table shared by `check` and `run --once`.
pub fn render(decisions: &[Decision]) -> String {
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            [
                d.outcome.as_str().to_string(),
                or_dash(d.reason.as_deref()),
                d.lane.clone(),
                or_dash(d.gate.as_deref().or(d.source.map(|s| s.as_str()))),
                or_dash(
                    d.detail
                        .as_deref()
                        .or_else(|| d.chain.first().and_then(|c| c.detail.as_deref())),
                ),
            ]
            .iter()
            .map(|cell| clean(cell).into_owned())
            .collect()
        })
        .collect();
    table(&["OUTCOME", "REASON", "LANE", "GATE", "DETAIL"], &rows)
}
