//! What-ifs at other times: `check --at` in the past decides on the lane states as they stood
//! then, rebuilt from the history; `explain --at` tells what a recorded decision led to.

use jiff::{SignedDuration, Timestamp};

use crate::harness::{Home, assert_decision, lane_yaml, sh};

fn ago(h: i64) -> String {
    (Timestamp::now() - SignedDuration::from_hours(h)).to_string()
}

fn plus(at: &str, ms: i64) -> String {
    (at.parse::<Timestamp>().expect("time") + SignedDuration::from_millis(ms)).to_string()
}

/// `check --at` with stderr, parsed.
fn check_at(home: &Home, lane: &str, at: &str) -> (serde_json::Value, String) {
    let out = home.run(&["check", lane, "--at", at, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let d = serde_json::from_slice(&out.stdout).expect("one JSON decision");
    (d, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn backup_and_reader() -> Home {
    let home = Home::standard();
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    home.lane(
        "reader",
        &lane_yaml(
            "1h",
            "  - use: backup-recency\n    with: { lane: backup, max_age: 36h }",
            "[\"true\"]",
        ),
    );
    home
}

#[test]
fn a_what_if_before_a_recorded_run_sees_the_lanes_as_they_stood_then() {
    let home = backup_and_reader();
    let backed_up = "2026-11-20T00:00:00Z";
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        backed_up,
    ]);

    let before = "2026-11-19T23:00:00Z";
    let (d, notes) = check_at(&home, "backup", before);
    assert_decision(&d, "trigger", "periodic-sweep:86400000");
    assert_eq!(d["chain"][0]["detail"], "no recorded run", "{d}");
    assert!(notes.contains("the history starts at"), "{notes}");
    let (d, _) = check_at(&home, "reader", before);
    assert_decision(&d, "deferred", "backup-stale");
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains("no recorded success"),
        "the backup did not exist yet: {d}"
    );

    let (d, notes) = check_at(&home, "backup", "2026-11-20T01:00:00Z");
    assert_decision(&d, "deferred", "interval-not-due");
    assert_eq!(
        d["detail"], "last run 1h ago; due every 24h, in 23h",
        "ages count from the time asked: {d}"
    );
    assert!(notes.is_empty(), "{notes}");
    let (d, _) = check_at(&home, "reader", "2026-11-20T01:00:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
}

#[test]
fn a_what_if_sees_the_runs_still_open_at_that_time() {
    let home = Home::standard();
    home.lane("peer", &lane_yaml("24h", "", &sh("sleep 3")));
    home.lane(
        "main",
        &lane_yaml(
            "24h",
            "  - use: contention\n    with: { peers: [peer] }",
            "[\"true\"]",
        ),
    );
    // A rehearsal from a past instant: peer runs for 3 s from about 2026-11-20T00:00:00Z.
    home.ok(&["run", "--once", "--at", "2026-11-20T00:00:00Z"]);
    let (d, _) = check_at(&home, "main", "2026-11-20T00:00:01.500Z");
    assert_decision(&d, "deferred", "peer-task-running");
    let (d, _) = check_at(&home, "main", "2026-11-20T00:00:10Z");
    assert_eq!(d["outcome"], "trigger", "peer had ended: {d}");
}

#[test]
fn a_what_if_in_the_future_says_it_assumes_nothing_runs_in_between() {
    let home = backup_and_reader();
    let (_, notes) = check_at(&home, "backup", "2100-01-01T00:00:00Z");
    assert!(
        notes.contains("assuming nothing runs or is recorded in between"),
        "{notes}"
    );
}

#[test]
fn record_at_in_the_future_is_refused() {
    let home = backup_and_reader();
    let out = home.run(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        "2100-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in the future"));
    assert!(home.status("backup")["last_run_at"].is_null());
}

#[test]
fn a_record_earlier_than_the_latest_run_never_hides_it() {
    let home = backup_and_reader();
    home.ok(&["record", "backup", "--outcome", "success", "--at", &ago(2)]);
    home.ok(&["record", "backup", "--outcome", "failure", "--at", &ago(5)]);
    let s = home.status("backup");
    assert_eq!(s["last_result"], "success", "the latest by time: {s}");
    let last_run: Timestamp = s["last_run_at"].as_str().unwrap().parse().unwrap();
    assert!(
        Timestamp::now().duration_since(last_run) < SignedDuration::from_mins(150),
        "the later run stays the last one: {s}"
    );
    // A failure after the success starts a retry streak; one before it does not.
    let (d, _) = check_at(&home, "reader", &Timestamp::now().to_string());
    assert_eq!(d["outcome"], "trigger", "{d}");
}

#[test]
fn a_what_if_after_pruning_stays_exact_and_one_before_it_says_the_history_is_gone() {
    let home = backup_and_reader();
    home.write("lanekeeper.yaml", "history: { retention: 1d }\n");
    home.lane(
        "reader",
        &lane_yaml(
            "1h",
            "  - use: backup-recency\n    with: { lane: backup, max_age: 6d }",
            "[\"true\"]",
        ),
    );
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        &ago(240),
    ]);
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        &ago(120),
    ]);
    home.ok(&["record", "backup", "--outcome", "failure", "--at", &ago(96)]);
    // A pass prunes what is older than a day, keeping each lane's latest run.
    home.ok(&["run", "--once"]);

    // Half a day ago the last success was 4.5 days old: the pruned success still counts.
    let (d, notes) = check_at(&home, "reader", &ago(12));
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert!(notes.is_empty(), "{notes}");
    let (_, notes) = check_at(&home, "reader", &ago(24 * 7));
    assert!(notes.contains("was pruned"), "{notes}");
}

