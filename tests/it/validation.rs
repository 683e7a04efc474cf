//! Bad configuration: every problem reported as `path:line:col: message`, exit 1, in one pass.

use crate::harness::{Home, lane_yaml, problems};

/// Asserts exactly one problem, in `file` at `line:col`, mentioning `needle`.
fn assert_one(home: &Home, file: &str, line_col: &str, needle: &str) {
    let p = problems(home);
    assert_eq!(p.len(), 1, "{p:#?}");
    let expected = format!("{}:{line_col}: ", home.path().join(file).display());
    assert!(
        p[0].starts_with(&expected),
        "expected `{expected}…`, got `{}`",
        p[0]
    );
    assert!(p[0].contains(needle), "expected `{needle}` in `{}`", p[0]);
}

const CMD: &str = "command:\n  argv: [\"true\"]\n";

#[test]
fn an_unknown_key_is_reported_at_its_place() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  every: 1h\nbogus: 1\n{CMD}"));
    assert_one(&home, "rules/a.yaml", "3:1", "bogus");
}

#[test]
fn a_wrong_type_is_reported_at_the_value() {
    let home = Home::new();
    home.lane(
        "a",
        &format!("schedule:\n  every: 1h\npriority: high\n{CMD}"),
    );
    assert_one(
        &home,
        "rules/a.yaml",
        "3:11",
        "`priority`: expected an integer",
    );
}

#[test]
fn a_bad_duration_is_reported_with_a_hint() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  every: soon\n{CMD}"));
    assert_one(&home, "rules/a.yaml", "2:10", "90s");
}

#[test]
fn an_unknown_plugin_is_reported_at_use() {
    let home = Home::standard();
    home.lane("a", &lane_yaml("1h", "  - use: teleport", "[\"true\"]"));
    assert_one(&home, "rules/a.yaml", "4:10", "unknown plugin `teleport`");
}

#[test]
fn missing_and_ill_typed_plugin_parameters_are_reported() {
    let home = Home::standard();
    home.lane("backup", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: backup-recency\n    with: { lane: backup }",
            "[\"true\"]",
        ),
    );
    assert_one(&home, "rules/a.yaml", "5:11", "needs parameter `max_age`");

    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: backup-recency\n    with:\n      lane: backup\n      max_age: soon",
            "[\"true\"]",
        ),
    );
    assert_one(&home, "rules/a.yaml", "7:16", "`max_age`");

    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: backup-recency\n    with: { lane: nowhere, max_age: 1h }",
            "[\"true\"]",
        ),
    );
    assert_one(&home, "rules/a.yaml", "5:19", "no lane named `nowhere`");

    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: off-peak\n    with: { window: \"25:00-03:00\" }",
            "[\"true\"]",
        ),
    );
    assert_one(&home, "rules/a.yaml", "5:21", "HH:MM-HH:MM");

    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: off-peak\n    with: { window: \"01:00-02:00\", extra: 1 }",
            "[\"true\"]",
        ),
    );
    assert_one(&home, "rules/a.yaml", "5:43", "no parameter `extra`");
}

#[test]
fn an_unparsable_cron_expression_is_reported() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  cron: \"61 * * * *\"\n{CMD}"));
    assert_one(&home, "rules/a.yaml", "2:9", "cron");
}

#[test]
fn an_unknown_time_zone_is_reported() {
    let home = Home::new();
    home.lane(
        "a",
        &format!("schedule:\n  every: 1h\n  timezone: Mars/Olympus\n{CMD}"),
    );
    assert_one(&home, "rules/a.yaml", "3:13", "Mars/Olympus");
}

#[test]
fn duplicate_lane_names_name_both_files() {
    let home = Home::new();
    home.lane("a", &format!("lane: same\nschedule:\n  every: 1h\n{CMD}"));
    home.lane("b", &format!("lane: same\nschedule:\n  every: 1h\n{CMD}"));
    let p = problems(&home);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with(&format!(
            "{}:1:7: ",
            home.path().join("rules/b.yaml").display()
        )),
        "{}",
        p[0]
    );
    assert!(
        p[0].contains("duplicate lane name `same`") && p[0].contains("a.yaml"),
        "{}",
        p[0]
    );
}

#[test]
fn broken_yaml_is_reported_at_the_error() {
    let home = Home::new();
    home.lane("a", "schedule:\n  every: [1h\ncommand: x\n");
    let p = problems(&home);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with(&format!("{}:", home.path().join("rules/a.yaml").display())),
        "{}",
        p[0]
    );
    assert!(
        !p[0].contains(":1:1:"),
        "a real position, not the file start: {}",
        p[0]
    );
}

