//! Recorded state: what each lane did, and the decisions made about it.
//!
//! [`Store`] is the seam for backends; [`sqlite::SqliteStore`] is the embedded one. The types here
//! are plain data so the engine can read them without knowing where they came from.

pub mod lease;
pub mod location;
pub mod postgres;
pub mod sqlite;
mod stored;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::decision::{Decision, Origin};

pub use lease::{LeaderView, Leadership, Lease};
pub use location::{Access, Location, LocationError};
pub use postgres::{PostgresStore, RunClaim};
pub use sqlite::SqliteStore;

pub use crate::model::hook::{HookEvent, HookFiring, HookResult};
pub use crate::model::lane_state::{ExitInfo, LaneState, LaneStates, Pause, RunResult, RunningRun};

/// Errors of the state store, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("state database {path}: {op}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error (boxed: rusqlite's error is large and errors are rare).
        #[source]
        source: Box<rusqlite::Error>,
    },
    /// The disk or permissions stopped the database: full, failing, read-only, unreachable
    /// or damaged, said in words with what to do.
    #[error("state database {path}: {op}: {problem}")]
    Disk {
        /// The database file.
        path: String,
        /// What was being done.
        op: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The state directory could not be created.
    #[error("state directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer lanekeeper.
    #[error(
        "state database {path} has schema version {found}, newer than this lanekeeper understands ({supported}); upgrade lanekeeper"
    )]
    TooNew {
        /// The database file.
        path: String,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The lane is paused, so a run that honours pauses was not recorded (nor started).
    #[error(
        "lane `{lane}` is {}; resume it with `lanekeeper resume {lane}`",
        crate::model::decision::pause_words(pause)
    )]
    Paused {
        /// The lane.
        lane: String,
        /// The pause in force (boxed: errors stay small).
        pause: Box<Pause>,
    },
    /// The shared database could not be reached, read or written.
    #[error("PostgreSQL {url}: {op}: {}", postgres::describe(error))]
    Postgres {
        /// The connection URL, password hidden.
        url: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error (boxed: errors stay small). Not the error's `source()`: the
        /// client says only "db error" at the top, so the message carries its causes and what
        /// to do, and a chain printed by `{:#}` would say them twice.
        error: Box<::postgres::Error>,
    },
    /// The shared database holds something lanekeeper cannot use, said in words.
    #[error("PostgreSQL {url}: {op}: {problem}")]
    PostgresData {
        /// The connection URL, password hidden.
        url: String,
        /// What was being done.
        op: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A copy into a database that already holds a history, which it would mix with.
    #[error(
        "PostgreSQL {url} already holds a lanekeeper history ({rows}); copy into an empty database instead: create one (`createdb NAME`) and name it in the URL, or, if this history is to be replaced, back it up (`pg_dump`) and drop its tables first"
    )]
    NotEmpty {
        /// The connection URL, password hidden.
        url: String,
        /// What it holds.
        rows: String,
    },
    /// A write of a replica that no longer leads: its fencing token is not the lease's, or
    /// its lease expired. Nothing was written.
    #[error(
        "fenced: this replica's leader lease (token {token}) {}; nothing was written",
        match current { Some(c) => format!("was taken over (the lease now has token {c})"), None => "expired and nobody holds the lease now".to_string() }
    )]
    Fenced {
        /// The token the write carried.
        token: i64,
        /// The token of the lease in force, if one is.
        current: Option<i64>,
    },
    /// A run that is not in progress was asked to finish.
    #[error("run {0} is not recorded as running")]
    NotRunning(i64),
    /// The database is empty or missing, but run logs show the home has run lanes.
    #[error(
        "state database {path} is {what}, but {logs} run log(s) under {runs} show that lanes ran here: the history is lost, and a new one would run every lane again as if it never ran. Restore it from a backup: stop lanekeeper, `gunzip -c BACKUP > {path}` and remove {path}-wal and {path}-shm{newest}. Or, to start afresh on purpose, move the run logs aside: `mv {runs} {runs}.old`"
    )]
    Lost {
        /// The database file.
        path: String,
        /// `empty` or `missing`.
        what: &'static str,
        /// How many run logs there are.
        logs: usize,
        /// Where they are.
        runs: String,
        /// The newest backup archive, in words (empty if none).
        newest: String,
    },
}

