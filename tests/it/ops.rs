//! Operating lanes by hand (issue 12): pause and resume with a note, stop a run, logs and
//! history, through the binary and a real daemon.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, log_of, wait_for};
use crate::harness::{Home, lane_yaml, sh};

/// Lane `a` (hourly, recheck hourly) behind a backup-recency gate on lane `b` (off, never run):
/// `a` is due and deferred, and nothing would wake the daemon for an hour.
fn held_home() -> Home {
    let home = Home::standard();
    home.lane("b", "schedule:\n  every: off\ncommand:\n  argv: [true]\n");
    home.lane(
        "a",
        &format!(
            "{}recheck: 1h\n",
            lane_yaml(
                "1h",
                "  - use: backup-recency\n    with: { lane: b, max_age: 1h }",
                &sh("echo ran-a")
            )
        ),
    );
    home
}

/// Runs the binary as user `alice`.
fn as_alice(home: &Home, args: &[&str]) -> std::process::Output {
    home.command(args)
        .env("USER", "alice")
        .output()
        .expect("run lanekeeper")
}

fn ok_as_alice(home: &Home, args: &[&str]) -> String {
    let out = as_alice(home, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn episode_reason(s: &Value) -> Option<&str> {
    s["episode"]["reason"].as_str()
}

#[test]
fn a_running_daemon_sees_a_pause_at_once_and_a_resume_lets_the_lane_run() {
    let home = held_home();
    let _daemon = Daemon::start(&home);
    home.wait_status("a", "held by the backup gate", |s| {
        episode_reason(s) == Some("backup-stale")
    });

    // The daemon sleeps for an hour (recheck), so only the pause can wake it.
    ok_as_alice(&home, &["pause", "a", "--note", "disk swap, ask alice"]);
    let s = home.wait_status("a", "the daemon deciding `paused`", |s| {
        episode_reason(s) == Some("paused")
    });
    assert_eq!(s["paused"]["note"], "disk swap, ask alice", "{s}");
    assert_eq!(s["paused"]["by"], "alice", "{s}");
    assert!(s["paused"]["at"].is_string(), "{s}");
    assert!(
        s["last_run_at"].is_null(),
        "a due, paused lane does not start: {s}"
    );
    let text = home.ok(&["status"]);
    assert!(
        text.contains("paused") && text.contains("disk swap, ask alice") && text.contains("alice"),
        "{text}"
    );
    let explain = home.ok(&["explain", "a"]);
    assert!(
        explain.contains("deferred: paused") && explain.contains("disk swap, ask alice"),
        "{explain}"
    );
    let check: Value = serde_json::from_str(home.ok(&["check", "a", "--json"]).trim()).unwrap();
    assert_eq!(check["reason"], "paused", "{check}");
    assert_eq!(check["gate"], "pause", "{check}");

    // Now only the pause holds it: the backup succeeds (no event for the daemon), then the
    // resume wakes it and it runs.
    home.ok(&["record", "b", "--outcome", "success"]);
    ok_as_alice(&home, &["resume", "a"]);
    let s = home.wait_status("a", "the resumed lane to run", |s| {
        s["last_result"] == "success"
    });
    assert!(s["paused"].is_null(), "{s}");
    assert!(
        !log_of(&home).to_lowercase().contains("reload"),
        "no reload was needed:\n{}",
        log_of(&home)
    );
}

#[test]
fn a_pause_until_ends_by_itself_and_survives_a_restart() {
    let home = held_home();
    home.ok(&["record", "b", "--outcome", "success"]);
    // Paused before the daemon starts: the pause is stored, not held by a process.
    ok_as_alice(&home, &["pause", "a", "--note", "short", "--until", "2s"]);
    let until = home.status("a")["paused"]["until"]
        .as_str()
        .expect("until")
        .to_string();
    // The engine treats a pause as none from its `until` on (a what-if, nothing waits).
    let later: Value =
        serde_json::from_str(home.ok(&["check", "a", "--at", &until, "--json"]).trim()).unwrap();
    assert_eq!(later["outcome"], "trigger", "{later}");

    let started = Instant::now();
    let _daemon = Daemon::start(&home);
    home.wait_status("a", "paused at the first pass", |s| {
        episode_reason(s) == Some("paused") || s["last_run_at"].is_string()
    });
    let s = home.wait_status("a", "the run after the pause ended", |s| {
        s["last_result"] == "success"
    });
    let until_t: jiff::Timestamp = until.parse().unwrap();
    let ran: jiff::Timestamp = s["last_run_at"].as_str().unwrap().parse().unwrap();
    assert!(
        ran >= until_t,
        "ran at {ran}, before the pause ended at {until_t}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the daemon woke at the end of the pause"
    );
    assert!(s["paused"].is_null(), "{s}");
    wait_for(&home, "the end of the pause logged", || {
        log_of(&home).contains("Pauses ended at their `until`")
    });
}

#[test]
fn fire_refuses_a_paused_lane_naming_the_note_unless_forced() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[true]"));
    ok_as_alice(&home, &["pause", "--all", "--note", "maintenance window"]);
    let out = home.run(&["fire", "a", "--wait"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("maintenance window")
            && stderr.contains("alice")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(home.status("a")["last_run_at"].is_null());
    home.ok(&["fire", "a", "--wait", "--force"]);
    assert_eq!(home.status("a")["last_result"], "success");
    let out = home.ok(&["resume", "--all"]);
    assert!(out.contains("resumed"), "{out}");
    assert!(home.status("a")["paused"].is_null());
    home.ok(&["fire", "a", "--wait"]);
}
