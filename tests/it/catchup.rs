//! Catch-up after downtime (`schedule.catch_up`) and per-lane jitter (`schedule.jitter`),
//! rehearsed with `record --at`, `run --once --at` and `check --at`: no real waits.

use serde_json::Value;

use crate::daemon::{Daemon, log_of, wait_for};
use crate::harness::Home;

fn cron_lane(catch_up: &str, extra: &str) -> String {
    format!(
        "schedule:\n  cron: \"0 * * * *\"\n  catch_up: {catch_up}\n{extra}command:\n  argv: [\"true\"]\n"
    )
}

/// Lanes `once` and `skip` last ran at 00:00; a daemon decided at 00:30 and the next started at
/// 05:30: the slots 01:00 to 05:00 fell while none ran.
fn after_downtime() -> Home {
    let home = Home::new();
    home.lane("once", &cron_lane("once", ""));
    home.lane("skip", &cron_lane("skip", ""));
    for lane in ["once", "skip"] {
        home.ok(&[
            "record",
            lane,
            "--outcome",
            "success",
            "--at",
            "2026-05-10T00:00:00Z",
        ]);
    }
    home.ok(&["run", "--once", "--at", "2026-05-10T00:30:00Z"]);
    home
}

fn decision<'a>(decisions: &'a [Value], lane: &str) -> &'a Value {
    decisions
        .iter()
        .find(|d| d["lane"] == lane)
        .unwrap_or_else(|| panic!("no decision for {lane}: {decisions:?}"))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn catch_up_once_runs_one_catch_up_and_skip_waits_for_the_next_slot() {
    let home = after_downtime();
    let out = home.ok(&["run", "--once", "--json", "--at", "2026-05-10T05:30:00Z"]);
    let decisions = json_lines(&out);
    let once = decision(&decisions, "once");
    assert_eq!(once["outcome"], "trigger", "{once}");
    let skip = decision(&decisions, "skip");
    assert_eq!(skip["outcome"], "deferred", "{skip}");
    assert_eq!(skip["reason"], "interval-not-due", "{skip}");
    for d in [once, skip] {
        let detail = d["chain"][0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("5 slots missed while the daemon was down"),
            "{detail}"
        );
    }

    // `once` ran once, at the catch-up; `skip` is due at the next slot, not before.
    let history = home.ok(&[
        "history",
        "once",
        "--since",
        "2026-05-10T00:00:00Z",
        "--json",
    ]);
    let history: Value = serde_json::from_str(history.trim()).expect("history JSON");
    let runs = history["runs"].as_array().expect("runs");
    assert_eq!(
        runs.len(),
        2,
        "the recorded run and one catch-up: {history}"
    );
    assert_eq!(runs[1]["source"], "cron", "{history}");
    let d = home.check_at("skip", "2026-05-10T05:59:59Z");
    assert_eq!(d["outcome"], "deferred", "{d}");
    assert!(
        d["detail"]
            .as_str()
            .is_some_and(|t| t.contains("5 slots missed while the daemon was down")),
        "{d}"
    );
    let d = home.check_at("skip", "2026-05-10T06:00:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");

    // explain says so too, for the decision the rehearsed daemon recorded.
    let explain = home.ok(&["explain", "skip", "--at", "2026-05-10T05:45:00Z"]);
    assert!(
        explain.contains("5 slots missed while the daemon was down"),
        "{explain}"
    );
}

#[test]
fn a_restarted_daemon_counts_the_missed_slots_in_metrics() {
    let home = after_downtime();
    let daemon = Daemon::start_with(
        &home,
        &["--listen", "127.0.0.1:0", "--at", "2026-05-10T05:30:00Z"],
    );
    wait_for(&home, "the HTTP endpoint", || {
        log_of(&home).contains("HTTP endpoint listening")
    });
    let addr = log_of(&home)
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address in the log")
        .to_string();
    // The endpoint listens before the first pass has counted the downtime: wait for the pass.
    wait_for(&home, "both lanes' missed slots logged", || {
        log_of(&home)
            .matches("Slots missed while the daemon was down")
            .count()
            >= 2
    });
    let body = reqwest::blocking::get(format!("http://{addr}/metrics"))
        .expect("GET /metrics")
        .text()
        .expect("body");
    for lane in ["once", "skip"] {
        let line = format!("lanekeeper_missed_slots_total{{lane=\"{lane}\"}} 5");
        assert!(body.contains(&line), "{line} in:\n{body}");
    }
    assert!(log_of(&home).contains("Slots missed while the daemon was down"));
    drop(daemon);
}

