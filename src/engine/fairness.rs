//! Concurrency groups and the picker: which of several due lanes of a group runs first.
//!
//! Pure, like the rest of the engine: it rewrites a pass's decisions given the lanes, their
//! recorded states (runs in any process count) and the group limits. A lane kept back turns into
//! a `peer-task-running` deferral that names who holds the group or who goes first. The picker
//! is the original platform's: lowest `priority` first, then the most overdue (time since the
//! last run divided by the interval; a lane never run is infinitely overdue), then the name.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::decision::{ChainEntry, Decision, GateVerdict, Outcome};
use super::schedule::next_due;
use crate::config::Lane;
use crate::state::LaneStates;

/// The reason a lane kept back by its group defers with.
pub const REASON_GROUP: &str = "peer-task-running";
/// The name of the group gate in the chain.
pub const GROUP_GATE: &str = "group";
/// The reason a lane that is itself still running defers with.
pub const REASON_RUNNING: &str = "already-running";

/// How overdue a lane is: elapsed since its last run over its interval.
pub fn overdue(lane: &Lane, states: &LaneStates, now: Timestamp) -> f64 {
    let Some(last) = states.get(&lane.name).and_then(|s| s.last_run_at) else {
        return f64::INFINITY;
    };
    let elapsed = (now.as_millisecond() - last.as_millisecond()) as f64;
    match next_due(&lane.schedule, &lane.zone, Some(last)) {
        Some(due) if due > last => elapsed / (due.as_millisecond() - last.as_millisecond()) as f64,
        _ => elapsed,
    }
}

fn hold(d: &mut Decision, reason: &str, gate: &str, detail: String, hint: String) {
    d.outcome = Outcome::Deferred;
    d.source = None;
    d.reason = Some(reason.to_string());
    d.gate = Some(gate.to_string());
    d.detail = Some(detail.clone());
    let mut entry = ChainEntry::builtin(gate, GateVerdict::Defer, Some(reason), detail);
    entry.hint = Some(hint);
    d.chain.push(entry);
}

/// Holds back triggers that their lane's own run or their group's limit forbids.
/// `max_concurrent` gives each group's limit.
pub fn arbitrate(
    decisions: &mut [Decision],
    lanes: &[&Lane],
    states: &LaneStates,
    now: Timestamp,
    max_concurrent: &dyn Fn(&str) -> usize,
) {
    let lane_of: BTreeMap<&str, &Lane> = lanes.iter().map(|l| (l.name.as_str(), *l)).collect();

    // A lane still running is never started twice.
    for d in decisions
        .iter_mut()
        .filter(|d| d.outcome == Outcome::Trigger)
    {
        if let Some(run) = states.get(&d.lane).and_then(|s| s.running.as_ref()) {
            let detail = format!("still running as pid {} since {}", run.pid, run.started_at);
            hold(
                d,
                REASON_RUNNING,
                "lock",
                detail,
                "its current run ends".into(),
            );
        }
    }

    // Running lanes per group, from every process on the home.
    let mut running: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for lane in lanes {
        if let (Some(group), Some(run)) = (
            lane.group.as_deref(),
            states.get(&lane.name).and_then(|s| s.running.as_ref()),
        ) {
            running
                .entry(group)
                .or_default()
                .push(format!("{} (pid {})", lane.name, run.pid));
        }
    }

    let mut by_group: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, d) in decisions.iter().enumerate() {
        if d.outcome != Outcome::Trigger {
            continue;
        }
        if let Some(group) = lane_of
            .get(d.lane.as_str())
            .and_then(|l| l.group.as_deref())
        {
            by_group.entry(group).or_default().push(i);
        }
    }

    for (group, mut candidates) in by_group {
        let limit = max_concurrent(group);
        let busy = running.get(group).cloned().unwrap_or_default();
        let free = limit.saturating_sub(busy.len());
        // Keys computed once per candidate, not once per comparison.
        let mut keyed: Vec<(i64, f64, &str, usize)> = candidates
            .iter()
            .map(|&i| {
                let lane = lane_of[decisions[i].lane.as_str()];
                (
                    lane.priority,
                    overdue(lane, states, now),
                    lane.name.as_str(),
                    i,
                )
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(b.2)));
        candidates = keyed.into_iter().map(|k| k.3).collect();
        let winners: Vec<String> = candidates
            .iter()
            .take(free)
            .map(|i| decisions[*i].lane.clone())
            .collect();
        for i in candidates.into_iter().skip(free) {
            let detail = if free == 0 {
                format!(
                    "group {group} is full ({} of {limit} running): {}",
                    busy.len(),
                    busy.join(", ")
                )
            } else {
                format!(
                    "group {group} allows {limit} at once; {} goes first (lower priority, then most overdue)",
                    winners.join(", ")
                )
            };
            let hint = if free == 0 {
                format!("a run of group {group} finishes")
            } else {
                format!("{} has run", winners.join(" and "))
            };
            hold(&mut decisions[i], REASON_GROUP, GROUP_GATE, detail, hint);
        }
    }
}
