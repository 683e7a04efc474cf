//! Firing hooks on the events the daemon already sees: a failed run, used-up retries or a
//! deferral past `give_up_after`, a run the starvation guard forced, the start of a deferral
//! episode. A hook runs as a task beside the loop, never awaited by a pass; each firing is
//! claimed in the store first, so neither a second pass nor a restart runs it twice.

use jiff::Timestamp;

use super::{Daemon, Event};
use crate::dispatch::RunReport;
use crate::dispatch::hook::{self, Firing};
use crate::engine::Decision;
use crate::state::{HookEvent, LaneStates, RunResult};

/// How many handled firings are remembered in memory before starting afresh.
const MAX_SEEN: usize = 10_000;

/// The key of a deferral episode: when it began.
fn episode_key(start: Timestamp) -> String {
    format!("deferral:{start}")
}

impl Daemon {
    /// Claims `firing` and starts its lane's hook for it, if the lane has one and the event
    /// was not handled before.
    pub(super) fn fire_hook(&mut self, firing: Firing) {
        let Some(hook) = self
            .config
            .lane(&firing.lane)
            .and_then(|l| l.hooks.get(firing.event))
            .cloned()
        else {
            return;
        };
        let seen = (firing.lane.clone(), firing.event, firing.key.clone());
        if self.hooks_seen.contains(&seen) {
            return;
        }
        let id = match self.store.claim_hook(
            &firing.lane,
            firing.event,
            &firing.key,
            self.clock.now(),
        ) {
            Ok(Some(id)) => id,
            Ok(None) => {
                // Handled before (by an earlier daemon, or `fire --wait`).
                self.hooks_seen.insert(seen);
                return;
            }
            Err(e) => {
                tracing::warn!(lane = %firing.lane, event = firing.event.as_str(), "Could not record a hook firing ({e}); it is tried again at the next pass.");
                return;
            }
        };
        if self.hooks_seen.len() >= MAX_SEEN {
            // Only a shortcut: the store still says what was handled.
            self.hooks_seen.clear();
        }
        self.hooks_seen.insert(seen);
        self.hooks_running += 1;
        tracing::info!(lane = %firing.lane, event = firing.event.as_str(), key = %firing.key, "Hook started.");
        let (home, events) = (self.home.clone(), self.events.clone());
        tokio::task::spawn_local(async move {
            let outcome = hook::run(&home, &hook, &firing).await;
            let _ = events.send(Event::HookEnded(id, firing, outcome));
        });
    }

    /// Records, logs and counts how a hook ended.
    pub(super) fn hook_ended(&mut self, id: i64, firing: &Firing, outcome: &hook::Outcome) {
        self.hooks_running = self.hooks_running.saturating_sub(1);
        if let Err(e) =
            self.store
                .finish_hook(id, outcome.result, &outcome.detail, self.clock.now())
        {
            tracing::warn!(lane = %firing.lane, "Could not record how a hook ended: {e}.");
        }
        self.metrics
            .observe_hook(&firing.lane, firing.event, outcome.result);
        let took = crate::config::duration::format(outcome.took);
        match outcome.result {
            crate::state::HookResult::Success => {
                tracing::info!(lane = %firing.lane, event = firing.event.as_str(), took = %took, "Hook finished.")
            }
            result => tracing::warn!(
                lane = %firing.lane,
                event = firing.event.as_str(),
                result = result.as_str(),
                took = %took,
                log = %self.home.hook_log(&firing.lane).display(),
                "Hook failed: {}.",
                outcome.detail
            ),
        }
    }

