//! The Rhai runtime: scripts compiled once to an AST, evaluated in a budgeted sandbox.
//!
//! The engine is built without filesystem, process or network access; plugins reach the world
//! only through the host functions registered here, which all go through [`super::host`].
//! Call depth and sizes are Rhai's own limits. The operation budget, the deadline (the plugin's
//! own time, host calls excluded), the gate's budget and host faults are enforced from
//! `on_progress`, and are sticky: once one trips, every later operation fails too, so a
//! callback whose error the standard library swallows cannot let the gate pass.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{
    AST, Array, CallFnOptions, Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, Map,
    NativeCallContext, Position, Scope,
};

use super::host::{self, PassHost};
use super::schema::{ParamSchema, ParamSpec};
use super::{
    Gate, GateInput, Plugin, PluginError, PluginErrorKind, PluginInfo, Runtime, Verdict,
    valid_reason,
};
use crate::config::settings::RhaiLimits;
use crate::model::duration;
use crate::model::lane_state::LaneState;

thread_local! {
    /// When the evaluation on this thread misses its deadline, before host time is added.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Why the evaluation on this thread was stopped, once it was.
    static STOP: Cell<Option<Stop>> = const { Cell::new(None) };
    /// Where a host call was first refused: Rhai moves errors that scripts cannot catch to
    /// the call site of `evaluate`, so the place is kept here.
    static REFUSED_AT: Cell<Position> = const { Cell::new(Position::NONE) };
}

/// What stopped an evaluation from `on_progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Budget,
    Deadline,
    /// The gate's budget, or a host fault: [`host::fault`] says which.
    Host,
}

/// Token returned from `on_progress` when an evaluation is stopped.
const STOP_TOKEN: &str = "lanekeeper:stop";

/// Stops the evaluation on this thread, now and at every later operation.
fn stop(why: Stop) -> Option<Dynamic> {
    STOP.set(Some(why));
    Some(Dynamic::from(STOP_TOKEN))
}

/// A host fault as a Rhai error that scripts cannot catch, at the call's position.
fn refused(at: Position) -> impl FnOnce(host::HostFault) -> Box<EvalAltResult> {
    move |_| {
        if STOP.replace(Some(Stop::Host)).is_none() {
            REFUSED_AT.set(at);
        }
        EvalAltResult::ErrorTerminated(Dynamic::from(STOP_TOKEN), at).into()
    }
}

