//! The decision history: decisions at the real present are recorded; what-ifs never are.

use crate::harness::{Home, lane_yaml};

#[test]
fn a_plain_check_is_recorded_and_explain_at_finds_it() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    home.init_history();
    let d = home.check_now("a");
    let at = d["at"].as_str().unwrap();
    let out = home.ok(&["explain", "a", "--at", at, "--json"]);
    let mut recorded: serde_json::Value = serde_json::from_str(&out).unwrap();
    // explain adds the episode, the fingerprints, who recorded it, which evaluation it shows,
    // what the trigger led to and what would make it fire.
    assert_eq!(recorded["episode"]["count"], 1);
    assert!(recorded["hashes"]["rules/a.yaml"].is_string(), "{recorded}");
    assert_eq!(recorded["origin"], "check");
    assert_eq!(recorded["evaluation"]["which"], "only");
    assert_eq!(recorded["dispatch"]["dispatched"], false);
    let obj = recorded.as_object_mut().unwrap();
    for extra in [
        "episode",
        "hashes",
        "to_fire",
        "origin",
        "evaluation",
        "dispatch",
    ] {
        obj.remove(extra);
    }
    assert_eq!(recorded, d, "the recorded decision is the one printed");
}

#[test]
fn check_at_is_a_what_if_and_never_recorded() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    home.check_at("a", "2030-01-01T00:00:00Z");
    let out = home.run(&["explain", "a", "--at", "2030-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no decision about `a` is recorded"));
    assert!(home.status("a")["deferral"].is_null());
}

#[test]
fn fire_records_a_manual_trigger() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    assert_eq!(home.run(&["fire", "a", "--wait"]).status.code(), Some(0));
    let out = home.ok(&["explain", "a", "--at", "2100-01-01T00:00:00Z", "--json"]);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["outcome"], "trigger");
    assert_eq!(d["source"], "manual");
}

#[test]
fn a_recorded_deferral_starts_a_streak_that_a_trigger_ends() {
    let home = Home::new();
    home.write(
        "plugins/gate.rhai",
        "fn evaluate(ctx) { if ctx.lanes.flag.last_success_ms == () { \"waiting\" } }\n",
    );
    home.lane("flag", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane("a", &lane_yaml("1h", "  - use: gate", "[\"true\"]"));
    home.init_history();
    home.check_now("a");
    let s = home.status("a");
    assert_eq!(s["deferral"]["reason"], "waiting");
    let since = s["deferral"]["since"].clone();
    home.check_now("a");
    assert_eq!(
        home.status("a")["deferral"]["since"],
        since,
        "the streak keeps its start"
    );
    home.ok(&["record", "flag", "--outcome", "success"]);
    // A plain check that triggers dispatches nothing: the lane is still due and waiting.
    assert_eq!(home.check_now("a")["outcome"], "trigger");
    assert_eq!(home.status("a")["deferral"]["since"], since);
    // A pass that dispatches ends the streak.
    home.ok(&["run", "--once"]);
    assert!(home.status("a")["deferral"].is_null());
}

#[test]
fn record_stamps_runs_made_outside_lanekeeper() {
    let home = Home::new();
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        "2026-05-09T10:00:00Z",
    ]);
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "failure",
        "--at",
        "2026-05-09T12:00:00Z",
    ]);
    let s = home.status("backup");
    assert_eq!(s["last_run_at"], "2026-05-09T12:00:00Z");
    assert_eq!(s["last_success_at"], "2026-05-09T10:00:00Z");
    assert_eq!(s["last_result"], "failure");
    assert_eq!(s["next_due_at"], "2026-05-10T12:00:00Z");
    // An older record does not move the clock back.
    home.ok(&[
        "record",
        "backup",
        "--outcome",
        "success",
        "--at",
        "2026-05-01T00:00:00Z",
    ]);
    assert_eq!(
        home.status("backup")["last_success_at"],
        "2026-05-09T10:00:00Z"
    );
}

#[test]
fn identical_deferrals_coalesce_into_one_episode_and_explain_at_returns_it_with_its_hashes() {
    let home = Home::new();
    home.write(
        "plugins/wait.rhai",
        "fn evaluate(ctx) { log(`looked at ${ctx.lane}`); #{ defer: \"waiting\", detail: \"still waiting\", hint: \"passes once it stops waiting\" } }\n",
    );
    home.lane("a", &lane_yaml("1h", "  - use: wait", "[\"true\"]"));
    home.init_history();
    let first = home.check_now("a");
    home.check_now("a");
    let third = home.check_now("a");
    let old_hash = home.ok(&["explain", "a", "--json"]);
    let old_hash: serde_json::Value = serde_json::from_str(&old_hash).unwrap();
    let old_hash = old_hash["hashes"]["rules/a.yaml"]
        .as_str()
        .unwrap()
        .to_string();

    // Three checks, one episode.
    let s = home.status("a");
    assert_eq!(s["episode"]["count"], 3, "{s}");
    assert_eq!(s["episode"]["reason"], "waiting");
    assert!(
        home.ok(&["status"]).contains("waiting for"),
        "human status shows the episode"
    );
    assert!(home.ok(&["status"]).contains("3 checks"));

    // Edit the rule: the next decision starts a new episode with new hashes.
    home.lane(
        "a",
        &format!(
            "label: edited\n{}",
            lane_yaml("1h", "  - use: wait", "[\"true\"]")
        ),
    );
    home.check_now("a");
    assert_eq!(home.status("a")["episode"]["count"], 1);

    // Inside the old episode: its chain, its evidence, its hashes, and the change since.
    let at = first["at"].as_str().unwrap();
    let out = home.ok(&["explain", "a", "--at", at, "--json"]);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["reason"], "waiting");
    assert_eq!(
        e["at"], first["at"],
        "the first evaluation of the episode: {e}"
    );
    assert_eq!(e["episode"]["count"], 3);
    assert_eq!(e["episode"]["last_at"], third["at"]);
    assert_eq!(e["chain"][1]["evidence"][0]["message"], "looked at a");
    assert_eq!(e["hashes"]["rules/a.yaml"], old_hash.as_str());
    assert_eq!(e["changed_since"][0]["file"], "rules/a.yaml");
    assert_eq!(e["changed_since"][0]["then"], old_hash.as_str());
    assert_eq!(e["to_fire"][0], "wait: passes once it stops waiting");
    let human = home.ok(&["explain", "a", "--at", at]);
    assert!(human.contains("changed since"), "{human}");
    assert!(human.contains("what would have to change"), "{human}");
}
