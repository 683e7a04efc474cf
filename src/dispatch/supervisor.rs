//! The run's own supervisor: a small process started for each run, detached from whoever
//! started it (the conmon / containerd-shim pattern).
//!
//! It holds the lane's lock for the whole life of the run, records the run before the command
//! may exec (see [`super::spawn`]), enforces the timeout, forwards stop signals, stops whatever
//! the command left behind, and records the outcome, whether or not the daemon or `fire` that
//! started it is still alive. It reports to its starter as JSON lines on stdout; a starter that
//! has gone away only means nobody reads them.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::spawn::{self, Prepared};
use super::{DispatchError, Report, RunReport, RunSpec, acquire, cgroup, logs, process};
use crate::clock::{Clock, OffsetClock};
use crate::home::Home;
use crate::model::duration::format;
use crate::state::{ExitInfo, RunEnd, RunResult, RunStart, Store, StoreError};

/// How long the supervisor keeps trying to record a run's start (the command waits at its gate
/// meanwhile) before it gives up and never starts it.
const RECORD_START_FOR: Duration = Duration::from_secs(120);
/// How long it keeps trying to record a run's end (a full disk, a locked database) while still
/// holding the lane, so the outcome is not lost.
const RECORD_END_FOR: Duration = Duration::from_secs(3600);

/// Runs the supervisor: reads the [`RunSpec`] on stdin, reports on stdout. Returns the exit code.
pub fn main(home: &Home) -> i32 {
    let mut input = String::new();
    let spec: RunSpec = match std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&input).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            emit(&Report::Error {
                message: format!("the run supervisor got no valid run to start: {e}"),
            });
            return 2;
        }
    };
    // A stop (SIGTERM, SIGINT) may come as soon as the run shows as running: hold it pending
    // until the wait below listens for it, instead of dying of it with the command running.
    let stops = stop_signals();
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&stops), None);
    // Orphans of the command (a `setsid` grandchild whose parent exited) come back to us
    // instead of init, so they can be found and stopped with the run.
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let clock = OffsetClock::with_offset_ms(spec.clock_offset_ms);
    let opened = crate::state::Location::parse(&spec.state, home)
        .map_err(|e| e.to_string())
        .and_then(|at| {
            at.open(crate::state::Access::Create)
                .map_err(|e| e.to_string())
        });
    let report = match opened {
        Ok(store) => {
            store.fence(spec.fence);
            supervise(home, &spec, &*store, &clock)
        }
        Err(e) => Report::Error {
            message: format!("lane `{}`: {e}", spec.lane),
        },
    };
    emit(&report);
    0
}

