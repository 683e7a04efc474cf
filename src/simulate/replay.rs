//! `simulate --replay`: facts taken from recorded history instead of a facts file. Every
//! decision is stored with what its plugins observed (probe results, metric values) and every
//! run with how it ended; a simulated question is answered by the observation nearest at or
//! before the simulated instant. What history never observed stays unanswered, so the loop
//! stops with an error naming it: a gap is never filled with a guess.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::facts::{Facts, HttpFact, MetricRead, RunFact};
use crate::compile::Config;
use crate::model::decision::{Decision, Observation};
use crate::state::{Store, StoreError};

/// What to take from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Take the real runs' outcomes and lengths (runs recorded by hand give an outcome only).
    pub runs: bool,
}

/// The facts the history holds: every observation in every stored decision, and (with
/// `replay.runs`) every finished run. Metrics and lanes `config` no longer has are left out.
pub fn recorded_facts(
    store: &dyn Store,
    config: &Config,
    replay: Replay,
) -> Result<Facts, StoreError> {
    let catalog = &config.settings.metrics;
    let mut http: BTreeMap<String, Vec<(Timestamp, HttpFact)>> = BTreeMap::new();
    let mut metrics: BTreeMap<String, Vec<(Timestamp, MetricRead)>> = BTreeMap::new();
    let mut seen = |d: &Decision| {
        for o in d.chain.iter().flat_map(|c| c.evidence.iter()) {
            match o {
                Observation::Http {
                    url,
                    status,
                    latency_ms,
                    error,
                    ..
                } => {
                    let fact = match status {
                        Some(status) => HttpFact::Status {
                            status: *status,
                            latency_ms: *latency_ms,
                        },
                        None => HttpFact::Down {
                            error: error.clone().unwrap_or_else(|| "no response".into()),
                        },
                    };
                    http.entry(url.clone()).or_default().push((d.at, fact));
                }
                Observation::Metric {
                    name, value, error, ..
                } if catalog.resolve(name).is_some() => {
                    let read = match value {
                        Some(v) => Ok(*v),
                        None => Err(error.clone().unwrap_or_else(|| "unreadable".into())),
                    };
                    metrics.entry(name.clone()).or_default().push((d.at, read));
                }
                _ => {}
            }
        }
    };
    for episode in store.episodes_since(Timestamp::MIN)? {
        seen(&episode.first);
        if let Some(last) = &episode.last {
            seen(last);
        }
    }
    let mut runs: BTreeMap<String, Vec<(Timestamp, RunFact)>> = BTreeMap::new();
    if replay.runs {
        for run in store.runs_since(Timestamp::MIN)? {
            let (Some(outcome), Some(ended)) = (run.result, run.ended_at) else {
                continue;
            };
            if config.lane(&run.lane).is_none() {
                continue;
            }
            // A run recorded by hand says how it ended, not how long it took.
            let duration = (run.source != "record")
                .then(|| ended.as_millisecond() - run.started_at.as_millisecond())
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis);
            runs.entry(run.lane.clone())
                .or_default()
                .push((run.started_at, RunFact { outcome, duration }));
        }
    }
    Ok(Facts::recorded(http, metrics, runs))
}
