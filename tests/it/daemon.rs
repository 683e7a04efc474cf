//! `lanekeeper run`: the daemon with real processes, file edits and signals.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Home, assert_decision, lane_yaml, sh};

/// A daemon running against a home; killed when dropped.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    pub fn start(home: &Home) -> Self {
        Self::start_with(home, &[])
    }

    pub fn start_with(home: &Home, args: &[&str]) -> Self {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        Self::start_command(home, home.command(&full))
    }

    /// Starts `command`, which must run the daemon on `home` (e.g. under a wrapper).
    pub fn start_command(home: &Home, mut command: std::process::Command) -> Self {
        let log = std::fs::File::create(home.path().join("daemon.log")).unwrap();
        let child = command
            .env("LANEKEEPER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Self { child };
        // The daemon records its first pass before anything else can be asserted.
        wait_for(home, "the first pass", || {
            log_of(home).contains("Daemon started.")
        });
        daemon
    }

    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn wait_exit(mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "daemon did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn log_of(home: &Home) -> String {
    std::fs::read_to_string(home.path().join("daemon.log")).unwrap_or_default()
}

pub fn wait_for(home: &Home, what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}; daemon log:\n{}",
            log_of(home)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn runs(home: &Home, lane: &str) -> usize {
    std::fs::read_dir(home.path().join("state/runs").join(lane))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_second_daemon_on_the_same_home_refuses_to_start_naming_the_first() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    let first = Daemon::start(&home);
    let out = home.run(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains(&format!("pid {}", first.pid())), "{msg}");
    assert_eq!(
        home.run(&["run", "--once"]).status.code(),
        Some(1),
        "nor does a one-shot pass"
    );
}

#[test]
fn fire_racing_the_daemon_never_runs_a_lane_twice() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 2")));
    let _daemon = Daemon::start(&home);
    home.wait_status("job", "running", |s| s["running"].is_object());
    let out = home.run(&["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    home.wait_status("job", "done", |s| s["last_result"] == "success");
    assert_eq!(runs(&home, "job"), 1);
}

/// The run's own supervisor, as it wrote its pid into the lane's lock file.
fn supervisor_of(home: &Home, lane: &str) -> i64 {
    std::fs::read_to_string(home.path().join(format!("state/locks/{lane}.lock")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn after_kill_9_of_the_daemon_the_run_ends_under_its_supervisor_with_its_real_outcome() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 2; exit 4")));
    let daemon = Daemon::start(&home);
    let running = home.wait_status("job", "running", |s| s["running"].is_object());
    let pid = running["running"]["pid"].as_i64().unwrap();
    daemon.signal("KILL");
    assert_eq!(daemon.wait_exit(), None, "killed by a signal");

    let _restarted = Daemon::start(&home);
    wait_for(&home, "the watch", || {
        log_of(&home).contains("still supervised; watching for its end")
    });
    assert_eq!(home.status("job")["running"]["pid"].as_i64(), Some(pid));
    let done = home.wait_status("job", "the run to end", |s| {
        s["running"].is_null() && s["last_result"].is_string()
    });
    assert_eq!(done["last_result"], "failure", "{done}");
    assert_eq!(
        done["last_exit"]["code"], 4,
        "the supervisor recorded the real exit code: {done}"
    );
}

/// Starts a daemon on `job`, then `kill -9`s it and the run's supervisor once the run shows;
/// returns the command's pid, which lives on.
fn kill_daemon_and_supervisor(home: &Home) -> i64 {
    let daemon = Daemon::start(home);
    let running = home.wait_status("job", "running", |s| s["running"].is_object());
    let pid = running["running"]["pid"].as_i64().unwrap();
    daemon.signal("KILL");
    daemon.wait_exit();
    let supervisor = supervisor_of(home, "job");
    crate::harness::kill(supervisor, "KILL");
    crate::harness::wait_gone(supervisor);
    pid
}

#[test]
fn after_kill_9_of_daemon_and_supervisor_a_restart_adopts_the_surviving_child() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 2")));
    let pid = kill_daemon_and_supervisor(&home);

    let _restarted = Daemon::start(&home);
    wait_for(&home, "adoption", || {
        log_of(&home).contains("Adopted a run")
    });
    assert_eq!(home.status("job")["running"]["pid"].as_i64(), Some(pid));
    let done = home.wait_status("job", "the adopted run to end", |s| {
        s["running"].is_null() && s["last_result"].is_string()
    });
    assert_eq!(
        done["last_result"], "unknown",
        "its exit code cannot be known: {done}"
    );
    assert!(log_of(&home).contains("exit code cannot be known"));
}

#[test]
fn after_kill_9_of_daemon_supervisor_and_child_a_restart_records_interrupted() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 30")));
    let pid = kill_daemon_and_supervisor(&home);
    crate::harness::kill(pid, "KILL");
    crate::harness::wait_gone(pid);

    let _restarted = Daemon::start(&home);
    let s = home.status("job");
    assert!(s["running"].is_null(), "{s}");
    assert_eq!(
        s["last_result"], "interrupted",
        "a vanished run is never dropped silently: {s}"
    );
    assert!(
        log_of(&home).contains("Recorded a run as interrupted"),
        "{}",
        log_of(&home)
    );
}

#[test]
fn the_picker_prefers_priority_then_the_most_overdue_lane() {
    let home = Home::new();
    home.write(
        "lanekeeper.yaml",
        "groups:\n  heavy: { max_concurrent: 1 }\n",
    );
    let lane = |every: &str, priority: u32| {
        format!(
            "schedule:\n  every: {every}\ngroup: heavy\npriority: {priority}\ncommand:\n  argv: [\"true\"]\n"
        )
    };
    home.lane("backup", &lane("24h", 0));
    home.lane("summary", &lane("10m", 5));
    home.lane("kb-sync", &lane("30m", 5));
    let ago = |h: i64| (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(h)).to_string();
    // summary is 30 intervals overdue, kb-sync 4, backup barely: priority still wins.
    home.ok(&["record", "summary", "--outcome", "success", "--at", &ago(5)]);
    home.ok(&["record", "kb-sync", "--outcome", "success", "--at", &ago(2)]);
    home.ok(&["record", "backup", "--outcome", "success", "--at", &ago(25)]);

    let first = home.ok(&["run", "--once", "--json"]);
    let by = |out: &str, lane: &str| -> serde_json::Value {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|d| d["lane"] == lane)
            .unwrap()
    };
    assert_eq!(by(&first, "backup")["outcome"], "trigger");
    let held = by(&first, "summary");
    assert_decision(&held, "deferred", "peer-task-running");
    assert!(
        held["detail"]
            .as_str()
            .unwrap()
            .contains("backup goes first"),
        "{held}"
    );

    let second = home.ok(&["run", "--once", "--json"]);
    assert_eq!(
        by(&second, "summary")["outcome"],
        "trigger",
        "most overdue next: {second}"
    );
    assert_decision(&by(&second, "kb-sync"), "deferred", "peer-task-running");

    let third = home.ok(&["run", "--once", "--json"]);
    assert_eq!(by(&third, "kb-sync")["outcome"], "trigger");
}

#[test]
fn a_lane_blocked_by_a_running_group_member_names_it() {
    let home = Home::new();
    home.lane(
        "long",
        &format!(
            "schedule:\n  every: 1h\ngroup: heavy\ncommand:\n  argv: {}\n",
            sh("sleep 30")
        ),
    );
    home.lane(
        "short",
        "schedule:\n  every: 1h\ngroup: heavy\ncommand:\n  argv: [\"true\"]\n",
    );
    home.ok(&["fire", "long"]);
    let pid = home.wait_status("long", "running", |s| s["running"].is_object())["running"]["pid"]
        .as_i64()
        .unwrap();
    let d = home.check_now("short");
    assert_decision(&d, "deferred", "peer-task-running");
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("long (pid {pid})")),
        "{d}"
    );
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn a_failed_run_is_retried_within_its_window_and_not_after_it() {
    let home = Home::new();
    home.lane("backup", "schedule:\n  every: 24h\nretry: { delay: 15m, window: 1h }\ncommand:\n  argv: [\"true\"]\n");
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "failure",
        "--at",
        "2026-05-10T00:00:00Z",
    ]);
    assert_decision(
        &home.check_at("backup", "2026-05-10T00:14:59Z"),
        "deferred",
        "interval-not-due",
    );
    let d = home.check_at("backup", "2026-05-10T00:15:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert_eq!(d["source"], "failed-run-retry");
    assert_eq!(d["reason"], "failed-run-retry:900000");

    // Failing again keeps the streak: retries go on while it is under an hour old.
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "failure",
        "--at",
        "2026-05-10T00:45:00Z",
    ]);
    assert_eq!(
        home.check_at("backup", "2026-05-10T01:00:00Z")["source"],
        "failed-run-retry"
    );
    assert_decision(
        &home.check_at("backup", "2026-05-10T01:00:01Z"),
        "deferred",
        "interval-not-due",
    );

    // A success ends the streak.
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        "2026-05-10T01:30:00Z",
    ]);
    assert_decision(
        &home.check_at("backup", "2026-05-10T01:50:00Z"),
        "deferred",
        "interval-not-due",
    );
}

