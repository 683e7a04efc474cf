//! The decision engine: pure, clock injected.
//!
//! [`decide`] takes a lane and a pass (instant, recorded lane states, host for observations) and
//! returns a [`Decision`]. It reads no clock and touches no store; `check`, `fire`, `run` and
//! `explain` all call it, so they cannot disagree.

pub mod calendar;
pub mod fairness;
pub mod schedule;
pub mod wake;
mod workers;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use crate::model::decision::{
    ChainEntry, Decision, GateVerdict, HOSTS_GATE, Origin, Outcome, PAUSE_GATE,
    REASON_NO_ELIGIBLE_HOST, REASON_PAUSED, SCHEDULE_GATE, TriggerSource,
};
use schedule::Due;

use crate::compile::Lane;
use crate::config::OnError;
use crate::model::duration::format_ms;
use crate::plugins::{GateInput, PassHost, Verdict, host};

/// How much of the chain to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainMode {
    /// Stop at the first deferral (what scheduling needs).
    FirstDeferral,
    /// Evaluate every gate and mark the deciding one (what `explain` shows).
    Full,
}

/// Decides one lane at the pass's instant: the schedule gate, then the lane's gates in order,
/// with the starvation guard waiving soft ones.
pub fn decide(lane: &Lane, pass: &Arc<PassHost>, mode: ChainMode) -> Decision {
    let now = pass.now();
    let state = pass.states().get(&lane.name).cloned().unwrap_or_default();
    let mut decision = Decision {
        lane: lane.name.clone(),
        at: now,
        outcome: Outcome::Trigger,
        source: None,
        reason: None,
        gate: None,
        detail: None,
        chain: Vec::with_capacity(lane.gates.len() + 1),
        hashes: Some(std::sync::Arc::clone(&lane.fingerprints)),
        origin: None,
    };
    if !schedule_gate(&mut decision, lane, &state, mode) {
        return decision;
    }
    if !pause_gate(&mut decision, &state, mode) {
        return decision;
    }
    if !hosts_gate(&mut decision, lane, &state, mode) {
        return decision;
    }
    let starving_for = starving_for(lane, &state, now);
    let mut waived = false;
    for binding in &lane.gates {
        let (mut entry, deferral) = run_gate(binding, lane, pass);
        if let Some((reason, detail)) = deferral {
            entry.reason = Some(reason.clone());
            entry.detail = Some(detail.clone());
            if binding.soft && starving_for.is_some() {
                entry.verdict = GateVerdict::Waived;
                waived = true;
            } else {
                entry.verdict = GateVerdict::Defer;
                if decision.outcome != Outcome::Deferred {
                    decision.outcome = Outcome::Deferred;
                    decision.source = None;
                    decision.reason = Some(reason);
                    decision.gate = Some(binding.name.clone());
                    decision.detail = Some(detail);
                    entry.decided = mode == ChainMode::Full;
                    if mode == ChainMode::FirstDeferral {
                        decision.chain.push(entry);
                        break;
                    }
                }
            }
        }
        decision.chain.push(entry);
    }
    if decision.outcome == Outcome::Trigger && waived {
        let held = starving_for.unwrap_or(0);
        decision.source = Some(TriggerSource::StarvationGuard);
        decision.reason = Some(format!("starvation-guard:{held}"));
        decision.detail = Some(format!(
            "due and deferred for {}; soft gates waived",
            format_ms(held)
        ));
    }
    decision
}

