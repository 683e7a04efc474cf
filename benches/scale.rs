//! 100,000 lanes on one machine (issue 13).
//!
//! Run with `cargo bench --bench scale`; results are recorded in `docs/PERFORMANCE.md`.
//! The home is `benches/support/many_lanes.rs`: 100,000 lane files, each with the four
//! standard Rhai gates, varied schedules, windows and groups. It is written once per run into
//! a temporary directory (not timed).
//!
//! Rows, each against a baseline in the same run:
//! - `pass_100k/sequential` (`engine::pass_sequential`, lane by lane on one thread: the
//!   baseline) and `pass_100k/concurrent` (`engine::pass`, what the daemon runs): one pass over
//!   the loaded lanes, probes answered from the pass cache by a stub observer (eight URLs, each
//!   asked once per pass). The two are checked to decide the same before timing.
//! - `load_100k/read_files` (reading every lane file, nothing else: the baseline) and
//!   `load_100k/compile_load` (`compile::load`, what every command and the daemon start with).
//! - `daemon_first_pass/shipped` (the six shipped lanes: the baseline) and
//!   `daemon_first_pass/100k` (the 100,000 lanes, probing a loopback server that answers
//!   503, with each block leader's success recorded 10 hours earlier): the release binary's
//!   `lanekeeper run` from its start to the end of its first pass (loaded, decided, recorded,
//!   dispatched: its debug line "Next pass"), then its peak (`VmHWM`) and current (`VmRSS`)
//!   resident memory from `/proc/PID/status`, printed after the table.

#[path = "support/many_lanes.rs"]
mod many_lanes;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lanekeeper::compile::{self, Config, Lane};
use lanekeeper::config::settings::MetricSource;
use lanekeeper::engine;
use lanekeeper::home::Home;
use lanekeeper::observe::{HttpResult, Observer};
use lanekeeper::state::LaneStates;

/// Lanes in the home (`LANEKEEPER_SCALE_LANES` to try another size).
fn lanes() -> usize {
    std::env::var("LANEKEEPER_SCALE_LANES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

fn main() {
    divan::main();
    for line in lock(&DAEMON_RSS).iter() {
        println!("{line}");
    }
}

static DAEMON_RSS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Scale {
    _dir: tempfile::TempDir,
    home: Home,
    config: Config,
    states: Arc<LaneStates>,
}

fn scale() -> &'static Scale {
    static SCALE: OnceLock<Scale> = OnceLock::new();
    SCALE.get_or_init(|| {
        let n = lanes();
        let dir = tempfile::tempdir().expect("tempdir");
        let t = std::time::Instant::now();
        many_lanes::write_home(
            dir.path(),
            env!("CARGO_MANIFEST_DIR").as_ref(),
            n,
            &many_lanes::URLS,
        );
        eprintln!("(setup: wrote {n} lane files in {:.2?})", t.elapsed());
        let home = Home::new(dir.path());
        let t = std::time::Instant::now();
        let config = compile::load(&home).unwrap_or_else(|d| panic!("{d}"));
        eprintln!("(setup: loaded them in {:.2?})", t.elapsed());
        assert_eq!(config.lanes.len(), n);
        let states = Arc::new(many_lanes::states(n));
        let scale = Scale {
            _dir: dir,
            home,
            config,
            states,
        };
        let sequential = run_pass(&scale, false);
        let concurrent = run_pass(&scale, true);
        let key = |d: &engine::Decision| {
            (
                d.lane.clone(),
                d.outcome,
                d.reason.clone(),
                d.gate.clone(),
                d.detail.clone(),
            )
        };
        assert!(
            sequential.iter().map(key).eq(concurrent.iter().map(key)),
            "the concurrent pass decided differently"
        );
        let count = |o: engine::Outcome| sequential.iter().filter(|d| d.outcome == o).count();
        let gates: usize = sequential.iter().map(|d| d.chain.len()).sum();
        eprintln!(
            "(setup: a pass triggers {}, defers {}; {gates} chain entries, {:.2} gates a lane)",
            count(engine::Outcome::Trigger),
            count(engine::Outcome::Deferred),
            gates as f64 / n as f64
        );
        scale
    })
}

/// Answers the home's URLs as `many_lanes::answer` says, at once.
struct Stub;

impl Observer for Stub {
    fn http_get(&self, url: &str, _timeout: Duration) -> HttpResult {
        let status = many_lanes::answer(url);
        HttpResult {
            status,
            latency_ms: 1.0,
            error: status.is_none().then(|| "connection refused".into()),
        }
    }

    fn metric(&self, _source: &MetricSource) -> Result<f64, String> {
        Err("no metrics here".into())
    }
}

fn run_pass(s: &Scale, concurrent: bool) -> Vec<engine::Decision> {
    let lanes: Vec<&Lane> = s.config.lanes.iter().collect();
    let f = if concurrent {
        engine::pass
    } else {
        engine::pass_sequential
    };
    f(
        &lanes,
        Arc::clone(&s.states),
        many_lanes::now(),
        Arc::new(Stub),
        &s.config.settings,
        None,
    )
}

#[divan::bench(args = ["sequential", "concurrent"], sample_count = 5, sample_size = 1)]
fn pass_100k(bencher: divan::Bencher, how: &str) {
    let s = scale();
    let concurrent = how == "concurrent";
    bencher.bench(|| run_pass(s, concurrent));
}

#[divan::bench(args = ["read_files", "compile_load"], sample_count = 3, sample_size = 1)]
fn load_100k(bencher: divan::Bencher, how: &str) {
    let s = scale();
    if how == "read_files" {
        let rules = s.home.rules_dir();
        bencher.bench(|| {
            let mut bytes = 0;
            for entry in std::fs::read_dir(&rules).expect("rules/") {
                bytes += std::fs::read(entry.expect("entry").path())
                    .expect("lane file")
                    .len();
            }
            bytes
        });
    } else {
        bencher.bench(|| compile::load(&s.home).map(|c| c.lanes.len()).ok());
    }
}

/// A loopback HTTP server answering every request with `status`, for the daemon's probes.
fn probe_server(status: u16) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            );
        }
    });
    format!("http://{addr}")
}

