//! `fire`: real child processes under the lane lock, with exit codes, signals and timeouts.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Home, assert_decision, kill, lane_yaml, pid_alive, sh, wait_gone};

#[test]
fn fire_wait_exits_with_the_child_exit_code_and_records_it() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("echo working; exit 7")));
    let out = home.run(&["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failure (exit 7)"), "{stderr}");

    let s = home.status("job");
    assert_eq!(s["last_result"], "failure");
    assert_eq!(s["last_exit"]["code"], 7);
    assert!(s["last_run_at"].is_string());
    assert!(s["last_success_at"].is_null());

    home.lane("job", &lane_yaml("1h", "", &sh("exit 0")));
    assert_eq!(home.run(&["fire", "job", "--wait"]).status.code(), Some(0));
    let s = home.status("job");
    assert_eq!(s["last_result"], "success");
    assert!(s["last_success_at"].is_string());
}

#[test]
fn fire_runs_argv_without_a_shell_in_cwd_with_env_and_logs_output() {
    let home = Home::new();
    home.write("work/.keep", "");
    home.lane(
        "job",
        "schedule:\n  every: 1h\ncommand:\n  argv: [sh, -c, 'echo \"$1 $GREETING $(pwd)\"', x, '$HOME;*']\n  cwd: work\n  env: { GREETING: hello }\n",
    );
    assert_eq!(home.run(&["fire", "job", "--wait"]).status.code(), Some(0));
    let logs: Vec<_> = std::fs::read_dir(home.path().join("state/runs/job"))
        .unwrap()
        .collect();
    assert_eq!(logs.len(), 1);
    let log = std::fs::read_to_string(logs[0].as_ref().unwrap().path()).unwrap();
    let cwd = home.path().join("work").canonicalize().unwrap();
    assert_eq!(
        log.trim(),
        format!("$HOME;* hello {}", cwd.display()),
        "arguments reach the child verbatim"
    );
}

#[test]
fn a_command_that_cannot_start_is_a_recorded_failure_with_a_clear_message() {
    let home = Home::new();
    home.lane(
        "job",
        &lane_yaml("1h", "", "[/nonexistent/program, --flag]"),
    );
    let out = home.run(&["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lane `job`") && stderr.contains("/nonexistent/program"),
        "{stderr}"
    );
    assert_eq!(home.status("job")["last_result"], "failure");
}

#[test]
fn two_concurrent_fires_of_one_lane_run_it_exactly_once() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 3")));
    // Both start together; whichever takes the lock runs, the other is refused.
    let a = home.spawn(&["fire", "job", "--wait"]);
    let b = home.spawn(&["fire", "job", "--wait"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    let both = format!(
        "a: {:?} {}\nb: {:?} {}",
        a.status.code(),
        String::from_utf8_lossy(&a.stderr),
        b.status.code(),
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "one ran, one refused:\n{both}"
    );
    let refused = if a.status.code() == Some(1) { &a } else { &b };
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("lane `job` is already running") && msg.contains("pid"),
        "{both}"
    );
    let runs = std::fs::read_dir(home.path().join("state/runs/job"))
        .unwrap()
        .count();
    assert_eq!(runs, 1, "exactly one run");
}

