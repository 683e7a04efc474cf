//! The facts a simulation is told: what each probed URL answered, what each metric read and how
//! runs ended, over ranges of time. A simulation answers plugins from these only, and a question
//! they do not answer is an error: a made-up probe result would make a made-up timeline.
//!
//! ```yaml
//! timezone: Europe/Berlin            # for times written without an offset (default: UTC)
//! http:
//!   "http://127.0.0.1:11434/api/tags":
//!     - { status: 200 }                                      # always, unless overridden
//!     - { from: "2026-12-01T02:00", to: "2026-12-01T03:30", down: true }
//! metrics:
//!   add_memory_p99_ms:
//!     - { value: 120 }
//!     - { from: "2026-12-01T09:00", to: "2026-12-01T10:00", value: 900 }
//! runs:
//!   backup:
//!     - { on: 2026-12-03, outcome: failure }
//! ```
//!
//! A range is `from` (inclusive) to `to` (exclusive), either open-ended, or `on: DATE` for a
//! whole local day; when ranges overlap, the one written last wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::model::lane_state::RunResult;

/// Why a facts file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// It could not be read.
    #[error("facts file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not YAML of the expected shape.
    #[error("facts file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, with its place.
        message: String,
    },
    /// An entry says something impossible or unclear.
    #[error("facts file {path}: {place}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `http."URL"[1]`, `metrics.NAME[0]`, …
        place: String,
        /// What is wrong and what to write.
        message: String,
    },
}

/// What a probe of a URL answers.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFact {
    /// A response with this status, after `latency_ms`.
    Status {
        /// The HTTP status.
        status: u16,
        /// Time to the response.
        latency_ms: f64,
    },
    /// No response: refused, reset, unreachable.
    Down {
        /// What the probe reports.
        error: String,
    },
}

/// How a run that starts within a range ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFact {
    /// Success or failure.
    pub outcome: RunResult,
    /// How long such a run takes, overriding the modelled duration.
    pub duration: Option<Duration>,
}

/// A value over a range of time.
#[derive(Debug, Clone, PartialEq)]
struct Span<T> {
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    value: T,
}

/// The latest-written span covering `at`.
fn at<T>(spans: &[Span<T>], at: Timestamp) -> Option<&T> {
    spans
        .iter()
        .rev()
        .find(|s| s.from.is_none_or(|f| f <= at) && s.to.is_none_or(|t| at < t))
        .map(|s| &s.value)
}

/// Everything a simulation was told.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    http: BTreeMap<String, Vec<Span<HttpFact>>>,
    metrics: BTreeMap<String, Vec<Span<Result<f64, String>>>>,
    runs: BTreeMap<String, Vec<Span<RunFact>>>,
    /// Taken from recorded history (`--replay`), so an unanswered question is a gap in it.
    recorded: bool,
}

/// A metric's value, or why it could not be read.
pub type MetricRead = Result<f64, String>;

/// How long after the instant a pass was made for its observations may be stamped: a pass's
/// clock reads a little later than the instant it woke for (process start, the lanes decided
/// before), so the recorded pass for instant T is stamped T plus milliseconds. Far shorter than
/// any recheck, so it never reaches the next pass's observations of the same thing.
pub const RECORDED_SLACK: Duration = Duration::from_secs(10);

/// Values observed at instants, turned into spans: each holds from its instant (less
/// [`RECORDED_SLACK`]) until the next one's, the last one open-ended, and nothing before the
/// first (a gap, never a guess).
fn observed<T>(points: Vec<(Timestamp, T)>) -> Vec<Span<T>> {
    let mut points: Vec<(Timestamp, T)> = points
        .into_iter()
        .map(|(t, v)| (crate::clock::earlier(t, RECORDED_SLACK), v))
        .collect();
    points.sort_by_key(|p| p.0);
    let next: Vec<Option<Timestamp>> = points
        .iter()
        .skip(1)
        .map(|p| Some(p.0))
        .chain([None])
        .collect();
    points
        .into_iter()
        .zip(next)
        .map(|((from, value), to)| Span {
            from: Some(from),
            to,
            value,
        })
        .collect()
}

