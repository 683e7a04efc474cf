//! The decision contract (docs/DESIGN.md §4): what `check --json` prints and the history stores,
//! with the observations plugins made as its evidence.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Run it now.
    Trigger,
    /// Not now.
    Deferred,
    /// The schedule is off.
    Disabled,
}

impl Outcome {
    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Trigger => "trigger",
            Outcome::Deferred => "deferred",
            Outcome::Disabled => "disabled",
        }
    }
}

/// Why a trigger fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerSource {
    /// An `every:` interval elapsed.
    PeriodicSweep,
    /// A cron slot passed.
    Cron,
    /// `lanekeeper fire`.
    Manual,
    /// Soft gates were waived after `max_deferral`.
    StarvationGuard,
    /// Retrying a failed run.
    FailedRunRetry,
}

impl TriggerSource {
    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerSource::PeriodicSweep => "periodic-sweep",
            TriggerSource::Cron => "cron",
            TriggerSource::Manual => "manual",
            TriggerSource::StarvationGuard => "starvation-guard",
            TriggerSource::FailedRunRetry => "failed-run-retry",
        }
    }
}

/// Who recorded a decision, and so whether a trigger could have dispatched anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The daemon's loop (`lanekeeper run`).
    Daemon,
    /// One pass of `lanekeeper run --once`.
    RunOnce,
    /// A plain `lanekeeper check`: it dispatches nothing.
    Check,
    /// `lanekeeper fire`.
    Fire,
}

impl Origin {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Daemon => "daemon",
            Origin::RunOnce => "run-once",
            Origin::Check => "check",
            Origin::Fire => "fire",
        }
    }

    /// Whether a trigger recorded by it is dispatched (`check` only decides).
    pub fn dispatches(self) -> bool {
        self != Origin::Check
    }
}

/// Which runtime evaluates a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// A Rhai script.
    Rhai,
    /// A WebAssembly core module.
    Wasm,
}

impl Runtime {
    /// The name used in decision JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Rhai => "rhai",
            Runtime::Wasm => "wasm",
        }
    }
}

/// The kinds of plugin failure, for metrics and for the detail text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginErrorKind {
    /// The operation (or fuel) budget ran out.
    Budget,
    /// The wall-clock deadline passed.
    Deadline,
    /// A size or depth limit was hit.
    Limit,
    /// The plugin threw or trapped.
    Thrown,
    /// The plugin returned something that is not a verdict.
    BadVerdict,
    /// The plugin reached for something its gate is not granted.
    Denied,
}

impl PluginErrorKind {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginErrorKind::Budget => "budget",
            PluginErrorKind::Deadline => "deadline",
            PluginErrorKind::Limit => "limit",
            PluginErrorKind::Thrown => "thrown",
            PluginErrorKind::BadVerdict => "bad-verdict",
            PluginErrorKind::Denied => "denied",
        }
    }
}

/// A gate's verdict in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateVerdict {
    /// The gate let the lane through.
    Pass,
    /// The gate said not now.
    Defer,
    /// A soft gate deferred but the starvation guard waived it.
    Waived,
    /// The schedule is off.
    Disabled,
}

/// One evaluated gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// `schedule` or the plugin name.
    pub gate: String,
    /// `rhai`, `wasm`; absent for built-in gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// Its verdict.
    pub verdict: GateVerdict,
    /// The deferral reason, when it deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Evidence in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What would have to change for this gate to pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// A plugin failure let through by `on_error: pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of plugin failure (`budget`, `deadline`, …), for metrics.
    #[serde(skip)]
    pub error_kind: Option<PluginErrorKind>,
    /// A soft gate (may be waived by the starvation guard).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
    /// This entry decided the outcome (set when the whole chain is shown).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decided: bool,
    /// Evaluation time in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micros: Option<u64>,
    /// What the plugin observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Observation>,
}

impl ChainEntry {
    /// A built-in gate's entry.
    pub fn builtin(gate: &str, verdict: GateVerdict, reason: Option<&str>, detail: String) -> Self {
        Self {
            gate: gate.to_string(),
            runtime: None,
            verdict,
            reason: reason.map(str::to_string),
            detail: Some(detail),
            hint: None,
            error: None,
            error_kind: None,
            soft: false,
            decided: false,
            micros: None,
            evidence: Vec::new(),
        }
    }
}

