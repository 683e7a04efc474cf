//! A damaged or lost state database: what can still be read is, and a lost history is refused
//! rather than silently started afresh.

use crate::harness::{Home, lane_yaml};

/// Runs SQL on the home's database, as a damaged disk or a careless hand might.
fn tamper(home: &Home, sql: &str) {
    let db = rusqlite::Connection::open(home.path().join("state/lanekeeper.db")).expect("open");
    db.execute_batch(sql).expect("tamper");
}

/// A home with two lanes and a recorded history: `a` deferred by a gate, `b` run.
fn with_history() -> Home {
    let home = Home::new();
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    home.lane("a", &lane_yaml("1h", "  - use: wait", "[\"true\"]"));
    home.lane("b", &lane_yaml("1h", "", "[\"true\"]"));
    home.ok(&["run", "--once"]);
    home
}

#[test]
fn an_unreadable_history_row_is_skipped_with_a_warning_and_the_rest_still_works() {
    let home = with_history();
    tamper(
        &home,
        "UPDATE episodes SET first_body = 'not json {', last_body = x'ff00' WHERE lane = 'a'",
    );
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["explain", "a"],
        vec!["explain", "b", "--at", "2100-01-01T00:00:00Z"],
        vec!["check"],
    ] {
        let out = home.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        if args.contains(&"a") || args[0] == "status" {
            assert!(
                stderr.contains("cannot be read") && stderr.contains("skipped"),
                "{args:?}: {stderr}"
            );
        }
    }
    let b = home.status("b");
    assert_eq!(b["last_result"], "success", "{b}");
    assert!(b["episode"].is_object(), "{b}");
}

#[test]
fn a_run_row_that_cannot_be_read_is_skipped_too() {
    let home = with_history();
    tamper(
        &home,
        "UPDATE runs SET exit_code = 'garbage' WHERE lane = 'b'",
    );
    let out = home.run(&["explain", "b", "--at", "2100-01-01T00:00:00Z"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("cannot be read"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no run started"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The run logs of `lane`.
fn run_logs(home: &Home, lane: &str) -> usize {
    std::fs::read_dir(home.path().join("state/runs").join(lane))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn an_empty_or_missing_database_next_to_run_logs_is_refused_with_what_to_do() {
    let home = with_history();
    assert_eq!(run_logs(&home, "b"), 1);
    let db = home.path().join("state/lanekeeper.db");
    for wal in ["lanekeeper.db-wal", "lanekeeper.db-shm"] {
        let _ = std::fs::remove_file(home.path().join("state").join(wal));
    }
    std::fs::write(&db, "").expect("truncate");
    for args in [
        vec!["run", "--once"],
        vec!["fire", "b", "--wait"],
        vec!["record", "b", "--outcome", "success"],
        vec!["status"],
        vec!["check"],
        vec!["explain", "b"],
    ] {
        let out = home.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for needle in [
            db.display().to_string().as_str(),
            "is empty",
            "run log",
            "state/backups",
            "state/runs",
        ] {
            assert!(stderr.contains(needle), "{args:?}: `{needle}` in {stderr}");
        }
    }
    assert_eq!(run_logs(&home, "b"), 1, "nothing ran again");
    assert_eq!(
        std::fs::metadata(&db).expect("db").len(),
        0,
        "nothing written"
    );

    std::fs::remove_file(&db).expect("rm");
    let out = home.run(&["run", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(!db.exists(), "no new database");

    // Starting afresh on purpose: move the run logs aside.
    std::fs::rename(
        home.path().join("state/runs"),
        home.path().join("state/runs.old"),
    )
    .expect("mv");
    home.ok(&["run", "--once"]);
    assert_eq!(run_logs(&home, "b"), 1);
}

/// Runs lanekeeper on `home` allowed to write files of at most 4 KiB, as on a disk that is
/// full (writes past the limit fail instead of killing it); returns (exit code, stderr).
fn on_a_full_disk(home: &Home, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 8 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_lanekeeper"))
        .arg("--home")
        .arg(home.path())
        .args(args)
        .env_remove("LANEKEEPER_HOME")
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_full_disk_is_named_as_such_with_the_path_and_what_to_do() {
    let home = with_history();
    let db = home.path().join("state/lanekeeper.db");
    for args in [vec!["status"], vec!["check"], vec!["explain", "b"]] {
        let _ = std::fs::remove_file(home.path().join("state/lanekeeper.db-shm"));
        let (code, stderr) = on_a_full_disk(&home, &args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        for needle in [db.display().to_string().as_str(), "full", "df "] {
            assert!(stderr.contains(needle), "{args:?}: `{needle}` in {stderr}");
        }
        assert!(!stderr.contains("Error code"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_database_that_cannot_be_opened_says_what_to_check() {
    let home = with_history();
    let wal = home.path().join("state/lanekeeper.db-wal");
    let _ = std::fs::remove_file(&wal);
    std::os::unix::fs::symlink("/dev/null", &wal).expect("symlink");
    let out = home.run(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be opened"), "{stderr}");
    assert!(stderr.contains("permissions"), "{stderr}");
}
