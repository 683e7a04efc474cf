//! `lanekeeper state copy --to URL`: moves a home's SQLite history into PostgreSQL, so
//! replicas on several machines can share it.

use std::io::IsTerminal;

use clap::{Args as ClapArgs, Subcommand};

use super::{CliError, CliResult, emit};
use crate::dispatch::lock::{LaneLock, LockError};
use crate::home::Home;
use crate::state::{Location, PostgresStore};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy this home's SQLite history (runs, episodes, pauses, hooks) into an empty
    /// PostgreSQL database; then point `state:` at it.
    Copy(CopyArgs),
}

#[derive(ClapArgs, Debug)]
pub struct CopyArgs {
    /// The PostgreSQL database to fill: `postgres://HOST/DB` or `host=… dbname=…` (the
    /// password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    to: String,
}

pub fn run(home: &Home, command: Command) -> CliResult {
    let Command::Copy(args) = command;
    let to = match Location::parse(&args.to, home) {
        Ok(Location::Postgres(url)) => url,
        Ok(Location::File(_)) => {
            return Err(CliError::Usage(format!(
                "--to {}: not a PostgreSQL database; give a postgres:// URL or `host=… dbname=…`",
                args.to
            )));
        }
        Err(e) => return Err(CliError::Usage(format!("--to: {e}"))),
    };
    let config = crate::compile::load_lenient(home).0;
    let from = match super::state_location(home, &config)? {
        Location::File(path) => path,
        Location::Postgres(url) => {
            return Err(CliError::Usage(format!(
                "this home's state is already in PostgreSQL ({}); `state copy` copies an SQLite history",
                crate::state::postgres::redact(&url)
            )));
        }
    };
    if !from.exists() {
        return Err(CliError::Failed(anyhow::anyhow!(
            "{}: no history to copy (nothing has run here yet); point `state:` at the database and start there",
            from.display()
        )));
    }
    // A daemon writing meanwhile would leave decisions behind in the old file.
    let _held = match LaneLock::try_acquire(&home.state_dir().join("daemon.lock")) {
        Ok(lock) => lock,
        Err(LockError::Busy { holder }) => {
            return Err(CliError::Failed(anyhow::anyhow!(
                "a daemon ({}) is running on this home; stop it first, so nothing it records after the copy is left behind",
                holder.map_or("pid unknown".into(), |p| format!("pid {p}"))
            )));
        }
        Err(e) => return Err(CliError::Failed(anyhow::anyhow!("{e}"))),
    };
    let store = PostgresStore::connect(&to)?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "copying {wide_bar} {pos}/{len} rows (eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = store.copy_from_sqlite(&from, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = report?;
    let mut text = format!(
        "copied {} rows from {} to {}:\n",
        report.total(),
        from.display(),
        crate::state::postgres::redact(&to)
    );
    for (table, rows) in &report.tables {
        text.push_str(&format!("  {table}: {rows}\n"));
    }
    text.push_str(
        "next: set `state:` in lanekeeper.yaml (or LANEKEEPER_STATE) to that URL on every replica, then start them; keep the SQLite file as a backup\n",
    );
    emit(&text)?;
    Ok(0)
}
