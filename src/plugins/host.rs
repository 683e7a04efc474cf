//! Host capabilities for plugins: lane states, HTTP probes, metric reads and logging.
//!
//! A [`PassHost`] lives for one evaluation pass. It caches every probe and metric read, so lanes
//! probing the same URL in one pass cost one request (lanes asking while it is in flight wait
//! for it), and it records what each gate observed as evidence for the decision. Runtimes reach
//! it through [`observe`], which scopes a session to one gate evaluation on the current thread;
//! that keeps the host functions free of plumbing.
//!
//! A session also enforces what a plugin must not escape: its evidence caps and the gate's
//! wall-clock budget, host calls included. Past either, every host call fails at once and the
//! session keeps a [`HostFault`] that the runtime reports as the gate's error, whatever the
//! plugin did with the failed call.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::{PluginError, PluginErrorKind, Verdict};
use crate::config::settings::{
    DEFAULT_GATE_TIMEOUT, EvidenceLimits, MetricCatalog, MetricSource, format_size,
};
use crate::model::duration;
use crate::model::grants::Grants;
use crate::model::lane_state::{LaneState, LaneStates};
use crate::model::observer::{HttpResult, Observer};

pub use crate::model::decision::Observation;

impl Observation {
    /// About the size of its JSON, counted against `limits.evidence.max_bytes`.
    fn weight(&self) -> usize {
        const FIELDS: usize = 64;
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        FIELDS
            + match self {
                Observation::Http { url, error, .. } => url.len() + text(error),
                Observation::Metric {
                    name,
                    source,
                    error,
                    ..
                } => name.len() + source.len() + text(error),
                Observation::Lane { lane, .. } => lane.len() + 64,
                Observation::Log { level, message } => level.len() + message.len(),
            }
    }
}

/// What a gate evaluation may use: its wall-clock budget and its evidence caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    /// Wall clock per gate evaluation, host calls included (`limits.gate_timeout`).
    pub timeout: Duration,
    /// `limits.evidence`.
    pub evidence: EvidenceLimits,
}

impl Default for GateLimits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_GATE_TIMEOUT,
            evidence: EvidenceLimits::default(),
        }
    }
}

/// Why the host ended a gate evaluation: a cap reached or its time budget spent. The runtime
/// reports it as the gate's error, prefixed with the plugin and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFault {
    /// `Limit` for a cap, `Deadline` for the budget.
    pub kind: PluginErrorKind,
    /// The cause, naming the setting.
    pub cause: String,
}

impl HostFault {
    fn over_budget(timeout: Duration) -> Self {
        Self {
            kind: PluginErrorKind::Deadline,
            cause: format!(
                "ran past its gate budget of {} (limits.gate_timeout), host calls included",
                duration::format(timeout)
            ),
        }
    }

    fn cap(cause: String) -> Self {
        Self {
            kind: PluginErrorKind::Limit,
            cause,
        }
    }

    /// The plugin error, `at` naming the plugin and the place.
    pub fn into_error(self, at: &str) -> PluginError {
        PluginError {
            kind: self.kind,
            message: format!("{at} {}", self.cause),
        }
    }
}

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cause)
    }
}

impl std::error::Error for HostFault {}

/// One observation per key and pass: the first asker fetches it, later ones (also those asking
/// while it is in flight) get the same value.
struct Flights<T> {
    map: Mutex<HashMap<String, Arc<Flight<T>>>>,
}

struct Flight<T> {
    value: Mutex<Landing<T>>,
    landed: Condvar,
}

enum Landing<T> {
    InFlight,
    Landed(T),
    /// The fetch panicked; waiters stop waiting.
    Lost,
}

/// Marks a flight lost if its fetch unwinds, so nobody waits for it forever.
struct Pilot<'a, T>(&'a Flight<T>);

impl<T> Drop for Pilot<'_, T> {
    fn drop(&mut self) {
        let mut v = lock(&self.0.value);
        if matches!(*v, Landing::InFlight) {
            *v = Landing::Lost;
            self.0.landed.notify_all();
        }
    }
}