#[test]
fn explain_at_a_check_trigger_says_nothing_was_dispatched() {
    let home = backup_and_reader();
    home.init_history();
    let d = home.check_now("backup");
    assert_eq!(d["outcome"], "trigger");
    let at = d["at"].as_str().unwrap();
    let out = home.ok(&["explain", "backup", "--at", at]);
    assert!(
        out.contains("would have triggered; nothing was dispatched"),
        "{out}"
    );
    assert!(out.contains("by check"), "{out}");

    let ran = home.ok(&["run", "--once", "--json"]);
    let trigger: serde_json::Value = ran
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|d| d["lane"] == "backup")
        .unwrap();
    let out = home.ok(&[
        "explain",
        "backup",
        "--at",
        trigger["at"].as_str().unwrap(),
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["origin"], "run-once");
    assert_eq!(e["dispatch"]["dispatched"], true, "{e}");
    assert_eq!(e["dispatch"]["run"]["result"], "success", "{e}");
}

#[test]
fn a_plain_check_trigger_keeps_the_starvation_streak() {
    let home = Home::new();
    home.init_history();
    home.write(
        "plugins/night.rhai",
        "fn evaluate(ctx) { if ctx.local.hour != 99 { \"not-night\" } }\n",
    );
    home.lane(
        "a",
        "schedule:\n  every: 1h\nmax_deferral: 1ms\npreconditions:\n  - use: night\n    soft: true\ncommand:\n  argv: [\"true\"]\n",
    );
    let first = home.check_now("a");
    assert_decision(&first, "deferred", "not-night");
    let since = home.status("a")["deferral"]["since"].clone();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let forced = home.check_now("a");
    assert_eq!(forced["source"], "starvation-guard", "{forced}");
    assert_eq!(
        home.status("a")["deferral"]["since"],
        since,
        "a check dispatches nothing, so the lane is still starving"
    );
    assert_eq!(home.check_now("a")["source"], "starvation-guard");
}

#[test]
fn explain_at_shows_the_nearest_stored_evaluation_and_says_which() {
    let home = Home::new();
    home.init_history();
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    home.lane("a", &lane_yaml("1h", "  - use: wait", "[\"true\"]"));
    let first = home.check_now("a");
    std::thread::sleep(std::time::Duration::from_millis(3));
    home.check_now("a");
    std::thread::sleep(std::time::Duration::from_millis(3));
    let last = home.check_now("a");
    let between = plus(first["at"].as_str().unwrap(), 1);
    let out = home.ok(&["explain", "a", "--at", &between, "--json"]);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["evaluation"]["which"], "first", "{e}");
    assert_eq!(e["evaluation"]["of"], 3);
    assert_eq!(e["at"], first["at"]);
    let out = home.ok(&["explain", "a", "--at", last["at"].as_str().unwrap()]);
    assert!(
        out.contains("evidence from the latest evaluation of its episode"),
        "{out}"
    );
}

/// A week of passes, one every two hours, rehearsed with `run --once --at`; then `check --at`
/// at a sample of the recorded instants decides exactly as the pass did. Every duration is an
/// odd number of hours and the window starts at a half hour, so no boundary falls within the
/// milliseconds a pass takes to start, and the passes decide the same way every time.
#[test]
fn check_at_a_recorded_moment_agrees_with_the_decision_recorded_then() {
    let home = Home::standard();
    home.write(
        "lanekeeper.yaml",
        "groups:\n  heavy: { max_concurrent: 1 }\n",
    );
    home.lane(
        "backup",
        "schedule:\n  every: 23h\ngroup: heavy\npriority: 0\ncommand:\n  argv: [\"true\"]\n",
    );
    home.lane(
        "worker",
        "schedule:\n  every: 7h\n  timezone: Europe/Berlin\npreconditions:\n  - use: backup-recency\n    with: { lane: backup, max_age: 29h }\n  - use: contention\n    with: { peers: [backup] }\n  - use: off-peak\n    with: { window: \"01:30-05:30\" }\n    soft: true\nmax_deferral: 11h\ngroup: heavy\ncommand:\n  argv: [\"true\"]\n",
    );
    home.lane(
        "flaky",
        &format!(
            "schedule:\n  every: 9h\nretry: {{ delay: 1h, window: 3h }}\ncommand:\n  argv: {}\n",
            sh("exit 1")
        ),
    );
    home.lane(
        "reader",
        "schedule:\n  every: 5h\npreconditions:\n  - use: contention\n    with: { peers: [worker] }\ncommand:\n  argv: [\"true\"]\n",
    );
    let start: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
    let mut recorded: Vec<serde_json::Value> = Vec::new();
    for pass in 0..84 {
        let at = start + SignedDuration::from_hours(2 * pass);
        let out = home.ok(&["run", "--once", "--json", "--at", &at.to_string()]);
        if pass % 3 == 1 {
            recorded.extend(out.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
    }
    let verdict = |d: &serde_json::Value| {
        ["outcome", "source", "reason", "gate", "detail"].map(|k| d[k].clone())
    };
    let mut outcomes = std::collections::BTreeSet::new();
    for d in &recorded {
        let lane = d["lane"].as_str().unwrap();
        let at = d["at"].as_str().unwrap();
        let (what_if, _) = check_at(&home, lane, at);
        assert_eq!(verdict(&what_if), verdict(d), "{lane} at {at}");
        outcomes.insert(format!("{}:{}", d["outcome"], d["reason"]));
    }
    // The sample covers triggers, retries and deferrals of several kinds.
    for kind in [
        "periodic-sweep",
        "failed-run-retry",
        "peer-task-running",
        "outside-off-peak",
        "interval-not-due",
    ] {
        assert!(
            outcomes.iter().any(|o| o.contains(kind)),
            "no {kind} in {outcomes:?}"
        );
    }
}
