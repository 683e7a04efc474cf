//! The guest ABI: what a plugin module must export, the host functions it may import, and how
//! strings and JSON cross guest memory.
//!
//! Every value that is not a number travels as bytes in guest memory. Arguments are
//! `(ptr, len)` pairs; results are written into memory the guest hands out through its `alloc`
//! export and returned as one `i64` packing `ptr << 32 | len`, with 0 meaning "nothing".
//! Fixed-shape records (the context, a lane state, a probe, a metric reading) are little-endian
//! layouts a guest reads with plain loads; free-form ones (parameters, verdicts) are JSON.

use std::fmt;
use std::time::{Duration, Instant};

use wasmtime::{Caller, Engine, Extern, ExternType, FuncType, Linker, Memory, Module, ValType};

use super::store::StoreData;
use crate::model::lane_state::{ExitInfo, LaneState, RunResult};
use crate::model::observer::HttpResult;
use crate::plugins::host;

/// The import module every host function lives in.
pub const HOST_MODULE: &str = "lanekeeper";

/// Largest string a guest may pass to a host function, or return as a verdict.
pub const MAX_GUEST_STRING: usize = 64 * 1024;

/// Default timeout of `http_get` when the guest passes a negative one.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A function of the ABI: name and signature.
pub struct Signature {
    /// The export or import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.name,
            render(self.params.iter().cloned(), self.results.iter().cloned())
        )
    }
}

use ValType::{I32, I64};

/// Host functions a plugin may import from module `lanekeeper`.
pub const IMPORTS: &[Signature] = &[
    Signature {
        name: "lane",
        params: &[I32, I32],
        results: &[I64],
    },
    Signature {
        name: "http_get",
        params: &[I32, I32, I64],
        results: &[I64],
    },
    Signature {
        name: "metric",
        params: &[I32, I32],
        results: &[I64],
    },
    Signature {
        name: "log",
        params: &[I32, I32, I32],
        results: &[],
    },
    Signature {
        name: "panic_message",
        params: &[I32, I32],
        results: &[],
    },
];

/// `alloc(len) -> ptr`: guest memory for the host to write into.
pub const ALLOC: Signature = Signature {
    name: "alloc",
    params: &[I32],
    results: &[I32],
};

/// `evaluate(ctx_ptr, ctx_len) -> packed verdict record`.
pub const EVALUATE: Signature = Signature {
    name: "evaluate",
    params: &[I32, I32],
    results: &[I64],
};

/// Bytes before the strings of a verdict record.
const VERDICT_HEADER: usize = 32;

/// What `evaluate` returned, read from its record: `u32` kind (0 pass, 1 defer, 2 error),
/// `u32` presence bits (1 reason, 2 detail, 4 hint), three `(u32 offset, u32 len)` string
/// places from the record's start, then the strings, UTF-8. An error's message is its detail.
#[derive(Debug, PartialEq)]
pub enum VerdictRecord {
    /// Pass, perhaps saying why.
    Pass { detail: Option<String> },
    /// Not now (the reason is not checked here).
    Defer {
        reason: String,
        detail: String,
        hint: Option<String>,
    },
    /// The plugin failed, in its own words.
    Error { message: String },
}

