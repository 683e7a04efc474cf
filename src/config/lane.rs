//! The lane file schema (docs/DESIGN.md §3) as written, and the spec types a lane keeps once
//! checked (schedule, retry, command). The compiled lane is [`crate::compile::Lane`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::DurationSetting;
use super::yaml::{Key, Shape, check};
use crate::model::hook::HookEvent;

/// The keys of a lane file, checked before the typed read so every problem is reported at once.
/// Each value's check is the type of its field in [`RawLane`] and the structs below.
pub(super) const SCHEMA: Shape = Shape::Map(&[
    optional("lane", Shape::Value(check::<Option<String>>)),
    optional("label", Shape::Value(check::<Option<String>>)),
    required(
        "schedule",
        "add schedule.every (e.g. 24h) or schedule.cron (e.g. \"0 3 * * *\")",
        Shape::Map(&[
            optional("every", Shape::Value(check::<Option<DurationSetting>>)),
            optional("cron", Shape::Value(check::<Option<String>>)),
            optional("timezone", Shape::Value(check::<Option<String>>)),
            optional("jitter", Shape::Value(check::<Option<DurationSetting>>)),
            optional("catch_up", Shape::Value(check::<Option<CatchUp>>)),
        ]),
    ),
    optional(
        "preconditions",
        Shape::List(&Shape::Map(&[
            required(
                "use",
                "name its plugin, e.g. use: backup-recency",
                Shape::Value(check::<String>),
            ),
            optional(
                "with",
                Shape::Value(check::<Option<BTreeMap<String, serde_json::Value>>>),
            ),
            optional("soft", Shape::Value(check::<bool>)),
            optional("on_error", Shape::Value(check::<OnError>)),
            optional(
                "allow",
                Shape::Map(&[
                    optional("http", Shape::Value(check::<Vec<String>>)),
                    optional("metrics", Shape::Value(check::<Vec<String>>)),
                ]),
            ),
        ])),
    ),
    optional(
        "max_deferral",
        Shape::Value(check::<Option<DurationSetting>>),
    ),
    optional("recheck", Shape::Value(check::<Option<DurationSetting>>)),
    optional("group", Shape::Value(check::<Option<String>>)),
    optional("priority", Shape::Value(check::<Option<i64>>)),
    optional(
        "retry",
        Shape::Map(&[
            required(
                "delay",
                "add it, e.g. delay: 15m",
                Shape::Value(check::<DurationSetting>),
            ),
            required(
                "window",
                "add it, e.g. window: 1h",
                Shape::Value(check::<DurationSetting>),
            ),
        ]),
    ),
    optional(
        "limits",
        Shape::Map(&[
            optional("memory", Shape::Value(check::<Option<String>>)),
            optional("cpu", Shape::Value(check::<Option<String>>)),
        ]),
    ),
    optional(
        "give_up_after",
        Shape::Value(check::<Option<DurationSetting>>),
    ),
    optional("hosts", Shape::Value(check::<Vec<String>>)),
    optional("on_failure", HOOK),
    optional("on_give_up", HOOK),
    optional("on_forced_run", HOOK),
    optional("on_defer", HOOK),
    required(
        "command",
        "add command.argv, the program and its arguments (e.g. argv: [sh, jobs/backup.sh])",
        Shape::Map(&[
            required(
                "argv",
                "add the program and its arguments, e.g. argv: [sh, jobs/backup.sh]",
                Shape::Value(check::<Vec<String>>),
            ),
            optional("cwd", Shape::Value(check::<Option<String>>)),
            optional("env", Shape::Value(check::<BTreeMap<String, String>>)),
            optional("timeout", Shape::Value(check::<Option<DurationSetting>>)),
            optional("grace", Shape::Value(check::<Option<DurationSetting>>)),
        ]),
    ),
]);

/// A hook (`on_failure:` …): an argv, never a shell string, and its own timeout.
pub(super) const HOOK: Shape = Shape::Map(&[
    required(
        "argv",
        "add the program and its arguments, e.g. argv: [sh, jobs/notify-webhook.sh]",
        Shape::Value(check::<Vec<String>>),
    ),
    optional("timeout", Shape::Value(check::<Option<DurationSetting>>)),
]);

const fn optional(name: &'static str, shape: Shape) -> Key {
    Key {
        name,
        required: None,
        shape,
    }
}

const fn required(name: &'static str, what: &'static str, shape: Shape) -> Key {
    Key {
        name,
        required: Some(what),
        shape,
    }
}

