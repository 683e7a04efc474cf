//! The four standard preconditions, each on both sides of its boundary.

use std::time::Duration;

use crate::harness::{Home, TestServer, assert_decision, closed_port_url, lane_yaml};

fn backup_home(max_age: &str) -> Home {
    let home = Home::standard();
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    home.lane(
        "heavy",
        &lane_yaml(
            "24h",
            &format!("  - use: backup-recency\n    with: {{ lane: backup, max_age: {max_age} }}"),
            "[\"true\"]",
        ),
    );
    home
}

#[test]
fn backup_stale_without_any_recorded_success() {
    let home = backup_home("36h");
    let d = home.check_at("heavy", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "backup-stale");
    assert_eq!(d["gate"], "backup-recency");
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains("no recorded success"),
        "{d}"
    );

    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "failure",
        "--at",
        "2026-05-09T23:00:00Z",
    ]);
    assert_decision(
        &home.check_at("heavy", "2026-05-10T00:00:00Z"),
        "deferred",
        "backup-stale",
    );
}

#[test]
fn backup_exactly_max_age_old_passes_and_one_second_older_defers() {
    let home = backup_home("36h");
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        "2026-05-08T00:00:00Z",
    ]);
    let d = home.check_at("heavy", "2026-05-09T12:00:00Z");
    assert_eq!(d["outcome"], "trigger", "exactly 36h: {d}");

    let d = home.check_at("heavy", "2026-05-09T12:00:01Z");
    assert_decision(&d, "deferred", "backup-stale");
    let detail = d["detail"].as_str().unwrap();
    assert!(
        detail.contains("36h") && detail.contains("backup"),
        "{detail}"
    );
    // The evidence names the lane looked at.
    let evidence = &d["chain"][1]["evidence"][0];
    assert_eq!(evidence["kind"], "lane");
    assert_eq!(evidence["lane"], "backup");
}

fn probe_home(url: &str, timeout: &str) -> Home {
    let home = Home::standard();
    home.lane(
        "llm",
        &lane_yaml(
            "1h",
            &format!("  - use: provider-probe\n    with: {{ url: \"{url}\", timeout: {timeout} }}"),
            "[\"true\"]",
        ),
    );
    home
}

#[test]
fn provider_unreachable_on_a_closed_port() {
    let home = probe_home(&closed_port_url(), "2s");
    let d = home.check_at("llm", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "provider-unreachable");
    assert!(d["detail"].as_str().unwrap().contains("connection"), "{d}");
    assert_eq!(d["chain"][1]["evidence"][0]["kind"], "http");
}