impl VerdictRecord {
    /// Reads a record; the error says what is wrong with it.
    pub fn read(r: &[u8]) -> Result<Self, String> {
        if r.first() == Some(&b'{') {
            return Err(
                "returned JSON, but a verdict is a record (docs/PLUGINS.md, \"The verdict\"); a plugin built for the earlier JSON ABI must be rebuilt with the current SDK"
                    .into(),
            );
        }
        if r.len() < VERDICT_HEADER {
            return Err(format!(
                "returned a verdict of {} bytes, shorter than its {VERDICT_HEADER}-byte header (see docs/PLUGINS.md, \"The verdict\")",
                r.len()
            ));
        }
        let word = |at: usize| {
            r.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let (kind, present) = (word(0), word(4));
        let mut fields: [Option<String>; 3] = [None, None, None];
        for (i, (field, name)) in fields
            .iter_mut()
            .zip(["reason", "detail", "hint"])
            .enumerate()
        {
            if present & (1 << i) == 0 {
                continue;
            }
            let (at, len) = (word(8 + 8 * i) as usize, word(12 + 8 * i) as usize);
            let bytes = at
                .checked_add(len)
                .and_then(|end| r.get(at..end))
                .ok_or_else(|| format!("returned a verdict whose {name} lies outside it"))?;
            let text = std::str::from_utf8(bytes)
                .map_err(|_| format!("returned a verdict whose {name} is not UTF-8"))?;
            *field = Some(text.to_string());
        }
        let [reason, detail, hint] = fields;
        match kind {
            0 => Ok(VerdictRecord::Pass { detail }),
            1 => Ok(VerdictRecord::Defer {
                reason: reason.ok_or("returned a deferral without a reason")?,
                detail: detail.unwrap_or_default(),
                hint,
            }),
            2 => Ok(VerdictRecord::Error {
                message: detail.unwrap_or_else(|| "(no message)".into()),
            }),
            other => Err(format!(
                "returned verdict kind {other}; kinds are 0 pass, 1 defer, 2 error"
            )),
        }
    }
}

/// `params() -> packed schema` (optional).
pub const PARAMS: Signature = Signature {
    name: "params",
    params: &[],
    results: &[I64],
};

fn val(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

fn render(
    params: impl ExactSizeIterator<Item = ValType>,
    results: impl ExactSizeIterator<Item = ValType>,
) -> String {
    let p: Vec<&str> = params.map(|t| val(&t)).collect();
    let r: Vec<&str> = results.map(|t| val(&t)).collect();
    let r = match r.len() {
        0 => "()".to_string(),
        1 => r[0].to_string(),
        _ => format!("({})", r.join(", ")),
    };
    format!("({}) -> {r}", p.join(", "))
}

fn same(ft: &FuncType, sig: &Signature) -> bool {
    render(ft.params(), ft.results())
        == render(sig.params.iter().cloned(), sig.results.iter().cloned())
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => format!("a function {}", render(f.params(), f.results())),
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Global(_) => "a global".into(),
        ExternType::Tag(_) => "a tag".into(),
    }
}

/// Checks a module's imports and exports against the ABI; every problem, in words.
pub fn check(module: &Module) -> Vec<String> {
    let mut problems = Vec::new();
    for import in module.imports() {
        let ty = import.ty();
        let known = (import.module() == HOST_MODULE)
            .then(|| IMPORTS.iter().find(|s| s.name == import.name()))
            .flatten();
        match (known, &ty) {
            (Some(sig), ExternType::Func(f)) if same(f, sig) => {}
            (Some(sig), _) => problems.push(format!(
                "imports `{}.{}` as {}, but the host provides {HOST_MODULE}.{sig}",
                import.module(),
                import.name(),
                describe(&ty)
            )),
            (None, _) => {
                let provided: Vec<String> = IMPORTS.iter().map(|s| s.to_string()).collect();
                problems.push(format!(
                    "imports `{}.{}` ({}), which the host does not provide; a plugin may import only from `{HOST_MODULE}`: {} (no WASI)",
                    import.module(),
                    import.name(),
                    describe(&ty),
                    provided.join(", ")
                ));
            }
        }
    }
    let export = |name: &str| module.exports().find(|e| e.name() == name).map(|e| e.ty());
    match export("memory") {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(other) => problems.push(format!(
            "exports `memory` as {}; it must be the module's own 32-bit linear memory",
            describe(&other)
        )),
        None => {
            problems.push("does not export `memory`; the host passes the context through it".into())
        }
    }
    for (sig, required) in [(&ALLOC, true), (&EVALUATE, true), (&PARAMS, false)] {
        match export(sig.name) {
            Some(ExternType::Func(f)) if same(&f, sig) => {}
            Some(other) => problems.push(format!(
                "exports `{}` as {}; it must be {sig}",
                sig.name,
                describe(&other)
            )),
            None if required => problems.push(format!(
                "has no `{}` export; a plugin must export {sig}{}",
                sig.name,
                if sig.name == "evaluate" {
                    " (with the SDK: `lanekeeper_plugin::export!(evaluate)`)"
                } else {
                    ""
                }
            )),
            None => {}
        }
    }
    problems
}

/// A host function was called with arguments it cannot use.
#[derive(Debug)]
pub struct HostCallError(pub String);

impl fmt::Display for HostCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostCallError {}

fn host_error(msg: String) -> wasmtime::Error {
    wasmtime::Error::new(HostCallError(msg))
}

/// Splits a packed `ptr << 32 | len`.
pub fn unpack(packed: i64) -> (usize, usize) {
    let bits = packed as u64;
    ((bits >> 32) as usize, (bits & 0xffff_ffff) as usize)
}

/// The bytes a packed `ptr << 32 | len` result of a guest points to in its memory `data`
/// (`None` for 0); the error says what is wrong with it.
pub fn output(data: &[u8], packed: i64) -> Result<Option<Vec<u8>>, String> {
    if packed == 0 {
        return Ok(None);
    }
    let (ptr, len) = unpack(packed);
    if len > MAX_GUEST_STRING {
        return Err(format!("returned {len} bytes (at most {MAX_GUEST_STRING})"));
    }
    data.get(ptr..ptr.saturating_add(len))
        .map(|b| Some(b.to_vec()))
        .ok_or_else(|| {
            format!(
                "returned {len} bytes at {ptr:#x}, outside its memory of {} bytes",
                data.len()
            )
        })
}

fn pack(ptr: u32, len: u32) -> i64 {
    ((u64::from(ptr) << 32) | u64::from(len)) as i64
}

fn memory(caller: &mut Caller<'_, StoreData>) -> wasmtime::Result<Memory> {
    if let Some((memory, _)) = caller.data().exports {
        return Ok(memory);
    }
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| host_error("the plugin exports no memory".into()))
}