#[test]
fn the_starvation_guard_waives_a_soft_off_peak_gate() {
    let home = Home::standard();
    // A one-minute window six hours away: outside now and for the next two hours.
    let start = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC)
        + jiff::SignedDuration::from_hours(6);
    let end = start.clone() + jiff::SignedDuration::from_mins(1);
    let window = format!("{}-{}", start.strftime("%H:%M"), end.strftime("%H:%M"));
    home.lane(
        "sandman",
        &format!("schedule:\n  every: 1h\npreconditions:\n  - use: off-peak\n    with: {{ window: \"{window}\" }}\n    soft: true\nmax_deferral: 1h\ncommand:\n  argv: [\"true\"]\n"),
    );
    home.init_history();
    let first = home.check_now("sandman");
    assert_decision(&first, "deferred", "outside-off-peak");
    let since: jiff::Timestamp = first["at"].as_str().unwrap().parse().unwrap();
    let later = (since + jiff::SignedDuration::from_mins(61)).to_string();
    let d = home.check_at("sandman", &later);
    assert_eq!(d["source"], "starvation-guard", "{d}");
    assert_eq!(d["chain"][1]["reason"], "outside-off-peak");
    assert_eq!(d["chain"][1]["verdict"], "waived");
}

#[test]
fn a_valid_edit_takes_effect_and_an_invalid_one_is_rejected_without_a_restart() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    let daemon = Daemon::start(&home);
    home.wait_status("a", "the first run", |s| s["last_result"] == "success");

    // A new lane appears and runs.
    home.lane("b", &lane_yaml("1h", "", "[\"true\"]"));
    home.wait_status("b", "the new lane to run", |s| {
        s["last_result"] == "success"
    });

    // A broken edit is rejected with its place; the daemon keeps the last good rules.
    home.lane(
        "c",
        "schedule:\n  every: 1h\nbogus: 1\ncommand:\n  argv: [\"true\"]\n",
    );
    wait_for(&home, "the rejection", || {
        log_of(&home).contains("Reload rejected")
    });
    assert!(
        log_of(&home).contains("c.yaml:3:1: unknown field `bogus`"),
        "{}",
        log_of(&home)
    );
    let status = home.ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["reload"]["ok"], false);
    assert!(v["reload"]["error"].as_str().unwrap().contains("bogus"));
    assert!(home.ok(&["status"]).contains("last reload FAILED"));

    // Still serving: SIGHUP reloads too, and a fix is picked up.
    home.lane("c", &lane_yaml("1h", "", "[\"true\"]"));
    home.wait_status("c", "the fixed lane to run", |s| {
        s["last_result"] == "success"
    });
    daemon.signal("HUP");
    wait_for(&home, "the SIGHUP reload", || {
        log_of(&home).contains("trigger=\"SIGHUP\"")
    });
    assert_eq!(daemon.wait_exit_after_term(), Some(0));
}