impl Facts {
    /// Facts from observations recorded at instants (`--replay`): a question at a time is
    /// answered by the observation nearest at or before it.
    pub fn recorded(
        http: BTreeMap<String, Vec<(Timestamp, HttpFact)>>,
        metrics: BTreeMap<String, Vec<(Timestamp, MetricRead)>>,
        runs: BTreeMap<String, Vec<(Timestamp, RunFact)>>,
    ) -> Self {
        Self {
            http: http.into_iter().map(|(k, v)| (k, observed(v))).collect(),
            metrics: metrics.into_iter().map(|(k, v)| (k, observed(v))).collect(),
            runs: runs.into_iter().map(|(k, v)| (k, observed(v))).collect(),
            recorded: true,
        }
    }

    /// Whether these facts come from recorded history.
    pub fn is_recorded(&self) -> bool {
        self.recorded
    }

    /// What a probe of `url` answers at `when`, if the facts say.
    pub fn http(&self, url: &str, when: Timestamp) -> Option<&HttpFact> {
        at(self.http.get(url)?, when)
    }

    /// The metric `name` at `when` (an `Err` for a metric the facts say cannot be read).
    pub fn metric(&self, name: &str, when: Timestamp) -> Option<&Result<f64, String>> {
        at(self.metrics.get(name)?, when)
    }

    /// How a run of `lane` starting at `when` ends, if the facts say.
    pub fn run(&self, lane: &str, when: Timestamp) -> Option<RunFact> {
        at(self.runs.get(lane)?, when).copied()
    }

    /// The metric names the facts give values for.
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        self.metrics.keys().map(String::as_str)
    }

    /// The lanes the facts say something about.
    pub fn run_lanes(&self) -> impl Iterator<Item = &str> {
        self.runs.keys().map(String::as_str)
    }

    /// Reads a facts file; times without an offset are in its `timezone:`, else in `zone`.
    pub fn load(path: &Path, zone: &TimeZone) -> Result<Self, FactsError> {
        let text = std::fs::read_to_string(path).map_err(|source| FactsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text, zone)
    }

    /// [`Self::load`] on text already read (`path` names it in errors).
    pub fn parse(path: &Path, text: &str, zone: &TimeZone) -> Result<Self, FactsError> {
        let raw: RawFacts = if text.trim().is_empty() {
            RawFacts::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| FactsError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        let invalid = |place: String, message: String| FactsError::Invalid {
            path: path.to_path_buf(),
            place,
            message,
        };
        let zone = match &raw.timezone {
            Some(name) => TimeZone::get(name).map_err(|e| {
                invalid(
                    "timezone".into(),
                    format!("`{name}` is not an IANA time zone ({e}); write e.g. Europe/Berlin"),
                )
            })?,
            None => zone.clone(),
        };
        let mut facts = Facts::default();
        for (url, entries) in raw.http {
            let mut spans = Vec::new();
            for (i, e) in entries.into_iter().enumerate() {
                let place = format!("http.\"{url}\"[{i}]");
                let (from, to) =
                    range(&e.from, &e.to, &e.on, &zone).map_err(|m| invalid(place.clone(), m))?;
                let value = match (e.status, e.down) {
                    (Some(status), None | Some(false)) => {
                        if !(100..=599).contains(&status) {
                            return Err(invalid(
                                place,
                                format!("status {status} is not an HTTP status (100-599)"),
                            ));
                        }
                        HttpFact::Status {
                            status,
                            latency_ms: e.latency_ms.unwrap_or(1.0).max(0.0),
                        }
                    }
                    (None, Some(true)) => HttpFact::Down {
                        error: e.error.unwrap_or_else(|| "connection refused".into()),
                    },
                    _ => {
                        return Err(invalid(
                            place,
                            "give either `status: N` (a response) or `down: true` (no response)"
                                .into(),
                        ));
                    }
                };
                spans.push(Span { from, to, value });
            }
            facts.http.insert(url, spans);
        }
        for (name, entries) in raw.metrics {
            let mut spans = Vec::new();
            for (i, e) in entries.into_iter().enumerate() {
                let place = format!("metrics.{name}[{i}]");
                let (from, to) =
                    range(&e.from, &e.to, &e.on, &zone).map_err(|m| invalid(place.clone(), m))?;
                let value = match (e.value, e.error) {
                    (Some(v), None) if v.is_finite() => Ok(v),
                    (None, Some(error)) => Err(error),
                    _ => {
                        return Err(invalid(
                            place,
                            "give either `value: NUMBER` or `error: TEXT` (the metric cannot be read)"
                                .into(),
                        ));
                    }
                };
                spans.push(Span { from, to, value });
            }
            facts.metrics.insert(name, spans);
        }
        for (lane, entries) in raw.runs {
            let mut spans = Vec::new();
            for (i, e) in entries.into_iter().enumerate() {
                let place = format!("runs.{lane}[{i}]");
                let (from, to) =
                    range(&e.from, &e.to, &e.on, &zone).map_err(|m| invalid(place.clone(), m))?;
                let outcome = match e.outcome.as_str() {
                    "success" => RunResult::Success,
                    "failure" => RunResult::Failure,
                    other => {
                        return Err(invalid(
                            place,
                            format!("outcome `{other}`: write success or failure"),
                        ));
                    }
                };
                let duration = e
                    .duration
                    .as_deref()
                    .map(parse_length)
                    .transpose()
                    .map_err(|m| invalid(place.clone(), format!("duration: {m}")))?;
                spans.push(Span {
                    from,
                    to,
                    value: RunFact { outcome, duration },
                });
            }
            facts.runs.insert(lane, spans);
        }
        Ok(facts)
    }
}

