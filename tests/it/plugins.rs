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

/// Rhai's `sort` and `dedup` swallow errors raised by their comparator and go on; a plugin
/// must not pass because its callback blew a budget, missed its deadline or threw.
#[test]
fn an_error_in_a_sort_comparator_fails_the_gate() {
    let throwing = [
        "a.sort(|x, y| throw \"boom\");",
        "a.sort_by(|x, y| throw \"boom\");",
        "a.dedup(|x, y| throw \"boom\");",
        "a.filter(|x| throw \"boom\");",
        "a.map(|x| throw \"boom\");",
        "a.reduce(|s, x| throw \"boom\", 0);",
        "a.reduce_rev(|s, x| throw \"boom\", 0);",
        "a.retain(|x| throw \"boom\");",
        "a.drain(|x| throw \"boom\");",
        "a.some(|x| throw \"boom\");",
        "a.all(|x| throw \"boom\");",
        "a.index_of(|x| throw \"boom\");",
        "a.find(|x| throw \"boom\");",
        "a.find_map(|x| throw \"boom\");",
        "a.for_each(|x| throw \"boom\");",
        "a.zip([1, 2, 3], |x, y| throw \"boom\");",
        "#{ k: 1 }.filter(|k, v| throw \"boom\");",
        "#{ k: 1 }.map(|k, v| throw \"boom\");",
        "#{ k: 1 }.retain(|k, v| throw \"boom\");",
        "#{ k: 1 }.drain(|k, v| throw \"boom\");",
    ];
    for call in throwing {
        let home = plugin_home(
            &format!("fn evaluate(ctx) {{\n    let a = [3, 1, 2];\n    {call}\n    ()\n}}\n"),
            "",
        );
        let d = detail(&home);
        assert!(d.contains("boom"), "{call}: {d}");
    }

    let looping = "fn evaluate(ctx) {\n    let a = [5, 3, 1, 4, 2];\n    a.sort(|x, y| { let i = 0; loop { i += 1; } });\n    ()\n}\n";
    let home = plugin_home(looping, "limits:\n  rhai: { max_operations: 100000 }\n");
    let d = detail(&home);
    assert!(d.contains("operation budget"), "{d}");
    let home = plugin_home(
        looping,
        "limits:\n  rhai: { max_operations: 1000000000000, deadline: 100ms }\n",
    );
    let d = detail(&home);
    assert!(d.contains("deadline of 100ms"), "{d}");
}

/// Only `()`, a reason string and maps of `defer`, `detail` and `hint` are verdicts.
#[test]
fn an_unknown_verdict_shape_is_a_plugin_error() {
    for source in [
        "fn evaluate(ctx) { #{ pass: false } }",
        "fn evaluate(ctx) { #{ pass: true } }",
        "fn evaluate(ctx) { #{ defer: \"x\", pass: false } }",
        "fn evaluate(ctx) { #{ ok: true } }",
        "fn evaluate(ctx) { [\"backup-stale\"] }",
        "fn evaluate(ctx) { false }",
    ] {
        let home = plugin_home(source, "");
        let d = detail(&home);
        assert!(d.contains("unknown verdict shape"), "{source}: {d}");
    }
}

/// In Rhai a limit of 0 means "unlimited"; in lanekeeper.yaml it is refused.
#[test]
fn a_zero_string_limit_is_not_unlimited() {
    let home = Home::new();
    home.write(
        "lanekeeper.yaml",
        "limits:\n  rhai:\n    max_operations: 0\n    max_call_levels: 0\n    max_string_size: 0\n    max_array_size: 0\n    max_map_size: 0\n",
    );
    let p = crate::harness::problems(&home);
    assert_eq!(p.len(), 5, "{p:#?}");
    for (i, key) in [
        "max_operations",
        "max_call_levels",
        "max_string_size",
        "max_array_size",
        "max_map_size",
    ]
    .iter()
    .enumerate()
    {
        let line = &p[i];
        assert!(
            line.contains(&format!(":{}:", i + 3)) && line.contains(&format!("limits.rhai.{key}")),
            "{p:#?}"
        );
        assert!(line.contains("0 would mean unlimited"), "{line}");
    }
}

