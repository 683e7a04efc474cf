//! The PostgreSQL store against a real server: the `Store` contract as SQLite keeps it, what
//! several replicas on one database must not break, the copy of a SQLite history, calls from
//! inside the daemon's runtime, the leader lease with fencing, and a lost connection.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lanekeeper::model::decision::{ChainEntry, Decision, GateVerdict, Origin, Outcome};
use lanekeeper::model::hook::{HookEvent, HookResult};
use lanekeeper::state::postgres::{Claim, Leadership};
use lanekeeper::state::{
    ENDED_EXPIRED, ENDED_REPLACED, ExitInfo, Pause, PostgresStore, ReloadStatus, RunEnd, RunResult,
    RunStart, SqliteStore, Store, StoreError,
};

use crate::pg_harness::Postgres;

fn t(s: &str) -> Timestamp {
    s.parse().expect("time")
}

fn decision(lane: &str, at: &str, outcome: Outcome, reason: &str) -> Decision {
    Decision {
        lane: lane.into(),
        at: t(at),
        outcome,
        source: None,
        reason: Some(reason.into()),
        gate: Some("g".into()),
        detail: None,
        chain: Vec::new(),
        hashes: None,
        origin: None,
    }
}

fn start(lane: &str, at: &str, honour_pause: bool) -> RunStart<'static> {
    RunStart {
        lane: Box::leak(lane.to_string().into_boxed_str()),
        source: "periodic-sweep",
        at: t(at),
        process: Some((4242, 99)),
        supervisor: Some((4241, 98)),
        log_path: Some("/tmp/run.log"),
        honour_pause,
    }
}

fn end(at: &str, result: RunResult, exit: Option<ExitInfo>) -> RunEnd {
    RunEnd {
        at: t(at),
        result,
        exit,
    }
}

fn pause(note: &str, at: &str, until: Option<&str>) -> Pause {
    Pause {
        note: note.into(),
        by: "alice".into(),
        at: t(at),
        until: until.map(t),
    }
}

/// A server and a store on it, or `None` (the test is skipped) without PostgreSQL.
fn store() -> Option<(Postgres, PostgresStore)> {
    let pg = Postgres::start()?;
    let store = PostgresStore::connect(&pg.url()).expect("connect");
    Some((pg, store))
}

#[test]
fn postgres_runs_start_end_and_stamp_the_lane_as_on_sqlite() {
    let Some((_pg, store)) = store() else { return };
    let id = store
        .begin_run(&start("a", "2026-01-01T00:00:00Z", true))
        .expect("begin");
    let states = store.lane_states().expect("states");
    let running = states["a"].running.as_ref().expect("running");
    assert_eq!(
        (running.run_id, running.pid, running.pid_start),
        (id, 4242, 99)
    );
    assert_eq!(running.supervisor, Some((4241, 98)));
    assert_eq!(states["a"].last_run_at, Some(t("2026-01-01T00:00:00Z")));
    store
        .finish_run(
            id,
            &end(
                "2026-01-01T00:01:00Z",
                RunResult::Failure,
                Some(ExitInfo::Code(3)),
            ),
        )
        .expect("finish");
    assert!(matches!(
        store.finish_run(id, &end("2026-01-01T00:02:00Z", RunResult::Success, None)),
        Err(StoreError::NotRunning(n)) if n == id
    ));
    let a = &store.lane_states().expect("states")["a"];
    assert_eq!(a.last_result, Some(RunResult::Failure));
    assert_eq!(a.last_exit, Some(ExitInfo::Code(3)));
    assert_eq!(a.failure_since, Some(t("2026-01-01T00:01:00Z")));
    assert!(a.running.is_none());
    // A run recorded late never hides a later one; a success ends the streak.
    store
        .record_external("a", t("2026-01-01T00:00:30Z"), RunResult::Success)
        .expect("record");
    let a = &store.lane_states().expect("states")["a"];
    assert_eq!(a.last_result, Some(RunResult::Failure));
    assert_eq!(a.last_success_at, Some(t("2026-01-01T00:00:30Z")));
    store
        .record_external("a", t("2026-01-01T00:05:00Z"), RunResult::Success)
        .expect("record");
    let a = &store.lane_states().expect("states")["a"];
    assert_eq!(a.last_result, Some(RunResult::Success));
    assert_eq!(a.failure_since, None);
    let runs = store.runs_since(Timestamp::UNIX_EPOCH).expect("runs");
    assert_eq!(runs.len(), 3);
    assert_eq!(
        store.recent_runs("a", 1).expect("recent")[0].source,
        "record"
    );
    let first = store
        .run_started_between("a", t("2026-01-01T00:00:00Z"), None)
        .expect("between")
        .expect("one");
    assert_eq!(first.id, id);
    // The past: running at 00:00:45, failed by 00:01:30.
    let then = store
        .lane_states_at(t("2026-01-01T00:00:45Z"))
        .expect("past");
    assert_eq!(
        then.states["a"].running.as_ref().map(|r| r.run_id),
        Some(id)
    );
    assert_eq!(then.coverage.first_record, Some(t("2026-01-01T00:00:00Z")));
    // Stops, reloads and downtime.
    let id = store
        .begin_run(&start("b", "2026-01-02T00:00:00Z", true))
        .expect("begin");
    assert!(
        store
            .request_stop(id, "bob", Some(Duration::from_secs(5)))
            .expect("stop")
    );
    let req = store.stop_request(id).expect("read").expect("some");
    assert_eq!(
        (req.by.as_str(), req.grace),
        ("bob", Some(Duration::from_secs(5)))
    );
    store.withdraw_stop(id).expect("withdraw");
    assert_eq!(store.stop_request(id).expect("read"), None);
    let reload = ReloadStatus {
        at: t("2026-01-02T00:00:00Z"),
        ok: false,
        trigger: "SIGHUP".into(),
        error: Some("bad".into()),
    };
    store.record_reload(&reload).expect("reload");
    assert_eq!(
        store.last_reload().expect("read").map(|r| r.error),
        Some(Some("bad".into()))
    );
    assert_eq!(
        store
            .daemon_started(t("2026-01-02T00:00:00Z"))
            .expect("start"),
        None
    );
    store.daemon_seen(t("2026-01-02T01:00:00Z")).expect("seen");
    let down = store
        .daemon_started(t("2026-01-02T03:00:00Z"))
        .expect("start")
        .expect("downtime");
    assert_eq!(
        (down.from, down.to),
        (t("2026-01-02T01:00:00Z"), t("2026-01-02T03:00:00Z"))
    );
    assert_eq!(
        store.lane_states().expect("states")["a"].downtime,
        Some(down)
    );
}