#[test]
fn a_broken_plugin_is_reported_at_its_syntax_error() {
    let home = Home::new();
    home.write("plugins/oops.rhai", "fn evaluate(ctx) {\n    let = 3;\n}\n");
    home.lane("a", &lane_yaml("1h", "  - use: oops", "[\"true\"]"));
    let p = problems(&home);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with(&format!(
            "{}:2:",
            home.path().join("plugins/oops.rhai").display()
        )),
        "{}",
        p[0]
    );
    assert!(p[1].contains("failed to load"), "{}", p[1]);
}

#[test]
fn a_plugin_without_evaluate_is_rejected() {
    let home = Home::new();
    home.write("plugins/empty.rhai", "fn check(ctx) { () }\n");
    let p = problems(&home);
    assert!(p[0].contains("fn evaluate(ctx)"), "{p:#?}");
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let home = Home::standard();
    home.lane("a", &format!("schedule:\n  every: 1h\nbogus: 1\n{CMD}"));
    home.lane("b", &format!("schedule:\n  cron: \"nope\"\n{CMD}"));
    home.lane("c", &lane_yaml("1h", "  - use: teleport", "[\"true\"]"));
    home.lane(
        "d",
        &format!("schedule:\n  every: 1h\n  timezone: Nowhere/City\n{CMD}"),
    );
    home.write("lanekeeper.yaml", "metrics:\n  q: { nothing: 1 }\n");
    let p = problems(&home);
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn every_command_refuses_an_invalid_configuration_with_exit_1() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  every: 1h\nbogus: 1\n{CMD}"));
    for args in [
        vec!["check"],
        vec!["explain", "a"],
        vec!["fire", "a", "--wait"],
        vec!["run", "--once"],
    ] {
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("a.yaml:3:1"),
            "{args:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    assert_eq!(
        home.run(&["check", "--at", "yesterday"]).status.code(),
        Some(2)
    );
    assert_eq!(home.run(&["check", "nope"]).status.code(), Some(2));
    assert_eq!(home.run(&["frobnicate"]).status.code(), Some(2));
    let out = home.run(&["check", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown lane `nope`"));
}

#[test]
fn status_still_works_while_the_rules_are_invalid() {
    let home = Home::new();
    home.lane("good", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane("bad", &format!("schedule:\n  every: 1h\nbogus: 1\n{CMD}"));
    let out = home.run(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("good"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bad ") && l.contains("config invalid")),
        "{stdout}"
    );
    assert!(stderr.contains("bad.yaml:3:1"), "{stderr}");
}

/// Asserts the problems are exactly these, in order: each `(file, line:col, needle)`.
fn assert_problems(home: &Home, expected: &[(&str, &str, &str)]) {
    let p = problems(home);
    assert_eq!(p.len(), expected.len(), "{p:#?}");
    for (line, (file, line_col, needle)) in p.iter().zip(expected) {
        let place = format!("{}:{line_col}: ", home.path().join(file).display());
        assert!(
            line.starts_with(&place),
            "expected `{place}…`, got `{line}`"
        );
        assert!(line.contains(needle), "expected `{needle}` in `{line}`");
    }
}

#[test]
fn every_unknown_key_in_a_lane_file_is_reported() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule:\n  every: 1h\nbogus: 1\ncommand:\n  argv: [\"true\"]\n  tmeout: 5m\n",
    );
    assert_problems(
        &home,
        &[
            ("rules/a.yaml", "3:1", "unknown field `bogus`"),
            ("rules/a.yaml", "6:3", "did you mean `timeout`"),
        ],
    );
}

#[test]
fn type_errors_in_different_keys_are_all_reported_with_unknown_keys() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule:\n  every: soon\npriority: high\nbogus: 1\ncommand:\n  argv: [\"true\"]\n  timeout: later\n",
    );
    assert_problems(
        &home,
        &[
            ("rules/a.yaml", "2:10", "90s"),
            ("rules/a.yaml", "3:11", "`priority`: expected an integer"),
            ("rules/a.yaml", "4:1", "bogus"),
            ("rules/a.yaml", "7:12", "later"),
        ],
    );
}

#[test]
fn a_lane_without_command_is_reported_against_the_lane() {
    let home = Home::new();
    home.lane("a", "schedule:\n  every: 1h\n");
    assert_problems(
        &home,
        &[(
            "rules/a.yaml",
            "1:1",
            "lane `a` has no `command:`; add command.argv",
        )],
    );
    assert!(!problems(&home)[0].contains("`schedule`"));

    home.lane("a", "label: A\nlane: named\nschedule:\n  every: 1h\n");
    assert_problems(
        &home,
        &[("rules/a.yaml", "2:1", "lane `named` has no `command:`")],
    );
}

#[test]
fn a_broken_lane_is_still_known_to_its_peers() {
    let home = Home::standard();
    home.lane(
        "backup",
        &format!("schedule:\n  every: 1h\nbogus: 1\n{CMD}"),
    );
    home.lane("kb", "lane: kb-sync\nschedule: [oops\n");
    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: backup-recency\n    with: { lane: backup, max_age: 1h }\n  - use: contention\n    with: { peers: [kb-sync, backup] }",
            "[\"true\"]",
        ),
    );
    let p = problems(&home);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p.iter().all(|l| !l.contains("no lane named")), "{p:#?}");
}

