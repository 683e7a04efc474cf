//! The shipped home: it validates, its JSON matches DESIGN §4, and a pass really runs jobs.

use std::collections::BTreeSet;

use crate::harness::Home;

#[test]
fn the_shipped_home_validates() {
    let out = Home::shipped().ok(&["validate"]);
    assert!(out.contains("6 lane(s), 4 plugin(s): ok"), "{out}");
}

#[test]
fn check_json_matches_the_decision_contract() {
    let home = Home::shipped();
    let out = home.ok(&["check", "--at", "2026-05-09T22:00:00Z", "--json"]);
    let lanes: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lanes.len(), 6);
    let allowed: BTreeSet<&str> = [
        "lane", "at", "outcome", "source", "reason", "gate", "detail", "chain",
    ]
    .into();
    let chain_allowed: BTreeSet<&str> = [
        "gate", "runtime", "verdict", "reason", "detail", "hint", "micros", "evidence", "error",
        "soft", "decided",
    ]
    .into();
    for d in &lanes {
        let keys: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.is_subset(&allowed), "unexpected keys in {d}");
        assert_eq!(d["at"], "2026-05-09T22:00:00Z");
        match d["outcome"].as_str().unwrap() {
            "trigger" => {
                assert!(d["source"].is_string() && d["reason"].is_string(), "{d}");
                assert!(d["gate"].is_null());
            }
            "deferred" => assert!(
                d["reason"].is_string() && d["gate"].is_string() && d["detail"].is_string(),
                "{d}"
            ),
            other => panic!("unexpected outcome {other}"),
        }
        let chain = d["chain"].as_array().unwrap();
        assert_eq!(
            chain[0]["gate"], "schedule",
            "the schedule gate is always first"
        );
        for entry in chain {
            let keys: BTreeSet<&str> = entry
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert!(keys.is_subset(&chain_allowed), "unexpected keys in {entry}");
            assert!(["pass", "defer", "waived"].contains(&entry["verdict"].as_str().unwrap()));
        }
    }
    let backup = lanes.iter().find(|d| d["lane"] == "backup").unwrap();
    assert_eq!(backup["reason"], "periodic-sweep:86400000");
    let sandman = lanes.iter().find(|d| d["lane"] == "sandman").unwrap();
    assert_eq!(sandman["reason"], "backup-stale");
    assert_eq!(sandman["chain"][1]["runtime"], "rhai");
    assert!(sandman["chain"][1]["micros"].is_u64());
}

#[test]
fn passes_on_a_fresh_home_give_real_triggers_deferrals_and_runs() {
    let home = Home::shipped();
    // 13:00 in Berlin, outside the off-peak windows, so the passes do not depend on the hour.
    let out = home.run(&["run", "--once", "--at", "2026-11-30T12:00:00Z"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("backup-stale"), "{stdout}");
    assert!(stderr.contains("lane `backup`: success"), "{stderr}");
    // backup starts first (priority 0); summary's contention gate sees it starting.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("summary") && l.contains("peer lane backup starts in this pass")),
        "{stdout}"
    );

    // The backup lane archived the state database.
    let backups: Vec<_> = std::fs::read_dir(home.path().join("state/backups"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(backups.len(), 1);
    assert!(backups[0].file_name().to_string_lossy().ends_with(".db.gz"));

    // The next pass sees the fresh backup: golden-path (no group) gets past backup-recency and runs.
    let out = home.run(&["run", "--once", "--at", "2026-11-30T12:01:00Z"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lane `golden-path`: success"), "{stderr}");
    assert_eq!(home.status("golden-path")["last_result"], "success");
    let d = home.check_at("sandman", "2026-11-30T12:02:00Z");
    assert_ne!(d["reason"], "backup-stale", "{d}");
}