impl StoreError {
    /// A SQLite error on the database at `path` while doing `op`. A full or failing disk and
    /// missing permissions are said as such, with what to do, rather than as SQLite's "disk
    /// I/O error 4874"; anything else as SQLite says it.
    pub fn sqlite(path: &std::path::Path, op: &'static str, source: rusqlite::Error) -> Self {
        match disk_problem(path, &source) {
            Some(problem) => StoreError::Disk {
                path: path.display().to_string(),
                op,
                problem,
            },
            None => StoreError::Sqlite {
                path: path.display().to_string(),
                op,
                source: Box::new(source),
            },
        }
    }
}

impl StoreError {
    /// A PostgreSQL error on the database at `url` (password hidden) while doing `op`.
    pub fn postgres(url: &str, op: &'static str, error: ::postgres::Error) -> Self {
        StoreError::Postgres {
            url: url.to_string(),
            op,
            error: Box::new(error),
        }
    }
}

/// What a disk or permission failure of SQLite means for the operator, if it is one.
fn disk_problem(path: &std::path::Path, e: &rusqlite::Error) -> Option<String> {
    use rusqlite::ErrorCode as C;
    let rusqlite::Error::SqliteFailure(failure, message) = e else {
        return None;
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .display();
    let access = format!(
        "check the owner and permissions of {dir} and the files in it (run lanekeeper as the user that owns them), and that its file system is mounted read-write"
    );
    let what = match failure.code {
        C::DiskFull => format!(
            "the file system holding {dir} is full; free some space there (`df {dir}` shows what is left), then try again"
        ),
        C::SystemIoFailure => format!(
            "the disk reported an I/O error: the file system holding {dir} may be full, failing or no longer mounted; check its free space (`df {dir}`) and the kernel log (`dmesg`), then try again"
        ),
        C::ReadOnly => format!("the database cannot be written; {access}"),
        C::PermissionDenied => format!("access to the database was denied; {access}"),
        C::CannotOpen => format!(
            "the database cannot be opened: {dir} must be a directory this user may write, and the database and the files beside it (-wal, -shm) regular files it may read and write; {access}"
        ),
        C::DatabaseCorrupt | C::NotADatabase => format!(
            "the file is damaged or not a lanekeeper database; restore it from a backup in {dir}/backups (docs/OPERATIONS.md, \"Damaged or lost state\")"
        ),
        _ => return None,
    };
    let said = message
        .clone()
        .unwrap_or_else(|| format!("{:?}", failure.code));
    Some(format!(
        "{what} (SQLite: {said}, code {})",
        failure.extended_code
    ))
}

/// Refuses an empty or missing database next to run logs (`state/runs/*/*.log`): the history
/// was lost (a truncated file, a deleted one), and starting a new one would silently run every
/// lane again. An empty database with no run logs is a new history, as `Home::init_history` in
/// the tests makes one.
pub fn refuse_lost_history(
    home: &crate::home::Home,
    location: &Location,
) -> Result<(), StoreError> {
    let Location::File(db) = location else {
        return Ok(());
    };
    let what = match std::fs::metadata(db) {
        Ok(m) if m.len() > 0 => return Ok(()),
        Ok(_) => "empty",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
        // Anything else is for opening it to report.
        Err(_) => return Ok(()),
    };
    let runs = home.state_dir().join("runs");
    let logs = count_files(&runs, |dir| count_files(dir, |f| usize::from(is_log(f))));
    if logs == 0 {
        return Ok(());
    }
    let backups = home.state_dir().join("backups");
    let newest = std::fs::read_dir(&backups)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let newest = match newest {
        Some(p) => format!("; the newest backup is {}", p.display()),
        None => format!(
            "; there is none in {} (the shipped `backup` lane writes them there)",
            backups.display()
        ),
    };
    Err(StoreError::Lost {
        path: db.display().to_string(),
        what,
        logs,
        runs: runs.display().to_string(),
        newest,
    })
}

fn is_log(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|x| x == "log")
}

/// The sum of `count` over the entries of `dir` (0 if it cannot be read).
fn count_files(dir: &std::path::Path, count: impl Fn(&std::path::Path) -> usize) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| count(&e.path()))
        .sum()
}

/// One finished or running run, as listed by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Row id.
    pub id: i64,
    /// The lane.
    pub lane: String,
    /// What started it (`manual`, `periodic-sweep`, `record`, …).
    pub source: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended, if it has.
    pub ended_at: Option<Timestamp>,
    /// Its result, once ended.
    pub result: Option<RunResult>,
    /// The exit code or signal, once ended.
    pub exit: Option<ExitInfo>,
    /// The child's pid, if a child was started.
    pub pid: Option<u32>,
    /// The child's start time in clock ticks since boot, with `pid`.
    #[serde(skip)]
    pub pid_start: Option<u64>,
    /// The run log, if any.
    pub log_path: Option<String>,
    /// Who asked to stop it (`lanekeeper stop`), if anyone did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
}