/// The built-in first gate. Returns whether the lane's own gates are evaluated next: not for a
/// disabled lane, nor for one not due unless the whole chain is asked for.
fn schedule_gate(
    decision: &mut Decision,
    lane: &Lane,
    state: &crate::model::lane_state::LaneState,
    mode: ChainMode,
) -> bool {
    let decided = mode == ChainMode::Full;
    match due_now(lane, state, decision.at) {
        Due::Disabled => {
            let mut entry = ChainEntry::builtin(
                SCHEDULE_GATE,
                GateVerdict::Disabled,
                None,
                "schedule is off (every: 0, off or negative)".into(),
            );
            entry.decided = decided;
            decision.outcome = Outcome::Disabled;
            decision.gate = Some(SCHEDULE_GATE.into());
            decision.detail = entry.detail.clone();
            decision.chain.push(entry);
            false
        }
        Due::NotDue { detail, .. } => {
            decision.outcome = Outcome::Deferred;
            decision.reason = Some(REASON_NOT_DUE.into());
            decision.gate = Some(SCHEDULE_GATE.into());
            decision.detail = Some(detail.clone());
            let mut entry = ChainEntry::builtin(
                SCHEDULE_GATE,
                GateVerdict::Defer,
                Some(REASON_NOT_DUE),
                detail,
            );
            entry.decided = decided;
            decision.chain.push(entry);
            mode == ChainMode::Full
        }
        Due::Due {
            source,
            reason,
            detail,
        } => {
            decision.source = Some(source);
            decision.reason = Some(reason);
            decision.chain.push(ChainEntry::builtin(
                SCHEDULE_GATE,
                GateVerdict::Pass,
                None,
                detail,
            ));
            true
        }
    }
}

/// The built-in gate after the schedule: an operator's pause in force defers the lane with
/// `paused`, naming the note, who and when; an expired one is none. Returns whether the
/// lane's own gates are evaluated next (only when the whole chain is asked for, if paused).
fn pause_gate(
    decision: &mut Decision,
    state: &crate::model::lane_state::LaneState,
    mode: ChainMode,
) -> bool {
    let Some(pause) = state.pause.as_ref().filter(|p| p.in_force(decision.at)) else {
        return true;
    };
    let detail = crate::model::decision::pause_words(pause);
    let mut entry =
        ChainEntry::builtin(PAUSE_GATE, GateVerdict::Defer, Some(REASON_PAUSED), detail);
    entry.hint = Some(match pause.until {
        Some(u) => format!(
            "the pause ends at {u}, or `lanekeeper resume {}`",
            decision.lane
        ),
        None => format!("`lanekeeper resume {}`", decision.lane),
    });
    if decision.outcome != Outcome::Deferred {
        entry.decided = mode == ChainMode::Full;
        decision.outcome = Outcome::Deferred;
        decision.source = None;
        decision.reason = Some(REASON_PAUSED.into());
        decision.gate = Some(PAUSE_GATE.into());
        decision.detail = entry.detail.clone();
    }
    decision.chain.push(entry);
    mode == ChainMode::Full
}

/// The built-in gate after the pause: a lane with `hosts:` defers with `no-eligible-host`
/// while none of them is alive, since no replica may run it; otherwise it passes, naming the
/// host that runs it (the first alive, in the lane's order). The alive hosts come in with the
/// lane states, so the engine stays pure. Returns whether the lane's own gates are evaluated
/// next (only when the whole chain is asked for, if it defers).
fn hosts_gate(
    decision: &mut Decision,
    lane: &Lane,
    state: &crate::model::lane_state::LaneState,
    mode: ChainMode,
) -> bool {
    let Some(alive) = state.alive_hosts.as_deref() else {
        return true;
    };
    if lane.hosts.is_empty() {
        return true;
    }
    if let Some(host) = eligible_host(lane, alive) {
        decision.chain.push(ChainEntry::builtin(
            HOSTS_GATE,
            GateVerdict::Pass,
            None,
            format!("runs on {host} (hosts: {})", lane.hosts.join(", ")),
        ));
        return true;
    }
    let seen = match alive {
        [] => "none".to_string(),
        a => a.join(", "),
    };
    let detail = format!(
        "none of its hosts ({}) is alive: no replica by those names was seen within the lease TTL (alive: {seen})",
        lane.hosts.join(", ")
    );
    let mut entry = ChainEntry::builtin(
        HOSTS_GATE,
        GateVerdict::Defer,
        Some(REASON_NO_ELIGIBLE_HOST),
        detail,
    );
    entry.hint = Some(format!(
        "start `lanekeeper run --host NAME` on one of {}, or change the lane's `hosts:`",
        lane.hosts.join(", ")
    ));
    if decision.outcome != Outcome::Deferred {
        entry.decided = mode == ChainMode::Full;
        decision.outcome = Outcome::Deferred;
        decision.source = None;
        decision.reason = Some(REASON_NO_ELIGIBLE_HOST.into());
        decision.gate = Some(HOSTS_GATE.into());
        decision.detail = entry.detail.clone();
    }
    decision.chain.push(entry);
    mode == ChainMode::Full
}

