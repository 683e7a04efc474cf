//! HTTP GET probes over real TCP, bounded by a timeout that covers connect and response.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::HttpResult;

/// A lazily built blocking HTTP client (building one starts a runtime thread, so do it once).
#[derive(Default)]
pub struct Prober {
    client: OnceLock<Result<reqwest::blocking::Client, String>>,
}

impl Prober {
    fn client(&self) -> Result<&reqwest::blocking::Client, String> {
        self.client
            .get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .user_agent(concat!("lanekeeper/", env!("CARGO_PKG_VERSION")))
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .build()
                    .map_err(|e| format!("cannot build HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// GETs `url`; the whole exchange is bounded by `timeout`.
    pub fn get(&self, url: &str, timeout: Duration) -> HttpResult {
        let start = Instant::now();
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return failed(start, e),
        };
        match client.get(url).timeout(timeout).send() {
            Ok(resp) => HttpResult {
                status: Some(resp.status().as_u16()),
                latency_ms: ms(start),
                error: None,
            },
            Err(e) => failed(start, describe(&e, timeout)),
        }
    }

    /// GETs `url` and returns the body, for metric endpoints.
    pub fn get_text(&self, url: &str, timeout: Duration) -> Result<String, String> {
        let client = self.client()?;
        let resp = client
            .get(url)
            .timeout(timeout)
            .send()
            .map_err(|e| describe(&e, timeout))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        resp.text().map_err(|e| describe(&e, timeout))
    }
}

fn ms(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

fn failed(start: Instant, error: String) -> HttpResult {
    HttpResult {
        status: None,
        latency_ms: ms(start),
        error: Some(error),
    }
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!(
            "timed out after {}",
            crate::model::duration::format(timeout)
        )
    } else if e.is_connect() {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        format!("connection failed: {cause}")
    } else if e.is_builder() {
        format!("invalid URL: {e}")
    } else {
        e.to_string()
    }
}
