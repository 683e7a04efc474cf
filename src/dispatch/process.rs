//! Process facts from `/proc`, and signals to process groups.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::compile::Lane;
use crate::state::{LaneStates, Store, StoreError};

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or
/// `None` if there is no such process or it is a zombie.
///
/// Paired with the pid it identifies one process for good: a reused pid has a later start.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3, so field 22 is the 20th of these (we consumed one).
    fields.nth(18)?.parse().ok()
}

/// The live (not zombie) processes descended from `root`, found through their parent links in
/// `/proc`. A process that left its group with `setsid` is still found while its ancestry
/// leads to `root`, and once orphaned it is `root`'s own child if `root` is a subreaper.
pub fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid
            && state != "Z"
            && state != "X"
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether the process `pid` that started at `pid_start` is still alive.
pub fn is_alive(pid: u32, pid_start: u64) -> bool {
    start_time(pid) == Some(pid_start)
}

/// Drops recorded runs whose process is gone, so readers see only real ones.
pub fn prune_dead(states: &mut LaneStates) {
    for state in states.values_mut() {
        if let Some(r) = &state.running
            && !r.is_alive(is_alive)
        {
            state.running = None;
        }
    }
}

/// Every lane's state as recorded, with runs whose process is gone no longer counted as
/// running, and an empty state for each of `lanes` that has none yet (so plugins see them all).
/// What every reader of lane states (check, run, status, /status, /metrics) starts from.
pub fn live_states(store: &dyn Store, lanes: &[Lane]) -> Result<LaneStates, StoreError> {
    let mut states = store.lane_states()?;
    prune_dead(&mut states);
    for lane in lanes {
        states.entry(lane.name.clone()).or_default();
    }
    Ok(states)
}

/// Gives every lane state the replicas alive now (`hosts:` needs one of them): on a shared
/// store those seen within `ttl`, otherwise `host` alone, the only one there is.
pub fn note_alive_hosts(
    states: &mut LaneStates,
    store: &dyn Store,
    host: &str,
    ttl: std::time::Duration,
) -> Result<(), StoreError> {
    let alive: std::sync::Arc<[String]> = store
        .alive_hosts(ttl)?
        .unwrap_or_else(|| vec![host.to_string()])
        .into();
    for state in states.values_mut() {
        state.alive_hosts = Some(std::sync::Arc::clone(&alive));
    }
    Ok(())
}

/// Sends `signal` to the process group led by `pgid`; true if any member received it.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    match i32::try_from(pgid) {
        Ok(p) if p > 1 => killpg(Pid::from_raw(p), signal).is_ok(),
        _ => false,
    }
}

/// Whether any process of the group still exists.
pub fn group_alive(pgid: u32) -> bool {
    match i32::try_from(pgid) {
        Ok(p) if p > 1 => killpg(Pid::from_raw(p), None).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable_and_identifies_us() {
        let me = std::process::id();
        let t = start_time(me).expect("own stat");
        assert_eq!(start_time(me), Some(t));
        assert!(is_alive(me, t));
        assert!(!is_alive(me, t + 1));
    }
}