    /// A pass's hooks: `on_defer` at the start of each deferral episode, `on_give_up` once one
    /// lasts `give_up_after`, and `on_failure` for a lane whose latest run failed (whoever
    /// started it) and was not handled yet.
    pub(super) fn pass_hooks(
        &mut self,
        decisions: &[Decision],
        states: &LaneStates,
        now: Timestamp,
    ) {
        for d in decisions {
            let Some(lane) = self.config.lane(&d.lane) else {
                continue;
            };
            let (give_up_after, has_defer, has_give_up) = (
                lane.give_up_after,
                lane.hooks.on_defer.is_some(),
                lane.hooks.on_give_up.is_some(),
            );
            if !d.is_held() {
                self.open_deferrals.remove(&d.lane);
                continue;
            }
            let start = states
                .get(&d.lane)
                .and_then(|s| s.deferral_since)
                .or_else(|| self.open_deferrals.get(&d.lane).copied())
                .unwrap_or(d.at);
            self.open_deferrals.insert(d.lane.clone(), start);
            let payload = serde_json::json!({ "decision": d, "deferred_since": start });
            if has_defer {
                self.fire_hook(Firing {
                    lane: d.lane.clone(),
                    event: HookEvent::Defer,
                    key: episode_key(start),
                    reason: d.reason.clone(),
                    run_id: None,
                    result: None,
                    payload: payload.clone(),
                });
            }
            if has_give_up
                && let Some(after) = give_up_after
                && now.duration_since(start).unsigned_abs() >= after
                && now >= start
            {
                self.fire_hook(Firing {
                    lane: d.lane.clone(),
                    event: HookEvent::GiveUp,
                    key: episode_key(start),
                    reason: d.reason.clone(),
                    run_id: None,
                    result: None,
                    payload,
                });
            }
        }
        let failed: Vec<String> = self
            .config
            .lanes
            .iter()
            .filter(|l| l.hooks.on_failure.is_some())
            .filter(|l| {
                states.get(&l.name).is_some_and(|s| {
                    s.running.is_none()
                        && matches!(
                            s.last_result,
                            Some(RunResult::Failure | RunResult::Interrupted)
                        )
                })
            })
            .map(|l| l.name.clone())
            .collect();
        for lane in failed {
            match self.store.recent_runs(&lane, 1) {
                Ok(runs) => {
                    if let Some(run) = runs.into_iter().next() {
                        self.failed_run(&lane, run.id, None);
                    }
                }
                Err(e) => tracing::warn!(lane = %lane, "Could not read the latest run: {e}."),
            }
        }
    }

    /// `on_failure` for run `run_id` of `lane`, if it ended in failure (or was interrupted).
    pub(super) fn failed_run(&mut self, lane: &str, run_id: i64, report: Option<&RunReport>) {
        if self
            .config
            .lane(lane)
            .is_none_or(|l| l.hooks.on_failure.is_none())
        {
            return;
        }
        let key = format!("run:{run_id}");
        if self
            .hooks_seen
            .contains(&(lane.to_string(), HookEvent::Failure, key.clone()))
        {
            return;
        }
        let record = self
            .store
            .recent_runs(lane, 8)
            .ok()
            .and_then(|runs| runs.into_iter().find(|r| r.id == run_id));
        let result = record
            .as_ref()
            .and_then(|r| r.result)
            .or(report.map(|r| r.result));
        if !matches!(result, Some(RunResult::Failure | RunResult::Interrupted)) {
            return;
        }
        self.fire_hook(Firing {
            lane: lane.to_string(),
            event: HookEvent::Failure,
            key,
            reason: None,
            run_id: Some(run_id),
            result: result.map(|r| r.as_str().to_string()),
            payload: serde_json::json!({ "run": record, "report": report }),
        });
    }

    /// `on_give_up` for a failure streak whose retries are used up.
    pub(super) fn retries_given_up(&mut self, lane: &str, failing_since: Timestamp) {
        self.fire_hook(Firing {
            lane: lane.to_string(),
            event: HookEvent::GiveUp,
            key: format!("retries:{failing_since}"),
            reason: Some("retries-exhausted".into()),
            run_id: None,
            result: None,
            payload: serde_json::json!({ "failing_since": failing_since }),
        });
    }

    /// `on_forced_run` for a run the starvation guard started.
    pub(super) fn forced_run(&mut self, decision: &Decision, run_id: i64) {
        self.fire_hook(Firing {
            lane: decision.lane.clone(),
            event: HookEvent::ForcedRun,
            key: format!("run:{run_id}"),
            reason: decision.reason.clone(),
            run_id: Some(run_id),
            result: None,
            payload: serde_json::json!({ "decision": decision }),
        });
    }
}
