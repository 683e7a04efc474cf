//! Prometheus metrics: one registry, updated by the daemon as it decides and runs, encoded by
//! the HTTP endpoint's `/metrics`. Label values come from lanes, gates, reasons and plugins
//! (bounded by the configuration), never from free text.

use std::sync::atomic::AtomicU64;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::compile::Lane;
use crate::config::OnError;
use crate::dispatch::RunReport;
use crate::engine::fairness::{GROUP_GATE, REASON_GROUP};
use crate::engine::{Decision, GateVerdict, Outcome, REASON_NOT_DUE, REASON_PLUGIN_ERROR};
use crate::plugins::PluginErrorKind;
use crate::state::{HookEvent, HookResult, LaneStates, RunResult};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabel {
    lane: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    lane: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeferralLabels {
    lane: String,
    gate: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    lane: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    runtime: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginErrorLabels {
    plugin: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    lane: String,
    event: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn run_buckets() -> Histogram {
    // 100 ms .. ~7 h
    Histogram::new(exponential_buckets(0.1, 4.0, 13))
}

fn eval_buckets() -> Histogram {
    // 1 µs .. ~4 s
    Histogram::new(exponential_buckets(1e-6, 4.0, 12))
}

// Every value of the closed label sets. Each list goes through an exhaustive match, so a new
// variant fails to compile here instead of silently missing from the first scrape.

fn outcomes() -> [&'static str; 3] {
    let name = |o: Outcome| match o {
        Outcome::Trigger | Outcome::Deferred | Outcome::Disabled => o.as_str(),
    };
    [
        name(Outcome::Trigger),
        name(Outcome::Deferred),
        name(Outcome::Disabled),
    ]
}

fn run_results() -> [&'static str; 5] {
    let name = |r: RunResult| match r {
        RunResult::Success
        | RunResult::Failure
        | RunResult::Interrupted
        | RunResult::Unknown
        | RunResult::Cancelled => r.as_str(),
    };
    [
        name(RunResult::Success),
        name(RunResult::Failure),
        name(RunResult::Interrupted),
        name(RunResult::Unknown),
        name(RunResult::Cancelled),
    ]
}

fn error_kinds() -> [&'static str; 6] {
    use PluginErrorKind as K;
    let name = |k: K| match k {
        K::Budget | K::Deadline | K::Limit | K::Thrown | K::BadVerdict | K::Denied => k.as_str(),
    };
    [
        name(K::Budget),
        name(K::Deadline),
        name(K::Limit),
        name(K::Thrown),
        name(K::BadVerdict),
        name(K::Denied),
    ]
}

/// Every metric lanekeeper exports.
pub struct Metrics {
    registry: Registry,
    decisions: Family<OutcomeLabels, Counter>,
    missed_slots: Family<LaneLabel, Counter>,
    deferrals: Family<DeferralLabels, Counter>,
    deferred_seconds: Family<LaneLabel, FloatGauge>,
    since_success: Family<LaneLabel, FloatGauge>,
    running: Family<LaneLabel, Gauge>,
    runs: Family<ResultLabels, Counter>,
    run_duration: HistogramFamily<LaneLabel>,
    plugin_eval: HistogramFamily<PluginLabels>,
    plugin_errors: Family<PluginErrorLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    retries_exhausted: Family<LaneLabel, Counter>,
    hooks: Family<HookLabels, Counter>,
    pass_duration: Histogram,
    pass_max: FloatGauge,
    leader: Family<HostLabel, Gauge>,
    leading: Gauge,
    lease_token: Gauge,
    lease_age: FloatGauge,
    fenced: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lanekeeper");
        let decisions = Family::default();
        let missed_slots = Family::default();
        let deferrals = Family::default();
        let deferred_seconds = Family::default();
        let since_success = Family::default();
        let running = Family::default();
        let runs = Family::default();
        let run_duration: HistogramFamily<LaneLabel> = Family::new_with_constructor(run_buckets);
        let plugin_eval: HistogramFamily<PluginLabels> = Family::new_with_constructor(eval_buckets);
        let plugin_errors = Family::default();
        let reloads: Family<ReloadLabels, Counter> = Family::default();
        let retries_exhausted = Family::default();
        let hooks = Family::default();
        let pass_duration = eval_buckets();
        let pass_max = FloatGauge::default();
        let (leader, leading, lease_token, lease_age, fenced) = (
            Family::default(),
            Gauge::default(),
            Gauge::default(),
            FloatGauge::default(),
            Counter::default(),
        );
        registry.register(
            "leader",
            "1 for the replica that holds the leader's lease (a shared store only)",
            leader.clone(),
        );
        registry.register(
            "leading",
            "1 while this replica decides and dispatches (always, on a store of one writer)",
            leading.clone(),
        );
        registry.register(
            "lease_token",
            "The fencing token of the leader's lease (0 without a shared store)",
            lease_token.clone(),
        );
        registry.register(
            "lease_age_seconds",
            "How long the leader has held its lease, by the database's clock",
            lease_age.clone(),
        );
        registry.register(
            "fenced_writes",
            "Leader writes and run starts of this replica the store refused because its lease had moved on",
            fenced.clone(),
        );
        registry.register(
            "pass_duration_seconds",
            "Time to decide every lane in one pass, probes included",
            pass_duration.clone(),
        );
        registry.register(
            "pass_max_seconds",
            "The longest pass since the daemon started",
            pass_max.clone(),
        );
        registry.register(
            "lane_decisions",
            "Decisions made, by lane and outcome",
            decisions.clone(),
        );
        registry.register(
            "missed_slots",
            "Schedule slots that fell while no daemon ran (counted when the daemon starts)",
            missed_slots.clone(),
        );
        registry.register(
            "lane_deferrals",
            "Deferrals, by lane, deciding gate and reason",
            deferrals.clone(),
        );
        registry.register(
            "lane_deferred_seconds",
            "Length of the lane's current due-and-deferred streak (0 when not deferred)",
            deferred_seconds.clone(),
        );
        registry.register(
            "lane_seconds_since_last_success",
            "Seconds since the lane's last successful run (+Inf if it never succeeded)",
            since_success.clone(),
        );
        registry.register(
            "lane_running",
            "1 while the lane's command runs",
            running.clone(),
        );
        registry.register("runs", "Finished runs, by lane and result", runs.clone());
        registry.register(
            "run_duration_seconds",
            "Wall time of finished runs",
            run_duration.clone(),
        );
        registry.register(
            "plugin_eval_seconds",
            "Time of one plugin evaluation",
            plugin_eval.clone(),
        );
        registry.register(
            "plugin_errors",
            "Plugin failures (budget, deadline, limit, thrown, bad-verdict, denied)",
            plugin_errors.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        registry.register(
            "retries_exhausted",
            "Failure streaks whose retry window was used up (no more retries until the schedule)",
            retries_exhausted.clone(),
        );
        registry.register(
            "hooks",
            "Hook firings (on_failure, on_give_up, on_forced_run, on_defer), by how they ended",
            hooks.clone(),
        );
        // Present from the start, so a dashboard sees 0 rather than no data.
        for result in ["applied", "rejected"] {
            reloads
                .get_or_create(&ReloadLabels {
                    result: result.into(),
                })
                .inc_by(0);
        }
        Self {
            registry,
            decisions,
            missed_slots,
            deferrals,
            deferred_seconds,
            since_success,
            running,
            runs,
            run_duration,
            plugin_eval,
            plugin_errors,
            reloads,
            retries_exhausted,
            hooks,
            pass_duration,
            pass_max,
            leader,
            leading,
            lease_token,
            lease_age,
            fenced,
        }
    }

    /// Who leads, as this replica last asked the store: `lease` is the leader's, if any.
    pub fn observe_leadership(&self, leading: bool, lease: Option<&crate::state::LeaderView>) {
        self.leading.set(i64::from(leading));
        self.leader.clear();
        if let Some(view) = lease.filter(|v| v.live()) {
            self.leader
                .get_or_create(&HostLabel {
                    host: view.lease.host.clone(),
                })
                .set(1);
            self.lease_token.set(view.lease.token);
            self.lease_age.set(view.age().as_secs_f64());
        }
    }

    /// Counts a write or run start the store refused by fencing.
    pub fn observe_fenced(&self) {
        self.fenced.inc();
    }

    /// Times one pass's decisions.
    pub fn observe_pass_time(&self, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        self.pass_duration.observe(secs);
        if secs > self.pass_max.get() {
            self.pass_max.set(secs);
        }
    }

    /// Counts the slots a lane missed while no daemon ran.
    pub fn observe_missed_slots(&self, lane: &str, slots: u64) {
        self.missed_slots
            .get_or_create(&LaneLabel { lane: lane.into() })
            .inc_by(slots);
    }

    /// Counts one pass's decisions and its plugin evaluations.
    pub fn observe_pass(&self, decisions: &[Decision]) {
        for d in decisions {
            self.decisions
                .get_or_create(&OutcomeLabels {
                    lane: d.lane.clone(),
                    outcome: d.outcome.as_str().into(),
                })
                .inc();
            if d.outcome == Outcome::Deferred {
                self.deferrals
                    .get_or_create(&DeferralLabels {
                        lane: d.lane.clone(),
                        gate: d.gate.clone().unwrap_or_default(),
                        reason: d.reason.clone().unwrap_or_default(),
                    })
                    .inc();
            }
            for entry in &d.chain {
                let Some(runtime) = &entry.runtime else {
                    continue;
                };
                if let Some(micros) = entry.micros {
                    self.plugin_eval
                        .get_or_create(&PluginLabels {
                            plugin: entry.gate.clone(),
                            runtime: runtime.as_str().into(),
                        })
                        .observe(micros as f64 / 1e6);
                }
                let failed = entry.error.is_some()
                    || (entry.verdict == GateVerdict::Defer
                        && entry.reason.as_deref() == Some(crate::engine::REASON_PLUGIN_ERROR));
                if failed {
                    self.plugin_errors
                        .get_or_create(&PluginErrorLabels {
                            plugin: entry.gate.clone(),
                            kind: entry
                                .error_kind
                                .map_or("unknown", PluginErrorKind::as_str)
                                .into(),
                        })
                        .inc();
                }
            }
        }
    }

    /// Counts a finished run.
    pub fn observe_run(&self, lane: &str, report: &RunReport) {
        self.runs
            .get_or_create(&ResultLabels {
                lane: lane.into(),
                result: report.result.as_str().into(),
            })
            .inc();
        self.run_duration
            .get_or_create(&LaneLabel { lane: lane.into() })
            .observe(report.duration.as_secs_f64());
    }

    /// Counts a failure streak whose retries are used up.
    pub fn observe_retries_exhausted(&self, lane: &str) {
        self.retries_exhausted
            .get_or_create(&LaneLabel { lane: lane.into() })
            .inc();
    }

    /// Counts a hook firing by how it ended.
    pub fn observe_hook(&self, lane: &str, event: HookEvent, result: HookResult) {
        self.hooks
            .get_or_create(&HookLabels {
                lane: lane.into(),
                event: event.as_str().into(),
                result: result.as_str().into(),
            })
            .inc();
    }

    /// Counts a reload.
    pub fn observe_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Creates, at zero, every series the configuration implies: each lane with each outcome
    /// and result, the deferrals lanekeeper itself defines, each plugin in use with its runtime
    /// and each failure kind. Alerts then see a series before the first event, and
    /// `increase()` sees that event. Idempotent.
    fn declare(&self, lanes: &[Lane]) {
        // `get_or_create` creates the series; the guard it returns is dropped at once.
        for lane in lanes {
            let name = || lane.name.clone();
            for outcome in outcomes() {
                drop(self.decisions.get_or_create(&OutcomeLabels {
                    lane: name(),
                    outcome: outcome.into(),
                }));
            }
            for result in run_results() {
                drop(self.runs.get_or_create(&ResultLabels {
                    lane: name(),
                    result: result.into(),
                }));
            }
            drop(self.run_duration.get_or_create(&LaneLabel { lane: name() }));
            drop(
                self.retries_exhausted
                    .get_or_create(&LaneLabel { lane: name() }),
            );
            for event in HookEvent::ALL {
                if lane.hooks.get(event).is_none() {
                    continue;
                }
                for result in [
                    HookResult::Success,
                    HookResult::Failure,
                    HookResult::Timeout,
                    HookResult::Error,
                ] {
                    drop(self.hooks.get_or_create(&HookLabels {
                        lane: name(),
                        event: event.as_str().into(),
                        result: result.as_str().into(),
                    }));
                }
            }
            let deferral = |gate: &str, reason: &str| {
                drop(self.deferrals.get_or_create(&DeferralLabels {
                    lane: name(),
                    gate: gate.into(),
                    reason: reason.into(),
                }));
            };
            deferral(crate::engine::SCHEDULE_GATE, REASON_NOT_DUE);
            if lane.group.is_some() {
                deferral(GROUP_GATE, REASON_GROUP);
            }
            if !lane.hosts.is_empty() {
                deferral(
                    crate::engine::HOSTS_GATE,
                    crate::engine::REASON_NO_ELIGIBLE_HOST,
                );
            }
            for binding in &lane.gates {
                if binding.on_error == OnError::Defer {
                    deferral(&binding.name, REASON_PLUGIN_ERROR);
                }
                drop(self.plugin_eval.get_or_create(&PluginLabels {
                    plugin: binding.name.clone(),
                    runtime: binding.runtime.as_str().into(),
                }));
                for kind in error_kinds() {
                    drop(self.plugin_errors.get_or_create(&PluginErrorLabels {
                        plugin: binding.name.clone(),
                        kind: kind.into(),
                    }));
                }
            }
        }
    }

    /// Declares the configured lanes' series and sets the per-lane gauges from the recorded
    /// states at `now`. Done at scrape time, so the gauges are exact whenever Prometheus looks
    /// and lanes added by a reload appear at the next scrape.
    pub fn refresh(&self, lanes: &[Lane], states: &LaneStates, now: Timestamp) {
        self.declare(lanes);
        for lane in lanes.iter().map(|l| &l.name) {
            let label = LaneLabel { lane: lane.clone() };
            let state = states.get(lane);
            let secs = |t: Timestamp| (now.as_millisecond() - t.as_millisecond()) as f64 / 1000.0;
            self.running
                .get_or_create(&label)
                .set(i64::from(state.is_some_and(|s| s.running.is_some())));
            self.deferred_seconds
                .get_or_create(&label)
                .set(state.and_then(|s| s.deferral_since).map_or(0.0, secs));
            // Never succeeded is infinitely long ago: "no recent success" holds, and an alert
            // on it fires for a lane that has never succeeded instead of seeing no series.
            self.since_success.get_or_create(&label).set(
                state
                    .and_then(|s| s.last_success_at)
                    .map_or(f64::INFINITY, secs),
            );
        }
    }

    /// The exposition in `format`.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
            }
        }
        Ok(out)
    }
}

