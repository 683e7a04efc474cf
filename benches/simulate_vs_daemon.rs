//! The CPU a simulation costs against the CPU the daemon spends on the same period (issue 11),
//! both measured in one run, the same way: the child CPU time (`getrusage(RUSAGE_CHILDREN)`,
//! user + system) of the release binary's processes.
//!
//! Run with `cargo bench --bench simulate_vs_daemon [-- HOURS]` (default 6); results are recorded
//! in `docs/PERFORMANCE.md`.
//!
//! The home is the shipped one (six lanes, the four Rhai plugins) with each command replaced by
//! `true`, so what is measured is lanekeeper's own work (deciding, recording, the run's
//! supervisor), not the jobs'. Nothing listens on the LLM provider's port, so `sandman` is
//! deferred `provider-unreachable` whenever it is due and rechecked every 30 s; the facts say
//! the same (`down: true`). The period starts three days ago at 00:00 UTC, in the past, as a
//! rehearsal must.
//!
//! - **daemon**: `run --once --at T` pass by pass, each at the wake the pass before logged (or as
//!   soon as the runs it started ended), as the agreement test in tests/it/simulate.rs drives it.
//!   Each pass is a process of its own, so each also pays a process start and a load of the
//!   rules and plugins, which a long-running daemon pays once.
//! - **simulate**: `simulate --from F --to T --facts … --durations '*=0' --json` over the same
//!   period, on a copy of the home without history; the median of five.
//! - **replay** and **diff**: `simulate --replay` and `diff --rules` (an unchanged copy) over the
//!   history the daemon passes recorded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use lanekeeper::clock::{Clock, SystemClock};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lanekeeper");
const PROVIDER: &str = "127.0.0.1:11434";

/// CPU time (user + system) of the waited-for children so far.
fn children_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the pointer it is given, which points to
    // zeroed memory of that type owned by this frame.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: zero-initialised, and filled in by getrusage, which returned 0.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU and wall time of `f`, which must wait for the processes it starts.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (cpu, wall) = (children_cpu(), Instant::now());
    let out = f();
    (out, children_cpu() - cpu, wall.elapsed())
}

