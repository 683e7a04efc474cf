//! The command line (docs/DESIGN.md §5): parsing, one module per command, and the mapping of errors
//! to messages and exit codes (0 ok, 1 invalid configuration or failure, 2 usage).

mod calendar;
mod check;
mod completions;
mod diff;
mod explain;
mod fire;
mod history;
mod logs;
mod output;
mod pause;
mod plugin;
mod record;
mod run;
mod schema;
mod simulate;
mod state;
mod status;
mod stop;
mod validate;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;

use crate::clock::{Clock, SystemClock};
use crate::compile::{self, Config, Lane};
use crate::config::Diagnostics;
use crate::dispatch::process;
use crate::engine::{self, Decision};
use crate::home::Home;
use crate::observe::{LiveObserver, Observer};
use crate::state::{Access, LaneStates, Location, Store};

/// Coordinates heavy maintenance jobs ("lanes") behind ordered, pluggable preconditions.
#[derive(Parser, Debug)]
#[command(name = "lanekeeper", version, about, max_term_width = 100)]
pub struct Cli {
    /// The lanekeeper home: rules/, plugins/, state/ and lanekeeper.yaml.
    #[arg(long, global = true, env = "LANEKEEPER_HOME", default_value = ".")]
    home: PathBuf,
    /// Where state lives, overriding `state:` in lanekeeper.yaml: a file, or a `postgres://`
    /// URL that replicas share (the password from PGPASSWORD or ~/.pgpass).
    #[arg(long, global = true, env = "LANEKEEPER_STATE")]
    state: Option<String>,
    /// This replica's name among those sharing a PostgreSQL store (default: the host name).
    #[arg(long, global = true, env = "LANEKEEPER_HOST")]
    host: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check rules and plugins; print one `path:line:col: message` per problem.
    Validate(validate::Args),
    /// Decide every lane (or the named ones) now or at --at, dispatching nothing.
    Check(check::Args),
    /// Run a lane's command now, bypassing preconditions but not its lock.
    Fire(fire::Args),
    /// Record a run made outside lanekeeper, e.g. a backup taken by hand.
    Record(record::Args),
    /// Per lane: last run, last success, running pid, next due, current deferral.
    Status(status::Args),
    /// The whole chain and evidence behind a lane's decision, now or at a past --at.
    Explain(explain::Args),
    /// Hold lanes back with a note (`--all` for a maintenance window), optionally `--until` a time.
    Pause(pause::PauseArgs),
    /// End the pause of lanes (`--all`: every paused lane).
    Resume(pause::ResumeArgs),
    /// End a lane's running run: TERM to its processes, KILL after the grace; recorded as cancelled.
    Stop(stop::Args),
    /// Print a run's log (the latest by default); `--follow` streams a live run's log.
    Logs(logs::Args),
    /// A lane's runs, deferral episodes and pauses, as a table or `--json`.
    History(history::Args),
    /// Evaluate all lanes and run what triggers (`--once`: one pass, then wait and exit).
    Run(run::Args),
    /// The JSON Schema of a lane file (default) or of lanekeeper.yaml, for editors and CI.
    Schema(schema::Args),
    /// The next fire times of each lane, by its schedule and as its window gates allow.
    Calendar(calendar::Args),
    /// Run the engine over simulated time, answered from facts; print each lane's timeline.
    Simulate(simulate::Args),
    /// Replay a period through the current and candidate rules; print where decisions differ
    /// (exit 1 when they do).
    Diff(diff::Args),
    /// The recorded state itself: `state copy --to URL` moves an SQLite history into
    /// PostgreSQL.
    #[command(subcommand)]
    State(state::Command),
    /// Plugin authoring: `plugin new NAME --rhai|--wasm` writes a working skeleton with a test.
    #[command(subcommand)]
    Plugin(plugin::Command),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write one per command with `--dir`.
    Man(completions::ManArgs),
    /// Internal: a run's own supervisor, started by `fire` and the daemon (a run spec on stdin).
    #[command(hide = true)]
    SuperviseRun,
}

/// A failure at the command-line edge, with its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Invalid configuration: every problem, each with its place.
    Config(Diagnostics),
    /// Bad arguments (exit 2).
    Usage(String),
    /// Anything else that stopped the command (exit 1).
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Failed(e.into())
    }
}

type CliResult = Result<i32, CliError>;

/// `--tz`: an IANA time zone, when given.
fn zone_flag(tz: Option<&str>) -> Result<Option<jiff::tz::TimeZone>, CliError> {
    tz.map(|z| {
        jiff::tz::TimeZone::get(z).map_err(|e| {
            CliError::Usage(format!(
                "--tz `{z}` is not an IANA time zone ({e}); write e.g. Europe/Berlin"
            ))
        })
    })
    .transpose()
}

/// Which way a duration given for a time counts from now.
#[derive(Clone, Copy)]
enum Offset {
    /// `--since 24h`: that long ago.
    Back,
    /// `--until 2h`: that long from now.
    Ahead,
}