#[test]
fn status_lists_a_lane_whose_file_is_broken_with_its_recorded_state() {
    let home = Home::new();
    home.lane("good", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane("bad", &lane_yaml("1h", "", "[\"true\"]"));
    home.ok(&[
        "record",
        "bad",
        "--outcome",
        "success",
        "--at",
        "2026-05-10T00:00:00Z",
    ]);
    home.lane("bad", &format!("schedule:\n  every: 1h\nbogus: 1\n{CMD}"));

    let out = home.run(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("bad "))
        .unwrap_or_else(|| panic!("no row for `bad`:\n{stdout}"));
    assert!(
        row.contains("config invalid") && row.contains("(success)"),
        "{row}"
    );

    let bad = home.status("bad");
    assert_eq!(bad["last_result"], "success", "{bad}");
    let error = bad["config_error"].as_str().expect("config_error");
    assert!(
        error.contains("bad.yaml:3:1") && error.contains("bogus"),
        "{error}"
    );
    assert!(home.status("good").get("config_error").is_none());
}

#[test]
fn a_cron_that_never_fires_is_an_error() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  cron: \"0 0 30 2 *\"\n{CMD}"));
    assert_problems(
        &home,
        &[("rules/a.yaml", "2:9", "cron `0 0 30 2 *` never fires: ")],
    );
}

/// The cell of `lane`'s row under `header` in `status`'s table.
fn status_cell(table: &str, lane: &str, header: &str) -> String {
    let mut lines = table.lines();
    let head = lines.next().expect("header");
    let start = head.find(header).expect("column");
    let end = head[start + header.len()..]
        .find(|c: char| c.is_ascii_uppercase())
        .map(|i| start + header.len() + i);
    let row: Vec<char> = lines
        .find(|l| l.starts_with(&format!("{lane} ")))
        .unwrap_or_else(|| panic!("no row for `{lane}`:\n{table}"))
        .chars()
        .collect();
    let end = end.unwrap_or(row.len()).min(row.len());
    row[start.min(end)..end]
        .iter()
        .collect::<String>()
        .trim()
        .to_string()
}

#[test]
fn status_shows_never_as_next_due_of_a_cron_that_never_fires() {
    let home = Home::new();
    home.lane(
        "feb30",
        &format!("schedule:\n  cron: \"0 0 30 2 *\"\n{CMD}"),
    );
    home.lane("daily", &format!("schedule:\n  cron: \"0 3 * * *\"\n{CMD}"));
    let stdout = home.ok(&["status"]);
    assert_eq!(
        status_cell(&stdout, "feb30", "NEXT DUE"),
        "never",
        "{stdout}"
    );
    assert_eq!(
        status_cell(&stdout, "daily", "NEXT DUE"),
        "now (never run)",
        "{stdout}"
    );
}

