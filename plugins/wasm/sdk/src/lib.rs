//! Guest SDK for lanekeeper WebAssembly precondition plugins.
//!
//! A plugin is a `cdylib` crate built for `wasm32-unknown-unknown`. Write one function and
//! export it:
//!
//! ```
//! use lanekeeper_plugin::{Context, Verdict, export};
//!
//! fn evaluate(ctx: &Context) -> Verdict {
//!     if ctx.local().hour < 6 {
//!         Verdict::pass()
//!     } else {
//!         Verdict::defer("too-late", format!("it is {} in {}", ctx.local().time, ctx.local().zone))
//!     }
//! }
//!
//! export!(evaluate: evaluate, params: &[]);
//! ```
//!
//! `evaluate` may also return `Result<Verdict, E>` for any `E: Display`: an `Err` becomes
//! `plugin-error` with that message. A panic does too, and its message and source position
//! reach the decision's detail. `params:` declares the `with:` parameters (the same type names
//! as Rhai's `fn params()`); leave it out to accept any `with:`.
//!
//! Host functions ([`lane`], [`http_get`], [`metric`], [`log`], [`warn`]) are the same
//! capabilities Rhai plugins get, and every observation is recorded as evidence. Built for any
//! other target (`cargo test`), they answer from [`testing`], so plugins are unit-tested
//! natively. The ABI underneath is documented in lanekeeper's docs/PLUGINS.md.

#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
mod bump;
pub mod json;
mod sys;
// Natively only the context is read from a record; host results come from `testing`.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod wire;

/// Fresh instance per evaluation: never freeing is free, and not growing memory is fast.
#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
#[global_allocator]
static ALLOCATOR: bump::Bump = bump::Bump;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

use std::cell::OnceCell;
use std::fmt::{self, Display, Write as _};

pub use json::Value;

/// What a plugin says: pass, or defer with a reason and detail.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The gate is open; `detail` optionally says why.
    Pass {
        /// Optional explanation, shown in `explain`.
        detail: Option<String>,
    },
    /// Not now.
    Defer {
        /// Kebab-case reason (`a-z`, `0-9`, `-`), e.g. `backup-stale`.
        reason: String,
        /// Evidence in words.
        detail: String,
        /// What would have to change for the gate to pass (shown by `explain`).
        hint: Option<String>,
    },
}

impl Verdict {
    /// Pass without comment.
    pub fn pass() -> Self {
        Verdict::Pass { detail: None }
    }

    /// Pass, saying why.
    pub fn pass_with(detail: impl Into<String>) -> Self {
        Verdict::Pass {
            detail: Some(detail.into()),
        }
    }

    /// Defer with a kebab-case reason and a detail.
    pub fn defer(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Verdict::Defer {
            reason: reason.into(),
            detail: detail.into(),
            hint: None,
        }
    }

    /// Adds what would have to change for the gate to pass (a deferral only).
    pub fn with_hint(self, text: impl Into<String>) -> Self {
        match self {
            Verdict::Defer { reason, detail, .. } => Verdict::Defer {
                reason,
                detail,
                hint: Some(text.into()),
            },
            pass => pass,
        }
    }
}

/// What `evaluate` may return: a [`Verdict`], or a `Result` whose error becomes `plugin-error`.
pub trait IntoOutcome {
    /// The verdict, or the error message.
    fn into_outcome(self) -> Result<Verdict, String>;
}

impl IntoOutcome for Verdict {
    fn into_outcome(self) -> Result<Verdict, String> {
        Ok(self)
    }
}

impl<E: Display> IntoOutcome for Result<Verdict, E> {
    fn into_outcome(self) -> Result<Verdict, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Local time in the lane's zone (`schedule.timezone`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Local {
    /// `2026-05-10`.
    pub date: String,
    /// `03:00:00`.
    pub time: String,
    /// 0-23.
    pub hour: u32,
    /// 0-59.
    pub minute: u32,
    /// 0-59.
    pub second: u32,
    /// Minutes since midnight.
    pub minutes: u32,
    /// 1 = Monday … 7 = Sunday.
    pub weekday: u32,
    /// IANA zone name, e.g. `Europe/Berlin`.
    pub zone: String,
    /// UTC offset, e.g. `+02`.
    pub offset: String,
}

impl Local {
    fn read(&mut self, v: json::Raw<'_>) -> Result<(), String> {
        let n = |v: json::Raw<'_>| u32::try_from(v.as_i64().unwrap_or(0)).unwrap_or(0);
        json::fields(v.text(), |key, v| match key {
            "date" => self.date = v.as_str().unwrap_or_default(),
            "time" => self.time = v.as_str().unwrap_or_default(),
            "hour" => self.hour = n(v),
            "minute" => self.minute = n(v),
            "second" => self.second = n(v),
            "minutes" => self.minutes = n(v),
            "weekday" => self.weekday = n(v),
            "zone" => self.zone = v.as_str().unwrap_or_default(),
            "offset" => self.offset = v.as_str().unwrap_or_default(),
            _ => {}
        })
    }
}

