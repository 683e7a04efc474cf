//! Table tests of the pure engine: `decide` (schedule, gates, starvation guard), the pass's
//! admission (its own run, groups, the picker), and the wake rule, with stub gates and no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::compile::GateBinding;
use crate::config::{Command, OnError, Retry, Schedule, Settings};
use crate::model::lane_state::{LaneState, LaneStates, RunResult, RunningRun};
use crate::model::observer::Canned;
use crate::plugins::{Gate, GateInput, PluginError, PluginErrorKind, Runtime, Verdict};

/// A gate that always answers the same and counts how often it was asked.
struct Stub {
    answer: Result<Verdict, PluginError>,
    calls: AtomicUsize,
}

impl Gate for Stub {
    fn evaluate(&self, _: &GateInput<'_>) -> Result<Verdict, PluginError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer.clone()
    }
}

fn pass_() -> Result<Verdict, PluginError> {
    Ok(Verdict::Pass { detail: None })
}

fn defer(reason: &str) -> Result<Verdict, PluginError> {
    Ok(Verdict::Defer {
        reason: reason.into(),
        detail: format!("{reason} detail"),
        hint: None,
    })
}

fn fail() -> Result<Verdict, PluginError> {
    Err(PluginError {
        kind: PluginErrorKind::Thrown,
        message: "plugin `g` threw".into(),
    })
}

fn gate(name: &str, answer: Result<Verdict, PluginError>, soft: bool) -> (GateBinding, Arc<Stub>) {
    let stub = Arc::new(Stub {
        answer,
        calls: AtomicUsize::new(0),
    });
    let binding = GateBinding {
        name: name.into(),
        runtime: Runtime::Rhai,
        gate: Arc::clone(&stub) as Arc<dyn Gate>,
        soft,
        on_error: OnError::Defer,
        reads: Vec::new(),
        grants: Arc::default(),
        windows: Vec::new(),
        at: serde_saphyr::Location::UNKNOWN,
    };
    (binding, stub)
}

