//! A week of decision history (issue 5): the six shipped lanes evaluated every 3 s for 7 days
//! through `engine::pass` with a simulated clock (~1.2 M evaluations), recorded in the real
//! store, with simulated runs. Reports the store's size and how fast `explain --at` answers.
//!
//! Run with `cargo bench --bench history`. Baselines in the same run: the bytes the same
//! decisions would take stored one row each, and `lanekeeper validate` (the process start and
//! configuration load every command pays).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use lanekeeper::compile::{self, Lane};
use lanekeeper::engine::{self, Decision, Outcome};
use lanekeeper::home::Home;
use lanekeeper::observe::{Canned, Observer};
use lanekeeper::state::{RunEnd, RunResult, RunStart, RunningRun, SqliteStore, Store};

/// The LLM provider is up except for 3 hours every night: `Canned::up` and `Canned::down`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn run_minutes(lane: &str) -> i64 {
    match lane {
        "sandman" => 40,
        "backup" => 3,
        "graph-maintenance" => 20,
        _ => 1,
    }
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo.join("rules"), &dir.path().join("rules"));
    copy_dir(&repo.join("plugins"), &dir.path().join("plugins"));
    let home = Home::new(dir.path());
    let config = compile::load(&home).expect("shipped rules load");
    let lanes: Vec<&Lane> = config.lanes.iter().collect();
    let store = SqliteStore::open(&home.database()).expect("store");
    let up: Arc<dyn Observer> = Arc::new(Canned::up());
    let down: Arc<dyn Observer> = Arc::new(Canned::down());

    let start: Timestamp = "2026-05-04T00:00:00Z".parse().expect("time");
    let step = SignedDuration::from_secs(3);
    let passes = 7 * 24 * 3600 / 3;
    let mut running: BTreeMap<String, (i64, Timestamp)> = BTreeMap::new();
    let mut batch: Vec<Decision> = Vec::new();
    let (mut evaluations, mut naive_bytes, mut runs) = (0u64, 0u64, 0u64);
    let sim = Instant::now();
    let mut now = start;
    for _ in 0..passes {
        // Finish simulated runs whose time is up (backup fails one night in five).
        let ended: Vec<String> = running
            .iter()
            .filter(|(_, (_, end))| *end <= now)
            .map(|(l, _)| l.clone())
            .collect();
        for lane in ended {
            if let Some((id, end)) = running.remove(&lane) {
                let fail = lane == "backup" && end.as_second() / 86_400 % 5 == 3;
                let result = if fail {
                    RunResult::Failure
                } else {
                    RunResult::Success
                };
                store
                    .finish_run(
                        id,
                        &RunEnd {
                            at: end,
                            result,
                            exit: None,
                        },
                    )
                    .expect("finish");
            }
        }
        let mut states = store.lane_states().expect("states");
        for (lane, (id, _)) in &running {
            let s = states.entry(lane.clone()).or_default();
            s.running = Some(RunningRun {
                run_id: *id,
                pid: 1,
                pid_start: 0,
                started_at: now,
                supervisor: None,
            });
        }
        for lane in &config.lanes {
            states.entry(lane.name.clone()).or_default();
        }
        let hour = now.as_second() / 3600 % 24;
        let observer = if (1..4).contains(&hour) {
            Arc::clone(&down)
        } else {
            Arc::clone(&up)
        };
        let decisions = engine::pass(
            &lanes,
            Arc::new(states),
            now,
            observer,
            &config.settings,
            None,
        );
        for d in &decisions {
            evaluations += 1;
            naive_bytes += serde_json::to_string(d).map_or(0, |s| s.len() as u64) + 48;
            if d.outcome == Outcome::Trigger {
                let run = RunStart {
                    lane: &d.lane,
                    source: "sim",
                    at: now,
                    process: None,
                    supervisor: None,
                    log_path: None,
                    honour_pause: true,
                };
                let id = store.begin_run(&run).expect("begin");
                running.insert(
                    d.lane.clone(),
                    (id, now + SignedDuration::from_mins(run_minutes(&d.lane))),
                );
                runs += 1;
            }
        }
        batch.extend(decisions);
        // The daemon records once per pass; batching 100 passes per transaction only spares
        // the benchmark 200,000 fsyncs. The coalescing is the same per decision.
        if batch.len() >= 600 {
            store
                .record_decisions(&batch, engine::Origin::Daemon)
                .expect("record");
            batch.clear();
        }
        now += step;
    }
    store
        .record_decisions(&batch, engine::Origin::Daemon)
        .expect("record");
    let sim_time = sim.elapsed();
    drop(store);

    let db = home.database();
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let store = SqliteStore::open(&db).expect("store");
    let episodes = store.episodes_since(start).expect("episodes").len();

    // explain --at, library level: any moment of the week, any lane.
    let mut lib = Vec::new();
    for i in 0..2000u64 {
        let lane = &config.lanes[(i % 6) as usize].name;
        let at = start + SignedDuration::from_secs(((i * 7919 * 301) % (7 * 86_400)) as i64);
        let t = Instant::now();
        let ep = store
            .episode_at(lane, at)
            .expect("query")
            .expect("an episode");
        std::hint::black_box(ep.at(at));
        lib.push(t.elapsed());
    }
    lib.sort();

    // explain --at through the binary, against `validate` (process start + config load).
    let bin = env!("CARGO_BIN_EXE_lanekeeper");
    let time_cmd = |args: &[&str]| -> Duration {
        let t = Instant::now();
        let out = Command::new(bin)
            .arg("--home")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let mut cli = Vec::new();
    let mut base = Vec::new();
    for i in 0..40u64 {
        let lane = &config.lanes[(i % 6) as usize].name;
        let at =
            (start + SignedDuration::from_secs(((i * 104_729) % (7 * 86_400)) as i64)).to_string();
        base.push(time_cmd(&["validate"]));
        cli.push(time_cmd(&["explain", lane, "--at", &at, "--json"]));
    }
    cli.sort();
    base.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];

    println!(
        "simulated week: {passes} passes x {} lanes = {evaluations} evaluations, {runs} runs, in {sim_time:.1?}",
        lanes.len()
    );
    println!(
        "store: {:.2} MB on disk ({episodes} episodes) vs {:.1} MB for one row per decision: {:.0}x smaller (target <= 10 MB)",
        size as f64 / 1e6,
        naive_bytes as f64 / 1e6,
        naive_bytes as f64 / size.max(1) as f64
    );
    println!(
        "episode_at (library): p50 {:.1?} p99 {:.1?} max {:.1?}",
        p(&lib, 0.5),
        p(&lib, 0.99),
        lib[lib.len() - 1]
    );
    println!(
        "explain --at (binary): p50 {:.1?} p99 {:.1?}; baseline validate p50 {:.1?}: ratio {:.2}x (target <= 50 ms)",
        p(&cli, 0.5),
        p(&cli, 0.99),
        p(&base, 0.5),
        p(&cli, 0.5).as_secs_f64() / p(&base, 0.5).as_secs_f64()
    );
}