/// A lane file as written. Unknown keys are errors.
#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Lane")]
pub(super) struct RawLane {
    /// The name is read from the parsed tree (even when the file fails); typed here so the
    /// read checks it.
    #[allow(dead_code)]
    #[schemars(with = "Option<String>")]
    pub lane: Option<Spanned<String>>,
    pub label: Option<String>,
    #[schemars(with = "RawSchedule")]
    pub schedule: Spanned<RawSchedule>,
    #[serde(default)]
    pub preconditions: Vec<RawGate>,
    #[schemars(with = "Option<DurationSetting>")]
    pub max_deferral: Option<Spanned<DurationSetting>>,
    #[schemars(with = "Option<DurationSetting>")]
    pub recheck: Option<Spanned<DurationSetting>>,
    #[schemars(with = "Option<String>")]
    pub group: Option<Spanned<String>>,
    pub priority: Option<i64>,
    #[schemars(with = "Option<RawRetry>")]
    pub retry: Option<Spanned<RawRetry>>,
    pub limits: Option<RawLimits>,
    /// Deferred this long without a break: `on_give_up` fires.
    #[schemars(with = "Option<DurationSetting>")]
    pub give_up_after: Option<Spanned<DurationSetting>>,
    /// The replicas it may run on (`--host` names), on a shared store; any when absent.
    #[schemars(with = "Option<Vec<String>>")]
    pub hosts: Option<Spanned<Vec<Spanned<String>>>>,
    /// Run when a run of the lane fails.
    #[schemars(with = "Option<RawHook>")]
    pub on_failure: Option<Spanned<RawHook>>,
    /// Run when retries are used up, or after `give_up_after` of deferral.
    #[schemars(with = "Option<RawHook>")]
    pub on_give_up: Option<Spanned<RawHook>>,
    /// Run when the starvation guard forces a run.
    #[schemars(with = "Option<RawHook>")]
    pub on_forced_run: Option<Spanned<RawHook>>,
    /// Run once at the start of each deferral episode.
    #[schemars(with = "Option<RawHook>")]
    pub on_defer: Option<Spanned<RawHook>>,
    #[schemars(with = "RawCommand")]
    pub command: Spanned<RawCommand>,
}

impl RawLane {
    /// The hooks as written, by event.
    pub(super) fn hooks(&self) -> [(HookEvent, Option<&Spanned<RawHook>>); 4] {
        [
            (HookEvent::Failure, self.on_failure.as_ref()),
            (HookEvent::GiveUp, self.on_give_up.as_ref()),
            (HookEvent::ForcedRun, self.on_forced_run.as_ref()),
            (HookEvent::Defer, self.on_defer.as_ref()),
        ]
    }
}

/// A hook as written: `{ argv: [sh, jobs/notify-webhook.sh], timeout: 30s }`.
#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Hook")]
pub(crate) struct RawHook {
    /// The program and its arguments; never through a shell.
    #[schemars(with = "Vec<ScalarText>")]
    pub argv: Spanned<Vec<Spanned<String>>>,
    /// TERM after this long (default 30s), KILL 5s later.
    #[schemars(with = "Option<DurationSetting>")]
    pub timeout: Option<Spanned<DurationSetting>>,
}

/// The JSON Schema (draft 2020-12) of a lane file, from the types it is read into, so the two
/// cannot drift. `with:` accepts any map here; [`crate::json_schema`] adds each plugin's.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(RawLane)
}

/// A value read as text: YAML gives `argv: [work.sh, 2]` and `env: { N: 2 }` as strings.
struct ScalarText;

impl schemars::JsonSchema for ScalarText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// `limits:` as written: `memory: 2G`, `cpu: 50%`.
#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
pub(super) struct RawLimits {
    #[schemars(with = "Option<String>")]
    pub memory: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub cpu: Option<Spanned<String>>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
pub(super) struct RawSchedule {
    #[schemars(with = "Option<DurationSetting>")]
    pub every: Option<Spanned<DurationSetting>>,
    #[schemars(with = "Option<String>")]
    pub cron: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    /// A fixed delay in [0, jitter) per lane and host, so lanes on one slot spread out.
    #[schemars(with = "Option<DurationSetting>")]
    pub jitter: Option<Spanned<DurationSetting>>,
    /// What slots missed while no daemon ran owe: one run (`once`) or none (`skip`).
    pub catch_up: Option<CatchUp>,
}

/// What a lane owes for slots that passed while no daemon was deciding (systemd's
/// `Persistent=`, made explicit).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// One run at once, however many slots were missed.
    #[default]
    Once,
    /// None: wait for the next slot after the daemon's start.
    Skip,
}

