//! Hooks (`on_failure`, `on_give_up`, `on_forced_run`, `on_defer`): each fires once per event,
//! with the event as JSON on stdin and `LANEKEEPER_*` variables, never twice (not across
//! restarts either), and a hanging one never holds up the daemon's passes.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, log_of, wait_for};
use crate::harness::{Home, pid_alive};

/// A hook that records what it got: stdin to `hook-<event>-<n>.json`, its `LANEKEEPER_*`
/// variables to `hook-<event>-<n>.env`, one line per firing in `fired-<event>`.
const RECORDER: &str = r#"argv: [sh, -c, 'n=$(($(cat "$LANEKEEPER_HOME/fired-$LANEKEEPER_EVENT" 2>/dev/null | wc -l) + 1)); cat > "$LANEKEEPER_HOME/hook-$LANEKEEPER_EVENT-$n.json"; env | grep ^LANEKEEPER_ | sort > "$LANEKEEPER_HOME/hook-$LANEKEEPER_EVENT-$n.env"; echo "$LANEKEEPER_HOOK_KEY" >> "$LANEKEEPER_HOME/fired-$LANEKEEPER_EVENT"']"#;

/// How many times the hook for `event` fired (lines of `fired-<event>`).
fn fired(home: &Home, event: &str) -> usize {
    std::fs::read_to_string(home.path().join(format!("fired-{event}")))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The stdin and environment of the `n`th firing of `event`.
fn got(home: &Home, event: &str, n: usize) -> (Value, String) {
    let json = std::fs::read_to_string(home.path().join(format!("hook-{event}-{n}.json")))
        .expect("the hook's stdin");
    let env = std::fs::read_to_string(home.path().join(format!("hook-{event}-{n}.env")))
        .expect("the hook's environment");
    (
        serde_json::from_str(json.trim()).expect("JSON on stdin"),
        env,
    )
}

/// A plugin that always defers (`waiting`), or always passes.
fn gate(home: &Home, defer: bool) {
    let body = if defer { "\"waiting\"" } else { "()" };
    home.write(
        "plugins/gate.rhai",
        &format!("fn evaluate(ctx) {{ {body} }}\n"),
    );
}

/// Polls `cond` every 25 ms for at most 20 s.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn on_failure_fires_once_per_failed_run_with_the_run_on_stdin_and_not_again_after_a_restart() {
    let home = Home::new();
    home.lane(
        "flaky",
        &format!("schedule: {{ every: 1h }}\non_failure: {{ {RECORDER}, timeout: 10s }}\ncommand: {{ argv: [\"false\"] }}\n"),
    );
    // `run --once` waits for the run and for the hooks it fired.
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "failure"), 1);
    let (json, env) = got(&home, "failure", 1);
    assert_eq!(json["event"], "failure", "{json}");
    assert_eq!(json["lane"], "flaky", "{json}");
    assert_eq!(json["run"]["result"], "failure", "{json}");
    assert_eq!(json["run"]["exit"]["code"], 1, "{json}");
    let run_id = json["run"]["id"].as_i64().expect("run id");
    for line in [
        "LANEKEEPER_EVENT=failure".to_string(),
        "LANEKEEPER_LANE=flaky".to_string(),
        "LANEKEEPER_RESULT=failure".to_string(),
        format!("LANEKEEPER_RUN_ID={run_id}"),
        format!(
            "LANEKEEPER_HOME={}",
            std::fs::canonicalize(home.path()).unwrap().display()
        ),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }

    // A second daemon (a restart) sees the same failed run as the latest: handled already.
    home.ok(&["run", "--once"]);
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "failure"), 1);

    let text = home.ok(&["explain", "flaky"]);
    assert!(
        text.contains(&format!("last hook: on_failure (run:{run_id})")) && text.contains("success"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&home.ok(&["explain", "flaky", "--json"])).unwrap();
    assert_eq!(json["last_hook"]["event"], "failure", "{json}");
    assert_eq!(json["last_hook"]["result"], "success", "{json}");

    // A cancelled run is no failure, and a success neither.
    home.lane(
        "fine",
        &format!("schedule: {{ every: 1h }}\non_failure: {{ {RECORDER} }}\ncommand: {{ argv: [\"true\"] }}\n"),
    );
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "failure"), 1);
}