/// Runs `validate`, returns (exit code, stdout, stderr).
fn validate(home: &Home, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    let out = home.run(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn validate_warns_without_failing_when_a_program_cannot_be_run() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    home.lane("path", &lane_yaml("1h", "", "[no-such-program-lk, x]"));
    home.lane("missing", &lane_yaml("1h", "", "[jobs/missing.sh]"));
    home.write("jobs/plain.sh", "#!/bin/sh\n");
    home.lane("plain", &lane_yaml("1h", "", "[jobs/plain.sh]"));
    home.write("jobs/ok.sh", "#!/bin/sh\n");
    let ok = home.path().join("jobs/ok.sh");
    std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    home.lane("ok", &lane_yaml("1h", "", "[jobs/ok.sh]"));
    home.lane(
        "sub",
        &format!("{}  cwd: jobs\n", lane_yaml("1h", "", "[./ok.sh]")),
    );

    let (code, stdout, stderr) = validate(&home, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning: ")).collect();
    assert_eq!(warnings.len(), 3, "{stderr}");
    let expect = |file: &str, needle: &str| {
        let place = format!("{}:4:10: warning: ", home.path().join(file).display());
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&place) && w.contains(needle)),
            "expected `{place}…{needle}…` in\n{stderr}"
        );
    };
    expect(
        "rules/path.yaml",
        "`no-such-program-lk` is not found on PATH",
    );
    expect("rules/missing.yaml", "`jobs/missing.sh` does not exist");
    expect("rules/plain.yaml", "`jobs/plain.sh` is not executable");

    // Only `validate` reports them.
    let out = home.run(&["check", "--at", "2026-05-10T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn warnings_do_not_hide_errors() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[no-such-program-lk]"));
    home.lane("b", &format!("schedule:\n  every: 1h\nbogus: 1\n{CMD}"));
    let (code, _, stderr) = validate(&home, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("a.yaml:4:10: warning: "), "{stderr}");
    assert!(stderr.contains("b.yaml:3:1: unknown field"), "{stderr}");
}

#[test]
fn validate_json_prints_one_object_per_problem() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[no-such-program-lk]"));
    home.lane(
        "b",
        &format!("lane: bee\nschedule:\n  every: 1h\nbogus: 1\n{CMD}"),
    );
    home.write("plugins/oops.rhai", "fn evaluate(ctx) {\n    let = 3;\n}\n");
    let (code, stdout, stderr) = validate(&home, &["--json"]);
    assert_eq!(code, Some(1), "{stderr}");
    let problems: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(problems.len(), 3, "{stdout}");
    let find = |file: &str| {
        let path = home.path().join(file).display().to_string();
        problems
            .iter()
            .find(|p| p["file"] == path.as_str())
            .unwrap_or_else(|| panic!("no problem in {file}: {stdout}"))
    };
    let plugin = find("plugins/oops.rhai");
    assert_eq!(plugin["lane"], serde_json::Value::Null);
    assert_eq!(plugin["severity"], "error");
    assert_eq!(plugin["line"], 2);
    let warning = find("rules/a.yaml");
    assert_eq!(warning["lane"], "a");
    assert_eq!(warning["severity"], "warning");
    assert_eq!(
        (warning["line"].as_u64(), warning["col"].as_u64()),
        (Some(4), Some(10))
    );
    assert!(
        warning["message"]
            .as_str()
            .expect("message")
            .contains("no-such-program-lk")
    );
    let error = find("rules/b.yaml");
    assert_eq!(error["lane"], "bee");
    assert_eq!(error["severity"], "error");
    assert_eq!(
        (error["line"].as_u64(), error["col"].as_u64()),
        (Some(4), Some(1))
    );

    // Warnings only: exit 0.
    std::fs::remove_file(home.path().join("plugins/oops.rhai")).expect("rm");
    home.lane("b", &lane_yaml("1h", "", "[\"true\"]"));
    let (code, stdout, _) = validate(&home, &["--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn durations_too_long_to_add_to_a_date_are_rejected_at_their_place() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule:\n  every: 1h\nrecheck: 3000000d\ncommand:\n  argv: [\"true\"]\n",
    );
    home.write("lanekeeper.yaml", "history: { retention: 5000000d }\n");
    assert_problems(
        &home,
        &[
            ("lanekeeper.yaml", "1:23", "at most"),
            ("rules/a.yaml", "3:10", "at most"),
        ],
    );

    // Within the range timestamps can hold, but beyond the setting's own maximum.
    home.write("lanekeeper.yaml", "shutdown_timeout: 30d\n");
    home.lane(
        "a",
        "schedule:\n  every: 36500d\nrecheck: 8d\ncommand:\n  argv: [\"true\"]\n",
    );
    assert_problems(
        &home,
        &[
            (
                "lanekeeper.yaml",
                "1:19",
                "`shutdown_timeout` is at most 24h",
            ),
            ("rules/a.yaml", "3:10", "`recheck` is at most 24h"),
        ],
    );
}

