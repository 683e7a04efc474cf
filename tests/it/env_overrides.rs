//! Environment overrides: `${VAR}`, `${VAR:-default}` and `$$` in lane files and
//! `lanekeeper.yaml`; an unset variable is reported at its place; `explain` names the variables
//! a lane's values came from and never shows a secret's value.

use std::process::Output;

use serde_json::Value;

use crate::harness::Home;

/// Runs lanekeeper with `vars` added to its environment.
fn with_env(home: &Home, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = home.command(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run lanekeeper")
}

fn ok_with_env(home: &Home, vars: &[(&str, &str)], args: &[&str]) -> String {
    let out = with_env(home, vars, args);
    assert!(
        out.status.success(),
        "lanekeeper {args:?}: {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

const LANE: &str = "schedule: { every: \"${EVERY:-24h}\" }\n\
    label: ${LABEL}\n\
    command:\n  argv: [sh, -c, \"echo '$$x' ${LABEL} ${MISSING:-fallback} ${API_TOKEN} > out\"]\n\
    \x20 env: { MY_KEY: \"${deploy_key:-k-default}\" }\n";

#[test]
fn variables_defaults_and_escapes_are_substituted_in_values() {
    let home = Home::new();
    home.lane("job", LANE);
    let vars = [
        ("LABEL", "nightly"),
        ("API_TOKEN", "tok-123"),
        ("EVERY", "2h"),
    ];
    let out = with_env(&home, &vars, &["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let written = std::fs::read_to_string(home.path().join("out")).unwrap();
    assert_eq!(written.trim(), "$x nightly fallback tok-123");
    // `every:` came from EVERY: the lane is due two hours after its run.
    let d: Value =
        serde_json::from_str(ok_with_env(&home, &vars, &["check", "job", "--json"]).trim())
            .unwrap();
    assert!(
        d["chain"][0]["detail"]
            .as_str()
            .is_some_and(|t| t.contains("every 2h")),
        "{d}"
    );
}

#[test]
fn an_unset_variable_without_a_default_is_reported_at_its_place() {
    let home = Home::new();
    home.lane("job", LANE);
    let out = with_env(&home, &[("API_TOKEN", "t")], &["validate"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr
        .lines()
        .find(|l| l.contains("`LABEL`"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        first.ends_with("is not set and `${LABEL}` has no default; set it in the environment lanekeeper runs in, or write ${LABEL:-default}")
            && first.contains("rules/job.yaml:2:8: "),
        "{stderr}"
    );
    assert!(stderr.contains("rules/job.yaml:4:"), "{stderr}");

    // In lanekeeper.yaml too, and a problem after a substitution points at the file as written.
    home.lane(
        "job",
        "schedule: { every: 1h }\ncommand: { argv: [\"true\"] }\n",
    );
    home.write(
        "lanekeeper.yaml",
        "recheck: ${RECHECK}\nrun_logs: { keep: ${KEEP:-5}, max_age: 3x }\n",
    );
    let out = with_env(&home, &[], &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lanekeeper.yaml:1:10: environment variable `RECHECK` is not set"),
        "{stderr}"
    );
    let out = with_env(&home, &[("RECHECK", "10s")], &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lanekeeper.yaml:2:40: "),
        "the bad `3x` as written, not as substituted:\n{stderr}"
    );
}

#[test]
fn a_variable_in_a_key_is_refused() {
    let home = Home::new();
    home.lane(
        "job",
        "schedule: { every: 1h }\ncommand: { argv: [\"true\"] }\n${EXTRA}: 1\n",
    );
    let out = with_env(&home, &[("EXTRA", "label")], &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "rules/job.yaml:3:1: `label`: environment variables are substituted in values only"
        ),
        "{stderr}"
    );
}

#[test]
fn explain_names_the_variables_and_never_shows_a_secret() {
    let home = Home::new();
    home.lane("job", LANE);
    let vars = [
        ("LABEL", "nightly"),
        ("API_TOKEN", "tok-123"),
        ("deploy_key", "dk-456"),
    ];
    let text = ok_with_env(&home, &vars, &["explain", "job"]);
    assert!(text.contains("values from the environment"), "{text}");
    assert!(text.contains("${LABEL} at "), "{text}");
    assert!(text.contains("= \"nightly\""), "{text}");
    assert!(text.contains("${EVERY} at "), "{text}");
    assert!(text.contains("\"24h\" (unset; its default)"), "{text}");
    assert!(text.contains("${API_TOKEN} at "), "{text}");
    assert!(text.contains("${deploy_key} at "), "{text}");
    assert!(
        !text.contains("tok-123") && !text.contains("dk-456"),
        "{text}"
    );

    let json = ok_with_env(&home, &vars, &["explain", "job", "--json"]);
    assert!(
        !json.contains("tok-123") && !json.contains("dk-456"),
        "{json}"
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    let vars: Vec<&str> = v["from_environment"]
        .as_array()
        .expect("from_environment")
        .iter()
        .filter_map(|r| r["variable"].as_str())
        .collect();
    assert!(
        vars.contains(&"LABEL") && vars.contains(&"API_TOKEN") && vars.contains(&"deploy_key"),
        "{v}"
    );
}

#[test]
fn a_secret_in_a_probed_url_is_left_out_of_everything_explain_prints() {
    let home = Home::standard();
    let url = crate::harness::closed_port_url();
    home.lane(
        "job",
        &format!(
            "schedule: {{ every: 1h }}\npreconditions:\n  - use: provider-probe\n    with: {{ url: \"{url}v1?key=${{PROBE_SECRET}}\", timeout: 1s }}\ncommand: {{ argv: [\"true\"] }}\n"
        ),
    );
    let vars = [("PROBE_SECRET", "hush-789")];
    for args in [
        &["explain", "job"][..],
        &["explain", "job", "--json"],
        &["check", "job", "--json"],
    ] {
        let out = ok_with_env(&home, &vars, args);
        assert!(out.contains("provider-unreachable"), "{out}");
        assert!(!out.contains("hush-789"), "{out}");
        assert!(out.contains("key=${PROBE_SECRET}"), "{out}");
    }
    let text = ok_with_env(&home, &vars, &["explain", "job"]);
    assert!(
        text.contains("${PROBE_SECRET} at ") && text.contains("= (secret, not shown)"),
        "the variable is named, its value not:\n{text}"
    );
}