#[test]
fn fire_wait_runs_on_failure_itself_and_the_daemon_does_not_run_it_again() {
    let home = Home::new();
    home.lane(
        "flaky",
        &format!("schedule: {{ every: 1h }}\non_failure: {{ {RECORDER} }}\ncommand: {{ argv: [sh, -c, \"exit 3\"] }}\n"),
    );
    let out = home.run(&["fire", "flaky", "--wait"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(fired(&home, "failure"), 1);
    let (json, env) = got(&home, "failure", 1);
    assert_eq!(json["run"]["source"], "manual", "{json}");
    assert!(env.contains("LANEKEEPER_RESULT=failure"), "{env}");
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "failure"), 1);
}

#[test]
fn on_defer_fires_once_at_the_start_of_each_deferral_episode_not_on_every_check() {
    let home = Home::new();
    gate(&home, true);
    home.lane(
        "held",
        &format!("schedule: {{ every: 200ms }}\npreconditions:\n  - use: gate\non_defer: {{ {RECORDER} }}\ncommand: {{ argv: [\"true\"] }}\n"),
    );
    // Three passes, three checks of one episode (each a new process, as after a restart).
    for _ in 0..3 {
        home.ok(&["run", "--once"]);
    }
    assert_eq!(home.status("held")["episode"]["count"], 3);
    assert_eq!(fired(&home, "defer"), 1);
    let (json, env) = got(&home, "defer", 1);
    assert_eq!(json["decision"]["outcome"], "deferred", "{json}");
    assert_eq!(json["decision"]["reason"], "waiting", "{json}");
    assert!(env.contains("LANEKEEPER_REASON=waiting"), "{env}");
    assert!(env.contains("LANEKEEPER_EVENT=defer"), "{env}");

    // The gate lets it through: it runs, and the episode is over.
    gate(&home, false);
    home.ok(&["run", "--once"]);
    assert_eq!(home.status("held")["last_result"], "success");
    // Held again once due again: a new episode, a second firing.
    gate(&home, true);
    eventually("a second episode", || {
        home.ok(&["run", "--once"]);
        fired(&home, "defer") >= 2
    });
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "defer"), 2);
}

#[test]
fn on_give_up_fires_once_when_retries_are_used_up() {
    let home = Home::new();
    home.lane(
        "backup",
        &format!("schedule: {{ every: 24h }}\nretry: {{ delay: 15m, window: 1h }}\non_give_up: {{ {RECORDER} }}\ncommand: {{ argv: [\"true\"] }}\n"),
    );
    // The failure streak is two hours old: its one-hour retry window is over.
    let ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
    home.ok(&["record", "backup", "--outcome", "failure", "--at", &ago]);
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "give-up"), 1);
    let (_, env) = got(&home, "give-up", 1);
    assert!(env.contains("LANEKEEPER_REASON=retries-exhausted"), "{env}");
    // Every new daemon notices the streak again; the hook does not run again.
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "give-up"), 1);
}

#[test]
fn on_give_up_fires_once_after_give_up_after_of_continuous_deferral() {
    let home = Home::new();
    gate(&home, true);
    home.lane(
        "held",
        &format!("schedule: {{ every: 1h }}\npreconditions:\n  - use: gate\ngive_up_after: 300ms\non_give_up: {{ {RECORDER} }}\ncommand: {{ argv: [\"true\"] }}\n"),
    );
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "give-up"), 0, "not before give_up_after");
    eventually("the give-up", || {
        home.ok(&["run", "--once"]);
        fired(&home, "give-up") >= 1
    });
    home.ok(&["run", "--once"]);
    home.ok(&["run", "--once"]);
    assert_eq!(fired(&home, "give-up"), 1);
    let (json, env) = got(&home, "give-up", 1);
    assert_eq!(json["decision"]["reason"], "waiting", "{json}");
    assert!(env.contains("LANEKEEPER_EVENT=give-up"), "{env}");
}

