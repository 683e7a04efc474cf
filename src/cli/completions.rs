//! `lanekeeper completions SHELL` and `lanekeeper man`: generated from the parser itself, so
//! they never drift from the commands. Neither needs a home.

use clap::CommandFactory;

use super::{Cli, CliResult, emit};

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for; e.g. `lanekeeper completions bash > /etc/bash_completion.d/lanekeeper`.
    shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write lanekeeper.1 and a lanekeeper-COMMAND.1 per command into DIR, instead of printing
    /// lanekeeper.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// The command line as operators see it: the hidden internal commands (`supervise-run`) left
/// out, which the generators would otherwise offer.
fn visible() -> clap::Command {
    let full = Cli::command();
    let mut command = clap::Command::new(full.get_name().to_string())
        .max_term_width(100)
        .subcommand_required(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(version) = full.get_version() {
        command = command.version(version.to_string());
    }
    if let Some(about) = full.get_about() {
        command = command.about(about.clone());
    }
    command
}

/// Prints the completion script for `shell`.
pub fn completions(args: CompletionsArgs) -> CliResult {
    let mut command = visible();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "lanekeeper", &mut out);
    emit(&String::from_utf8_lossy(&out))?;
    Ok(0)
}

/// Prints the man page (roff), or writes one per command into `--dir`.
pub fn man(args: ManArgs) -> CliResult {
    let command = visible();
    let page = |c: clap::Command| -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c).render(&mut out)?;
        Ok(out)
    };
    let Some(dir) = args.dir else {
        emit(&String::from_utf8_lossy(&page(command)?))?;
        return Ok(0);
    };
    let write = |name: &str, bytes: Vec<u8>| -> CliResult {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(0)
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    for sub in command.get_subcommands() {
        let name = format!("lanekeeper-{}", sub.get_name());
        write(&name, page(sub.clone().name(name.clone()))?)?;
    }
    write("lanekeeper", page(command)?)
}