#[test]
fn provider_unreachable_on_a_503_and_reachable_on_a_200() {
    let down = TestServer::start(503, "overloaded");
    let home = probe_home(&down.url, "2s");
    let d = home.check_at("llm", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "provider-unreachable");
    assert!(d["detail"].as_str().unwrap().contains("503"), "{d}");
    assert_eq!(d["chain"][1]["evidence"][0]["status"], 503);

    let up = TestServer::start(200, "{}");
    let home = probe_home(&up.url, "2s");
    let d = home.check_at("llm", "2026-05-10T00:00:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert_eq!(up.hits(), 1);
}

#[test]
fn a_server_that_never_answers_is_unreachable_within_the_timeout() {
    let silent = TestServer::silent();
    let home = probe_home(&silent.url, "300ms");
    let started = std::time::Instant::now();
    let d = home.check_at("llm", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "provider-unreachable");
    assert!(d["detail"].as_str().unwrap().contains("timed out"), "{d}");
    let latency = d["chain"][1]["evidence"][0]["latency_ms"].as_f64().unwrap();
    assert!(
        (250.0..3000.0).contains(&latency),
        "probe took {latency} ms"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn lanes_probing_one_url_in_one_pass_make_one_request() {
    let up = TestServer::start(200, "{}");
    let home = probe_home(&up.url, "2s");
    home.lane(
        "llm2",
        &lane_yaml(
            "1h",
            &format!(
                "  - use: provider-probe\n    with: {{ url: \"{}\" }}",
                up.url
            ),
            "[\"true\"]",
        ),
    );
    let out = home.ok(&["check", "--at", "2026-05-10T00:00:00Z", "--json"]);
    assert_eq!(out.lines().count(), 2);
    assert_eq!(up.hits(), 1, "one request for two lanes");
    assert!(out.contains("\"cached\":true"), "{out}");
}

fn off_peak_home(window: &str, zone: &str) -> Home {
    let home = Home::standard();
    home.lane(
        "night",
        &format!(
            "schedule:\n  every: 1h\n  timezone: {zone}\npreconditions:\n  - use: off-peak\n    with: {{ window: \"{window}\" }}\ncommand:\n  argv: [\"true\"]\n"
        ),
    );
    home
}

#[test]
fn off_peak_window_wrapping_midnight_is_start_inclusive_end_exclusive() {
    let home = off_peak_home("22:00-04:00", "UTC");
    let cases = [
        ("2026-05-09T21:59:59Z", "deferred"),
        ("2026-05-09T22:00:00Z", "trigger"),
        ("2026-05-10T00:30:00Z", "trigger"),
        ("2026-05-10T03:59:59Z", "trigger"),
        ("2026-05-10T04:00:00Z", "deferred"),
        ("2026-05-10T12:00:00Z", "deferred"),
    ];
    for (at, outcome) in cases {
        let d = home.check_at("night", at);
        assert_eq!(d["outcome"], outcome, "at {at}: {d}");
        if outcome == "deferred" {
            assert_decision(&d, "deferred", "outside-off-peak");
        }
    }
}

#[test]
fn off_peak_follows_daylight_saving_time_in_the_lane_zone() {
    let home = off_peak_home("01:00-06:00", "Europe/Berlin");
    // 28 March 2026: CET (+01:00); 04:30Z is 05:30 local, inside.
    assert_eq!(
        home.check_at("night", "2026-03-28T04:30:00Z")["outcome"],
        "trigger"
    );
    // 29 March 2026: clocks went forward; 04:30Z is 06:30 CEST, outside.
    let d = home.check_at("night", "2026-03-29T04:30:00Z");
    assert_decision(&d, "deferred", "outside-off-peak");
    assert!(d["detail"].as_str().unwrap().contains("06:30"), "{d}");
    // 25 October 2026: clocks went back; 04:30Z is 05:30 CET again, inside.
    assert_eq!(
        home.check_at("night", "2026-10-25T04:30:00Z")["outcome"],
        "trigger"
    );
    assert_eq!(
        home.check_at("night", "2026-10-24T04:30:00Z")["outcome"],
        "deferred"
    );
}

fn contention_home(settings: &str, with: &str) -> Home {
    let home = Home::standard();
    home.write("lanekeeper.yaml", settings);
    home.lane(
        "busy",
        &lane_yaml(
            "1h",
            &format!("  - use: contention\n    with: {with}"),
            "[\"true\"]",
        ),
    );
    home
}

#[test]
fn substrate_contended_when_a_file_metric_is_above_its_threshold() {
    let home = contention_home(
        "metrics:\n  add_memory_p99_ms: { file: p99.txt }\n",
        "{ metrics: [ { metric: add_memory_p99_ms, above: 800 } ] }",
    );
    home.write("p99.txt", "800\n");
    let d = home.check_at("busy", "2026-05-10T00:00:00Z");
    assert_eq!(
        d["outcome"], "trigger",
        "equal to the threshold passes: {d}"
    );

    home.write("p99.txt", "800.5\n");
    let d = home.check_at("busy", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "substrate-contended");
    assert!(d["detail"].as_str().unwrap().contains("800.5"), "{d}");
    assert_eq!(d["chain"][1]["evidence"][0]["value"], 800.5);
}

#[test]
fn substrate_contended_from_a_prometheus_series() {
    let server = TestServer::start(
        200,
        "# TYPE add_memory_latency_ms summary\nadd_memory_latency_ms{quantile=\"0.5\"} 40\nadd_memory_latency_ms{quantile=\"0.99\"} 950\n",
    );
    let home = contention_home(
        &format!(
            "metrics:\n  add_memory_p99_ms:\n    prometheus: \"{}\"\n    series: 'add_memory_latency_ms{{quantile=\"0.99\"}}'\n",
            server.url
        ),
        "{ metric: add_memory_p99_ms, above: 800 }",
    );
    let d = home.check_at("busy", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "substrate-contended");
    assert!(d["detail"].as_str().unwrap().contains("950"), "{d}");
}

#[test]
fn an_unreadable_metric_is_a_plugin_error_naming_the_metric() {
    let home = contention_home(
        "metrics:\n  queue: { file: missing.txt }\n",
        "{ metric: queue, above: 10 }",
    );
    let d = home.check_at("busy", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "plugin-error");
    assert!(d["detail"].as_str().unwrap().contains("queue"), "{d}");
    assert!(
        d["chain"][1]["evidence"][0]["error"]
            .as_str()
            .unwrap()
            .contains("missing.txt"),
        "{d}"
    );
}

#[test]
fn linux_psi_is_a_built_in_metric() {
    if !std::path::Path::new("/proc/pressure/cpu").exists() {
        eprintln!("skipped: this kernel has no /proc/pressure");
        return;
    }
    let home = contention_home("", "{ metric: psi.cpu.some.avg10, above: -1 }");
    let d = home.check_at("busy", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "substrate-contended");
    assert!(
        d["chain"][1]["evidence"][0]["source"]
            .as_str()
            .unwrap()
            .contains("/proc/pressure/cpu")
    );
}