/// The decision for one lane at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The lane.
    pub lane: String,
    /// The instant decided for.
    pub at: Timestamp,
    /// Trigger, deferred or disabled.
    pub outcome: Outcome,
    /// What fired a trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TriggerSource>,
    /// The trigger reason (`periodic-sweep:86400000`) or the deferral reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The gate that deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Evidence in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every gate evaluated, in order.
    pub chain: Vec<ChainEntry>,
    /// Fingerprints of the lane file and each plugin in force (`rules/x.yaml` -> hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Fingerprints>,
    /// Who recorded it; set in the history, absent from a fresh decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Content fingerprints of a lane's configuration, by path relative to the home.
pub type Fingerprints = std::sync::Arc<std::collections::BTreeMap<String, String>>;

impl Decision {
    /// What would have to change for the lane to fire: each deferring gate's hint.
    pub fn hints(&self) -> Vec<String> {
        self.chain
            .iter()
            .filter(|c| c.verdict == GateVerdict::Defer)
            .map(|c| {
                format!(
                    "{}: {}",
                    c.gate,
                    c.hint.clone().unwrap_or_else(|| format!(
                        "passes once it stops reporting {}",
                        c.reason.as_deref().unwrap_or("a deferral")
                    ))
                )
            })
            .collect()
    }
}

impl Decision {
    /// True for a deferral by something other than the schedule or an operator's pause: the
    /// lane was due but held. A pause is not a starvation streak, so a long pause does not make
    /// the guard waive soft gates the moment it ends.
    pub fn is_held(&self) -> bool {
        self.outcome == Outcome::Deferred && holds(self.gate.as_deref())
    }
}

/// Whether a deferral by `gate` counts toward the deferral streak (docs/DESIGN.md §4).
pub fn holds(gate: Option<&str>) -> bool {
    gate != Some(SCHEDULE_GATE) && gate != Some(PAUSE_GATE)
}

/// The name of the built-in first gate.
pub const SCHEDULE_GATE: &str = "schedule";
/// The built-in gate right after the schedule: an operator's pause.
pub const PAUSE_GATE: &str = "pause";
/// `paused by alice at 2026-…: "note" (until …)`: a pause, in the words every command uses.
pub fn pause_words(pause: &crate::model::lane_state::Pause) -> String {
    let until = pause
        .until
        .map(|u| format!(" (until {u})"))
        .unwrap_or_default();
    format!(
        "paused by {} at {}: {:?}{until}",
        pause.by, pause.at, pause.note
    )
}

/// The reason a paused lane defers with.
pub const REASON_PAUSED: &str = "paused";

/// The built-in gate after the pause: a lane with `hosts:` needs one of them alive.
pub const HOSTS_GATE: &str = "hosts";
/// The reason a lane defers with when none of its `hosts:` is alive.
pub const REASON_NO_ELIGIBLE_HOST: &str = "no-eligible-host";

/// One thing a plugin looked at, recorded with the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Observation {
    /// An HTTP GET probe.
    Http {
        /// The URL probed.
        url: String,
        /// The status, when a response arrived.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Time to the response or the failure, in milliseconds.
        latency_ms: f64,
        /// Why no response arrived.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// True when answered from this pass's cache.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cached: bool,
    },
    /// A metric read.
    Metric {
        /// The metric name as lanes use it.
        name: String,
        /// Where it was read from.
        source: String,
        /// The value, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        /// Why it could not be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// True when answered from this pass's cache.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cached: bool,
    },
    /// A lane's recorded state.
    Lane {
        /// The lane looked at.
        lane: String,
        /// Whether it is running.
        running: bool,
        /// The running child's pid.
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Not running yet: an earlier lane of this pass dispatches it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        starting: bool,
        /// Its last success.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_success_at: Option<Timestamp>,
        /// Its last run start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_run_at: Option<Timestamp>,
    },
    /// A log line written by the plugin.
    Log {
        /// `info` or `warn`.
        level: String,
        /// The message.
        message: String,
    },
}
