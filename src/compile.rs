//! The compile step: lane specs and plugins in, the lanes the engine runs out. Loading a home
//! reads `lanekeeper.yaml`, the plugins and the lane files, binds every gate to its plugin with
//! checked parameters and grants, and reports every problem of every file in one pass; a
//! configuration with any error is never run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;

use crate::clock::{Clock, SystemClock};
use crate::config::{
    self, Command, Diagnostic, Diagnostics, OnError, RawGate, Retry, Schedule, Settings, at,
    settings,
};
use crate::home::Home;
use crate::plugins::schema::Names;
use crate::plugins::{Gate, Registry, Runtime};

/// A home's whole, valid configuration.
#[derive(Clone)]
pub struct Config {
    /// Where it was loaded from.
    pub home: Home,
    /// Host settings.
    pub settings: Arc<Settings>,
    /// The plugins.
    pub registry: Registry,
    /// The lanes, sorted by name.
    pub lanes: Vec<Lane>,
}

impl Config {
    /// The lane of this name. Lanes are kept sorted by name, so this is a binary search (the
    /// daemon looks up every lane of a pass: a linear search made that quadratic); a list that
    /// was reordered by hand is still searched whole before a lane is called missing.
    pub fn lane(&self, name: &str) -> Option<&Lane> {
        match self.lanes.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => self.lanes.get(i),
            Err(_) => self.lanes.iter().find(|l| l.name == name),
        }
    }
}

/// Loads and validates everything under `home`.
/// Warnings do not stop a load and are not returned; `validate` shows them ([`load_lenient`]).
pub fn load(home: &Home) -> Result<Config, Diagnostics> {
    let (config, diags) = load_lenient(home);
    if diags.has_errors() {
        Err(diags.errors())
    } else {
        Ok(config)
    }
}

/// Loads what is valid and reports the rest: the lanes that compiled, and every problem. For
/// read-only views (`status`) that must work while an edit is half done; never for running.
pub fn load_lenient(home: &Home) -> (Config, Diagnostics) {
    let mut diags = Diagnostics::default();
    let settings = settings::load(&home.settings_file(), home.root(), &mut diags);
    // Compiled WASM is cached in state/, but loading never creates state/: only commands that
    // run or record lanes do, so `validate`, `status`, `check` and `explain` leave a fresh
    // home as they found it.
    let cache = home.state_dir().is_dir().then(|| home.wasm_cache_dir());
    config::skipped_entries(&home.plugins_dir(), &["rhai", "wasm"], "plugin", &mut diags);
    let registry = Registry::load(&home.plugins_dir(), &settings, cache.as_deref(), &mut diags);
    config::skipped_entries(&home.rules_dir(), &["yaml", "yml"], "lane", &mut diags);
    let rules = config::read_rules(&home.rules_dir(), &mut diags);
    config::writable_by_others(home, &mut diags);
    let config = assemble(home, settings, registry, rules, &mut diags);
    (config, diags)
}

/// [`load_lenient`] of texts instead of a home's files, with the plugins already loaded: the
/// same parse, checks and binding, for the fuzz targets, which must not touch disk per input.
/// `settings` is `lanekeeper.yaml` (`None`: absent); each lane file is `(path, content)`.
pub fn load_texts(
    home: &Home,
    settings: Option<Vec<u8>>,
    lane_files: Vec<(PathBuf, Vec<u8>)>,
    registry: Registry,
) -> (Config, Diagnostics) {
    let mut diags = Diagnostics::default();
    let settings = match settings {
        Some(bytes) => settings::from_bytes(&home.settings_file(), bytes, home.root(), &mut diags),
        None => Settings::default(),
    };
    let rules = config::parse_rules(
        lane_files
            .into_iter()
            .map(|(path, bytes)| (path, Ok(bytes))),
        &mut diags,
    );
    let config = assemble(home, settings, registry, rules, &mut diags);
    (config, diags)
}

/// Lanes a thread binds at a time when loading.
const LANES_AT_ONCE: usize = 64;

