//! `lanekeeper plugin new`: the skeletons work as written, and their tests pass.

use std::process::Command;

use crate::harness::{Home, repo};

#[test]
fn a_new_rhai_plugin_validates_and_its_test_passes() {
    let home = Home::new();
    let out = home.ok(&["plugin", "new", "peer-check", "--rhai"]);
    assert!(out.contains("plugins/peer-check.rhai"), "{out}");
    assert!(out.contains("plugins/tests/peer-check.sh"), "{out}");
    let status = Command::new("bash")
        .arg(home.path().join("plugins/tests/peer-check.sh"))
        .env("LANEKEEPER", env!("CARGO_BIN_EXE_lanekeeper"))
        .status()
        .unwrap();
    assert!(status.success(), "the generated test failed");
    // A second `new` of the same name refuses to overwrite.
    let again = home.run(&["plugin", "new", "peer-check", "--wasm"]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn plugin_new_needs_a_runtime_and_a_good_name() {
    let home = Home::new();
    assert_eq!(home.run(&["plugin", "new", "x"]).status.code(), Some(2));
    assert_eq!(
        home.run(&["plugin", "new", "Bad_Name", "--rhai"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_new_wasm_plugin_is_a_guest_crate_that_tests_builds_and_runs() {
    let home = Home::new();
    let out = home.ok(&["plugin", "new", "peer-check", "--wasm"]);
    let crate_dir = home.path().join("plugins/wasm/peer-check");
    for f in ["Cargo.toml", "src/lib.rs", "build.sh"] {
        assert!(crate_dir.join(f).exists(), "{f}: {out}");
    }
    assert!(home.path().join("plugins/wasm/sdk/src/lib.rs").exists());
    // Sources below the top level are not plugins: the home still validates, with none.
    home.ok(&["validate"]);
    if !crate::wasm::wasm32_target_installed() {
        println!("skipped building the guest: the wasm32-unknown-unknown target is not installed");
        return;
    }
    let target = repo().join("target/scaffold-guests");
    let test = Command::new("cargo")
        .args(["test", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "the guest's own test failed:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    let build = Command::new("bash")
        .arg(crate_dir.join("build.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build.sh failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    home.lane(
        "peer",
        "schedule:\n  every: 1h\ncommand:\n  argv: [\"true\"]\n",
    );
    home.lane(
        "subject",
        "schedule:\n  every: 1h\npreconditions:\n  - use: peer-check\n    with: { lane: peer }\ncommand:\n  argv: [\"true\"]\n",
    );
    home.ok(&[
        "record",
        "peer",
        "--outcome",
        "failure",
        "--at",
        "2026-05-10T00:00:00Z",
    ]);
    let d = home.check_at("subject", "2026-05-10T01:00:00Z");
    crate::harness::assert_decision(&d, "deferred", "peer-check-failed");
    assert_eq!(d["chain"][1]["runtime"], "wasm");
}