impl RunRecord {
    /// Adds this run to `state` as it stood at `at`: started if it started before `at`, and
    /// ended (with its result) if it ended at or before `at`, otherwise still running. Results
    /// count by time, not by the order they were recorded in. Fold runs in the order they
    /// ended ([`replay`] does), so a failure streak starts at its first failure.
    fn fold_into(&self, state: &mut LaneState, at: Timestamp) {
        if self.started_at >= at {
            return;
        }
        state.last_run_at = state.last_run_at.max(Some(self.started_at));
        match (self.ended_at, self.result) {
            (Some(end), Some(result)) if end <= at => {
                if state.last_ended_at.is_none_or(|t| end >= t) {
                    state.last_result = Some(result);
                    state.last_exit = self.exit;
                }
                state.last_ended_at = state.last_ended_at.max(Some(end));
                match result {
                    RunResult::Success => {
                        if state.last_success_at.is_none_or(|t| end >= t) {
                            state.failure_since = None;
                        }
                        state.last_success_at = state.last_success_at.max(Some(end));
                    }
                    RunResult::Failure | RunResult::Interrupted => {
                        if state.last_success_at.is_none_or(|t| end > t) {
                            state.failure_since =
                                Some(state.failure_since.map_or(end, |f| f.min(end)));
                        }
                    }
                    // Stopped by hand, or ended unseen: neither ends nor starts a failure streak.
                    RunResult::Unknown | RunResult::Cancelled => {}
                }
            }
            _ => {
                if let (Some(pid), Some(pid_start)) = (self.pid, self.pid_start) {
                    let newer = state
                        .running
                        .as_ref()
                        .is_none_or(|r| r.started_at <= self.started_at);
                    if newer {
                        state.running = Some(RunningRun {
                            run_id: self.id,
                            pid,
                            pid_start,
                            started_at: self.started_at,
                            supervisor: None,
                        });
                    }
                }
            }
        }
    }
}

/// The lane states as they stood at `at`, from `base` (the states at the history's horizon,
/// when older runs were pruned) and the runs recorded since: what a pass at `at` would have
/// found. Runs already in `base` (ended at or before `horizon`) are not counted twice.
pub fn replay(
    mut base: LaneStates,
    horizon: Option<Timestamp>,
    runs: &[RunRecord],
    at: Timestamp,
) -> LaneStates {
    let mut order: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| horizon.is_none_or(|h| r.ended_at.is_none_or(|e| e > h)))
        .collect();
    order.sort_by_key(|r| (r.ended_at.unwrap_or(r.started_at), r.id));
    for state in base.values_mut() {
        // Nothing recorded at the horizon was known to be running later, unless a run says so.
        state.running = None;
    }
    for run in order {
        run.fold_into(base.entry(run.lane.clone()).or_default(), at);
    }
    base
}

/// How far back the recorded history reaches, for what-ifs at past times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// The earliest run or decision recorded, if any.
    pub first_record: Option<Timestamp>,
    /// History before this was pruned (`history.retention`); the states at this instant were
    /// kept, so replays from it are exact.
    pub horizon: Option<Timestamp>,
}

/// Lane states rebuilt for a past instant, with how complete they are.
#[derive(Debug, Clone, Default)]
pub struct StatesAt {
    /// Every lane recorded, as it stood then.
    pub states: LaneStates,
    /// How far the history reaches.
    pub coverage: Coverage,
}

/// Consecutive identical decisions of one lane (same outcome, gate, reason and configuration),
/// coalesced. A trigger is always an episode of its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    /// Row id.
    pub id: i64,
    /// What it is and when.
    #[serde(flatten)]
    pub summary: EpisodeSummary,
    /// The first evaluation, with its chain and evidence.
    pub first: Decision,
    /// The latest evaluation, when there was more than one.
    pub last: Option<Decision>,
}

/// An episode without its evaluations: what `status`, `explain` and the timeline show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpisodeSummary {
    /// The lane.
    pub lane: String,
    /// `trigger`, `deferred` or `disabled`.
    pub outcome: String,
    /// The reason.
    pub reason: Option<String>,
    /// The deciding gate.
    pub gate: Option<String>,
    /// The first evaluation.
    pub first_at: Timestamp,
    /// The latest evaluation.
    pub last_at: Timestamp,
    /// How many evaluations it spans.
    pub count: i64,
}