fn lane(name: &str, every: Option<Duration>, gates: Vec<GateBinding>) -> Lane {
    Lane {
        name: name.into(),
        label: name.into(),
        file: format!("rules/{name}.yaml").into(),
        schedule: every.map_or(Schedule::Disabled, Schedule::Every),
        zone: TimeZone::UTC,
        jitter: None,
        jitter_offset: Duration::ZERO,
        catch_up: Default::default(),
        gates,
        max_deferral: None,
        recheck: Duration::from_secs(30),
        group: None,
        priority: 10,
        retry: None,
        command: Command {
            argv: vec!["true".into()],
            cwd: ".".into(),
            env: BTreeMap::new(),
            timeout: None,
            grace: Duration::from_secs(1),
            limits: Default::default(),
        },
        fingerprints: Arc::default(),
        places: Default::default(),
        hooks: Default::default(),
        give_up_after: None,
        hosts: Vec::new(),
        env: Vec::new(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().expect("time")
}

fn ms(t: Timestamp, ms: i64) -> Timestamp {
    t + SignedDuration::from_millis(ms)
}

fn host(states: LaneStates, now: Timestamp) -> Arc<PassHost> {
    Arc::new(PassHost::new(
        now,
        Arc::new(states),
        Arc::new(Canned::up()),
        Arc::new(Default::default()),
    ))
}

fn decide_one(lane: &Lane, state: LaneState, now: Timestamp, mode: ChainMode) -> Decision {
    let mut states = LaneStates::new();
    states.insert(lane.name.clone(), state);
    decide(lane, &host(states, now), mode)
}

fn ran_at(t: Timestamp) -> LaneState {
    LaneState {
        last_run_at: Some(t),
        ..LaneState::default()
    }
}

#[test]
fn the_schedule_gate_decides_at_its_boundaries() {
    let l = lane("a", Some(HOUR), vec![]);
    let cases = [
        // (last run, now, outcome, reason)
        (None, t0(), Outcome::Trigger, "periodic-sweep:3600000"),
        (
            Some(t0()),
            ms(t0(), 3_600_000),
            Outcome::Trigger,
            "periodic-sweep:3600000",
        ),
        (
            Some(t0()),
            ms(t0(), 3_599_999),
            Outcome::Deferred,
            REASON_NOT_DUE,
        ),
        (Some(t0()), t0(), Outcome::Deferred, REASON_NOT_DUE),
    ];
    for (last, now, outcome, reason) in cases {
        let state = last.map(ran_at).unwrap_or_default();
        let d = decide_one(&l, state, now, ChainMode::FirstDeferral);
        assert_eq!(
            (d.outcome, d.reason.as_deref()),
            (outcome, Some(reason)),
            "{last:?} {now}"
        );
    }
    let off = lane("off", None, vec![]);
    let d = decide_one(&off, LaneState::default(), t0(), ChainMode::Full);
    assert_eq!(d.outcome, Outcome::Disabled);
    assert!(d.chain[0].decided);
}

#[test]
fn the_first_deferral_decides_and_later_gates_are_not_asked() {
    let (a, _) = gate("a", pass_(), false);
    let (b, b_stub) = gate("b", defer("busy"), false);
    let (c, c_stub) = gate("c", defer("late"), false);
    let l = lane("x", Some(HOUR), vec![a, b, c]);
    let d = decide_one(&l, LaneState::default(), t0(), ChainMode::FirstDeferral);
    assert_eq!(d.outcome, Outcome::Deferred);
    assert_eq!(
        (d.gate.as_deref(), d.reason.as_deref()),
        (Some("b"), Some("busy"))
    );
    assert_eq!(d.chain.len(), 3, "schedule, a, b");
    assert_eq!(b_stub.calls.load(Ordering::SeqCst), 1);
    assert_eq!(c_stub.calls.load(Ordering::SeqCst), 0);

    // The whole chain for `explain`: every gate asked, the deciding one marked.
    let d = decide_one(&l, LaneState::default(), t0(), ChainMode::Full);
    assert_eq!(c_stub.calls.load(Ordering::SeqCst), 1);
    let decided: Vec<&str> = d
        .chain
        .iter()
        .filter(|c| c.decided)
        .map(|c| c.gate.as_str())
        .collect();
    assert_eq!(decided, ["b"]);
    assert_eq!(d.gate.as_deref(), Some("b"));
}

#[test]
fn a_failing_plugin_defers_unless_its_gate_lets_errors_pass() {
    let (mut g, _) = gate("g", fail(), false);
    let l = lane("x", Some(HOUR), vec![g.clone()]);
    let d = decide_one(&l, LaneState::default(), t0(), ChainMode::FirstDeferral);
    assert_eq!(d.reason.as_deref(), Some(REASON_PLUGIN_ERROR));
    assert_eq!(d.chain[1].error_kind, Some(PluginErrorKind::Thrown));
    g.on_error = OnError::Pass;
    let l = lane("x", Some(HOUR), vec![g]);
    let d = decide_one(&l, LaneState::default(), t0(), ChainMode::FirstDeferral);
    assert_eq!(d.outcome, Outcome::Trigger);
    assert!(d.chain[1].error.is_some());
}

#[test]
fn the_starvation_guard_waives_soft_gates_from_max_deferral_on_and_never_hard_ones() {
    let (soft, _) = gate("night", defer("outside-off-peak"), true);
    let (hard, _) = gate("backup", defer("backup-stale"), false);
    let mut l = lane("x", Some(HOUR), vec![soft.clone()]);
    l.max_deferral = Some(Duration::from_secs(12 * 3600));
    let since = t0();
    let waiting = |held_ms: i64| {
        let state = LaneState {
            deferral_since: Some(since),
            ..LaneState::default()
        };
        (state, ms(since, held_ms))
    };
    let cases = [
        (12 * 3_600_000 - 1, Outcome::Deferred),
        (12 * 3_600_000, Outcome::Trigger),
        (13 * 3_600_000, Outcome::Trigger),
    ];
    for (held, outcome) in cases {
        let (state, now) = waiting(held);
        let d = decide_one(&l, state, now, ChainMode::FirstDeferral);
        assert_eq!(d.outcome, outcome, "held {held} ms: {d:?}");
        if outcome == Outcome::Trigger {
            assert_eq!(d.source, Some(TriggerSource::StarvationGuard));
            assert_eq!(
                d.reason.as_deref(),
                Some(format!("starvation-guard:{held}").as_str())
            );
            assert_eq!(d.chain[1].verdict, GateVerdict::Waived);
        }
    }
    let mut l = lane("x", Some(HOUR), vec![soft, hard]);
    l.max_deferral = Some(Duration::from_secs(3600));
    let (state, now) = waiting(10 * 3_600_000);
    let d = decide_one(&l, state, now, ChainMode::FirstDeferral);
    assert_eq!(
        (d.outcome, d.reason.as_deref()),
        (Outcome::Deferred, Some("backup-stale"))
    );
}

/// A daily lane retried every 15 min for an hour, whose run at t0 failed a minute in.
fn retrying_lane() -> (Lane, LaneState) {
    let mut l = lane("x", Some(Duration::from_secs(24 * 3600)), vec![]);
    l.retry = Some(Retry {
        delay: Duration::from_secs(15 * 60),
        window: HOUR,
    });
    let failed = LaneState {
        last_run_at: Some(t0()),
        last_result: Some(RunResult::Failure),
        last_ended_at: Some(ms(t0(), 60_000)),
        failure_since: Some(ms(t0(), 60_000)),
        ..LaneState::default()
    };
    (l, failed)
}

#[test]
fn a_failed_run_is_retried_after_its_delay_within_its_window() {
    let (l, failed) = retrying_lane();
    let at = |m: i64| {
        decide_one(
            &l,
            failed.clone(),
            ms(t0(), m * 60_000),
            ChainMode::FirstDeferral,
        )
    };
    assert_eq!(at(15).outcome, Outcome::Deferred, "delay not over");
    assert_eq!(at(16).source, Some(TriggerSource::FailedRunRetry));
    assert_eq!(at(62).outcome, Outcome::Deferred, "window used up");
}

fn run_pass(lanes: &[&Lane], states: LaneStates, now: Timestamp) -> Vec<Decision> {
    let mut settings = Settings::default();
    settings.groups.insert("heavy".into(), 1);
    pass(
        lanes,
        Arc::new(states),
        now,
        Arc::new(Canned::up()),
        &settings,
        None,
    )
}

fn outcome_of<'a>(ds: &'a [Decision], lane: &str) -> &'a Decision {
    ds.iter().find(|d| d.lane == lane).expect("decision")
}

