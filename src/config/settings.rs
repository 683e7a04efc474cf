//! Host settings from the optional `lanekeeper.yaml`: metric sources and plugin limits.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::hook::{DEFAULT_HOOK_TIMEOUT, Hook, HookEvent};

use super::diagnostic::{Diagnostic, Diagnostics};
use super::duration::{self, DurationSetting};
use super::yaml;
pub use crate::model::metric::{MetricCatalog, MetricSource, Selector};

/// Budgets applied to every Rhai plugin evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RhaiLimits {
    /// Operations per evaluation (roughly AST nodes, calls and loop iterations).
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_levels: usize,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Longest array.
    pub max_array_size: usize,
    /// Largest map.
    pub max_map_size: usize,
    /// Wall-clock deadline per evaluation.
    pub deadline: Duration,
}

impl Default for RhaiLimits {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            deadline: Duration::from_millis(250),
        }
    }
}

/// Budgets applied to every WASM plugin evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WasmLimits {
    /// Fuel per evaluation (about one unit per WebAssembly instruction): a deterministic CPU
    /// budget.
    pub fuel: u64,
    /// Wall-clock deadline per evaluation for the plugin's own code (time spent waiting in host
    /// calls such as `http_get` is bounded by their own timeouts instead).
    pub deadline: Duration,
    /// Largest linear memory a plugin may have, in bytes.
    pub max_memory: u64,
    /// Reuse instances between evaluations, reset to their state after instantiation (on by
    /// default; off gives every evaluation a fresh instance, at a few microseconds each).
    pub reuse: bool,
}

impl Default for WasmLimits {
    fn default() -> Self {
        Self {
            fuel: 50_000_000,
            deadline: Duration::from_millis(250),
            max_memory: 16 * 1024 * 1024,
            reuse: true,
        }
    }
}

/// Caps on what one gate evaluation may leave in its chain entry, so a plugin cannot flood
/// the history, the log or the host's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceLimits {
    /// Observations (probes, metric reads, lane reads, log lines) per evaluation.
    pub max_entries: usize,
    /// Their total size in bytes, about the size of their JSON.
    pub max_bytes: usize,
    /// Longest `detail` or `hint` a plugin may return, in bytes.
    pub max_detail: usize,
}

impl Default for EvidenceLimits {
    fn default() -> Self {
        Self {
            max_entries: 64,
            max_bytes: 64 * 1024,
            max_detail: 4 * 1024,
        }
    }
}

/// The default of `limits.gate_timeout`: room for `provider-probe`'s default 3 s probe and
/// the plugin's own running time.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::model::size::{SizeError, format_size, parse_size};

/// Retention of run logs under `state/runs/<lane>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunLogs {
    /// A log is cut to this many bytes (head and tail kept) when its run ends.
    pub max_bytes: u64,
    /// Logs kept per lane.
    pub keep: usize,
    /// Logs older than this are removed.
    pub max_age: Duration,
}

impl Default for RunLogs {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            keep: 50,
            max_age: Duration::from_secs(30 * 86_400),
        }
    }
}