/// The host that runs `lane` among the `alive` ones: the first of its `hosts:` that is alive,
/// or any when it names none (`None` when none of them is).
pub fn eligible_host<'a>(lane: &'a Lane, alive: &'a [String]) -> Option<&'a str> {
    if lane.hosts.is_empty() {
        return alive.first().map(String::as_str);
    }
    lane.hosts
        .iter()
        .find(|h| alive.contains(h))
        .map(String::as_str)
}

/// The starvation guard: how long the lane has been due and deferred without a break, once
/// that reaches its `max_deferral` (then its soft gates are waived).
fn starving_for(
    lane: &Lane,
    state: &crate::model::lane_state::LaneState,
    now: jiff::Timestamp,
) -> Option<i64> {
    let (max, since) = (lane.max_deferral?, state.deferral_since?);
    let held = now.as_millisecond().saturating_sub(since.as_millisecond());
    let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
    (held >= max_ms).then_some(held)
}

/// One of the lane's gates: its chain entry, and its deferral (reason, detail) if it defers.
fn run_gate(
    binding: &crate::compile::GateBinding,
    lane: &Lane,
    pass: &Arc<PassHost>,
) -> (ChainEntry, Option<(String, String)>) {
    let input = GateInput {
        lane: &lane.name,
        zone: &lane.zone,
        pass,
    };
    let (result, evidence, took) = host::observe_granted(pass, &lane.name, &binding.grants, || {
        binding.gate.evaluate(&input)
    });
    let mut entry = ChainEntry {
        gate: binding.name.clone(),
        runtime: Some(binding.runtime),
        verdict: GateVerdict::Pass,
        reason: None,
        detail: None,
        hint: None,
        error: None,
        error_kind: None,
        soft: binding.soft,
        decided: false,
        micros: Some(u64::try_from(took.as_micros()).unwrap_or(u64::MAX)),
        evidence,
    };
    let max_detail = pass.limits().evidence.max_detail;
    let deferral = match result {
        Ok(Verdict::Pass { detail }) => {
            entry.detail = detail;
            None
        }
        Ok(Verdict::Defer {
            reason,
            detail,
            hint,
        }) => {
            entry.hint = hint;
            Some((reason, detail))
        }
        Err(e) if binding.on_error == OnError::Pass => {
            entry.error_kind = Some(e.kind);
            entry.error = Some(cut(e.message, max_detail));
            None
        }
        Err(e) => {
            entry.error_kind = Some(e.kind);
            entry.hint = Some(format!(
                "fix plugin `{}` (see the detail), or set `on_error: pass` on this gate",
                binding.name
            ));
            Some((REASON_PLUGIN_ERROR.to_string(), cut(e.message, max_detail)))
        }
    };
    (entry, deferral)
}

/// The schedule gate: due by the schedule, or by a retry of a failed run.
fn due_now(lane: &Lane, state: &crate::model::lane_state::LaneState, now: jiff::Timestamp) -> Due {
    let due = schedule::due(
        &schedule::Timing::of(lane),
        state.last_run_at,
        state.downtime,
        now,
    );
    if matches!(due, Due::NotDue { .. })
        && let Some(retry) = schedule::retry_due(lane.retry, state, now)
    {
        return retry;
    }
    due
}

/// Whether deciding `lane` runs its plugins, the only part of a decision that can wait.
fn runs_plugins(lane: &Lane, pass: &PassHost, mode: ChainMode) -> bool {
    if lane.gates.is_empty() {
        return false;
    }
    let never_run = crate::model::lane_state::LaneState::default();
    let state = pass.states().get(&lane.name).unwrap_or(&never_run);
    let paused = state.pause.as_ref().is_some_and(|p| p.in_force(pass.now()));
    if paused && mode != ChainMode::Full {
        return false;
    }
    match due_now(lane, state, pass.now()) {
        Due::Due { .. } => true,
        Due::NotDue { .. } => mode == ChainMode::Full,
        Due::Disabled => false,
    }
}

/// An error message (a thrown value, a panic message) cut to `max` bytes, saying so.
fn cut(mut message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!(
        "… (cut at {}, limits.evidence.max_detail)",
        crate::config::settings::format_size(max as u64)
    ));
    message
}