/// A time flag's value: an RFC 3339 time, or a duration from `now` (back or ahead).
fn time_or_offset(
    flag: &str,
    text: &str,
    now: jiff::Timestamp,
    way: Offset,
) -> Result<jiff::Timestamp, CliError> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    crate::model::duration::parse(text)
        .map(|d| match way {
            Offset::Back => crate::clock::earlier(now, d),
            Offset::Ahead => crate::clock::later(now, d),
        })
        .map_err(|e| {
            CliError::Usage(format!(
                "{flag} `{text}` is neither an RFC 3339 time nor a duration ({e}); write e.g. 2026-05-10T06:00:00Z or {}",
                match way {
                    Offset::Back => "24h",
                    Offset::Ahead => "2h",
                }
            ))
        })
}

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            };
        }
    };
    init_logging(&cli);
    let home = Home::new(cli.home.clone())
        .with_state(cli.state.clone())
        .with_host(cli.host.clone());
    // Every command, `plugin new` included, works on an existing home: a mistyped --home must
    // not leave state/ or plugins/ in some other directory.
    // Completions and man pages come from the parser alone: no home needed.
    let needs_home = !matches!(cli.command, Command::Completions(_) | Command::Man(_));
    let checked = if needs_home {
        require_home(&home)
    } else {
        Ok(())
    };
    let result = match checked {
        Err(e) => Err(e),
        Ok(()) => match cli.command {
            Command::Validate(a) => validate::run(&home, a),
            Command::Check(a) => check::run(&home, a),
            Command::Fire(a) => fire::run(&home, a),
            Command::Record(a) => record::run(&home, a),
            Command::Status(a) => status::run(&home, a),
            Command::Explain(a) => explain::run(&home, a),
            Command::Run(a) => run::run(&home, a),
            Command::Pause(a) => pause::pause(&home, a),
            Command::Resume(a) => pause::resume(&home, a),
            Command::Stop(a) => stop::run(&home, a),
            Command::Logs(a) => logs::run(&home, a),
            Command::History(a) => history::run(&home, a),
            Command::Simulate(a) => simulate::run(&home, a),
            Command::Diff(a) => diff::run(&home, a),
            Command::Calendar(a) => calendar::run(&home, a),
            Command::Plugin(c) => plugin::run(&home, c),
            Command::State(c) => state::run(&home, c),
            Command::Schema(a) => schema::run(&home, a),
            Command::SuperviseRun => Ok(crate::dispatch::supervisor::main(&home)),
            Command::Completions(a) => completions::completions(a),
            Command::Man(a) => completions::man(a),
        },
    };
    match result {
        Ok(code) => code,
        Err(CliError::Config(diags)) => {
            eprint!("{}", output::clean_lines(&diags.to_string()));
            eprintln!(
                "lanekeeper: {} problem(s) in the configuration under {}; fix them and run `lanekeeper validate`",
                diags.len(),
                home.root().display()
            );
            1
        }
        Err(CliError::Usage(msg)) => {
            eprintln!("lanekeeper: {msg}");
            2
        }
        Err(CliError::Failed(e)) => {
            eprintln!("lanekeeper: {e:#}");
            1
        }
    }
}

/// A home is a directory with `rules/`; anything else is refused before anything is written.
fn require_home(home: &Home) -> Result<(), CliError> {
    if home.rules_dir().is_dir() {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "`{}` is not a lanekeeper home: it has no rules/ directory; create rules/ or pass --home (or set LANEKEEPER_HOME)",
        home.root().display()
    )))
}

