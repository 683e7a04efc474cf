//! Named metrics as plain data: where a metric comes from, how a Prometheus series is selected,
//! and the label grammar both the configuration and the scraper read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The default timeout of a Prometheus scrape.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// A Prometheus series selector: `name{label="value",…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The metric name.
    pub name: String,
    /// Labels that must match exactly.
    pub labels: Vec<(String, String)>,
}

impl FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (name, rest) = match s.find('{') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !valid_name {
            return Err(format!(
                "`{s}` is not a series selector; write e.g. add_memory_latency_ms{{quantile=\"0.99\"}}"
            ));
        }
        let labels = match rest {
            None => Vec::new(),
            Some(body) => match parse_labels(body) {
                Some((labels, tail)) if tail.trim().is_empty() => labels,
                _ => {
                    return Err(format!(
                        "`{s}`: bad label list; write labels as {{name=\"value\",…}}"
                    ));
                }
            },
        };
        Ok(Self {
            name: name.to_string(),
            labels,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let parts: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            write!(f, "{{{}}}", parts.join(","))?;
        }
        Ok(())
    }
}

/// Where a named metric comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// One series of a Prometheus text-format endpoint.
    Prometheus {
        /// The endpoint.
        url: String,
        /// Which series.
        series: Selector,
        /// Scrape timeout.
        timeout: Duration,
    },
    /// A file holding one number.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Linux pressure stall information.
    Psi {
        /// `cpu`, `io` or `memory`.
        resource: String,
        /// The `full` line rather than `some`.
        full: bool,
        /// `avg10`, `avg60` or `avg300`.
        window: String,
    },
    /// `/proc/loadavg`: 0 = 1 minute, 1 = 5 minutes, 2 = 15 minutes.
    LoadAvg {
        /// Which field.
        index: usize,
    },
}

impl fmt::Display for MetricSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricSource::Prometheus { url, series, .. } => write!(f, "prometheus {url} {series}"),
            MetricSource::File { path } => write!(f, "file {}", path.display()),
            MetricSource::Psi {
                resource,
                full,
                window,
            } => write!(
                f,
                "psi /proc/pressure/{resource} {} {window}",
                if *full { "full" } else { "some" }
            ),
            MetricSource::LoadAvg { index } => {
                write!(f, "loadavg {}m", [1, 5, 15].get(*index).unwrap_or(&1))
            }
        }
    }
}

/// Named metrics: those configured in `lanekeeper.yaml`, plus built-ins
/// (`psi.<cpu|io|memory>.<some|full>.<avg10|avg60|avg300>`, `loadavg.<1|5|15>`).
#[derive(Debug, Clone, Default)]
pub struct MetricCatalog {
    named: BTreeMap<String, MetricSource>,
}

impl MetricCatalog {
    /// Names a metric source.
    pub fn insert(&mut self, name: String, source: MetricSource) {
        self.named.insert(name, source);
    }

    /// Finds a metric by name.
    pub fn resolve(&self, name: &str) -> Option<MetricSource> {
        if let Some(src) = self.named.get(name) {
            return Some(src.clone());
        }
        builtin(name)
    }
}

fn builtin(name: &str) -> Option<MetricSource> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["psi", res, kind, window]
            if ["cpu", "io", "memory"].contains(res)
                && ["some", "full"].contains(kind)
                && ["avg10", "avg60", "avg300"].contains(window) =>
        {
            Some(MetricSource::Psi {
                resource: res.to_string(),
                full: *kind == "full",
                window: window.to_string(),
            })
        }
        ["loadavg", m] => {
            let index = ["1", "5", "15"].iter().position(|x| x == m)?;
            Some(MetricSource::LoadAvg { index })
        }
        _ => None,
    }
}

/// Parses label pairs up to the closing `}`; returns them and the text after it.
pub fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}
