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
    /// The file system holding `path` (statvfs), as an unprivileged user sees it.
    Disk {
        /// Any path on it; relative ones are resolved against the home.
        path: PathBuf,
        /// Which figure.
        figure: DiskFigure,
    },
    /// How many lanes of this home run now, or start in this pass: counted from the pass's
    /// lane states, never read from the world.
    LanesRunning,
}

/// What `disk.<figure>:/path` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFigure {
    /// Bytes available to unprivileged users.
    FreeBytes,
    /// Those as a percentage of the file system's size.
    FreePct,
    /// 100 minus that: what a contention gate's `above:` can defer on as the disk fills.
    UsedPct,
}

impl DiskFigure {
    /// As written in the metric's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFigure::FreeBytes => "free_bytes",
            DiskFigure::FreePct => "free_pct",
            DiskFigure::UsedPct => "used_pct",
        }
    }
}

/// The name of the built-in count of running lanes.
pub const LANES_RUNNING: &str = "lanes.running";

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
            MetricSource::Disk { path, figure } => {
                write!(f, "statvfs {} {}", path.display(), figure.as_str())
            }
            MetricSource::LanesRunning => f.write_str("lane states of this pass"),
        }
    }
}

/// Named metrics: those configured in `lanekeeper.yaml`, plus built-ins
/// (`psi.<cpu|io|memory>.<some|full>.<avg10|avg60|avg300>`, `loadavg.<1|5|15>`,
/// `disk.<free_bytes|free_pct|used_pct>:PATH`, `lanes.running`).
#[derive(Debug, Clone, Default)]
pub struct MetricCatalog {
    named: BTreeMap<String, MetricSource>,
    /// The home, against which a relative `disk.*:PATH` is resolved.
    root: PathBuf,
}

impl MetricCatalog {
    /// An empty catalog whose relative disk paths are under `root`.
    pub fn rooted(root: PathBuf) -> Self {
        Self {
            named: BTreeMap::new(),
            root,
        }
    }

    /// Names a metric source.
    pub fn insert(&mut self, name: String, source: MetricSource) {
        self.named.insert(name, source);
    }

    /// Finds a metric by name.
    pub fn resolve(&self, name: &str) -> Option<MetricSource> {
        if let Some(src) = self.named.get(name) {
            return Some(src.clone());
        }
        if let Some((figure, path)) = name.strip_prefix("disk.").and_then(|r| r.split_once(':')) {
            let figure = match figure {
                "free_bytes" => DiskFigure::FreeBytes,
                "free_pct" => DiskFigure::FreePct,
                "used_pct" => DiskFigure::UsedPct,
                _ => return None,
            };
            if path.is_empty() {
                return None;
            }
            return Some(MetricSource::Disk {
                path: self.root.join(path),
                figure,
            });
        }
        builtin(name)
    }
}

fn builtin(name: &str) -> Option<MetricSource> {
    if name == LANES_RUNNING {
        return Some(MetricSource::LanesRunning);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_metrics_name_a_figure_and_a_path_relative_to_the_home() {
        let c = MetricCatalog::rooted(PathBuf::from("/srv/lk"));
        assert_eq!(
            c.resolve("disk.free_pct:/"),
            Some(MetricSource::Disk {
                path: PathBuf::from("/"),
                figure: DiskFigure::FreePct
            })
        );
        assert_eq!(
            c.resolve("disk.free_bytes:state"),
            Some(MetricSource::Disk {
                path: PathBuf::from("/srv/lk/state"),
                figure: DiskFigure::FreeBytes
            })
        );
        assert_eq!(c.resolve("disk.free_pct:"), None);
        assert_eq!(c.resolve("disk.inodes:/"), None);
        assert_eq!(c.resolve("lanes.running"), Some(MetricSource::LanesRunning));
    }
}