/// Reads a UTF-8 argument of host function `func` from guest memory.
fn read_str(
    caller: &mut Caller<'_, StoreData>,
    func: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<String> {
    let mem = memory(caller)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > MAX_GUEST_STRING {
        return Err(host_error(format!(
            "`{HOST_MODULE}.{func}` was passed {len} bytes (at most {MAX_GUEST_STRING})"
        )));
    }
    let bytes = mem
        .data(&caller)
        .get(ptr..ptr.saturating_add(len))
        .ok_or_else(|| {
            host_error(format!(
                "`{HOST_MODULE}.{func}` was passed {len} bytes at {ptr:#x}, outside the plugin's memory"
            ))
        })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        host_error(format!(
            "`{HOST_MODULE}.{func}` was passed text that is not UTF-8"
        ))
    })
}

/// Copies `out` into memory from the guest's `alloc`, returning it packed (0 for `None`).
fn write_out(caller: &mut Caller<'_, StoreData>, out: Option<Vec<u8>>) -> wasmtime::Result<i64> {
    let Some(out) = out else { return Ok(0) };
    let len = u32::try_from(out.len()).map_err(|_| host_error("result too large".into()))?;
    let alloc = match &caller.data().exports {
        Some((_, alloc)) => alloc.clone(),
        None => caller
            .get_export(ALLOC.name)
            .and_then(Extern::into_func)
            .ok_or_else(|| host_error("the plugin exports no `alloc`".into()))?
            .typed::<i32, i32>(&caller)?,
    };
    let ptr = alloc.call(&mut *caller, len as i32)? as u32;
    memory(caller)?
        .write(&mut *caller, ptr as usize, &out)
        .map_err(|_| {
            host_error(format!(
                "`alloc({len})` returned {ptr:#x}, which is outside the plugin's memory"
            ))
        })?;
    Ok(pack(ptr, len))
}

/// Runs a host capability, counting its time out of the plugin's deadline.
fn timed<R>(caller: &mut Caller<'_, StoreData>, f: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let r = f();
    caller.data_mut().add_host_time(started.elapsed());
    r
}