#[test]
fn odd_entries_in_rules_and_plugins_are_warned_about_and_a_fifo_never_blocks() {
    use std::os::unix::fs::symlink;
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    let rules = home.path().join("rules");
    let plugins = home.path().join("plugins");
    symlink(
        home.path().join("nowhere.yaml"),
        rules.join("dangling.yaml"),
    )
    .expect("symlink");
    nix::unistd::mkfifo(&rules.join("pipe.yaml"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    std::fs::create_dir(rules.join("dir.yml")).expect("dir");
    symlink(home.path().join("nowhere.rhai"), plugins.join("gone.rhai")).expect("symlink");
    nix::unistd::mkfifo(&plugins.join("pipe.wasm"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");

    // Bounded: a FIFO opened for reading would block until a writer comes.
    let mut child = home
        .command(&["validate"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("validate");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("validate blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for (file, needle) in [
        ("rules/dangling.yaml", "does not exist"),
        ("rules/pipe.yaml", "named pipe"),
        ("rules/dir.yml", "directory"),
        ("plugins/gone.rhai", "does not exist"),
        ("plugins/pipe.wasm", "named pipe"),
    ] {
        let place = format!("{}:1:1: warning: ", home.path().join(file).display());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&place) && l.contains(needle) && l.contains("skipped")),
            "expected `{place}…{needle}…skipped` in\n{stderr}"
        );
    }
    // Other commands load the same configuration without blocking either.
    home.ok(&["check", "--at", "2026-05-10T00:00:00Z"]);
}

#[test]
fn invalid_utf8_is_reported_at_the_first_bad_byte() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    std::fs::write(
        home.path().join("rules/a.yaml"),
        b"schedule:\n  every: 1h\ncommand:\n  argv: [\"tr\xffue\"]\n",
    )
    .expect("write");
    std::fs::write(
        home.path().join("lanekeeper.yaml"),
        b"recheck: 30s\nlisten: \"\xe2\x82\"\n",
    )
    .expect("write");
    assert_problems(
        &home,
        &[
            ("lanekeeper.yaml", "2:10", "not valid UTF-8"),
            ("rules/a.yaml", "4:13", "not valid UTF-8"),
        ],
    );
}

#[test]
fn a_fractional_duration_says_to_write_it_in_a_smaller_unit() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  every: 1.5h\n{CMD}"));
    assert_one(&home, "rules/a.yaml", "2:10", "fractions are not supported");
    let p = problems(&home);
    assert!(p[0].contains("write 90m"), "{p:#?}");
    assert!(!p[0].contains("no unit"), "{p:#?}");
}

#[test]
fn nul_bytes_and_impossible_environment_names_are_errors_at_their_place() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule:\n  every: 1h\ncommand:\n  argv: [sh, \"tr\\0ue\"]\n  cwd: \"jo\\0bs\"\n  env:\n    \"A=B\": x\n    \"\": y\n    OK: \"a\\0b\"\n",
    );
    assert_problems(
        &home,
        &[
            ("rules/a.yaml", "4:14", "NUL"),
            ("rules/a.yaml", "5:8", "NUL"),
            ("rules/a.yaml", "7:5", "`=`"),
            ("rules/a.yaml", "8:5", "empty"),
            ("rules/a.yaml", "9:9", "NUL"),
        ],
    );
}

#[test]
fn yaml_library_advice_is_said_in_the_terms_of_a_lane_file() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  every: 1h\n  every: 2h\n{CMD}"));
    assert_one(&home, "rules/a.yaml", "3:3", "duplicate key `every`");
    home.lane("a", "schedule:\n  every: 1h\ncommand:\n  argv: [~]\n");
    assert_one(&home, "rules/a.yaml", "4:10", "expected a value");
    home.lane("a", &format!("schedule:\n  every: 1h\n{CMD}---\nx: 1\n"));
    assert_one(&home, "rules/a.yaml", "5:1", "one YAML document");
    home.lane("a", &format!("schedule:\n  every: .inf\n{CMD}"));
    assert_one(&home, "rules/a.yaml", "2:10", "not a finite number");
    for line in problems(&home) {
        for library in ["Options", "Option<", "policy", "budget", "Policy"] {
            assert!(!line.contains(library), "{line}");
        }
    }
}

#[test]
fn hosts_must_name_someone_and_off_postgresql_are_warned_about() {
    let home = Home::new();
    home.lane("a", &format!("schedule:\n  every: 1h\nhosts: []\n{CMD}"));
    assert_one(&home, "rules/a.yaml", "3:8", "could run nowhere");
    home.lane(
        "a",
        &format!("schedule:\n  every: 1h\nhosts: [db1, \"\"]\n{CMD}"),
    );
    assert_one(&home, "rules/a.yaml", "3:14", "empty name");
    // Valid, but with the home's own database the only host is this one: a warning.
    home.lane("a", &format!("schedule:\n  every: 1h\nhosts: [db1]\n{CMD}"));
    let out = home.run(&["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("rules/a.yaml:3:")
            && stderr.contains("only means something on a shared PostgreSQL store"),
        "{stderr}"
    );
}
