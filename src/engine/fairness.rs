//! Concurrency groups and the picker: which of several due lanes of a group runs first.
//!
//! Pure, like the rest of the engine: it rewrites a pass's decisions given the lanes, their
//! recorded states (runs in any process count) and the group limits. A lane kept back turns into
//! a `peer-task-running` deferral that names who holds the group or who goes first, and which
//! part of the key decided. The picker is the original platform's: lowest `priority` first, then
//! the most overdue (time since the last run divided by the interval; a lane never run is
//! infinitely overdue), then the name. A pass decides its lanes in this order, so a lane admitted
//! earlier counts as starting for every later one, in its group and in contention gates.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::schedule::{Timing, next_due};
use crate::compile::Lane;
use crate::model::decision::{ChainEntry, Decision, GateVerdict, Outcome};
use crate::model::lane_state::LaneStates;

/// The reason a lane kept back by its group defers with.
pub const REASON_GROUP: &str = "peer-task-running";
/// The name of the group gate in the chain.
pub const GROUP_GATE: &str = "group";
/// The reason a lane that is itself still running defers with.
pub const REASON_RUNNING: &str = "already-running";

/// How overdue a lane is: elapsed since its last run over its interval.
pub fn overdue(lane: &Lane, states: &LaneStates, now: Timestamp) -> f64 {
    let state = states.get(&lane.name);
    let Some(last) = state.and_then(|s| s.last_run_at) else {
        return f64::INFINITY;
    };
    let elapsed = (now.as_millisecond() - last.as_millisecond()) as f64;
    match next_due(
        &Timing::of(lane),
        Some(last),
        state.and_then(|s| s.downtime),
    ) {
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

/// The picker's key: lower priority first, then the most overdue, then the name.
#[derive(Clone, Copy)]
struct Key<'a> {
    priority: i64,
    overdue: f64,
    lane: &'a Lane,
}

impl Key<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .cmp(&other.priority)
            .then(other.overdue.total_cmp(&self.overdue))
            .then(self.lane.name.cmp(&other.lane.name))
    }

    /// Why `self` was decided before `other`, naming what decided.
    fn why_before(&self, other: &Self, max_concurrent: &dyn Fn(&str) -> usize) -> String {
        let (me, them) = (&self.lane.name, &other.lane.name);
        if waits_for(other.lane, self.lane, max_concurrent) {
            format!("{them}'s preconditions read {me}'s state, so {me} is decided first")
        } else if self.priority != other.priority {
            format!(
                "lower priority: {} before {}",
                self.priority, other.priority
            )
        } else if self.overdue.total_cmp(&other.overdue).is_ne() {
            format!(
                "same priority {}, more overdue: {} against {}",
                self.priority,
                overdue_words(self.overdue),
                overdue_words(other.overdue)
            )
        } else {
            format!(
                "same priority {} and equally overdue, so the name decided: {me} before {them}",
                self.priority
            )
        }
    }
}

fn overdue_words(x: f64) -> String {
    if x.is_infinite() {
        "never run".into()
    } else {
        format!("{x:.2} intervals since its last run")
    }
}

fn key<'a>(lane: &'a Lane, states: &LaneStates, now: Timestamp) -> Key<'a> {
    Key {
        priority: lane.priority,
        overdue: overdue(lane, states, now),
        lane,
    }
}

/// Whether two lanes share a group that runs one lane at a time: the group already keeps them
/// apart, so neither needs to be decided after the other.
fn exclusive(a: &Lane, b: &Lane, max_concurrent: &dyn Fn(&str) -> usize) -> bool {
    match (&a.group, &b.group) {
        (Some(x), Some(y)) => x == y && max_concurrent(x) <= 1,
        _ => false,
    }
}

/// Whether `reader` is decided after `read` because its preconditions read `read`'s state.
fn waits_for(reader: &Lane, read: &Lane, max_concurrent: &dyn Fn(&str) -> usize) -> bool {
    let reads = |a: &Lane, b: &Lane| a.reads().any(|l| l == b.name);
    reads(reader, read) && !reads(read, reader) && !exclusive(reader, read, max_concurrent)
}

/// The order in which a pass decides and admits its lanes. It is the picker's (priority, most
/// overdue, name), except that a lane whose preconditions read another lane's state is decided
/// after that lane: if both trigger, the one read starts first and the reader sees it starting,
/// instead of both starting at once. Two lanes of one group that runs one at a time need no such
/// edge (the group keeps them apart and the picker decides), and lanes that read each other,
/// directly or in a cycle, are ordered by the picker among themselves.
pub fn picker_order(
    lanes: &[&Lane],
    states: &LaneStates,
    now: Timestamp,
    max_concurrent: &dyn Fn(&str) -> usize,
) -> Vec<usize> {
    let n = lanes.len();
    let keys: Vec<Key<'_>> = lanes.iter().map(|l| key(l, states, now)).collect();
    let mut by_key: Vec<usize> = (0..n).collect();
    by_key.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut rank = vec![0; n];
    for (r, &i) in by_key.iter().enumerate() {
        rank[i] = r;
    }
    let index: BTreeMap<&str, usize> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    // reads[r]: the lanes r must follow.
    let reads: Vec<Vec<usize>> = lanes
        .iter()
        .map(|lane| {
            let mut read: Vec<usize> = lane
                .reads()
                .filter_map(|name| index.get(name).copied())
                .filter(|&w| !exclusive(lane, lanes[w], max_concurrent))
                .collect();
            read.sort_unstable();
            read.dedup();
            read
        })
        .collect();
    if reads.iter().all(Vec::is_empty) {
        return by_key;
    }
    let component = components(&reads);
    let count = component.iter().copied().max().map_or(0, |m| m + 1);
    // Each component's members in the picker's order, and its edges to the components it reads.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for &i in &by_key {
        members[component[i]].push(i);
    }
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut waiting = vec![0usize; count];
    for (r, read) in reads.iter().enumerate() {
        for &w in read {
            let (cr, cw) = (component[r], component[w]);
            if cr != cw && !readers[cw].contains(&cr) {
                readers[cw].push(cr);
                waiting[cr] += 1;
            }
        }
    }
    // Components in the order of their best-ranked member, once what they read is placed.
    let first = |c: usize| rank[members[c][0]];
    let mut ready: std::collections::BTreeSet<(usize, usize)> = (0..count)
        .filter(|&c| waiting[c] == 0)
        .map(|c| (first(c), c))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some((_, c)) = ready.pop_first() {
        order.extend_from_slice(&members[c]);
        for &reader in &readers[c] {
            waiting[reader] -= 1;
            if waiting[reader] == 0 {
                ready.insert((first(reader), reader));
            }
        }
    }
    order
}