impl Daemon {
    pub fn wait_exit_after_term(self) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit()
    }
}

#[test]
fn sigterm_lets_a_running_child_finish_and_records_it() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 1; exit 3")));
    let daemon = Daemon::start(&home);
    home.wait_status("job", "running", |s| s["running"].is_object());
    assert_eq!(daemon.wait_exit_after_term(), Some(0));
    let s = home.status("job");
    assert!(s["running"].is_null());
    assert_eq!(
        s["last_exit"]["code"], 3,
        "the child finished on its own: {s}"
    );
}

/// A pass waiting on a probe does not hold up shutdown, and nothing it decided is dispatched.
#[test]
fn sigterm_interrupts_a_pass_waiting_on_probes() {
    let silent = crate::harness::TestServer::silent();
    let home = Home::standard();
    home.write("lanekeeper.yaml", "limits:\n  gate_timeout: 5m\n");
    home.lane(
        "probing",
        &lane_yaml(
            "1h",
            &format!(
                "  - use: provider-probe\n    with: {{ url: \"{}\", timeout: 120s }}",
                silent.url
            ),
            "[\"true\"]",
        ),
    );
    home.lane("quick", &lane_yaml("1h", "", "[\"true\"]"));
    let daemon = Daemon::start(&home);
    wait_for(&home, "the probe to be in flight", || silent.hits() == 1);
    // Bounded well under the probe's 120 s.
    assert_eq!(daemon.wait_exit_after_term(), Some(0));
    assert_eq!(runs(&home, "quick"), 0, "nothing of the pass is dispatched");
    assert!(home.status("quick")["last_run_at"].is_null());
}

