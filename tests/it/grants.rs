//! Capability grants, deny by default: a gate reaches only the endpoints and metrics its lane's
//! `with:` names, its own `allow:`, or lanekeeper.yaml's grants to its plugin.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Home, TestServer, assert_decision, lane_yaml};

/// A plugin that probes `ctx.params.url`, or reads `ctx.params.metric`.
const SNOOP: &str = r#"
fn params() { #{ url: "string?", metric: "string?" } }
fn evaluate(ctx) {
    let p = ctx.params;
    if p.url != () { let r = http_get(p.url, 2000); if !r.ok { return "unreachable"; } }
    if p.metric != () { let v = metric(p.metric); if v == () { throw "no value"; } }
    ()
}
"#;

fn snooping(with: &str, allow: &str, settings: &str) -> Home {
    let home = Home::new();
    home.write("plugins/snoop.rhai", SNOOP);
    home.write("lanekeeper.yaml", settings);
    home.lane(
        "a",
        &lane_yaml(
            "1h",
            &format!("  - use: snoop\n    with: {with}\n{allow}"),
            "[\"true\"]",
        ),
    );
    home
}

#[test]
fn a_probe_outside_the_grants_is_a_plugin_error_naming_it() {
    let server = TestServer::start(200, "ok");
    // A string parameter is not a grant: only typed `url` parameters are.
    let home = snooping(&format!("{{ url: {:?} }}", server.url), "", "");
    let d = home.check_at("a", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "plugin-error");
    let port = server.url.trim_end_matches('/').rsplit(':').next().unwrap();
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("http to 127.0.0.1:{port} not granted")),
        "{d}"
    );
    assert_eq!(server.hits(), 0, "the request was never made");
}

#[test]
fn a_gate_allow_grants_an_endpoint_and_only_that_one() {
    let server = TestServer::start(200, "ok");
    let other = TestServer::start(200, "ok");
    let port = |url: &str| {
        url.trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_string()
    };
    let allow = format!(
        "    allow: {{ http: [\"127.0.0.1:{}\"] }}\n",
        port(&server.url)
    );
    let home = snooping(&format!("{{ url: {:?} }}", server.url), &allow, "");
    assert_eq!(
        home.check_at("a", "2026-05-10T00:00:00Z")["outcome"],
        "trigger"
    );
    assert_eq!(server.hits(), 1);
    let home = snooping(&format!("{{ url: {:?} }}", other.url), &allow, "");
    assert_decision(
        &home.check_at("a", "2026-05-10T00:00:00Z"),
        "deferred",
        "plugin-error",
    );
    assert_eq!(other.hits(), 0);
}

#[test]
fn lanekeeper_yaml_grants_a_plugin_in_every_lane() {
    let server = TestServer::start(200, "ok");
    let home = snooping(
        &format!("{{ url: {:?} }}", server.url),
        "",
        "plugins:\n  snoop:\n    allow: { http: [\"127.0.0.1\"] }\n",
    );
    assert_eq!(
        home.check_at("a", "2026-05-10T00:00:00Z")["outcome"],
        "trigger"
    );
}

#[test]
fn a_metric_outside_the_grants_is_a_plugin_error_and_a_granted_prefix_is_read() {
    let home = snooping("{ metric: loadavg.1 }", "", "");
    let d = home.check_at("a", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "plugin-error");
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains("metric loadavg.1 not granted"),
        "{d}"
    );
    let home = snooping(
        "{ metric: loadavg.1 }",
        "    allow: { metrics: [\"loadavg.*\"] }\n",
        "",
    );
    assert_eq!(
        home.check_at("a", "2026-05-10T00:00:00Z")["outcome"],
        "trigger"
    );
}

#[test]
fn the_standard_plugins_reach_exactly_what_their_with_names() {
    let home = Home::shipped();
    let out = home.ok(&["validate"]);
    let sandman_probe = out
        .lines()
        .find(|l| l.starts_with("sandman") && l.contains("provider-probe"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(sandman_probe.ends_with("http 127.0.0.1:11434"), "{out}");
    let others = out
        .lines()
        .filter(|l| l.contains("backup-recency") || l.contains("off-peak"));
    for line in others {
        assert!(
            line.ends_with("nothing (lane states and logging only)"),
            "{line}"
        );
    }
}

#[test]
fn a_grant_that_is_not_a_host_and_one_for_an_unknown_plugin_are_errors() {
    let home = snooping(
        "{ url: \"http://127.0.0.1:1/\" }",
        "    allow: { http: [\"127.0.0.1:http\"] }\n",
        "plugins:\n  nope:\n    allow: { metrics: [x] }\n",
    );
    let problems = crate::harness::problems(&home);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("a.yaml:") && p.contains("is not a port")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("lanekeeper.yaml:") && p.contains("no plugin `nope`")),
        "{problems:?}"
    );
}

#[test]
fn validate_warns_when_rules_or_plugins_are_writable_by_others() {
    let home = snooping("{}", "", "");
    let rule = home.path().join("rules/a.yaml");
    std::fs::set_permissions(&rule, std::fs::Permissions::from_mode(0o666)).unwrap();
    let plugin = home.path().join("plugins/snoop.rhai");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o664)).unwrap();
    let out = home.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "warnings only");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a.yaml:1:1: warning: writable by its group and everyone (mode 0666)"),
        "{err}"
    );
    assert!(
        err.contains("snoop.rhai:1:1: warning: writable by its group (mode 0664)"),
        "{err}"
    );
}
