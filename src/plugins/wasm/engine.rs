//! The wasmtime engine shared by one registry's WASM plugins: configuration, per-evaluation
//! stores with their budgets, and the epoch ticker that turns epochs into a wall-clock deadline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig, Store,
};

use super::pagemap::PageMap;
use super::store::{MAX_TABLE_ELEMENTS, StoreData};
use crate::config::settings::WasmLimits;

/// How often the engine's epoch advances while an evaluation runs: the deadline's resolution.
const TICK: Duration = Duration::from_millis(5);

/// The ticker parks after this long without an evaluation, so an idle daemon never wakes for
/// it, while a pass of many evaluations costs no wake-up each.
const TICKER_IDLE: Duration = Duration::from_secs(1);

// wasmtime's pool resets a freed memory slot by unmapping it (its default). Its `PAGEMAP_SCAN`
// reset (`pagemap_scan` with `linear_memory_keep_resident`) is faster, but in wasmtime 48 it
// skips written pages that were swapped out, which the slot's next instance would then read
// (bytecodealliance/wasmtime pull request #14357, open). Slots are rarely freed now that
// instances are reused, so the default costs only the fallback paths.

/// Bytes of each pooled table kept mapped when its slot is freed, reset by `memset` (which
/// reaches swapped-out pages too); the rest is unmapped. Memories keep none: pages kept mapped
/// stay private, and every reset of a reused instance would copy them back.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Pooled instance slots. Each reserves address space (not memory) up front.
const POOL_SLOTS: u32 = 64;

/// Instances kept alive for reuse, engine-wide; the other slots stay free for fresh ones.
const MAX_WARM: usize = 48;

/// Largest wasm stack, in bytes; deeper recursion traps with a stack overflow.
const MAX_WASM_STACK: usize = 512 * 1024;

/// One engine per registry: compiled modules, the host imports and the budgets.
pub struct WasmEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<StoreData>,
    pub(super) limits: WasmLimits,
    /// Present when instances can be reset for reuse (the kernel reports written pages).
    pub(super) pages: Option<PageMap>,
    warm: Arc<AtomicUsize>,
    ticker: Arc<Ticker>,
}

impl WasmEngine {
    /// Builds an engine enforcing `limits`.
    pub fn new(limits: &WasmLimits) -> Result<Self, String> {
        // The pool admits any 32-bit memory; the per-store limiter enforces `max_memory`, so a
        // module that starts too big is reported as such rather than failing to compile.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_SLOTS)
            .total_memories(POOL_SLOTS)
            .total_tables(POOL_SLOTS)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(usize::try_from(1u64 << 32).unwrap_or(usize::MAX))
            .table_keep_resident(TABLE_KEEP_RESIDENT);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot start the WASM engine: {e}"))?;
        let linker = super::abi::linker(&engine)
            .map_err(|e| format!("cannot define the WASM host functions: {e}"))?;
        let ticker = Ticker::spawn(&engine)?;
        Ok(Self {
            engine,
            linker,
            limits: *limits,
            pages: limits.reuse.then(PageMap::open).flatten(),
            warm: Arc::new(AtomicUsize::new(0)),
            ticker,
        })
    }

    /// A new store with the memory limit and deadline callback installed; [`Self::arm`] it
    /// before each evaluation.
    pub(super) fn store(&self) -> Store<StoreData> {
        let mut store = Store::new(&self.engine, StoreData::new(&self.limits));
        store.limiter(|d| &mut d.limiter);
        store.epoch_deadline_callback(|ctx| ctx.data().check_deadline());
        self.arm(&mut store);
        store
    }

    /// Gives a store a full budget for one evaluation: fuel, deadline, and no leftovers from
    /// a previous one (panic message, host time, refused growth).
    pub(super) fn arm(&self, store: &mut Store<StoreData>) {
        // Only fails when fuel is not enabled, and it always is.
        let _ = store.set_fuel(self.limits.fuel);
        store.set_epoch_deadline(1);
        store.data_mut().reset(crate::plugins::host::timing().0);
    }

    /// A place for one more instance kept alive for reuse, if the engine has one left.
    pub(super) fn warm_slot(&self) -> Option<WarmSlot> {
        self.warm
            .fetch_update(SeqCst, SeqCst, |n| (n < MAX_WARM).then_some(n + 1))
            .ok()
            .map(|_| WarmSlot(Arc::clone(&self.warm)))
    }

    /// Keeps the epoch ticking until the guard drops; the ticker sleeps while nothing runs, so
    /// an idle daemon does not wake for it.
    pub(super) fn running(&self) -> Running<'_> {
        let t = &*self.ticker;
        t.active.fetch_add(1, SeqCst);
        if t.parked.load(SeqCst) {
            let _guard = t.lock();
            t.wake.notify_one();
        }
        Running(t)
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.ticker.stopped.store(true, SeqCst);
        let _guard = self.ticker.lock();
        self.ticker.wake.notify_one();
    }
}

/// Holds one of the engine's [`MAX_WARM`] places for a reusable instance until dropped.
pub(super) struct WarmSlot(Arc<AtomicUsize>);

impl Drop for WarmSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Advances the engine epoch every [`TICK`] while evaluations run; parks when idle.
///
/// Evaluations only bump `active`, and take the lock to wake the thread only when it is
/// parked. The thread publishes `parked` before re-checking `active` under the lock, so either
/// it sees the new evaluation or the evaluation sees it parked (both sides use `SeqCst`).
struct Ticker {
    active: AtomicUsize,
    parked: AtomicBool,
    stopped: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Ticker {
    fn spawn(engine: &Engine) -> Result<Arc<Self>, String> {
        let ticker = Arc::new(Ticker {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let weak = engine.weak();
        let t = Arc::clone(&ticker);
        std::thread::Builder::new()
            .name("lanekeeper-wasm-epoch".into())
            .spawn(move || {
                let mut last_busy = Instant::now() - TICKER_IDLE;
                loop {
                    if t.active.load(SeqCst) > 0 {
                        last_busy = Instant::now();
                    } else if last_busy.elapsed() >= TICKER_IDLE {
                        let mut guard = t.lock();
                        t.parked.store(true, SeqCst);
                        while t.active.load(SeqCst) == 0 && !t.stopped.load(SeqCst) {
                            guard = t.wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
                        }
                        t.parked.store(false, SeqCst);
                        drop(guard);
                        last_busy = Instant::now();
                    }
                    if t.stopped.load(SeqCst) {
                        return;
                    }
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| format!("cannot start the WASM epoch thread: {e}"))?;
        Ok(ticker)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An evaluation in progress (see [`WasmEngine::running`]).
pub(super) struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, SeqCst);
    }
}
