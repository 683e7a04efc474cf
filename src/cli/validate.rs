//! `lanekeeper validate`: every problem in one pass, or a one-line summary. Warnings (such as a
//! program not found here) are shown but do not fail it.

use super::{CliResult, emit, print_json_lines};
use crate::clock::{Clock, SystemClock};
use crate::compile;
use crate::config::Diagnostic;
use crate::config::diagnostic::Severity;
use crate::dispatch;
use crate::home::Home;
use crate::lint;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON object per problem on stdout: file, line, col, lane, message, severity (and
    /// rule and fix for a lint finding).
    #[arg(long)]
    json: bool,
    /// Lint findings are errors (exit 1), not warnings: for CI on a rules repository.
    #[arg(long)]
    strict: bool,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let (config, mut diags) = compile::load_lenient(home);
    for mut finding in lint::lint(&config, SystemClock.now()).iter().cloned() {
        if args.strict {
            finding.severity = Severity::Error;
        }
        diags.push(finding);
    }
    let containment = dispatch::cgroup::placement(&config.settings.cgroup);
    if let Err(why) = &containment {
        for lane in config.lanes.iter().filter(|l| l.command.limits.any()) {
            diags.push(
                Diagnostic::file(
                    &lane.file,
                    format!(
                        "limits ({}) will not be applied on this machine: {why}",
                        lane.command.limits.describe()
                    ),
                )
                .for_lane(&lane.name)
                .warning(),
            );
        }
    }
    // `hosts:` picks among replicas sharing a store; with the home's own database there is
    // one host, and a lane whose hosts do not name it never runs.
    let shared = crate::state::Location::of(home, config.settings.state.as_deref())
        .is_ok_and(|l| l.is_shared());
    if !shared {
        for lane in config.lanes.iter().filter(|l| !l.hosts.is_empty()) {
            let message = format!(
                "`hosts: [{}]` only means something on a shared PostgreSQL store (`state:` in lanekeeper.yaml); with this home's own database the only host is this one ({}), and the lane runs only if its hosts name it",
                lane.hosts.join(", "),
                home.host()
            );
            let d = match lane.places.hosts {
                Some(at) => crate::config::at(&lane.file, at, message),
                None => Diagnostic::file(&lane.file, message),
            };
            diags.push(d.for_lane(&lane.name).warning());
        }
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let code = if errors > 0 { 1 } else { 0 };
    if args.json {
        print_json_lines(&diags.iter().collect::<Vec<_>>(), &[])?;
        return Ok(code);
    }
    eprint!("{}", super::output::clean_lines(&diags.to_string()));
    let warned = match warnings {
        0 => String::new(),
        1 => " (1 warning)".into(),
        n => format!(" ({n} warnings)"),
    };
    if errors > 0 {
        eprintln!(
            "lanekeeper: {errors} problem(s){warned} in the configuration under {}; fix them and run `lanekeeper validate`",
            home.root().display()
        );
    } else {
        let runs = match &containment {
            Ok(base) => format!(
                "runs: each in a cgroup of its own under {}",
                base.dir.display()
            ),
            Err(why) => {
                format!("runs: stopped by process group and descendants (no cgroup: {why})")
            }
        };
        emit(&format!(
            "{}: {} lane(s), {} plugin(s): ok{warned}\n{}\n{}",
            home.root().display(),
            config.lanes.len(),
            config.registry.names().len(),
            super::output::clean(&runs),
            grants(&config)
        ))?;
    }
    Ok(code)
}

/// What each gate may reach through the host; everything else is refused.
fn grants(config: &compile::Config) -> String {
    let rows: Vec<Vec<String>> = config
        .lanes
        .iter()
        .flat_map(|lane| {
            lane.gates.iter().map(move |g| {
                vec![
                    lane.name.clone(),
                    g.name.clone(),
                    super::output::clean(&g.grants.to_string()).into_owned(),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\ngrants (what each gate may reach; anything else is a plugin-error):\n{}",
        super::output::table(&["LANE", "GATE", "MAY REACH"], &rows)
    )
}