/// The schedule gate's deferral reason.
pub const REASON_NOT_DUE: &str = "interval-not-due";
/// The reason of a failed plugin.
pub const REASON_PLUGIN_ERROR: &str = "plugin-error";

/// A manual trigger (`fire`): recorded so the history shows who started the run.
pub fn manual(lane: &Lane, now: jiff::Timestamp) -> Decision {
    Decision {
        lane: lane.name.clone(),
        at: now,
        outcome: Outcome::Trigger,
        source: Some(TriggerSource::Manual),
        reason: Some("manual".into()),
        gate: None,
        detail: Some("fired by hand; preconditions bypassed".into()),
        chain: Vec::new(),
        hashes: Some(std::sync::Arc::clone(&lane.fingerprints)),
        origin: None,
    }
}

/// Lanes a pass decides at once: enough that a few slow probes do not hold up the rest, few
/// enough to bound its threads and live WASM instances (the pool has 64 slots, 48 kept warm).
pub const PASS_WORKERS: usize = 8;

/// Lanes in one pass from which those that run plugins are found and decided on scoped threads
/// borrowing them ([`crate::par::map`]) instead of the parked workers, which own clones.
const SPREAD_FROM: usize = 512;

/// Lanes a thread takes at a time in a spread-out pass: few, so that a lane waiting for a
/// slow probe holds up only a few others on its thread.
const SPREAD_CHUNK: usize = 16;

/// One pass over every lane of `config`: what `check`, `explain` and the daemon all run, so
/// they cannot decide differently.
pub fn pass_all(
    config: &crate::compile::Config,
    states: Arc<crate::model::lane_state::LaneStates>,
    now: jiff::Timestamp,
    observer: Arc<dyn crate::model::observer::Observer>,
    explain: Option<&str>,
) -> Vec<Decision> {
    let lanes: Vec<&Lane> = config.lanes.iter().collect();
    pass(&lanes, states, now, observer, &config.settings, explain)
}

/// One evaluation pass over every lane at `now`: every lane shares one host, so probes and
/// metric reads are made once per pass. Lanes are decided in the picker's order and admitted
/// one by one (their own run, their group's limit); a lane admitted earlier counts as running
/// for every later lane, in its group and in contention gates, because it is dispatched by
/// this pass. Decisions come back in the order of `lanes`.
/// `check`, `run`, `explain` and simulations all come through here, so they cannot disagree.
/// The lane named by `explain` has its whole chain evaluated.
///
/// The result is [`pass_sequential`]'s, computed concurrently so that one slow probe does not
/// hold up the other lanes: the lanes that run plugins are first decided at once on up to
/// [`PASS_WORKERS`] threads, with nothing of this pass starting yet; then lanes are admitted in
/// the picker's order (the others decided there), and a lane whose decision looked at a lane
/// admitted before it (a `lane` observation in its evidence) is decided again, now seeing that
/// lane starting, from the pass's probe cache.
pub fn pass(
    lanes: &[&Lane],
    states: Arc<crate::model::lane_state::LaneStates>,
    now: jiff::Timestamp,
    observer: Arc<dyn crate::model::observer::Observer>,
    settings: &crate::config::Settings,
    explain: Option<&str>,
) -> Vec<Decision> {
    let host = pass_host(&states, now, observer, settings);
    let limits = |g: &str| settings.max_concurrent(g);
    let order = fairness::picker_order(lanes, &states, now, &limits);
    let mode = |lane: &Lane| chain_mode(lane, explain);
    let mut guessed = decide_all(lanes, &order, &host, &mode);
    let mut admission = fairness::Admission::new(lanes, &states, now, &limits);
    let mut decided: Vec<Option<Decision>> = vec![None; lanes.len()];
    let mut any_starting = false;
    for &i in &order {
        let lane = lanes[i];
        let mut decision = match guessed.get_mut(i).and_then(Option::take) {
            Some(d) if !(any_starting && looked_at_starting(&d, &host)) => d,
            _ => decide(lane, &host, mode(lane)),
        };
        if admission.admit(&mut decision, lane) {
            host.mark_starting(&lane.name);
            any_starting = true;
        }
        decided[i] = Some(decision);
    }
    decided.into_iter().flatten().collect()
}