impl Episode {
    /// The episode without its evaluations.
    pub fn summary(&self) -> EpisodeSummary {
        self.summary.clone()
    }

    /// The evaluation in force at `at`: the latest one at or before it.
    pub fn at(&self, at: Timestamp) -> &Decision {
        match &self.last {
            Some(last) if last.at <= at => last,
            _ => &self.first,
        }
    }
}

/// An operator's request to stop a run (`lanekeeper stop`), read by its supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    /// Who asked.
    pub by: String,
    /// The wait between TERM and KILL, if it replaces the lane's `grace`.
    pub grace: Option<std::time::Duration>,
}

/// A pause as recorded: who, why and when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PauseRecord {
    /// Row id.
    pub id: i64,
    /// The lane.
    pub lane: String,
    /// The pause.
    #[serde(flatten)]
    pub pause: Pause,
    /// When it ended: resumed, replaced by another pause, or its `until`.
    pub ended_at: Option<Timestamp>,
    /// Who ended it (`expired` for an `until` that passed, `replaced` by a new pause).
    pub ended_by: Option<String>,
}

impl PauseRecord {
    /// When it ended, or ends, as of `now`: an `until` that passed counts as its end even
    /// before it is recorded.
    pub fn end(&self, now: Timestamp) -> Option<(Timestamp, &str)> {
        match (self.ended_at, self.pause.until) {
            (Some(t), _) => Some((t, self.ended_by.as_deref().unwrap_or("-"))),
            (None, Some(u)) if u <= now => Some((u, ENDED_EXPIRED)),
            _ => None,
        }
    }
}

/// Who ended a pause whose `until` passed.
pub const ENDED_EXPIRED: &str = "expired";
/// Who ended a pause that a new pause replaced.
pub const ENDED_REPLACED: &str = "replaced";

/// The outcome to record when a run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// When it ended.
    pub at: Timestamp,
    /// Success, failure or interrupted.
    pub result: RunResult,
    /// The exit code or signal, if known.
    pub exit: Option<ExitInfo>,
}

/// A new run to record as started.
#[derive(Debug, Clone)]
pub struct RunStart<'a> {
    /// The lane.
    pub lane: &'a str,
    /// What started it.
    pub source: &'a str,
    /// When it started; stamped as the lane's `last_run_at`.
    pub at: Timestamp,
    /// The child's pid and its start time in clock ticks since boot; `None` when the command
    /// could not be started at all.
    pub process: Option<(u32, u64)>,
    /// The run's supervisor, pid and start time.
    pub supervisor: Option<(u32, u64)>,
    /// The run log.
    pub log_path: Option<&'a str>,
    /// Refuse to record (and so to start) the run while the lane is paused: checked in the
    /// same transaction as the record, so a pause and a start never both win.
    /// `fire --force` and `record` pass `false`.
    pub honour_pause: bool,
}

