//! The built-in schedule gate: DESIGN §4's due rule at its exact boundaries.

use crate::harness::{Home, assert_decision, lane_yaml};

#[test]
fn a_lane_with_no_recorded_run_is_due() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    let d = home.check_at("a", "2026-05-09T10:00:00Z");
    assert_decision(&d, "trigger", "periodic-sweep:3600000");
    assert_eq!(d["source"], "periodic-sweep");
}

#[test]
fn exactly_due_triggers_and_one_millisecond_before_does_not() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    home.ok(&[
        "record",
        "a",
        "--outcome",
        "success",
        "--at",
        "2026-05-09T10:00:00Z",
    ]);

    let d = home.check_at("a", "2026-05-09T11:00:00Z");
    assert_decision(&d, "trigger", "periodic-sweep:3600000");

    let d = home.check_at("a", "2026-05-09T10:59:59.999Z");
    assert_decision(&d, "deferred", "interval-not-due");
    assert_eq!(d["gate"], "schedule");
    assert_eq!(
        d["chain"].as_array().unwrap().len(),
        1,
        "nothing after the schedule gate: {d}"
    );
}

#[test]
fn a_failed_run_counts_from_its_start_too() {
    let home = Home::new();
    home.lane("a", &lane_yaml("30m", "", "[\"true\"]"));
    home.ok(&[
        "record",
        "a",
        "--outcome",
        "failure",
        "--at",
        "2026-05-09T10:00:00Z",
    ]);
    assert_decision(
        &home.check_at("a", "2026-05-09T10:29:59Z"),
        "deferred",
        "interval-not-due",
    );
    assert_decision(
        &home.check_at("a", "2026-05-09T10:30:00Z"),
        "trigger",
        "periodic-sweep:1800000",
    );
}

#[test]
fn zero_off_and_negative_intervals_disable_the_lane() {
    let home = Home::new();
    home.lane("zero", &lane_yaml("0", "", "[\"true\"]"));
    home.lane("off", &lane_yaml("off", "", "[\"true\"]"));
    home.lane("negative", &lane_yaml("-5m", "", "[\"true\"]"));
    home.lane("on", &lane_yaml("5m", "", "[\"true\"]"));
    for lane in ["zero", "off", "negative"] {
        let d = home.check_at(lane, "2026-05-09T10:00:00Z");
        assert_eq!(d["outcome"], "disabled", "{lane}: {d}");
    }
    assert_eq!(
        home.check_at("on", "2026-05-09T10:00:00Z")["outcome"],
        "trigger"
    );
}

#[test]
fn cron_is_due_once_a_slot_passed_since_the_last_run_in_the_lane_zone() {
    let home = Home::new();
    home.lane(
        "nightly",
        "schedule:\n  cron: \"0 3 * * *\"\n  timezone: Europe/Berlin\ncommand:\n  argv: [\"true\"]\n",
    );
    // 02:00 Berlin (CEST, +02:00) on 9 May.
    home.ok(&[
        "record",
        "nightly",
        "--outcome",
        "success",
        "--at",
        "2026-05-09T00:00:00Z",
    ]);
    let d = home.check_at("nightly", "2026-05-09T00:59:59Z");
    assert_decision(&d, "deferred", "interval-not-due");
    let d = home.check_at("nightly", "2026-05-09T01:00:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert_eq!(d["source"], "cron");
}

#[test]
fn cron_accepts_an_optional_seconds_field() {
    let home = Home::new();
    home.lane(
        "s",
        "schedule:\n  cron: \"30 0 3 * * *\"\ncommand:\n  argv: [\"true\"]\n",
    );
    home.ok(&[
        "record",
        "s",
        "--outcome",
        "success",
        "--at",
        "2026-05-09T00:00:00Z",
    ]);
    assert_eq!(
        home.check_at("s", "2026-05-09T03:00:29Z")["outcome"],
        "deferred"
    );
    assert_eq!(
        home.check_at("s", "2026-05-09T03:00:30Z")["outcome"],
        "trigger"
    );
}