/// Binds the parsed lanes to the plugins: the part of a load after the files are read.
fn assemble(
    home: &Home,
    settings: Settings,
    registry: Registry,
    rules: config::Rules,
    diags: &mut Diagnostics,
) -> Config {
    for (name, (_, at)) in &settings.plugin_grants {
        if registry.get(name).is_none() && registry.broken(name).is_none() {
            diags.push(Diagnostic::yaml(
                &home.settings_file(),
                *at,
                format!(
                    "plugins.{name}: there is no plugin `{name}` to grant anything to (plugins: {})",
                    registry.names().join(", ")
                ),
            ));
        }
    }

    let names = KnownNames {
        lanes: &rules.known,
        settings: &settings,
    };
    // Each lane is bound on its own, spread over the cores; its problems are then taken in
    // order, so they read as if the lanes had been bound one after another.
    let programs = config::Programs::default();
    let compiled = crate::par::map(rules.parsed, crate::par::cores(), LANES_AT_ONCE, |raw| {
        let mut found = Diagnostics::default();
        let lane = compile(
            raw, home, &settings, &programs, &registry, &names, &mut found,
        );
        (lane, found)
    });
    let mut lanes = Vec::with_capacity(compiled.len());
    for (lane, found) in compiled {
        diags.push_all(found);
        lanes.extend(lane);
    }
    lanes.sort_by(|a, b| a.name.cmp(&b.name));
    Config {
        home: home.clone(),
        settings: Arc::new(settings),
        registry,
        lanes,
    }
}

impl Config {
    /// Every value its files took from the environment whose variable is a secret, so that
    /// commands printing decisions (a probed URL, a detail) can leave them out.
    pub fn secrets(&self) -> Vec<config::env::EnvRef> {
        self.lanes
            .iter()
            .flat_map(|l| l.env.iter())
            .chain(self.settings.env.iter())
            .filter(|r| r.value.is_none())
            .cloned()
            .collect()
    }
}

struct KnownNames<'a> {
    lanes: &'a BTreeSet<String>,
    settings: &'a Settings,
}

impl Names for KnownNames<'_> {
    fn is_lane(&self, name: &str) -> bool {
        self.lanes.contains(name)
    }
    fn is_metric(&self, name: &str) -> bool {
        self.settings.metrics.resolve(name).is_some()
    }
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
    /// What it may reach through the host (deny by default).
    pub grants: Arc<crate::model::grants::Grants>,
    /// The windows its `window` parameters name, as minutes of the day (start, end).
    pub windows: Vec<(u32, u32)>,
    /// Where its `use:` was written.
    pub at: serde_saphyr::Location,
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
    /// `schedule.jitter`, if set: the window its fixed delay is drawn from.
    pub jitter: Option<Duration>,
    /// Its fixed delay on this host, in `[0, jitter)`: every slot is due this much later.
    pub jitter_offset: Duration,
    /// What slots missed while no daemon ran owe.
    pub catch_up: config::CatchUp,
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
    /// Commands run on its events (its own, else `lanekeeper.yaml`'s).
    pub hooks: crate::model::hook::Hooks,
    /// Deferred this long without a break: `on_give_up` fires.
    pub give_up_after: Option<Duration>,
    /// The replicas it may run on, in order of preference (`hosts:`); empty: any.
    pub hosts: Vec<String>,
    /// Values its lane file took from the environment (`${VAR}`), for `explain`.
    pub env: Vec<config::env::EnvRef>,
    /// Fingerprints of this lane's file and of each plugin it uses.
    pub fingerprints: crate::model::decision::Fingerprints,
    /// Where its settings were written.
    pub places: config::lane::Places,
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

