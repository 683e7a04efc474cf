//! Host capabilities for plugins: lane states, HTTP probes, metric reads and logging.
//!
//! A [`PassHost`] lives for one evaluation pass. It caches every probe and metric read, so lanes
//! probing the same URL in one pass cost one request, and it records what each gate observed as
//! evidence for the decision. Runtimes reach it through [`observe`], which scopes a session to
//! one gate evaluation on the current thread; that keeps the host functions free of plumbing.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::settings::MetricCatalog;
use crate::observe::{HttpResult, Observer};
use crate::state::{LaneState, LaneStates};

/// One thing a plugin looked at, recorded with the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Observation {
    /// An HTTP GET probe.
    Http {
        /// The URL probed.
        url: String,
        /// The status, when a response arrived.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Time to the response or the failure, in milliseconds.
        latency_ms: f64,
        /// Why no response arrived.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// True when answered from this pass's cache.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cached: bool,
    },
    /// A metric read.
    Metric {
        /// The metric name as lanes use it.
        name: String,
        /// Where it was read from.
        source: String,
        /// The value, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        /// Why it could not be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// True when answered from this pass's cache.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cached: bool,
    },
    /// A lane's recorded state.
    Lane {
        /// The lane looked at.
        lane: String,
        /// Whether it is running.
        running: bool,
        /// The running child's pid.
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Not running yet: an earlier lane of this pass dispatches it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        starting: bool,
        /// Its last success.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_success_at: Option<Timestamp>,
        /// Its last run start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_run_at: Option<Timestamp>,
    },
    /// A log line written by the plugin.
    Log {
        /// `info` or `warn`.
        level: String,
        /// The message.
        message: String,
    },
}

/// Shared resources of one evaluation pass.
pub struct PassHost {
    now: Timestamp,
    states: Arc<LaneStates>,
    observer: Arc<dyn Observer>,
    metrics: Arc<MetricCatalog>,
    http_cache: Mutex<HashMap<String, HttpResult>>,
    metric_cache: Mutex<HashMap<String, Result<f64, String>>>,
    lane_names: OnceLock<String>,
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
            http_cache: Mutex::new(HashMap::new()),
            metric_cache: Mutex::new(HashMap::new()),
            lane_names: OnceLock::new(),
            starting: Mutex::new(HashSet::new()),
        }
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
    pub fn lane(&self, name: &str) -> Option<Cow<'_, LaneState>> {
        let state = self.state(name);
        let s = state.as_deref();
        record(Observation::Lane {
            lane: name.to_string(),
            running: s.is_some_and(LaneState::is_running),
            pid: s.and_then(|s| s.running.as_ref().map(|r| r.pid)),
            starting: s.is_some_and(|s| s.starting),
            last_success_at: s.and_then(|s| s.last_success_at),
            last_run_at: s.and_then(|s| s.last_run_at),
        });
        state
    }

    /// GETs `url` once per pass; later calls are answered from the cache.
    pub fn http_get(&self, url: &str, timeout: Duration) -> HttpResult {
        let cached = lock(&self.http_cache).get(url).cloned();
        let (result, was_cached) = match cached {
            Some(r) => (r, true),
            None => {
                let r = self.observer.http_get(url, timeout);
                lock(&self.http_cache).insert(url.to_string(), r.clone());
                (r, false)
            }
        };
        record(Observation::Http {
            url: url.to_string(),
            status: result.status,
            latency_ms: result.latency_ms,
            error: result.error.clone(),
            cached: was_cached,
        });
        result
    }

    /// Reads a named metric once per pass. `Err` says why it could not be read.
    pub fn metric(&self, name: &str) -> Result<f64, String> {
        let source = self.metrics.resolve(name);
        let cached = lock(&self.metric_cache).get(name).cloned();
        let (value, was_cached) = match (&source, cached) {
            (_, Some(v)) => (v, true),
            (Some(src), None) => {
                let v = self.observer.metric(src);
                lock(&self.metric_cache).insert(name.to_string(), v.clone());
                (v, false)
            }
            (None, None) => (
                Err(format!(
                    "unknown metric `{name}`; define it under `metrics:` in lanekeeper.yaml"
                )),
                false,
            ),
        };
        record(Observation::Metric {
            name: name.to_string(),
            source: source.map(|s| s.to_string()).unwrap_or_default(),
            value: value.as_ref().ok().copied(),
            error: value.as_ref().err().cloned(),
            cached: was_cached,
        });
        value
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

struct Session {
    pass: Arc<PassHost>,
    lane: String,
    evidence: Vec<Observation>,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// Runs one gate evaluation with `pass` as the current host, returning what it observed.
pub fn observe<R>(
    pass: &Arc<PassHost>,
    lane: &str,
    f: impl FnOnce() -> R,
) -> (R, Vec<Observation>) {
    let previous = SESSION.with(|s| {
        s.borrow_mut().replace(Session {
            pass: Arc::clone(pass),
            lane: lane.to_string(),
            evidence: Vec::new(),
        })
    });
    let out = f();
    let session = SESSION.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous));
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

/// Adds an observation to the current evaluation's evidence (no-op outside one).
pub fn record(obs: Observation) {
    SESSION.with(|s| {
        if let Some(session) = s.borrow_mut().as_mut() {
            session.evidence.push(obs);
        }
    });
}

/// Logs a plugin message to tracing and to the evidence.
pub fn log(level: &str, message: &str) {
    let lane = current().map(|(_, l)| l).unwrap_or_default();
    if level == "warn" {
        tracing::warn!(lane = %lane, "{message}");
    } else {
        tracing::info!(lane = %lane, "{message}");
    }
    record(Observation::Log {
        level: level.to_string(),
        message: message.to_string(),
    });
}
