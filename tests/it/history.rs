//! The decision history: decisions at the real present are recorded; what-ifs never are.

use crate::harness::{Home, lane_yaml};

#[test]
fn a_plain_check_is_recorded_and_explain_at_finds_it() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    let d = home.check_now("a");
    let at = d["at"].as_str().unwrap();
    let out = home.ok(&["explain", "a", "--at", at, "--json"]);
    let recorded: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(recorded, d, "the recorded decision is the one printed");
}

#[test]
fn check_at_is_a_what_if_and_never_recorded() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    home.check_at("a", "2030-01-01T00:00:00Z");
    let out = home.run(&["explain", "a", "--at", "2030-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no decision about `a` is recorded"));
    assert!(home.status("a")["deferral"].is_null());
}

#[test]
fn fire_records_a_manual_trigger() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    assert_eq!(home.run(&["fire", "a", "--wait"]).status.code(), Some(0));
    let out = home.ok(&["explain", "a", "--at", "2100-01-01T00:00:00Z", "--json"]);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["outcome"], "trigger");
    assert_eq!(d["source"], "manual");
}

#[test]
fn a_recorded_deferral_starts_a_streak_that_a_trigger_ends() {
    let home = Home::new();
    home.write(
        "plugins/gate.rhai",
        "fn evaluate(ctx) { if ctx.lanes.flag.last_success_ms == () { \"waiting\" } }\n",
    );
    home.lane("flag", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane("a", &lane_yaml("1h", "  - use: gate", "[\"true\"]"));
    home.check_now("a");
    let s = home.status("a");
    assert_eq!(s["deferral"]["reason"], "waiting");
    let since = s["deferral"]["since"].clone();
    home.check_now("a");
    assert_eq!(
        home.status("a")["deferral"]["since"],
        since,
        "the streak keeps its start"
    );
    home.ok(&["record", "flag", "--outcome", "success"]);
    assert_eq!(home.check_now("a")["outcome"], "trigger");
    assert!(home.status("a")["deferral"].is_null());
}

#[test]
fn record_stamps_runs_made_outside_lanekeeper() {
    let home = Home::new();
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        "2026-05-09T10:00:00Z",
    ]);
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "failure",
        "--at",
        "2026-05-09T12:00:00Z",
    ]);
    let s = home.status("backup");
    assert_eq!(s["last_run_at"], "2026-05-09T12:00:00Z");
    assert_eq!(s["last_success_at"], "2026-05-09T10:00:00Z");
    assert_eq!(s["last_result"], "failure");
    assert_eq!(s["next_due_at"], "2026-05-10T12:00:00Z");
    // An older record does not move the clock back.
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        "2026-05-01T00:00:00Z",
    ]);
    assert_eq!(
        home.status("backup")["last_success_at"],
        "2026-05-09T10:00:00Z"
    );
}
