//! `lanekeeper schema`: JSON Schemas generated from the types the files are read into, checked
//! with a JSON Schema validator: every shipped file passes, planted typos do not.

use serde_json::Value;

use crate::harness::{Home, SHIPPED_LANES, repo};

fn schema(home: &Home, which: &str) -> jsonschema::Validator {
    let out = home.ok(&["schema", which]);
    let schema: Value = serde_json::from_str(&out).expect("schema JSON");
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{schema}"
    );
    jsonschema::validator_for(&schema).expect("a valid schema")
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

fn errors(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    v.iter_errors(&yaml(text)).map(|e| e.to_string()).collect()
}

#[test]
fn every_shipped_lane_file_passes_the_lane_schema() {
    let home = Home::shipped();
    let v = schema(&home, "lane");
    for lane in SHIPPED_LANES {
        let text = std::fs::read_to_string(repo().join(format!("rules/{lane}.yaml"))).unwrap();
        assert_eq!(errors(&v, &text), Vec::<String>::new(), "rules/{lane}.yaml");
    }
}

#[test]
fn the_lane_schema_rejects_planted_typos_and_knows_each_plugins_with() {
    let home = Home::shipped();
    let v = schema(&home, "lane");
    let good = std::fs::read_to_string(repo().join("rules/sandman.yaml")).unwrap();
    for (typo, from, to) in [
        ("a misspelt key", "max_deferral:", "max_defferal:"),
        ("a misspelt schedule key", "  every: 24h", "  evry: 24h"),
        (
            "a duration without a unit",
            "max_deferral: 12h",
            "max_deferral: 12",
        ),
        ("an unknown plugin", "use: off-peak", "use: of-peak"),
        (
            "a misspelt parameter of off-peak",
            "{ window: \"01:00-06:00\" }",
            "{ windw: \"01:00-06:00\" }",
        ),
        ("a window that is not one", "\"01:00-06:00\"", "\"1am-6am\""),
        (
            "a URL that is not http",
            "http://127.0.0.1:11434/api/tags",
            "ftp://127.0.0.1/",
        ),
        (
            "on_error neither defer nor pass",
            "soft: true",
            "on_error: maybe",
        ),
    ] {
        assert!(good.contains(from), "{typo}: {from}");
        let bad = good.replacen(from, to, 1);
        assert!(
            !errors(&v, &bad).is_empty(),
            "{typo} passed the schema:\n{bad}"
        );
    }
    // Jitter and catch-up: taken when well written, refused otherwise.
    let timed = good.replacen(
        "  every: 24h",
        "  every: 24h\n  jitter: 10m\n  catch_up: skip",
        1,
    );
    assert!(errors(&v, &timed).is_empty(), "{:?}", errors(&v, &timed));
    for (what, from, to) in [
        (
            "catch_up neither once nor skip",
            "catch_up: skip",
            "catch_up: twice",
        ),
        (
            "a jitter that is no duration",
            "jitter: 10m",
            "jitter: soon",
        ),
    ] {
        let bad = timed.replacen(from, to, 1);
        assert!(!errors(&v, &bad).is_empty(), "{what} passed:\n{bad}");
    }
    // A required parameter left out (provider-probe's url).
    let bad = good.replacen(
        "with: { url: \"http://127.0.0.1:11434/api/tags\", timeout: 3s }",
        "with: { timeout: 3s }",
        1,
    );
    assert!(!errors(&v, &bad).is_empty(), "a missing url passed:\n{bad}");
}

#[test]
fn the_settings_schema_takes_every_documented_setting_and_rejects_a_typo() {
    let home = Home::new();
    let v = schema(&home, "settings");
    let full = "listen: 9090\nrecheck: 30s\nshutdown_timeout: 60s\ncgroup: auto\n\
        groups: { heavy: { max_concurrent: 2 } }\n\
        run_logs: { max_bytes: 1048576, keep: 5, max_age: 7d }\nhistory: { retention: 30d }\n\
        metrics: { p99: { prometheus: 'http://127.0.0.1:9090/api', series: 'x', timeout: 3s } }\n\
        limits: { gate_timeout: 5s, evidence: { max_bytes: 64KiB }, wasm: { max_memory: 16MiB, reuse: true }, rhai: { max_operations: 1000, deadline: 250ms } }\n\
        plugins: { provider-probe: { allow: { http: ['127.0.0.1:11434'] } } }\n";
    assert_eq!(errors(&v, full), Vec::<String>::new());
    assert!(!errors(&v, "recheck: 30s\nshutdown_timout: 60s\n").is_empty());
    assert!(!errors(&v, "limits: { rhai: { max_operation: 5 } }\n").is_empty());
}

#[test]
fn both_schemas_know_hooks_and_give_up_after() {
    let home = Home::shipped();
    let lane = schema(&home, "lane");
    let hooked = "schedule: { every: 1h }\ngive_up_after: 2d\n\
        on_failure: { argv: [sh, jobs/notify-webhook.sh], timeout: 30s }\n\
        on_give_up: { argv: [sh, jobs/notify-webhook.sh] }\n\
        on_forced_run: { argv: [x] }\non_defer: { argv: [x, 1] }\n\
        command: { argv: [\"true\"] }\n";
    assert_eq!(errors(&lane, hooked), Vec::<String>::new());
    for (typo, from, to) in [
        ("a misspelt hook", "on_defer:", "on_defered:"),
        ("a hook without argv", "{ argv: [x] }", "{ program: x }"),
        ("a shell string", "{ argv: [x, 1] }", "{ argv: \"x 1\" }"),
        (
            "a hook timeout without a unit",
            "timeout: 30s",
            "timeout: 30",
        ),
    ] {
        assert!(hooked.contains(from), "{typo}: {from}");
        let bad = hooked.replacen(from, to, 1);
        assert!(!errors(&lane, &bad).is_empty(), "{typo} passed:\n{bad}");
    }
    let settings = schema(&home, "settings");
    assert_eq!(
        errors(
            &settings,
            "on_failure: { argv: [sh, jobs/notify-webhook.sh] }\n"
        ),
        Vec::<String>::new()
    );
    assert!(!errors(&settings, "on_failure: { argv: [x], timout: 1s }\n").is_empty());
}