#[test]
fn a_group_admits_by_priority_then_overdue_then_name() {
    let mut a = lane("alpha", Some(HOUR), vec![]);
    let mut b = lane("beta", Some(HOUR), vec![]);
    let mut c = lane("gamma", Some(HOUR), vec![]);
    for l in [&mut a, &mut b, &mut c] {
        l.group = Some("heavy".into());
    }
    c.priority = 1;
    let ds = run_pass(&[&a, &b, &c], LaneStates::new(), t0());
    assert_eq!(
        outcome_of(&ds, "gamma").outcome,
        Outcome::Trigger,
        "priority"
    );
    let held = outcome_of(&ds, "alpha");
    assert_eq!(held.reason.as_deref(), Some(fairness::REASON_GROUP));
    assert!(
        held.detail
            .as_deref()
            .is_some_and(|d| d.contains("lower priority: 1 before 10")),
        "{held:?}"
    );

    // Equal priority, never run: the name decides, and says so.
    c.priority = 10;
    let ds = run_pass(&[&a, &b, &c], LaneStates::new(), t0());
    assert_eq!(outcome_of(&ds, "alpha").outcome, Outcome::Trigger);
    assert!(
        outcome_of(&ds, "beta")
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("the name decided: alpha before beta"))
    );

    // More overdue goes first: beta last ran 5 intervals ago, alpha 2.
    let mut states = LaneStates::new();
    states.insert("alpha".into(), ran_at(ms(t0(), -2 * 3_600_000)));
    states.insert("beta".into(), ran_at(ms(t0(), -5 * 3_600_000)));
    states.insert("gamma".into(), ran_at(t0()));
    let ds = run_pass(&[&a, &b, &c], states, t0());
    assert_eq!(outcome_of(&ds, "beta").outcome, Outcome::Trigger);
    assert!(
        outcome_of(&ds, "alpha")
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("more overdue")),
    );
}