impl CatchUp {
    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::Skip => "skip",
        }
    }
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Gate")]
pub(crate) struct RawGate {
    #[serde(rename = "use")]
    #[schemars(with = "String")]
    pub use_: Spanned<String>,
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub with: Option<Spanned<BTreeMap<String, Spanned<serde_json::Value>>>>,
    #[serde(default)]
    pub soft: bool,
    #[serde(default)]
    pub on_error: OnError,
    #[schemars(with = "Option<RawAllow>")]
    pub allow: Option<Spanned<RawAllow>>,
}

/// Grants as written, checked: every http entry must be a host, `host:port` or a URL.
pub(crate) fn compile_allow(
    path: &std::path::Path,
    raw: &RawAllow,
    diags: &mut super::Diagnostics,
) -> crate::model::grants::Grants {
    let mut grants = crate::model::grants::Grants::default();
    for h in &raw.http {
        match crate::model::grants::HttpGrant::parse(&h.value) {
            Ok(g) => grants.http.push(g),
            Err(e) => diags.push(super::Diagnostic::yaml(
                path,
                h.referenced,
                format!("allow.http: {e}"),
            )),
        }
    }
    for m in &raw.metrics {
        if m.value.trim().is_empty() {
            diags.push(super::Diagnostic::yaml(
                path,
                m.referenced,
                "allow.metrics: an empty name grants nothing; name a metric, or a prefix such as psi.*",
            ));
        } else {
            grants.metrics.push(m.value.trim().to_string());
        }
    }
    grants
}

/// Capability grants as written: `allow: { http: [host:port], metrics: [name, prefix.*] }`.
#[derive(schemars::JsonSchema, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Allow")]
pub(crate) struct RawAllow {
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub http: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub metrics: Vec<Spanned<String>>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retry")]
pub(super) struct RawRetry {
    #[schemars(with = "DurationSetting")]
    pub delay: Spanned<DurationSetting>,
    #[schemars(with = "DurationSetting")]
    pub window: Spanned<DurationSetting>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Command")]
pub(super) struct RawCommand {
    #[schemars(with = "Vec<ScalarText>")]
    pub argv: Spanned<Vec<Spanned<String>>>,
    #[schemars(with = "Option<String>")]
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ScalarText>")]
    pub env: RawEnv,
    #[schemars(with = "Option<DurationSetting>")]
    pub timeout: Option<Spanned<DurationSetting>>,
    #[schemars(with = "Option<DurationSetting>")]
    pub grace: Option<Spanned<DurationSetting>>,
}

/// `command.env` as written, in order, each name and value with its place (a map keyed by
/// `Spanned` is not possible: it has no order).
#[derive(Default)]
pub(super) struct RawEnv(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RawEnv {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawEnv;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of environment variable names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawEnv, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawEnv(entries))
            }
            fn visit_unit<E>(self) -> Result<RawEnv, E> {
                Ok(RawEnv::default())
            }
        }
        d.deserialize_map(V)
    }
}

/// What to do when a gate's plugin fails.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Defer the lane with `plugin-error` (the safe default).
    #[default]
    Defer,
    /// Let the lane through, recording the error.
    Pass,
}

/// Where a lane's settings were written: findings about them (the lint) point there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Places {
    /// `cron:` or `every:`.
    pub schedule: serde_saphyr::Location,
    /// `max_deferral:`.
    pub max_deferral: Option<serde_saphyr::Location>,
    /// `recheck:`.
    pub recheck: Option<serde_saphyr::Location>,
    /// `retry.window:`.
    pub retry_window: Option<serde_saphyr::Location>,
    /// `group:`.
    pub group: Option<serde_saphyr::Location>,
    /// `command.timeout:`.
    pub timeout: Option<serde_saphyr::Location>,
    /// `hosts:`.
    pub hosts: Option<serde_saphyr::Location>,
}

impl Default for Places {
    fn default() -> Self {
        Self {
            schedule: serde_saphyr::Location::UNKNOWN,
            max_deferral: None,
            recheck: None,
            retry_window: None,
            group: None,
            timeout: None,
            hosts: None,
        }
    }
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

impl Schedule {
    /// A `cron:` value as lane files give it: `off`, or an expression croner accepts.
    pub fn from_cron(expr: &str) -> Result<Schedule, croner::errors::CronError> {
        if expr.trim().eq_ignore_ascii_case("off") {
            return Ok(Schedule::Disabled);
        }
        Ok(Schedule::Cron {
            expr: expr.to_string(),
            cron: Box::new(expr.parse::<croner::Cron>()?),
        })
    }