/// The host settings in force.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Named metric sources.
    pub metrics: MetricCatalog,
    /// Rhai budgets.
    pub rhai: RhaiLimits,
    /// WASM budgets.
    pub wasm: WasmLimits,
    /// Per-gate caps on evidence and on the detail and hint.
    pub evidence: EvidenceLimits,
    /// Wall clock per gate evaluation, host calls included.
    pub gate_timeout: Duration,
    /// Concurrent runs allowed per group (groups not listed allow 1).
    pub groups: BTreeMap<String, usize>,
    /// Default `recheck` for lanes that set none.
    pub recheck: Duration,
    /// On shutdown, running children get this long to finish before TERM.
    pub shutdown_timeout: Duration,
    /// Run log size cap and retention.
    pub run_logs: RunLogs,
    /// How long decision episodes and finished runs are kept.
    pub history_retention: Duration,
    /// Where the daemon serves /metrics, /status and its status page (off when `None`).
    pub listen: Option<std::net::SocketAddr>,
    /// Grants to a plugin in every lane that uses it (`plugins.<name>.allow`), with where each
    /// was written.
    pub plugin_grants: BTreeMap<String, (crate::model::grants::Grants, serde_saphyr::Location)>,
    /// Where runs get their own cgroup v2 (`cgroup:`).
    pub cgroup: CgroupSetting,
    /// Hooks for every lane that declares none of its own for the event.
    pub hooks: crate::model::hook::Hooks,
    /// Values `lanekeeper.yaml` took from the environment.
    pub env: Vec<super::env::EnvRef>,
    /// Where the recorded state lives (`state:`), when not in the home's own SQLite file:
    /// a path, or a `postgres://` URL shared by replicas. `--state` overrides it.
    pub state: Option<String>,
    /// How long a replica's leadership lasts unless renewed (`lease_ttl:`), on a shared store.
    pub lease_ttl: Duration,
}

/// A `state:` value that names no usable store.
fn check_state(text: &str) -> Result<(), crate::state::LocationError> {
    crate::state::Location::parse(text, &crate::home::Home::new(".")).map(|_| ())
}

/// The default `lease_ttl`: lanes are coarse, but a failover should come before a person
/// notices.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// `cgroup:` in lanekeeper.yaml: where each run gets its own cgroup v2, so a stop or timeout
/// reaches every process of the run and a lane's `limits:` can be enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupSetting {
    /// Under the process's own cgroup, when it is delegated (systemd `Delegate=yes`).
    #[default]
    Auto,
    /// Never: runs are contained by their process group and ancestry only.
    Off,
    /// Under this delegated cgroup v2 directory.
    At(std::path::PathBuf),
}

impl CgroupSetting {
    /// Reads `auto`, `off` or an absolute path.
    pub fn parse(text: &str) -> Result<Self, CgroupSettingError> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            t if t.starts_with('/') => Ok(Self::At(t.into())),
            t => Err(CgroupSettingError(t.to_string())),
        }
    }
}

/// A `cgroup:` value that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not auto, off or an absolute path to a cgroup v2 directory")]
pub struct CgroupSettingError(pub String);

