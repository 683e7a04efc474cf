//! `lanekeeper validate`: every problem in one pass, or a one-line summary. Warnings (such as a
//! program not found here) are shown but do not fail it.

use super::{CliResult, emit, print_json_lines};
use crate::compile;
use crate::home::Home;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON object per problem on stdout: file, line, col, lane, message, severity.
    #[arg(long)]
    json: bool,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let (config, diags) = compile::load_lenient(home);
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let code = if errors > 0 { 1 } else { 0 };
    if args.json {
        print_json_lines(&diags.iter().collect::<Vec<_>>())?;
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
        emit(&format!(
            "{}: {} lane(s), {} plugin(s): ok{warned}\n{}",
            home.root().display(),
            config.lanes.len(),
            config.registry.names().len(),
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