/// The evidence of one gate is capped: a plugin logging in a loop is stopped at the cap with a
/// `plugin-error` naming it, keeps nothing past it, and floods neither the decision nor the log.
#[test]
fn a_plugin_logging_in_a_loop_is_stopped_at_its_evidence_cap() {
    // The operation budget keeps the unfixed host from running out of memory.
    let settings = "limits:\n  rhai: { max_operations: 3000 }\n";
    for (source, cause, kept) in [
        (
            "fn evaluate(ctx) {\n    loop { log(\"flood\"); }\n}\n",
            "evidence over 64 entries (limits.evidence.max_entries)",
            64,
        ),
        (
            "fn evaluate(ctx) {\n    loop { try { print(\"flood\"); } catch { } }\n}\n",
            "evidence over 64 entries (limits.evidence.max_entries)",
            64,
        ),
        (
            "fn evaluate(ctx) {\n    let s = \"flood-0123456789\";\n    for i in 0..8 { s += s; }\n    loop { warn(s); }\n}\n",
            "evidence over 64 KiB (limits.evidence.max_bytes)",
            15,
        ),
    ] {
        let home = plugin_home(source, settings);
        let out = home.run_cmd_within(
            {
                let mut cmd =
                    home.command(&["check", "victim", "--at", "2026-05-10T00:00:00Z", "--json"]);
                cmd.env("LANEKEEPER_LOG", "info");
                cmd
            },
            &["check"],
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{out:?}");
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON decision");
        assert_decision(&d, "deferred", "plugin-error");
        let detail = d["detail"].as_str().unwrap();
        assert!(detail.contains(cause), "{source}: {detail}");
        assert!(detail.contains("plugin `bad`"), "{detail}");
        let evidence = d["chain"][1]["evidence"].as_array().unwrap();
        assert_eq!(evidence.len(), kept, "{source}");
        let logged = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("flood"))
            .count();
        assert_eq!(logged, kept, "only what is kept reaches the log");
    }
}

/// A detail or hint over `limits.evidence.max_detail` is refused; a thrown message is cut.
#[test]
fn a_detail_over_its_cap_is_a_plugin_error() {
    let long = "fn evaluate(ctx) {\n    let s = \"0123456789abcdef\";\n    for i in 0..9 { s += s; }\n    SHAPE\n}\n";
    for (shape, needle) in [
        (
            "#{ defer: \"slow\", detail: s }",
            "returned a detail over 4 KiB (limits.evidence.max_detail)",
        ),
        (
            "#{ detail: s }",
            "returned a detail over 4 KiB (limits.evidence.max_detail)",
        ),
        (
            "#{ defer: \"slow\", detail: \"d\", hint: s }",
            "returned a hint over 4 KiB (limits.evidence.max_detail)",
        ),
        ("throw s;", "(cut at 4 KiB, limits.evidence.max_detail)"),
    ] {
        let home = plugin_home(&long.replace("SHAPE", shape), "");
        let d = detail(&home);
        assert!(d.contains(needle), "{shape}: {d}");
        assert!(d.len() < 4096 + 256, "{shape}: {} bytes", d.len());
    }
}

/// `http_get`'s timeout is cut to what is left of `limits.gate_timeout`, later host calls fail
/// at once, and the gate ends as a deadline `plugin-error`: no plugin holds a pass for longer.
#[test]
fn http_get_cannot_outlive_the_gate_budget() {
    let silent = crate::harness::TestServer::silent();
    for body in [
        format!("http_get(\"{}\", 60000);\n    ()", silent.url),
        format!(
            "for i in 0..8 {{ http_get(`{}${{i}}`, 1500); }}\n    ()",
            silent.url
        ),
    ] {
        let home = plugin_home(
            &format!("fn evaluate(ctx) {{\n    {body}\n}}\n"),
            "limits:\n  gate_timeout: 400ms\nplugins:\n  bad: { allow: { http: [\"127.0.0.1\"] } }\n",
        );
        let out = home.run_within(
            &["check", "victim", "--at", "2026-05-10T00:00:00Z", "--json"],
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{out:?}");
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON decision");
        assert_decision(&d, "deferred", "plugin-error");
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.contains("ran past its gate budget of 400ms (limits.gate_timeout)"),
            "{detail}"
        );
        let evidence = d["chain"][1]["evidence"].as_array().unwrap();
        assert_eq!(evidence.len(), 1, "one probe, cut short: {d}");
        assert!(
            evidence[0]["error"].as_str().unwrap().contains("timed out"),
            "{d}"
        );
    }
}

/// As in WASM, `limits.rhai.deadline` is the plugin's own running time: a slow probe reads as
/// what the probe saw, not as a plugin that missed its deadline.
#[test]
fn time_waiting_on_a_probe_does_not_count_against_a_rhai_deadline() {
    let silent = crate::harness::TestServer::silent();
    let home = plugin_home(
        &format!(
            "fn evaluate(ctx) {{\n    let r = http_get(\"{}\", 300);\n    let n = 0;\n    for i in 0..2000 {{ n += i; }}\n    #{{ defer: \"provider-unreachable\", detail: `${{r.error}}` }}\n}}\n",
            silent.url
        ),
        "limits:\n  rhai: { deadline: 50ms }\nplugins:\n  bad: { allow: { http: [\"127.0.0.1\"] } }\n",
    );
    let d = home.check_at("victim", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "provider-unreachable");
    assert!(d["detail"].as_str().unwrap().contains("timed out"), "{d}");
}