/// A home for one daemon start: `shipped` (the six shipped lanes, plugins and jobs) or `100k`.
fn daemon_home(how: &str) -> tempfile::TempDir {
    let repo: &std::path::Path = env!("CARGO_MANIFEST_DIR").as_ref();
    let dir = tempfile::tempdir().expect("tempdir");
    if how == "shipped" {
        for sub in ["rules", "plugins", "jobs"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dir");
            for entry in std::fs::read_dir(repo.join(sub)).expect("shipped dir") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    std::fs::copy(
                        &path,
                        dir.path().join(sub).join(path.file_name().expect("name")),
                    )
                    .expect("copy");
                }
            }
        }
        return dir;
    }
    let n = lanes();
    static SERVER: OnceLock<String> = OnceLock::new();
    let base = SERVER.get_or_init(|| probe_server(503));
    let urls: Vec<String> = (0..8).map(|k| format!("{base}/{k}")).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    many_lanes::write_home(dir.path(), repo, n, &urls);
    // Each block leader succeeded 10 hours ago, so the gates reading it pass.
    let home = Home::new(dir.path());
    let store = lanekeeper::state::SqliteStore::open(&home.database()).expect("store");
    use lanekeeper::clock::Clock;
    let at = lanekeeper::clock::SystemClock.now() - jiff::SignedDuration::from_hours(10);
    for i in (0..n).step_by(many_lanes::BLOCK) {
        use lanekeeper::state::Store;
        let name = many_lanes::name(i);
        let id = store
            .begin_run(&lanekeeper::state::RunStart {
                lane: &name,
                source: "bench",
                at,
                process: None,
                supervisor: None,
                log_path: None,
                honour_pause: false,
            })
            .expect("begin");
        store
            .finish_run(
                id,
                &lanekeeper::state::RunEnd {
                    at,
                    result: lanekeeper::state::RunResult::Success,
                    exit: None,
                },
            )
            .expect("finish");
    }
    dir
}

/// Starts `lanekeeper run` on `home`, waits for the end of its first pass, reads its memory,
/// and stops it. Returns `(VmHWM, VmRSS)` in kB.
fn first_pass(home: &std::path::Path) -> (u64, u64) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lanekeeper"))
        .arg("--home")
        .arg(home)
        .arg("run")
        .env("LANEKEEPER_LOG", "lanekeeper=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lanekeeper run");
    let stderr = child.stderr.take().expect("stderr");
    let mut passed = false;
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("log line");
        if line.contains("Next pass") {
            passed = true;
            break;
        }
    }
    assert!(passed, "the daemon ended before its first pass");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("status");
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("memory figure")
    };
    let memory = (kb("VmHWM:"), kb("VmRSS:"));
    // Stop our own child by its pid, and keep draining its log until it is gone.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::thread::spawn(move || lines.for_each(drop));
    let _ = child.wait();
    memory
}

#[divan::bench(args = ["shipped", "100k"], sample_count = 1, sample_size = 1)]
fn daemon_first_pass(bencher: divan::Bencher, how: &str) {
    bencher
        .with_inputs(|| daemon_home(how))
        .bench_local_values(|home| {
            let (hwm, rss) = first_pass(home.path());
            lock(&DAEMON_RSS).push(format!(
                "daemon_first_pass/{how}: VmHWM {:.1} MB, VmRSS {:.1} MB",
                hwm as f64 / 1024.0,
                rss as f64 / 1024.0
            ));
            home
        });
}
