//! Rhai plugins that misbehave: each defers its lane with `plugin-error`, never hanging the host.

use std::time::{Duration, Instant};

use crate::harness::{Home, assert_decision, lane_yaml};

fn plugin_home(source: &str, settings: &str) -> Home {
    let home = Home::new();
    home.write("plugins/bad.rhai", source);
    home.write("lanekeeper.yaml", settings);
    home.lane("victim", &lane_yaml("1h", "  - use: bad", "[\"true\"]"));
    home
}

fn detail(home: &Home) -> String {
    let d = home.check_at("victim", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "plugin-error");
    assert_eq!(d["gate"], "bad");
    d["detail"].as_str().unwrap().to_string()
}

#[test]
fn a_looping_plugin_runs_out_of_operations() {
    let home = plugin_home("fn evaluate(ctx) {\n    loop { }\n}\n", "");
    let d = detail(&home);
    assert!(
        d.contains("plugin `bad`") && d.contains("bad.rhai:1:1, in fn evaluate"),
        "{d}"
    );
    assert!(d.contains("operation budget"), "{d}");
}

#[test]
fn a_looping_plugin_is_stopped_by_its_deadline() {
    let home = plugin_home(
        "fn evaluate(ctx) {\n    let x = 0;\n    loop { x += 1; }\n}\n",
        "limits:\n  rhai: { max_operations: 1000000000000, deadline: 100ms }\n",
    );
    let started = Instant::now();
    let d = detail(&home);
    assert!(d.contains("deadline of 100ms"), "{d}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_throwing_plugin_reports_its_position_and_message() {
    let home = plugin_home(
        "fn evaluate(ctx) {\n    let a = 1;\n    throw \"disk on fire\";\n}\n",
        "",
    );
    let d = detail(&home);
    assert!(
        d.contains("bad.rhai:3:") && d.contains("disk on fire"),
        "{d}"
    );
}

#[test]
fn a_plugin_returning_nonsense_is_an_error() {
    for (source, needle) in [
        ("fn evaluate(ctx) { 42 }", "type i64"),
        (
            "fn evaluate(ctx) { #{ deferr: \"x\" } }",
            "unknown key `deferr`",
        ),
        ("fn evaluate(ctx) { \"Not Kebab\" }", "kebab-case"),
        ("fn evaluate(ctx) { #{ defer: 7 } }", "`defer` of type"),
    ] {
        let home = plugin_home(source, "");
        let d = detail(&home);
        assert!(d.contains(needle), "{source}: {d}");
    }
}

#[test]
fn a_plugin_hitting_a_size_limit_is_an_error() {
    let home = plugin_home(
        "fn evaluate(ctx) {\n    let s = \"xxxxxxxx\";\n    loop { s += s; }\n}\n",
        "",
    );
    let d = detail(&home);
    assert!(d.contains("size limit"), "{d}");
}

#[test]
fn plugins_have_no_file_or_process_access() {
    let home = plugin_home("fn evaluate(ctx) { open_file(\"/etc/passwd\") }", "");
    let d = detail(&home);
    assert!(d.contains("open_file"), "{d}");
}

#[test]
fn a_new_plugin_file_is_used_by_the_next_invocation() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "  - use: fresh", "[\"true\"]"));
    let out = home.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1));
    home.write(
        "plugins/fresh.rhai",
        "fn evaluate(ctx) { #{ defer: \"quiet-hours\", detail: `lane ${ctx.lane} at ${ctx.local.time}` } }\n",
    );
    let d = home.check_at("a", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "quiet-hours");
    assert_eq!(d["detail"], "lane a at 00:00:00");
    assert_eq!(d["chain"][1]["runtime"], "rhai");
}

#[test]
fn plugins_log_into_the_evidence() {
    let home = Home::new();
    home.write(
        "plugins/chatty.rhai",
        "fn evaluate(ctx) { log(\"looked around\"); print(\"hi\"); () }\n",
    );
    home.lane("a", &lane_yaml("1h", "  - use: chatty", "[\"true\"]"));
    let d = home.check_at("a", "2026-05-10T00:00:00Z");
    let evidence = d["chain"][1]["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 2, "{d}");
    assert_eq!(evidence[0]["message"], "looked around");
}

#[test]
fn a_plugin_cannot_change_what_the_next_gate_sees() {
    let home = Home::new();
    home.write(
        "plugins/vandal.rhai",
        "fn evaluate(ctx) { ctx.params.lane = \"other\"; () }\n",
    );
    home.write(
        "plugins/reader.rhai",
        "fn evaluate(ctx) { #{ defer: \"seen\", detail: `${ctx.params.lane} ${type_of(ctx.lanes.a)}` } }\n",
    );
    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: vandal\n    with: { lane: a }\n    on_error: pass\n  - use: reader\n    with: { lane: a }",
            "[\"true\"]",
        ),
    );
    let d = home.check_at("a", "2026-05-10T00:00:00Z");
    assert!(
        d["chain"][1]["error"].as_str().unwrap().contains("setter"),
        "writes are refused: {d}"
    );
    assert_decision(&d, "deferred", "seen");
    assert_eq!(d["detail"], "a Lane", "{d}");
}
