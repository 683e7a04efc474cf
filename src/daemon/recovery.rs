//! Crash recovery at start. A run recorded as in progress is either still supervised (its own
//! supervisor holds the lane's lock and records the real outcome; the daemon only watches for
//! the end), orphaned (its supervisor was killed but the command lives: adopted and watched, its
//! exit code unknowable), or gone (recorded as `interrupted`, which counts as a failure).
//! Nothing recorded is silently dropped.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use crate::clock::Clock;
use crate::dispatch::lock::{LaneLock, LockError};
use crate::dispatch::process;
use crate::home::Home;
use crate::state::{RunEnd, RunResult, RunningRun, Store, StoreError};

/// How often an adopted child (not ours to `wait` on) is checked for exit.
const ADOPTED_POLL: Duration = Duration::from_secs(1);

/// Closes or adopts every run recorded as in progress. `adopt` is false for `run --once`,
/// which must not wait on children it did not start.
pub fn recover(
    home: &Home,
    store: &Rc<dyn Store>,
    clock: &Arc<dyn Clock>,
    events: &UnboundedSender<Event>,
    adopt: bool,
) -> Result<(), StoreError> {
    // On a shared store, each machine settles only its own runs: another's pids mean
    // nothing here. A claim whose supervisor is gone from this machine is released.
    let claims: std::collections::HashMap<String, crate::state::RunClaim> = store
        .run_claims()?
        .into_iter()
        .map(|c| (c.lane.clone(), c))
        .collect();
    for claim in claims.values() {
        if claim.host == home.host() && process::start_time(claim.pid).is_none() {
            store.release_run(&claim.lane, &claim.host, claim.pid)?;
        }
    }
    for (lane, state) in store.lane_states()? {
        let Some(run) = state.running else { continue };
        if claims.get(&lane).is_some_and(|c| c.host != home.host()) {
            continue;
        }
        // A live supervisor (`fire`, another lanekeeper) holds the lane lock and will record
        // the outcome itself; only runs nobody supervises are ours to settle.
        let lock = match LaneLock::try_acquire(&home.lock_file(&lane)) {
            Ok(lock) => lock,
            Err(LockError::Busy { .. }) => {
                if adopt {
                    watch_supervised(lane, run, Rc::clone(store), events.clone());
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(lane = %lane, "Cannot check the lane lock: {e}.");
                continue;
            }
        };
        if process::is_alive(run.pid, run.pid_start) {
            if adopt {
                watch_adopted(
                    lane,
                    run,
                    lock,
                    Rc::clone(store),
                    Arc::clone(clock),
                    events.clone(),
                );
            }
        } else {
            crate::state::settle_vanished(&**store, &lane, &run, clock.now())?;
        }
    }
    Ok(())
}

/// Waits for a run that its own supervisor still runs, so the loop wakes when it ends: the
/// supervisor records the outcome, this only notices it.
fn watch_supervised(
    lane: String,
    run: RunningRun,
    store: Rc<dyn Store>,
    events: UnboundedSender<Event>,
) {
    tracing::info!(lane = %lane, pid = run.pid, started = %run.started_at, "A run started before this daemon is still supervised; watching for its end.");
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(ADOPTED_POLL).await;
            let still = match store.lane_states() {
                Ok(mut states) => states
                    .remove(&lane)
                    .and_then(|s| s.running)
                    .is_some_and(|r| r.run_id == run.run_id && r.is_alive(process::is_alive)),
                Err(_) => true,
            };
            if !still {
                break;
            }
        }
        let _ = events.send(Event::RunEnded(lane, None));
    });
}

fn watch_adopted(
    lane: String,
    run: RunningRun,
    lock: LaneLock,
    store: Rc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: UnboundedSender<Event>,
) {
    tracing::info!(lane = %lane, pid = run.pid, started = %run.started_at, "Adopted a run that outlived the previous daemon; watching it.");
    tokio::task::spawn_local(async move {
        let _lock = lock;
        while process::is_alive(run.pid, run.pid_start) {
            tokio::time::sleep(ADOPTED_POLL).await;
        }
        let end = RunEnd {
            at: clock.now(),
            result: RunResult::Unknown,
            exit: None,
        };
        match store.finish_run(run.run_id, &end) {
            Ok(()) => {
                tracing::warn!(lane = %lane, pid = run.pid, "Adopted run ended; its exit code cannot be known because it was not this daemon's child.")
            }
            Err(e) => {
                tracing::error!(lane = %lane, "Could not record the end of an adopted run: {e}.")
            }
        }
        let _ = events.send(Event::RunEnded(lane, None));
    });
}
