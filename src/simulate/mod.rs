//! `lanekeeper simulate`: the real engine over simulated time.
//!
//! The loop does what the daemon does, with the clock and the world replaced: it decides every
//! lane with `engine::pass_all`, keeps the lane states as the store would (runs, failure
//! streaks, deferral streaks), and wakes when the daemon would, by `engine::wake::next_wake`
//! and at each run's end (an event for the daemon). Plugins see the world through a
//! [`FactsObserver`]; runs last as long as modelled and end as the facts say. Nothing is
//! written anywhere: the states live in memory.

pub mod diff;
pub mod facts;
pub mod observer;
pub mod replay;
pub mod report;
pub mod svg;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::clock::later;
use crate::compile::{Config, Lane};
use crate::engine::{self, Decision, Outcome};
use crate::model::decision::Observation;
use crate::model::duration::format;
use crate::model::lane_state::{ExitInfo, LaneState, LaneStates, RunResult, RunningRun};
use crate::state::{Store, StoreError};
pub use facts::{Facts, FactsError};
pub use observer::{FactsObserver, Unanswered};
use report::{Deferral, LaneReport, Report, Run, Trigger};

/// Why a simulation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A plugin asked something the facts do not answer.
    #[error(
        "lane `{lane}`, gate `{gate}` asked for {what} at {at}, and the facts give no answer for it then; add it to the facts file, e.g. {hint}"
    )]
    Unanswered {
        /// The lane decided.
        lane: String,
        /// The gate (plugin) that asked.
        gate: String,
        /// `http GET URL` or `metric NAME (SOURCE)`.
        what: String,
        /// The simulated instant.
        at: Timestamp,
        /// Where in the facts file it goes.
        hint: String,
    },
    /// A plugin asked something the recorded history (`--replay`) has no observation of, at or
    /// before the instant it asked.
    #[error(
        "lane `{lane}`, gate `{gate}` asked for {what} at {at}, and the recorded history has no observation of it at or before then (or within 10s after, as a pass stamps it); replay from a later --from, or give the answers with --facts instead"
    )]
    NotRecorded {
        /// The lane decided.
        lane: String,
        /// The gate (plugin) that asked.
        gate: String,
        /// `http GET URL` or `metric NAME (SOURCE)`.
        what: String,
        /// The simulated instant.
        at: Timestamp,
    },
    /// A lane has no run length: none given, none recorded, no timeout.
    #[error(
        "lane `{0}`: no run length to simulate with (no --durations entry, no recorded successful run, no command.timeout); give one with --durations {0}=DURATION"
    )]
    NoRunLength(String),
    /// A name that is no lane of the home.
    #[error("{what} names `{name}`, which is not a lane of this home (lanes: {known})")]
    UnknownLane {
        /// Where it was named.
        what: String,
        /// The name.
        name: String,
        /// The lanes there are.
        known: String,
    },
    /// A facts metric that is no metric of the home.
    #[error(
        "the facts name metric `{0}`, which this home does not define (lanekeeper.yaml `metrics:`, or a built-in psi.*/loadavg.*)"
    )]
    UnknownMetric(String),
    /// The range is empty.
    #[error("--to {to} is not after --from {from}")]
    EmptyRange {
        /// Start.
        from: Timestamp,
        /// End.
        to: Timestamp,
    },
    /// Passes at one instant kept changing decisions without time moving.
    #[error(
        "the simulation made {0} passes at {1} without time moving; this is a bug, please report it with the rules"
    )]
    Stuck(u64, Timestamp),
    /// The store could not be read (recorded run lengths).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a lane's runs last in the simulation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLength {
    /// The length.
    pub length: Duration,
    /// `given`, `median of N recorded runs` or `timeout`.
    pub basis: String,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The first pass.
    pub from: Timestamp,
    /// The end (exclusive).
    pub to: Timestamp,
    /// A pass every `step` instead of the wake rule.
    pub step: Option<Duration>,
    /// Each lane's run length.
    pub run_lengths: BTreeMap<String, RunLength>,
}

/// How many recorded runs the median is taken over.
const MEDIAN_OVER: usize = 50;