#[test]
fn a_lane_still_running_is_never_started_twice() {
    let a = lane("a", Some(HOUR), vec![]);
    let mut states = LaneStates::new();
    states.insert(
        "a".into(),
        LaneState {
            running: Some(RunningRun {
                run_id: 1,
                pid: 42,
                pid_start: 1,
                started_at: t0(),
                supervisor: None,
            }),
            ..LaneState::default()
        },
    );
    let ds = run_pass(&[&a], states, ms(t0(), 2 * 3_600_000));
    assert_eq!(ds[0].reason.as_deref(), Some(fairness::REASON_RUNNING));
}

#[test]
fn the_wake_rule_wakes_for_due_times_rechecks_and_nothing_else() {
    let due_later = lane("later", Some(HOUR), vec![]);
    let (g, _) = gate("g", defer("busy"), false);
    let mut held = lane("held", Some(HOUR), vec![g]);
    held.recheck = Duration::from_secs(30);
    let firing = lane("firing", Some(HOUR), vec![]);
    let off = lane("off", None, vec![]);
    let now = t0();
    let mut states = LaneStates::new();
    states.insert("later".into(), ran_at(ms(now, -20 * 60_000)));
    let lanes = [due_later, held, firing, off];
    let refs: Vec<&Lane> = lanes.iter().collect();
    let ds = run_pass(&refs, states.clone(), now);
    assert_eq!(
        wake::next_wake(&ds, &lanes, &states, now),
        Some(ms(now, 30_000)),
        "the held lane's recheck comes first"
    );
    let quiet: Vec<Decision> = ds.into_iter().filter(|d| d.lane != "held").collect();
    assert_eq!(
        wake::next_wake(&quiet, &lanes, &states, now),
        Some(ms(now, 40 * 60_000)),
        "then the next due time"
    );
    let none: Vec<Decision> = quiet.into_iter().filter(|d| d.lane != "later").collect();
    assert_eq!(wake::next_wake(&none, &lanes, &states, now), None);
}

/// The wake rule wakes at the jittered due time, and after a downtime at the slot a
/// `catch_up: skip` lane waits for, not at the missed ones.
#[test]
fn the_wake_rule_includes_jitter_and_skipped_slots() {
    let mut jittered = lane("jittered", Some(HOUR), vec![]);
    jittered.jitter = Some(Duration::from_secs(600));
    jittered.jitter_offset = Duration::from_secs(90);
    let mut skip = lane("skip", Some(HOUR), vec![]);
    skip.catch_up = crate::config::CatchUp::Skip;
    let now = t0();
    let down = crate::model::lane_state::Downtime {
        from: ms(now, -4 * 3_600_000),
        to: ms(now, -60_000),
    };
    let mut states = LaneStates::new();
    states.insert("jittered".into(), ran_at(ms(now, -20 * 60_000)));
    // Ran at 07:30, down from 08:00 to 11:59: 08:30 to 11:30 missed, 12:30 is next.
    let mut skipped = ran_at(ms(now, -4 * 3_600_000 - 1_800_000));
    skipped.downtime = Some(down);
    states.insert("skip".into(), skipped);
    let lanes = [jittered, skip];
    let refs: Vec<&Lane> = lanes.iter().collect();
    let ds = run_pass(&refs, states.clone(), now);
    assert!(ds.iter().all(|d| d.outcome == Outcome::Deferred), "{ds:?}");
    let jittered_only: Vec<Decision> = ds
        .iter()
        .filter(|d| d.lane == "jittered")
        .cloned()
        .collect();
    assert_eq!(
        wake::next_wake(&jittered_only, &lanes, &states, now),
        Some(ms(now, 40 * 60_000 + 90_000))
    );
    let skip_only: Vec<Decision> = ds.into_iter().filter(|d| d.lane == "skip").collect();
    assert_eq!(
        wake::next_wake(&skip_only, &lanes, &states, now),
        Some(ms(now, 1_800_000)),
        "the first slot after the daemon's start"
    );
}

