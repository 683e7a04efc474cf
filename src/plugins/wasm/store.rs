//! What one evaluation's wasmtime store carries: the budgets' bookkeeping (own time, host
//! time, the gate's end), the memory limiter, and the errors they trap with. Kept apart from
//! the engine (which builds stores) and the ABI (whose host calls read them), so neither
//! depends on the other.

use std::fmt;
use std::time::{Duration, Instant};

use wasmtime::{Memory, ResourceLimiter, TypedFunc, UpdateDeadline};

use crate::config::settings::WasmLimits;

/// Largest table a plugin may grow to, in elements.
pub(super) const MAX_TABLE_ELEMENTS: usize = 10_000;

/// Per-evaluation data the host imports and budget callbacks see.
pub struct StoreData {
    pub(super) limiter: MemoryLimiter,
    started: Instant,
    /// Time spent inside host calls, which does not count against the deadline.
    host_time: Duration,
    deadline: Duration,
    /// When the gate's budget (host calls included) ends, for an evaluation within a gate.
    gate_ends: Option<Instant>,
    /// The panic message a guest reported before trapping, if any.
    pub(super) panic: Option<String>,
    /// The instance's `memory` and `alloc`, once known, so host calls need not look them up.
    pub(super) exports: Option<(Memory, TypedFunc<i32, i32>)>,
}

impl StoreData {
    pub(super) fn reset(&mut self, gate_ends: Option<Instant>) {
        self.started = Instant::now();
        self.gate_ends = gate_ends;
        self.host_time = Duration::ZERO;
        self.panic = None;
        self.limiter.refused = None;
    }

    pub(super) fn new(limits: &WasmLimits) -> Self {
        Self {
            limiter: MemoryLimiter {
                max: usize::try_from(limits.max_memory).unwrap_or(usize::MAX),
                refused: None,
            },
            started: Instant::now(),
            host_time: Duration::ZERO,
            deadline: limits.deadline,
            gate_ends: None,
            panic: None,
            exports: None,
        }
    }

    /// Counts a host call's duration out of the plugin's own time.
    pub(super) fn add_host_time(&mut self, d: Duration) {
        self.host_time += d;
    }

    /// The memory size the limiter refused, if it refused one.
    pub(super) fn memory_refused(&self) -> Option<usize> {
        self.limiter.refused
    }

    pub(super) fn check_deadline(&self) -> wasmtime::Result<UpdateDeadline> {
        let own = self.started.elapsed().saturating_sub(self.host_time);
        if own >= self.deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else if self.gate_ends.is_some_and(|at| Instant::now() >= at) {
            // The host reports it (`host::fault`), naming `limits.gate_timeout`.
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    }
}

/// Refuses growth past the configured memory limit with a trap that says so.
pub(super) struct MemoryLimiter {
    max: usize,
    refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.refused = Some(desired);
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired,
                max: self.max,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }
}

/// The plugin's own execution time passed its deadline.
#[derive(Debug)]
pub(super) struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A memory grew past the limit.
#[derive(Debug)]
pub(super) struct MemoryLimitExceeded {
    pub desired: usize,
    pub max: usize,
}

impl fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory of {} bytes requested, limit {}",
            self.desired, self.max
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}