/// Strongly connected components of the read graph (Tarjan, iterative): lanes that read each
/// other, directly or around a cycle, share a component.
fn components(reads: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = reads.len();
    let (mut index, mut low) = (vec![UNSEEN; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let (mut stack, mut component) = (Vec::new(), vec![UNSEEN; n]);
    let (mut next_index, mut next_component) = (0, 0);
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (node, position in its edge list)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[v] == UNSEEN {
                index[v] = next_index;
                low[v] = next_index;
                next_index += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = reads[v].get(*edge) {
                *edge += 1;
                if index[w] == UNSEEN {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = next_component;
                    if w == v {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

/// Who holds a place in a group.
#[derive(Clone)]
enum Holder<'a> {
    /// A run recorded as in progress, in any process on the home.
    Running { lane: String, pid: u32 },
    /// A lane admitted earlier in this pass.
    Starting(Key<'a>),
}

/// Concurrency as a pass goes: runs recorded in any process, plus the triggers admitted so far
/// in this pass. Lanes are admitted one by one in the picker's order, so a lane dispatched
/// earlier in the pass holds its place for every later one.
pub struct Admission<'a> {
    states: &'a LaneStates,
    now: Timestamp,
    max_concurrent: &'a dyn Fn(&str) -> usize,
    groups: BTreeMap<&'a str, Vec<Holder<'a>>>,
}

impl<'a> Admission<'a> {
    /// Starts a pass over `lanes` with their recorded states.
    pub fn new(
        lanes: &[&'a Lane],
        states: &'a LaneStates,
        now: Timestamp,
        max_concurrent: &'a dyn Fn(&str) -> usize,
    ) -> Self {
        let mut groups: BTreeMap<&str, Vec<Holder<'_>>> = BTreeMap::new();
        for lane in lanes {
            if let (Some(group), Some(run)) = (
                lane.group.as_deref(),
                states.get(&lane.name).and_then(|s| s.running.as_ref()),
            ) {
                groups.entry(group).or_default().push(Holder::Running {
                    lane: lane.name.clone(),
                    pid: run.pid,
                });
            }
        }
        Self {
            states,
            now,
            max_concurrent,
            groups,
        }
    }

    /// Holds back a trigger that its lane's own run or its group's limit forbids; otherwise
    /// counts the lane as starting. Returns whether the decision is still a trigger.
    pub fn admit(&mut self, d: &mut Decision, lane: &'a Lane) -> bool {
        if d.outcome != Outcome::Trigger {
            return false;
        }
        // A lane still running is never started twice.
        if let Some(run) = self.states.get(&d.lane).and_then(|s| s.running.as_ref()) {
            let detail = format!("still running as pid {} since {}", run.pid, run.started_at);
            hold(
                d,
                REASON_RUNNING,
                "lock",
                detail,
                "its current run ends".into(),
            );
            return false;
        }
        let Some(group) = lane.group.as_deref() else {
            return true;
        };
        let limit = (self.max_concurrent)(group);
        let mine = key(lane, self.states, self.now);
        let holders = self.groups.entry(group).or_default();
        if holders.len() < limit {
            holders.push(Holder::Starting(mine));
            return true;
        }
        let starting: Vec<Key<'_>> = holders
            .iter()
            .filter_map(|h| match h {
                Holder::Starting(k) => Some(*k),
                Holder::Running { .. } => None,
            })
            .collect();
        let running: Vec<String> = holders
            .iter()
            .filter_map(|h| match h {
                Holder::Running { lane, pid } => Some(format!("{lane} (pid {pid})")),
                Holder::Starting(_) => None,
            })
            .collect();
        let (detail, hint) = if starting.is_empty() {
            (
                format!(
                    "group {group} is full ({} of {limit} running): {}",
                    running.len(),
                    running.join(", ")
                ),
                format!("a run of group {group} finishes"),
            )
        } else {
            let first: Vec<String> = starting
                .iter()
                .map(|k| {
                    format!(
                        "{} ({})",
                        k.lane.name,
                        k.why_before(&mine, self.max_concurrent)
                    )
                })
                .collect();
            let names: Vec<&str> = starting.iter().map(|k| k.lane.name.as_str()).collect();
            let also = if running.is_empty() {
                String::new()
            } else {
                format!("; already running: {}", running.join(", "))
            };
            (
                format!(
                    "group {group} allows {limit} at once; {} goes first in this pass: {}{also}",
                    names.join(" and "),
                    first.join("; ")
                ),
                format!("{} has run", names.join(" and ")),
            )
        };
        hold(d, REASON_GROUP, GROUP_GATE, detail, hint);
        false
    }
}
