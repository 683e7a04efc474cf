//! Running a lane's command safely: one instance at a time, in its own process group, with a
//! timeout, forwarded signals, a run log and a recorded outcome.
//!
//! Every run has a supervisor of its own ([`supervisor`]), a detached process that holds the
//! lane's lock for the whole run and records its start before the command may exec and its end
//! when it ends, whatever happens to whoever started it. `fire` and the daemon both start runs
//! through [`start`], so a manual run and a scheduled one obey the same lock and leave the same
//! records.

pub mod cgroup;
pub mod hook;
pub mod lock;
pub mod logs;
pub mod process;
pub mod spawn;
pub mod supervisor;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use jiff::Timestamp;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::compile::Lane;
use crate::config::settings::{CgroupSetting, RunLogs, Settings};
use crate::home::Home;
use crate::state::{ExitInfo, RunResult, Store, StoreError};
use lock::{LaneLock, LockError};

/// Why a run could not be started or recorded.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The lane is already running.
    #[error(
        "lane `{lane}` is already running ({holder}); wait for it to finish, or stop that process"
    )]
    Busy {
        /// The lane.
        lane: String,
        /// Who holds it, in words.
        holder: String,
    },
    /// The lane was paused after the decision to run it; nothing was started or recorded.
    #[error("lane `{lane}` is {detail}; not started")]
    Paused {
        /// The lane.
        lane: String,
        /// The pause, in words.
        detail: String,
    },
    /// The store refused the start by fencing: another replica leads now. Nothing was started
    /// or recorded.
    #[error("lane `{lane}`: not started: {detail}")]
    Fenced {
        /// The lane.
        lane: String,
        /// The refusal, in words.
        detail: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A lock or log file could not be set up.
    #[error(
        "lane `{lane}`: {what} {path}: {source}; check that the state directory is writable and the disk is not full"
    )]
    Io {
        /// The lane.
        lane: String,
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The run start could not be recorded, so the command was never started.
    #[error(
        "lane `{lane}`: the run could not be recorded, so its command was not started: {source}"
    )]
    Unrecorded {
        /// The lane.
        lane: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// The run's supervisor failed or could not be started.
    #[error("lane `{lane}`: {message}")]
    Supervisor {
        /// The lane.
        lane: String,
        /// What went wrong.
        message: String,
    },
}

/// What happened to one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's id in the store.
    pub run_id: i64,
    /// The child's pid, if it started.
    pub pid: Option<u32>,
    /// Success, failure or interrupted.
    pub result: RunResult,
    /// How the child ended, if it started.
    pub exit: Option<ExitInfo>,
    /// The timeout expired and the group was stopped.
    pub timed_out: bool,
    /// The command could not be started; why.
    pub spawn_error: Option<String>,
    /// Wall time of the run.
    pub duration: Duration,
    /// The run log.
    pub log_path: PathBuf,
}

impl RunReport {
    /// The exit code a shell would report: the child's code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match self.exit {
            Some(ExitInfo::Code(c)) => c,
            Some(ExitInfo::Signal(s)) => 128 + s,
            None => 127,
        }
    }
}

fn io_err(
    lane: &str,
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> DispatchError {
    let (lane, path) = (lane.to_string(), path.display().to_string());
    move |source| DispatchError::Io {
        lane,
        what,
        path,
        source,
    }
}

/// Takes the lane's lock, or explains who holds it. A recorded run whose process is gone is
/// closed as `interrupted` here, since nobody else can be watching it once we hold the lock.
pub fn acquire(
    home: &Home,
    lane: &str,
    store: &dyn Store,
    now: Timestamp,
) -> Result<LaneLock, DispatchError> {
    let path = home.lock_file(lane);
    let lock = match LaneLock::try_acquire(&path) {
        Ok(l) => l,
        Err(LockError::Busy { holder }) => {
            let running = store.lane_states()?.remove(lane).and_then(|s| s.running);
            let holder = match (running, holder) {
                (Some(r), Some(h)) => format!(
                    "child pid {} started {}, supervised by lanekeeper pid {h}",
                    r.pid, r.started_at
                ),
                (None, Some(h)) => format!("locked by lanekeeper pid {h}"),
                (Some(r), None) => format!("child pid {} started {}", r.pid, r.started_at),
                (None, None) => format!("lock {} is held", path.display()),
            };
            return Err(DispatchError::Busy {
                lane: lane.to_string(),
                holder,
            });
        }
        Err(LockError::Io { source, .. }) => {
            return Err(io_err(lane, "cannot lock", &path)(source));
        }
    };
    if let Some(run) = store.lane_states()?.remove(lane).and_then(|s| s.running) {
        if process::is_alive(run.pid, run.pid_start) {
            return Err(DispatchError::Busy {
                lane: lane.to_string(),
                holder: format!(
                    "child pid {} started {} outlived its supervisor and is still running",
                    run.pid, run.started_at
                ),
            });
        }
        crate::state::settle_vanished(store, lane, &run, now)?;
    }
    Ok(lock)
}

/// A run to start, as handed to its supervisor on stdin: the lane's command as the starter's
/// configuration has it (the files may change meanwhile), and the starter's clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// The lane.
    pub lane: String,
    /// What to run.
    pub command: crate::config::Command,
    /// Log cap and retention.
    pub log_rules: RunLogs,
    /// What started it (`manual`, `periodic-sweep`, …).
    pub source: String,
    /// How far the starter's clock is from the wall clock (`run --at` rehearsals), in ms.
    pub clock_offset_ms: i64,
    /// Where the run gets its own cgroup.
    #[serde(default)]
    pub cgroup: CgroupSetting,
    /// Start it even if the lane is paused (`fire --force`).
    #[serde(default)]
    pub force: bool,
    /// The store the starter records to, which the supervisor records the run in too.
    pub state: String,
    /// The starter's fencing token on a shared store: the run's start is recorded only while
    /// it is current.
    #[serde(default)]
    pub fence: Option<i64>,
    /// The replica that starts it (`--host`), whose claim the run holds on a shared store.
    #[serde(default)]
    pub host: Option<String>,
}