#[test]
fn postgres_pauses_replace_resume_expire_and_refuse_a_start() {
    let Some((_pg, store)) = store() else { return };
    let first = pause("one", "2026-01-01T00:00:00Z", None);
    assert_eq!(store.pause("a", &first).expect("pause"), None);
    let second = pause("two", "2026-01-01T01:00:00Z", Some("2026-01-01T02:00:00Z"));
    assert_eq!(store.pause("a", &second).expect("pause"), Some(first));
    assert_eq!(
        store.lane_states().expect("states")["a"].pause.as_ref(),
        Some(&second)
    );
    assert!(matches!(
        store.begin_run(&start("a", "2026-01-01T01:30:00Z", true)),
        Err(StoreError::Paused { .. })
    ));
    assert!(
        store.lane_states().expect("states")["a"]
            .last_run_at
            .is_none()
    );
    let forced = store
        .begin_run(&start("a", "2026-01-01T01:31:00Z", false))
        .expect("fire --force");
    assert!(store.request_stop(forced, "bob", None).expect("stop"));
    store
        .finish_run(
            forced,
            &end(
                "2026-01-01T01:32:00Z",
                RunResult::Failure,
                Some(ExitInfo::Signal(9)),
            ),
        )
        .expect("end");
    let state = &store.lane_states().expect("states")["a"];
    assert_eq!(state.last_result, Some(RunResult::Cancelled));
    assert_eq!(state.failure_since, None);
    assert!(!store.request_stop(forced, "bob", None).expect("ended"));
    assert!(
        store
            .begin_run(&start("a", "2026-01-01T02:00:00Z", true))
            .is_ok()
    );
    assert_eq!(
        store
            .settle_expired_pauses(t("2026-01-01T02:00:00Z"))
            .expect("settle"),
        1
    );
    let ends: Vec<_> = store
        .pauses_since(Some("a"), Timestamp::UNIX_EPOCH)
        .expect("pauses")
        .into_iter()
        .map(|p| p.ended_by)
        .collect();
    assert_eq!(
        ends,
        [
            Some(ENDED_REPLACED.to_string()),
            Some(ENDED_EXPIRED.to_string())
        ]
    );
    store
        .pause("a", &pause("three", "2026-01-02T00:00:00Z", None))
        .expect("pause");
    let resumed = store
        .resume("a", t("2026-01-02T01:00:00Z"), "carol")
        .expect("resume");
    assert_eq!(resumed.map(|p| p.note), Some("three".into()));
    let last = store
        .pauses_since(None, Timestamp::UNIX_EPOCH)
        .expect("pauses")
        .pop()
        .expect("one");
    assert_eq!(last.ended_by.as_deref(), Some("carol"));
    assert_eq!(
        store
            .resume("a", t("2026-01-02T02:00:00Z"), "carol")
            .expect("resume"),
        None
    );
    let then = store
        .lane_states_at(t("2026-01-02T00:30:00Z"))
        .expect("past");
    assert_eq!(
        then.states["a"].pause.as_ref().map(|p| p.note.as_str()),
        Some("three")
    );
    let after = store
        .lane_states_at(t("2026-01-02T01:30:00Z"))
        .expect("past");
    assert!(after.states["a"].pause.is_none());
}

