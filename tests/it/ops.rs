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

/// Starts a daemon serving HTTP on a free loopback port; returns it and the base URL.
fn serving(home: &Home) -> (Daemon, String) {
    let daemon = Daemon::start_with(home, &["--listen", "127.0.0.1:0"]);
    wait_for(home, "the HTTP endpoint", || {
        log_of(home).contains("HTTP endpoint listening")
    });
    let addr = log_of(home)
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address in the log")
        .to_string();
    (daemon, format!("http://{addr}"))
}

fn get(url: &str) -> String {
    let resp = reqwest::blocking::get(url).expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().expect("body")
}

fn episode_reason(s: &Value) -> Option<&str> {
    s["episode"]["reason"].as_str()
}

#[test]
fn a_running_daemon_sees_a_pause_at_once_and_a_resume_lets_the_lane_run() {
    let home = held_home();
    let (_daemon, base) = serving(&home);
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
    let explain: Value = serde_json::from_str(&home.ok(&["explain", "a", "--json"])).unwrap();
    assert_eq!(explain["paused"]["by"], "alice", "{explain}");
    assert_eq!(explain["reason"], "paused", "{explain}");
    let web: Value = serde_json::from_str(&get(&format!("{base}/status"))).unwrap();
    let a = crate::harness::lane_in(&web, "a");
    assert_eq!(a["paused"]["note"], "disk swap, ask alice", "{web}");
    assert!(
        get(&format!("{base}/")).contains("l.paused"),
        "the page shows pauses"
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

    // Nothing else wakes the daemon before the hourly recheck: the wake rule does, at `until`.
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
    assert!(s["paused"].is_null(), "{s}");
    wait_for(&home, "the end of the pause logged", || {
        log_of(&home).contains("Pauses ended at their `until`")
    });
    let h: Value = serde_json::from_str(&home.ok(&["history", "a", "--json"])).unwrap();
    assert_eq!(h["pauses"][0]["ended_by"], "expired", "{h}");
    assert_eq!(
        h["pauses"][0]["ended_at"].as_str(),
        Some(until.as_str()),
        "{h}"
    );
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

/// A command that ignores TERM, as do its two grandchildren (one in the group, one escaped
/// with `setsid`); it writes their pids to `pids` once they run.
fn stubborn(home: &Home) -> String {
    let pids = home.path().join("pids");
    sh(&format!(
        "trap '' TERM; sleep 300 & a=$!; setsid sleep 300 & b=$!; echo \"$$$$ $a $b\" > {p}.tmp && mv {p}.tmp {p}; echo started; wait",
        p = pids.display()
    ))
}

/// The pids the stubborn command wrote, once it has.
fn wait_pids(home: &Home) -> Vec<i64> {
    let file = home.path().join("pids");
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let pids: Vec<i64> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() == 3 {
                return pids;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stop_ends_a_daemon_run_that_ignores_term_with_its_grandchildren_as_cancelled_without_retry() {
    let home = Home::new();
    home.lane(
        "a",
        &format!(
            "{}retry: {{ delay: 1s, window: 1h }}\n",
            lane_yaml("1h", "", &stubborn(&home))
        ),
    );
    let (_daemon, base) = serving(&home);
    let pids = wait_pids(&home);
    home.wait_status("a", "the run recorded", |s| s["running"].is_object());

    let started = Instant::now();
    let out = as_alice(&home, &["stop", "a", "--grace", "1s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cancelled") && stdout.contains("alice"),
        "{stdout}"
    );
    for pid in pids {
        crate::harness::wait_gone(pid);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "KILL came after the 1s grace, not the lane's 30s"
    );
    let s = home.status("a");
    assert_eq!(s["last_result"], "cancelled", "{s}");
    assert_eq!(s["stopped_by"], "alice", "{s}");
    assert!(home.ok(&["status"]).contains("cancelled by alice"));
    let explain = home.ok(&["explain", "a"]);
    assert!(explain.contains("cancelled by alice"), "{explain}");
    wait_for(&home, "the daemon counting the cancelled run", || {
        get(&format!("{base}/metrics"))
            .contains(r#"lanekeeper_runs_total{lane="a",result="cancelled"} 1"#)
    });
    let h: Value = serde_json::from_str(&home.ok(&["history", "a", "--json"])).unwrap();
    assert_eq!(h["runs"][0]["result"], "cancelled", "{h}");
    assert_eq!(h["runs"][0]["stopped_by"], "alice", "{h}");
    assert_eq!(h["runs"].as_array().unwrap().len(), 1, "{h}");

    // No retry: past the retry delay the lane waits for its schedule.
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5)).to_string();
    let d: Value =
        serde_json::from_str(home.ok(&["check", "a", "--at", &soon, "--json"]).trim()).unwrap();
    assert_eq!(d["reason"], "interval-not-due", "{d}");

    // Nothing runs now: a clear refusal.
    let out = home.run(&["stop", "a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"));
}

#[test]
fn stop_ends_a_run_that_fire_started() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", &stubborn(&home)));
    let fire = home
        .command(&["fire", "a", "--wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pids = wait_pids(&home);
    home.wait_status("a", "the run recorded", |s| s["running"].is_object());
    let out = as_alice(&home, &["stop", "a", "--grace", "500ms"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fired = fire.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&fired.stderr);
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(fired.status.code(), Some(128 + 9), "{stderr}");
    for pid in pids {
        crate::harness::wait_gone(pid);
    }
    assert_eq!(home.status("a")["last_result"], "cancelled");
}

#[test]
fn logs_follow_streams_a_live_run_and_ends_with_it() {
    let home = Home::new();
    let (go, done) = (home.path().join("go"), home.path().join("done"));
    // Each step waits for the test's signal file (bounded), so lines come while the run lives.
    let script = format!(
        "echo first; i=0; while [ ! -e {go} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo second; i=0; while [ ! -e {done} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo last",
        go = go.display(),
        done = done.display()
    );
    home.lane("a", &lane_yaml("1h", "", &sh(&script)));
    home.ok(&["fire", "a"]);

    let mut follow = home
        .command(&["logs", "a", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no `{what}` line from logs --follow"))
    };
    assert_eq!(next("first"), "first");
    std::fs::write(&go, "").unwrap();
    assert_eq!(next("second"), "second");
    assert!(
        follow.try_wait().unwrap().is_none(),
        "still following while the run lives"
    );
    std::fs::write(&done, "").unwrap();
    assert_eq!(next("last"), "last");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = follow.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "logs --follow did not end with the run"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert_eq!(home.status("a")["last_result"], "success");

    // Without --follow: the latest run's log, or the one named.
    let all = home.ok(&["logs", "a"]);
    assert_eq!(all.lines().collect::<Vec<_>>(), ["first", "second", "last"]);
    let history: Value = serde_json::from_str(&home.ok(&["history", "a", "--json"])).unwrap();
    let id = history["runs"][0]["id"].as_i64().unwrap();
    assert_eq!(home.ok(&["logs", "a", "--run", &id.to_string()]), all);
    let out = home.run(&["logs", "a", "--run", "999"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn history_lists_runs_deferral_episodes_and_pauses() {
    let home = held_home();
    home.init_history();
    // Due and held back by the backup gate, twice: one episode of two checks.
    home.ok(&["check", "a"]);
    home.ok(&["check", "a"]);
    home.ok(&["fire", "a", "--wait"]);
    ok_as_alice(&home, &["pause", "a", "--note", "reindex"]);
    ok_as_alice(&home, &["resume", "a"]);

    let h: Value = serde_json::from_str(&home.ok(&["history", "a", "--json"])).unwrap();
    assert_eq!(h["lane"], "a");
    let runs = h["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{h}");
    assert_eq!(runs[0]["result"], "success");
    assert_eq!(runs[0]["source"], "manual");
    assert_eq!(runs[0]["exit"]["code"], 0);
    assert!(runs[0]["duration_ms"].is_i64(), "{h}");
    let deferrals = h["deferrals"].as_array().unwrap();
    assert_eq!(deferrals.len(), 1, "{h}");
    assert_eq!(deferrals[0]["reason"], "backup-stale");
    assert_eq!(deferrals[0]["checks"], 2);
    assert!(deferrals[0]["from"].is_string() && deferrals[0]["to"].is_string());
    let pauses = h["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "{h}");
    assert_eq!(pauses[0]["note"], "reindex");
    assert_eq!(pauses[0]["by"], "alice");
    assert_eq!(pauses[0]["ended_by"], "alice");

    let text = home.ok(&["history", "a"]);
    for want in [
        "runs:",
        "START",
        "DURATION",
        "OUTCOME",
        "EXIT",
        "SOURCE",
        "ID",
        "success",
        "manual",
        "deferrals",
        "backup-stale",
        "CHECKS",
        "pauses:",
        "reindex",
        "resumed by alice",
    ] {
        assert!(text.contains(want), "`{want}` missing:\n{text}");
    }
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let later: Value =
        serde_json::from_str(&home.ok(&["history", "a", "--since", &future, "--json"])).unwrap();
    assert_eq!(later["runs"].as_array().unwrap().len(), 0, "{later}");
}
