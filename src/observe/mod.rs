//! The I/O edge for plugin observations: real HTTP probes and metric reads.
//!
//! [`Observer`] is the seam: the live one talks to the network and `/proc`; a replay one can
//! answer from recorded evidence, so the engine's code path never changes.

pub mod http;
pub mod metrics;

use std::time::Duration;

use crate::config::settings::MetricSource;

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

/// The real observer: TCP, files and `/proc`.
#[derive(Default)]
pub struct LiveObserver {
    http: http::Prober,
}

impl Observer for LiveObserver {
    fn http_get(&self, url: &str, timeout: Duration) -> HttpResult {
        self.http.get(url, timeout)
    }

    fn metric(&self, source: &MetricSource) -> Result<f64, String> {
        metrics::read(source, &self.http)
    }
}