/// Writes one report line. A starter that went away is not an error: the run is recorded.
fn emit(report: &Report) {
    if let Ok(line) = serde_json::to_string(report) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Retries a store write until it succeeds or `within` has passed: a busy database or a full
/// disk must delay the record, never lose it.
fn persist<T>(
    lane: &str,
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let until = Instant::now() + within;
    let mut pause = Duration::from_millis(50);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            // A pause or a fencing refusal is an answer, not a busy database.
            Err(e)
                if !matches!(e, StoreError::Paused { .. } | StoreError::Fenced { .. })
                    && Instant::now() + pause < until =>
            {
                tracing::warn!(
                    lane,
                    "Could not record the {what} yet ({e}); retrying in {}.",
                    format(pause)
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A run's claim on a shared store, released however the supervision ends.
struct ClaimGuard<'a> {
    store: &'a dyn Store,
    lane: &'a str,
    host: &'a str,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self
            .store
            .release_run(self.lane, self.host, std::process::id())
        {
            tracing::warn!(
                lane = self.lane,
                "Could not release the run's claim ({e}); the replica's recovery will."
            );
        }
    }
}

fn supervise(home: &Home, spec: &RunSpec, store: &dyn Store, clock: &dyn Clock) -> Report {
    let lane = spec.lane.as_str();
    let started_at = clock.now();
    let entered = Instant::now();
    // On a shared store the claim comes first: the lane lock sees only this machine, and the
    // run recorded as running may be another machine's.
    let host = spec.host.as_deref().unwrap_or(home.host());
    let _claim = match store.claim_run(lane, spec.fence, host, std::process::id(), started_at) {
        Ok(None) => ClaimGuard { store, lane, host },
        Ok(Some(c)) => {
            return Report::Busy {
                holder: format!(
                    "claimed on host {} by lanekeeper pid {} since {}",
                    c.host, c.pid, c.started_at
                ),
            };
        }
        Err(e @ StoreError::Fenced { .. }) => {
            return Report::Fenced {
                detail: e.to_string(),
            };
        }
        Err(e) => {
            return Report::Error {
                message: format!("lane `{lane}`: cannot claim the run: {e}"),
            };
        }
    };
    let _lock = match acquire(home, lane, store, started_at) {
        Ok(lock) => lock,
        Err(DispatchError::Busy { holder, .. }) => return Report::Busy { holder },
        Err(e) => {
            return Report::Error {
                message: e.to_string(),
            };
        }
    };
    let log_dir = home.run_log_dir(lane);
    let log_path = log_dir.join(format!("{}.log", started_at.strftime("%Y%m%dT%H%M%S%.3fZ")));
    // Append mode: lanekeeper's own lines (a cgroup note before the command starts) and the
    // command's output go to the end, not over each other.
    let log = match std::fs::create_dir_all(&log_dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
    }) {
        Ok(f) => f,
        Err(e) => {
            return Report::Error {
                message: format!(
                    "lane `{lane}`: cannot create run log {}: {e}; check that the state directory is writable and the disk is not full",
                    log_path.display()
                ),
            };
        }
    };
    let log_str = log_path.display().to_string();
    let me = std::process::id();
    let supervisor = process::start_time(me).map(|t| (me, t));
    let cmd = &spec.command;
    let not_started = |why: String| {
        let _ = std::fs::write(&log_path, format!("lanekeeper: {why}\n"));
        let run = RunStart {
            lane,
            source: &spec.source,
            at: started_at,
            process: None,
            supervisor,
            log_path: Some(&log_str),
            honour_pause: false,
        };
        let recorded = persist(lane, "failed start", RECORD_START_FOR, || {
            let id = store.begin_run(&run)?;
            store.finish_run(
                id,
                &RunEnd {
                    at: clock.now(),
                    result: RunResult::Failure,
                    exit: None,
                },
            )?;
            Ok(id)
        });
        match recorded {
            Ok(run_id) => not_run(run_id, why, entered, log_path.clone()),
            Err(e) => Report::Error {
                message: format!("lane `{lane}`: {why}, and that could not be recorded: {e}"),
            },
        }
    };

    let program = match crate::config::program::resolve(&cmd.argv[0], &cmd.cwd, &cmd.env) {
        Ok(p) => p,
        Err(why) => return not_started(format!("cannot start `{}`: {why}", cmd.argv[0])),
    };
    let mut env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os().collect();
    env.extend(cmd.env.iter().map(|(k, v)| (k.into(), v.into())));
    env.insert("LANEKEEPER_LANE".into(), lane.into());
    env.insert("LANEKEEPER_HOME".into(), home.root().as_os_str().to_owned());
    let prepared = match Prepared::new(
        &program,
        &cmd.argv,
        env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())),
        &cmd.cwd,
    ) {
        Ok(p) => p,
        Err(e) => return not_started(format!("cannot start `{}`: {e}", cmd.argv[0])),
    };
    let gated = match spawn::fork_gated(&prepared, &log) {
        Ok(g) => g,
        Err(e) => return not_started(format!("cannot start `{}`: {e}", cmd.argv[0])),
    };
    drop(log);
    let pid = gated.pid;
    // Into its cgroup while it still waits at its gate, so everything it execs and forks is in.
    let placed = cgroup::place(&spec.cgroup, lane, pid, &cmd.limits);
    for note in &placed.notes {
        tracing::warn!(lane, "{note}.");
    }
    note_in_log(&log_path, &placed.notes);
    let group = Group {
        pgid: pid,
        cgroup: placed.cgroup,
    };
    let pid_start = process::start_time(pid).unwrap_or(0);
    let run = RunStart {
        lane,
        source: &spec.source,
        at: started_at,
        process: Some((pid, pid_start)),
        supervisor,
        log_path: Some(&log_str),
        honour_pause: !spec.force,
    };
    let run_id = match persist(lane, "run's start", RECORD_START_FOR, || {
        store.begin_run(&run)
    }) {
        Ok(id) => id,
        // Paused after the pass decided, or another replica leads now: the command never
        // leaves its gate, and no run is recorded.
        Err(e @ (StoreError::Paused { .. } | StoreError::Fenced { .. })) => {
            gated.abort();
            if let Some(cg) = &group.cgroup {
                cg.remove();
            }
            let _ = std::fs::remove_file(&log_path);
            return match e {
                StoreError::Paused { pause, .. } => Report::Paused {
                    detail: crate::model::decision::pause_words(&pause),
                },
                e => Report::Fenced {
                    detail: e.to_string(),
                },
            };
        }
        Err(e) => {
            // Never run what nothing records: the command never leaves its gate.
            gated.abort();
            if let Some(cg) = &group.cgroup {
                cg.remove();
            }
            let _ = std::fs::write(&log_path, format!("lanekeeper: not started: {e}\n"));
            return Report::Error {
                message: DispatchError::Unrecorded {
                    lane: lane.to_string(),
                    source: e,
                }
                .to_string(),
            };
        }
    };
    if let Err(e) = gated.release() {
        if let Some(cg) = &group.cgroup {
            cg.remove();
        }
        let why = format!(
            "cannot start `{}` in {}: {e}",
            cmd.argv[0],
            cmd.cwd.display()
        );
        let _ = std::fs::write(&log_path, format!("lanekeeper: {why}\n"));
        let end = RunEnd {
            at: clock.now(),
            result: RunResult::Failure,
            exit: None,
        };
        let _ = persist(lane, "failed start", RECORD_END_FOR, || {
            store.finish_run(run_id, &end)
        });
        return not_run(run_id, why, entered, log_path);
    }
    emit(&Report::Started {
        run_id,
        pid,
        log: log_path.clone(),
        supervisor: me,
    });

    let started = Instant::now();
    // A stop from `lanekeeper stop` is recorded before it is signalled: its grace replaces
    // the lane's, and the run ends `cancelled`.
    let requested = || store.stop_request(run_id).ok().flatten();
    let stop_grace = || requested().and_then(|r| r.grace);
    let (exit, timed_out, stopped) =
        match wait_for(lane, &group, cmd.timeout, cmd.grace, &stop_grace) {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(lane, pid, "Lost track of the command: {e}.");
                (None, false, false)
            }
        };
    let stop = if stopped { requested() } else { None };
    let grace = stop.as_ref().and_then(|r| r.grace).unwrap_or(cmd.grace);
    let leftovers = stop_leftovers(&group, grace);
    if leftovers > 0 {
        note_in_log(
            &log_path,
            &[format!(
                "{leftovers} process(es) the command left behind were stopped with the run"
            )],
        );
    }
    if let Some(cg) = &group.cgroup {
        cg.remove();
    }
    if let Some(r) = &stop {
        note_in_log(&log_path, &[format!("stopped by {}", r.by)]);
    }
    let result = match (exit, timed_out) {
        _ if stop.is_some() => RunResult::Cancelled,
        (Some(ExitInfo::Code(0)), false) => RunResult::Success,
        (None, _) => RunResult::Interrupted,
        _ => RunResult::Failure,
    };
    let end = RunEnd {
        at: clock.now(),
        result,
        exit,
    };
    if let Err(e) = persist(lane, "run's end", RECORD_END_FOR, || {
        store.finish_run(run_id, &end)
    }) {
        return Report::Error {
            message: format!(
                "lane `{lane}`: the run ended ({}) but could not be recorded: {e}",
                result.as_str()
            ),
        };
    }
    logs::tidy(&log_path, &spec.log_rules, clock.now().into());
    Report::Ended(RunReport {
        run_id,
        pid: Some(pid),
        result,
        exit,
        timed_out,
        spawn_error: None,
        duration: started.elapsed(),
        log_path,
    })
}

