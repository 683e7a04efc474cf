//! The ordered chain: first deferral wins, soft gates and the starvation guard, on_error.

use crate::harness::{Home, assert_decision, closed_port_url, lane_yaml};

fn two_failing_gates(first: &str, second: &str) -> String {
    lane_yaml("1h", &format!("{first}\n{second}"), "[\"true\"]")
}

#[test]
fn a_lane_failing_two_gates_reports_the_first_in_declared_order() {
    let home = Home::standard();
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    let stale = "  - use: backup-recency\n    with: { lane: backup, max_age: 1h }";
    let probe = format!(
        "  - use: provider-probe\n    with: {{ url: \"{}\" }}",
        closed_port_url()
    );

    home.lane("x", &two_failing_gates(stale, &probe));
    let d = home.check_at("x", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "backup-stale");
    let gates: Vec<&str> = d["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["gate"].as_str().unwrap())
        .collect();
    assert_eq!(
        gates,
        ["schedule", "backup-recency"],
        "evaluation stops at the first deferral"
    );

    home.lane("x", &two_failing_gates(&probe, stale));
    assert_decision(
        &home.check_at("x", "2026-05-10T00:00:00Z"),
        "deferred",
        "provider-unreachable",
    );
}

#[test]
fn explain_shows_every_gate_and_marks_the_one_that_decided() {
    let home = Home::standard();
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    let stale = "  - use: backup-recency\n    with: { lane: backup, max_age: 1h }";
    let probe = format!(
        "  - use: provider-probe\n    with: {{ url: \"{}\" }}",
        closed_port_url()
    );
    home.lane("x", &two_failing_gates(stale, &probe));
    let out = home.ok(&["explain", "x", "--json"]);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_decision(&d, "deferred", "backup-stale");
    let chain = d["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 3, "all gates evaluated: {d}");
    assert_eq!(chain[1]["decided"], true);
    assert_eq!(chain[2]["verdict"], "defer");
    assert_eq!(chain[2]["reason"], "provider-unreachable");

    let human = home.ok(&["explain", "x"]);
    assert!(human.contains("▶ backup-recency"), "{human}");
    assert!(human.contains("provider-unreachable"), "{human}");
}

fn starving_home(hard_gate: bool) -> Home {
    let home = Home::standard();
    home.write("plugins/never.rhai", "fn evaluate(ctx) { \"not-now\" }\n");
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    let hard = if hard_gate {
        "  - use: backup-recency\n    with: { lane: backup, max_age: 1h }\n"
    } else {
        ""
    };
    home.lane(
        "starved",
        &format!(
            "schedule:\n  every: 1h\npreconditions:\n{hard}  - use: never\n    soft: true\nmax_deferral: 2h\ncommand:\n  argv: [\"true\"]\n"
        ),
    );
    home
}

fn plus_ms(at: &str, ms: i64) -> String {
    let t: jiff::Timestamp = at.parse().unwrap();
    (t + jiff::SignedDuration::from_millis(ms)).to_string()
}

#[test]
fn the_starvation_guard_waives_soft_gates_after_max_deferral() {
    let home = starving_home(false);
    home.init_history();
    // A decision at the real present starts the deferral streak.
    let first = home.check_now("starved");
    assert_decision(&first, "deferred", "not-now");
    let since = first["at"].as_str().unwrap().to_string();

    let d = home.check_at("starved", &plus_ms(&since, 2 * 3_600_000 - 1));
    assert_decision(&d, "deferred", "not-now");

    let d = home.check_at("starved", &plus_ms(&since, 2 * 3_600_000));
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert_eq!(d["source"], "starvation-guard");
    assert_eq!(d["reason"], "starvation-guard:7200000");
    assert_eq!(d["chain"][1]["verdict"], "waived");
}

#[test]
fn the_starvation_guard_never_waives_a_hard_gate() {
    let home = starving_home(true);
    let first = home.check_now("starved");
    assert_decision(&first, "deferred", "backup-stale");
    let since = first["at"].as_str().unwrap().to_string();
    let d = home.check_at("starved", &plus_ms(&since, 5 * 3_600_000));
    assert_decision(&d, "deferred", "backup-stale");
}

#[test]
fn a_plugin_error_defers_unless_the_gate_says_on_error_pass() {
    let home = Home::new();
    home.write(
        "plugins/broken.rhai",
        "fn evaluate(ctx) {\n  throw \"boom\";\n}\n",
    );
    home.lane("strict", &lane_yaml("1h", "  - use: broken", "[\"true\"]"));
    home.lane(
        "lenient",
        &lane_yaml("1h", "  - use: broken\n    on_error: pass", "[\"true\"]"),
    );
    home.lane("healthy", &lane_yaml("1h", "", "[\"true\"]"));

    let out = home.ok(&["check", "--at", "2026-05-10T00:00:00Z", "--json"]);
    let ds: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |lane: &str| ds.iter().find(|d| d["lane"] == lane).unwrap().clone();

    assert_decision(&by("strict"), "deferred", "plugin-error");
    let lenient = by("lenient");
    assert_eq!(lenient["outcome"], "trigger", "{lenient}");
    assert!(
        lenient["chain"][1]["error"]
            .as_str()
            .unwrap()
            .contains("boom")
    );
    assert_eq!(
        by("healthy")["outcome"],
        "trigger",
        "other lanes in the pass still decide"
    );
}
