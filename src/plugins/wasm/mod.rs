//! The WebAssembly runtime: core modules on wasmtime, each evaluation in a budgeted store that
//! starts from the module's initial state.
//!
//! A plugin is compiled once at load (or taken from the on-disk cache) and pre-linked against
//! the host functions (`InstancePre`). An evaluation runs on an instance from the pooling
//! allocator, either new or reused after [`reset`] put it back as it was just after
//! instantiation, so no state survives between evaluations; fuel, an epoch deadline and a
//! memory limiter bound what one evaluation can do. The ABI is in [`abi`] and docs/PLUGINS.md.

pub mod abi;
pub mod cache;
mod context;
pub mod engine;
mod pagemap;
mod reset;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::{
    Extern, Global, Instance, InstancePre, Memory, Module, ModuleExport, Store, Trap, TypedFunc,
    WasmBacktrace,
};

use super::host;
use super::schema::{ParamSchema, ParamSpec};
use super::{
    Gate, GateInput, Plugin, PluginError, PluginErrorKind, PluginInfo, Runtime, Verdict,
    valid_reason,
};
use crate::model::duration;
use cache::ArtifactCache;
use engine::WarmSlot;
pub use engine::WasmEngine;
use reset::{OffsetMap, ResetPlan, Snapshot};
use store::{DeadlineExceeded, MemoryLimitExceeded, StoreData};

/// Live instances kept per plugin for reuse. A pass may evaluate one plugin on up to eight
/// threads at once (`engine::PASS_WORKERS`); each takes a kept instance or a new one, and only
/// this many are kept afterwards, to bound memory (eight in flight plus the engine's 48 warm
/// fit the pool's 64 slots).
const WARM_PER_PLUGIN: usize = 2;

/// The four bytes every WebAssembly binary starts with.
const WASM_MAGIC: &[u8] = b"\0asm";

/// A compiled WASM plugin.
pub struct WasmPlugin {
    inner: Arc<Inner>,
}

struct Inner {
    info: PluginInfo,
    engine: Arc<WasmEngine>,
    pre: InstancePre<StoreData>,
    memory: ModuleExport,
    alloc: ModuleExport,
    evaluate: ModuleExport,
    params: Option<ModuleExport>,
    /// How to reset instances for reuse; `None`: a fresh instance per evaluation.
    reuse: Option<ResetPlan>,
    /// Maps trap offsets back to the plugin file when [`reset::prepare`] rewrote it.
    offsets: OffsetMap,
    /// Reset instances ready for the next evaluation.
    warm: Mutex<Vec<Live>>,
}

/// An instantiated plugin in its own store, with the exports an evaluation uses.
struct Live {
    store: Store<StoreData>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    evaluate: TypedFunc<(i32, i32), i64>,
    /// The state to reset to, for a reusable instance, and the engine place it holds.
    snapshot: Option<(Snapshot, WarmSlot)>,
}