impl RunSpec {
    /// The run of `lane`, started by `source`.
    pub fn new(
        lane: &Lane,
        settings: &Settings,
        source: &str,
        clock: &dyn crate::clock::Clock,
        state: &crate::state::Location,
    ) -> Self {
        Self {
            lane: lane.name.clone(),
            command: lane.command.clone(),
            log_rules: settings.run_logs,
            source: source.to_string(),
            clock_offset_ms: clock.offset_ms(),
            cgroup: settings.cgroup.clone(),
            force: false,
            state: state.to_text(),
            fence: None,
            host: None,
        }
    }
}

/// What a supervisor tells its starter, one JSON line each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Report {
    /// The command runs, and its start is recorded.
    Started {
        /// The run's id in the store.
        run_id: i64,
        /// The command's pid (its process group).
        pid: u32,
        /// The run log.
        log: PathBuf,
        /// The supervisor's pid.
        supervisor: u32,
    },
    /// The run ended (or could not start), and that is recorded.
    Ended(RunReport),
    /// The lane is already running.
    Busy {
        /// Who holds it, in words.
        holder: String,
    },
    /// The lane is paused; nothing was started or recorded.
    Paused {
        /// The pause, in words.
        detail: String,
    },
    /// The store refused the start: this replica's lease moved on. Nothing was started or
    /// recorded.
    Fenced {
        /// The refusal, in words.
        detail: String,
    },
    /// Nothing could be done or recorded.
    Error {
        /// Why.
        message: String,
    },
}

/// What [`start`] did.
pub enum Start {
    /// The command runs under its supervisor (boxed: it holds the supervisor's pipes).
    Running(Box<RunHandle>),
    /// The command could not be started; the failure is recorded.
    Failed(RunReport),
}

/// Stops a run through its supervisor: TERM or INT go to the command's processes, and KILL
/// follows after the lane's `grace`.
#[derive(Debug, Clone, Copy)]
pub struct Stopper {
    supervisor: u32,
    started: Option<u64>,
}

impl Stopper {
    /// Asks the run to stop (SIGTERM or SIGINT); false if its supervisor is gone.
    pub fn stop(&self, signal: Signal) -> bool {
        let alive = self
            .started
            .is_none_or(|t| process::is_alive(self.supervisor, t));
        alive
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(self.supervisor).unwrap_or(0)),
                signal,
            )
            .is_ok()
    }
}