fn init_logging(cli: &Cli) {
    // Commands report to the terminal themselves; logs are for problems unless asked for.
    // The daemon's log is its report.
    let default = match &cli.command {
        Command::Run(a) if !a.once => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LANEKEEPER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Parses `--at` (RFC 3339).
fn parse_at(text: &str) -> Result<Timestamp, CliError> {
    text.parse::<Timestamp>().map_err(|e| {
        CliError::Usage(format!(
            "--at `{text}` is not an RFC 3339 time ({e}); write e.g. 2026-05-09T22:00:00Z or 2026-05-10T00:00:00+02:00"
        ))
    })
}

/// Where `home`'s state lives, by `--state`, then `state:`, then the home's own file.
fn state_location(home: &Home, config: &Config) -> Result<Location, CliError> {
    Location::of(home, config.settings.state.as_deref()).map_err(|e| {
        CliError::Usage(format!(
            "{}: {e}",
            match home.state_override() {
                Some(_) => "--state",
                None => "state: in lanekeeper.yaml",
            }
        ))
    })
}

/// A loaded home: configuration, store and the live observer.
struct Session {
    config: Config,
    store: Box<dyn Store>,
    /// Where the store is, for the supervisors of runs this command starts.
    location: Location,
    observer: Arc<dyn Observer>,
    clock: SystemClock,
}

impl Session {
    fn open(home: &Home, access: Access) -> Result<Self, CliError> {
        let config = compile::load(home).map_err(CliError::Config)?;
        Self::with_config(home, config, access)
    }

    /// A session over whatever lanes are valid, for read-only views; returns the problems too.
    fn open_lenient(home: &Home, access: Access) -> Result<(Self, Diagnostics), CliError> {
        let (config, diags) = compile::load_lenient(home);
        Ok((Self::with_config(home, config, access)?, diags))
    }

    fn with_config(home: &Home, config: Config, access: Access) -> Result<Self, CliError> {
        let location = state_location(home, &config)?;
        crate::state::refuse_lost_history(home, &location)?;
        let store = location.open(access)?;
        Ok(Self {
            config,
            store,
            location,
            observer: Arc::new(LiveObserver::default()),
            clock: SystemClock,
        })
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Lane states as recorded, with runs whose process is gone no longer counted as running,
    /// and an empty state for every configured lane that has none yet (so plugins see them all).
    fn states(&self) -> Result<LaneStates, CliError> {
        let mut states = process::live_states(&*self.store, &self.config.lanes)?;
        process::note_alive_hosts(
            &mut states,
            &*self.store,
            self.config.home.host(),
            self.config.settings.lease_ttl,
        )?;
        Ok(states)
    }

    /// The lanes named, in the order given, or all lanes.
    fn select(&self, names: &[String]) -> Result<Vec<&Lane>, CliError> {
        if names.is_empty() {
            return Ok(self.config.lanes.iter().collect());
        }
        names.iter().map(|n| self.lane(n)).collect()
    }

    fn lane(&self, name: &str) -> Result<&Lane, CliError> {
        self.config.lane(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.lanes.iter().map(|l| l.name.as_str()).collect();
            CliError::Usage(format!(
                "unknown lane `{name}` (lanes in {}: {})",
                self.config.home.rules_dir().display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The lane states a pass at `at` would see, and what the reader should know about them.
    /// At the present: as recorded now. In the past: rebuilt from the history as they stood
    /// then. In the future: as now, assuming nothing runs in between.
    fn states_at(&self, at: Timestamp) -> Result<(LaneStates, Vec<String>), CliError> {
        let now = self.now();
        if at >= now {
            let mut notes = Vec::new();
            if at > now {
                notes.push(format!(
                    "{at} is in the future: lanes are decided on their states now ({now}), assuming nothing runs or is recorded in between"
                ));
            }
            return Ok((self.states()?, notes));
        }
        let past = self.store.lane_states_at(at)?;
        let mut notes = Vec::new();
        match (past.coverage.first_record, past.coverage.horizon) {
            (_, Some(h)) if at < h => notes.push(format!(
                "the history before {h} was pruned (history.retention), so the states at {at} may miss runs and deferrals"
            )),
            (None, _) => notes.push(format!(
                "nothing is recorded in this home yet, so at {at} every lane counts as never run"
            )),
            (Some(first), _) if at <= first => notes.push(format!(
                "the history starts at {first}; at {at} nothing was recorded yet, so every lane counts as never run"
            )),
            _ => {}
        }
        let mut states = past.states;
        for lane in &self.config.lanes {
            states.entry(lane.name.clone()).or_default();
        }
        Ok((states, notes))
    }

    /// One evaluation pass at `now` over every lane (groups need them all), on `states`;
    /// returns the decisions of `only`, in that order. `explain` names a lane to evaluate in
    /// full.
    fn decide_on(
        &self,
        states: LaneStates,
        only: &[&Lane],
        now: Timestamp,
        explain: Option<&str>,
    ) -> Vec<Decision> {
        let mut decisions = engine::pass_all(
            &self.config,
            Arc::new(states),
            now,
            Arc::clone(&self.observer),
            explain,
        );
        only.iter()
            .filter_map(|lane| {
                let i = decisions.iter().position(|d| d.lane == lane.name)?;
                Some(decisions.swap_remove(i))
            })
            .collect()
    }

    /// [`Self::decide_on`] the states recorded now.
    fn decide(
        &self,
        only: &[&Lane],
        now: Timestamp,
        explain: Option<&str>,
    ) -> Result<Vec<Decision>, CliError> {
        Ok(self.decide_on(self.states()?, only, now, explain))
    }
}

/// Who is at the command line, for the record: `USER`, else `LOGNAME`, else `uid N`.
fn operator() -> String {
    ["USER", "LOGNAME"]
        .into_iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// Tells a running daemon to decide again now: it watches the home's wake file. Without a
/// daemon nothing watches it, and the next one reads the store at its first pass anyway.
fn wake_daemon(home: &Home) {
    let file = home.wake_file();
    if let Err(e) = std::fs::write(&file, b"1\n") {
        tracing::warn!(file = %file.display(), "Could not wake the daemon ({e}); it sees the change at its next pass.");
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends output quietly instead of failing.
fn emit(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints items as JSON, one object per line.
/// One JSON object per line, with the secrets of `redact` (values from the environment) left
/// out.
fn print_json_lines<T: serde::Serialize>(
    items: &[T],
    redact: &[crate::config::env::EnvRef],
) -> Result<(), CliError> {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item)?);
        text.push('\n');
    }
    emit(&crate::config::env::redact(&text, redact))
}