impl<T: Clone> Flights<T> {
    fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key` and whether another asker fetched it; `None` if it is not there by
    /// `until` (or its fetch failed).
    fn get(
        &self,
        key: &str,
        until: Option<Instant>,
        fetch: impl FnOnce() -> T,
    ) -> Option<(T, bool)> {
        let (flight, first) = {
            let mut map = lock(&self.map);
            match map.get(key) {
                Some(f) => (Arc::clone(f), false),
                None => {
                    let f = Arc::new(Flight {
                        value: Mutex::new(Landing::InFlight),
                        landed: Condvar::new(),
                    });
                    map.insert(key.to_string(), Arc::clone(&f));
                    (f, true)
                }
            }
        };
        if first {
            let pilot = Pilot(&flight);
            let value = fetch();
            *lock(&flight.value) = Landing::Landed(value.clone());
            flight.landed.notify_all();
            drop(pilot);
            return Some((value, false));
        }
        let mut v = lock(&flight.value);
        loop {
            match &*v {
                Landing::Landed(value) => return Some((value.clone(), true)),
                Landing::Lost => return None,
                Landing::InFlight => {}
            }
            v = match until {
                None => flight
                    .landed
                    .wait(v)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    flight
                        .landed
                        .wait_timeout(v, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// Shared resources of one evaluation pass.
pub struct PassHost {
    now: Timestamp,
    states: Arc<LaneStates>,
    observer: Arc<dyn Observer>,
    metrics: Arc<MetricCatalog>,
    http_cache: Flights<HttpResult>,
    metric_cache: Flights<Result<f64, String>>,
    lane_names: OnceLock<String>,
    limits: GateLimits,
    /// Lanes that this pass dispatches, decided earlier in it: later lanes see them running.
    starting: Mutex<HashSet<String>>,
}

impl PassHost {
    /// A pass at `now` over `states`, observing the world through `observer`.
    pub fn new(
        now: Timestamp,
        states: Arc<LaneStates>,
        observer: Arc<dyn Observer>,
        metrics: Arc<MetricCatalog>,
    ) -> Self {
        Self {
            now,
            states,
            observer,
            metrics,
            http_cache: Flights::new(),
            metric_cache: Flights::new(),
            lane_names: OnceLock::new(),
            limits: GateLimits::default(),
            starting: Mutex::new(HashSet::new()),
        }
    }

    /// The same host with `limits` for every gate of the pass.
    pub fn with_limits(mut self, limits: GateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The budget and caps of each gate evaluation in this pass.
    pub fn limits(&self) -> &GateLimits {
        &self.limits
    }

    /// Every lane's name as a JSON list, built once per pass (each WASM context carries it).
    pub fn lane_names_json(&self) -> &str {
        self.lane_names.get_or_init(|| {
            let names: Vec<&String> = self.states.keys().collect();
            serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
        })
    }

    /// The instant this pass evaluates at.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Every lane's state as of this pass.
    pub fn states(&self) -> &Arc<LaneStates> {
        &self.states
    }

    /// Counts `lane` as running for the rest of the pass: it is dispatched once the pass is
    /// decided, so a later contention check must not let a peer start beside it.
    pub fn mark_starting(&self, lane: &str) {
        lock(&self.starting).insert(lane.to_string());
    }

    /// Lanes running now, or starting in this pass: the built-in `lanes.running`.
    pub fn lanes_running(&self) -> usize {
        let starting = lock(&self.starting);
        let running = self
            .states
            .iter()
            .filter(|(name, s)| s.is_running() && !starting.contains(*name))
            .count();
        running + starting.len()
    }

    /// Whether any earlier decision of this pass dispatches a lane.
    pub fn any_starting(&self) -> bool {
        !lock(&self.starting).is_empty()
    }

    /// Whether an earlier decision of this pass dispatches `lane`.
    pub fn is_starting(&self, lane: &str) -> bool {
        lock(&self.starting).contains(lane)
    }

    /// A lane's state as this pass sees it: as recorded, plus `starting` if an earlier lane's
    /// decision in this pass dispatches it.
    pub fn state(&self, name: &str) -> Option<Cow<'_, LaneState>> {
        let state = self.states.get(name)?;
        if lock(&self.starting).contains(name) {
            let mut s = state.clone();
            s.starting = true;
            Some(Cow::Owned(s))
        } else {
            Some(Cow::Borrowed(state))
        }
    }

    /// A lane's state, recorded as evidence.
    pub fn lane(&self, name: &str) -> Result<Option<Cow<'_, LaneState>>, HostFault> {
        let state = quick_capability(|| self.state(name))?;
        let s = state.as_deref();
        record(Observation::Lane {
            lane: name.to_string(),
            running: s.is_some_and(LaneState::is_running),
            pid: s.and_then(|s| s.running.as_ref().map(|r| r.pid)),
            starting: s.is_some_and(|s| s.starting),
            last_success_at: s.and_then(|s| s.last_success_at),
            last_run_at: s.and_then(|s| s.last_run_at),
        })?;
        Ok(state)
    }

    /// GETs `url` once per pass; later calls are answered from the cache, and calls made while
    /// it is in flight wait for it. Within a gate, `timeout` is cut to what is left of the
    /// gate's budget.
    pub fn http_get(&self, url: &str, timeout: Duration) -> Result<HttpResult, HostFault> {
        granted(|g| {
            g.allow_http(url).err().map(|denied| {
                format!(
                    "{denied}; grant it on this gate with `allow: {{ http: [\"{}\"] }}`, or to the plugin in lanekeeper.yaml (plugins.<name>.allow)",
                    denied.target
                )
            })
        })?;
        let (result, was_cached) = capability(|left| {
            let timeout = left.map_or(timeout, |left| timeout.min(left));
            let asked = Instant::now();
            let until = left.map(|left| asked + left);
            self.http_cache
                .get(url, until, || self.observer.http_get(url, timeout))
                .unwrap_or_else(|| {
                    let waited = asked.elapsed();
                    (
                        HttpResult {
                            status: None,
                            latency_ms: (waited.as_secs_f64() * 10_000.0).round() / 10.0,
                            error: Some(format!(
                                "no answer after {}: another lane's probe of this URL was still waiting",
                                duration::format(waited)
                            )),
                        },
                        true,
                    )
                })
        })?;
        record(Observation::Http {
            url: url.to_string(),
            status: result.status,
            latency_ms: result.latency_ms,
            error: result.error.clone(),
            cached: was_cached,
        })?;
        Ok(result)
    }

    /// Reads a named metric once per pass. The inner `Err` says why it could not be read.
    pub fn metric(&self, name: &str) -> Result<Result<f64, String>, HostFault> {
        granted(|g| {
            (!g.allow_metric(name)).then(|| {
                format!(
                    "metric {name} not granted; grant it on this gate with `allow: {{ metrics: [{name}] }}`, or to the plugin in lanekeeper.yaml (plugins.<name>.allow)"
                )
            })
        })?;
        let source = self.metrics.resolve(name);
        let (value, was_cached) = capability(|left| match &source {
            // Counted, not read: the pass's states are the home's runs.
            Some(MetricSource::LanesRunning) => (Ok(self.lanes_running() as f64), false),
            Some(src) => {
                let until = left.map(|left| Instant::now() + left);
                let src = clamp(src, left);
                self.metric_cache
                    .get(name, until, || self.observer.metric(&src))
                    .unwrap_or_else(|| {
                        (
                            Err("the gate's time ran out waiting for another lane's read".into()),
                            true,
                        )
                    })
            }
            None => (
                Err(format!(
                    "unknown metric `{name}`; define it under `metrics:` in lanekeeper.yaml"
                )),
                false,
            ),
        })?;
        record(Observation::Metric {
            name: name.to_string(),
            source: source.map(|s| s.to_string()).unwrap_or_default(),
            value: value.as_ref().ok().copied(),
            error: value.as_ref().err().cloned(),
            cached: was_cached,
        })?;
        Ok(value)
    }

    /// Whether `name` names a metric this host can read.
    pub fn knows_metric(&self, name: &str) -> bool {
        self.metrics.resolve(name).is_some()
    }
}

