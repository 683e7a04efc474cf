//! The I/O edge for plugin observations: real HTTP probes and metric reads.
//!
//! [`Observer`] is the seam: the live one talks to the network and `/proc`; a replay one can
//! answer from recorded evidence, so the engine's code path never changes.

pub mod http;
pub mod sources;

use std::time::Duration;

use crate::model::metric::MetricSource;

pub use crate::model::observer::{Canned, HttpResult, Observer};

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
        sources::read(source, &self.http)
    }
}
