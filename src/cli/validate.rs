//! `lanekeeper validate`: every problem in one pass, or a one-line summary.

use super::{CliError, CliResult};
use crate::config;
use crate::home::Home;

pub fn run(home: &Home) -> CliResult {
    let config = config::load(home).map_err(CliError::Config)?;
    super::emit(&format!(
        "{}: {} lane(s), {} plugin(s): ok\n",
        home.root().display(),
        config.lanes.len(),
        config.registry.names().len()
    ))?;
    Ok(0)
}