/// The text exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0, for scrapers that ask for it (Prometheus does).
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, which every other reader (promtool, curl,
    /// older agents) expects: counters' HELP and TYPE name `…_total`, and there is no `# EOF`.
    Prometheus,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_with_total_and_has_no_eof() {
        let m = Metrics::new();
        m.observe_reload(false);
        let text = m.encode(Format::Prometheus).unwrap();
        assert!(
            text.contains("# HELP lanekeeper_config_reloads_total Configuration reloads"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE lanekeeper_config_reloads_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("lanekeeper_config_reloads_total{result=\"rejected\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("_created"), "{text}");
    }

    #[test]
    fn the_openmetrics_format_names_counter_families_without_total_and_ends_with_eof() {
        let text = Metrics::new().encode(Format::OpenMetrics).unwrap();
        assert!(
            text.contains("# TYPE lanekeeper_config_reloads counter\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn never_succeeded_is_plus_inf_in_the_classic_format() {
        let m = Metrics::new();
        m.since_success
            .get_or_create(&LaneLabel { lane: "a".into() })
            .set(f64::INFINITY);
        let text = m.encode(Format::Prometheus).unwrap();
        assert!(
            text.contains("lanekeeper_lane_seconds_since_last_success{lane=\"a\"} +Inf\n"),
            "{text}"
        );
    }
}
