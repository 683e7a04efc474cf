//! The lint inside `validate`: one planted case per rule, found at its place with a fix; a
//! warning by default and an error with `--strict`; the shipped home is clean under `--strict`.

use serde_json::Value;

use crate::harness::Home;

/// `validate --json` findings of `rule`, as (line, col, message, fix).
fn findings(home: &Home, rule: &str) -> Vec<(u64, u64, String, String)> {
    let out = home.run(&["validate", "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["rule"] == rule)
        .map(|v| {
            assert_eq!(v["severity"], "warning", "{v}");
            (
                v["line"].as_u64().unwrap(),
                v["col"].as_u64().unwrap(),
                v["message"].as_str().unwrap().to_string(),
                v["fix"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn one(home: &Home, rule: &str) -> (u64, u64, String, String) {
    let mut all = findings(home, rule);
    assert_eq!(all.len(), 1, "{rule}: {all:?}");
    all.remove(0)
}

#[test]
fn the_shipped_home_is_lint_clean_under_strict() {
    let home = Home::shipped();
    let out = home.run(&["validate", "--strict"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn findings_are_warnings_and_strict_makes_them_errors() {
    let home = Home::standard();
    home.lane(
        "job",
        "schedule:\n  every: 1h\nretry: { delay: 1h, window: 30m }\ncommand:\n  argv: [true]\n",
    );
    let out = home.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("job.yaml:3:29: warning: retry.window 30m is shorter than retry.delay 1h")
            && stderr.contains("[retry-window-below-delay]\n  fix: make retry.window at least 1h"),
        "{stderr}"
    );
    let out = home.run(&["validate", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("job.yaml:3:29: retry.window 30m is shorter"),
        "{stderr}"
    );
}

#[test]
fn a_cron_whose_slots_miss_the_off_peak_window() {
    let home = Home::standard();
    home.lane(
        "job",
        "schedule:\n  cron: \"0 12 * * *\"\n  timezone: Europe/Berlin\npreconditions:\n  - use: off-peak\n    with: { window: \"01:00-06:00\" }\n    soft: true\nmax_deferral: 12h\ncommand:\n  argv: [true]\n",
    );
    let (line, col, message, fix) = one(&home, "cron-outside-window");
    assert_eq!((line, col), (2, 9));
    assert!(
        message.contains("no slot of cron `0 12 * * *` (Europe/Berlin) falls inside the window 01:00-06:00 of gate `off-peak`"),
        "{message}"
    );
    assert!(fix.contains("`0 1 * * *`"), "{fix}");
    // Slots inside the window: nothing to say.
    home.lane(
        "job",
        "schedule:\n  cron: \"0 3 * * *\"\n  timezone: Europe/Berlin\npreconditions:\n  - use: off-peak\n    with: { window: \"01:00-06:00\" }\n    soft: true\nmax_deferral: 12h\ncommand:\n  argv: [true]\n",
    );
    assert!(findings(&home, "cron-outside-window").is_empty());
}

#[test]
fn a_hard_gate_on_a_lane_that_is_off_and_the_gates_after_it() {
    let home = Home::standard();
    home.lane(
        "backup",
        "schedule:\n  every: off\ncommand:\n  argv: [true]\n",
    );
    home.lane(
        "job",
        "schedule:\n  every: 1h\npreconditions:\n  - use: backup-recency\n    with: { lane: backup, max_age: 36h }\n  - use: contention\n    with: { peers: [backup] }\ncommand:\n  argv: [true]\n",
    );
    let (line, col, message, fix) = one(&home, "hard-gate-on-off-lane");
    assert_eq!((line, col), (4, 10));
    assert!(
        message.contains(
            "hard gate `backup-recency` reads lane `backup`, which is off, and so defers always"
        ),
        "{message}"
    );
    assert!(fix.contains("turn `backup` back on"), "{fix}");
    let (line, col, message, _) = one(&home, "gate-after-always-deferring-gate");
    assert_eq!((line, col), (6, 10));
    assert!(
        message.contains(
            "gate `contention` is never reached: hard gate `backup-recency` before it defers"
        ),
        "{message}"
    );
    // Soft, it is waived in time: neither finding.
    home.lane(
        "job",
        "schedule:\n  every: 1h\npreconditions:\n  - use: backup-recency\n    with: { lane: backup, max_age: 36h }\n    soft: true\n  - use: contention\n    with: { peers: [backup] }\nmax_deferral: 6h\ncommand:\n  argv: [true]\n",
    );
    assert!(findings(&home, "hard-gate-on-off-lane").is_empty());
    assert!(findings(&home, "gate-after-always-deferring-gate").is_empty());
}

#[test]
fn a_plugin_that_defers_whatever_happens_hides_the_gates_after_it() {
    let home = Home::standard();
    home.write(
        "plugins/never.rhai",
        "fn evaluate(ctx) { #{ defer: \"not-ever\", detail: \"this plugin never lets anything through\" } }\n",
    );
    home.lane(
        "job",
        "schedule:\n  every: 1h\npreconditions:\n  - use: never\n  - use: off-peak\n    with: { window: \"01:00-06:00\" }\ncommand:\n  argv: [true]\n",
    );
    let (line, col, message, _) = one(&home, "gate-after-always-deferring-gate");
    assert_eq!((line, col), (5, 10));
    assert!(
        message.contains("gate `off-peak` is never reached: hard gate `never` before it defers")
            && message.contains("this plugin never lets anything through"),
        "{message}"
    );
    assert!(findings(&home, "hard-gate-on-off-lane").is_empty());
}

#[test]
fn soft_with_no_max_deferral_and_a_guard_shorter_than_recheck() {
    let home = Home::standard();
    home.lane(
        "job",
        "schedule:\n  every: 1h\npreconditions:\n  - use: off-peak\n    with: { window: \"01:00-06:00\" }\n    soft: true\ncommand:\n  argv: [true]\n",
    );
    let (line, col, message, fix) = one(&home, "soft-without-max-deferral");
    assert_eq!((line, col), (4, 10));
    assert!(
        message.contains("gate `off-peak` is `soft: true`, but the lane has no `max_deferral`")
    );
    assert!(fix.contains("add `max_deferral:`"), "{fix}");

    home.lane(
        "job",
        "schedule:\n  every: 1h\nmax_deferral: 10s\nrecheck: 1m\ncommand:\n  argv: [true]\n",
    );
    let (line, col, message, _) = one(&home, "max-deferral-below-recheck");
    assert_eq!((line, col), (3, 15));
    assert!(
        message.contains("max_deferral 10s is shorter than recheck 1m"),
        "{message}"
    );
}

#[test]
fn a_window_inside_a_dst_gap() {
    let home = Home::standard();
    home.lane(
        "job",
        "schedule:\n  every: 1h\n  timezone: Europe/Berlin\npreconditions:\n  - use: off-peak\n    with: { window: \"02:10-02:40\" }\ncommand:\n  argv: [true]\n",
    );
    let (line, col, message, _) = one(&home, "window-in-dst-gap");
    assert_eq!((line, col), (5, 10));
    assert!(
        message.contains("the window 02:10-02:40 of gate `off-peak` falls inside the daylight-saving gap of Europe/Berlin")
            && message.contains("(local time skips 02:00-03:00)"),
        "{message}"
    );
    // The same window in UTC has no gap.
    home.lane(
        "job",
        "schedule:\n  every: 1h\npreconditions:\n  - use: off-peak\n    with: { window: \"02:10-02:40\" }\ncommand:\n  argv: [true]\n",
    );
    assert!(findings(&home, "window-in-dst-gap").is_empty());
}

#[test]
fn a_group_where_a_slow_low_priority_lane_starves_a_high_priority_one() {
    let home = Home::standard();
    home.lane(
        "urgent",
        "schedule:\n  every: 10m\ngroup: heavy\npriority: 1\ncommand:\n  argv: [true]\n",
    );
    home.lane(
        "slow",
        "schedule:\n  every: 1h\ngroup: heavy\npriority: 5\ncommand:\n  argv: [true]\n  timeout: 2h\n",
    );
    let (line, col, message, fix) = one(&home, "group-starves-priority");
    assert_eq!((line, col), (3, 8));
    assert!(
        message.contains("lane `urgent` (priority 1) can wait behind `slow` (priority 5) in group `heavy` (max_concurrent 1): `slow`'s runs may take up to 2h (timeout + grace), longer than its interval 10m"),
        "{message}"
    );
    assert!(
        fix.contains("give `slow` a timeout shorter than 10m"),
        "{fix}"
    );
    // Two slots: one slow lane cannot fill the group.
    home.write(
        "lanekeeper.yaml",
        "groups:\n  heavy: { max_concurrent: 2 }\n",
    );
    assert!(findings(&home, "group-starves-priority").is_empty());
}
