//! `lanekeeper diff`: two simulations of the same period (current rules, candidate rules)
//! compared lane by lane, in the words an operator reviewing a rules change wants: how many
//! more or fewer triggers, how much longer or shorter each deferral reason held a lane back.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use super::report::{LaneReport, Report};
use crate::model::duration::format_ms;

/// What one side did with a lane over the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneSummary {
    /// Triggers (forced ones included).
    pub triggers: usize,
    /// Triggers forced by the starvation guard.
    pub forced: usize,
    /// Runs started.
    pub runs: usize,
    /// Runs that failed.
    pub failed: usize,
    /// Milliseconds held back, by deferral reason.
    pub held_ms: BTreeMap<String, i64>,
    /// When it triggered.
    pub trigger_times: Vec<Timestamp>,
}

/// A lane whose decisions differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneDiff {
    /// The lane.
    pub lane: String,
    /// Under the current rules (`None`: no such lane there).
    pub current: Option<LaneSummary>,
    /// Under the candidate rules (`None`: no such lane there).
    pub candidate: Option<LaneSummary>,
    /// The differences in words, e.g. `3 triggers instead of 0`.
    pub differences: Vec<String>,
}

fn summary(lane: &LaneReport, end: Timestamp) -> LaneSummary {
    let mut held_ms = BTreeMap::new();
    for d in &lane.deferrals {
        let ms = d.to.unwrap_or(end).as_millisecond() - d.from.as_millisecond();
        *held_ms.entry(d.reason.clone()).or_insert(0) += ms.max(0);
    }
    LaneSummary {
        triggers: lane.triggers.len(),
        forced: lane.forced(),
        runs: lane.runs.len(),
        failed: lane.failed(),
        held_ms,
        trigger_times: lane.triggers.iter().map(|t| t.at).collect(),
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The differences between two summaries of the same lane, in words.
fn differences(cur: &LaneSummary, cand: &LaneSummary) -> Vec<String> {
    let mut out = Vec::new();
    if cur.triggers != cand.triggers {
        out.push(format!(
            "{} instead of {}",
            plural(cand.triggers, "trigger"),
            cur.triggers
        ));
    } else if cur.trigger_times != cand.trigger_times {
        let first = cur
            .trigger_times
            .iter()
            .zip(&cand.trigger_times)
            .find(|(a, b)| a != b);
        if let Some((a, b)) = first {
            out.push(format!(
                "triggers at other times: first at {b} instead of {a}"
            ));
        }
    }
    if cur.forced != cand.forced {
        out.push(format!("{} forced instead of {}", cand.forced, cur.forced));
    }
    if cur.failed != cand.failed {
        out.push(format!(
            "{} instead of {}",
            plural(cand.failed, "failed run"),
            cur.failed
        ));
    }
    let reasons: BTreeSet<&String> = cur.held_ms.keys().chain(cand.held_ms.keys()).collect();
    for reason in reasons {
        let a = cur.held_ms.get(reason).copied().unwrap_or(0);
        let b = cand.held_ms.get(reason).copied().unwrap_or(0);
        if b > a {
            out.push(format!("deferred {} longer, by {reason}", format_ms(b - a)));
        } else if a > b {
            out.push(format!(
                "deferred {} shorter, by {reason}",
                format_ms(a - b)
            ));
        }
    }
    out
}

/// The lanes whose decisions differ between the two reports of the same period, by name.
pub fn compare(current: &Report, candidate: &Report) -> Vec<LaneDiff> {
    let cur: BTreeMap<&str, LaneSummary> = current
        .lanes
        .iter()
        .map(|l| (l.lane.as_str(), summary(l, current.to)))
        .collect();
    let cand: BTreeMap<&str, LaneSummary> = candidate
        .lanes
        .iter()
        .map(|l| (l.lane.as_str(), summary(l, candidate.to)))
        .collect();
    let names: BTreeSet<&str> = cur.keys().chain(cand.keys()).copied().collect();
    let mut out = Vec::new();
    for name in names {
        let (a, b) = (cur.get(name), cand.get(name));
        let diffs = match (a, b) {
            (Some(a), Some(b)) => differences(a, b),
            (Some(a), None) => vec![format!(
                "only in the current rules ({})",
                plural(a.triggers, "trigger")
            )],
            (None, Some(b)) => vec![format!(
                "only in the candidate rules ({})",
                plural(b.triggers, "trigger")
            )],
            (None, None) => Vec::new(),
        };
        if !diffs.is_empty() {
            out.push(LaneDiff {
                lane: name.to_string(),
                current: a.cloned(),
                candidate: b.cloned(),
                differences: diffs,
            });
        }
    }
    out
}