impl WasmPlugin {
    /// Compiles (or loads from `cache`) the module in `bytes`, checks it against the ABI and
    /// reads its declared parameters. The error says what is wrong with the file.
    pub fn load(
        name: &str,
        path: &Path,
        bytes: &[u8],
        engine: &Arc<WasmEngine>,
        cache: Option<&ArtifactCache>,
    ) -> Result<Self, String> {
        identify(bytes)?;
        let prepared = reset::prepare(bytes);
        let module = compile(engine, &prepared.bytes, cache)?;
        let problems = abi::check(&module);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        for mem in module
            .imports()
            .filter_map(|i| i.ty().memory().cloned())
            .chain(module.exports().filter_map(|e| e.ty().memory().cloned()))
        {
            let initial = mem.minimum().saturating_mul(65_536);
            if initial > engine.limits.max_memory {
                return Err(format!(
                    "starts with {} of memory, above limits.wasm.max_memory ({})",
                    size(initial),
                    size(engine.limits.max_memory)
                ));
            }
        }
        let pre = engine
            .linker
            .instantiate_pre(&module)
            .map_err(|e| format!("cannot be linked against the host functions: {e}"))?;
        let export = |name: &str| {
            module
                .get_export_index(name)
                .ok_or_else(|| format!("has no `{name}` export"))
        };
        let mut inner = Inner {
            info: PluginInfo {
                name: name.to_string(),
                runtime: Runtime::Wasm,
                path: path.to_path_buf(),
                schema: ParamSchema::default(),
                hash: crate::model::fingerprint::content_hash(bytes),
            },
            engine: Arc::clone(engine),
            memory: export("memory")?,
            alloc: export(abi::ALLOC.name)?,
            evaluate: export(abi::EVALUATE.name)?,
            params: module.get_export_index(abi::PARAMS.name),
            reuse: match prepared.plan {
                Ok(plan) if engine.pages.is_some() => Some(plan),
                Ok(_) => None,
                Err(why) => {
                    tracing::debug!(plugin = name, "fresh instance per evaluation: {why}");
                    None
                }
            },
            offsets: prepared.offsets,
            warm: Mutex::new(Vec::new()),
            pre,
        };
        if inner.params.is_some() {
            inner.info.schema = inner
                .read_schema()
                .map_err(|e| format!("`params()`: {e}"))?;
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

/// Rejects files that are not core WebAssembly modules, saying what they look like instead.
fn identify(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(WASM_MAGIC) {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
        let hint = if text.trim_start().starts_with("(module") {
            " (it looks like WebAssembly text; compile it to a binary first, e.g. `wasm-tools parse`)"
        } else {
            ""
        };
        return Err(format!(
            "is not a WebAssembly module: it does not start with the `\\0asm` header{hint}"
        ));
    }
    match bytes.get(4..8) {
        Some([1, 0, 0, 0]) => Ok(()),
        Some([_, _, 1, 0]) => Err(
            "is a WebAssembly component; lanekeeper loads core modules (see docs/PLUGINS.md)"
                .into(),
        ),
        _ => Err("is not a WebAssembly module: unknown binary version".into()),
    }
}

fn compile(
    engine: &WasmEngine,
    bytes: &[u8],
    cache: Option<&ArtifactCache>,
) -> Result<Module, String> {
    let key = cache.map(|_| ArtifactCache::key(&engine.engine, bytes));
    if let (Some(cache), Some(key)) = (cache, &key)
        && let Some(module) = cache.load(&engine.engine, key)
    {
        return Ok(module);
    }
    let module = Module::from_binary(&engine.engine, bytes)
        .map_err(|e| format!("is not a valid WebAssembly module: {}", chain(&e)))?;
    if let (Some(cache), Some(key)) = (cache, &key) {
        cache.store(key, &module);
    }
    Ok(module)
}

fn chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// Why a call into the guest produced no usable output.
enum CallError {
    /// It trapped, ran out of a budget or misused a host function.
    Failed(wasmtime::Error),
    /// It returned, but what it returned is not usable.
    Output(String),
}

impl Live {
    /// Writes the context through the guest's `alloc` and calls `evaluate` on it.
    fn evaluate(&mut self, input: &[u8]) -> Result<Option<Vec<u8>>, CallError> {
        let len = i32::try_from(input.len())
            .map_err(|_| CallError::Output("context too large".into()))?;
        let ptr = self
            .alloc
            .call(&mut self.store, len)
            .map_err(CallError::Failed)?;
        self.memory
            .write(&mut self.store, ptr as u32 as usize, input)
            .map_err(|_| {
                CallError::Output(format!(
                    "`alloc({len})` returned {:#x}, outside its memory",
                    ptr as u32
                ))
            })?;
        let packed = self
            .evaluate
            .call(&mut self.store, (ptr, len))
            .map_err(CallError::Failed)?;
        self.output(packed)
    }

    /// Calls an export taking nothing, such as `params`.
    fn call(&mut self, func: &ModuleExport) -> Result<Option<Vec<u8>>, CallError> {
        let packed = self
            .instance
            .get_module_export(&mut self.store, func)
            .and_then(Extern::into_func)
            .ok_or_else(|| CallError::Output("lost an export".into()))?
            .typed::<(), i64>(&self.store)
            .map_err(CallError::Failed)?
            .call(&mut self.store, ())
            .map_err(CallError::Failed)?;
        self.output(packed)
    }

    /// The bytes a packed `ptr << 32 | len` result points to (`None` for 0).
    fn output(&self, packed: i64) -> Result<Option<Vec<u8>>, CallError> {
        abi::output(self.memory.data(&self.store), packed).map_err(CallError::Output)
    }
}

impl Inner {
    /// Instantiates the module in a new store. A `reusable` instance of a module with a
    /// reset plan also records its initial state, if the engine has a place for it.
    fn instantiate(&self, reusable: bool) -> Result<Live, PluginError> {
        let mut store = self.engine.store();
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(self.fail(CallError::Failed(e), &store)),
        };
        let exports = (|| {
            let memory = instance
                .get_module_export(&mut store, &self.memory)
                .and_then(Extern::into_memory)
                .ok_or_else(|| CallError::Output("exports no memory".into()))?;
            let mut func = |e: &ModuleExport| {
                instance
                    .get_module_export(&mut store, e)
                    .and_then(Extern::into_func)
                    .ok_or_else(|| CallError::Output("lost an export".into()))
            };
            let (alloc, evaluate) = (func(&self.alloc)?, func(&self.evaluate)?);
            Ok((
                memory,
                alloc.typed(&store).map_err(CallError::Failed)?,
                evaluate.typed(&store).map_err(CallError::Failed)?,
            ))
        })();
        let (memory, alloc, evaluate) = exports.map_err(|e| self.fail(e, &store))?;
        store.data_mut().exports = Some((memory, alloc.clone()));
        let snapshot = match (&self.reuse, &self.engine.pages) {
            (Some(plan), Some(pages)) if reusable => self.engine.warm_slot().and_then(|slot| {
                let globals: Option<Vec<Global>> = plan
                    .globals
                    .iter()
                    .map(|g| instance.get_global(&mut store, g))
                    .collect();
                match Snapshot::take(&mut store, memory, &globals?, pages) {
                    Ok(snapshot) => Some((snapshot, slot)),
                    Err(why) => {
                        tracing::debug!(plugin = self.info.name, "instance not reused: {why}");
                        None
                    }
                }
            }),
            _ => None,
        };
        Ok(Live {
            store,
            instance,
            memory,
            alloc,
            evaluate,
            snapshot,
        })
    }

    /// A reset instance from the warm list, armed for an evaluation, or a new one.
    fn live(&self) -> Result<Live, PluginError> {
        if self.reuse.is_some() {
            let warm = self
                .warm
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            if let Some(mut live) = warm {
                self.engine.arm(&mut live.store);
                return Ok(live);
            }
        }
        let mut live = self.instantiate(true)?;
        // Taking the snapshot is the host's time, not the plugin's.
        self.engine.arm(&mut live.store);
        Ok(live)
    }

    /// Resets an instance whose evaluation completed and keeps it for the next one; an
    /// instance that cannot be reset (or is not reusable) is dropped.
    fn give_back(&self, mut live: Live) {
        let (Some((snapshot, _)), Some(pages)) = (&live.snapshot, &self.engine.pages) else {
            return;
        };
        if let Err(why) = snapshot.restore(&mut live.store, live.memory, pages) {
            tracing::debug!(plugin = self.info.name, "instance not reused: {why}");
            return;
        }
        let mut warm = self.warm.lock().unwrap_or_else(PoisonError::into_inner);
        if warm.len() < WARM_PER_PLUGIN {
            warm.push(live);
        }
    }

    /// Evaluates `ctx` under the budgets; every failure becomes a [`PluginError`]. An instance
    /// that failed in any way is dropped, never reused.
    fn evaluate(&self, ctx: &[u8]) -> Result<Option<Vec<u8>>, PluginError> {
        let _running = self.engine.running();
        let mut live = self.live()?;
        match live.evaluate(ctx) {
            Ok(out) => {
                self.give_back(live);
                Ok(out)
            }
            Err(e) => Err(self.fail(e, &live.store)),
        }
    }

    fn fail(&self, e: CallError, store: &Store<StoreData>) -> PluginError {
        match e {
            CallError::Output(what) => self.bad(what),
            CallError::Failed(e) => self.failure(&e, store),
        }
    }

    fn bad(&self, what: String) -> PluginError {
        PluginError {
            kind: PluginErrorKind::BadVerdict,
            message: format!("{} {what}", self.at(None)),
        }
    }

    /// Names the precise cause of a failed call. A host fault (a cap reached, the gate's
    /// budget spent) is the cause whenever there is one: the trap came from it.
    fn failure(&self, e: &wasmtime::Error, store: &Store<StoreData>) -> PluginError {
        if let Some(fault) = host::fault() {
            return fault.into_error(&self.at(e.downcast_ref::<WasmBacktrace>()));
        }
        let limits = &self.engine.limits;
        let (kind, cause) =
            if e.is::<DeadlineExceeded>() || e.downcast_ref() == Some(&Trap::Interrupt) {
                (
                    PluginErrorKind::Deadline,
                    format!(
                        "missed its deadline of {}",
                        duration::format(limits.deadline)
                    ),
                )
            } else if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
                (
                    PluginErrorKind::Limit,
                    format!(
                        "exceeded its memory limit of {} (tried to grow to {})",
                        size(m.max as u64),
                        size(m.desired as u64)
                    ),
                )
            } else if let Some(desired) = store.data().memory_refused() {
                (
                    PluginErrorKind::Limit,
                    format!(
                        "exceeded its memory limit of {} (tried to grow to {})",
                        size(limits.max_memory),
                        size(desired as u64)
                    ),
                )
            } else if let Some(trap) = e.downcast_ref::<Trap>() {
                match trap {
                    Trap::OutOfFuel => (
                        PluginErrorKind::Budget,
                        format!("ran out of fuel ({} units)", limits.fuel),
                    ),
                    Trap::StackOverflow => (
                        PluginErrorKind::Limit,
                        "exceeded its stack limit (recursion too deep)".to_string(),
                    ),
                    other => match &store.data().panic {
                        Some(msg) => (PluginErrorKind::Thrown, format!("panicked: {msg}")),
                        None => {
                            let what = other.to_string();
                            let what = what.strip_prefix("wasm trap: ").unwrap_or(&what);
                            (PluginErrorKind::Thrown, format!("trapped: {what}"))
                        }
                    },
                }
            } else if let Some(h) = e.downcast_ref::<abi::HostCallError>() {
                (
                    PluginErrorKind::Thrown,
                    format!("misused a host function: {h}"),
                )
            } else {
                (PluginErrorKind::Thrown, format!("failed: {}", chain(e)))
            };
        PluginError {
            kind,
            message: format!("{} {cause}", self.at(e.downcast_ref::<WasmBacktrace>())),
        }
    }

    /// `plugin `name` (path[, at 0xOFFSET in `func`])`: the innermost wasm frame, if known.
    fn at(&self, trace: Option<&WasmBacktrace>) -> String {
        let frame = trace.and_then(|t| t.frames().first());
        let place = match frame {
            Some(f) => {
                let offset = f
                    .module_offset()
                    .map(|o| format!(", at {:#x}", self.offsets.original(o)))
                    .unwrap_or_default();
                let func = match f.func_name() {
                    Some(n) => format!(" in `{n}`"),
                    None => format!(" in function {}", f.func_index()),
                };
                format!("{offset}{func}")
            }
            None => String::new(),
        };
        format!(
            "plugin `{}` ({}{place})",
            self.info.name,
            self.info.path.display()
        )
    }

    /// Calls `params()` once and parses `{"name": "type", "other": "type?"}`.
    fn read_schema(&self) -> Result<ParamSchema, String> {
        let Some(func) = &self.params else {
            return Ok(ParamSchema::default());
        };
        let _running = self.engine.running();
        let mut live = self.instantiate(false).map_err(|e| e.message)?;
        let out = live
            .call(func)
            .map_err(|e| self.fail(e, &live.store).message)?;
        let Some(out) = out else {
            return Ok(ParamSchema::default());
        };
        let map: BTreeMap<String, String> = serde_json::from_slice(&out).map_err(|e| {
            format!("must return a JSON object such as {{\"lane\":\"lane\",\"max_age\":\"duration?\"}}: {e}")
        })?;
        let mut params = BTreeMap::new();
        for (k, v) in map {
            let spec: ParamSpec = v.parse().map_err(|e| format!("`{k}`: {e}"))?;
            params.insert(k, spec);
        }
        Ok(ParamSchema {
            params: Some(params),
        })
    }

    /// Reads the verdict record `evaluate` returned (see [`abi::VerdictRecord`]).
    fn verdict(&self, out: Option<Vec<u8>>) -> Result<Verdict, PluginError> {
        verdict(&self.at(None), out.as_deref())
    }
}

/// The verdict in a record `evaluate` returned (`None`: it returned 0, a pass); `plugin` names
/// the plugin in errors. Public so the fuzz targets decode records exactly as gates do.
pub fn verdict(plugin: &str, out: Option<&[u8]>) -> Result<Verdict, PluginError> {
    let bad = |what: String| PluginError {
        kind: PluginErrorKind::BadVerdict,
        message: format!("{plugin} {what}"),
    };
    let Some(out) = out else {
        return Ok(Verdict::Pass { detail: None });
    };
    let record = abi::VerdictRecord::read(out).map_err(bad)?;
    match record {
        abi::VerdictRecord::Pass { detail } => Ok(Verdict::Pass { detail }),
        abi::VerdictRecord::Defer {
            reason,
            detail,
            hint,
        } if valid_reason(&reason) => Ok(Verdict::Defer {
            reason,
            detail,
            hint,
        }),
        abi::VerdictRecord::Defer { reason, .. } => Err(bad(format!(
            "returned the reason `{reason}`, which is not kebab-case (a-z, 0-9, -)"
        ))),
        abi::VerdictRecord::Error { message } => Err(PluginError {
            kind: PluginErrorKind::Thrown,
            message: format!("{plugin} failed: {message}"),
        }),
    }
}

impl Plugin for WasmPlugin {
    fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    fn bind(&self, params: &serde_json::Value) -> Arc<dyn Gate> {
        Arc::new(WasmGate {
            inner: Arc::clone(&self.inner),
            params: params.to_string(),
        })
    }
}

/// A WASM plugin bound to one lane's parameters (kept as JSON, ready to splice into the context).
struct WasmGate {
    inner: Arc<Inner>,
    params: String,
}

impl Gate for WasmGate {
    fn evaluate(&self, input: &GateInput<'_>) -> Result<Verdict, PluginError> {
        let mut ctx = Vec::with_capacity(context::HEADER + 160 + self.params.len());
        context::write(input, &self.params, &mut ctx);
        let out = self.inner.evaluate(&ctx)?;
        if let Some(fault) = host::fault() {
            return Err(fault.into_error(&self.inner.at(None)));
        }
        let verdict = self.inner.verdict(out)?;
        host::check_verdict(&verdict).map_err(|f| f.into_error(&self.inner.at(None)))?;
        Ok(verdict)
    }
}
