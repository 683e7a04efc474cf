//! `lanekeeper schema [lane|settings]`: the JSON Schema of a lane file (with each plugin's
//! `with:` of this home) or of `lanekeeper.yaml`, for editors and CI.

use super::{CliResult, emit};
use crate::compile;
use crate::home::Home;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which file: a lane file (rules/*.yaml) or lanekeeper.yaml.
    #[arg(value_enum, default_value = "lane")]
    file: File,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum File {
    /// rules/*.yaml, with the `with:` of each plugin in this home's plugins/.
    Lane,
    /// lanekeeper.yaml.
    Settings,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let schema = match args.file {
        File::Lane => {
            // The plugins that load are enough; a broken one is `validate`'s to report.
            let (config, _) = compile::load_lenient(home);
            crate::json_schema::lane(&config.registry)
        }
        File::Settings => crate::json_schema::settings(),
    };
    emit(&format!("{}\n", serde_json::to_string_pretty(&schema)?))?;
    Ok(0)
}
