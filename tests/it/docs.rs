//! The documentation against the binary: what it says exists, exists, and the reverse.

use crate::harness::{Home, repo};

/// The keys `validate` says a section of `lanekeeper.yaml` accepts, from its unknown-key
/// message ("expected one of …").
fn accepted_keys(yaml: &str) -> Vec<String> {
    let home = Home::new();
    home.write("lanekeeper.yaml", yaml);
    let out = home.run(&["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let list = stderr
        .split("expected one of ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("{yaml}: {stderr}"));
    list.split(", ").map(|k| k.trim().to_string()).collect()
}

/// The rows of the host settings table in docs/OPERATIONS.md: (key, default, meaning).
fn documented_settings() -> Vec<(String, String, String)> {
    let ops = std::fs::read_to_string(repo().join("docs/OPERATIONS.md")).unwrap();
    let section = ops
        .split("## Host settings reference")
        .nth(1)
        .expect("the host settings section");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            (
                cells[0].trim_matches('`').to_string(),
                cells[1].to_string(),
                cells.get(2).copied().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn operations_md_documents_every_host_setting_with_a_default_that_validates() {
    let rows = documented_settings();
    let documented = |key: &str| rows.iter().find(|(k, _, _)| k == key);

    let sections = [
        ("", "bogus: 1\n"),
        ("limits.rhai.", "limits: { rhai: { bogus: 1 } }\n"),
        ("limits.wasm.", "limits: { wasm: { bogus: 1 } }\n"),
        ("limits.evidence.", "limits: { evidence: { bogus: 1 } }\n"),
        ("limits.", "limits: { bogus: 1 }\n"),
        ("run_logs.", "run_logs: { bogus: 1 }\n"),
        ("history.", "history: { bogus: 1 }\n"),
        ("groups.<name>.", "groups: { g: { bogus: 1 } }\n"),
        ("plugins.<name>.", "plugins: { p: { bogus: 1 } }\n"),
    ];
    let maps = [
        "limits", "run_logs", "history", "groups", "metrics", "rhai", "wasm", "evidence", "plugins",
    ];
    let mut missing = Vec::new();
    for (prefix, yaml) in sections {
        for key in accepted_keys(yaml) {
            if (prefix.is_empty() || prefix == "limits.") && maps.contains(&key.as_str()) {
                continue;
            }
            let path = format!("{prefix}{key}");
            if documented(&path).is_none() {
                missing.push(path);
            }
        }
    }
    assert_eq!(
        accepted_keys("limits: { bogus: 1 }\n"),
        ["rhai", "wasm", "evidence", "gate_timeout"],
        "a new limits section needs a row prefix here"
    );
    // Metric sources: one row, naming each of their keys.
    let metrics = documented("metrics.<name>").map_or("", |(_, _, meaning)| meaning.as_str());
    for key in accepted_keys("metrics: { m: { bogus: 1 } }\n") {
        if !metrics.contains(&format!("`{key}")) {
            missing.push(format!("metrics.<name>.{key}"));
        }
    }
    assert!(missing.is_empty(), "not in docs/OPERATIONS.md: {missing:?}");

    // Every documented default is a value `validate` accepts for its key.
    let mut settings = serde_json::Map::new();
    for (key, default, _) in &rows {
        let Some(value) = default.split('`').nth(1) else {
            continue; // `off`, `none`: nothing to write
        };
        let value = match value {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            v => v
                .parse::<u64>()
                .map_or_else(|_| serde_json::Value::from(v), serde_json::Value::from),
        };
        let path: Vec<&str> = key
            .split('.')
            .map(|p| if p == "<name>" { "x" } else { p })
            .collect();
        let (leaf, parents) = path.split_last().unwrap();
        let mut map = &mut settings;
        for p in parents {
            map = map
                .entry(p.to_string())
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
                .unwrap();
        }
        map.insert(leaf.to_string(), value);
    }
    let home = Home::new();
    // JSON is YAML.
    let yaml = serde_json::to_string_pretty(&settings).unwrap();
    home.write("lanekeeper.yaml", &yaml);
    let out = home.run(&["validate"]);
    assert!(
        out.status.success(),
        "{yaml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
