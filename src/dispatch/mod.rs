//! Running a lane's command safely: one instance at a time, in its own process group, with a
//! timeout, forwarded signals, a run log and a recorded outcome.
//!
//! `fire` and the scheduler both come through [`run_lane`], so a manual run and a scheduled one
//! obey the same lock and leave the same records.

pub mod lock;
pub mod logs;
pub mod process;

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use nix::sys::signal::Signal;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Lane;
use crate::config::duration::format;
use crate::config::settings::RunLogs;
use crate::home::Home;
use crate::state::{ExitInfo, RunEnd, RunResult, RunStart, Store, StoreError};
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
    /// The run start could not be recorded, so the child was stopped.
    #[error("lane `{lane}`: the run could not be recorded, so its child was stopped: {source}")]
    Unrecorded {
        /// The lane.
        lane: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
}

/// What happened to one run.
#[derive(Debug, Clone)]
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

/// Told once the child has started (or failed to), before waiting for it.
pub trait StartListener {
    /// The child is running as `pid`, logging to `log`.
    fn started(&mut self, pid: u32, log: &std::path::Path);
}

impl<F: FnMut(u32, &std::path::Path)> StartListener for F {
    fn started(&mut self, pid: u32, log: &std::path::Path) {
        self(pid, log)
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
        store.finish_run(
            run.run_id,
            &RunEnd {
                at: now,
                result: RunResult::Interrupted,
                exit: None,
            },
        )?;
        tracing::warn!(
            lane,
            run = run.run_id,
            pid = run.pid,
            "Recorded a vanished run as interrupted."
        );
    }
    Ok(lock)
}

/// Asks a running child to stop: the signal goes to its process group, then KILL after `grace`.
pub type StopSender = watch::Sender<Option<Signal>>;
/// The receiving side given to [`run_lane`].
pub type StopReceiver = watch::Receiver<Option<Signal>>;

/// A stop channel: send `Some(SIGTERM)` (or another signal) to stop the run.
pub fn stop_channel() -> (StopSender, StopReceiver) {
    watch::channel(None)
}

/// Forwards this process's SIGTERM and SIGINT to `stop` (what `fire` does for its child).
pub fn forward_signals(stop: StopSender) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                Some(()) = term.recv() => Signal::SIGTERM,
                Some(()) = int.recv() => Signal::SIGINT,
                else => return,
            };
            if stop.send(Some(sig)).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// A run whose child has started and whose start is recorded; [`StartedRun::wait`] sees it to
/// its end. Holds the lane lock until then.
pub struct StartedRun {
    _lock: LaneLock,
    log_rules: RunLogs,
    child: tokio::process::Child,
    lane: Lane,
    run_id: i64,
    pid: u32,
    log_path: PathBuf,
    started: Instant,
    exec_latency: Duration,
}

/// What [`start_run`] did.
pub enum Start {
    /// The child runs (boxed: it carries the child handle and the lock).
    Running(Box<StartedRun>),
    /// The command could not be started; the failure is recorded.
    Failed(RunReport),
}

/// Everything a run needs from its caller.
#[derive(Clone, Copy)]
pub struct RunRequest<'a> {
    /// The home (locks, logs).
    pub home: &'a Home,
    /// The lane to run.
    pub lane: &'a Lane,
    /// Log cap and retention.
    pub log_rules: &'a RunLogs,
    /// Where the run is recorded.
    pub store: &'a dyn Store,
    /// Start and end times.
    pub clock: &'a dyn Clock,
    /// What started it (`manual`, `periodic-sweep`, …).
    pub source: &'a str,
}

/// Takes the lane lock, starts the command in its own process group and records the run
/// (stamping `last_run_at`). Returns as soon as the child has been exec'd.
pub fn start_run(req: &RunRequest<'_>) -> Result<Start, DispatchError> {
    let RunRequest {
        home,
        lane,
        log_rules,
        store,
        clock,
        source,
    } = *req;
    // Absolute (as the daemon's home is), so the run log's path as printed, recorded and logged,
    // and the child's LANEKEEPER_HOME, hold from any working directory.
    let home = &Home::new(
        std::fs::canonicalize(home.root())
            .or_else(|_| std::path::absolute(home.root()))
            .unwrap_or_else(|_| home.root().to_path_buf()),
    );
    let entered = Instant::now();
    let started_at = clock.now();
    let lock = acquire(home, &lane.name, store, started_at)?;

    let log_dir = home.run_log_dir(&lane.name);
    std::fs::create_dir_all(&log_dir).map_err(io_err(
        &lane.name,
        "cannot create log directory",
        &log_dir,
    ))?;
    let log_path = log_dir.join(format!("{}.log", started_at.strftime("%Y%m%dT%H%M%S%.3fZ")));
    let log =
        File::create(&log_path).map_err(io_err(&lane.name, "cannot create run log", &log_path))?;
    let log_err = log
        .try_clone()
        .map_err(io_err(&lane.name, "cannot open run log", &log_path))?;
    let log_str = log_path.display().to_string();

    let cmd = &lane.command;
    let mut command = tokio::process::Command::new(&cmd.argv[0]);
    command
        .args(&cmd.argv[1..])
        .current_dir(&cmd.cwd)
        .envs(&cmd.env)
        .env("LANEKEEPER_LANE", &lane.name)
        .env("LANEKEEPER_HOME", home.root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .kill_on_drop(false);
    let started = Instant::now();
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!(
                "cannot start `{}` in {}: {e}",
                cmd.argv[0],
                cmd.cwd.display()
            );
            let _ = std::fs::write(&log_path, format!("lanekeeper: {why}\n"));
            let run = RunStart {
                lane: &lane.name,
                source,
                at: started_at,
                process: None,
                log_path: Some(&log_str),
            };
            let run_id = store.begin_run(&run)?;
            let end = RunEnd {
                at: clock.now(),
                result: RunResult::Failure,
                exit: None,
            };
            store.finish_run(run_id, &end)?;
            tracing::error!(lane = %lane.name, "Run failed to start: {why}.");
            return Ok(Start::Failed(RunReport {
                run_id,
                pid: None,
                result: RunResult::Failure,
                exit: None,
                timed_out: false,
                spawn_error: Some(why),
                duration: started.elapsed(),
                log_path,
            }));
        }
    };
    // `spawn` returns once the child has exec'd (or failed to).
    let exec_latency = entered.elapsed();
    let mut child = child;
    let pid = child.id().unwrap_or(0);
    let pid_start = process::start_time(pid).unwrap_or(0);
    let run = RunStart {
        lane: &lane.name,
        source,
        at: started_at,
        process: Some((pid, pid_start)),
        log_path: Some(&log_str),
    };
    let run_id = match store.begin_run(&run) {
        Ok(id) => id,
        Err(e) => {
            // Never leave a child running that nothing records: stop it and report why.
            process::signal_group(pid, Signal::SIGKILL);
            let _ = child.start_kill();
            return Err(DispatchError::Unrecorded {
                lane: lane.name.clone(),
                source: e,
            });
        }
    };
    tracing::info!(lane = %lane.name, pid, source, log = %log_str, "Run started.");
    Ok(Start::Running(Box::new(StartedRun {
        _lock: lock,
        log_rules: *log_rules,
        child,
        lane: lane.clone(),
        run_id,
        pid,
        log_path,
        started,
        exec_latency,
    })))
}