/// The report of a run whose command never ran: a recorded failure that says why.
fn not_run(run_id: i64, why: String, entered: Instant, log_path: PathBuf) -> Report {
    Report::Ended(RunReport {
        run_id,
        pid: None,
        result: RunResult::Failure,
        exit: None,
        timed_out: false,
        spawn_error: Some(why),
        duration: entered.elapsed(),
        log_path,
    })
}

/// Waits for the command, enforcing its timeout (TERM to the group, `grace`, KILL) and
/// forwarding SIGTERM and SIGINT sent to the supervisor (a stop) the same way.
/// `stop_grace` gives the grace a stop asked for, if one did. Returns the exit, whether it
/// timed out, and whether a stop signal came.
fn wait_for(
    lane: &str,
    group: &Group,
    timeout: Option<Duration>,
    grace: Duration,
    stop_grace: &dyn Fn() -> Option<Duration>,
) -> std::io::Result<(Option<ExitInfo>, bool, bool)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        // Listening now: a stop held pending since the start is delivered.
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
            Some(&stop_signals()),
            None,
        );
        let pid = group.pgid;
        let mut exited =
            tokio::task::spawn_blocking(move || waitpid(Pid::from_raw(pid as i32), None));
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut timed_out = false;
        let mut stopped = false;
        // The earliest KILL asked for wins.
        let kill_by = |kill_at: &mut Option<tokio::time::Instant>, wait: Duration| {
            let at = tokio::time::Instant::now() + wait;
            *kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
        };
        let status = loop {
            tokio::select! {
                status = &mut exited => break status,
                _ = sleep_until(deadline), if deadline.is_some() && !timed_out => {
                    timed_out = true;
                    tracing::warn!(lane, pid, "Run timed out; sending TERM to its processes.");
                    group.signal(Signal::SIGTERM);
                    kill_at.get_or_insert(tokio::time::Instant::now() + grace);
                }
                _ = sleep_until(kill_at), if kill_at.is_some() => {
                    group.signal(Signal::SIGKILL);
                    kill_at = None;
                }
                Some(()) = term.recv() => {
                    stopped = true;
                    group.signal(Signal::SIGTERM);
                    kill_by(&mut kill_at, stop_grace().unwrap_or(grace));
                }
                Some(()) = int.recv() => {
                    stopped = true;
                    group.signal(Signal::SIGINT);
                    kill_by(&mut kill_at, stop_grace().unwrap_or(grace));
                }
            }
        };
        let exit = match status {
            Ok(Ok(WaitStatus::Exited(_, code))) => Some(ExitInfo::Code(code)),
            Ok(Ok(WaitStatus::Signaled(_, sig, _))) => Some(ExitInfo::Signal(sig as i32)),
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => None,
        };
        Ok((exit, timed_out, stopped))
    })
}

