//! Built-in metrics a contention gate can defer on without a helper file: free disk space
//! (`disk.free_bytes:PATH`, `disk.free_pct:PATH`, `disk.used_pct:PATH`) and the number of
//! lanes running in the home (`lanes.running`).

use serde_json::Value;

use crate::harness::{Home, lane_yaml};

fn contention(metric: &str, above: &str) -> String {
    lane_yaml(
        "1h",
        &format!("  - use: contention\n    with: {{ metric: \"{metric}\", above: {above} }}"),
        "[\"true\"]",
    )
}

fn metric_evidence(d: &Value) -> Value {
    d["chain"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["evidence"].as_array().cloned().unwrap_or_default())
        .find(|e| e["kind"] == "metric")
        .unwrap_or_else(|| panic!("no metric evidence: {d}"))
}

#[test]
fn a_contention_gate_defers_on_disk_space() {
    let home = Home::standard();
    // Some space is free on /, and not more than all of it.
    home.lane("free", &contention("disk.free_pct:/", "0"));
    home.lane("full", &contention("disk.free_pct:/", "100"));
    home.lane("bytes", &contention("disk.free_bytes:rules", "0"));
    home.lane("used", &contention("disk.used_pct:/", "100"));

    let d = home.check_now("free");
    assert_eq!(d["outcome"], "deferred", "{d}");
    assert_eq!(d["reason"], "substrate-contended", "{d}");
    assert!(
        d["detail"]
            .as_str()
            .is_some_and(|t| t.starts_with("disk.free_pct:/ is ")),
        "{d}"
    );
    let pct = metric_evidence(&d)["value"].as_f64().expect("a value");
    assert!((0.0..=100.0).contains(&pct) && pct > 0.0, "{pct}");

    assert_eq!(home.check_now("full")["outcome"], "trigger");
    assert_eq!(home.check_now("used")["outcome"], "trigger");

    // A relative path is the home's.
    let d = home.check_now("bytes");
    assert_eq!(d["outcome"], "deferred", "{d}");
    let e = metric_evidence(&d);
    assert!(e["value"].as_f64().is_some_and(|v| v > 0.0), "{e}");
    let rules = home.path().join("rules");
    assert!(
        e["source"]
            .as_str()
            .is_some_and(|s| s.contains(&*rules.to_string_lossy())),
        "{e}"
    );
}

#[test]
fn lanes_running_counts_runs_and_lanes_starting_in_the_pass() {
    let home = Home::standard();
    let mut first = lane_yaml("1h", "", "[\"true\"]");
    first.push_str("priority: 0\n");
    home.lane("first", &first);
    home.lane("guard", &contention("lanes.running", "0"));
    home.lane(
        "busy",
        "schedule:\n  every: \"off\"\ncommand:\n  argv: [sleep, \"30\"]\n",
    );

    // `first` goes first and starts in this pass: `guard` sees one lane running.
    let out = home.ok(&["check", "first", "guard", "--json"]);
    let decisions: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let guard = decisions
        .iter()
        .find(|d| d["lane"] == "guard")
        .expect("guard");
    assert_eq!(guard["outcome"], "deferred", "{guard}");
    assert_eq!(guard["detail"], "lanes.running is 1.0, above 0", "{guard}");

    // Once `first` is not due, nothing runs; with `busy` running, one does.
    home.ok(&["record", "first", "--outcome", "success"]);
    assert_eq!(home.check_now("guard")["outcome"], "trigger");
    home.ok(&["fire", "busy"]);
    let d = home.check_now("guard");
    assert_eq!(d["outcome"], "deferred", "{d}");
    assert_eq!(d["detail"], "lanes.running is 1.0, above 0", "{d}");
    home.ok(&["stop", "busy", "--grace", "1s"]);
}

#[test]
fn a_disk_metric_is_reached_only_when_granted_by_name_or_prefix() {
    let home = Home::standard();
    home.write(
        "plugins/disk-reader.rhai",
        "fn evaluate(ctx) {\n    let v = metric(\"disk.free_pct:/\");\n    if v == () { throw \"no value\"; }\n    #{ detail: `free ${v}` }\n}\n",
    );
    let gate = |allow: &str| {
        lane_yaml(
            "1h",
            &format!("  - use: disk-reader\n    allow: {{ metrics: [{allow}] }}"),
            "[\"true\"]",
        )
    };
    home.lane("by-name", &gate("\"disk.free_pct:/\""));
    home.lane("by-prefix", &gate("\"disk.*\""));
    home.lane("other", &gate("\"disk.free_pct:/tmp\""));
    assert_eq!(home.check_now("by-name")["outcome"], "trigger");
    assert_eq!(home.check_now("by-prefix")["outcome"], "trigger");
    let d = home.check_now("other");
    assert_eq!(d["reason"], "plugin-error", "{d}");
    assert!(d.to_string().contains("not granted"), "{d}");
}
