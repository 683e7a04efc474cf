//! Shell completions and man pages, generated from the parser, outside any home.

use std::process::{Command, Output};

fn lanekeeper(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanekeeper"))
        .args(args)
        .current_dir(dir)
        .env_remove("LANEKEEPER_HOME")
        .output()
        .expect("run lanekeeper")
}

fn stdout_of(args: &[&str]) -> String {
    // Not a home: neither command needs one.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lanekeeper(args, dir.path());
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for command in ["validate", "check", "explain", "completions"] {
            assert!(script.contains(command), "{shell}: no `{command}`");
        }
        assert!(
            !script.contains("supervise-run"),
            "{shell}: offers the internal command"
        );
    }
}

#[test]
fn the_bash_completion_parses_and_registers_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("lanekeeper.bash");
    std::fs::write(&script, stdout_of(&["completions", "bash"])).expect("write");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(check.status.success(), "{check:?}");
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p lanekeeper",
            script.display()
        ))
        .output()
        .expect("bash");
    let said = String::from_utf8_lossy(&loaded.stdout);
    assert!(loaded.status.success(), "{loaded:?}");
    assert!(said.contains("-F _lanekeeper lanekeeper"), "{said}");
}

#[test]
fn man_prints_a_page_and_writes_one_per_command() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH lanekeeper 1"), "{page}");
    assert!(page.contains("validate"), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("man1");
    let out = lanekeeper(&["man", "--dir", &out_dir.to_string_lossy()], dir.path());
    assert!(out.status.success(), "{out:?}");
    let check = std::fs::read_to_string(out_dir.join("lanekeeper-check.1")).expect("page");
    assert!(check.contains("\\-\\-at"), "{check}");
    assert!(out_dir.join("lanekeeper.1").is_file());
    assert!(!out_dir.join("lanekeeper-supervise-run.1").exists());
}