#[test]
fn postgres_deferrals_coalesce_triggers_do_not_and_pruning_keeps_the_latest() {
    let Some((_pg, store)) = store() else { return };
    let d = |at, o, r| decision("a", at, o, r);
    store
        .record_decisions(
            &[
                d("2026-01-01T00:00:00Z", Outcome::Deferred, "x"),
                d("2026-01-01T00:00:30Z", Outcome::Deferred, "x"),
                d("2026-01-01T00:01:00Z", Outcome::Deferred, "x"),
                d("2026-01-01T00:01:30Z", Outcome::Deferred, "y"),
                d("2026-01-01T00:02:00Z", Outcome::Trigger, "t"),
                d("2026-01-01T00:02:30Z", Outcome::Trigger, "t"),
            ],
            Origin::Daemon,
        )
        .expect("record");
    let all = store.episodes_since(Timestamp::UNIX_EPOCH).expect("read");
    let counts: Vec<i64> = all.iter().map(|e| e.summary.count).collect();
    assert_eq!(counts, [3, 1, 1, 1]);
    let x = store
        .episode_at("a", t("2026-01-01T00:00:45Z"))
        .expect("q")
        .expect("some");
    assert_eq!(x.summary.reason.as_deref(), Some("x"));
    assert_eq!(
        x.at(t("2026-01-01T00:01:10Z")).at,
        t("2026-01-01T00:01:00Z")
    );
    assert_eq!(
        store
            .next_episode_at("a", t("2026-01-01T00:00:00Z"))
            .expect("next"),
        Some(t("2026-01-01T00:01:30Z"))
    );
    // The streak as it stood: deferred since the first `x`, then ended by the trigger.
    let held = store
        .lane_states_at(t("2026-01-01T00:01:45Z"))
        .expect("past");
    assert_eq!(
        held.states["a"].deferral_since,
        Some(t("2026-01-01T00:00:00Z"))
    );
    assert_eq!(store.lane_states().expect("now")["a"].deferral_since, None);

    let removed = store
        .prune_history(t("2026-01-01T00:02:10Z"))
        .expect("prune");
    assert_eq!(
        removed, 3,
        "everything older goes except the lane's latest episode"
    );
    assert_eq!(
        store
            .episodes_since(Timestamp::UNIX_EPOCH)
            .expect("read")
            .len(),
        1
    );
    let past = store
        .lane_states_at(t("2026-01-01T00:02:20Z"))
        .expect("past");
    assert_eq!(past.coverage.horizon, Some(t("2026-01-01T00:02:10Z")));
}

#[test]
fn postgres_hooks_are_claimed_once() {
    let Some((_pg, store)) = store() else { return };
    let at = t("2026-01-01T00:00:00Z");
    let id = store
        .claim_hook("a", HookEvent::Failure, "run-1", at)
        .expect("claim")
        .expect("first");
    assert_eq!(
        store
            .claim_hook("a", HookEvent::Failure, "run-1", at)
            .expect("claim"),
        None
    );
    store
        .finish_hook(id, HookResult::Success, "sent", t("2026-01-01T00:00:01Z"))
        .expect("finish");
    let last = store.last_hook("a").expect("read").expect("one");
    assert_eq!(
        (last.key.as_str(), last.result),
        ("run-1", Some(HookResult::Success))
    );
    assert_eq!(last.detail.as_deref(), Some("sent"));
}