#[test]
fn without_a_downtime_nothing_is_missed() {
    let home = Home::new();
    home.lane("skip", &cron_lane("skip", ""));
    home.ok(&[
        "record",
        "skip",
        "--outcome",
        "success",
        "--at",
        "2026-05-10T00:00:00Z",
    ]);
    // No daemon was ever seen: a lane overdue is due, whatever its catch_up.
    let d = home.check_at("skip", "2026-05-10T05:30:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert!(!d.to_string().contains("missed"), "{d}");
}

/// Each lane's offset from its status: NEXT DUE minus the 01:00 slot, in ms.
fn offsets(home: &Home) -> Vec<(String, i64)> {
    let out = home.ok(&["status", "--json"]);
    let slot: jiff::Timestamp = "2026-05-10T01:00:00Z".parse().unwrap();
    let mut found = Vec::new();
    for s in json_lines(&out) {
        let Some(lanes) = s["lanes"]
            .as_array()
            .cloned()
            .or_else(|| Some(vec![s.clone()]))
        else {
            continue;
        };
        for l in lanes {
            let (Some(name), Some(next)) = (l["lane"].as_str(), l["next_due_at"].as_str()) else {
                continue;
            };
            let next: jiff::Timestamp = next.parse().expect("next_due_at");
            found.push((
                name.to_string(),
                next.as_millisecond() - slot.as_millisecond(),
            ));
        }
    }
    found.sort();
    found
}

#[test]
fn jitter_is_stable_differs_between_lanes_and_stays_within_its_window() {
    let home = Home::new();
    for i in 0..100 {
        let lane = format!("lane-{i:03}");
        home.lane(&lane, &cron_lane("once", "  jitter: 10m\n"));
        // After 00:00's slot and any delay of it: the next is 01:00's.
        home.ok(&[
            "record",
            &lane,
            "--outcome",
            "success",
            "--at",
            "2026-05-10T00:30:00Z",
        ]);
    }
    let first = offsets(&home);
    assert_eq!(first.len(), 100, "{first:?}");
    assert_eq!(first, offsets(&home), "stable across runs");
    let window = 10 * 60 * 1000;
    assert!(
        first.iter().all(|(_, o)| (0..window).contains(o)),
        "{first:?}"
    );
    let distinct: std::collections::BTreeSet<i64> = first.iter().map(|(_, o)| *o).collect();
    assert!(distinct.len() >= 95, "{distinct:?}");
    let (min, max) = (distinct.first().unwrap(), distinct.last().unwrap());
    assert!(
        *min < window / 5 && *max > window * 4 / 5,
        "spread: {min}..{max}"
    );

    // The due rule adds the offset, and check says so.
    let (lane, offset) = &first[0];
    let due: jiff::Timestamp = "2026-05-10T01:00:00Z".parse().unwrap();
    let at = due
        .checked_add(jiff::SignedDuration::from_millis(*offset))
        .unwrap();
    let before = at
        .checked_sub(jiff::SignedDuration::from_millis(1))
        .unwrap();
    let d = home.check_at(lane, &before.to_string());
    assert_eq!(d["outcome"], "deferred", "{d}");
    assert!(
        d["detail"].as_str().is_some_and(|t| t.contains("jitter +")),
        "{d}"
    );
    assert_eq!(home.check_at(lane, &at.to_string())["outcome"], "trigger");
}

#[test]
fn catch_up_and_jitter_are_checked_at_their_place() {
    let home = Home::new();
    home.lane(
        "a",
        "schedule:\n  every: 1h\n  catch_up: twice\n  jitter: soon\ncommand:\n  argv: [\"true\"]\n",
    );
    let out = home.run(&["validate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.yaml:3:13"), "{err}");
    assert!(err.contains("a.yaml:4:11"), "{err}");
}
