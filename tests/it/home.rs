//! A home is never created by accident: commands refuse a directory without `rules/`, and the
//! read-only ones leave a home exactly as they found it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{Home, lane_yaml, repo};

/// Every file and directory under `root`, with file sizes.
fn tree(root: &Path) -> BTreeMap<String, Option<u64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if meta.is_dir() {
                stack.push(path);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(meta.len()));
            }
        }
    }
    out
}

const EVERY_COMMAND: &[&[&str]] = &[
    &["validate"],
    &["check"],
    &["status"],
    &["explain", "a"],
    &["fire", "a", "--wait"],
    &["record", "a", "--outcome", "success"],
    &["run", "--once"],
    &["plugin", "new", "p", "--rhai"],
];

#[test]
fn a_directory_without_rules_is_not_a_home() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "not a home\n").expect("write");
    let missing = dir.path().join("nowhere");
    for home in [dir.path(), missing.as_path()] {
        for args in EVERY_COMMAND {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanekeeper"))
                .arg("--home")
                .arg(home)
                .args(*args)
                .env_remove("LANEKEEPER_HOME")
                .output()
                .expect("run lanekeeper");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "`{}` is not a lanekeeper home: it has no rules/ directory",
                    home.display()
                )),
                "{args:?}: {stderr}"
            );
        }
    }
    assert_eq!(
        tree(dir.path()).into_keys().collect::<Vec<_>>(),
        ["notes.txt"],
        "nothing was created"
    );
}

#[test]
fn read_only_commands_create_no_file_in_a_fresh_home() {
    let home = Home::standard();
    std::fs::copy(
        repo().join("plugins/wasm/off-peak.wasm"),
        home.path().join("plugins/window.wasm"),
    )
    .expect("copy a WASM plugin");
    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: window\n    with: { window: \"01:00-06:00\" }\n  - use: backup-recency\n    with: { lane: b, max_age: 1h }",
            "[\"true\"]",
        ),
    );
    home.lane("b", &lane_yaml("1h", "", "[\"true\"]"));
    let before = tree(home.path());
    for args in [
        &["validate"][..],
        &["validate", "--json"],
        &["status"],
        &["status", "--json"],
        &["check"],
        &["check", "--json"],
        &["check", "a", "--at", "2026-05-10T03:00:00+02:00"],
        &["explain", "a"],
        &["explain", "a", "--json"],
    ] {
        home.ok(args);
        assert_eq!(tree(home.path()), before, "`{args:?}` changed the home");
    }
    let out = home.run(&["explain", "a", "--at", "2026-05-10T03:00:00+02:00"]);
    assert_eq!(out.status.code(), Some(1), "nothing is recorded yet");
    assert_eq!(tree(home.path()), before, "`explain --at` changed the home");
}

#[test]
fn check_records_only_where_a_history_exists() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    home.ok(&["check", "a"]);
    assert!(!home.path().join("state").exists());

    home.ok(&[
        "record",
        "a",
        "--outcome",
        "success",
        "--at",
        "2026-05-10T00:00:00Z",
    ]);
    home.ok(&["check", "a"]);
    let explained = home.ok(&["explain", "a", "--at", "2100-01-01T00:00:00Z"]);
    assert!(
        explained.contains("recorded decision in force"),
        "{explained}"
    );
}
