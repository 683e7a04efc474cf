//! One pass over many lanes: lanes are decided in the picker's order, and a lane dispatched
//! earlier in the pass counts as running for every later lane, so peers never start together.

use crate::harness::{Home, assert_decision, lane_yaml};

fn by_lane(lines: &str, lane: &str) -> serde_json::Value {
    lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON decision"))
        .find(|d| d["lane"] == lane)
        .unwrap_or_else(|| panic!("no decision for {lane} in {lines}"))
}

fn reader_and_writer() -> Home {
    let home = Home::standard();
    home.lane("writer", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane(
        "reader",
        &lane_yaml(
            "1h",
            "  - use: contention\n    with: { peers: [writer] }",
            "[\"true\"]",
        ),
    );
    home
}

#[test]
fn a_lane_dispatched_earlier_in_the_pass_counts_as_running_for_a_later_contention_check() {
    let home = reader_and_writer();
    // `check` and `explain` say what the daemon would do: the writer starts, the reader waits.
    let checked = home.ok(&["check", "--json"]);
    assert_eq!(by_lane(&checked, "writer")["outcome"], "trigger");
    let reader = by_lane(&checked, "reader");
    assert_decision(&reader, "deferred", "peer-task-running");
    assert_eq!(
        reader["detail"], "peer lane writer starts in this pass",
        "{reader}"
    );
    let explained = home.ok(&["explain", "reader", "--json"]);
    let explained: serde_json::Value = serde_json::from_str(&explained).expect("JSON");
    assert_eq!(verdict(&explained), verdict(&reader));

    let ran = home.ok(&["run", "--once", "--json"]);
    assert_eq!(by_lane(&ran, "writer")["outcome"], "trigger");
    assert_eq!(verdict(&by_lane(&ran, "reader")), verdict(&reader));
    assert_eq!(home.status("writer")["last_result"], "success");
    assert!(
        home.status("reader")["last_run_at"].is_null(),
        "the reader did not run beside the writer"
    );

    // Next pass: the writer is done, so the reader goes.
    let next = home.ok(&["run", "--once", "--json"]);
    assert_eq!(by_lane(&next, "reader")["outcome"], "trigger", "{next}");
}

/// What decided: outcome, reason, gate and detail.
fn verdict(d: &serde_json::Value) -> [serde_json::Value; 4] {
    ["outcome", "reason", "gate", "detail"].map(|k| d[k].clone())
}

#[test]
fn the_picker_says_the_name_decided_when_priority_and_overdue_are_equal() {
    let home = Home::new();
    let lane = "schedule:\n  every: 1h\ngroup: heavy\npriority: 5\ncommand:\n  argv: [\"true\"]\n";
    home.lane("alpha", lane);
    home.lane("beta", lane);
    let out = home.ok(&["check", "--json"]);
    assert_eq!(by_lane(&out, "alpha")["outcome"], "trigger");
    let held = by_lane(&out, "beta");
    assert_decision(&held, "deferred", "peer-task-running");
    let detail = held["detail"].as_str().expect("detail");
    assert!(
        detail.contains("alpha goes first")
            && detail.contains("equally overdue, so the name decided: alpha before beta"),
        "{detail}"
    );
}

#[test]
fn the_picker_names_priority_when_priority_decided() {
    let home = Home::new();
    let lane = |p: u32| {
        format!(
            "schedule:\n  every: 1h\ngroup: heavy\npriority: {p}\ncommand:\n  argv: [\"true\"]\n"
        )
    };
    home.lane("alpha", &lane(7));
    home.lane("beta", &lane(2));
    let out = home.ok(&["check", "--json"]);
    let held = by_lane(&out, "alpha");
    let detail = held["detail"].as_str().expect("detail");
    assert!(
        detail.contains("beta goes first") && detail.contains("lower priority: 2 before 7"),
        "{detail}"
    );
}