impl Default for Settings {
    fn default() -> Self {
        Self {
            metrics: MetricCatalog::default(),
            rhai: RhaiLimits::default(),
            wasm: WasmLimits::default(),
            evidence: EvidenceLimits::default(),
            gate_timeout: DEFAULT_GATE_TIMEOUT,
            groups: BTreeMap::new(),
            recheck: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(60),
            run_logs: RunLogs::default(),
            history_retention: Duration::from_secs(30 * 86_400),
            listen: None,
            plugin_grants: BTreeMap::new(),
            cgroup: CgroupSetting::Auto,
            hooks: crate::model::hook::Hooks::default(),
            env: Vec::new(),
            state: None,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

impl Settings {
    /// How many runs of `group` may run at once.
    pub fn max_concurrent(&self, group: &str) -> usize {
        self.groups.get(group).copied().unwrap_or(1)
    }
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
struct RawSettings {
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawMetric>")]
    metrics: BTreeMap<String, Spanned<RawMetric>>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawGroup>")]
    groups: BTreeMap<String, Spanned<RawGroup>>,
    #[schemars(with = "Option<DurationSetting>")]
    recheck: Option<Spanned<DurationSetting>>,
    #[schemars(with = "Option<DurationSetting>")]
    shutdown_timeout: Option<Spanned<DurationSetting>>,
    run_logs: Option<RawRunLogs>,
    history: Option<RawHistory>,
    #[schemars(with = "Option<ListenSchema>")]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawPluginSettings>")]
    plugins: BTreeMap<String, Spanned<RawPluginSettings>>,
    #[schemars(with = "Option<String>")]
    cgroup: Option<Spanned<String>>,
    /// Where the recorded state lives: a file path, or `postgres://HOST/DB` shared by replicas
    /// (the password comes from PGPASSWORD or ~/.pgpass, never from here).
    #[schemars(with = "Option<String>")]
    state: Option<Spanned<String>>,
    /// How long a replica leads unless it renews (on a shared store); 10s by default.
    #[schemars(with = "Option<DurationSetting>")]
    lease_ttl: Option<Spanned<DurationSetting>>,
    /// Run when a run fails, for lanes without their own `on_failure`.
    #[schemars(with = "Option<super::lane::RawHook>")]
    on_failure: Option<Spanned<super::lane::RawHook>>,
    /// Run when a lane gives up, for lanes without their own `on_give_up`.
    #[schemars(with = "Option<super::lane::RawHook>")]
    on_give_up: Option<Spanned<super::lane::RawHook>>,
    /// Run when the starvation guard forces a run, for lanes without their own.
    #[schemars(with = "Option<super::lane::RawHook>")]
    on_forced_run: Option<Spanned<super::lane::RawHook>>,
    /// Run when a deferral episode begins, for lanes without their own `on_defer`.
    #[schemars(with = "Option<super::lane::RawHook>")]
    on_defer: Option<Spanned<super::lane::RawHook>>,
}

/// `listen:` in a JSON Schema: a port, or `HOST:PORT`.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ListenSchema {
    Port(u16),
    Address(String),
}

/// The JSON Schema (draft 2020-12) of `lanekeeper.yaml`, from the types it is read into.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(RawSettings)
}

/// What `lanekeeper.yaml` grants one plugin in every lane that uses it.
#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PluginSettings")]
struct RawPluginSettings {
    #[serde(default)]
    allow: super::lane::RawAllow,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "History")]
struct RawHistory {
    #[schemars(with = "DurationSetting")]
    retention: Spanned<DurationSetting>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Group")]
struct RawGroup {
    max_concurrent: usize,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RunLogs")]
struct RawRunLogs {
    max_bytes: Option<u64>,
    keep: Option<usize>,
    #[schemars(with = "Option<DurationSetting>")]
    max_age: Option<Spanned<DurationSetting>>,
}

/// A positive duration of at most `max` (`off` is refused), or a diagnostic at its place.
pub(crate) fn positive(
    path: &Path,
    field: &str,
    v: &Spanned<DurationSetting>,
    max: Duration,
    diags: &mut Diagnostics,
) -> Option<Duration> {
    match v.value {
        DurationSetting::On(d) if d > max => {
            diags.push(Diagnostic::yaml(
                path,
                v.referenced,
                format!(
                    "`{field}` is at most {}; `{}` is longer",
                    duration::format(max),
                    duration::format(d)
                ),
            ));
            None
        }
        DurationSetting::On(d) => Some(d),
        DurationSetting::Off => {
            diags.push(Diagnostic::yaml(
                path,
                v.referenced,
                format!("`{field}` must be a positive duration"),
            ));
            None
        }
    }
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Metric")]
struct RawMetric {
    prometheus: Option<String>,
    #[schemars(with = "Option<String>")]
    series: Option<Spanned<String>>,
    #[schemars(with = "Option<DurationSetting>")]
    timeout: Option<Spanned<DurationSetting>>,
    file: Option<String>,
    psi: Option<String>,
    #[serde(default)]
    full: bool,
    window: Option<String>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
struct RawLimits {
    rhai: Option<RawRhaiLimits>,
    wasm: Option<RawWasmLimits>,
    evidence: Option<RawEvidenceLimits>,
    #[schemars(with = "Option<DurationSetting>")]
    gate_timeout: Option<Spanned<DurationSetting>>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EvidenceLimits")]
struct RawEvidenceLimits {
    #[schemars(with = "Option<usize>")]
    max_entries: Option<Spanned<usize>>,
    #[schemars(with = "Option<RawSize>")]
    max_bytes: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<RawSize>")]
    max_detail: Option<Spanned<RawSize>>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WasmLimits")]
struct RawWasmLimits {
    #[schemars(with = "Option<u64>")]
    fuel: Option<Spanned<u64>>,
    #[schemars(with = "Option<DurationSetting>")]
    deadline: Option<Spanned<DurationSetting>>,
    #[schemars(with = "Option<RawSize>")]
    max_memory: Option<Spanned<RawSize>>,
    reuse: Option<bool>,
}

/// `max_memory: 16777216` or `max_memory: 16MiB`.
#[derive(schemars::JsonSchema, Deserialize)]
#[serde(untagged)]
#[schemars(rename = "Size")]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RhaiLimits")]
struct RawRhaiLimits {
    #[schemars(with = "Option<u64>")]
    max_operations: Option<Spanned<u64>>,
    #[schemars(with = "Option<usize>")]
    max_call_levels: Option<Spanned<usize>>,
    #[schemars(with = "Option<usize>")]
    max_string_size: Option<Spanned<usize>>,
    #[schemars(with = "Option<usize>")]
    max_array_size: Option<Spanned<usize>>,
    #[schemars(with = "Option<usize>")]
    max_map_size: Option<Spanned<usize>>,
    #[schemars(with = "Option<DurationSetting>")]
    deadline: Option<Spanned<DurationSetting>>,
}

/// Loads `lanekeeper.yaml` if present; problems go to `diags` and defaults stand in.
pub fn load(path: &Path, home: &Path, diags: &mut Diagnostics) -> Settings {
    // Relative metric paths (disk.free_pct:state) are under the home, whatever the file says.
    let defaults = || Settings {
        metrics: MetricCatalog::rooted(home.to_path_buf()),
        ..Settings::default()
    };
    match std::fs::read(path) {
        Ok(bytes) => from_bytes(path, bytes, home, diags),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => defaults(),
        Err(e) => {
            diags.push(Diagnostic::file(
                path,
                format!("cannot read host settings: {e}"),
            ));
            defaults()
        }
    }
}

/// [`load`] of a file's bytes already read, so the fuzz targets check the same text without
/// touching disk.
pub fn from_bytes(path: &Path, bytes: Vec<u8>, home: &Path, diags: &mut Diagnostics) -> Settings {
    let mut settings = Settings {
        metrics: MetricCatalog::rooted(home.to_path_buf()),
        ..Settings::default()
    };
    let text = match yaml::utf8(path, bytes) {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return settings;
        }
    };
    let before = diags.len();
    let substituted = super::env::substitute(path, &text, &super::env_var, diags);
    diags.substituted(path, substituted.shifts.clone());
    settings.env = substituted.refs;
    if diags.has_errors_since(before) {
        return settings;
    }
    let text = substituted.text;
    if let Some(tree) = yaml::tree(path, &text, &mut Diagnostics::default()) {
        super::env::check_keys(path, &tree, &substituted.shifts, diags);
    }
    let Some(raw) = yaml::parse::<Option<RawSettings>>(path, &text, diags).flatten() else {
        return settings;
    };
    for (event, written) in [
        (HookEvent::Failure, &raw.on_failure),
        (HookEvent::GiveUp, &raw.on_give_up),
        (HookEvent::ForcedRun, &raw.on_forced_run),
        (HookEvent::Defer, &raw.on_defer),
    ] {
        if let Some(h) = written {
            *settings.hooks.slot(event) = compile_hook(path, home, event, h, diags);
        }
    }
    for (name, metric) in raw.metrics {
        match compile_metric(&metric.value, home) {
            Ok(src) => {
                settings.metrics.insert(name, src);
            }
            Err(msg) => diags.push(Diagnostic::yaml(
                path,
                metric.referenced,
                format!("metric `{name}`: {msg}"),
            )),
        }
    }
    for (name, plugin) in raw.plugins {
        let grants = super::lane::compile_allow(path, &plugin.value.allow, diags);
        settings
            .plugin_grants
            .insert(name, (grants, plugin.referenced));
    }
    for (name, group) in raw.groups {
        if group.value.max_concurrent == 0 {
            diags.push(Diagnostic::yaml(
                path,
                group.referenced,
                format!("group `{name}`: max_concurrent must be at least 1"),
            ));
        } else {
            settings.groups.insert(name, group.value.max_concurrent);
        }
    }
    if let Some(d) = raw
        .recheck
        .as_ref()
        .and_then(|d| positive(path, "recheck", d, duration::MAX_RECHECK, diags))
    {
        settings.recheck = d;
    }
    if let Some(d) = raw
        .shutdown_timeout
        .as_ref()
        .and_then(|d| positive(path, "shutdown_timeout", d, duration::MAX_WAIT, diags))
    {
        settings.shutdown_timeout = d;
    }
    if let Some(logs) = raw.run_logs {
        let r = &mut settings.run_logs;
        r.max_bytes = logs.max_bytes.unwrap_or(r.max_bytes);
        r.keep = logs.keep.unwrap_or(r.keep).max(1);
        if let Some(d) = logs
            .max_age
            .as_ref()
            .and_then(|d| positive(path, "run_logs.max_age", d, duration::MAX, diags))
        {
            r.max_age = d;
        }
    }
    if let Some(l) = raw.listen {
        match parse_listen(&l.value) {
            Ok(addr) => settings.listen = Some(addr),
            Err(e) => diags.push(Diagnostic::yaml(path, l.referenced, format!("listen: {e}"))),
        }
    }
    if let Some(c) = raw.cgroup {
        match CgroupSetting::parse(&c.value) {
            Ok(setting) => settings.cgroup = setting,
            Err(e) => diags.push(Diagnostic::yaml(path, c.referenced, format!("cgroup: {e}"))),
        }
    }
    if let Some(st) = raw.state {
        match check_state(&st.value) {
            Ok(()) => settings.state = Some(st.value.trim().to_string()),
            Err(e) => diags.push(Diagnostic::yaml(path, st.referenced, format!("state: {e}"))),
        }
    }
    if let Some(d) = raw
        .lease_ttl
        .as_ref()
        .and_then(|d| positive(path, "lease_ttl", d, duration::MAX_WAIT, diags))
    {
        settings.lease_ttl = d;
    }
    if let Some(h) = raw.history
        && let Some(d) = positive(
            path,
            "history.retention",
            &h.retention,
            duration::MAX,
            diags,
        )
    {
        settings.history_retention = d;
    }
    let (rhai, wasm) = match raw.limits {
        Some(l) => {
            if let Some(d) = &l.gate_timeout
                && let Some(d) = positive(
                    path,
                    "limits.gate_timeout",
                    d,
                    duration::MAX_EVALUATION,
                    diags,
                )
            {
                settings.gate_timeout = d;
            }
            if let Some(e) = l.evidence {
                load_evidence_limits(path, e, &mut settings.evidence, diags);
            }
            (l.rhai, l.wasm)
        }
        None => (None, None),
    };
    if let Some(wasm) = wasm {
        load_wasm_limits(path, wasm, &mut settings.wasm, diags);
    }
    if let Some(rhai) = rhai {
        let l = &mut settings.rhai;
        at_least_one(
            path,
            "max_operations",
            rhai.max_operations,
            &mut l.max_operations,
            diags,
        );
        at_least_one(
            path,
            "max_call_levels",
            rhai.max_call_levels,
            &mut l.max_call_levels,
            diags,
        );
        at_least_one(
            path,
            "max_string_size",
            rhai.max_string_size,
            &mut l.max_string_size,
            diags,
        );
        at_least_one(
            path,
            "max_array_size",
            rhai.max_array_size,
            &mut l.max_array_size,
            diags,
        );
        at_least_one(
            path,
            "max_map_size",
            rhai.max_map_size,
            &mut l.max_map_size,
            diags,
        );
        if let Some(d) = rhai.deadline
            && let Some(v) = positive(
                path,
                "limits.rhai.deadline",
                &d,
                duration::MAX_EVALUATION,
                diags,
            )
        {
            l.deadline = v;
        }
    }
    settings
}

fn load_evidence_limits(
    path: &Path,
    raw: RawEvidenceLimits,
    l: &mut EvidenceLimits,
    diags: &mut Diagnostics,
) {
    if let Some(n) = raw.max_entries {
        if n.value == 0 {
            diags.push(Diagnostic::yaml(
                path,
                n.referenced,
                "limits.evidence.max_entries must be at least 1, e.g. 64",
            ));
        } else {
            l.max_entries = n.value;
        }
    }
    for (key, raw, into) in [
        ("max_bytes", raw.max_bytes, &mut l.max_bytes),
        ("max_detail", raw.max_detail, &mut l.max_detail),
    ] {
        let Some(v) = raw else { continue };
        let size = match &v.value {
            RawSize::Bytes(0) => Err(SizeError::Zero),
            RawSize::Bytes(n) => Ok(*n),
            RawSize::Text(t) => parse_size(t),
        };
        // Beyond 1 GiB a single decision could not be stored (SQLite's length limit).
        match size.map(usize::try_from) {
            Ok(Ok(n)) if n <= 1 << 30 => *into = n,
            Ok(_) => diags.push(Diagnostic::yaml(
                path,
                v.referenced,
                format!("limits.evidence.{key} must be at most 1GiB"),
            )),
            Err(e) => diags.push(Diagnostic::yaml(
                path,
                v.referenced,
                format!("limits.evidence.{key}: {e}"),
            )),
        }
    }
}

/// Sets a Rhai limit. Rhai reads 0 as "unlimited", which is never what a budget should say,
/// so 0 is refused.
fn at_least_one<T: Copy + Default + PartialEq + fmt::Display>(
    path: &Path,
    key: &str,
    v: Option<Spanned<T>>,
    into: &mut T,
    diags: &mut Diagnostics,
) {
    let Some(v) = v else { return };
    if v.value == T::default() {
        diags.push(Diagnostic::yaml(
            path,
            v.referenced,
            format!("limits.rhai.{key} must be at least 1 (0 would mean unlimited); the default is {into}"),
        ));
    } else {
        *into = v.value;
    }
}

fn load_wasm_limits(path: &Path, raw: RawWasmLimits, l: &mut WasmLimits, diags: &mut Diagnostics) {
    if let Some(reuse) = raw.reuse {
        l.reuse = reuse;
    }
    if let Some(fuel) = raw.fuel {
        if fuel.value == 0 {
            diags.push(Diagnostic::yaml(
                path,
                fuel.referenced,
                "limits.wasm.fuel must be positive, e.g. 50000000",
            ));
        } else {
            l.fuel = fuel.value;
        }
    }
    if let Some(d) = raw.deadline
        && let Some(v) = positive(
            path,
            "limits.wasm.deadline",
            &d,
            duration::MAX_EVALUATION,
            diags,
        )
    {
        l.deadline = v;
    }
    if let Some(m) = raw.max_memory {
        let size = match &m.value {
            RawSize::Bytes(0) => Err(SizeError::Zero),
            RawSize::Bytes(n) => Ok(*n),
            RawSize::Text(t) => parse_size(t),
        };
        // A guest built by rustc starts with about 1.1 MiB (its stack plus data); 4 GiB is
        // the most a 32-bit memory can address.
        match size {
            Ok(n) if (1 << 20..=4 << 30).contains(&n) => l.max_memory = n,
            Ok(_) => diags.push(Diagnostic::yaml(
                path,
                m.referenced,
                "limits.wasm.max_memory must be between 1MiB and 4GiB",
            )),
            Err(e) => diags.push(Diagnostic::yaml(
                path,
                m.referenced,
                format!("limits.wasm.max_memory: {e}"),
            )),
        }
    }
}

fn compile_metric(m: &RawMetric, home: &Path) -> Result<MetricSource, String> {
    let kinds = [m.prometheus.is_some(), m.file.is_some(), m.psi.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("give exactly one of `prometheus: URL` (with `series:`), `file: PATH` or `psi: cpu|io|memory`".into());
    }
    if let Some(url) = &m.prometheus {
        let series = m.series.as_ref().ok_or(
            "a prometheus metric needs `series:`, e.g. add_memory_latency_ms{quantile=\"0.99\"}",
        )?;
        let series: Selector = series.value.parse()?;
        let timeout = match m.timeout.as_ref().map(|t| t.value) {
            None => crate::model::metric::DEFAULT_SCRAPE_TIMEOUT,
            Some(DurationSetting::On(d)) if d > duration::MAX_EVALUATION => {
                return Err(format!(
                    "timeout is at most {}",
                    duration::format(duration::MAX_EVALUATION)
                ));
            }
            Some(DurationSetting::On(d)) => d,
            Some(DurationSetting::Off) => return Err("timeout must be positive".into()),
        };
        return Ok(MetricSource::Prometheus {
            url: url.clone(),
            series,
            timeout,
        });
    }
    if let Some(file) = &m.file {
        let p = Path::new(file);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            home.join(p)
        };
        return Ok(MetricSource::File { path });
    }
    let resource = m.psi.clone().unwrap_or_default();
    if !["cpu", "io", "memory"].contains(&resource.as_str()) {
        return Err(format!(
            "psi resource `{resource}` must be cpu, io or memory"
        ));
    }
    let window = m.window.clone().unwrap_or_else(|| "avg10".into());
    if !["avg10", "avg60", "avg300"].contains(&window.as_str()) {
        return Err(format!(
            "psi window `{window}` must be avg10, avg60 or avg300"
        ));
    }
    Ok(MetricSource::Psi {
        resource,
        full: m.full,
        window,
    })
}

/// Parses `--listen`/`listen:`: `HOST:PORT`, or a bare port meaning loopback.
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, ListenError> {
    let t = text.trim();
    if let Ok(port) = t.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    t.parse().map_err(|_| ListenError(t.to_string()))
}

/// A listen address that is neither a port nor `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address; write PORT (loopback) or HOST:PORT, e.g. 127.0.0.1:9470")]
pub struct ListenError(pub String);

/// Checks a hook as written: a program, no NUL, a positive timeout.
pub(crate) fn compile_hook(
    path: &std::path::Path,
    home: &std::path::Path,
    event: HookEvent,
    raw: &Spanned<super::lane::RawHook>,
    diags: &mut Diagnostics,
) -> Option<Hook> {
    let argv: Vec<String> = raw
        .value
        .argv
        .value
        .iter()
        .map(|a| a.value.clone())
        .collect();
    let before = diags.len();
    if argv.first().is_none_or(String::is_empty) {
        diags.push(Diagnostic::yaml(
            path,
            raw.value.argv.referenced,
            format!(
                "`{}.argv` needs at least the program, e.g. [sh, jobs/notify-webhook.sh]",
                event.key()
            ),
        ));
    }
    for (i, a) in raw.value.argv.value.iter().enumerate() {
        if a.value.contains('\0') {
            diags.push(Diagnostic::yaml(
                path,
                a.referenced,
                format!(
                    "`{}.argv[{i}]` contains a NUL byte, which cannot be passed to a program; remove it",
                    event.key()
                ),
            ));
        }
    }
    let timeout = match &raw.value.timeout {
        Some(t) => positive(
            path,
            &format!("{}.timeout", event.key()),
            t,
            duration::MAX_WAIT,
            diags,
        )?,
        None => DEFAULT_HOOK_TIMEOUT,
    };
    // As for a lane's program: a warning only, the daemon's PATH may differ.
    if let Some(program) = raw.value.argv.value.first()
        && !program.value.is_empty()
        && !program.value.contains('\0')
        && let Err(why) = super::program::resolve(&program.value, home, &BTreeMap::new())
    {
        diags.push(
            Diagnostic::yaml(
                path,
                program.referenced,
                format!("{}: {why}; the hook will fail to start", event.key()),
            )
            .warning(),
        );
    }
    (!diags.has_errors_since(before)).then_some(Hook { argv, timeout })
}