/// Each lane's run length: `given` (`--durations`; `*` for every lane not named), else the
/// median of its recorded successful runs, else its `command.timeout`.
pub fn run_lengths(
    lanes: &[Lane],
    given: &BTreeMap<String, Duration>,
    store: &dyn Store,
) -> Result<BTreeMap<String, RunLength>, SimError> {
    for name in given.keys().filter(|n| *n != "*") {
        if !lanes.iter().any(|l| &l.name == name) {
            return Err(unknown_lane("--durations", name, lanes));
        }
    }
    let mut out = BTreeMap::new();
    for lane in lanes {
        let length = match given.get(&lane.name).or_else(|| given.get("*")) {
            Some(d) => RunLength {
                length: *d,
                basis: "given".into(),
            },
            None => match recorded_median(store, &lane.name)? {
                Some((d, n)) => RunLength {
                    length: d,
                    basis: format!(
                        "median of {n} recorded run{}",
                        if n == 1 { "" } else { "s" }
                    ),
                },
                None => RunLength {
                    length: lane
                        .command
                        .timeout
                        .ok_or_else(|| SimError::NoRunLength(lane.name.clone()))?,
                    basis: "timeout".into(),
                },
            },
        };
        out.insert(lane.name.clone(), length);
    }
    Ok(out)
}

/// The median length of the lane's latest successful runs made by lanekeeper (a run recorded
/// by hand has no length), and how many there were.
fn recorded_median(store: &dyn Store, lane: &str) -> Result<Option<(Duration, usize)>, SimError> {
    let mut ms: Vec<i64> = store
        .recent_runs(lane, MEDIAN_OVER)?
        .iter()
        .filter(|r| r.result == Some(RunResult::Success) && r.source != "record")
        .filter_map(|r| Some(r.ended_at?.as_millisecond() - r.started_at.as_millisecond()))
        .filter(|ms| *ms >= 0)
        .collect();
    if ms.is_empty() {
        return Ok(None);
    }
    ms.sort_unstable();
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2
    };
    Ok(Some((
        Duration::from_millis(u64::try_from(median).unwrap_or(0)),
        n,
    )))
}