fn stop_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Everything a run's stop must reach: the command's process group, every other process
/// descended from this supervisor (a `setsid` escapes the group, not the ancestry), and the
/// run's cgroup where it has one (which nothing escapes).
struct Group {
    pgid: u32,
    cgroup: Option<cgroup::RunCgroup>,
}

impl Group {
    fn signal(&self, signal: Signal) {
        if let Some(cg) = &self.cgroup {
            cg.signal(signal);
        }
        process::signal_group(self.pgid, signal);
        for pid in process::descendants(std::process::id()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
        }
    }

    fn alive(&self) -> bool {
        process::group_alive(self.pgid)
            || !process::descendants(std::process::id()).is_empty()
            || self
                .cgroup
                .as_ref()
                .is_some_and(cgroup::RunCgroup::populated)
    }

    fn count(&self) -> usize {
        let mut pids: std::collections::BTreeSet<u32> = process::descendants(std::process::id())
            .into_iter()
            .collect();
        if let Some(cg) = &self.cgroup {
            pids.extend(cg.pids());
        }
        pids.len()
    }
}

/// Stops whatever the command left running once it exited: TERM, `grace`, then KILL. Returns
/// how many processes were left. Reaps every child.
fn stop_leftovers(group: &Group, grace: Duration) -> usize {
    let left = group.count();
    if left > 0 || group.alive() {
        group.signal(Signal::SIGTERM);
        let until = Instant::now() + grace;
        while group.alive() && Instant::now() < until {
            reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        group.signal(Signal::SIGKILL);
        // cgroup.kill is asynchronous: the cgroup can be removed once it is empty.
        let until = Instant::now() + Duration::from_secs(5);
        while group
            .cgroup
            .as_ref()
            .is_some_and(cgroup::RunCgroup::populated)
            && Instant::now() < until
        {
            reap();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    reap();
    left
}

/// Appends lanekeeper's own lines to the run log, marked as such.
fn note_in_log(log_path: &std::path::Path, notes: &[String]) {
    if notes.is_empty() {
        return;
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log_path) {
        for note in notes {
            let _ = writeln!(f, "[lanekeeper: {note}]");
        }
    }
}

/// Collects every exited child (adopted orphans included), without blocking.
fn reap() {
    while let Ok(status) = waitpid(
        Pid::from_raw(-1),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    ) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Where [`main`] is started from: the binary itself, so no other file need be installed.
/// Programs that use the library without being lanekeeper (benches) name the binary in
/// `LANEKEEPER_SUPERVISOR_BIN`.
pub fn program() -> std::io::Result<PathBuf> {
    match std::env::var_os("LANEKEEPER_SUPERVISOR_BIN") {
        Some(bin) => Ok(PathBuf::from(bin)),
        None => std::env::current_exe(),
    }
}