/// [`pass`] lane by lane on the calling thread: the reference the concurrent pass must agree
/// with, and the baseline of its benchmark.
pub fn pass_sequential(
    lanes: &[&Lane],
    states: Arc<crate::model::lane_state::LaneStates>,
    now: jiff::Timestamp,
    observer: Arc<dyn crate::model::observer::Observer>,
    settings: &crate::config::Settings,
    explain: Option<&str>,
) -> Vec<Decision> {
    let host = pass_host(&states, now, observer, settings);
    let limits = |g: &str| settings.max_concurrent(g);
    let mut admission = fairness::Admission::new(lanes, &states, now, &limits);
    let mut decided: Vec<Option<Decision>> = vec![None; lanes.len()];
    for i in fairness::picker_order(lanes, &states, now, &limits) {
        let lane = lanes[i];
        let mut decision = decide(lane, &host, chain_mode(lane, explain));
        if admission.admit(&mut decision, lane) {
            host.mark_starting(&lane.name);
        }
        decided[i] = Some(decision);
    }
    decided.into_iter().flatten().collect()
}

fn pass_host(
    states: &Arc<crate::model::lane_state::LaneStates>,
    now: jiff::Timestamp,
    observer: Arc<dyn crate::model::observer::Observer>,
    settings: &crate::config::Settings,
) -> Arc<PassHost> {
    Arc::new(
        PassHost::new(
            now,
            Arc::clone(states),
            observer,
            Arc::new(settings.metrics.clone()),
        )
        .with_limits(host::GateLimits {
            timeout: settings.gate_timeout,
            evidence: settings.evidence,
        }),
    )
}

fn chain_mode(lane: &Lane, explain: Option<&str>) -> ChainMode {
    if explain == Some(lane.name.as_str()) {
        ChainMode::Full
    } else {
        ChainMode::FirstDeferral
    }
}

/// Whether a decision looked at a lane that `pass` now counts as starting: a plugin read its
/// state, or counted `lanes.running`, before it was admitted.
fn looked_at_starting(d: &Decision, pass: &PassHost) -> bool {
    d.chain.iter().flat_map(|c| &c.evidence).any(|o| match o {
        host::Observation::Lane { lane, .. } => pass.is_starting(lane),
        host::Observation::Metric { name, .. } => {
            name == crate::model::metric::LANES_RUNNING && pass.any_starting()
        }
        _ => false,
    })
}

/// Decides at once, taking them in `order` on up to [`PASS_WORKERS`] threads (this one
/// included), the lanes that run plugins: the only part of a decision that can wait. The
/// others take microseconds and are left out, to be decided in the admission walk while
/// still in cache; so is a lane whose decision panicked, and every lane when at most one
/// runs plugins (then the result is empty).
fn decide_all(
    lanes: &[&Lane],
    order: &[usize],
    host: &Arc<PassHost>,
    mode: &(dyn Fn(&Lane) -> ChainMode + Sync),
) -> Vec<Option<Decision>> {
    let mut decided: Vec<Option<Decision>> = Vec::new();
    if order.len() >= SPREAD_FROM {
        // Many lanes: each thread finds which of its lanes run plugins (the due rule is most
        // of a pass over lanes that are not due) and decides those, borrowing the lanes
        // rather than cloning each for the parked workers; starting the threads is nothing
        // next to the work.
        let results = crate::par::map(order.to_vec(), PASS_WORKERS, SPREAD_CHUNK, |i| {
            let lane = lanes[i];
            if !runs_plugins(lane, host, mode(lane)) {
                return None;
            }
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decide(lane, host, mode(lane))
            }))
            .ok()
        });
        decided.resize(lanes.len(), None);
        for (&i, d) in order.iter().zip(results) {
            decided[i] = d;
        }
        return decided;
    }
    let waiting: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| runs_plugins(lanes[i], host, mode(lanes[i])))
        .collect();
    if waiting.len() > 1 {
        decided.resize(lanes.len(), None);
        let batch = waiting
            .iter()
            .map(|&i| (i, lanes[i].clone(), mode(lanes[i])))
            .collect();
        let helpers = (PASS_WORKERS - 1).min(waiting.len() - 1);
        for (i, d) in workers::Batch::run(batch, host, helpers) {
            decided[i] = d;
        }
    }
    decided
}