fn paused(until: Option<Timestamp>) -> LaneState {
    LaneState {
        pause: Some(crate::model::lane_state::Pause {
            note: "disk swap".into(),
            by: "alice".into(),
            at: ms(t0(), -60_000),
            until,
        }),
        ..LaneState::default()
    }
}

#[test]
fn a_pause_defers_a_due_lane_before_its_gates_until_it_ends() {
    let (g, stub) = gate("g", pass_(), false);
    let l = lane("p", Some(HOUR), vec![g]);
    let d = decide_one(&l, paused(None), t0(), ChainMode::FirstDeferral);
    assert_eq!(
        (d.outcome, d.gate.as_deref(), d.reason.as_deref()),
        (Outcome::Deferred, Some(PAUSE_GATE), Some(REASON_PAUSED))
    );
    assert!(
        d.detail
            .as_deref()
            .is_some_and(|t| t.contains("alice") && t.contains("disk swap"))
    );
    assert_eq!(
        stub.calls.load(Ordering::SeqCst),
        0,
        "no plugin runs for a paused lane"
    );
    assert!(!d.is_held(), "a pause is no starvation streak");
    // `explain` still sees every gate, the pause marked as deciding.
    let d = decide_one(&l, paused(None), t0(), ChainMode::Full);
    let decided: Vec<&str> = d
        .chain
        .iter()
        .filter(|c| c.decided)
        .map(|c| c.gate.as_str())
        .collect();
    assert_eq!(decided, [PAUSE_GATE]);
    // A lane not due stays `interval-not-due`: the schedule comes first.
    let d = decide_one(
        &l,
        LaneState {
            last_run_at: Some(t0()),
            ..paused(None)
        },
        t0(),
        ChainMode::FirstDeferral,
    );
    assert_eq!(d.reason.as_deref(), Some(REASON_NOT_DUE));
    // Up to `until`, exclusive; after it the pause is none.
    let until = ms(t0(), 60_000);
    let d = decide_one(
        &l,
        paused(Some(until)),
        ms(until, -1),
        ChainMode::FirstDeferral,
    );
    assert_eq!(d.reason.as_deref(), Some(REASON_PAUSED));
    let d = decide_one(&l, paused(Some(until)), until, ChainMode::FirstDeferral);
    assert_eq!(d.outcome, Outcome::Trigger);
}

#[test]
fn the_wake_rule_wakes_when_a_pause_ends_by_itself_and_not_for_an_open_one() {
    let l = lane("p", Some(HOUR), vec![]);
    let now = t0();
    let until = ms(now, 90_000);
    let lanes = [l];
    for (pause, wake) in [(Some(until), Some(until)), (None, None)] {
        let mut states = LaneStates::new();
        states.insert("p".into(), paused(pause));
        let refs: Vec<&Lane> = lanes.iter().collect();
        let ds = run_pass(&refs, states.clone(), now);
        assert_eq!(ds[0].reason.as_deref(), Some(REASON_PAUSED));
        assert_eq!(wake::next_wake(&ds, &lanes, &states, now), wake);
    }
}