#[test]
fn postgres_refuses_a_schema_newer_than_it_knows() {
    let Some((pg, store)) = store() else { return };
    drop(store);
    pg.sql("UPDATE lanekeeper_schema SET version = 99 WHERE track = 'history'");
    let err = PostgresStore::connect(&pg.url()).expect_err("too new");
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade lanekeeper"), "{err}");
}

#[test]
fn postgres_two_replicas_claim_a_hook_once_and_never_start_a_paused_lane() {
    let Some((pg, a)) = store() else { return };
    let b = PostgresStore::connect(&pg.url()).expect("connect b");
    let stores = Arc::new([a, b]);
    a_pause(&stores[0]);
    let rounds = 20;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let (stores, barrier) = (Arc::clone(&stores), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let store = &stores[i];
                let mut claimed = 0;
                let mut refused = 0;
                for round in 0..rounds {
                    barrier.wait();
                    let key = format!("run-{round}");
                    if store
                        .claim_hook("a", HookEvent::Failure, &key, t("2026-01-01T00:00:00Z"))
                        .expect("claim")
                        .is_some()
                    {
                        claimed += 1;
                    }
                    match store.begin_run(&start("p", "2026-01-01T00:30:00Z", true)) {
                        Err(StoreError::Paused { .. }) => refused += 1,
                        other => panic!("a paused lane started: {other:?}"),
                    }
                }
                (claimed, refused)
            })
        })
        .collect();
    let results: Vec<(i32, i32)> = threads
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(
        results.iter().map(|r| r.0).sum::<i32>(),
        rounds,
        "{results:?}"
    );
    assert_eq!(results.iter().map(|r| r.1).sum::<i32>(), 2 * rounds);
    assert!(stores[1].recent_runs("p", 10).expect("runs").is_empty());

    // A pause and a start racing: whichever commits first wins, never both — a start is
    // recorded only before the pause, never after it.
    for round in 0..rounds {
        let lane = format!("race{round}");
        let barrier = Arc::new(Barrier::new(2));
        let (s1, b1, l1) = (Arc::clone(&stores), Arc::clone(&barrier), lane.clone());
        let pauser = std::thread::spawn(move || {
            b1.wait();
            s1[0]
                .pause(&l1, &pause("now", "2026-01-01T00:00:00Z", None))
                .expect("pause");
        });
        barrier.wait();
        let started = stores[1].begin_run(&start(&lane, "2026-01-01T00:30:00Z", true));
        pauser.join().expect("pauser");
        let runs = stores[0].recent_runs(&lane, 10).expect("runs");
        match started {
            Ok(id) => assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [id]),
            Err(StoreError::Paused { .. }) => assert!(runs.is_empty()),
            Err(e) => panic!("{e}"),
        }
        assert!(
            stores[1].lane_states().expect("states")[&lane]
                .pause
                .is_some()
        );
    }
}

fn a_pause(store: &PostgresStore) {
    store
        .pause("p", &pause("maintenance", "2026-01-01T00:00:00Z", None))
        .expect("pause");
}

/// A history with every kind of row, written through the SQLite store.
fn sqlite_history(path: &std::path::Path) -> SqliteStore {
    let lite = SqliteStore::open(path).expect("open sqlite");
    let mut big = decision("b", "2026-01-01T00:03:00Z", Outcome::Deferred, "busy");
    big.chain = vec![ChainEntry::builtin(
        "g",
        GateVerdict::Defer,
        Some("busy"),
        "evidence".into(),
    )];
    lite.record_decisions(
        &[
            decision("a", "2026-01-01T00:00:00Z", Outcome::Deferred, "x"),
            decision("a", "2026-01-01T00:00:30Z", Outcome::Deferred, "x"),
            decision("a", "2026-01-01T00:01:00Z", Outcome::Trigger, "due"),
            big,
        ],
        Origin::Daemon,
    )
    .expect("decisions");
    let run = lite
        .begin_run(&start("a", "2026-01-01T00:01:00Z", true))
        .expect("begin");
    lite.finish_run(
        run,
        &end(
            "2026-01-01T00:02:00Z",
            RunResult::Failure,
            Some(ExitInfo::Code(1)),
        ),
    )
    .expect("finish");
    lite.begin_run(&start("a", "2026-01-01T00:10:00Z", true))
        .expect("running");
    lite.record_external("c", t("2026-01-01T00:04:00Z"), RunResult::Success)
        .expect("external");
    lite.pause("b", &pause("hold", "2026-01-01T00:05:00Z", None))
        .expect("pause");
    lite.pause(
        "c",
        &pause("old", "2026-01-01T00:00:00Z", Some("2026-01-01T00:01:00Z")),
    )
    .expect("pause");
    lite.settle_expired_pauses(t("2026-01-01T00:06:00Z"))
        .expect("settle");
    let hook = lite
        .claim_hook(
            "a",
            HookEvent::Failure,
            &run.to_string(),
            t("2026-01-01T00:02:00Z"),
        )
        .expect("claim")
        .expect("claimed");
    lite.finish_hook(
        hook,
        HookResult::Failure,
        "exit 1",
        t("2026-01-01T00:02:01Z"),
    )
    .expect("hook end");
    lite.record_reload(&ReloadStatus {
        at: t("2026-01-01T00:07:00Z"),
        ok: true,
        trigger: "file change".into(),
        error: None,
    })
    .expect("reload");
    lite.daemon_seen(t("2026-01-01T00:08:00Z")).expect("seen");
    lite.daemon_started(t("2026-01-01T00:09:00Z"))
        .expect("started");
    lite.prune_history(t("2026-01-01T00:00:45Z"))
        .expect("prune");
    lite
}