#[test]
fn on_forced_run_fires_when_the_starvation_guard_runs_the_lane() {
    let home = Home::new();
    gate(&home, true);
    home.lane(
        "starved",
        &format!("schedule: {{ every: 1h }}\npreconditions:\n  - {{ use: gate, soft: true }}\nmax_deferral: 300ms\nrecheck: 100ms\non_forced_run: {{ {RECORDER} }}\ncommand: {{ argv: [\"true\"] }}\n"),
    );
    let _daemon = Daemon::start(&home);
    wait_for(&home, "the forced run's hook", || {
        fired(&home, "forced-run") >= 1
    });
    let (json, env) = got(&home, "forced-run", 1);
    assert_eq!(json["decision"]["source"], "starvation-guard", "{json}");
    assert!(env.contains("LANEKEEPER_REASON=starvation-guard:"), "{env}");
    assert!(env.contains("LANEKEEPER_RUN_ID="), "{env}");
    home.wait_status("starved", "the run's end", |s| {
        s["last_result"] == "success"
    });
    assert_eq!(fired(&home, "forced-run"), 1);
}

/// The value of `lanekeeper_hooks_total{lane,event,result}` at `base`.
fn hooks_total(base: &str, lane: &str, event: &str, result: &str) -> Option<f64> {
    let body = reqwest::blocking::get(format!("{base}/metrics"))
        .expect("GET /metrics")
        .text()
        .expect("body");
    let labels = [
        format!("lane=\"{lane}\""),
        format!("event=\"{event}\""),
        format!("result=\"{result}\""),
    ];
    body.lines()
        .filter(|l| l.starts_with("lanekeeper_hooks_total{"))
        .find(|l| labels.iter().all(|x| l.contains(x.as_str())))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_hanging_hook_does_not_delay_the_passes_and_is_stopped_at_its_timeout_logged_and_counted() {
    let home = Home::new();
    gate(&home, true);
    home.lane(
        "ticker",
        "schedule: { every: 1h }\nrecheck: 100ms\npreconditions:\n  - use: gate\n\
         on_defer: { argv: [sh, -c, 'echo $$$$ > \"$LANEKEEPER_HOME/hook.pid\"; exec sleep 600'], timeout: 3s }\n\
         command: { argv: [\"true\"] }\n",
    );
    let _daemon = Daemon::start_with(&home, &["--listen", "127.0.0.1:0"]);
    wait_for(&home, "the HTTP endpoint", || {
        log_of(&home).contains("HTTP endpoint listening")
    });
    let addr = log_of(&home)
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address in the log")
        .to_string();
    let base = format!("http://{addr}");
    let pid_file = home.path().join("hook.pid");
    wait_for(&home, "the hook to start", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty())
    });
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // While the hook hangs, the passes go on every 100 ms.
    let count = |s: &Value| s["episode"]["count"].as_i64().unwrap_or(0);
    let before = count(&home.status("ticker"));
    home.wait_status("ticker", "passes while the hook hangs", |s| {
        count(s) >= before + 5
    });
    assert!(pid_alive(pid), "the hook still hangs");
    // Then it is stopped at its timeout, logged and counted.
    wait_for(&home, "the hook to be stopped", || !pid_alive(pid));
    wait_for(&home, "the log line", || {
        log_of(&home).contains("Hook failed")
    });
    let log = log_of(&home);
    let line = log.lines().find(|l| l.contains("Hook failed")).unwrap();
    assert!(
        line.contains("lane=ticker") && line.contains("result=\"timeout\""),
        "{line}"
    );
    assert_eq!(hooks_total(&base, "ticker", "defer", "timeout"), Some(1.0));
    assert_eq!(hooks_total(&base, "ticker", "defer", "success"), Some(0.0));
    // No pass took long: the hook's three seconds were spent beside the loop.
    let body = reqwest::blocking::get(format!("{base}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let longest: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("lanekeeper_pass_max_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("lanekeeper_pass_max_seconds");
    assert!(longest < 1.0, "a pass took {longest}s");
    assert_eq!(log.matches("Hook started.").count(), 1, "{log}");
    let json: Value = serde_json::from_str(&home.ok(&["explain", "ticker", "--json"])).unwrap();
    assert_eq!(json["last_hook"]["result"], "timeout", "{json}");
}

#[test]
fn hooks_are_checked_at_their_place_and_lanekeeper_yaml_gives_defaults_a_lane_overrides() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule: { every: 1h }\non_failure: { argv: [] }\ncommand: { argv: [\"true\"] }\n",
    );
    home.lane(
        "c",
        "schedule: { every: 1h }\non_give_up: { argv: [x], timeout: 0s }\ncommand: { argv: [\"true\"] }\n",
    );
    home.lane(
        "d",
        "schedule: { every: 1h }\non_defer: { program: x }\ncommand: { argv: [\"true\"] }\n",
    );
    let problems = crate::harness::problems(&home);
    let text = problems.join("\n");
    for (place, what) in [
        ("a.yaml:2:", "`on_failure.argv` needs at least the program"),
        ("c.yaml:2:", "zero"),
        ("d.yaml:2:", "unknown field `program` in `on_defer`"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(place) && p.contains(what)),
            "{place} {what}:\n{text}"
        );
    }
    std::fs::remove_file(home.path().join("rules/c.yaml")).unwrap();
    std::fs::remove_file(home.path().join("rules/d.yaml")).unwrap();

    // Defaults from lanekeeper.yaml; a lane's own wins.
    home.write(
        "lanekeeper.yaml",
        "on_failure: { argv: [sh, -c, 'echo default >> \"$LANEKEEPER_HOME/which\"'] }\n",
    );
    home.lane(
        "a",
        "schedule: { every: 1h }\ncommand: { argv: [\"false\"] }\n",
    );
    home.lane(
        "b",
        "schedule: { every: 1h }\non_failure: { argv: [sh, -c, 'echo own >> \"$LANEKEEPER_HOME/which\"'] }\ncommand: { argv: [\"false\"] }\n",
    );
    home.ok(&["run", "--once"]);
    let which = std::fs::read_to_string(home.path().join("which")).unwrap();
    let mut lines: Vec<&str> = which.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["default", "own"]);
}

