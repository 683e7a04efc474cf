//! `lanekeeper run --once`: one evaluation pass, then the triggered lanes run one after another
//! (each decided afresh just before it starts, since the previous run changed the world), and
//! the command exits once they have all finished.

use super::check::render;
use super::fire::summary;
use super::{CliError, CliResult, Session, emit, print_json_lines};
use crate::dispatch;
use crate::engine::{ChainMode, Outcome};
use crate::home::Home;
use crate::state::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run one pass, wait for what it dispatched, and exit.
    #[arg(long)]
    once: bool,
    /// Print decisions as JSON lines.
    #[arg(long)]
    json: bool,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    if !args.once {
        return Err(CliError::Usage(
            "only `run --once` is available in this version; schedule it from a systemd timer or cron".into(),
        ));
    }
    let session = Session::open(home)?;
    let lanes: Vec<_> = session.config.lanes.iter().collect();
    let decisions = session.decide(&lanes, session.now(), ChainMode::FirstDeferral)?;
    session.store.record_decisions(&decisions)?;
    if args.json {
        print_json_lines(&decisions)?;
    } else {
        emit(&render(&decisions))?;
    }

    let mut triggered: Vec<_> = decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Trigger)
        .filter_map(|d| session.config.lane(&d.lane))
        .collect();
    triggered.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for (i, lane) in triggered.into_iter().enumerate() {
        // The first lane was decided a moment ago; later ones must see the runs before them.
        let decision = if i == 0 {
            decisions.iter().find(|d| d.lane == lane.name).cloned()
        } else {
            let fresh = session.decide(&[lane], session.now(), ChainMode::FirstDeferral)?;
            session.store.record_decisions(&fresh)?;
            fresh.into_iter().next()
        };
        let Some(decision) = decision.filter(|d| d.outcome == Outcome::Trigger) else {
            eprintln!(
                "lane `{}`: no longer triggers after the runs before it",
                lane.name
            );
            continue;
        };
        let source = decision
            .source
            .map(|s| s.as_str())
            .unwrap_or("periodic-sweep");
        let mut on_start = |pid: u32, log: &std::path::Path| {
            eprintln!(
                "lane `{}`: started pid {pid} ({source}), log {}",
                lane.name,
                log.display()
            );
        };
        let (stop, stop_rx) = dispatch::stop_channel();
        runtime.block_on(async { dispatch::forward_signals(stop) })?;
        match runtime.block_on(dispatch::run_lane(
            home,
            lane,
            &session.store,
            &session.clock,
            source,
            &mut on_start,
            stop_rx,
        )) {
            Ok(report) => eprintln!("{}", summary(&lane.name, &report)),
            Err(e) => eprintln!("lanekeeper: {e}"),
        }
    }
    Ok(0)
}