/// A poisoned cache only means another gate panicked mid-insert; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Prometheus scrape may take no longer than the gate has left.
fn clamp(src: &MetricSource, left: Option<Duration>) -> MetricSource {
    match (src, left) {
        (
            MetricSource::Prometheus {
                url,
                series,
                timeout,
            },
            Some(left),
        ) => MetricSource::Prometheus {
            url: url.clone(),
            series: series.clone(),
            timeout: (*timeout).min(left),
        },
        _ => src.clone(),
    }
}

struct Session {
    pass: Arc<PassHost>,
    lane: String,
    evidence: Vec<Observation>,
    /// The evidence's weight so far.
    bytes: usize,
    /// When the gate's budget is spent.
    ends: Instant,
    /// Time spent in host calls, which runtimes discount from the plugin's own deadline.
    host_time: Duration,
    fault: Option<HostFault>,
    /// What the gate may reach; `None` outside the engine (tools, tests): everything.
    grants: Option<Arc<Grants>>,
}

impl Session {
    fn fail(&mut self, fault: HostFault) -> HostFault {
        FAULTED.set(true);
        self.fault.get_or_insert(fault).clone()
    }
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
    /// Whether the current session has a fault: read on every Rhai operation, so kept apart.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

/// Runs one gate evaluation with `pass` as the current host, returning what it observed and
/// how long it took (timing is this edge's, so the engine reads no clock). The gate may reach
/// only what `grants` allows.
pub fn observe_granted<R>(
    pass: &Arc<PassHost>,
    lane: &str,
    grants: &Arc<Grants>,
    f: impl FnOnce() -> R,
) -> (R, Vec<Observation>, Duration) {
    let started = Instant::now();
    let (out, evidence) = session(pass, lane, Some(Arc::clone(grants)), f);
    (out, evidence, started.elapsed())
}

/// Runs one evaluation with `pass` as the current host and no grant checks: for tools and
/// tests that evaluate a plugin outside a lane.
pub fn observe<R>(
    pass: &Arc<PassHost>,
    lane: &str,
    f: impl FnOnce() -> R,
) -> (R, Vec<Observation>) {
    session(pass, lane, None, f)
}

fn session<R>(
    pass: &Arc<PassHost>,
    lane: &str,
    grants: Option<Arc<Grants>>,
    f: impl FnOnce() -> R,
) -> (R, Vec<Observation>) {
    let previous = SESSION.with(|s| {
        s.borrow_mut().replace(Session {
            pass: Arc::clone(pass),
            lane: lane.to_string(),
            evidence: Vec::new(),
            bytes: 0,
            ends: Instant::now() + pass.limits.timeout,
            host_time: Duration::ZERO,
            fault: None,
            grants,
        })
    });
    let was_faulted = FAULTED.replace(false);
    let out = f();
    let session = SESSION.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous));
    FAULTED.set(was_faulted);
    (out, session.map(|s| s.evidence).unwrap_or_default())
}

