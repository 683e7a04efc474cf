//! Native stand-ins for the host, so a plugin's unit tests run with plain `cargo test`.
//!
//! Set what the host would answer, per thread, then call your `evaluate` with a context from
//! [`context`]:
//!
//! ```
//! use lanekeeper_plugin::{LaneState, testing};
//! testing::set_lane(LaneState { name: "backup".into(), last_success_ms: Some(0), ..Default::default() });
//! testing::set_metric("loadavg.1", Ok(0.5));
//! let ctx = testing::context(r#"{"lane":"a","now_ms":1000,"params":{"lane":"backup"}}"#);
//! assert_eq!(ctx.params().str("lane"), Some("backup"));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{Context, LaneState, Probe};

#[derive(Default)]
struct Mock {
    lanes: BTreeMap<String, LaneState>,
    metrics: BTreeMap<String, Result<f64, String>>,
    probes: BTreeMap<String, Probe>,
    logs: Vec<String>,
}

thread_local! {
    static MOCK: RefCell<Mock> = RefCell::new(Mock::default());
}

/// A context from JSON; panics on malformed JSON (it is test input).
pub fn context(json: &str) -> Context {
    match Context::parse(json) {
        Ok(c) => c,
        Err(e) => panic!("test context: {e}"),
    }
}

/// Forgets every lane, metric, probe and log line set on this thread.
pub fn reset() {
    MOCK.with(|m| *m.borrow_mut() = Mock::default());
}

/// What `lane(state.name)` returns.
pub fn set_lane(state: LaneState) {
    MOCK.with(|m| m.borrow_mut().lanes.insert(state.name.clone(), state));
}

/// What `metric(name)` returns.
pub fn set_metric(name: &str, value: Result<f64, String>) {
    MOCK.with(|m| m.borrow_mut().metrics.insert(name.to_string(), value));
}

/// What `http_get(url, _)` returns (unset URLs are refused).
pub fn set_probe(url: &str, probe: Probe) {
    MOCK.with(|m| m.borrow_mut().probes.insert(url.to_string(), probe));
}

/// The lines logged so far on this thread.
pub fn logs() -> Vec<String> {
    MOCK.with(|m| m.borrow().logs.clone())
}

/// The host functions, answering from the mock.
pub(crate) mod host {
    use super::MOCK;
    use crate::{LaneState, Probe};

    pub fn lane(name: &str) -> Option<LaneState> {
        MOCK.with(|m| m.borrow().lanes.get(name).cloned())
    }

    pub fn http_get(url: &str, _timeout_ms: i64) -> Probe {
        MOCK.with(|m| {
            m.borrow().probes.get(url).cloned().unwrap_or(Probe {
                error: Some("connection refused".into()),
                ..Probe::default()
            })
        })
    }

    pub fn metric(name: &str) -> Result<f64, String> {
        MOCK.with(|m| {
            m.borrow()
                .metrics
                .get(name)
                .cloned()
                .unwrap_or_else(|| Err("unknown metric".into()))
        })
    }

    pub fn log(_level: i32, message: &str) {
        MOCK.with(|m| m.borrow_mut().logs.push(message.to_string()));
    }
}