#[test]
fn sigterm_stops_a_child_that_outlasts_the_shutdown_timeout() {
    let home = Home::new();
    home.write("lanekeeper.yaml", "shutdown_timeout: 500ms\n");
    home.lane(
        "job",
        &format!(
            "schedule:\n  every: 1h\ncommand:\n  argv: {}\n  grace: 1s\n",
            sh("sleep 60")
        ),
    );
    let daemon = Daemon::start(&home);
    home.wait_status("job", "running", |s| s["running"].is_object());
    assert_eq!(daemon.wait_exit_after_term(), Some(0));
    let s = home.status("job");
    assert_eq!(s["last_result"], "failure");
    assert_eq!(s["last_exit"]["signal"], 15);
}

#[test]
fn the_daemon_logs_json_and_logs_a_deferral_once_per_episode() {
    let home = Home::new();
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    home.lane("a", "schedule:\n  every: 1h\nrecheck: 100ms\npreconditions:\n  - use: wait\ncommand:\n  argv: [\"true\"]\n");
    let log = std::fs::File::create(home.path().join("daemon.log")).unwrap();
    let mut child = home
        .command(&["run", "--log-format", "json"])
        .stderr(log)
        .spawn()
        .unwrap();
    // Many re-checks happen; the deferral is logged once.
    wait_for(&home, "re-checks", || {
        log_of(&home).contains("Deferral started.")
    });
    std::thread::sleep(Duration::from_millis(800));
    let _ = std::process::Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    let log = log_of(&home);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    let started = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "Deferral started.")
        .count();
    assert_eq!(started, 1, "{log}");
}

/// Lanes of the shipped rules and the peers their contention gates name, read from the files.
fn shipped_peers(home: &Home) -> Vec<(String, Vec<String>)> {
    crate::harness::SHIPPED_LANES
        .iter()
        .map(|lane| {
            let text = std::fs::read_to_string(home.path().join(format!("rules/{lane}.yaml")))
                .expect("shipped lane file");
            let peers = text
                .lines()
                .filter_map(|l| l.split_once("peers: [")?.1.split_once(']'))
                .flat_map(|(list, _)| list.split(',').map(|p| p.trim().to_string()))
                .collect();
            (lane.to_string(), peers)
        })
        .collect()
}

