//! Metric reads: a Prometheus text endpoint plus a series selector, a file holding a number,
//! Linux PSI, and the load average.

use super::http::Prober;
use crate::model::metric::{DiskFigure, MetricSource, Selector, parse_labels};

/// Reads one metric source now.
pub fn read(source: &MetricSource, http: &Prober) -> Result<f64, String> {
    match source {
        MetricSource::Prometheus {
            url,
            series,
            timeout,
        } => {
            let body = http.get_text(url, *timeout)?;
            select(&body, series).ok_or_else(|| format!("no series matching `{series}` at {url}"))
        }
        MetricSource::File { path } => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            text.trim()
                .parse::<f64>()
                .map_err(|_| format!("{} does not hold a number", path.display()))
        }
        MetricSource::Psi {
            resource,
            full,
            window,
        } => {
            let path = format!("/proc/pressure/{resource}");
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!("cannot read {path}: {e} (PSI needs Linux 4.20+ with psi enabled)")
            })?;
            psi_value(&text, *full, window).ok_or_else(|| format!("{path}: no {window} value"))
        }
        MetricSource::Disk { path, figure } => disk(path, *figure),
        // The pass counts it from its lane states (plugins::host); nothing to read.
        MetricSource::LanesRunning => Err("lanes.running is counted by the pass".into()),
        MetricSource::LoadAvg { index } => {
            let text = std::fs::read_to_string("/proc/loadavg")
                .map_err(|e| format!("cannot read /proc/loadavg: {e}"))?;
            text.split_whitespace()
                .nth(*index)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| "cannot parse /proc/loadavg".to_string())
        }
    }
}

/// Free space of the file system holding `path`, as an unprivileged user may use it.
fn disk(path: &std::path::Path, figure: DiskFigure) -> Result<f64, String> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| format!("cannot statvfs {}: {e}", path.display()))?;
    let unit = st.fragment_size() as f64;
    let (size, free) = (
        st.blocks() as f64 * unit,
        st.blocks_available() as f64 * unit,
    );
    let pct = if size > 0.0 { free / size * 100.0 } else { 0.0 };
    Ok(match figure {
        DiskFigure::FreeBytes => free,
        DiskFigure::FreePct => pct,
        DiskFigure::UsedPct => 100.0 - pct,
    })
}

/// Picks a PSI value: `some avg10=0.12 avg60=… total=…`.
fn psi_value(text: &str, full: bool, window: &str) -> Option<f64> {
    let prefix = if full { "full" } else { "some" };
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace().find_map(|field| {
        let (k, v) = field.split_once('=')?;
        (k == window).then(|| v.parse().ok()).flatten()
    })
}

/// The highest value among the series matching `selector` (the conservative choice for a
/// threshold check when several series match).
pub fn select(body: &str, selector: &Selector) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_sample)
        .filter(|(name, labels, _)| {
            name == &selector.name
                && selector
                    .labels
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .reduce(f64::max)
}

type Sample = (String, Vec<(String, String)>, f64);

/// Parses `name{k="v",…} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some((name, labels, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "# HELP add_memory latency\n# TYPE add_memory summary\n\
add_memory_latency_ms{quantile=\"0.5\"} 120\n\
add_memory_latency_ms{quantile=\"0.99\",path=\"/a,b\"} 950.5\n\
add_memory_latency_ms{quantile=\"0.99\",path=\"/c\"} 700\n\
up 1 1700000000\n";

    fn sel(s: &str) -> Selector {
        s.parse().unwrap()
    }

    #[test]
    fn selects_by_name_and_labels_taking_the_max() {
        assert_eq!(select(BODY, &sel("up")), Some(1.0));
        assert_eq!(
            select(BODY, &sel("add_memory_latency_ms{quantile=\"0.99\"}")),
            Some(950.5)
        );
        assert_eq!(
            select(
                BODY,
                &sel("add_memory_latency_ms{quantile=\"0.99\",path=\"/c\"}")
            ),
            Some(700.0)
        );
        assert_eq!(select(BODY, &sel("missing")), None);
    }

    #[test]
    fn reads_psi_lines() {
        let text = "some avg10=1.50 avg60=0.20 avg300=0.00 total=1\nfull avg10=0.75 avg60=0 avg300=0 total=0\n";
        assert_eq!(psi_value(text, false, "avg10"), Some(1.5));
        assert_eq!(psi_value(text, true, "avg10"), Some(0.75));
        assert_eq!(psi_value(text, false, "avg99"), None);
    }
}