/// Binds one lane spec's gates; `None` when the lane has an error.
fn compile(
    parsed: config::ParsedLane,
    home: &Home,
    settings: &Settings,
    programs: &config::Programs,
    registry: &Registry,
    names: &dyn Names,
    diags: &mut Diagnostics,
) -> Option<Lane> {
    let before = diags.len();
    let spec = config::spec(parsed, home, settings, programs, diags);
    let p = spec.path.as_path();
    let gates: Vec<GateBinding> = spec
        .gates
        .iter()
        .filter_map(|g| bind_gate(p, g, registry, names, settings, diags))
        .collect();
    let file_name = |p: &Path| {
        p.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut fingerprints = BTreeMap::new();
    fingerprints.insert(
        format!("rules/{}", file_name(&spec.path)),
        spec.hash.clone(),
    );
    for g in &gates {
        if let Some(plugin) = registry.get(&g.name) {
            fingerprints.insert(
                format!("plugins/{}", file_name(plugin.path())),
                plugin.hash().to_string(),
            );
        }
    }
    let failed = diags.has_errors_since(before);
    diags.attribute(before, &spec.name);
    if failed {
        return None;
    }
    config::check_never_fires(&spec, SystemClock.now(), diags);
    let jitter_offset = spec
        .jitter
        .map(|w| crate::model::jitter::offset(&spec.name, host_name(), w))
        .unwrap_or_default();
    Some(Lane {
        name: spec.name,
        label: spec.label,
        file: spec.path,
        schedule: spec.schedule,
        zone: spec.zone,
        jitter_offset,
        jitter: spec.jitter,
        catch_up: spec.catch_up,
        gates,
        max_deferral: spec.max_deferral,
        recheck: spec.recheck,
        group: spec.group,
        priority: spec.priority,
        retry: spec.retry,
        command: spec.command,
        hooks: spec.hooks,
        give_up_after: spec.give_up_after,
        hosts: spec.hosts,
        env: spec.env,
        fingerprints: Arc::new(fingerprints),
        places: spec.places,
    })
}

/// This machine's name, read once: with the lane's name it draws the lane's jitter, so two
/// hosts sharing rules do not both start on the same instant.
fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    })
}

/// What a gate may reach: what its typed parameters name, its own `allow:`, and what
/// `lanekeeper.yaml` grants its plugin everywhere.
fn grants(
    path: &Path,
    g: &RawGate,
    plugin: &str,
    named: crate::model::grants::Grants,
    settings: &Settings,
    diags: &mut Diagnostics,
) -> crate::model::grants::Grants {
    let mut grants = named;
    if let Some(allow) = &g.allow {
        grants.extend(config::lane::compile_allow(path, &allow.value, diags));
    }
    if let Some((everywhere, _)) = settings.plugin_grants.get(plugin) {
        grants.extend(everywhere.clone());
    }
    grants
}

fn bind_gate(
    path: &Path,
    g: &RawGate,
    registry: &Registry,
    names: &dyn Names,
    settings: &Settings,
    diags: &mut Diagnostics,
) -> Option<GateBinding> {
    let name = &g.use_.value;
    if let Some(file) = registry.broken(name) {
        diags.push(at(
            path,
            g.use_.referenced,
            format!(
                "plugin `{name}` failed to load; fix {} (reported above)",
                file.display()
            ),
        ));
        return None;
    }
    let Some(plugin) = registry.get(name) else {
        let available = registry.names();
        diags.push(at(
            path,
            g.use_.referenced,
            format!(
                "unknown plugin `{name}`: no plugins/{name}.rhai or plugins/{name}.wasm (available: {})",
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
        ));
        return None;
    };
    let with_loc = g
        .with
        .as_ref()
        .map(|w| w.referenced)
        .unwrap_or(g.use_.referenced);
    let with: BTreeMap<String, serde_json::Value> = g
        .with
        .as_ref()
        .map(|w| {
            w.value
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    match plugin.schema().check(name, &with, names) {
        Ok(params) => Some(GateBinding {
            name: name.clone(),
            runtime: plugin.runtime(),
            gate: plugin.bind(&params),
            soft: g.soft,
            on_error: g.on_error,
            reads: plugin.schema().lanes_named(&params),
            windows: plugin.schema().windows_named(&params),
            at: g.use_.referenced,
            grants: Arc::new(grants(
                path,
                g,
                name,
                plugin.schema().grants_named(&params),
                settings,
                diags,
            )),
        }),
        Err(problems) => {
            for problem in problems {
                let loc = problem
                    .key
                    .as_ref()
                    .and_then(|k| g.with.as_ref()?.value.get(k).map(|v| v.referenced))
                    .unwrap_or(with_loc);
                diags.push(at(path, loc, problem.message));
            }
            None
        }
    }
}