#[test]
fn postgres_copy_from_sqlite_gives_the_same_answers() {
    let Some((_pg, store)) = store() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("lanekeeper.db");
    let lite = sqlite_history(&db);
    let mut calls = Vec::new();
    let report = store
        .copy_from_sqlite(&db, &mut |done, total| calls.push((done, total)))
        .expect("copy");
    let total = report.total();
    assert!(total > 10, "{report:?}");
    assert_eq!(calls.last(), Some(&(total, total)), "{calls:?}");
    assert_eq!(calls.first(), Some(&(0, total)));

    let epoch = Timestamp::UNIX_EPOCH;
    assert_eq!(
        store.lane_states().expect("pg"),
        lite.lane_states().expect("lite")
    );
    assert_eq!(
        store.episodes_since(epoch).expect("pg"),
        lite.episodes_since(epoch).expect("lite")
    );
    assert_eq!(
        store.runs_since(epoch).expect("pg"),
        lite.runs_since(epoch).expect("lite")
    );
    assert_eq!(
        store.pauses_since(None, epoch).expect("pg"),
        lite.pauses_since(None, epoch).expect("lite")
    );
    assert_eq!(
        store.last_hook("a").expect("pg"),
        lite.last_hook("a").expect("lite")
    );
    assert_eq!(
        store.last_reload().expect("pg").map(|r| r.trigger),
        lite.last_reload().expect("lite").map(|r| r.trigger)
    );
    for at in [
        "2026-01-01T00:00:40Z",
        "2026-01-01T00:01:30Z",
        "2026-01-01T00:03:30Z",
        "2026-01-01T01:00:00Z",
    ] {
        let (p, l) = (
            store.lane_states_at(t(at)).expect("pg"),
            lite.lane_states_at(t(at)).expect("lite"),
        );
        assert_eq!(p.states, l.states, "at {at}");
        assert_eq!(p.coverage, l.coverage, "at {at}");
    }
    // Ids go on after the copied ones.
    let max = store
        .runs_since(epoch)
        .expect("runs")
        .iter()
        .map(|r| r.id)
        .max()
        .expect("some");
    let next = store
        .begin_run(&start("d", "2026-01-02T00:00:00Z", true))
        .expect("begin");
    assert!(next > max, "{next} after {max}");
    // A second copy would mix two histories.
    let err = store
        .copy_from_sqlite(&db, &mut |_, _| {})
        .expect_err("refused");
    assert!(matches!(err, StoreError::NotEmpty { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("already holds") && text.contains("createdb"),
        "{text}"
    );
    // A SQLite database of another schema version is refused before anything is read.
    drop(lite);
    let set_version = |v: i64| {
        rusqlite::Connection::open(&db)
            .expect("open")
            .pragma_update(None, "user_version", v)
            .expect("user_version");
    };
    set_version(7);
    let text = store
        .copy_from_sqlite(&db, &mut |_, _| {})
        .expect_err("older")
        .to_string();
    assert!(
        text.contains("older") && text.contains("lanekeeper status"),
        "{text}"
    );
    set_version(99);
    assert!(matches!(
        store.copy_from_sqlite(&db, &mut |_, _| {}),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn postgres_store_calls_work_inside_a_tokio_runtime() {
    let Some(pg) = Postgres::start() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = PostgresStore::connect(&pg.url()).expect("connect inside a runtime");
        let id = store
            .begin_run(&start("a", "2026-01-01T00:00:00Z", true))
            .expect("begin");
        tokio::task::yield_now().await;
        store
            .finish_run(id, &end("2026-01-01T00:00:01Z", RunResult::Success, None))
            .expect("finish");
        assert_eq!(
            store.lane_states().expect("states")["a"].last_result,
            Some(RunResult::Success)
        );
        drop(store);
    });
}

/// Waits, on the database's clock, until the lease has expired (bounded).
fn wait_expired(store: &PostgresStore) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lease = store.leader().expect("leader").expect("a lease");
        if !lease.live() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lease never expired: {lease:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn postgres_lease_moves_after_expiry_and_fences_the_old_leader() {
    let Some((pg, a)) = store() else { return };
    let b = PostgresStore::connect(&pg.url()).expect("connect b");
    // Long enough to be in force through the first steps however slow the machine; renewed
    // with a short one below, when it is to expire.
    let ttl = Duration::from_secs(60);
    let led = a.lead("host-a", ttl).expect("lead");
    assert!(
        matches!(
            led,
            Leadership::Leading {
                token: 1,
                new: true,
                ..
            }
        ),
        "{led:?}"
    );
    // Renewed: the same token.
    assert_eq!(a.lead("host-a", ttl).expect("renew").token(), Some(1));
    match b.lead("host-b", ttl).expect("follow") {
        Leadership::Following(info) => {
            assert_eq!((info.host.as_str(), info.token), ("host-a", 1));
            assert!(info.expires_in().is_some_and(|d| d <= ttl), "{info:?}");
        }
        other => panic!("b should follow: {other:?}"),
    }
    a.fence(Some(1));
    let running = a
        .begin_run(&start("kept", "2026-01-01T00:00:00Z", true))
        .expect("the leader starts");

    assert_eq!(
        a.lead("host-a", Duration::from_secs(1))
            .expect("renew")
            .token(),
        Some(1)
    );
    wait_expired(&b);
    let took = b.lead("host-b", ttl).expect("take over");
    assert!(
        matches!(
            took,
            Leadership::Leading {
                token: 2,
                new: true,
                ..
            }
        ),
        "{took:?}"
    );
    let err = a
        .begin_run(&start("x", "2026-01-01T00:00:00Z", true))
        .expect_err("fenced");
    assert!(
        matches!(
            err,
            StoreError::Fenced {
                token: 1,
                current: Some(2)
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was written"), "{err}");
    for refused in [
        a.record_decisions(
            &[decision(
                "x",
                "2026-01-01T00:00:00Z",
                Outcome::Deferred,
                "r",
            )],
            Origin::Daemon,
        ),
        a.claim_hook("x", HookEvent::Defer, "k", t("2026-01-01T00:00:00Z"))
            .map(|_| ()),
        a.daemon_seen(t("2026-01-01T00:00:00Z")),
        a.prune_history(t("2026-01-01T00:00:00Z")).map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(StoreError::Fenced { .. })),
            "{refused:?}"
        );
    }
    let states = b.lane_states().expect("states");
    assert!(!states.contains_key("x"), "nothing was written: {states:?}");
    assert!(
        b.episodes_since(Timestamp::UNIX_EPOCH)
            .expect("episodes")
            .is_empty()
    );
    assert!(b.last_hook("x").expect("hooks").is_none());
    // The old leader's run still ends: its supervisor records it whoever leads.
    a.finish_run(
        running,
        &end("2026-01-01T00:01:00Z", RunResult::Success, None),
    )
    .expect("an end is never fenced");
    // The new leader writes; the old one now follows.
    b.fence(Some(2));
    b.begin_run(&start("y", "2026-01-01T00:00:00Z", true))
        .expect("the new leader starts");
    assert!(matches!(
        a.lead("host-a", ttl).expect("follow"),
        Leadership::Following(_)
    ));
    let leader = a.leader().expect("leader").expect("some");
    assert_eq!((leader.host.as_str(), leader.token), ("host-b", 2));
    // The gap nobody led is recorded, on the database's clock.
    let gaps = a.leader_gaps(Timestamp::UNIX_EPOCH).expect("gaps");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].0 <= gaps[0].1, "{gaps:?}");
    assert_eq!(gaps[0].1, leader.acquired_at);
    // A clean shutdown hands over at once, without waiting for the expiry.
    assert!(!a.resign("host-a").expect("not a's to give"));
    assert!(b.resign("host-b").expect("resign"));
    assert_eq!(a.lead("host-a", ttl).expect("lead").token(), Some(3));
    // No fence: no check.
    a.fence(None);
    a.begin_run(&start("z", "2026-01-01T00:00:00Z", true))
        .expect("unfenced");
}

#[test]
fn postgres_run_claims_are_held_until_released() {
    let Some((pg, a)) = store() else { return };
    let b = PostgresStore::connect(&pg.url()).expect("connect b");
    let at = t("2026-01-01T00:00:00Z");
    assert_eq!(
        a.claim_run("l", Some(1), "host-a", 10, at).expect("claim"),
        Claim::Claimed
    );
    match b.claim_run("l", Some(1), "host-b", 20, at).expect("claim") {
        Claim::Held(c) => assert_eq!((c.host.as_str(), c.pid), ("host-a", 10)),
        other => panic!("{other:?}"),
    }
    assert!(a.attach_run("l", "host-a", 10, 7).expect("attach"));
    assert_eq!(b.run_claims().expect("claims")[0].run_id, Some(7));
    assert!(!b.release_run("l", "host-b", 20).expect("not b's"));
    assert!(a.release_run("l", "host-a", 10).expect("release"));
    assert_eq!(
        b.claim_run("l", None, "host-b", 20, at).expect("claim"),
        Claim::Claimed
    );
}

#[test]
fn postgres_a_lost_connection_is_made_again() {
    let Some((pg, store)) = store() else { return };
    store
        .record_external("a", t("2026-01-01T00:00:00Z"), RunResult::Success)
        .expect("record");
    let mut admin = pg.client();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'lanekeeper' AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("terminate");
    assert_eq!(killed.len(), 1, "the store's connection");
    assert_eq!(
        store.lane_states().expect("reconnected")["a"].last_result,
        Some(RunResult::Success)
    );
    // Writes too, after another cut.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'lanekeeper'",
            &[],
        )
        .expect("terminate");
    store
        .record_external("a", t("2026-01-01T00:01:00Z"), RunResult::Failure)
        .expect("record after a cut");
    assert_eq!(store.recent_runs("a", 10).expect("runs").len(), 2);
}

#[test]
fn postgres_connection_problems_say_what_to_do() {
    let Some(pg) = Postgres::start() else { return };
    let err = PostgresStore::connect(&pg.url_of("nosuchdb")).expect_err("missing db");
    let text = err.to_string();
    assert!(
        text.contains("does not exist") && text.contains("createdb"),
        "{text}"
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "host={} user=postgres password=hunter2 dbname=postgres",
        empty.path().display()
    );
    let err = PostgresStore::connect(&url).expect_err("no server");
    let text = err.to_string();
    assert!(text.contains("pg_isready"), "{text}");
    assert!(!text.contains("hunter2"), "the password is hidden: {text}");
    assert!(matches!(err, StoreError::Postgres { .. }), "{err:?}");
}

#[test]
fn postgres_a_password_refused_or_missing_says_what_to_do() {
    let Some(pg) = Postgres::start() else { return };
    // Passwords for everyone but the superuser, whose trust the test keeps.
    std::fs::write(
        pg.data().join("pg_hba.conf"),
        "local all postgres trust\nlocal all all scram-sha-256\n",
    )
    .expect("pg_hba.conf");
    pg.sql("CREATE ROLE lk LOGIN PASSWORD 'right'; SELECT pg_reload_conf();");
    let url = |password: &str| {
        format!(
            "host={} user=lk {password} dbname=postgres",
            pg.data().parent().expect("dir").display()
        )
    };
    // The reload is asynchronous: wait until the server asks for passwords (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let wrong = loop {
        match PostgresStore::connect(&url("password=wrong")) {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => panic!("the server never asked for a password"),
        }
    };
    let text = wrong.to_string();
    assert!(
        text.contains("authentication failed") && text.contains("PGPASSWORD"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "the password is hidden: {text}");
    if std::env::var_os("PGPASSWORD").is_none() {
        let text = PostgresStore::connect(&url(""))
            .expect_err("no password")
            .to_string();
        assert!(text.contains("asks for a password"), "{text}");
    }
    pg.sql("GRANT CREATE ON SCHEMA public TO lk");
    let store = PostgresStore::connect(&url("password=right")).expect("the right password");
    assert!(store.url().contains("password=***"), "{}", store.url());
}

#[test]
fn postgres_replicas_racing_for_the_lease_get_one_leader_per_token() {
    let Some(pg) = Postgres::start() else { return };
    let stores: Arc<Vec<PostgresStore>> = Arc::new(
        (0..4)
            .map(|_| PostgresStore::connect(&pg.url()).expect("connect"))
            .collect(),
    );
    let race = |ttl: Duration| -> Vec<Leadership> {
        let barrier = Arc::new(Barrier::new(stores.len()));
        let threads: Vec<_> = (0..stores.len())
            .map(|i| {
                let (stores, barrier) = (Arc::clone(&stores), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    stores[i].lead(&format!("host-{i}"), ttl).expect("lead")
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    };
    let leaders =
        |round: &[Leadership]| -> Vec<i64> { round.iter().filter_map(Leadership::token).collect() };
    // The first lease ever, then a takeover after it expired: one winner each time.
    let first = race(Duration::from_secs(1));
    assert_eq!(leaders(&first), [1], "{first:?}");
    wait_expired(&stores[0]);
    let second = race(Duration::from_secs(60));
    assert_eq!(leaders(&second), [2], "{second:?}");
    let winner = stores[0].leader().expect("leader").expect("some");
    for l in &second {
        if let Leadership::Following(info) = l {
            assert_eq!((info.host.as_str(), info.token), (winner.host.as_str(), 2));
        }
    }
    assert_eq!(
        stores[0]
            .leader_gaps(Timestamp::UNIX_EPOCH)
            .expect("gaps")
            .len(),
        1
    );
}

#[test]
fn postgres_a_write_waits_for_another_only_until_the_lock_timeout() {
    let Some(pg) = Postgres::start() else { return };
    let url = format!("{} options='-c lock_timeout=300ms'", pg.url());
    let store = PostgresStore::connect(&url).expect("connect");
    // Another session holds lane `a`'s lock (the key is the store's own).
    let mut admin = pg.client();
    let mut tx = admin.transaction().expect("tx");
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&"lanekeeper lane a"],
    )
    .expect("lock");
    let began = Instant::now();
    let err = store
        .begin_run(&start("a", "2026-01-01T00:00:00Z", true))
        .expect_err("blocked");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.contains("lock timeout") && text.contains("pg_stat_activity"),
        "{text}"
    );
    // Other lanes are not held up, and the lane is free once the other session ends.
    store
        .begin_run(&start("b", "2026-01-01T00:00:00Z", true))
        .expect("another lane");
    tx.rollback().expect("rollback");
    store
        .begin_run(&start("a", "2026-01-01T00:00:00Z", true))
        .expect("free again");
}

#[test]
fn postgres_heartbeats_say_who_is_alive_and_hand_offs_are_fenced_and_readdressed() {
    use lanekeeper::state::HandOff;
    let Some((pg, a)) = store() else { return };
    let b = PostgresStore::connect(&pg.url()).expect("connect b");
    let ttl = Duration::from_secs(60);
    a.heartbeat("a").expect("a alive");
    b.heartbeat("b").expect("b alive");
    b.heartbeat("b").expect("again: an upsert");
    assert_eq!(a.alive_hosts(ttl).expect("alive"), ["a", "b"]);
    std::thread::sleep(Duration::from_millis(300));
    a.heartbeat("a").expect("a again");
    assert_eq!(
        a.alive_hosts(Duration::from_millis(200)).expect("alive"),
        ["a"],
        "b not seen within the TTL"
    );

    let token = a.lead("a", ttl).expect("lead").token();
    a.fence(token);
    let hand = |host: &str| HandOff {
        lane: "pinned".into(),
        host: host.into(),
        token: None,
        source: "periodic-sweep".into(),
        decided_at: t("2026-01-01T00:00:00Z"),
        age: Duration::ZERO,
    };
    assert!(a.hand_off(&hand("b")).expect("hand to b"));
    assert!(!a.hand_off(&hand("b")).expect("again"), "one per lane");
    let waiting = b.hand_offs("b").expect("b's");
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0].token, token,
        "the leader's token, from its fence"
    );
    assert!(waiting[0].age < ttl);
    assert!(a.hand_offs("a").expect("a's").is_empty());
    // Readdressed when another host is the first alive.
    assert!(a.hand_off(&hand("c")).expect("to c"));
    assert!(b.hand_offs("b").expect("b's").is_empty());
    b.drop_hand_off("pinned", "c").expect("taken");
    assert!(b.hand_offs("c").expect("c's").is_empty());
    // A replica that does not hold the lease hands nothing.
    b.fence(Some(99));
    assert!(matches!(
        b.hand_off(&hand("b")),
        Err(StoreError::Fenced { .. })
    ));
    assert!(b.hand_offs("b").expect("b's").is_empty());
}