/// The lane's `with:` parameters, checked against the declared schema; durations arrive as
/// milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(Value);

impl Params {
    /// A parameter (`Null` when not given).
    pub fn get(&self, key: &str) -> &Value {
        self.0.get(key)
    }

    /// A string parameter.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).as_str()
    }

    /// An integer parameter (durations are integers of milliseconds).
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).as_i64()
    }

    /// A number parameter.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key).as_f64()
    }

    /// The items of a list parameter (empty when not given).
    pub fn list(&self, key: &str) -> &[Value] {
        self.get(key).items()
    }
}

/// What a plugin sees of the decision it takes part in.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The context as the host wrote it; fields are read from it when asked for.
    wire: Vec<u8>,
    local: OnceCell<Local>,
    params: OnceCell<Params>,
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.wire == other.wire
    }
}

impl Context {
    /// Reads a context written as JSON (the shape [`testing::context`] takes). Missing fields
    /// read as empty or zero, which lets tests give only what they need.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (mut lane, mut now_ms, mut now) = (String::new(), 0, String::new());
        let (mut local, mut read_local) = (Local::default(), Ok(()));
        let (mut params, mut lanes) = ("{}", "[]");
        json::fields(text, |key, v| match key {
            "lane" => lane = v.as_str().unwrap_or_default(),
            "now_ms" => now_ms = v.as_i64().unwrap_or(0),
            "now" => now = v.as_str().unwrap_or_default(),
            "local" => read_local = local.read(v),
            "params" => params = v.text(),
            "lanes" => lanes = v.text(),
            _ => {}
        })?;
        read_local?;
        json::parse(params)?;
        Context::from_wire(wire::context(&lane, now_ms, &now, &local, params, lanes))
    }

    /// One of the context's strings (see [`wire`]); empty if the context lacks it.
    fn text(&self, i: usize) -> &str {
        wire::context_text(&self.wire, i).unwrap_or_default()
    }

    /// The lane being decided.
    pub fn lane(&self) -> &str {
        self.text(0)
    }

    /// The evaluation instant, epoch milliseconds (the `--at` time under `check --at`).
    pub fn now_ms(&self) -> i64 {
        wire::num(&self.wire, 8, 8).unwrap_or(0) as i64
    }

    /// The evaluation instant, RFC 3339.
    pub fn now(&self) -> &str {
        self.text(1)
    }

    /// Local time in the lane's zone.
    pub fn local(&self) -> &Local {
        self.local.get_or_init(|| {
            let small = |at: usize| wire::num(&self.wire, at, 1).unwrap_or(0) as u32;
            Local {
                date: self.text(2).to_string(),
                time: self.text(3).to_string(),
                hour: small(16),
                minute: small(17),
                second: small(18),
                weekday: small(19),
                minutes: wire::num(&self.wire, 20, 2).unwrap_or(0) as u32,
                zone: self.text(4).to_string(),
                offset: self.text(5).to_string(),
            }
        })
    }

    /// The lane's `with:` parameters.
    pub fn params(&self) -> &Params {
        self.params
            .get_or_init(|| Params(json::parse(self.text(6)).unwrap_or_default()))
    }

    /// The names of every lane of the home; read one with [`lane`].
    pub fn lane_names(&self) -> Vec<String> {
        json::parse(self.text(7))
            .map(|v| {
                v.items()
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A lane's recorded state, as [`lane`] returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaneState {
    /// The lane.
    pub name: String,
    /// When its command last started (epoch ms).
    pub last_run_ms: Option<i64>,
    /// When it last succeeded (epoch ms).
    pub last_success_ms: Option<i64>,
    /// `success`, `failure`, `interrupted` or `unknown`.
    pub last_result: Option<String>,
    /// Exit code of the last finished run.
    pub last_exit_code: Option<i64>,
    /// Signal that ended the last finished run.
    pub last_signal: Option<i64>,
    /// Whether it is running now (in any lanekeeper process on the home), or starting in this
    /// pass.
    pub running: bool,
    /// Not running yet, but an earlier lane of this pass dispatches it (no pid yet).
    pub starting: bool,
    /// The running child's pid.
    pub pid: Option<i64>,
    /// When the running run started (epoch ms).
    pub running_since_ms: Option<i64>,
}

/// The outcome of [`http_get`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// A 2xx status arrived.
    pub ok: bool,
    /// The status, when a response arrived.
    pub status: Option<u16>,
    /// Time to the response or failure.
    pub latency_ms: f64,
    /// Why no response arrived (refused, timed out, …).
    pub error: Option<String>,
}

/// A lane's recorded state (`None` for an unknown lane). Recorded as evidence.
pub fn lane(name: &str) -> Option<LaneState> {
    sys::lane(name)
}

/// GETs `url` (default timeout 3 s). Made once per evaluation pass per URL, however many lanes
/// ask; recorded as evidence.
pub fn http_get(url: &str, timeout_ms: Option<u64>) -> Probe {
    let timeout = timeout_ms.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX));
    sys::http_get(url, timeout)
}