    /// True for a cron expression that matches no time from `from` on (30 February, or a year
    /// gone by), which would leave its lane silently never due.
    pub fn never_fires(&self, zone: &TimeZone, from: jiff::Timestamp) -> bool {
        self.why_never_fires(zone, from).is_some()
    }

    /// Why a cron expression matches no time from `from` on, in words, or `None` if it fires.
    pub fn why_never_fires(&self, zone: &TimeZone, from: jiff::Timestamp) -> Option<&'static str> {
        let Schedule::Cron { cron, .. } = self else {
            return None;
        };
        let from = from.to_zoned(zone.clone());
        super::cron::next(cron, &from).err()?;
        Some(if super::cron::previous(cron, &from).is_ok() {
            "its last time has passed"
        } else {
            "no date matches it (a day its months do not have, such as 30 February?)"
        })
    }
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
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
    /// Caps on the run's cgroup.
    #[serde(default)]
    pub limits: RunLimits,
}

/// A lane's `limits:`: caps on its run's own cgroup (where cgroup v2 is delegated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct RunLimits {
    /// `memory.max`, in bytes.
    pub memory: Option<u64>,
    /// `cpu.max` as a share of one CPU, in percent (150 = one and a half CPUs).
    pub cpu_percent: Option<u32>,
}

/// The largest `limits.cpu`: 1,000 CPUs.
pub const MAX_CPU_PERCENT: u32 = 100_000;

impl RunLimits {
    /// True when the lane asked for any cap.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpu_percent.is_some()
    }

    /// The caps as written back: `memory 2 GiB, cpu 50%`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", crate::model::size::format_size(m)));
        }
        if let Some(c) = self.cpu_percent {
            parts.push(format!("cpu {c}%"));
        }
        parts.join(", ")
    }

    /// Reads `cpu: 50%`.
    pub fn parse_cpu(text: &str) -> Result<u32, CpuError> {
        let t = text.trim();
        let n = t
            .strip_suffix('%')
            .ok_or_else(|| CpuError::NotAPercentage(t.to_string()))?;
        match n.trim().parse::<u32>() {
            Ok(p) if (1..=MAX_CPU_PERCENT).contains(&p) => Ok(p),
            _ => Err(CpuError::OutOfRange(t.to_string())),
        }
    }
}

/// A `limits.cpu` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    /// No `%`.
    #[error(
        "`{0}` is not a share of a CPU; write a percentage, e.g. 50% (150% is one and a half CPUs)"
    )]
    NotAPercentage(String),
    /// Zero, or more than the bound.
    #[error("`{0}` is not a share of a CPU from 1% to {MAX_CPU_PERCENT}%; e.g. 50%")]
    OutOfRange(String),
}

/// Default `grace` between TERM and KILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Default `priority`: backup ships at 0 so it wins its group.
pub const DEFAULT_PRIORITY: i64 = 10;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::diagnostic::Diagnostics;
    use super::super::yaml;
    use super::*;

    /// A file with every key passes both the key check and the typed read: [`SCHEMA`] and
    /// [`RawLane`] agree on them.
    #[test]
    fn the_schema_has_exactly_the_keys_of_the_lane_file() {
        let text = "lane: x\nlabel: X\nschedule: { every: 1h, cron: off, timezone: UTC, jitter: 5m, catch_up: skip }\n\
            preconditions:\n  - { use: p, with: { a: 1 }, soft: true, on_error: pass, allow: { http: [h], metrics: [m] } }\n\
            max_deferral: 1h\nrecheck: 30s\ngroup: g\npriority: 1\n\
            retry: { delay: 1m, window: 1h }\n\
            give_up_after: 2h\non_failure: { argv: [x], timeout: 5s }\non_give_up: { argv: [x] }\n\
            on_forced_run: { argv: [x] }\non_defer: { argv: [x] }\n\
            command: { argv: [x], cwd: ., env: { A: b }, timeout: 1h, grace: 5s }\n";
        let path = Path::new("x.yaml");
        let mut diags = Diagnostics::default();
        let tree = yaml::tree(path, text, &mut diags).expect("tree");
        let raw = yaml::read::<RawLane>(
            path,
            text,
            &tree,
            &SCHEMA,
            "lane `x`",
            serde_saphyr::Location::UNKNOWN,
            &mut diags,
        );
        assert!(raw.is_some() && diags.is_empty(), "{diags}");
    }
}
