//! The port through which plugins look at the world (HTTP probes, metric reads), and an
//! observer that never touches it. The engine sees only this trait: the live observer sits at
//! the edge (`observe`), and tests, benches and simulations answer from tables.

use std::time::Duration;

use super::metric::MetricSource;

/// The outcome of one HTTP GET.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResult {
    /// The status, when a response arrived.
    pub status: Option<u16>,
    /// Time to the response or failure, in milliseconds.
    pub latency_ms: f64,
    /// Why no response arrived (refused, timed out, …).
    pub error: Option<String>,
}

impl HttpResult {
    /// True for a 2xx response.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Looks at the world on behalf of plugins.
pub trait Observer: Send + Sync {
    /// One HTTP GET that returns within `timeout` whatever the server does.
    fn http_get(&self, url: &str, timeout: Duration) -> HttpResult;
    /// Reads one metric source.
    fn metric(&self, source: &MetricSource) -> Result<f64, String>;
}

/// An observer that never touches the world: every probe gets one answer, and metrics are read
/// from a table (by source, as `MetricSource` prints), anything else getting `otherwise`. What
/// tests and benches decide with, so none of them sends a request by accident.
#[derive(Debug, Clone)]
pub struct Canned {
    /// The answer to every HTTP GET.
    pub http: HttpResult,
    /// Metric values by source.
    pub metrics: std::collections::BTreeMap<String, Result<f64, String>>,
    /// The value of a metric the table does not list.
    pub otherwise: Result<f64, String>,
}

impl Canned {
    /// Every probe answered 200 in 1 ms; every metric 0.
    pub fn up() -> Self {
        Self {
            http: HttpResult {
                status: Some(200),
                latency_ms: 1.0,
                error: None,
            },
            metrics: std::collections::BTreeMap::new(),
            otherwise: Ok(0.0),
        }
    }

    /// Every probe refused; every metric 0.
    pub fn down() -> Self {
        Self {
            http: HttpResult {
                status: None,
                latency_ms: 0.2,
                error: Some("connection refused".into()),
            },
            ..Self::up()
        }
    }
}

impl Observer for Canned {
    fn http_get(&self, _url: &str, _timeout: Duration) -> HttpResult {
        self.http.clone()
    }

    fn metric(&self, source: &MetricSource) -> Result<f64, String> {
        self.metrics
            .get(&source.to_string())
            .cloned()
            .unwrap_or_else(|| self.otherwise.clone())
    }
}