#[test]
fn on_the_first_daemon_start_of_the_shipped_home_no_lanes_naming_each_other_overlap() {
    let home = Home::shipped();
    let log = std::fs::File::create(home.path().join("daemon.log")).unwrap();
    // 02:30 in Berlin: inside both off-peak windows, so graph-maintenance and golden-path are
    // due together once the backup has run (the provider of sandman is down on this machine).
    let mut child = home
        .command(&[
            "run",
            "--at",
            "2026-11-30T01:30:00Z",
            "--log-format",
            "json",
        ])
        .env("LANEKEEPER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    for lane in [
        "backup",
        "graph-maintenance",
        "golden-path",
        "kb-sync",
        "summary",
    ] {
        home.wait_status(lane, "a finished run", |s| {
            s["last_result"] == "success" && s["running"].is_null()
        });
    }
    let _ = std::process::Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();

    // Each run's span in the log: from "Run started." to "Run finished." (the loop is one
    // thread, so a run dispatched after another ended is logged after its end).
    let log = log_of(&home);
    let mut spans: Vec<(String, usize, usize)> = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
        let lane = v["fields"]["lane"].as_str().unwrap_or_default().to_string();
        match v["fields"]["message"].as_str() {
            Some("Run started.") => spans.push((lane, i, usize::MAX)),
            Some("Run finished.") => {
                if let Some(span) = spans.iter_mut().rev().find(|s| s.0 == lane) {
                    span.2 = i;
                }
            }
            _ => {}
        }
    }
    let peers = shipped_peers(&home);
    let names = |a: &str, b: &str| {
        peers
            .iter()
            .any(|(lane, p)| lane == a && p.iter().any(|x| x == b))
    };
    let mut pairs = 0;
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if names(&a.0, &b.0) || names(&b.0, &a.0) {
                pairs += 1;
                let overlap = a.1 < b.2 && b.1 < a.2;
                assert!(!overlap, "{} and {} overlapped:\n{log}", a.0, b.0);
            }
        }
    }
    assert!(pairs >= 4, "the runs include contending pairs: {spans:?}");
}

#[test]
fn a_daemon_reloading_durations_too_long_to_add_to_a_date_stays_up() {
    let home = Home::new();
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    let lane = |recheck: &str| {
        format!(
            "schedule:\n  every: 1h\nrecheck: {recheck}\npreconditions:\n  - use: wait\ncommand:\n  argv: [\"true\"]\n"
        )
    };
    home.lane("a", &lane("1h"));
    let mut daemon = Daemon::start(&home);
    home.wait_status("a", "the deferral", |s| s["deferral"].is_object());

    home.lane("a", &lane("3000000d"));
    wait_for(&home, "the rejection", || {
        log_of(&home).contains("Reload rejected")
    });
    assert!(log_of(&home).contains("a.yaml:3:10: "), "{}", log_of(&home));
    home.write("lanekeeper.yaml", "history: { retention: 5000000d }\n");
    daemon.signal("HUP");
    wait_for(&home, "the second rejection", || {
        log_of(&home).matches("Reload rejected").count() >= 2
    });
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon died:\n{}",
        log_of(&home)
    );
    // Still serving: a good edit is applied.
    std::fs::remove_file(home.path().join("lanekeeper.yaml")).unwrap();
    home.lane("a", &lane("1h"));
    home.lane("b", &lane_yaml("1h", "", "[\"true\"]"));
    home.wait_status("b", "the new lane to run", |s| {
        s["last_result"] == "success"
    });
    assert_eq!(daemon.wait_exit_after_term(), Some(0));
}

#[test]
fn a_run_that_could_not_start_is_tried_again_without_a_signal_once_the_cause_is_gone() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    // A file where the lane's run-log directory should be: every start fails.
    home.write("state/runs/a", "in the way\n");
    let _daemon = Daemon::start(&home);
    wait_for(&home, "the failed start", || {
        log_of(&home).contains("Could not start the run")
    });
    std::fs::remove_file(home.path().join("state/runs/a")).unwrap();
    home.wait_status("a", "the run once the cause is gone", |s| {
        s["last_result"] == "success"
    });
    assert!(!log_of(&home).contains("SIGHUP"));
}