/// Default timeout of `http_get` when the plugin gives none.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds the one sandboxed engine shared by every Rhai plugin of a registry.
pub fn engine(limits: &RhaiLimits) -> Engine {
    let mut e = Engine::new();
    // Counted in `on_progress` rather than by Rhai, so it is sticky (see the module docs).
    e.set_max_operations(0);
    e.set_max_call_levels(limits.max_call_levels);
    e.set_max_expr_depths(64, 32);
    e.set_max_string_size(limits.max_string_size);
    e.set_max_array_size(limits.max_array_size);
    e.set_max_map_size(limits.max_map_size);
    e.set_max_variables(256);
    e.set_max_functions(256);
    e.set_max_modules(0);
    e.disable_symbol("eval");
    e.set_strict_variables(true);
    let max_operations = limits.max_operations;
    e.on_progress(move |ops| {
        if STOP.get().is_some() {
            return Some(Dynamic::from(STOP_TOKEN));
        }
        if host::faulted() {
            return stop(Stop::Host);
        }
        if ops > max_operations {
            return stop(Stop::Budget);
        }
        if ops % 256 != 0 {
            return None;
        }
        let now = Instant::now();
        let (gate_ends, host_time) = host::timing();
        if DEADLINE.with(|d| d.get().is_some_and(|at| now >= at + host_time)) {
            return stop(Stop::Deadline);
        }
        if gate_ends.is_some_and(|at| now >= at) {
            return stop(Stop::Host);
        }
        None
    });
    // These cannot fail; a fault is sticky and stops the script at its next operation.
    e.on_print(|s| {
        let _ = host::log("info", s);
    });
    e.on_debug(|s, _, _| {
        let _ = host::log("info", s);
    });
    register_host_functions(&mut e);
    register_callbacks(&mut e);
    register_context(&mut e);
    e
}

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn register_host_functions(e: &mut Engine) {
    e.register_fn("http_get", |c: NativeCallContext, url: &str| {
        http_get(c.call_position(), url, DEFAULT_PROBE_TIMEOUT)
    });
    e.register_fn(
        "http_get",
        |c: NativeCallContext, url: &str, timeout_ms: i64| {
            http_get(
                c.call_position(),
                url,
                Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0)),
            )
        },
    );
    e.register_fn(
        "metric",
        |c: NativeCallContext, name: &str| -> RhaiResult<Dynamic> {
            match host::current() {
                Some((pass, _)) => Ok(
                    match pass.metric(name).map_err(refused(c.call_position()))? {
                        Ok(v) => Dynamic::from_float(v),
                        Err(_) => Dynamic::UNIT,
                    },
                ),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    e.register_fn(
        "lane",
        |c: NativeCallContext, name: &str| -> RhaiResult<Dynamic> {
            match host::current() {
                Some((pass, _)) => lane_view(&pass, name, c.call_position()),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    e.register_fn("log", |c: NativeCallContext, msg: &str| {
        host::log("info", msg).map_err(refused(c.call_position()))
    });
    e.register_fn("warn", |c: NativeCallContext, msg: &str| {
        host::log("warn", msg).map_err(refused(c.call_position()))
    });
    e.register_fn(
        "duration_ms",
        |text: &str| -> Result<i64, Box<EvalAltResult>> {
            duration::parse(text)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .map_err(|e| e.to_string().into())
        },
    );
    e.register_fn("fmt_duration", duration::format_ms);
    e.register_fn(
        "window_minutes",
        |text: &str| -> Result<rhai::Array, Box<EvalAltResult>> {
            super::schema::parse_window(text)
                .map(|(a, b)| {
                    vec![
                        Dynamic::from_int(i64::from(a)),
                        Dynamic::from_int(i64::from(b)),
                    ]
                })
                .map_err(|e| e.to_string().into())
        },
    );
}

fn http_get(at: Position, url: &str, timeout: Duration) -> RhaiResult<Dynamic> {
    let Some((pass, _)) = host::current() else {
        return Ok(Dynamic::UNIT);
    };
    let probe = pass.http_get(url, timeout).map_err(refused(at))?;
    Ok(Dynamic::from(Probe(Arc::new(probe))))
}

/// The standard library's `sort` and `dedup` ignore errors raised by their callback (and
/// sort by type instead); these replace them and pass any error on.
fn register_callbacks(e: &mut Engine) {
    e.register_fn("sort", sort_by);
    e.register_fn("sort_by", sort_by);
    e.register_fn("dedup", dedup_by);
}

fn sort_by(ctx: NativeCallContext, array: &mut Array, comparer: FnPtr) -> RhaiResult<()> {
    if array.len() <= 1 {
        return Ok(());
    }
    let mut failed = None;
    // `sort_by` may panic if the comparer is not a total order, as Rhai's own sort does.
    let sorted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        array.sort_by(|x, y| {
            if failed.is_some() {
                return Ordering::Equal;
            }
            match comparer.call_raw(&ctx, None, [x.clone(), y.clone()]) {
                Ok(v) => match v
                    .as_int()
                    .or_else(|_| v.as_bool().map(|b| if b { -1 } else { 1 }))
                {
                    Ok(n) => n.cmp(&0),
                    Err(_) => x.type_id().cmp(&y.type_id()),
                },
                Err(e) => {
                    failed = Some(e);
                    Ordering::Equal
                }
            }
        });
    }));
    if let Some(e) = failed {
        return Err(e);
    }
    sorted.map_err(|_| "the comparer given to `sort` is not a total order".into())
}

fn dedup_by(ctx: NativeCallContext, array: &mut Array, comparer: FnPtr) -> RhaiResult<()> {
    let mut failed = None;
    array.dedup_by(|x, y| {
        if failed.is_some() {
            return false;
        }
        match comparer.call_raw(&ctx, None, [y.clone(), x.clone()]) {
            Ok(v) => v.as_bool().unwrap_or(false),
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    failed.map_or(Ok(()), Err)
}

/// A lane's recorded state as scripts see it (`lane(name)`, `ctx.lanes.<name>`): read-only,
/// each field computed when read. Reading it records the lane as evidence.
#[derive(Clone)]
struct LaneView(Arc<PassHost>, ImmutableString);

impl LaneView {
    fn state(&self) -> Option<std::borrow::Cow<'_, LaneState>> {
        self.0.state(self.1.as_str())
    }
}

fn lane_view(pass: &Arc<PassHost>, name: &str, at: Position) -> RhaiResult<Dynamic> {
    Ok(match pass.lane(name).map_err(refused(at))? {
        Some(_) => Dynamic::from(LaneView(Arc::clone(pass), name.into())),
        None => Dynamic::UNIT,
    })
}

/// The outcome of `http_get`: `ok`, `status`, `latency_ms`, `error`.
#[derive(Clone)]
struct Probe(Arc<crate::model::observer::HttpResult>);

fn register_views(e: &mut Engine) {
    let opt = |v: Option<i64>| v.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT);
    e.register_type_with_name::<LaneView>("Lane")
        .register_get("last_run_ms", move |l: &mut LaneView| {
            opt(l
                .state()
                .and_then(|s| s.last_run_at)
                .map(|t| t.as_millisecond()))
        })
        .register_get("last_success_ms", move |l: &mut LaneView| {
            opt(l
                .state()
                .and_then(|s| s.last_success_at)
                .map(|t| t.as_millisecond()))
        })
        .register_get("last_result", |l: &mut LaneView| {
            l.state()
                .and_then(|s| s.last_result)
                .map(|r| Dynamic::from(r.as_str()))
                .unwrap_or(Dynamic::UNIT)
        })
        .register_get("last_exit_code", move |l: &mut LaneView| {
            match l.state().and_then(|s| s.last_exit) {
                Some(crate::model::lane_state::ExitInfo::Code(c)) => {
                    Dynamic::from_int(i64::from(c))
                }
                _ => Dynamic::UNIT,
            }
        })
        .register_get("last_signal", move |l: &mut LaneView| {
            match l.state().and_then(|s| s.last_exit) {
                Some(crate::model::lane_state::ExitInfo::Signal(n)) => {
                    Dynamic::from_int(i64::from(n))
                }
                _ => Dynamic::UNIT,
            }
        })
        .register_get("running", |l: &mut LaneView| {
            l.state().is_some_and(|s| s.is_running())
        })
        .register_get("starting", |l: &mut LaneView| {
            l.state().is_some_and(|s| s.starting)
        })
        .register_get("pid", move |l: &mut LaneView| {
            opt(l
                .state()
                .and_then(|s| s.running.as_ref().map(|r| i64::from(r.pid))))
        })
        .register_get("running_since_ms", move |l: &mut LaneView| {
            opt(l
                .state()
                .and_then(|s| s.running.as_ref().map(|r| r.started_at.as_millisecond())))
        })
        .register_get("name", |l: &mut LaneView| l.1.clone());
    e.register_type_with_name::<Probe>("Probe")
        .register_get("ok", |p: &mut Probe| p.0.ok())
        .register_get("status", |p: &mut Probe| {
            p.0.status
                .map(|s| Dynamic::from_int(i64::from(s)))
                .unwrap_or(Dynamic::UNIT)
        })
        .register_get("latency_ms", |p: &mut Probe| p.0.latency_ms)
        .register_get("error", |p: &mut Probe| {
            p.0.error
                .clone()
                .map(Dynamic::from)
                .unwrap_or(Dynamic::UNIT)
        });
}

/// A problem found while loading a script: position and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column, 0 if unknown.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

struct Inner {
    info: PluginInfo,
    /// Where `fn evaluate` starts: Rhai reports budget and limit errors at the call site, which
    /// is outside the script, so these errors point here instead.
    evaluate_at: (usize, usize),
    engine: Arc<Engine>,
    ast: AST,
    deadline: Duration,
    max_operations: u64,
}

/// A compiled Rhai plugin.
pub struct RhaiPlugin {
    inner: Arc<Inner>,
}

impl RhaiPlugin {
    /// Compiles `source` and reads its declared parameters.
    pub fn load(
        name: &str,
        path: &Path,
        source: &str,
        engine: Arc<Engine>,
        limits: &RhaiLimits,
    ) -> Result<Self, LoadError> {
        let ast = engine.compile(source).map_err(|e| LoadError {
            line: e.1.line().unwrap_or(0),
            col: e.1.position().unwrap_or(0),
            message: format!("Rhai syntax error: {}", e.0),
        })?;
        let has = |f: &str, arity: usize| {
            ast.iter_functions()
                .find(|m| m.name == f)
                .map(|m| m.params.len() == arity)
        };
        match has("evaluate", 1) {
            Some(true) => {}
            Some(false) => {
                return Err(LoadError {
                    line: 0,
                    col: 0,
                    message: "`evaluate` must take exactly one parameter: fn evaluate(ctx)".into(),
                });
            }
            None => {
                return Err(LoadError {
                    line: 0,
                    col: 0,
                    message: "no `fn evaluate(ctx)`; a Rhai plugin must define it".into(),
                });
            }
        }
        let declares_params = has("params", 0).is_some();
        let mut inner = Inner {
            info: PluginInfo {
                name: name.to_string(),
                runtime: Runtime::Rhai,
                path: path.to_path_buf(),
                schema: ParamSchema::default(),
                hash: crate::model::fingerprint::content_hash(source.as_bytes()),
            },
            evaluate_at: find_fn(source, "evaluate"),
            engine,
            ast,
            deadline: limits.deadline,
            max_operations: limits.max_operations,
        };
        if declares_params {
            inner.info.schema = read_schema(&inner)?;
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

/// Calls `fn params()` once and parses `#{ name: "type", other: "type?" }`.
fn read_schema(inner: &Inner) -> Result<ParamSchema, LoadError> {
    let err = |message: String| LoadError {
        line: 0,
        col: 0,
        message,
    };
    let value = inner
        .call("params", ())
        .map_err(|e| err(format!("`params()` failed: {}", e.message)))?;
    let map = value.try_cast::<Map>().ok_or_else(|| {
        err(
            "`params()` must return a map such as #{ lane: \"lane\", max_age: \"duration?\" }"
                .into(),
        )
    })?;
    let mut params = BTreeMap::new();
    for (k, v) in map {
        let spec: ParamSpec = v
            .into_immutable_string()
            .map_err(|t| {
                err(format!(
                    "`params()`: type of `{k}` must be a string, found {t}"
                ))
            })?
            .parse()
            .map_err(|e| err(format!("`params()`: `{k}`: {e}")))?;
        params.insert(k.to_string(), spec);
    }
    Ok(ParamSchema {
        params: Some(params),
    })
}

impl Inner {
    /// Calls a script function under the budgets, mapping failures to plugin errors. A host
    /// fault or a stop wins over whatever the script returned: a callback's error may have
    /// been swallowed on the way.
    fn call(&self, f: &str, args: impl rhai::FuncArgs) -> Result<Dynamic, PluginError> {
        let previous = DEADLINE.with(|d| d.replace(Some(Instant::now() + self.deadline)));
        let previous_stop = STOP.replace(None);
        let mut scope = Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let result = self
            .engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, &self.ast, f, args);
        let stopped = STOP.replace(previous_stop);
        let refused_at = REFUSED_AT.replace(Position::NONE);
        DEADLINE.with(|d| d.set(previous));
        if let Some(fault) = host::fault() {
            return Err(fault.into_error(&self.at(refused_at)));
        }
        match stopped {
            Some(Stop::Budget) => Err(self.budget_error()),
            Some(Stop::Deadline) => Err(self.deadline_error()),
            // A host stop without a fault cannot happen; treat it as the gate's deadline.
            Some(Stop::Host) => Err(self.deadline_error()),
            None => result.map_err(|e| self.error(&e)),
        }
    }

    fn budget_error(&self) -> PluginError {
        PluginError {
            kind: PluginErrorKind::Budget,
            message: format!(
                "{} ran out of its operation budget ({} operations)",
                self.at(Position::NONE),
                self.max_operations
            ),
        }
    }

    fn deadline_error(&self) -> PluginError {
        PluginError {
            kind: PluginErrorKind::Deadline,
            message: format!(
                "{} missed its deadline of {}",
                self.at(Position::NONE),
                duration::format(self.deadline)
            ),
        }
    }

    fn error(&self, e: &EvalAltResult) -> PluginError {
        let inner = e.unwrap_inner();
        let (kind, cause) = match inner {
            EvalAltResult::ErrorTooManyOperations(_) => (
                PluginErrorKind::Budget,
                format!(
                    "ran out of its operation budget ({} operations)",
                    self.max_operations
                ),
            ),
            EvalAltResult::ErrorDataTooLarge(what, _) => (
                PluginErrorKind::Limit,
                format!("exceeded a size limit: {what}"),
            ),
            EvalAltResult::ErrorStackOverflow(_) => (
                PluginErrorKind::Limit,
                "exceeded the call-depth limit".to_string(),
            ),
            EvalAltResult::ErrorRuntime(value, _) => {
                (PluginErrorKind::Thrown, format!("threw: {value}"))
            }
            other => (PluginErrorKind::Thrown, strip_position(&other.to_string())),
        };
        PluginError {
            kind,
            message: format!("{} {cause}", self.at(inner.position())),
        }
    }

    fn at(&self, pos: Position) -> String {
        match (pos.line(), pos.position()) {
            (Some(l), Some(c)) => {
                format!(
                    "plugin `{}` ({}:{l}:{c})",
                    self.info.name,
                    self.info.path.display()
                )
            }
            (Some(l), None) => format!(
                "plugin `{}` ({}:{l})",
                self.info.name,
                self.info.path.display()
            ),
            _ => {
                let (l, c) = self.evaluate_at;
                format!(
                    "plugin `{}` ({}:{l}:{c}, in fn evaluate)",
                    self.info.name,
                    self.info.path.display()
                )
            }
        }
    }

    fn verdict(&self, value: Dynamic) -> Result<Verdict, PluginError> {
        let bad = |what: String| PluginError {
            kind: PluginErrorKind::BadVerdict,
            message: format!(
                "{} returned {what}; return () to pass, a reason string, or #{{ defer: \"reason\", detail: \"…\" }}",
                self.at(Position::NONE)
            ),
        };
        let reason = |r: ImmutableString| -> Result<String, PluginError> {
            if valid_reason(&r) {
                Ok(r.to_string())
            } else {
                Err(bad(format!(
                    "the reason `{r}`, which is not kebab-case (a-z, 0-9, -)"
                )))
            }
        };
        if value.is_unit() {
            return Ok(Verdict::Pass { detail: None });
        }
        if value.is_string() {
            let r = value
                .into_immutable_string()
                .map_err(|t| bad(t.to_string()))?;
            return Ok(Verdict::Defer {
                reason: reason(r)?,
                detail: String::new(),
                hint: None,
            });
        }
        let type_name = value.type_name();
        let Some(map) = value.try_cast::<Map>() else {
            return Err(bad(format!(
                "an unknown verdict shape: a value of type {type_name}"
            )));
        };
        // `#{ pass: false }` reads as a deferral to its author; any key but these is refused
        // rather than guessed at.
        if let Some(k) = map
            .keys()
            .find(|k| !["defer", "detail", "hint"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "an unknown verdict shape: a map with the unknown key `{k}`"
            )));
        }
        let text = |key: &str| match map.get(key) {
            None => None,
            Some(d) if d.is_unit() => None,
            Some(d) => Some(d.to_string()),
        };
        let detail = text("detail");
        match map.get("defer") {
            Some(d) if d.is_string() => {
                let r = d
                    .clone()
                    .into_immutable_string()
                    .map_err(|t| bad(t.to_string()))?;
                Ok(Verdict::Defer {
                    reason: reason(r)?,
                    detail: detail.unwrap_or_default(),
                    hint: text("hint"),
                })
            }
            Some(d) if !d.is_unit() => Err(bad(format!("`defer` of type {}", d.type_name()))),
            _ => Ok(Verdict::Pass { detail }),
        }
    }
}

/// The 1-based line and column of `fn NAME(` in `source` (1:1 if not found).
fn find_fn(source: &str, name: &str) -> (usize, usize) {
    for (i, line) in source.lines().enumerate() {
        if let Some(col) = line.find("fn ") {
            let rest = line[col + 3..].trim_start();
            if rest
                .strip_prefix(name)
                .is_some_and(|r| r.trim_start().starts_with('('))
            {
                return (i + 1, col + 1);
            }
        }
    }
    (1, 1)
}

fn strip_position(s: &str) -> String {
    match s.rfind(" (line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

impl Plugin for RhaiPlugin {
    fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    fn bind(&self, params: &serde_json::Value) -> Arc<dyn Gate> {
        let map = rhai::serde::to_dynamic(params)
            .ok()
            .and_then(|d| d.try_cast::<Map>())
            .unwrap_or_default();
        Arc::new(RhaiGate {
            inner: Arc::clone(&self.inner),
            params: Params(Arc::new(map)),
        })
    }
}

struct RhaiGate {
    inner: Arc<Inner>,
    params: Params,
}

impl Gate for RhaiGate {
    fn evaluate(&self, input: &GateInput<'_>) -> Result<Verdict, PluginError> {
        let ctx = Context(Arc::new(ContextData {
            lane: input.lane.into(),
            pass: Arc::clone(input.pass),
            zone: input.zone.clone(),
            params: self.params.clone(),
            local: std::sync::OnceLock::new(),
        }));
        let value = self.inner.call("evaluate", (Dynamic::from(ctx),))?;
        let verdict = self.inner.verdict(value)?;
        host::check_verdict(&verdict).map_err(|f| f.into_error(&self.inner.at(Position::NONE)))?;
        Ok(verdict)
    }
}

/// The `ctx` a plugin receives: a read-only view. Scripts get no setters, so nothing one gate
/// does can leak into another, and building it costs one allocation; every field is computed
/// only when the script reads it.
#[derive(Clone)]
struct Context(Arc<ContextData>);

struct ContextData {
    lane: ImmutableString,
    pass: Arc<PassHost>,
    zone: jiff::tz::TimeZone,
    params: Params,
    local: std::sync::OnceLock<Arc<jiff::Zoned>>,
}

impl Context {
    fn local(&self) -> LocalTime {
        let d = &self.0;
        LocalTime(Arc::clone(
            d.local
                .get_or_init(|| Arc::new(d.pass.now().to_zoned(d.zone.clone()))),
        ))
    }
}

/// `ctx.params`: the lane's `with:` parameters; a missing one reads as `()`.
#[derive(Clone)]
struct Params(Arc<Map>);

/// `ctx.lanes`: every lane's recorded state by name; each read is recorded as evidence.
#[derive(Clone)]
struct Lanes(Arc<PassHost>);

/// `ctx.local`: the evaluation instant in the lane's zone.
#[derive(Clone)]
struct LocalTime(Arc<jiff::Zoned>);

fn register_context(e: &mut Engine) {
    e.register_type_with_name::<Context>("Context")
        .register_get("lane", |c: &mut Context| c.0.lane.clone())
        .register_get("now_ms", |c: &mut Context| c.0.pass.now().as_millisecond())
        .register_get("now", |c: &mut Context| c.0.pass.now().to_string())
        .register_get("params", |c: &mut Context| c.0.params.clone())
        .register_get("lanes", |c: &mut Context| Lanes(Arc::clone(&c.0.pass)))
        .register_get("local", |c: &mut Context| c.local());
    e.register_type_with_name::<Params>("Params")
        .register_indexer_get(|p: &mut Params, key: &str| -> Dynamic {
            p.0.get(key).cloned().unwrap_or(Dynamic::UNIT)
        });
    e.register_type_with_name::<Lanes>("Lanes")
        .register_indexer_get(|l: &mut Lanes, name: &str| -> RhaiResult<Dynamic> {
            lane_view(&l.0, name, Position::NONE)
        });
    register_views(e);
    e.register_type_with_name::<LocalTime>("LocalTime")
        .register_get("date", |t: &mut LocalTime| t.0.date().to_string())
        .register_get("time", |t: &mut LocalTime| {
            t.0.time().strftime("%H:%M:%S").to_string()
        })
        .register_get("hour", |t: &mut LocalTime| i64::from(t.0.hour()))
        .register_get("minute", |t: &mut LocalTime| i64::from(t.0.minute()))
        .register_get("second", |t: &mut LocalTime| i64::from(t.0.second()))
        .register_get("minutes", |t: &mut LocalTime| {
            i64::from(t.0.hour()) * 60 + i64::from(t.0.minute())
        })
        .register_get("weekday", |t: &mut LocalTime| {
            i64::from(t.0.weekday().to_monday_one_offset())
        })
        .register_get("zone", |t: &mut LocalTime| {
            t.0.time_zone().iana_name().unwrap_or("UTC").to_string()
        })
        .register_get("offset", |t: &mut LocalTime| t.0.offset().to_string());
}