#[test]
fn the_shipped_notify_webhook_job_posts_the_event() {
    let home = Home::new();
    let job =
        std::fs::read_to_string(crate::harness::repo().join("jobs/notify-webhook.sh")).unwrap();
    home.write("jobs/notify-webhook.sh", &job);
    let server = crate::harness::TestServer::start(200, "ok");
    home.lane(
        "flaky",
        "schedule: { every: 1h }\non_failure: { argv: [sh, jobs/notify-webhook.sh], timeout: 20s }\ncommand: { argv: [\"false\"] }\n",
    );
    let out = home
        .command(&["run", "--once"])
        .env("LANEKEEPER_WEBHOOK_URL", &server.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.hits(), 1);
    let json: Value = serde_json::from_str(&home.ok(&["explain", "flaky", "--json"])).unwrap();
    assert_eq!(json["last_hook"]["result"], "success", "{json}");
}

#[test]
fn validate_warns_about_a_hook_program_it_cannot_find() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule: { every: 1h }\non_failure: { argv: [no-such-notifier-x] }\ncommand: { argv: [\"true\"] }\n",
    );
    let out = home.run(&["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a warning only:\n{stderr}");
    assert!(
        stderr.contains("rules/a.yaml:2:22: warning: on_failure: ")
            && stderr.contains("the hook will fail to start"),
        "{stderr}"
    );
}

#[test]
fn a_failing_hook_is_logged_and_shown_by_explain() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule: { every: 1h }\non_failure: { argv: [sh, -c, 'echo no webhook >&2; exit 4'] }\ncommand: { argv: [\"false\"] }\n",
    );
    let out = home.run(&["run", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("Hook failed: exit 4") && l.contains("lane=a")),
        "{stderr}"
    );
    let json: Value = serde_json::from_str(&home.ok(&["explain", "a", "--json"])).unwrap();
    assert_eq!(json["last_hook"]["result"], "failure", "{json}");
    assert_eq!(json["last_hook"]["detail"], "exit 4", "{json}");
    let log = std::fs::read_to_string(home.path().join("state/hooks/a.log")).unwrap();
    assert!(log.contains("no webhook"), "{log}");
}
