//! Daemon-side figures (issue 3), each with a baseline measured in the same run:
//!
//! - dispatch latency: from `dispatch::start` (the decision is made) to the command's exec with
//!   its run recorded by its own supervisor, p50/p99, against a bare `fork+exec` of the same
//!   program;
//! - one evaluation pass over 10,000 lanes with built-in gates only (schedule, groups), against
//!   the due rule alone over the same lanes.
//!
//! Run with `cargo bench --bench daemon`. It prints a table; docs/PERFORMANCE.md records it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lanekeeper::clock::{Clock, SystemClock};
use lanekeeper::compile::{self, Lane};
use lanekeeper::config::settings::RunLogs;
use lanekeeper::dispatch::{self, Start};
use lanekeeper::engine::{self, schedule};
use lanekeeper::home::Home;
use lanekeeper::observe::{Canned, Observer};
use lanekeeper::state::{LaneState, LaneStates, SqliteStore};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(&v, 0.50), percentile(&v, 0.99));
    println!(
        "{name:<44} n={:<5} p50={:>10.3?} p99={:>10.3?} max={:>10.3?}",
        v.len(),
        p50,
        p99,
        v[v.len() - 1]
    );
    (p50, p99)
}

fn dispatch_latency() {
    const RUNS: usize = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules");
    std::fs::write(
        dir.path().join("rules/job.yaml"),
        "schedule:\n  every: 1h\ncommand:\n  argv: [\"true\"]\n",
    )
    .expect("lane");
    let home = Home::new(dir.path());
    let config = compile::load(&home).expect("valid config");
    let lane = config.lane("job").expect("lane").clone();
    let store = SqliteStore::open(&home.database()).expect("store");
    let clock = SystemClock;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut settings = (*config.settings).clone();
    settings.run_logs = RunLogs {
        keep: 5,
        ..RunLogs::default()
    };

    // Baseline: fork+exec of the same program, nothing else.
    let mut bare = Vec::with_capacity(RUNS);
    runtime.block_on(async {
        for _ in 0..RUNS {
            let t = Instant::now();
            let mut child = tokio::process::Command::new("true").spawn().expect("spawn");
            bare.push(t.elapsed());
            child.wait().await.expect("wait");
        }
    });

    // SAFETY: set before any thread of this bench starts.
    unsafe {
        std::env::set_var(
            "LANEKEEPER_SUPERVISOR_BIN",
            env!("CARGO_BIN_EXE_lanekeeper"),
        )
    };
    let location = lanekeeper::state::Location::File(home.database());
    let spec = dispatch::RunSpec::new(&lane, &settings, "bench", &clock, &location);
    let mut recorded = Vec::with_capacity(RUNS);
    runtime.block_on(async {
        for _ in 0..RUNS {
            let t = Instant::now();
            let started = dispatch::start(&home, &spec, dispatch::SupervisorLog::Inherit)
                .await
                .expect("start");
            recorded.push(t.elapsed());
            let Start::Running(run) = started else {
                panic!("`true` failed to start")
            };
            run.wait(&store).await.expect("wait");
        }
    });
    let (b50, b99) = summary("baseline: bare fork+exec of `true`", bare);
    let (r50, r99) = summary("dispatch: decision -> exec + run recorded", recorded);
    println!(
        "  ratio to baseline: recorded p50 {:.1}x p99 {:.1}x (the run's own supervisor starts, locks, records, then lets the command exec)",
        r50.as_secs_f64() / b50.as_secs_f64(),
        r99.as_secs_f64() / b99.as_secs_f64()
    );
    let _ = clock.now();
}

fn pass_10k() {
    const LANES: usize = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules");
    for i in 0..LANES {
        let group = match i % 4 {
            0 => "group: heavy\n",
            1 => "group: light\n",
            _ => "",
        };
        let every = [10, 30, 60, 1440][i % 4];
        std::fs::write(
            dir.path().join(format!("rules/lane-{i:05}.yaml")),
            format!(
                "schedule:\n  every: {every}m\n{group}priority: {}\ncommand:\n  argv: [\"true\"]\n",
                i % 7
            ),
        )
        .expect("lane");
    }
    let load = Instant::now();
    let home = Home::new(dir.path());
    let config = compile::load(&home).expect("valid config");
    println!(
        "(setup: loaded {} lane files in {:.2?})",
        config.lanes.len(),
        load.elapsed()
    );
    let lanes: Vec<&Lane> = config.lanes.iter().collect();
    let now: jiff::Timestamp = "2026-05-10T01:00:00Z".parse().expect("time");
    // Half the lanes ran 20 minutes ago (some due, some not); the rest never ran (all due).
    let mut states = LaneStates::new();
    for (i, lane) in config.lanes.iter().enumerate() {
        let mut s = LaneState::default();
        if i % 2 == 0 {
            s.last_run_at = Some(now - jiff::SignedDuration::from_mins(20));
        }
        states.insert(lane.name.clone(), s);
    }
    let states = Arc::new(states);
    let observer: Arc<dyn Observer> = Arc::new(Canned::up());

    let mut baseline = Vec::new();
    let mut full = Vec::new();
    let mut sequential = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let due = lanes
            .iter()
            .filter(|l| {
                let last = states.get(&l.name).and_then(|s| s.last_run_at);
                matches!(
                    schedule::due(&schedule::Timing::of(l), last, None, now),
                    schedule::Due::Due { .. }
                )
            })
            .count();
        baseline.push(t.elapsed());
        std::hint::black_box(due);

        let t = Instant::now();
        let decisions = engine::pass(
            &lanes,
            Arc::clone(&states),
            now,
            Arc::clone(&observer),
            &config.settings,
            None,
        );
        full.push(t.elapsed());
        std::hint::black_box(decisions.len());

        let t = Instant::now();
        let decisions = engine::pass_sequential(
            &lanes,
            Arc::clone(&states),
            now,
            Arc::clone(&observer),
            &config.settings,
            None,
        );
        sequential.push(t.elapsed());
        std::hint::black_box(decisions.len());
    }
    let (b50, _) = summary("baseline: due rule alone, 10k lanes", baseline);
    let (f50, f99) = summary("pass: decide + groups, 10k lanes", full);
    let (s50, _) = summary("pass lane by lane (pass_sequential), 10k lanes", sequential);
    println!(
        "  ratio to baseline: p50 {:.1}x (target <= 50 ms; p99 {:.1?}); to lane by lane: {:.2}x",
        f50.as_secs_f64() / b50.as_secs_f64(),
        f99,
        f50.as_secs_f64() / s50.as_secs_f64()
    );
}

fn main() {
    println!(
        "lanekeeper daemon benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    dispatch_latency();
    pass_10k();
}
