//! What a gate may reach through the host: capability grants, deny by default.
//!
//! A plugin is someone else's code. It may probe only the HTTP endpoints and read only the
//! metrics that its gate is granted: those its lane's `with:` names in typed parameters (the
//! `url` of `provider-probe`, the metrics of `contention`), those in the gate's `allow:`, and
//! those `lanekeeper.yaml` grants the plugin everywhere. Anything else is a `plugin-error`.

use std::fmt;

/// One endpoint a gate may probe: a host, and a port or any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    host: String,
    port: Option<u16>,
}

impl HttpGrant {
    /// Parses `host:port`, `host` (any port), `[::1]:8080`, or a URL (its host and port).
    pub fn parse(text: &str) -> Result<Self, GrantError> {
        let t = text.trim();
        if t.contains("://") {
            let url = reqwest::Url::parse(t).map_err(|e| GrantError::NotAUrl {
                text: t.to_string(),
                reason: e.to_string(),
            })?;
            let host = url
                .host_str()
                .ok_or_else(|| GrantError::NoHost(t.to_string()))?
                .to_ascii_lowercase();
            return Ok(Self {
                host,
                port: url.port_or_known_default(),
            });
        }
        let (host, port) = match t.rsplit_once(':') {
            // `::1` alone is an IPv6 host, not a host and a port.
            Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
                let port = p.parse::<u16>().map_err(|_| GrantError::NotAPort {
                    text: t.to_string(),
                    port: p.to_string(),
                })?;
                (h, Some(port))
            }
            _ => (t, None),
        };
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(GrantError::NotAHost(t.to_string()));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && self.port.is_none_or(|p| Some(p) == port)
    }
}

/// An `allow.http` entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Looks like a URL, but is not one.
    #[error("`{text}` is not a URL: {reason}")]
    NotAUrl {
        /// As written.
        text: String,
        /// Why.
        reason: String,
    },
    /// A URL without a host.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// `host:port` with a port that is not one.
    #[error("`{text}`: `{port}` is not a port (write host:port, or just the host for any port)")]
    NotAPort {
        /// As written.
        text: String,
        /// The part after the colon.
        port: String,
    },
    /// Not a host name or address.
    #[error(
        "`{0}` is not a host (write host:port, e.g. 127.0.0.1:11434, or just the host for any port)"
    )]
    NotAHost(String),
}

/// A GET that no grant covers: what was asked, as `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("http to {target} not granted")]
pub struct NotGranted {
    /// The host and port asked for (or the URL, if it has no host).
    pub target: String,
}

impl fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{} (any port)", self.host),
        }
    }
}

/// Everything one gate may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Endpoints it may probe.
    pub http: Vec<HttpGrant>,
    /// Metrics it may read; a name ending in `*` grants every name it starts.
    pub metrics: Vec<String>,
}

impl Grants {
    /// Adds `other`'s grants.
    pub fn extend(&mut self, other: Grants) {
        for h in other.http {
            if !self.http.contains(&h) {
                self.http.push(h);
            }
        }
        for m in other.metrics {
            if !self.metrics.contains(&m) {
                self.metrics.push(m);
            }
        }
    }

    /// Whether it grants nothing at all.
    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.metrics.is_empty()
    }

    /// Whether a GET of `url` is granted; `Err` says what was asked, for the plugin error.
    pub fn allow_http(&self, url: &str) -> Result<(), NotGranted> {
        let parsed = reqwest::Url::parse(url).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str())
            .map(str::to_ascii_lowercase);
        let port = parsed
            .as_ref()
            .and_then(reqwest::Url::port_or_known_default);
        match host {
            Some(h) if self.http.iter().any(|g| g.allows(&h, port)) => Ok(()),
            Some(h) => Err(NotGranted {
                target: match port {
                    Some(p) => format!("{h}:{p}"),
                    None => h,
                },
            }),
            None => Err(NotGranted {
                target: url.to_string(),
            }),
        }
    }

    /// Whether reading the metric `name` is granted.
    pub fn allow_metric(&self, name: &str) -> bool {
        self.metrics.iter().any(|g| match g.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => g == name,
        })
    }
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing (lane states and logging only)");
        }
        let mut parts = Vec::new();
        if !self.http.is_empty() {
            let hosts: Vec<String> = self.http.iter().map(ToString::to_string).collect();
            parts.push(format!("http {}", hosts.join(", ")));
        }
        if !self.metrics.is_empty() {
            parts.push(format!("metrics {}", self.metrics.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_match_host_and_port_and_metric_prefixes() {
        let g = Grants {
            http: vec![
                HttpGrant::parse("127.0.0.1:11434").expect("grant"),
                HttpGrant::parse("LocalHost").expect("grant"),
                HttpGrant::parse("[::1]:8080").expect("grant"),
            ],
            metrics: vec!["psi.*".into(), "queue_depth".into()],
        };
        assert!(g.allow_http("http://127.0.0.1:11434/api/tags").is_ok());
        assert_eq!(
            g.allow_http("http://127.0.0.1:11435/")
                .map_err(|e| e.target),
            Err("127.0.0.1:11435".into())
        );
        assert_eq!(
            g.allow_http("http://127.0.0.2/").map_err(|e| e.target),
            Err("127.0.0.2:80".into())
        );
        assert!(g.allow_http("https://localhost:9999/x").is_ok());
        assert!(g.allow_http("http://[::1]:8080/").is_ok());
        assert!(g.allow_metric("psi.io.some.avg10"));
        assert!(g.allow_metric("queue_depth"));
        assert!(!g.allow_metric("queue_depth_2"));
        assert!(!g.allow_metric("loadavg.1"));
        assert!(Grants::default().allow_http("http://127.0.0.1/").is_err());
        assert!(HttpGrant::parse("127.0.0.1:http").is_err());
        assert_eq!(
            HttpGrant::parse("http://127.0.0.1:9400/metrics")
                .expect("url")
                .to_string(),
            "127.0.0.1:9400"
        );
    }
}