/// The outcome of the last configuration reload, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// When it happened.
    pub at: Timestamp,
    /// Whether it was applied.
    pub ok: bool,
    /// What started it (`file change`, `SIGHUP`).
    pub trigger: String,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Closes a run whose process is gone and that nobody supervises as `interrupted` (a failure:
/// retries apply), so it is never dropped silently. Used by whoever takes the lane's lock
/// next: a new run's supervisor, or the daemon's recovery.
pub fn settle_vanished(
    store: &dyn Store,
    lane: &str,
    run: &RunningRun,
    at: Timestamp,
) -> Result<(), StoreError> {
    store.finish_run(
        run.run_id,
        &RunEnd {
            at,
            result: RunResult::Interrupted,
            exit: None,
        },
    )?;
    tracing::warn!(lane, run = run.run_id, pid = run.pid, started = %run.started_at, "Recorded a run as interrupted: its process is gone.");
    Ok(())
}

/// Durable lane state and decision history. `Send`, so the web endpoint can use it from its
/// blocking threads.
pub trait Store: Send {
    /// Every lane's recorded state, including runs recorded as in progress (liveness is the
    /// caller's to check).
    fn lane_states(&self) -> Result<LaneStates, StoreError>;
    /// Records a started run and stamps `last_run_at`, in one transaction.
    fn begin_run(&self, run: &RunStart<'_>) -> Result<i64, StoreError>;
    /// Records the end of a run and updates the lane's last result, in one transaction.
    fn finish_run(&self, run_id: i64, end: &RunEnd) -> Result<(), StoreError>;
    /// Records a run made outside lanekeeper (`lanekeeper record`).
    fn record_external(
        &self,
        lane: &str,
        at: Timestamp,
        result: RunResult,
    ) -> Result<(), StoreError>;
    /// Appends decisions made at the real present, marked with who made them, and updates each
    /// lane's deferral streak. A trigger that `check` recorded dispatched nothing, so it leaves
    /// the streak alone.
    fn record_decisions(&self, decisions: &[Decision], origin: Origin) -> Result<(), StoreError>;
    /// Every lane's state as it stood at a past `at`, rebuilt from recorded runs and decisions.
    fn lane_states_at(&self, at: Timestamp) -> Result<StatesAt, StoreError>;
    /// The first run of `lane` that started at or after `from` and before `until`.
    fn run_started_between(
        &self,
        lane: &str,
        from: Timestamp,
        until: Option<Timestamp>,
    ) -> Result<Option<RunRecord>, StoreError>;
    /// When the next episode of `lane` after the one starting at `after` began, if any.
    fn next_episode_at(
        &self,
        lane: &str,
        after: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError>;
    /// The episode in force for `lane` at `at`: the latest that started at or before it.
    fn episode_at(&self, lane: &str, at: Timestamp) -> Result<Option<Episode>, StoreError>;
    /// Every episode that was still in force at or after `since`, oldest first.
    fn episodes_since(&self, since: Timestamp) -> Result<Vec<Episode>, StoreError>;
    /// Every run that ended at or after `since`, or is still running, oldest first.
    fn runs_since(&self, since: Timestamp) -> Result<Vec<RunRecord>, StoreError>;
    /// Removes episodes and finished runs that ended before `before`, keeping each lane's
    /// latest; returns how many rows went.
    fn prune_history(&self, before: Timestamp) -> Result<usize, StoreError>;
    /// Records the outcome of the daemon's latest configuration reload.
    fn record_reload(&self, reload: &ReloadStatus) -> Result<(), StoreError>;
    /// The outcome of the daemon's latest configuration reload, if any.
    fn last_reload(&self) -> Result<Option<ReloadStatus>, StoreError>;
    /// The latest runs of a lane, newest first.
    fn recent_runs(&self, lane: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError>;
    /// Records that `by` asks run `run_id` to stop (before anyone signals it), so that
    /// however it ends it is recorded as `cancelled`. False if the run is not in progress.
    fn request_stop(
        &self,
        run_id: i64,
        by: &str,
        grace: Option<std::time::Duration>,
    ) -> Result<bool, StoreError>;
    /// Takes back a stop request that could not be delivered, so the run's end is recorded as
    /// it comes.
    fn withdraw_stop(&self, run_id: i64) -> Result<(), StoreError>;
    /// The stop asked of run `run_id`, if any.
    fn stop_request(&self, run_id: i64) -> Result<Option<StopRequest>, StoreError>;
    /// Pauses `lane`; a pause already in force ends (`replaced`) and is returned.
    fn pause(&self, lane: &str, pause: &Pause) -> Result<Option<Pause>, StoreError>;
    /// Ends the pause of `lane` at `at`, recording who; returns it, or `None` if none was in
    /// force.
    fn resume(&self, lane: &str, at: Timestamp, by: &str) -> Result<Option<Pause>, StoreError>;
    /// A daemon starts deciding at `now`: the time since the last one was seen is recorded
    /// as the home's downtime (returned), and `now` as seen.
    fn daemon_started(
        &self,
        now: Timestamp,
    ) -> Result<Option<crate::model::lane_state::Downtime>, StoreError>;
    /// A daemon decided (or shut down) at `now`: the downtime that follows starts here.
    fn daemon_seen(&self, now: Timestamp) -> Result<(), StoreError>;
    /// Records the end of every pause whose `until` is at or before `now`; returns how many.
    fn settle_expired_pauses(&self, now: Timestamp) -> Result<usize, StoreError>;
    /// The pauses of `lane` (of every lane with `None`) still in force at or after `since`,
    /// oldest first.
    fn pauses_since(
        &self,
        lane: Option<&str>,
        since: Timestamp,
    ) -> Result<Vec<PauseRecord>, StoreError>;
    /// Claims the firing of `event`'s hook for `lane`, identified by `key`, before it runs:
    /// its row id, or `None` if it was claimed before (by this process or an earlier one).
    fn claim_hook(
        &self,
        lane: &str,
        event: HookEvent,
        key: &str,
        at: Timestamp,
    ) -> Result<Option<i64>, StoreError>;
    /// Records how a claimed hook firing ended.
    fn finish_hook(
        &self,
        id: i64,
        result: HookResult,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// The latest hook firing of `lane`.
    fn last_hook(&self, lane: &str) -> Result<Option<HookFiring>, StoreError>;
    /// Takes or renews the leader's lease for `host`, lasting `ttl` by the store's clock. A
    /// single-writer store has nothing to elect.
    fn lead(&self, _host: &str, _ttl: std::time::Duration) -> Result<Leadership, StoreError> {
        Ok(Leadership::Sole)
    }
    /// Makes every later leader write of this connection carry `token`, so the store refuses
    /// it once the lease has moved on (`StoreError::Fenced`).
    fn fence(&self, _token: Option<i64>) {}
    /// Claims `lane` for a run supervised by `host`'s process `pid`, on a store that replicas
    /// on several machines share (each machine's lane lock sees only its own runs): the claim
    /// standing, if another holds it. A store of one machine needs none.
    fn claim_run(
        &self,
        _lane: &str,
        _token: Option<i64>,
        _host: &str,
        _pid: u32,
        _at: Timestamp,
    ) -> Result<Option<RunClaim>, StoreError> {
        Ok(None)
    }
    /// Releases the claim of `host`'s process `pid` on `lane`, if it holds one.
    fn release_run(&self, _lane: &str, _host: &str, _pid: u32) -> Result<(), StoreError> {
        Ok(())
    }
    /// The run claims standing, by lane.
    fn run_claims(&self) -> Result<Vec<RunClaim>, StoreError> {
        Ok(Vec::new())
    }
    /// Gives up the lease if `host` holds it (a clean shutdown), so another replica need not
    /// wait for it to lapse.
    fn resign(&self, _host: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// The leader's lease, from any replica.
    fn leader(&self) -> Result<Option<LeaderView>, StoreError> {
        Ok(None)
    }
    /// The spans with no live leader that overlap `[since, now]`, oldest first.
    fn leaderless(&self, _since: Timestamp) -> Result<Vec<(Timestamp, Timestamp)>, StoreError> {
        Ok(Vec::new())
    }
    /// Notes that `host`'s replica is alive, by the store's clock (each loop iteration), so the
    /// leader knows where lanes with `hosts:` may run. A store of one machine needs none.
    fn heartbeat(&self, _host: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// The replicas seen within `ttl`; `None` on a store of one machine, where the only host
    /// is the one asking.
    fn alive_hosts(&self, _ttl: std::time::Duration) -> Result<Option<Vec<String>>, StoreError> {
        Ok(None)
    }
    /// Hands a run the leader decided to the replica that must run it (fenced); false when
    /// one for the lane waits already. A store of one machine has nobody to hand to.
    fn hand_off(&self, _hand: &HandOff) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The hand-offs addressed to `host`, oldest first.
    fn hand_offs(&self, _host: &str) -> Result<Vec<HandOff>, StoreError> {
        Ok(Vec::new())
    }
    /// Removes the hand-off of `lane` to `host`, once taken.
    fn drop_hand_off(&self, _lane: &str, _host: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Calls `wake` whenever a hand-off to `host` is written, until it returns false, so the
    /// replica need not wait for its next poll. A store of one machine has none to announce.
    fn watch_hand_offs(&self, _host: &str, _wake: Box<dyn Fn() -> bool + Send>) {}
}

/// A run the leader decided and hands to another replica, because the lane's `hosts:` does not
/// name the leader's: that replica starts it through its own supervisor (which claims the run,
/// so it cannot start twice) and removes the hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOff {
    /// The lane.
    pub lane: String,
    /// The replica that runs it.
    pub host: String,
    /// The fencing token of the leader that handed it over; the run's claim carries it, so a
    /// hand-off from a deposed leader starts nothing.
    pub token: Option<i64>,
    /// What started it (`periodic-sweep`, `cron`, …).
    pub source: String,
    /// When the leader decided it: a run recorded since makes it stale.
    pub decided_at: Timestamp,
    /// How long it has waited, by the store's clock (zero when writing one): one older than
    /// the lease waited for a replica that was down, and its decision is no longer the
    /// leader's to stand by.
    pub age: std::time::Duration,
}