/// A run whose command runs and whose start is recorded.
pub struct RunHandle {
    lane: String,
    /// The run's id in the store.
    pub run_id: i64,
    /// The command's pid.
    pub pid: u32,
    /// The run log.
    pub log_path: PathBuf,
    stopper: Stopper,
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl RunHandle {
    /// How to stop it.
    pub fn stopper(&self) -> Stopper {
        self.stopper
    }

    /// The supervisor's pid.
    pub fn supervisor(&self) -> u32 {
        self.stopper.supervisor
    }

    /// Waits for the run to end. If the supervisor dies without saying how it ended, the
    /// outcome is read from the store, where the supervisor records it first.
    pub async fn wait(mut self, store: &dyn Store) -> Result<RunReport, DispatchError> {
        let line = self.lines.next_line().await.ok().flatten();
        let _ = self.child.wait().await;
        if let Some(Report::Ended(report)) = line.and_then(|l| serde_json::from_str(&l).ok()) {
            return Ok(report);
        }
        let recorded = store
            .recent_runs(&self.lane, 16)?
            .into_iter()
            .find(|r| r.id == self.run_id);
        match recorded {
            Some(run) if run.result.is_some() => Ok(RunReport {
                run_id: run.id,
                pid: run.pid,
                result: run.result.unwrap_or(RunResult::Unknown),
                exit: run.exit,
                timed_out: false,
                spawn_error: None,
                duration: run
                    .ended_at
                    .map(|e| e.duration_since(run.started_at).unsigned_abs())
                    .unwrap_or_default(),
                log_path: self.log_path,
            }),
            _ => Err(DispatchError::Supervisor {
                lane: self.lane,
                message: format!(
                    "the run's supervisor (pid {}) ended without recording how run {} ended; it is settled when the lane next starts or the daemon restarts",
                    self.stopper.supervisor, self.run_id
                ),
            }),
        }
    }
}

/// How a supervisor's stderr is wired: into the starter's (the daemon's log), or nowhere
/// (`fire` returns at once and must not write to the terminal later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorLog {
    /// Inherit the starter's stderr.
    Inherit,
    /// Discard it.
    Discard,
}

/// Starts a run: a detached supervisor takes the lane's lock, records the run and starts the
/// command. Returns once the command runs and its start is recorded, so a later decision can
/// never see a dispatched but unrecorded run.
pub async fn start(
    home: &Home,
    spec: &RunSpec,
    log: SupervisorLog,
) -> Result<Start, DispatchError> {
    let lane = spec.lane.clone();
    let failed = |message: String| DispatchError::Supervisor {
        lane: lane.clone(),
        message,
    };
    let exe = supervisor::program()
        .map_err(|e| failed(format!("cannot find the lanekeeper binary: {e}")))?;
    // The canonical home, so run-log paths and the command's LANEKEEPER_HOME are absolute
    // whatever --home was given as.
    let root = std::fs::canonicalize(home.root()).unwrap_or_else(|_| home.root().to_path_buf());
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--home")
        .arg(&root)
        .arg("supervise-run")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(match log {
            SupervisorLog::Inherit => Stdio::inherit(),
            SupervisorLog::Discard => Stdio::null(),
        })
        .kill_on_drop(false);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent. In a session of
    // its own the supervisor outlives its starter and gets none of its terminal's signals.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start the run's supervisor: {e}")))?;
    let json =
        serde_json::to_vec(spec).map_err(|e| failed(format!("cannot hand over the run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&json)
            .await
            .map_err(|e| failed(format!("cannot hand over the run: {e}")))?;
    }
    let Some(stdout) = child.stdout.take() else {
        return Err(failed("the run's supervisor has no report channel".into()));
    };
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await.ok().flatten();
    match first.as_deref().map(serde_json::from_str::<Report>) {
        Some(Ok(Report::Started {
            run_id,
            pid,
            log,
            supervisor,
        })) => Ok(Start::Running(Box::new(RunHandle {
            lane: spec.lane.clone(),
            run_id,
            pid,
            log_path: log,
            stopper: Stopper {
                supervisor,
                started: process::start_time(supervisor),
            },
            child,
            lines,
        }))),
        Some(Ok(Report::Ended(report))) => {
            let _ = child.wait().await;
            Ok(Start::Failed(report))
        }
        Some(Ok(Report::Busy { holder })) => {
            let _ = child.wait().await;
            Err(DispatchError::Busy { lane, holder })
        }
        Some(Ok(Report::Paused { detail })) => {
            let _ = child.wait().await;
            Err(DispatchError::Paused { lane, detail })
        }
        Some(Ok(Report::Fenced { detail })) => {
            let _ = child.wait().await;
            Err(DispatchError::Fenced { lane, detail })
        }
        Some(Ok(Report::Error { message })) => {
            let _ = child.wait().await;
            // The supervisor's messages already name the lane.
            let prefix = format!("lane `{lane}`: ");
            Err(failed(
                message
                    .strip_prefix(&prefix)
                    .map_or(message.clone(), str::to_string),
            ))
        }
        Some(Err(e)) => Err(failed(format!(
            "the run's supervisor said something unreadable: {e}"
        ))),
        None => {
            let status = child.wait().await;
            Err(failed(format!(
                "the run's supervisor exited before starting the run ({})",
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            )))
        }
    }
}
