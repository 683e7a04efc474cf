//! A home is never created by accident: commands refuse a directory without `rules/`, and the
//! read-only ones leave a home exactly as they found it.

use std::collections::BTreeMap;
use std::path::Path;

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