/// The pass and lane of the evaluation running on this thread, if any.
pub fn current() -> Option<(Arc<PassHost>, String)> {
    SESSION.with(|s| {
        s.borrow()
            .as_ref()
            .map(|s| (Arc::clone(&s.pass), s.lane.clone()))
    })
}

/// Refuses a capability the current gate is not granted: the gate faults with a `denied`
/// plugin error that names what was asked and how to grant it.
fn granted(denied: impl FnOnce(&Grants) -> Option<String>) -> Result<(), HostFault> {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let Some(s) = s.as_mut() else { return Ok(()) };
        let Some(grants) = &s.grants else {
            return Ok(());
        };
        match denied(grants) {
            None => Ok(()),
            Some(cause) => Err(s.fail(HostFault {
                kind: PluginErrorKind::Denied,
                cause,
            })),
        }
    })
}

/// Runs one host capability for the current gate, handing it what is left of the gate's
/// budget. Refused at once after a fault or once the budget is spent; its time is counted as
/// host time. Outside a gate it just runs.
fn capability<R>(f: impl FnOnce(Option<Duration>) -> R) -> Result<R, HostFault> {
    let left = SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let Some(s) = s.as_mut() else {
            return Ok(None);
        };
        if let Some(fault) = &s.fault {
            return Err(fault.clone());
        }
        let left = s.ends.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(s.fail(HostFault::over_budget(s.pass.limits.timeout)));
        }
        Ok(Some(left))
    })?;
    let started = Instant::now();
    let out = f(left);
    SESSION.with(|s| {
        if let Some(s) = s.borrow_mut().as_mut() {
            s.host_time += started.elapsed();
        }
    });
    Ok(out)
}

/// A host capability that cannot wait (a lane read, a log line): refused after a fault, with
/// no clock read. The evidence caps bound how often a plugin can call it, and the runtimes
/// check the gate's budget while the plugin runs.
fn quick_capability<R>(f: impl FnOnce() -> R) -> Result<R, HostFault> {
    if FAULTED.get()
        && let Some(fault) = SESSION.with(|s| s.borrow().as_ref().and_then(|s| s.fault.clone()))
    {
        return Err(fault);
    }
    Ok(f())
}

/// Adds an observation to the current evaluation's evidence (no-op outside one). Past a cap it
/// is dropped and the evaluation faults: nothing more is kept.
pub fn record(obs: Observation) -> Result<(), HostFault> {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let Some(s) = s.as_mut() else {
            return Ok(());
        };
        if let Some(fault) = &s.fault {
            return Err(fault.clone());
        }
        let caps = s.pass.limits.evidence;
        if s.evidence.len() >= caps.max_entries {
            return Err(s.fail(HostFault::cap(format!(
                "evidence over {} entries (limits.evidence.max_entries)",
                caps.max_entries
            ))));
        }
        let bytes = s.bytes + obs.weight();
        if bytes > caps.max_bytes {
            return Err(s.fail(HostFault::cap(format!(
                "evidence over {} (limits.evidence.max_bytes)",
                format_size(caps.max_bytes as u64)
            ))));
        }
        s.bytes = bytes;
        s.evidence.push(obs);
        Ok(())
    })
}