/// A copy of the shipped home (rules, plugins) with every command `true`.
fn home() -> tempfile::TempDir {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp home");
    for sub in ["rules", "plugins"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        for e in std::fs::read_dir(repo.join(sub))
            .expect("read dir")
            .flatten()
        {
            let path = e.path();
            if !path.is_file() {
                continue;
            }
            let mut text = std::fs::read_to_string(&path).expect("read");
            if sub == "rules" {
                text = text
                    .lines()
                    .map(|l| {
                        if l.trim_start().starts_with("argv:") {
                            "  argv: [\"true\"]"
                        } else {
                            l
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                text.push('\n');
            }
            std::fs::write(dir.path().join(sub).join(e.file_name()), text).expect("write");
        }
    }
    dir
}

fn lanekeeper(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--home").arg(home).args(args);
    cmd.env_remove("LANEKEEPER_LOG");
    cmd
}

/// Runs to the end; (exit code, stdout). Stderr is kept only for a failure's message.
fn output(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run lanekeeper");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The daemon's next wake as it logged it (debug level, JSON log).
fn logged_wake(stderr: &str) -> Option<Timestamp> {
    stderr.lines().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        if v["fields"]["message"].as_str()?.starts_with("Next pass") {
            v["fields"]["at"].as_str()?.parse().ok()
        } else {
            None
        }
    })
}

/// `run --once --at T` pass by pass from `from` to `to`: (passes, triggers).
fn daemon_passes(home: &Path, from: Timestamp, to: Timestamp) -> (u64, u64) {
    let (mut passes, mut triggers) = (0u64, 0u64);
    let mut at = from;
    while at < to {
        let started = Instant::now();
        let mut cmd = lanekeeper(
            home,
            &[
                "run",
                "--once",
                "--at",
                &at.to_string(),
                "--json",
                "--log-format",
                "json",
            ],
        );
        cmd.env("LANEKEEPER_LOG", "debug");
        let (code, stdout, stderr) = output(cmd);
        assert_eq!(code, Some(0), "run --once --at {at}: {stderr}");
        let took = SignedDuration::try_from(started.elapsed()).expect("elapsed");
        let started_runs = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|d| d["outcome"] == "trigger")
            .count() as u64;
        passes += 1;
        triggers += started_runs;
        let wake = logged_wake(&stderr).unwrap_or_else(|| panic!("no next wake: {stderr}"));
        let next = if started_runs > 0 {
            wake.min(at + took)
        } else {
            wake
        };
        at = next.max(at + SignedDuration::from_millis(1));
    }
    (passes, triggers)
}

/// (passes, triggers) of a `simulate --json` report.
fn counted(report: &str) -> (u64, u64) {
    let v: Value = serde_json::from_str(report).expect("simulate --json");
    let triggers = v["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|l| l["triggers"].as_array().map_or(0, Vec::len) as u64)
        .sum();
    (v["passes"].as_u64().expect("passes"), triggers)
}

fn row(what: &str, passes: u64, triggers: u64, cpu: Duration, wall: Duration) {
    println!(
        "{what:<10} {passes:>6} passes {triggers:>5} triggers   CPU {:>8.3} s   wall {:>8.3} s   CPU/pass {:>9.3} ms",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / passes.max(1) as f64
    );
}

fn main() {
    let hours: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(6);
    if std::net::TcpStream::connect_timeout(
        &PROVIDER.parse().expect("address"),
        Duration::from_millis(200),
    )
    .is_ok()
    {
        panic!("something listens on {PROVIDER}; the facts say the provider is down");
    }
    let from = (SystemClock.now() - SignedDuration::from_hours(72))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .at(0, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("time")
        .timestamp();
    let to = from + SignedDuration::from_hours(hours);
    let (f, t) = (from.to_string(), to.to_string());
    println!("{hours} h of the shipped home (commands `true`), {f} to {t}, binary {BIN}");

    let daemon_home = home();
    let ((passes, triggers), daemon_cpu, daemon_wall) =
        measure(|| daemon_passes(daemon_home.path(), from, to));
    row("daemon", passes, triggers, daemon_cpu, daemon_wall);

    let sim_home = home();
    let facts = sim_home.path().join("facts.yaml");
    std::fs::write(
        &facts,
        format!("http:\n  \"http://{PROVIDER}/api/tags\":\n    - {{ down: true }}\n"),
    )
    .expect("facts");
    let facts = facts.to_str().expect("utf8").to_string();
    let sim_args = [
        "simulate",
        "--from",
        &f,
        "--to",
        &t,
        "--facts",
        &facts,
        "--durations",
        "*=0",
        "--json",
    ];
    // A simulation of a few hours is a fraction of a second: the median of five.
    let mut samples: Vec<(Duration, Duration, String)> = (0..5)
        .map(|_| {
            let ((code, report, err), cpu, wall) =
                measure(|| output(lanekeeper(sim_home.path(), &sim_args)));
            assert_eq!(code, Some(0), "simulate: {err}");
            (cpu, wall, report)
        })
        .collect();
    samples.sort_by_key(|s| s.0);
    let (sim_cpu, sim_wall, report) = samples.swap_remove(2);
    let (sim_passes, sim_triggers) = counted(&report);
    row("simulate", sim_passes, sim_triggers, sim_cpu, sim_wall);

    let replay_args = ["simulate", "--replay", "--from", &f, "--to", &t, "--json"];
    let ((code, report, err), replay_cpu, replay_wall) =
        measure(|| output(lanekeeper(daemon_home.path(), &replay_args)));
    assert_eq!(code, Some(0), "simulate --replay: {err}");
    let (replay_passes, replay_triggers) = counted(&report);
    row(
        "replay",
        replay_passes,
        replay_triggers,
        replay_cpu,
        replay_wall,
    );

    let candidate: PathBuf = daemon_home.path().join("candidate");
    std::fs::create_dir_all(&candidate).expect("mkdir");
    for e in std::fs::read_dir(daemon_home.path().join("rules"))
        .expect("rules")
        .flatten()
    {
        std::fs::copy(e.path(), candidate.join(e.file_name())).expect("copy");
    }
    let candidate = candidate.to_str().expect("utf8").to_string();
    let diff_args = [
        "diff", "--rules", &candidate, "--from", &f, "--to", &t, "--json",
    ];
    let ((code, _, err), diff_cpu, diff_wall) =
        measure(|| output(lanekeeper(daemon_home.path(), &diff_args)));
    assert_eq!(code, Some(0), "diff of an unchanged copy: {err}");
    // Two replays of the period: the current rules and the (unchanged) candidate.
    row("diff", replay_passes * 2, 0, diff_cpu, diff_wall);

    println!(
        "daemon CPU / simulate CPU = {:.0} (passes: daemon {passes}, simulate {sim_passes}; triggers {triggers} and {sim_triggers})",
        daemon_cpu.as_secs_f64() / sim_cpu.as_secs_f64().max(1e-9)
    );
}
