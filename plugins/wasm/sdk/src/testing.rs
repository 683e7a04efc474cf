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

/// The host functions, answering from the mock as JSON, as the real host does.
pub(crate) mod host {
    use super::MOCK;
    use crate::json::{Value, write_str};

    fn opt_i(v: Option<i64>) -> Value {
        v.map_or(Value::Null, Value::Int)
    }

    pub fn lane(name: &str) -> Option<String> {
        MOCK.with(|m| {
            let m = m.borrow();
            let s = m.lanes.get(name)?;
            let v = Value::Object(vec![
                ("name".into(), Value::String(s.name.clone())),
                ("last_run_ms".into(), opt_i(s.last_run_ms)),
                ("last_success_ms".into(), opt_i(s.last_success_ms)),
                (
                    "last_result".into(),
                    s.last_result.clone().map_or(Value::Null, Value::String),
                ),
                ("last_exit_code".into(), opt_i(s.last_exit_code)),
                ("last_signal".into(), opt_i(s.last_signal)),
                ("running".into(), Value::Bool(s.running)),
                ("pid".into(), opt_i(s.pid)),
                ("running_since_ms".into(), opt_i(s.running_since_ms)),
            ]);
            let mut out = String::new();
            v.write(&mut out);
            Some(out)
        })
    }

    pub fn http_get(url: &str, _timeout_ms: i64) -> Option<String> {
        MOCK.with(|m| {
            let m = m.borrow();
            let v = match m.probes.get(url) {
                Some(p) => Value::Object(vec![
                    ("ok".into(), Value::Bool(p.ok)),
                    ("status".into(), opt_i(p.status.map(i64::from))),
                    ("latency_ms".into(), Value::Float(p.latency_ms)),
                    (
                        "error".into(),
                        p.error.clone().map_or(Value::Null, Value::String),
                    ),
                ]),
                None => Value::Object(vec![
                    ("ok".into(), Value::Bool(false)),
                    ("status".into(), Value::Null),
                    ("latency_ms".into(), Value::Float(0.0)),
                    ("error".into(), Value::String("connection refused".into())),
                ]),
            };
            let mut out = String::new();
            v.write(&mut out);
            Some(out)
        })
    }

    pub fn metric(name: &str) -> Option<String> {
        MOCK.with(|m| {
            let m = m.borrow();
            let mut out = String::new();
            match m.metrics.get(name) {
                Some(Ok(v)) => {
                    Value::Object(vec![("value".into(), Value::Float(*v))]).write(&mut out)
                }
                Some(Err(e)) => {
                    out.push_str("{\"error\":");
                    write_str(&mut out, e);
                    out.push('}');
                }
                None => out.push_str("{\"error\":\"unknown metric\"}"),
            }
            Some(out)
        })
    }

    pub fn log(_level: i32, message: &str) {
        MOCK.with(|m| m.borrow_mut().logs.push(message.to_string()));
    }
}