impl StartedRun {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The run log.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// Time from entering [`start_run`] (the decision is made) to the child's exec.
    pub fn exec_latency(&self) -> Duration {
        self.exec_latency
    }

    /// Waits for the child, enforcing the timeout (TERM to the group, `grace`, KILL) and
    /// honouring `stop`, then records the outcome and releases the lock.
    pub async fn wait(
        mut self,
        store: &dyn Store,
        clock: &dyn Clock,
        mut stop: StopReceiver,
    ) -> Result<RunReport, DispatchError> {
        let (lane, pid, cmd) = (&self.lane, self.pid, &self.lane.command);
        let deadline = cmd.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut timed_out = false;
        let mut stop_closed = false;
        let status = loop {
            tokio::select! {
                status = self.child.wait() => break status,
                _ = sleep_until(deadline), if deadline.is_some() && !timed_out => {
                    timed_out = true;
                    tracing::warn!(lane = %lane.name, pid, timeout = %format(cmd.timeout.unwrap_or_default()), "Run timed out; sending TERM to its process group.");
                    process::signal_group(pid, Signal::SIGTERM);
                    kill_at.get_or_insert(tokio::time::Instant::now() + cmd.grace);
                }
                _ = sleep_until(kill_at), if kill_at.is_some() => {
                    tracing::warn!(lane = %lane.name, pid, "Grace period over; sending KILL to its process group.");
                    process::signal_group(pid, Signal::SIGKILL);
                    kill_at = None;
                }
                changed = stop.changed(), if !stop_closed => {
                    match (changed, *stop.borrow_and_update()) {
                        (Err(_), _) => stop_closed = true,
                        (Ok(()), Some(sig)) => {
                            tracing::info!(lane = %lane.name, pid, signal = %sig, "Stopping the run.");
                            process::signal_group(pid, sig);
                            kill_at.get_or_insert(tokio::time::Instant::now() + cmd.grace);
                        }
                        (Ok(()), None) => {}
                    }
                }
            }
        };
        // Members of the group that outlive a stopped leader get the rest of the grace, then KILL.
        if let Some(at) = kill_at {
            while process::group_alive(pid) && tokio::time::Instant::now() < at {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            process::signal_group(pid, Signal::SIGKILL);
        }
        let exit = match status {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                s.code()
                    .map(ExitInfo::Code)
                    .or(s.signal().map(ExitInfo::Signal))
            }
            Err(e) => {
                tracing::error!(lane = %lane.name, pid, "Lost track of the child: {e}.");
                None
            }
        };
        let result = match (exit, timed_out) {
            (Some(ExitInfo::Code(0)), false) => RunResult::Success,
            (None, _) => RunResult::Interrupted,
            _ => RunResult::Failure,
        };
        let end = RunEnd {
            at: clock.now(),
            result,
            exit,
        };
        store.finish_run(self.run_id, &end)?;
        logs::tidy(&self.log_path, &self.log_rules);
        let duration = self.started.elapsed();
        tracing::info!(lane = %lane.name, pid, result = result.as_str(), exit = %exit.map(|e| e.to_string()).unwrap_or_else(|| "unknown".into()), duration = %format(duration), "Run finished.");
        Ok(RunReport {
            run_id: self.run_id,
            pid: Some(pid),
            result,
            exit,
            timed_out,
            spawn_error: None,
            duration,
            log_path: self.log_path,
        })
    }
}

/// Starts a run and waits for it: [`start_run`] then [`StartedRun::wait`].
pub async fn run_lane(
    req: &RunRequest<'_>,
    on_start: &mut dyn StartListener,
    stop: StopReceiver,
) -> Result<RunReport, DispatchError> {
    match start_run(req)? {
        Start::Failed(report) => Ok(report),
        Start::Running(run) => {
            on_start.started(run.pid(), run.log_path());
            run.wait(req.store, req.clock, stop).await
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