fn unknown_lane(what: &str, name: &str, lanes: &[Lane]) -> SimError {
    SimError::UnknownLane {
        what: what.into(),
        name: name.into(),
        known: lanes
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A run in flight.
struct InFlight {
    /// Index into the lane's runs in the report.
    index: usize,
    ends: Timestamp,
    result: RunResult,
    timed_out: bool,
}

/// The loop's memory: lane states, runs in flight, and the timeline so far.
struct Sim<'a> {
    config: &'a Config,
    plan: &'a Plan,
    facts: &'a Facts,
    states: LaneStates,
    in_flight: BTreeMap<String, InFlight>,
    lanes: BTreeMap<String, LaneReport>,
    /// Each lane's open deferral episode (index into its deferrals).
    open: BTreeMap<String, usize>,
    next_run_id: i64,
}

/// Simulates `plan` from `initial` states (every lane of `config` gets one), answering plugins
/// from `facts`. `progress` is told each pass's instant.
pub fn simulate(
    config: &Config,
    initial: LaneStates,
    plan: &Plan,
    facts: Arc<Facts>,
    progress: &mut dyn FnMut(Timestamp),
) -> Result<Report, SimError> {
    if plan.to <= plan.from {
        return Err(SimError::EmptyRange {
            from: plan.from,
            to: plan.to,
        });
    }
    for lane in facts.run_lanes() {
        if config.lane(lane).is_none() {
            return Err(unknown_lane("the facts' `runs:`", lane, &config.lanes));
        }
    }
    let (observer, unknown) = FactsObserver::new(Arc::clone(&facts), &config.settings.metrics);
    if let Some(name) = unknown.into_iter().next() {
        return Err(SimError::UnknownMetric(name));
    }
    let observer = Arc::new(observer);
    let mut sim = Sim::new(config, plan, &facts, initial);
    sim.adopt_running(plan.from);

    let mut now = plan.from;
    let (mut passes, mut same_instant, mut last) = (0u64, 0u64, None);
    while now < plan.to {
        if last == Some(now) {
            same_instant += 1;
            if same_instant > config.lanes.len() as u64 + 2 {
                return Err(SimError::Stuck(same_instant, now));
            }
        } else {
            same_instant = 0;
        }
        last = Some(now);
        sim.end_runs(now);
        observer.set_now(now);
        let states = Arc::new(sim.states.clone());
        let shared: Arc<dyn crate::model::observer::Observer> = observer.clone();
        let decisions = engine::pass_all(config, Arc::clone(&states), now, shared, None);
        passes += 1;
        if let Some(missing) = observer.take_unanswered().into_iter().next() {
            return Err(unanswered(&decisions, &missing, now, facts.is_recorded()));
        }
        sim.record(&decisions, now);
        progress(now);
        let wake = match plan.step {
            Some(step) => later(now, step),
            None => {
                let mut wake = later(now, engine::wake::MAX_SLEEP);
                if let Some(t) = engine::wake::next_wake(&decisions, &config.lanes, &states, now) {
                    wake = wake.min(t);
                }
                // A run's end is an event: the daemon decides again at once.
                if let Some(end) = sim.in_flight.values().map(|r| r.ends).min() {
                    wake = wake.min(end);
                }
                wake
            }
        };
        now = wake.max(now);
    }
    // Runs that ended before the end, after the last pass (a fixed step passes them by).
    sim.end_runs(crate::clock::earlier(plan.to, Duration::from_millis(1)));
    Ok(sim.finish(plan, passes))
}

/// The error for a question the facts left open, naming the lane and gate that asked.
fn unanswered(
    decisions: &[Decision],
    missing: &Unanswered,
    at: Timestamp,
    recorded: bool,
) -> SimError {
    let asked = |o: &Observation| match (o, missing) {
        (Observation::Http { url, .. }, Unanswered::Http(u)) => url == u,
        (Observation::Metric { source, .. }, Unanswered::Metric(s)) => source == s,
        _ => false,
    };
    let found = decisions.iter().find_map(|d| {
        d.chain.iter().find_map(|c| {
            let o = c.evidence.iter().find(|o| asked(o))?;
            Some((d.lane.clone(), c.gate.clone(), o.clone()))
        })
    });
    let (lane, gate, what, hint) = match (found, missing) {
        (Some((lane, gate, Observation::Metric { name, source, .. })), _) => (
            lane,
            gate,
            format!("metric {name} ({source})"),
            format!("metrics: {{ {name}: [ {{ value: N }} ] }}"),
        ),
        (found, Unanswered::Http(url)) => {
            let (lane, gate) = found.map_or(("?".into(), "?".into()), |(l, g, _)| (l, g));
            (
                lane,
                gate,
                format!("http GET {url}"),
                format!("http: {{ \"{url}\": [ {{ status: 200 }} ] }} (or {{ down: true }})"),
            )
        }
        (found, Unanswered::Metric(source)) => {
            let (lane, gate) = found.map_or(("?".into(), "?".into()), |(l, g, _)| (l, g));
            (
                lane,
                gate,
                format!("metric source {source}"),
                "under metrics:, by the metric's name".into(),
            )
        }
    };
    if recorded {
        return SimError::NotRecorded {
            lane,
            gate,
            what,
            at,
        };
    }
    SimError::Unanswered {
        lane,
        gate,
        what,
        at,
        hint,
    }
}

impl<'a> Sim<'a> {
    fn new(config: &'a Config, plan: &'a Plan, facts: &'a Facts, mut states: LaneStates) -> Self {
        let mut lanes = BTreeMap::new();
        for lane in &config.lanes {
            states.entry(lane.name.clone()).or_default();
            let length = plan.run_lengths.get(&lane.name);
            lanes.insert(
                lane.name.clone(),
                LaneReport {
                    lane: lane.name.clone(),
                    zone: lane.zone.iana_name().unwrap_or("UTC").to_string(),
                    run_length: length.map_or("-".into(), |l| format(l.length)),
                    run_length_basis: length.map_or("-".into(), |l| l.basis.clone()),
                    triggers: Vec::new(),
                    deferrals: Vec::new(),
                    runs: Vec::new(),
                },
            );
        }
        Self {
            config,
            plan,
            facts,
            states,
            in_flight: BTreeMap::new(),
            lanes,
            open: BTreeMap::new(),
            next_run_id: 1,
        }
    }

    /// Runs recorded as running at the start: they end when their modelled length is over
    /// (at the start, if that is already past).
    fn adopt_running(&mut self, from: Timestamp) {
        let running: Vec<(String, Timestamp)> = self
            .states
            .iter()
            .filter_map(|(lane, s)| Some((lane.clone(), s.running.as_ref()?.started_at)))
            .collect();
        for (lane, started) in running {
            if self.config.lane(&lane).is_none() {
                continue;
            }
            let (ends, result, timed_out) = self.outcome(&lane, started);
            let Some(report) = self.lanes.get_mut(&lane) else {
                continue;
            };
            report.runs.push(Run {
                started_at: started,
                ended_at: None,
                result: None,
                timed_out: false,
            });
            self.in_flight.insert(
                lane,
                InFlight {
                    index: report.runs.len() - 1,
                    ends: ends.max(from),
                    result,
                    timed_out,
                },
            );
        }
    }

    /// When a run of `lane` starting at `start` ends, how, and whether by its timeout.
    fn outcome(&self, lane: &str, start: Timestamp) -> (Timestamp, RunResult, bool) {
        let fact = self.facts.run(lane, start);
        let length = fact
            .and_then(|f| f.duration)
            .or_else(|| self.plan.run_lengths.get(lane).map(|l| l.length))
            .unwrap_or_default();
        let result = fact.map_or(RunResult::Success, |f| f.outcome);
        let timeout = self.config.lane(lane).and_then(|l| l.command.timeout);
        match timeout {
            Some(t) if length > t => (later(start, t), RunResult::Failure, true),
            _ => (later(start, length), result, false),
        }
    }

    /// Ends the runs due to end by `now`, as the run's supervisor records them.
    fn end_runs(&mut self, now: Timestamp) {
        let ended: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, r)| r.ends <= now)
            .map(|(l, _)| l.clone())
            .collect();
        for lane in ended {
            let Some(run) = self.in_flight.remove(&lane) else {
                continue;
            };
            let state = self.states.entry(lane.clone()).or_default();
            state.running = None;
            state.last_result = Some(run.result);
            state.last_exit = Some(match (run.result, run.timed_out) {
                (_, true) => ExitInfo::Signal(15),
                (RunResult::Success, _) => ExitInfo::Code(0),
                _ => ExitInfo::Code(1),
            });
            state.last_ended_at = Some(run.ends);
            if run.result == RunResult::Success {
                state.last_success_at = Some(run.ends);
                state.failure_since = None;
            } else {
                state.failure_since = state.failure_since.or(Some(run.ends));
            }
            if let Some(r) = self
                .lanes
                .get_mut(&lane)
                .and_then(|l| l.runs.get_mut(run.index))
            {
                r.ended_at = Some(run.ends);
                r.result = Some(run.result);
                r.timed_out = run.timed_out;
            }
        }
    }

    /// Takes in a pass's decisions: the timeline, the deferral streaks (as the store keeps
    /// them), and a run started for each trigger.
    fn record(&mut self, decisions: &[Decision], now: Timestamp) {
        for d in decisions {
            let Some(report) = self.lanes.get_mut(&d.lane) else {
                continue;
            };
            let state = self.states.entry(d.lane.clone()).or_default();
            let reason = d.reason.clone().unwrap_or_default();
            let gate = d.gate.clone().unwrap_or_default();
            // The deferral episode.
            let open = self.open.get(&d.lane).copied();
            let continues = open.filter(|&i| {
                d.is_held()
                    && report
                        .deferrals
                        .get(i)
                        .is_some_and(|e| e.reason == reason && e.gate == gate)
            });
            match continues {
                Some(i) => {
                    if let Some(e) = report.deferrals.get_mut(i) {
                        e.checks += 1;
                    }
                }
                None => {
                    if let Some(e) = open.and_then(|i| report.deferrals.get_mut(i)) {
                        e.to = Some(now);
                    }
                    self.open.remove(&d.lane);
                    if d.is_held() {
                        report.deferrals.push(Deferral {
                            from: now,
                            to: None,
                            reason: reason.clone(),
                            gate,
                            detail: d.detail.clone().unwrap_or_default(),
                            checks: 1,
                        });
                        self.open.insert(d.lane.clone(), report.deferrals.len() - 1);
                    }
                }
            }
            // The deferral streak, as `Store::record_decisions` keeps it for a dispatching pass.
            if d.is_held() {
                state.deferral_since = state.deferral_since.or(Some(now));
                state.deferral_reason = d.reason.clone();
            } else {
                state.deferral_since = None;
                state.deferral_reason = None;
            }
            if d.outcome == Outcome::Trigger
                && let Some(source) = d.source
            {
                report.triggers.push(Trigger {
                    at: now,
                    source,
                    reason,
                    forced: source == crate::model::decision::TriggerSource::StarvationGuard,
                });
            }
        }
        for d in decisions.iter().filter(|d| d.outcome == Outcome::Trigger) {
            self.start_run(&d.lane, now);
        }
    }

    fn start_run(&mut self, lane: &str, now: Timestamp) {
        let (ends, result, timed_out) = self.outcome(lane, now);
        let Some(report) = self.lanes.get_mut(lane) else {
            return;
        };
        report.runs.push(Run {
            started_at: now,
            ended_at: None,
            result: None,
            timed_out: false,
        });
        let state: &mut LaneState = self.states.entry(lane.to_string()).or_default();
        state.last_run_at = Some(now);
        state.running = Some(RunningRun {
            run_id: self.next_run_id,
            pid: 0,
            pid_start: 0,
            started_at: now,
            supervisor: None,
        });
        self.next_run_id += 1;
        self.in_flight.insert(
            lane.to_string(),
            InFlight {
                index: report.runs.len() - 1,
                ends,
                result,
                timed_out,
            },
        );
    }

    fn finish(self, plan: &Plan, passes: u64) -> Report {
        Report {
            from: plan.from,
            to: plan.to,
            stepping: plan.step.map_or("wake-rule".into(), format),
            passes,
            lanes: self.lanes.into_values().collect(),
        }
    }
}
