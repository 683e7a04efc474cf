//! `hosts:` on a shared PostgreSQL store, through the built binary: the leader hands a lane
//! that names another replica to it, which runs it; with that replica gone the lane defers
//! with `no-eligible-host`, as every command on the leader's side says.

use std::time::Duration;

use crate::harness::{Home, sh};
use crate::pg_harness::Postgres;
use crate::replicas::{eventually, json, replica};

/// The live leader's host.
fn leader(home: &Home) -> Option<String> {
    crate::replicas::leader(home).map(|(host, _)| host)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `args` run as replica `a` would (`--host a`), its text output.
fn as_a(home: &Home, args: &[&str]) -> String {
    let out = home
        .command(args)
        .env("LANEKEEPER_HOST", "a")
        .output()
        .expect("run");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_lane_with_hosts_runs_only_there_and_defers_with_no_eligible_host_when_it_is_gone() {
    let Some(pg) = Postgres::start() else { return };
    let home = Home::standard();
    home.write(
        "lanekeeper.yaml",
        &format!("state: \"{}\"\nlease_ttl: 2s\n", pg.url()),
    );
    let (pinned, local) = (home.path().join("pinned"), home.path().join("local"));
    // `pinned` comes due every 2 s, so it is due again once b is gone; `local` names the
    // leader's own host, which runs it as without `hosts:`.
    home.lane(
        "pinned",
        &format!(
            "schedule: {{ every: 2s }}\nhosts: [b]\ncommand: {{ argv: {} }}\n",
            sh(&format!("echo $LANEKEEPER_HOST >> {}", pinned.display()))
        ),
    );
    home.lane(
        "local",
        &format!(
            "schedule: {{ every: 1h }}\nhosts: [a]\ncommand: {{ argv: {} }}\n",
            sh(&format!("echo $LANEKEEPER_HOST >> {}", local.display()))
        ),
    );
    let a = replica(&home, "a");
    eventually("a to lead", Duration::from_secs(20), || {
        leader(&home).as_deref() == Some("a")
    });
    // Alone, a runs `local` and holds `pinned` back: b was never seen.
    eventually("local to run on a", Duration::from_secs(20), || {
        lines(&local) == ["a"]
    });
    let d = json(&home.run(&["check", "pinned", "--json"]));
    assert_eq!(d["reason"], "no-eligible-host", "{d}");

    let mut b = replica(&home, "b");
    eventually("pinned to run on b", Duration::from_secs(30), || {
        !lines(&pinned).is_empty()
    });
    assert!(
        lines(&pinned).iter().all(|h| h == "b"),
        "pinned ran elsewhere: {:?}\n--- a ---\n{}\n--- b ---\n{}",
        lines(&pinned),
        a.log(),
        b.log()
    );
    assert_eq!(leader(&home).as_deref(), Some("a"), "b never decides");
    assert!(a.log().contains("Handed the run"), "{}", a.log());
    assert!(b.log().contains("handed to this replica"), "{}", b.log());
    assert!(!b.log().contains("Leading"), "{}", b.log());
    // Its outcome is in the shared store, for the leader to see.
    eventually("the run's result on a", Duration::from_secs(20), || {
        home.status("pinned")["last_result"] == "success"
    });

    // kill -9 b: once it is not seen within the lease TTL, pinned defers naming it.
    b.child.kill().expect("kill -9 b");
    let _ = b.child.wait();
    let ran = lines(&pinned).len();
    eventually(
        "no-eligible-host from check",
        Duration::from_secs(30),
        || {
            let d = json(&home.run(&["check", "pinned", "--json"]));
            d["reason"] == "no-eligible-host"
        },
    );
    let d = json(&home.run(&["check", "pinned", "--json"]));
    let detail = d["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("(b)") && detail.contains("alive: a"), "{d}");
    let explain = as_a(&home, &["explain", "pinned"]);
    assert!(
        explain.contains("no-eligible-host") && explain.contains("none of its hosts (b)"),
        "{explain}"
    );
    // The leader records the deferral: `status` on a says so.
    eventually(
        "the leader's deferral in status",
        Duration::from_secs(20),
        || home.status("pinned")["episode"]["reason"] == "no-eligible-host",
    );
    assert!(as_a(&home, &["status"]).contains("no-eligible-host"));
    assert_eq!(lines(&pinned).len(), ran, "nothing ran pinned without b");
    assert_eq!(lines(&local), ["a"]);
}

#[test]
fn a_hand_off_wakes_its_replica_at_once_rather_than_at_its_next_poll() {
    let Some(pg) = Postgres::start() else { return };
    let home = Home::standard();
    // A long lease: followers poll every 20 s, so a run within seconds came by NOTIFY.
    home.write(
        "lanekeeper.yaml",
        &format!("state: \"{}\"\nlease_ttl: 60s\n", pg.url()),
    );
    let pinned = home.path().join("pinned");
    home.lane(
        "pinned",
        &format!(
            "schedule: {{ every: 1h }}\nrecheck: 1s\nhosts: [b]\ncommand: {{ argv: {} }}\n",
            sh(&format!("echo $LANEKEEPER_HOST >> {}", pinned.display()))
        ),
    );
    let _a = replica(&home, "a");
    eventually("a to lead", Duration::from_secs(20), || {
        leader(&home).as_deref() == Some("a")
    });
    let b = replica(&home, "b");
    // b's first iteration comes before a sees it alive; the hand-off follows within a's
    // recheck (1 s), and b takes it when notified.
    eventually("pinned to run on b", Duration::from_secs(12), || {
        lines(&pinned) == ["b"]
    });
    assert!(b.log().contains("handed to this replica"), "{}", b.log());
}
