//! The lane file schema (DESIGN §3) as written, and the compiled [`Lane`] the engine runs on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::DurationSetting;
use crate::plugins::{Gate, Runtime};

/// A lane file as written. Unknown keys are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLane {
    pub lane: Option<Spanned<String>>,
    pub label: Option<String>,
    pub schedule: Spanned<RawSchedule>,
    #[serde(default)]
    pub preconditions: Vec<RawGate>,
    pub max_deferral: Option<Spanned<DurationSetting>>,
    pub recheck: Option<Spanned<DurationSetting>>,
    pub group: Option<String>,
    pub priority: Option<i64>,
    pub retry: Option<Spanned<RawRetry>>,
    pub command: Spanned<RawCommand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub every: Option<Spanned<DurationSetting>>,
    pub cron: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGate {
    #[serde(rename = "use")]
    pub use_: Spanned<String>,
    pub with: Option<Spanned<BTreeMap<String, Spanned<serde_json::Value>>>>,
    #[serde(default)]
    pub soft: bool,
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub delay: Spanned<DurationSetting>,
    pub window: Spanned<DurationSetting>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommand {
    pub argv: Spanned<Vec<String>>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Spanned<DurationSetting>>,
    pub grace: Option<Spanned<DurationSetting>>,
}

/// What to do when a gate's plugin fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Defer the lane with `plugin-error` (the safe default).
    #[default]
    Defer,
    /// Let the lane through, recording the error.
    Pass,
}

/// When a lane is due.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Due once `every` has passed since the last run start.
    Every(Duration),
    /// Due once a cron slot has passed since the last run start.
    Cron {
        /// The expression as written.
        expr: String,
        /// The parsed expression.
        cron: Box<croner::Cron>,
    },
    /// Never due (`every: 0`, `off`, or negative).
    Disabled,
}

/// One precondition of a lane, bound to its parameters.
#[derive(Clone)]
pub struct GateBinding {
    /// The plugin name (`use:`).
    pub name: String,
    /// The plugin's runtime.
    pub runtime: Runtime,
    /// The evaluable gate.
    pub gate: Arc<dyn Gate>,
    /// May be waived by the starvation guard.
    pub soft: bool,
    /// What a plugin failure does.
    pub on_error: OnError,
    /// Lanes named by its lane-typed parameters (`peers`, `lane`): whose state it reads.
    pub reads: Vec<String>,
}

/// Retry after a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait this long after the failure.
    pub delay: Duration,
    /// Keep retrying while the failure streak is this young.
    pub window: Duration,
}

/// How to run a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Program and arguments; never passed through a shell.
    pub argv: Vec<String>,
    /// Working directory (relative paths resolved against the home).
    pub cwd: PathBuf,
    /// Added to the inherited environment.
    pub env: BTreeMap<String, String>,
    /// TERM the process group after this long.
    pub timeout: Option<Duration>,
    /// Then KILL it after this much more.
    pub grace: Duration,
}

/// A validated lane, ready for the engine.
#[derive(Clone)]
pub struct Lane {
    /// Its name.
    pub name: String,
    /// A human label.
    pub label: String,
    /// The file it came from.
    pub file: PathBuf,
    /// When it is due.
    pub schedule: Schedule,
    /// The zone for cron and local time.
    pub zone: TimeZone,
    /// Its preconditions, in order.
    pub gates: Vec<GateBinding>,
    /// Starvation guard: waive soft gates after being due and deferred this long.
    pub max_deferral: Option<Duration>,
    /// Re-evaluate a due but deferred lane this often (default: `recheck` in lanekeeper.yaml).
    pub recheck: Duration,
    /// Concurrency group.
    pub group: Option<String>,
    /// Lower wins within a group.
    pub priority: i64,
    /// Retry after failure.
    pub retry: Option<Retry>,
    /// The command.
    pub command: Command,
    /// Fingerprints of this lane's file and of each plugin it uses.
    pub fingerprints: crate::engine::decision::Fingerprints,
}

impl Lane {
    /// The other lanes whose state its gates read (named by lane-typed parameters).
    pub fn reads(&self) -> impl Iterator<Item = &str> {
        self.gates
            .iter()
            .flat_map(|g| g.reads.iter().map(String::as_str))
            .filter(|l| *l != self.name)
    }
}

/// Default `grace` between TERM and KILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Default `priority`: backup ships at 0 so it wins its group.
pub const DEFAULT_PRIORITY: i64 = 10;
