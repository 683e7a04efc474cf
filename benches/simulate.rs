//! `lanekeeper simulate` over the shipped home (issue 11): 30 days and a year, through
//! `simulate::simulate` (the loop `lanekeeper simulate` runs: `engine::pass_all` with the
//! shipped Rhai plugins, woken by the daemon's wake rule and at each run's end).
//!
//! Run with `cargo bench --bench simulate`; results are recorded in `docs/PERFORMANCE.md`.
//! Targets: 30 days in at most 5 s, a year in at most 60 s.
//!
//! Facts: the LLM provider answers 200, except down 02:00-03:30 (Europe/Berlin) on the first
//! night of every week; backup fails on the 3rd day of every month. Run lengths: backup 3m,
//! sandman 40m, graph-maintenance 20m, the rest 1m (as `benches/history.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use lanekeeper::compile::{self, Config};
use lanekeeper::home::Home;
use lanekeeper::model::lane_state::LaneStates;
use lanekeeper::simulate::{self, Facts, Plan, RunLength};

fn main() {
    divan::main();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

const FROM: &str = "2026-12-01T00:00:00+01:00";

/// The shipped rules and plugins in a temporary home, and facts for `days` days.
fn setup(days: i64) -> (tempfile::TempDir, Config, Facts, Plan) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp home");
    copy_dir(&repo.join("rules"), &dir.path().join("rules"));
    copy_dir(&repo.join("plugins"), &dir.path().join("plugins"));
    let config = compile::load(&Home::new(dir.path().to_path_buf())).expect("shipped home");
    let from: Timestamp = FROM.parse().expect("time");
    let to = from + SignedDuration::from_hours(24 * days);
    let mut yaml = String::from(
        "timezone: Europe/Berlin\nhttp:\n  \"http://127.0.0.1:11434/api/tags\":\n    - { status: 200 }\n",
    );
    let start = from.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").expect("zone"));
    for week in 0..(days + 6) / 7 {
        let day = start.date() + jiff::Span::new().days(week * 7);
        yaml.push_str(&format!(
            "    - {{ from: \"{day}T02:00\", to: \"{day}T03:30\", down: true }}\n"
        ));
    }
    yaml.push_str("runs:\n  backup:\n");
    for month in 0..(days + 29) / 30 {
        let day = (start.date() + jiff::Span::new().months(month))
            .with()
            .day(3)
            .build()
            .expect("date");
        yaml.push_str(&format!("    - {{ on: {day}, outcome: failure }}\n"));
    }
    let facts = Facts::parse(
        Path::new("bench-facts.yaml"),
        &yaml,
        &jiff::tz::TimeZone::UTC,
    )
    .expect("facts");
    let minutes = |lane: &str| match lane {
        "sandman" => 40,
        "backup" => 3,
        "graph-maintenance" => 20,
        _ => 1,
    };
    let run_lengths: BTreeMap<String, RunLength> = config
        .lanes
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                RunLength {
                    length: Duration::from_secs(60 * minutes(&l.name)),
                    basis: "given".into(),
                },
            )
        })
        .collect();
    let plan = Plan {
        from,
        to,
        step: None,
        run_lengths,
    };
    (dir, config, facts, plan)
}

fn run(days: i64, bencher: divan::Bencher<'_, '_>) {
    let (_dir, config, facts, plan) = setup(days);
    let facts = Arc::new(facts);
    let mut reported = false;
    bencher.bench_local(|| {
        let report = simulate::simulate(
            &config,
            LaneStates::new(),
            &plan,
            Arc::clone(&facts),
            &mut |_| {},
        )
        .expect("simulation");
        if !reported {
            reported = true;
            let triggers: usize = report.lanes.iter().map(|l| l.triggers.len()).sum();
            eprintln!("{days} days: {} passes, {triggers} triggers", report.passes);
        }
        report
    });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn simulate_30_days(bencher: divan::Bencher<'_, '_>) {
    run(30, bencher);
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn simulate_365_days(bencher: divan::Bencher<'_, '_>) {
    run(365, bencher);
}