/// A lane's state as guests see it (the same fields as Rhai's `lane(name)`), 56 bytes:
/// `u32` presence bits, `u8` last result, `u8` running (0 no, 1 running, 2 starting in this
/// pass, with no pid yet), 2 bytes padding, then six `i64`s:
/// last run, last success (epoch ms), exit code, signal, pid, running since (epoch ms). Bit
/// `i` of the presence bits says whether the `i`-th `i64` is set.
pub fn lane_record(s: &LaneState) -> Vec<u8> {
    let values = [
        s.last_run_at.map(|t| t.as_millisecond()),
        s.last_success_at.map(|t| t.as_millisecond()),
        match s.last_exit {
            Some(ExitInfo::Code(c)) => Some(i64::from(c)),
            _ => None,
        },
        match s.last_exit {
            Some(ExitInfo::Signal(n)) => Some(i64::from(n)),
            _ => None,
        },
        s.running.as_ref().map(|r| i64::from(r.pid)),
        s.running.as_ref().map(|r| r.started_at.as_millisecond()),
    ];
    let present = values
        .iter()
        .enumerate()
        .fold(0u32, |bits, (i, v)| bits | (u32::from(v.is_some()) << i));
    let mut out = Vec::with_capacity(56);
    out.extend_from_slice(&present.to_le_bytes());
    out.push(match s.last_result {
        None => 0,
        Some(RunResult::Success) => 1,
        Some(RunResult::Failure) => 2,
        Some(RunResult::Interrupted) => 3,
        Some(RunResult::Unknown) => 4,
        Some(RunResult::Cancelled) => 5,
    });
    out.push(match (&s.running, s.starting) {
        (Some(_), _) => 1,
        (None, true) => 2,
        (None, false) => 0,
    });
    out.extend_from_slice(&[0, 0]);
    for v in values {
        out.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
    }
    out
}

/// A probe: `u32` flags (1: a 2xx arrived, 2: a status arrived), `u16` status, 2 bytes
/// padding, `f64` latency in ms, then the error text, if any, to the end.
fn probe_record(r: &HttpResult) -> Vec<u8> {
    let flags = u32::from(r.ok()) | (u32::from(r.status.is_some()) << 1);
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&r.status.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&r.latency_ms.to_le_bytes());
    out.extend_from_slice(r.error.as_deref().unwrap_or("").as_bytes());
    out
}

/// A metric reading: `u32` 1 when read (0: not), 4 bytes padding, `f64` value, then why it
/// could not be read, if it could not, to the end.
fn metric_record(r: &Result<f64, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&u32::from(r.is_ok()).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&r.as_ref().copied().unwrap_or(0.0).to_le_bytes());
    if let Err(e) = r {
        out.extend_from_slice(e.as_bytes());
    }
    out
}

/// Defines the host functions. Each goes through [`crate::plugins::host`], exactly as the
/// Rhai ones do, so evidence and the per-pass probe cache behave the same.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreData>> {
    let mut l = Linker::new(engine);
    l.func_wrap(
        HOST_MODULE,
        "lane",
        |mut c: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<i64> {
            let name = read_str(&mut c, "lane", ptr, len)?;
            let out = timed(&mut c, || match host::current() {
                Some((pass, _)) => pass.lane(&name).map(|s| s.as_deref().map(lane_record)),
                None => Ok(None),
            })?;
            write_out(&mut c, out)
        },
    )?;
    l.func_wrap(
        HOST_MODULE,
        "http_get",
        |mut c: Caller<'_, StoreData>,
         ptr: i32,
         len: i32,
         timeout_ms: i64|
         -> wasmtime::Result<i64> {
            let url = read_str(&mut c, "http_get", ptr, len)?;
            let timeout = if timeout_ms < 0 {
                DEFAULT_PROBE_TIMEOUT
            } else {
                Duration::from_millis(timeout_ms as u64)
            };
            let out = timed(&mut c, || match host::current() {
                Some((pass, _)) => pass.http_get(&url, timeout).map(|r| Some(probe_record(&r))),
                None => Ok(None),
            })?;
            write_out(&mut c, out)
        },
    )?;
    l.func_wrap(
        HOST_MODULE,
        "metric",
        |mut c: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<i64> {
            let name = read_str(&mut c, "metric", ptr, len)?;
            let out = timed(&mut c, || match host::current() {
                Some((pass, _)) => pass.metric(&name).map(|r| Some(metric_record(&r))),
                None => Ok(None),
            })?;
            write_out(&mut c, out)
        },
    )?;
    l.func_wrap(
        HOST_MODULE,
        "log",
        |mut c: Caller<'_, StoreData>, level: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let msg = read_str(&mut c, "log", ptr, len)?;
            timed(&mut c, || {
                host::log(if level == 1 { "warn" } else { "info" }, &msg)
            })?;
            Ok(())
        },
    )?;
    l.func_wrap(
        HOST_MODULE,
        "panic_message",
        |mut c: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let msg = read_str(&mut c, "panic_message", ptr, len)?;
            c.data_mut().panic = Some(msg);
            Ok(())
        },
    )?;
    Ok(l)
}
