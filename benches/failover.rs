//! Shared-store figures (issue 13), each against its reference in the same run:
//!
//! - failover: three replicas of the release binary on a throwaway PostgreSQL; the leader is
//!   killed with SIGKILL, and the time from the kill to another replica's live lease (read from
//!   `leader_lease`) is measured, as a ratio to `lease_ttl` (2 s, then the default 10 s);
//! - `run --once` on a 100-lane home, PostgreSQL against SQLite: the first (a pass that
//!   dispatches all 100 lanes and waits for them) and the second (a pass with nothing due).
//!
//! Run with `cargo bench --bench failover` (PostgreSQL's server binaries are found as the tests
//! find them; `FAILOVER_KILLS` changes the number of kills with the 2 s TTL, 20 by default, a quarter of
//! that with 10 s). It prints a
//! table; docs/PERFORMANCE.md records it.

// The bench measures the wall clock and drives processes.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/it/pg_harness.rs"]
#[allow(dead_code)]
mod pg_harness;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pg_harness::Postgres;

const BIN: &str = env!("CARGO_BIN_EXE_lanekeeper");
const HOSTS: [&str; 3] = ["a", "b", "c"];

fn home(state: &str, extra: &str, lanes: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules");
    std::fs::write(
        dir.path().join("lanekeeper.yaml"),
        format!("state: \"{state}\"\n{extra}"),
    )
    .expect("config");
    for i in 0..lanes {
        std::fs::write(
            dir.path().join(format!("rules/l{i}.yaml")),
            "schedule: { every: 1h }\ncommand: { argv: [\"true\"] }\n",
        )
        .expect("lane");
    }
    dir
}

fn replica(home: &Path, host: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join(format!("replica-{host}.log")))
        .expect("log");
    Command::new(BIN)
        .arg("--home")
        .arg(home)
        .arg("run")
        .env("LANEKEEPER_HOST", host)
        .env_remove("LANEKEEPER_HOME")
        .env_remove("LANEKEEPER_STATE")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn replica")
}

/// The live lease's holder and token, if any.
fn live(client: &mut postgres::Client) -> Option<(String, i64)> {
    client
        .query_opt(
            "SELECT holder, token FROM leader_lease WHERE expires_at > now()",
            &[],
        )
        .ok()
        .flatten()
        .map(|r| (r.get(0), r.get(1)))
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Kills the leader `kills` times with this TTL; the times from kill to a new live lease.
fn failover(pg: &Postgres, ttl_s: u64, kills: usize) -> Vec<Duration> {
    let ttl = Duration::from_secs(ttl_s);
    let db = format!("failover_{ttl_s}");
    let mut admin = pg.client();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .expect("database");
    let url = pg.url_of(&db);
    let dir = home(&url, &format!("lease_ttl: {ttl_s}s\n"), 1);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut replicas: Vec<Child> = HOSTS.iter().map(|h| replica(dir.path(), h)).collect();
    let mut took = Vec::with_capacity(kills);
    for _ in 0..kills {
        let (holder, token) = wait_for("a leader", ttl * 10, || live(&mut client));
        // Let the followers settle into their polling (a restarted one asks at once).
        std::thread::sleep(ttl / 2);
        let i = HOSTS
            .iter()
            .position(|h| *h == holder)
            .expect("a replica leads");
        let killed = Instant::now();
        let _ = replicas[i].kill();
        let _ = replicas[i].wait();
        wait_for("a new leader", ttl * 10, || {
            live(&mut client).filter(|(h, t)| *h != holder && *t > token)
        });
        took.push(killed.elapsed());
        replicas[i] = replica(dir.path(), HOSTS[i]);
    }
    for mut r in replicas {
        let _ = r.kill();
        let _ = r.wait();
    }
    took
}

fn report_failover(ttl_s: u64, mut took: Vec<Duration>) {
    took.sort();
    let ttl = ttl_s as f64;
    let median = took[took.len() / 2];
    let (best, worst) = (took[0], took[took.len() - 1]);
    println!(
        "failover, lease_ttl {ttl_s}s, {} kills: median {} ({:.2}× TTL), best {} ({:.2}×), worst {} ({:.2}× TTL)",
        took.len(),
        secs(median),
        median.as_secs_f64() / ttl,
        secs(best),
        best.as_secs_f64() / ttl,
        secs(worst),
        worst.as_secs_f64() / ttl,
    );
}

fn once(dir: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(BIN)
        .arg("--home")
        .arg(dir)
        .args(["run", "--once"])
        .env_remove("LANEKEEPER_HOME")
        .env_remove("LANEKEEPER_STATE")
        .env("LANEKEEPER_HOST", "bench")
        .output()
        .expect("run --once");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "run --once: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `run --once` on a fresh 100-lane home, then again: (first, second) medians over `rounds`.
fn once_rounds(pg: &Postgres, postgres: bool, rounds: usize) -> (Duration, Duration) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let state = if postgres {
            let db = format!("once_{r}");
            pg.client()
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .expect("database");
            pg.url_of(&db)
        } else {
            "state/lanekeeper.db".to_string()
        };
        let dir = home(&state, "", 100);
        first.push(once(dir.path()));
        second.push(once(dir.path()));
    }
    (median(first), median(second))
}

fn main() {
    let Some(pg) = Postgres::start() else {
        eprintln!("no PostgreSQL server binaries: nothing measured");
        return;
    };
    let kills: usize = std::env::var("FAILOVER_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);

    const ROUNDS: usize = 10;
    let (sq_first, sq_second) = once_rounds(&pg, false, ROUNDS);
    let (pg_first, pg_second) = once_rounds(&pg, true, ROUNDS);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "run --once, 100 lanes, all dispatched (median of {ROUNDS}): SQLite {}, PostgreSQL {} ({:.2}×)",
        secs(sq_first),
        secs(pg_first),
        ratio(pg_first, sq_first)
    );
    println!(
        "run --once, 100 lanes, none due (median of {ROUNDS}):       SQLite {}, PostgreSQL {} ({:.2}×)",
        secs(sq_second),
        secs(pg_second),
        ratio(pg_second, sq_second)
    );

    // The default TTL's kills take about 15 s each: fewer of them.
    for (ttl, kills) in [(2, kills), (10, kills.div_ceil(4))] {
        let took = failover(&pg, ttl, kills);
        report_failover(ttl, took);
    }
}