/// Logs a plugin message to tracing and to the evidence; only what fits in the evidence caps
/// reaches the log, so a plugin cannot flood it either.
pub fn log(level: &str, message: &str) -> Result<(), HostFault> {
    quick_capability(|| ())?;
    record(Observation::Log {
        level: level.to_string(),
        message: message.to_string(),
    })?;
    let lane = current().map(|(_, l)| l).unwrap_or_default();
    if level == "warn" {
        tracing::warn!(lane = %lane, "{message}");
    } else {
        tracing::info!(lane = %lane, "{message}");
    }
    Ok(())
}

/// Whether the current evaluation has a fault (cheap; Rhai checks it on every operation).
pub fn faulted() -> bool {
    FAULTED.get()
}

/// Why the host ends the current evaluation, if it does: a cap reached, a host call refused,
/// or the gate's budget spent (checked now).
pub fn fault() -> Option<HostFault> {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let s = s.as_mut()?;
        if s.fault.is_none() && Instant::now() >= s.ends {
            s.fail(HostFault::over_budget(s.pass.limits.timeout));
        }
        s.fault.clone()
    })
}

/// When the current gate's budget ends, and the time its host calls took so far.
pub fn timing() -> (Option<Instant>, Duration) {
    SESSION.with(|s| {
        s.borrow()
            .as_ref()
            .map_or((None, Duration::ZERO), |s| (Some(s.ends), s.host_time))
    })
}

/// Checks a verdict against `limits.evidence.max_detail`.
pub fn check_verdict(verdict: &Verdict) -> Result<(), HostFault> {
    let Some(max) = SESSION.with(|s| {
        s.borrow()
            .as_ref()
            .map(|s| s.pass.limits.evidence.max_detail)
    }) else {
        return Ok(());
    };
    let (detail, hint) = match verdict {
        Verdict::Pass { detail } => (detail.as_deref(), None),
        Verdict::Defer { detail, hint, .. } => (Some(detail.as_str()), hint.as_deref()),
    };
    for (what, text) in [("detail", detail), ("hint", hint)] {
        if text.is_some_and(|t| t.len() > max) {
            return Err(HostFault::cap(format!(
                "returned a {what} over {} (limits.evidence.max_detail)",
                format_size(max as u64)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers every probe after a while, counting the requests it gets.
    struct Slow(AtomicUsize);

    impl Observer for Slow {
        fn http_get(&self, _url: &str, _timeout: Duration) -> HttpResult {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            HttpResult {
                status: Some(200),
                latency_ms: 200.0,
                error: None,
            }
        }
        fn metric(&self, _: &MetricSource) -> Result<f64, String> {
            Err("none".into())
        }
    }

    #[test]
    fn lanes_asking_for_a_url_in_flight_wait_for_it_instead_of_asking_again() {
        let observer = Arc::new(Slow(AtomicUsize::new(0)));
        let pass = Arc::new(PassHost::new(
            Timestamp::UNIX_EPOCH,
            Arc::new(LaneStates::new()),
            Arc::clone(&observer) as Arc<dyn Observer>,
            Arc::new(MetricCatalog::default()),
        ));
        let answers: Vec<(Result<HttpResult, HostFault>, Vec<Observation>)> =
            std::thread::scope(|s| {
                let asks: Vec<_> = (0..6)
                    .map(|i| {
                        let pass = &pass;
                        s.spawn(move || {
                            observe(pass, &format!("lane{i}"), || {
                                pass.http_get("http://llm.invalid/", Duration::from_secs(3))
                            })
                        })
                    })
                    .collect();
                asks.into_iter().filter_map(|a| a.join().ok()).collect()
            });
        assert_eq!(answers.len(), 6);
        assert_eq!(
            observer.0.load(Ordering::SeqCst),
            1,
            "one request for the pass"
        );
        let fresh = answers
            .iter()
            .filter(|(r, evidence)| {
                assert_eq!(r.as_ref().ok().and_then(|r| r.status), Some(200));
                matches!(evidence[..], [Observation::Http { cached: false, .. }])
            })
            .count();
        assert_eq!(fresh, 1, "the others say they were answered from the cache");
    }
}