#[test]
fn a_retry_whose_window_is_used_up_wakes_nobody() {
    // The retry came due at 00:16 while the lane was held back; at 01:02 its window is over.
    // Waking "at the retry" would mean waking now, again and again, until the next due time.
    let (l, failed) = retrying_lane();
    let mut states = LaneStates::new();
    states.insert("x".into(), failed.clone());
    let now = ms(t0(), 62 * 60_000);
    let d = decide_one(&l, failed, now, ChainMode::FirstDeferral);
    assert_eq!(d.outcome, Outcome::Deferred, "window used up");
    let lanes = [l];
    assert_eq!(
        wake::next_wake(&[d], &lanes, &states, now),
        Some(ms(t0(), 24 * 3_600_000)),
        "the next due time, not now"
    );
}

fn alive(hosts: &[&str]) -> LaneState {
    LaneState {
        alive_hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
        ..LaneState::default()
    }
}

#[test]
fn a_lane_with_hosts_defers_with_no_eligible_host_while_none_of_them_is_alive() {
    let (g, stub) = gate("g", pass_(), false);
    let mut l = lane("h", Some(HOUR), vec![g]);
    l.hosts = vec!["b".into(), "c".into()];
    let d = decide_one(&l, alive(&["a"]), t0(), ChainMode::FirstDeferral);
    assert_eq!(
        (d.outcome, d.gate.as_deref(), d.reason.as_deref()),
        (
            Outcome::Deferred,
            Some(HOSTS_GATE),
            Some(REASON_NO_ELIGIBLE_HOST)
        )
    );
    let detail = d.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("b, c") && detail.contains("alive: a"),
        "{detail}"
    );
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0, "no plugin runs");
    assert!(d.is_held(), "due and held: it counts as a deferral streak");
    // `explain` sees every gate, the hosts gate deciding.
    let d = decide_one(&l, alive(&[]), t0(), ChainMode::Full);
    let decided: Vec<&str> = d
        .chain
        .iter()
        .filter(|c| c.decided)
        .map(|c| c.gate.as_str())
        .collect();
    assert_eq!(decided, [HOSTS_GATE]);
    assert!(d.chain.iter().any(|c| c.gate == "g"));
    // One of them alive: it passes, naming the first alive in the lane's order.
    let d = decide_one(&l, alive(&["a", "c", "b"]), t0(), ChainMode::Full);
    assert_eq!(d.outcome, Outcome::Trigger);
    let entry = d.chain.iter().find(|c| c.gate == HOSTS_GATE);
    assert!(
        entry.is_some_and(|c| c.verdict == GateVerdict::Pass
            && c.detail
                .as_deref()
                .is_some_and(|t| t.starts_with("runs on b"))),
        "{:?}",
        d.chain
    );
    assert_eq!(crate::engine::eligible_host(&l, &["c".into()]), Some("c"));
    assert_eq!(crate::engine::eligible_host(&l, &["a".into()]), None);
}

#[test]
fn hosts_hold_nothing_back_when_nobody_says_who_is_alive_and_come_after_the_pause() {
    let mut l = lane("h", Some(HOUR), vec![]);
    l.hosts = vec!["b".into()];
    // Simulations and past instants know no replicas: the gate is silent.
    let d = decide_one(&l, LaneState::default(), t0(), ChainMode::Full);
    assert_eq!(d.outcome, Outcome::Trigger);
    assert!(d.chain.iter().all(|c| c.gate != HOSTS_GATE));
    // A lane without hosts runs on any replica, alive ones or not.
    let any = lane("any", Some(HOUR), vec![]);
    let d = decide_one(&any, alive(&[]), t0(), ChainMode::FirstDeferral);
    assert_eq!(d.outcome, Outcome::Trigger);
    // Not due, or paused, says so first.
    let d = decide_one(
        &l,
        LaneState {
            last_run_at: Some(t0()),
            ..alive(&[])
        },
        t0(),
        ChainMode::FirstDeferral,
    );
    assert_eq!(d.reason.as_deref(), Some(REASON_NOT_DUE));
    let d = decide_one(
        &l,
        LaneState {
            alive_hosts: alive(&[]).alive_hosts,
            ..paused(None)
        },
        t0(),
        ChainMode::FirstDeferral,
    );
    assert_eq!(d.reason.as_deref(), Some(REASON_PAUSED));
}
