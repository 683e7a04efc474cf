//! The observer of a simulation: plugins' probes and metric reads answered from the facts at
//! the simulated instant, as `model::observer::Canned` answers tests. A question the facts do
//! not answer is noted (and answered with an error so the pass can finish); the loop then stops
//! with an error naming the lane and gate that asked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use super::facts::{Facts, HttpFact};
use crate::model::metric::{MetricCatalog, MetricSource};
use crate::model::observer::{HttpResult, Observer};

/// A question the facts left open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unanswered {
    /// A probe of this URL.
    Http(String),
    /// A read of this metric source (as `MetricSource` prints).
    Metric(String),
}

/// Answers from facts at the instant the loop sets.
pub struct FactsObserver {
    facts: Arc<Facts>,
    /// Metric name by source, so a source read is looked up under the name the facts use.
    names: BTreeMap<String, String>,
    now_ms: AtomicI64,
    unanswered: Mutex<BTreeSet<Unanswered>>,
}

impl FactsObserver {
    /// An observer over `facts`, whose metric names resolve through `catalog`. Returns the
    /// metric names of the facts that are no metric of the home.
    pub fn new(facts: Arc<Facts>, catalog: &MetricCatalog) -> (Self, Vec<String>) {
        let mut names = BTreeMap::new();
        let mut unknown = Vec::new();
        for name in facts.metric_names() {
            match catalog.resolve(name) {
                Some(source) => {
                    names.insert(source.to_string(), name.to_string());
                }
                None => unknown.push(name.to_string()),
            }
        }
        let observer = Self {
            facts,
            names,
            now_ms: AtomicI64::new(0),
            unanswered: Mutex::new(BTreeSet::new()),
        };
        (observer, unknown)
    }

    /// The instant the next pass observes at.
    pub fn set_now(&self, now: Timestamp) {
        self.now_ms.store(now.as_millisecond(), Ordering::Relaxed);
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.now_ms.load(Ordering::Relaxed))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The questions left open since the last call.
    pub fn take_unanswered(&self) -> BTreeSet<Unanswered> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Unanswered>> {
        self.unanswered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What an unanswered probe or read returns meanwhile (never seen in a result: the loop stops).
const NO_FACT: &str = "no fact for this at this time (simulation)";

impl Observer for FactsObserver {
    fn http_get(&self, url: &str, timeout: Duration) -> HttpResult {
        match self.facts.http(url, self.now()) {
            Some(HttpFact::Status { status, latency_ms })
                if *latency_ms <= timeout.as_secs_f64() * 1000.0 =>
            {
                HttpResult {
                    status: Some(*status),
                    latency_ms: *latency_ms,
                    error: None,
                }
            }
            Some(HttpFact::Status { .. }) => HttpResult {
                status: None,
                latency_ms: timeout.as_secs_f64() * 1000.0,
                error: Some(format!(
                    "timed out after {}",
                    crate::model::duration::format(timeout)
                )),
            },
            Some(HttpFact::Down { error }) => HttpResult {
                status: None,
                latency_ms: 0.0,
                error: Some(error.clone()),
            },
            None => {
                self.lock().insert(Unanswered::Http(url.to_string()));
                HttpResult {
                    status: None,
                    latency_ms: 0.0,
                    error: Some(NO_FACT.into()),
                }
            }
        }
    }

    fn metric(&self, source: &MetricSource) -> Result<f64, String> {
        let key = source.to_string();
        let answer = self
            .names
            .get(&key)
            .and_then(|name| self.facts.metric(name, self.now()));
        match answer {
            Some(value) => value.clone(),
            None => {
                self.lock().insert(Unanswered::Metric(key));
                Err(NO_FACT.into())
            }
        }
    }
}
