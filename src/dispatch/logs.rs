//! Run logs: one file per run under `state/runs/<lane>/`, capped when the run ends and pruned
//! by count and age, so a chatty job cannot fill the disk over weeks.
//!
//! The child writes straight to the file (not through a pipe we must drain), so a child that
//! outlives its supervisor keeps logging safely; the cap is applied once the run has ended.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::SystemTime;

use crate::config::settings::RunLogs;

/// Cuts `log` to `max_bytes`, keeping its head and tail around a marker line.
pub fn cap(log: &Path, max_bytes: u64) -> std::io::Result<()> {
    let len = fs::metadata(log)?.len();
    if len <= max_bytes {
        return Ok(());
    }
    let half = max_bytes / 2;
    let mut file = File::open(log)?;
    let mut head = vec![0; usize::try_from(half).unwrap_or(usize::MAX)];
    file.read_exact(&mut head)?;
    file.seek(SeekFrom::Start(len - half))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let tmp = log.with_extension("log.cap");
    let mut out = File::create(&tmp)?;
    out.write_all(&head)?;
    writeln!(
        out,
        "\n[lanekeeper: {} bytes cut; the log cap is {max_bytes} bytes]",
        len - 2 * half
    )?;
    out.write_all(&tail)?;
    out.sync_all()?;
    fs::rename(tmp, log)
}

/// Removes the oldest logs of a lane beyond `keep`, and any older than `max_age` at `now`.
pub fn prune(dir: &Path, rules: &RunLogs, now: SystemTime) -> std::io::Result<usize> {
    let mut logs: Vec<_> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.path())
        .collect();
    // Names are start times, so lexical order is age order.
    logs.sort();
    let mut removed = 0;
    let excess = logs.len().saturating_sub(rules.keep);
    for (i, path) in logs.iter().enumerate() {
        let too_old = fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > rules.max_age);
        if (i < excess || too_old) && fs::remove_file(path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Caps the log of a finished run and prunes its lane's old logs as of `now`; problems are
/// logged, not fatal (the run's outcome is already recorded).
pub fn tidy(log: &Path, rules: &RunLogs, now: SystemTime) {
    if let Err(e) = cap(log, rules.max_bytes) {
        tracing::warn!(log = %log.display(), "Could not cap the run log: {e}.");
    }
    if let Some(dir) = log.parent()
        && let Err(e) = prune(dir, rules, now)
    {
        tracing::warn!(dir = %dir.display(), "Could not prune old run logs: {e}.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_keeping_head_and_tail_and_prunes_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("20260101T000000.000Z.log");
        fs::write(&log, format!("HEAD{}TAIL", "x".repeat(10_000))).unwrap();
        cap(&log, 1000).unwrap();
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("HEAD") && text.ends_with("TAIL") && text.contains("bytes cut"));
        assert!(text.len() < 1200);

        for i in 2..6 {
            fs::write(dir.path().join(format!("2026010{i}T000000.000Z.log")), "x").unwrap();
        }
        let rules = RunLogs {
            keep: 2,
            ..RunLogs::default()
        };
        // As of the moment they were written, none is too old: only the count rule removes.
        let now = fs::metadata(&log).unwrap().modified().unwrap();
        assert_eq!(prune(dir.path(), &rules, now).unwrap(), 3);
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2);
    }
}