/// A run length: a duration, or `0` for a run that ends as it starts.
pub fn parse_length(text: &str) -> Result<Duration, String> {
    match crate::model::duration::parse(text) {
        Ok(d) => Ok(d),
        Err(crate::model::duration::DurationError::Zero(_)) => Ok(Duration::ZERO),
        Err(_) if text.trim() == "0" => Ok(Duration::ZERO),
        Err(e) => Err(e.to_string()),
    }
}

/// An instant as written: RFC 3339 with an offset, or a local date and time in `zone`.
pub fn parse_time(text: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    let civil = t.parse::<jiff::civil::DateTime>().map_err(|_| {
        format!("`{t}` is not a time; write 2026-12-01T02:00 (local) or 2026-12-01T02:00:00Z")
    })?;
    civil
        .to_zoned(zone.clone())
        .map(|z| z.timestamp())
        .map_err(|e| format!("`{t}`: {e}"))
}

/// A range from its `from`/`to` or its `on` date.
fn range(
    from: &Option<String>,
    to: &Option<String>,
    on: &Option<String>,
    zone: &TimeZone,
) -> Result<(Option<Timestamp>, Option<Timestamp>), String> {
    if let Some(day) = on {
        if from.is_some() || to.is_some() {
            return Err("give `on: DATE` or `from`/`to`, not both".into());
        }
        let date: jiff::civil::Date = day
            .trim()
            .parse()
            .map_err(|_| format!("on: `{day}` is not a date; write 2026-12-03"))?;
        let bad = |e: jiff::Error| format!("on: `{day}`: {e}");
        let start = date.to_zoned(zone.clone()).map_err(bad)?;
        let end = date
            .tomorrow()
            .and_then(|d| d.to_zoned(zone.clone()))
            .map_err(bad)?;
        return Ok((Some(start.timestamp()), Some(end.timestamp())));
    }
    let from = from
        .as_deref()
        .map(|t| parse_time(t, zone))
        .transpose()
        .map_err(|m| format!("from: {m}"))?;
    let to = to
        .as_deref()
        .map(|t| parse_time(t, zone))
        .transpose()
        .map_err(|m| format!("to: {m}"))?;
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(format!("the range ends ({t}) before it starts ({f})"));
    }
    Ok((from, to))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFacts {
    timezone: Option<String>,
    #[serde(default)]
    http: BTreeMap<String, Vec<RawHttp>>,
    #[serde(default)]
    metrics: BTreeMap<String, Vec<RawMetric>>,
    #[serde(default)]
    runs: BTreeMap<String, Vec<RawRun>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    from: Option<String>,
    to: Option<String>,
    on: Option<String>,
    status: Option<u16>,
    down: Option<bool>,
    error: Option<String>,
    latency_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    from: Option<String>,
    to: Option<String>,
    on: Option<String>,
    value: Option<f64>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    from: Option<String>,
    to: Option<String>,
    on: Option<String>,
    outcome: String,
    duration: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn the_last_written_range_covering_an_instant_wins() {
        let yaml = r#"
timezone: Europe/Berlin
http:
  "http://p/":
    - { status: 200 }
    - { from: "2026-12-01T02:00", to: "2026-12-01T03:30", down: true }
metrics:
  m:
    - { value: 1 }
    - { from: "2026-12-01T09:00:00Z", to: "2026-12-01T10:00:00Z", value: 900 }
runs:
  backup:
    - { on: 2026-12-03, outcome: failure }
"#;
        let f = Facts::parse(Path::new("f.yaml"), yaml, &TimeZone::UTC).expect("facts");
        // 02:00 Berlin is 01:00Z; `to` is exclusive.
        assert!(matches!(
            f.http("http://p/", ts("2026-12-01T00:59:59Z")),
            Some(HttpFact::Status { status: 200, .. })
        ));
        assert!(matches!(
            f.http("http://p/", ts("2026-12-01T01:00:00Z")),
            Some(HttpFact::Down { .. })
        ));
        assert!(matches!(
            f.http("http://p/", ts("2026-12-01T02:30:00Z")),
            Some(HttpFact::Status { .. })
        ));
        assert_eq!(f.http("http://q/", ts("2026-12-01T02:30:00Z")), None);
        assert_eq!(f.metric("m", ts("2026-12-01T09:30:00Z")), Some(&Ok(900.0)));
        assert_eq!(f.metric("m", ts("2026-12-01T10:00:00Z")), Some(&Ok(1.0)));
        let fails = |t| f.run("backup", ts(t)).map(|r| r.outcome);
        assert_eq!(fails("2026-12-02T22:59:59Z"), None);
        assert_eq!(fails("2026-12-02T23:00:00Z"), Some(RunResult::Failure));
        assert_eq!(fails("2026-12-03T22:59:59Z"), Some(RunResult::Failure));
        assert_eq!(fails("2026-12-03T23:00:00Z"), None);
    }

    #[test]
    fn unclear_entries_are_refused_with_their_place() {
        let bad = [
            (
                "http: { \"u\": [ { status: 200, down: true } ] }",
                "http.\"u\"[0]",
            ),
            ("metrics: { m: [ { } ] }", "metrics.m[0]"),
            ("runs: { a: [ { outcome: maybe } ] }", "runs.a[0]"),
            (
                "runs: { a: [ { outcome: failure, from: 2026-12-02T00:00:00Z, to: 2026-12-01T00:00:00Z } ] }",
                "runs.a[0]",
            ),
        ];
        for (yaml, place) in bad {
            let e = Facts::parse(Path::new("f.yaml"), yaml, &TimeZone::UTC)
                .expect_err(yaml)
                .to_string();
            assert!(e.contains(place), "{e}");
        }
        let e = Facts::parse(Path::new("f.yaml"), "htp: {}", &TimeZone::UTC)
            .expect_err("typo")
            .to_string();
        assert!(e.contains("htp"), "{e}");
    }
}