/// Reads a named metric (configured in lanekeeper.yaml, or built in). `Err` says why it could
/// not be read. Recorded as evidence.
pub fn metric(name: &str) -> Result<f64, String> {
    sys::metric(name)
}

/// Writes to lanekeeper's log and to the evidence.
pub fn log(message: &str) {
    sys::log(0, message);
}

/// Writes a warning to lanekeeper's log and to the evidence.
pub fn warn(message: &str) {
    sys::log(1, message);
}

/// Formats milliseconds compactly (`36h`, `1d12h` from a week up, `250ms`), exactly as Rhai's
/// `fmt_duration`, so details read the same in both runtimes.
pub fn fmt_duration(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", fmt_duration(ms.saturating_neg()));
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1_000;
    let days = if secs >= 7 * 86_400 { secs / 86_400 } else { 0 };
    secs -= days * 86_400;
    let hours = secs / 3_600;
    secs %= 3_600;
    let mins = secs / 60;
    secs %= 60;
    let mut out = String::new();
    let parts = [(days, "d"), (hours, "h"), (mins, "m"), (secs, "s")];
    let first = parts.iter().position(|(v, _)| *v > 0).unwrap_or(3);
    for (v, u) in parts.iter().skip(first).take(2) {
        if *v > 0 {
            let _ = write!(out, "{v}{u}");
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Formats a number as Rhai prints it (`800.0`, `0.5`, `1e20`), so details read the same in
/// both runtimes.
pub struct Number(pub f64);

impl Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.0.abs();
        if abs == 0.0 {
            f.write_str("0.0")
        } else if abs > f64::from(10_000_000_000_000.0_f32)
            || abs < f64::from(0.000_000_000_000_1_f32)
        {
            write!(f, "{:e}", self.0)
        } else {
            Display::fmt(&self.0, f)?;
            if abs.fract() == 0.0 {
                f.write_str(".0")?;
            }
            Ok(())
        }
    }
}

impl Display for Value {
    /// Integers as integers, other numbers as Rhai prints them, strings bare, the rest as JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{}", Number(*x)),
            Value::String(s) => f.write_str(s),
            Value::Null => Ok(()),
            other => {
                let mut out = String::new();
                other.write(&mut out);
                f.write_str(&out)
            }
        }
    }
}

/// Parses a daily window `HH:MM-HH:MM` into minutes of the day (start inclusive, end exclusive).
pub fn parse_window(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a window; write HH:MM-HH:MM, e.g. \"01:00-06:00\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
    };
    let (start, end) = (hm(a).ok_or_else(bad)?, hm(b).ok_or_else(bad)?);
    if start == end {
        return Err(format!("window `{s}` is empty (start equals end)"));
    }
    Ok((start, end))
}

/// Exports a plugin: `export!(evaluate: my_fn)` or
/// `export!(evaluate: my_fn, params: &[("lane", "lane"), ("max_age", "duration?")])`.
///
/// `my_fn` is `fn(&Context) -> Verdict` or `fn(&Context) -> Result<Verdict, E>`. The exports
/// exist only when building for wasm32, so the crate also builds and tests natively.
#[macro_export]
macro_rules! export {
    (evaluate: $evaluate:path $(, params: $params:expr)? $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        #[unsafe(export_name = "alloc")]
        pub extern "C" fn __lanekeeper_alloc(len: i32) -> i32 {
            $crate::__rt::alloc(len)
        }

        #[cfg(target_arch = "wasm32")]
        #[unsafe(export_name = "evaluate")]
        pub extern "C" fn __lanekeeper_evaluate(ptr: i32, len: i32) -> i64 {
            $crate::__rt::evaluate(ptr, len, $evaluate)
        }

        $(
            #[cfg(target_arch = "wasm32")]
            #[unsafe(export_name = "params")]
            pub extern "C" fn __lanekeeper_params() -> i64 {
                $crate::__rt::params($params)
            }

            /// The declared parameters as JSON, for tests.
            #[allow(dead_code)]
            pub fn __lanekeeper_params_json() -> String {
                $crate::__rt::params_json($params)
            }
        )?
    };
}

/// The runtime behind [`export!`]. Not a stable API.
#[doc(hidden)]
pub mod __rt {
    use super::*;

    /// Runs `evaluate` on a context and returns the verdict record (`None`: plain pass).
    pub fn run<R: IntoOutcome>(
        ctx: Result<Context, String>,
        evaluate: impl FnOnce(&Context) -> R,
    ) -> Option<Vec<u8>> {
        let outcome = match ctx {
            Ok(ctx) => evaluate(&ctx).into_outcome(),
            Err(e) => Err(format!("cannot read the context: {e}")),
        };
        wire::verdict(&outcome)
    }

    /// The schema JSON for `params:`.
    pub fn params_json(params: &[(&str, &str)]) -> String {
        let v = Value::Object(
            params
                .iter()
                .map(|(k, t)| (k.to_string(), Value::String(t.to_string())))
                .collect(),
        );
        let mut out = String::new();
        v.write(&mut out);
        out
    }

    #[cfg(target_arch = "wasm32")]
    pub use super::sys::guest::{alloc, evaluate, params};
}