#[test]
fn a_peer_fired_in_another_process_defers_its_contenders_until_it_is_gone() {
    let home = Home::standard();
    home.lane("peer", &lane_yaml("1h", "", &sh("sleep 60")));
    home.lane(
        "main",
        &lane_yaml(
            "1h",
            "  - use: contention\n    with: { peers: [peer] }",
            "[\"true\"]",
        ),
    );

    // Without --wait, fire returns once the child runs under a detached supervisor.
    let out = home.ok(&["fire", "peer"]);
    assert!(out.contains("started pid"), "{out}");
    let running = home.wait_status("peer", "running", |s| s["running"].is_object());
    let pid = running["running"]["pid"].as_i64().unwrap();

    let d = home.check_now("main");
    assert_decision(&d, "deferred", "peer-task-running");
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {pid}")),
        "{d}"
    );

    // A second fire is refused, naming the holder.
    let refused = home.run(&["fire", "peer"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already running"));

    // Killing the child ends the run; its supervisor records the signal.
    kill(pid, "KILL");
    let done = home.wait_status("peer", "finished", |s| {
        s["running"].is_null() && s["last_result"].is_string()
    });
    assert_eq!(done["last_result"], "failure");
    assert_eq!(done["last_exit"]["signal"], 9);
    assert_eq!(home.check_now("main")["outcome"], "trigger");
}

/// The supervisor's pid, as it wrote it into the lane's lock file.
fn supervisor_of(home: &Home, lane: &str) -> i64 {
    std::fs::read_to_string(home.path().join(format!("state/locks/{lane}.lock")))
        .expect("lock file")
        .trim()
        .parse()
        .expect("pid in the lock file")
}

#[test]
fn killing_fire_wait_leaves_the_run_to_its_supervisor_which_records_the_real_outcome() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 2; exit 3")));
    let mut fire = home
        .command(&["fire", "job", "--wait"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    home.wait_status("job", "running", |s| s["running"].is_object());
    fire.kill().unwrap();
    fire.wait().unwrap();
    let refused = home.run(&["fire", "job"]);
    assert_eq!(refused.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("already running") && msg.contains("supervised by lanekeeper pid"),
        "{msg}"
    );
    let done = home.wait_status("job", "the recorded end", |s| s["running"].is_null());
    assert_eq!(done["last_result"], "failure", "{done}");
    assert_eq!(done["last_exit"]["code"], 3, "the real exit code: {done}");
}

#[test]
fn a_child_outliving_its_supervisor_still_counts_as_running() {
    let home = Home::standard();
    home.init_history();
    home.lane("peer", &lane_yaml("1h", "", &sh("sleep 60")));
    home.lane(
        "main",
        &lane_yaml(
            "1h",
            "  - use: contention\n    with: { peers: [peer] }",
            "[\"true\"]",
        ),
    );
    home.ok(&["fire", "peer"]);
    let running = home.wait_status("peer", "running", |s| s["running"].is_object());
    let pid = running["running"]["pid"].as_i64().unwrap();
    // Only a KILL of the run's own supervisor can orphan the command.
    kill(supervisor_of(&home, "peer"), "KILL");
    wait_gone(supervisor_of(&home, "peer"));
    assert!(
        pid_alive(pid),
        "the child runs in its own process group and survives"
    );
    assert_decision(&home.check_now("main"), "deferred", "peer-task-running");
    let refused = home.run(&["fire", "peer", "--wait"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("outlived its supervisor"));

    kill(pid, "KILL");
    wait_gone(pid);
    assert_eq!(home.check_now("main")["outcome"], "trigger");
    // The next fire closes the orphaned record as interrupted before running.
    home.lane("peer", &lane_yaml("1h", "", &sh("exit 0")));
    assert_eq!(home.run(&["fire", "peer", "--wait"]).status.code(), Some(0));
    let runs: serde_json::Value = home.status("peer");
    assert_eq!(runs["last_result"], "success");
}

#[test]
fn sigterm_to_fire_is_forwarded_to_the_child_and_the_outcome_recorded() {
    let home = Home::new();
    home.lane("job", &lane_yaml("1h", "", &sh("sleep 60")));
    let fire = home.spawn(&["fire", "job", "--wait"]);
    home.wait_status("job", "running", |s| s["running"].is_object());
    kill(i64::from(fire.id()), "TERM");
    let out = fire.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + 15),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = home.status("job");
    assert!(s["running"].is_null());
    assert_eq!(s["last_result"], "failure");
    assert_eq!(s["last_exit"]["signal"], 15);
}

#[test]
fn a_timeout_kills_a_child_that_ignores_sigterm_and_its_grandchild() {
    let home = Home::new();
    let script = "sleep 300 & echo $! > grandchild.pid; trap '' TERM; while true; do sleep 1; done";
    home.lane(
        "stuck",
        &format!(
            "schedule:\n  every: 1h\ncommand:\n  argv: {}\n  timeout: 1s\n  grace: 1s\n",
            sh(script)
        ),
    );
    let started = Instant::now();
    let out = home.run(&["fire", "stuck", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(30));
    let grandchild: i64 = std::fs::read_to_string(home.path().join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(grandchild);
    assert_eq!(home.status("stuck")["last_result"], "failure");
}

#[test]
fn a_relative_home_still_gives_absolute_run_log_paths_and_lanekeeper_home() {
    let home = Home::new();
    home.lane(
        "job",
        &lane_yaml("24h", "", &sh("echo \"home=$LANEKEEPER_HOME\"")),
    );
    let parent = home.path().parent().unwrap();
    let name = home.path().file_name().unwrap();
    let relative = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lanekeeper"));
        cmd.current_dir(parent)
            .arg("--home")
            .arg(name)
            .args(args)
            .env_remove("LANEKEEPER_HOME")
            .env_remove("LANEKEEPER_LOG");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // The path after `log `, which must exist from anywhere: absolute.
    let log_path = |text: &str| -> std::path::PathBuf {
        let path = text
            .split("log ")
            .nth(1)
            .and_then(|rest| rest.split([';', '\n']).next())
            .unwrap_or_else(|| panic!("no log path in {text:?}"));
        let path = std::path::PathBuf::from(path);
        assert!(path.is_absolute(), "{text}");
        assert!(path.is_file(), "{text}");
        path
    };

    let waited = relative(&["fire", "job", "--wait"]);
    let log = std::fs::read_to_string(log_path(&waited)).unwrap();
    let expected = home.path().canonicalize().unwrap();
    assert_eq!(log.trim(), format!("home={}", expected.display()));

    let detached = relative(&["fire", "job"]);
    log_path(&detached);
    home.wait_status("job", "the detached run", |s| s["running"].is_null());

    home.lane("once", &lane_yaml("24h", "", "[\"true\"]"));
    let once = relative(&["run", "--once"]);
    assert!(once.contains("lane `once`: success"), "{once}");
    log_path(&once);
}

#[test]
fn a_killed_fire_never_lets_a_lane_run_twice_even_while_the_store_is_locked() {
    let home = Home::new();
    home.lane("long", &lane_yaml("1h", "", &sh("sleep 3")));
    home.ok(&[
        "record",
        "long",
        "--outcome",
        "success",
        "--at",
        "2026-11-01T00:00:00Z",
    ]);
    // Another process holds the database's write lock while `fire` starts the run.
    let db = rusqlite::Connection::open(home.path().join("state/lanekeeper.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut fire = home
        .command(&["fire", "long", "--wait"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The run's supervisor has the lane's lock and waits to record the run.
    let lock = home.path().join("state/locks/long.lock");
    let start = Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |s| s.trim().is_empty()) {
        assert!(start.elapsed() < Duration::from_secs(20), "no supervisor");
        std::thread::sleep(Duration::from_millis(20));
    }
    fire.kill().unwrap();
    fire.wait().unwrap();
    db.execute_batch("COMMIT").unwrap();
    drop(db);

    let running = home.wait_status("long", "the recorded run", |s| s["running"].is_object());
    let refused = home.run(&["fire", "long"]);
    assert_eq!(refused.status.code(), Some(1), "{running}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already running"));
    let done = home.wait_status("long", "its end", |s| s["running"].is_null());
    assert_eq!(done["last_result"], "success", "{done}");
    let runs = std::fs::read_dir(home.path().join("state/runs/long"))
        .unwrap()
        .count();
    assert_eq!(runs, 1, "exactly one run");
}

fn pid_in(home: &Home, file: &str) -> i64 {
    std::fs::read_to_string(home.path().join(file))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_timeout_stops_a_grandchild_that_left_the_group_with_setsid() {
    let home = Home::new();
    home.lane(
        "job",
        &format!(
            "schedule:\n  every: 1h\ncommand:\n  argv: {}\n  timeout: 1s\n  grace: 1s\n",
            sh("setsid sleep 60 & echo $! > escaped.pid; sleep 60")
        ),
    );
    let out = home.run(&["fire", "job", "--wait"]);
    assert_ne!(out.status.code(), Some(0));
    let escaped = pid_in(&home, "escaped.pid");
    wait_gone(escaped);
    assert_eq!(home.status("job")["last_result"], "failure");
}

#[test]
fn processes_a_command_leaves_behind_are_stopped_with_its_run() {
    let home = Home::new();
    home.lane(
        "job",
        &format!(
            "schedule:\n  every: 1h\ncommand:\n  argv: {}\n  grace: 1s\n",
            sh("sleep 60 & echo $! > left.pid; exit 0")
        ),
    );
    let out = home.run(&["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let left = pid_in(&home, "left.pid");
    wait_gone(left);
    let logs: Vec<_> = std::fs::read_dir(home.path().join("state/runs/job"))
        .unwrap()
        .flatten()
        .collect();
    let log = std::fs::read_to_string(logs[0].path()).unwrap();
    assert!(log.contains("left behind were stopped"), "{log}");
}
