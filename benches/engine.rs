//! Engine and Rhai gate benchmarks (issue 2).
//!
//! Run with `cargo bench --bench engine`; results are recorded in `docs/PERFORMANCE.md`.
//!
//! Rows:
//! - `gate_native`: a Rust `Gate` returning `Pass`, called through `dyn Gate` (the baseline).
//! - `gate_rhai_trivial`: a Rhai plugin `fn evaluate(ctx) { () }`, loaded through `config::load`.
//! - `gate_rhai_trivial_berlin`: the same, with the lane zone Europe/Berlin instead of UTC.
//! - `decide_sandman_cached_probe`: the full sandman chain (four Rhai gates) on a warmed pass,
//!   so the provider probe is answered from the pass cache.
//! - `decide_sandman_not_due`: sandman when its interval has not elapsed (schedule gate only).
//! - `decide_sandman_fresh_pass`: `PassHost::new` + one decide, probe not cached (stub observer).
//! - `sandman_gate`: each sandman gate alone on the warmed pass, with evidence recording.
//!
//! WASM rows (issue 4), same inputs:
//! - `gate_wasm_trivial`: a core module whose `evaluate` returns 0 (pass), loaded through
//!   `config::load`; each call builds the context record, takes the reused instance, writes
//!   the context, calls `evaluate` and resets the instance (page scan, copy-back, globals).
//! - `gate_wasm_trivial_fresh`: the same with `limits.wasm.reuse: false`: a fresh `Store` from
//!   the pooling allocator and an instantiation of the pre-linked module per call.
//! - `decide_sandman_wasm_fresh_instances`: the WASM chain below with reuse off.
//! - `decide_sandman_wasm_cached_probe`: the sandman chain with the four standard plugins as
//!   WASM guests (`plugins/wasm/*.wasm`, built with the SDK), probe cached as above.
//! - `sandman_gate_wasm`: each of those gates alone.
//!
//! Pass rows (issue 14), `sequential` (`engine::pass_sequential`, lane by lane) against
//! `concurrent` (`engine::pass`, lanes decided at once):
//! - `pass_shipped`: the six shipped lanes with the Rhai plugins, the sandman states above and
//!   a stub observer answering at once: the cost of deciding concurrently when nothing waits.
//! - `pass_8_slow_probes`: eight lanes, each probing its own URL through `provider-probe`,
//!   with a stub observer answering each probe after 2 ms.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use lanekeeper::compile::{self, Config, Lane};
use lanekeeper::config::settings::{MetricCatalog, MetricSource};
use lanekeeper::engine::{self, ChainMode, Outcome};
use lanekeeper::home::Home;
use lanekeeper::observe::{HttpResult, Observer};
use lanekeeper::plugins::{Gate, GateInput, PassHost, PluginError, Verdict, host};
use lanekeeper::state::{LaneState, LaneStates};

fn main() {
    divan::main();
    // The cached-probe row must not have probed more than once (the warm-up).
    if SANDMAN.get().is_some() {
        let probes = CACHED_PASS_PROBES.load(Ordering::Relaxed);
        eprintln!("observer calls on the reused (cached) pass: {probes}");
        assert_eq!(
            probes, 1,
            "the provider probe was not answered from the pass cache"
        );
    }
    if SANDMAN_WASM.get().is_some() {
        let probes = WASM_CACHED_PASS_PROBES.load(Ordering::Relaxed);
        eprintln!("observer calls on the reused (cached) WASM pass: {probes}");
        assert_eq!(
            probes, 1,
            "the WASM provider probe was not answered from the pass cache"
        );
    }
    if SANDMAN_WASM_FRESH.get().is_some() {
        let probes = WASM_FRESH_PASS_PROBES.load(Ordering::Relaxed);
        assert_eq!(
            probes, 1,
            "the WASM provider probe (reuse off) was not answered from the pass cache"
        );
    }
    if FRESH_PASS_PROBES.load(Ordering::Relaxed) > 0 {
        eprintln!(
            "observer calls across fresh passes: {}",
            FRESH_PASS_PROBES.load(Ordering::Relaxed)
        );
    }
}

/// 03:00 Europe/Berlin (CEST): inside sandman's off-peak window 01:00-06:00.
fn now() -> Timestamp {
    "2026-05-10T01:00:00Z"
        .parse()
        .expect("a valid RFC 3339 instant")
}

fn hours_before(now: Timestamp, hours: i64) -> Timestamp {
    now.checked_sub(SignedDuration::from_hours(hours))
        .expect("in range")
}

/// Answers every probe with 200 instantly and counts the calls.
struct StubObserver {
    calls: &'static AtomicUsize,
}

impl Observer for StubObserver {
    fn http_get(&self, _url: &str, _timeout: Duration) -> HttpResult {
        self.calls.fetch_add(1, Ordering::Relaxed);
        HttpResult {
            status: Some(200),
            latency_ms: 1.0,
            error: None,
        }
    }

    fn metric(&self, _source: &MetricSource) -> Result<f64, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(0.0)
    }
}

static CACHED_PASS_PROBES: AtomicUsize = AtomicUsize::new(0);
static FRESH_PASS_PROBES: AtomicUsize = AtomicUsize::new(0);
static UNUSED_PROBES: AtomicUsize = AtomicUsize::new(0);
static WASM_CACHED_PASS_PROBES: AtomicUsize = AtomicUsize::new(0);
static WASM_FRESH_PASS_PROBES: AtomicUsize = AtomicUsize::new(0);

fn pass(states: Arc<LaneStates>, calls: &'static AtomicUsize) -> Arc<PassHost> {
    Arc::new(PassHost::new(
        now(),
        states,
        Arc::new(StubObserver { calls }),
        Arc::new(MetricCatalog::default()),
    ))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Loads a home through the real loader; the temp dir is dropped once the scripts are compiled.
fn load(populate: impl FnOnce(&Path)) -> Config {
    let dir = tempfile::tempdir().expect("temp home");
    std::fs::create_dir(dir.path().join("plugins")).expect("plugins/");
    std::fs::create_dir(dir.path().join("rules")).expect("rules/");
    populate(dir.path());
    match compile::load(&Home::new(dir.path())) {
        Ok(config) => config,
        Err(diags) => panic!("config did not load: {diags:?}"),
    }
}

fn lane<'a>(config: &'a Config, name: &str) -> &'a Lane {
    config
        .lane(name)
        .unwrap_or_else(|| panic!("lane {name} loaded"))
}

// ---------------------------------------------------------------------------------------------
// Gates

struct NativePass;

impl Gate for NativePass {
    fn evaluate(&self, _input: &GateInput<'_>) -> Result<Verdict, PluginError> {
        Ok(Verdict::Pass { detail: None })
    }
}

struct Trivial {
    config: Config,
    pass: Arc<PassHost>,
}

static TRIVIAL: LazyLock<Trivial> = LazyLock::new(|| {
    let config = load(|home| {
        write(
            &home.join("plugins/trivial.rhai"),
            "fn evaluate(ctx) { () }\n",
        );
        write(
            &home.join("rules/t.yaml"),
            "schedule:\n  every: 24h\npreconditions:\n  - use: trivial\ncommand:\n  argv: [\"true\"]\n",
        );
    });
    Trivial {
        config,
        pass: pass(Arc::new(LaneStates::new()), &UNUSED_PROBES),
    }
});

/// Baseline: a native Rust gate, called through `dyn Gate` like the engine does.
#[divan::bench]
fn gate_native(bencher: divan::Bencher) {
    let t = &*TRIVIAL;
    let lane = lane(&t.config, "t");
    let gate: Arc<dyn Gate> = Arc::new(NativePass);
    let gate = divan::black_box(gate);
    bencher.bench(|| {
        gate.evaluate(&GateInput {
            lane: &lane.name,
            zone: &lane.zone,
            pass: &t.pass,
        })
    });
}

/// `fn evaluate(ctx) { () }`: the fixed cost of a Rhai gate (context map, call, verdict).
#[divan::bench]
fn gate_rhai_trivial(bencher: divan::Bencher) {
    bench_trivial_gate(bencher, &TRIVIAL.config);
}

/// Benchmarks lane `t`'s only gate on the trivial pass, after checking that it passes.
fn bench_trivial_gate(bencher: divan::Bencher, config: &Config) {
    let t = &*TRIVIAL;
    let lane = lane(config, "t");
    let gate = &lane.gates[0].gate;
    let input = GateInput {
        lane: &lane.name,
        zone: &lane.zone,
        pass: &t.pass,
    };
    assert_eq!(
        gate.evaluate(&input).expect("trivial gate evaluates"),
        Verdict::Pass { detail: None }
    );
    bencher.bench(|| gate.evaluate(&input));
}

/// The trivial gate with sandman's zone (Europe/Berlin) instead of UTC: the context map's
/// local-time fields cost more outside UTC.
#[divan::bench]
fn gate_rhai_trivial_berlin(bencher: divan::Bencher) {
    let t = &*TRIVIAL;
    let lane = lane(&t.config, "t");
    let gate = &lane.gates[0].gate;
    let zone = jiff::tz::TimeZone::get("Europe/Berlin").expect("bundled tzdb");
    bencher.bench(|| {
        gate.evaluate(&GateInput {
            lane: &lane.name,
            zone: &zone,
            pass: &t.pass,
        })
    });
}

// ---------------------------------------------------------------------------------------------
// The sandman chain

struct Sandman {
    config: Config,
    /// Sandman due (last run 25h ago), backup fresh (10h ago).
    due: Arc<LaneStates>,
    /// The warmed pass over `due`: the probe is in its cache.
    cached: Arc<PassHost>,
    /// Sandman ran 1h ago: not due.
    not_due: Arc<PassHost>,
}

static SANDMAN: OnceLock<Sandman> = OnceLock::new();
static SANDMAN_WASM: OnceLock<Sandman> = OnceLock::new();
static SANDMAN_WASM_FRESH: OnceLock<Sandman> = OnceLock::new();

fn sandman() -> &'static Sandman {
    SANDMAN.get_or_init(|| build_sandman("plugins", "rhai", "", &CACHED_PASS_PROBES))
}

/// The same home with the four standard plugins as WASM guests (`plugins/wasm/*.wasm`).
fn sandman_wasm() -> &'static Sandman {
    SANDMAN_WASM.get_or_init(|| build_sandman("plugins/wasm", "wasm", "", &WASM_CACHED_PASS_PROBES))
}

/// The same with instance reuse off: a fresh instance per evaluation (the baseline for reuse).
fn sandman_wasm_fresh() -> &'static Sandman {
    SANDMAN_WASM_FRESH
        .get_or_init(|| build_sandman("plugins/wasm", "wasm", NO_REUSE, &WASM_FRESH_PASS_PROBES))
}

/// `lanekeeper.yaml` turning WASM instance reuse off.
const NO_REUSE: &str = "limits:\n  wasm: { reuse: false }\n";

/// The shipped rules with the plugins found in `plugin_dir` (files ending `.ext`) and
/// `settings` as lanekeeper.yaml.
fn build_sandman(
    plugin_dir: &str,
    ext: &str,
    settings: &str,
    probes: &'static AtomicUsize,
) -> Sandman {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = load(|home| {
        write(&home.join("lanekeeper.yaml"), settings);
        for (from, to, ext) in [(plugin_dir, "plugins", ext), ("rules", "rules", "yaml")] {
            let entries = std::fs::read_dir(repo.join(from)).expect("repo dir");
            for entry in entries {
                let path = entry.expect("dir entry").path();
                if path.extension().is_some_and(|x| x == ext) {
                    let name = path.file_name().expect("file name");
                    std::fs::copy(&path, home.join(to).join(name)).expect("copy");
                }
            }
        }
    });
    let now = now();
    let mut due = LaneStates::new();
    due.insert(
        "backup".into(),
        LaneState {
            last_run_at: Some(hours_before(now, 10)),
            last_success_at: Some(hours_before(now, 10)),
            ..LaneState::default()
        },
    );
    due.insert(
        "sandman".into(),
        LaneState {
            last_run_at: Some(hours_before(now, 25)),
            last_success_at: Some(hours_before(now, 25)),
            ..LaneState::default()
        },
    );
    let mut not_due = due.clone();
    if let Some(s) = not_due.get_mut("sandman") {
        s.last_run_at = Some(hours_before(now, 1));
    }
    let due = Arc::new(due);
    let cached = pass(Arc::clone(&due), probes);
    let lane = lane(&config, "sandman");
    assert_eq!(lane.gates.len(), 4, "sandman has four preconditions");
    assert!(
        lane.gates.iter().all(|g| g.runtime.as_str() == ext),
        "every sandman gate runs in {ext}"
    );

    // Warm the pass: the probe goes to the observer once, then lives in the pass cache.
    let warm = engine::decide(lane, &cached, ChainMode::FirstDeferral);
    assert_eq!(warm.outcome, Outcome::Trigger, "{warm:#?}");
    assert_eq!(probes.load(Ordering::Relaxed), 1);
    let again = engine::decide(lane, &cached, ChainMode::FirstDeferral);
    assert_eq!(again.outcome, Outcome::Trigger, "{again:#?}");
    assert_eq!(
        probes.load(Ordering::Relaxed),
        1,
        "the probe was answered from the pass cache"
    );

    let not_due = pass(Arc::new(not_due), &UNUSED_PROBES);
    let idle = engine::decide(lane, &not_due, ChainMode::FirstDeferral);
    assert_eq!(idle.outcome, Outcome::Deferred, "{idle:#?}");
    assert_eq!(idle.reason.as_deref(), Some(engine::REASON_NOT_DUE));

    Sandman {
        config,
        due,
        cached,
        not_due,
    }
}

/// The whole sandman chain on a warmed pass (probe answered from the pass cache).
#[divan::bench]
fn decide_sandman_cached_probe(bencher: divan::Bencher) {
    bench_chain(bencher, sandman());
}

/// Sandman rechecked before its interval elapsed: decided by the schedule gate alone.
#[divan::bench]
fn decide_sandman_not_due(bencher: divan::Bencher) {
    let s = sandman();
    let lane = lane(&s.config, "sandman");
    bencher.bench(|| engine::decide(lane, &s.not_due, ChainMode::FirstDeferral));
}

/// A fresh pass per iteration: `PassHost::new`, lane-state conversion, one uncached probe.
#[divan::bench]
fn decide_sandman_fresh_pass(bencher: divan::Bencher) {
    let s = sandman();
    let lane = lane(&s.config, "sandman");
    bencher.bench(|| {
        let pass = pass(Arc::clone(&s.due), &FRESH_PASS_PROBES);
        engine::decide(lane, &pass, ChainMode::FirstDeferral)
    });
}

/// One sandman gate at a time, inside `host::observe` as the engine runs it (evidence recorded),
/// on the warmed pass: where the chain's time goes.
#[divan::bench(args = ["backup-recency", "provider-probe", "contention", "off-peak"])]
fn sandman_gate(bencher: divan::Bencher, gate: &str) {
    bench_gate(bencher, sandman(), gate);
}

/// The whole sandman chain on the warmed pass of `s`.
fn bench_chain(bencher: divan::Bencher, s: &'static Sandman) {
    let lane = lane(&s.config, "sandman");
    bencher.bench(|| engine::decide(lane, &s.cached, ChainMode::FirstDeferral));
}

/// One sandman gate, inside `host::observe` as the engine runs it, on the warmed pass of `s`.
fn bench_gate(bencher: divan::Bencher, s: &'static Sandman, gate: &str) {
    let lane = lane(&s.config, "sandman");
    let binding = lane
        .gates
        .iter()
        .find(|b| b.name == gate)
        .unwrap_or_else(|| panic!("sandman uses {gate}"));
    bencher.bench(|| {
        host::observe(&s.cached, &lane.name, || {
            binding.gate.evaluate(&GateInput {
                lane: &lane.name,
                zone: &lane.zone,
                pass: &s.cached,
            })
        })
    });
}

// ---------------------------------------------------------------------------------------------
// WASM (issue 4)

/// A trivial WASM plugin: `alloc` hands out a fixed buffer, `evaluate` passes.
const TRIVIAL_WAT: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "alloc") (param i32) (result i32) i32.const 1024)
    (func (export "evaluate") (param i32 i32) (result i64) i64.const 0))"#;

static TRIVIAL_WASM: LazyLock<Config> = LazyLock::new(|| trivial_wasm(""));

static TRIVIAL_WASM_FRESH: LazyLock<Config> = LazyLock::new(|| trivial_wasm(NO_REUSE));

fn trivial_wasm(settings: &str) -> Config {
    load(|home| {
        write(&home.join("lanekeeper.yaml"), settings);
        let wasm = wat::parse_str(TRIVIAL_WAT).expect("valid WAT");
        std::fs::write(home.join("plugins/trivial.wasm"), wasm).expect("write trivial.wasm");
        write(
            &home.join("rules/t.yaml"),
            "schedule:\n  every: 24h\npreconditions:\n  - use: trivial\ncommand:\n  argv: [\"true\"]\n",
        );
    })
}

/// The trivial gate in WASM: context record, a reused instance (reset afterwards), call,
/// verdict.
#[divan::bench]
fn gate_wasm_trivial(bencher: divan::Bencher) {
    bench_trivial_gate(bencher, &TRIVIAL_WASM);
}

/// The same with reuse off: a fresh store and instantiation from the pool per call.
#[divan::bench]
fn gate_wasm_trivial_fresh(bencher: divan::Bencher) {
    bench_trivial_gate(bencher, &TRIVIAL_WASM_FRESH);
}

/// The whole sandman chain with the four WASM guests on a warmed pass.
#[divan::bench]
fn decide_sandman_wasm_cached_probe(bencher: divan::Bencher) {
    bench_chain(bencher, sandman_wasm());
}

/// The chain with reuse off: a fresh instance per gate.
#[divan::bench]
fn decide_sandman_wasm_fresh_instances(bencher: divan::Bencher) {
    bench_chain(bencher, sandman_wasm_fresh());
}

/// One WASM sandman gate at a time, inside `host::observe`, on the warmed pass.
#[divan::bench(args = ["backup-recency", "provider-probe", "contention", "off-peak"])]
fn sandman_gate_wasm(bencher: divan::Bencher, gate: &str) {
    bench_gate(bencher, sandman_wasm(), gate);
}

// ---------------------------------------------------------------------------------------------
// Passes (issue 14): lanes decided at once against lane by lane

/// A whole pass over the shipped six lanes (Rhai plugins, sandman due, stub observer answering
/// at once): what deciding concurrently costs when no probe waits (threads started per pass).
#[divan::bench(args = ["sequential", "concurrent"])]
fn pass_shipped(bencher: divan::Bencher, how: &str) {
    let s = sandman();
    let lanes: Vec<&Lane> = s.config.lanes.iter().collect();
    bencher.bench(|| {
        run_pass(
            how,
            &lanes,
            &s.due,
            Arc::new(StubObserver {
                calls: &UNUSED_PROBES,
            }),
            &s.config,
        )
    });
}

/// Answers each probe after `SLOW_PROBE`, as a provider on the network would.
struct SlowObserver;

/// The stub's answer time in `pass_8_slow_probes`.
const SLOW_PROBE: Duration = Duration::from_millis(2);

impl Observer for SlowObserver {
    fn http_get(&self, _url: &str, _timeout: Duration) -> HttpResult {
        std::thread::sleep(SLOW_PROBE);
        HttpResult {
            status: Some(200),
            latency_ms: 2.0,
            error: None,
        }
    }

    fn metric(&self, _source: &MetricSource) -> Result<f64, String> {
        Ok(0.0)
    }
}

static EIGHT_PROBES: LazyLock<Config> = LazyLock::new(|| {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    load(|home| {
        std::fs::copy(
            repo.join("plugins/provider-probe.rhai"),
            home.join("plugins/provider-probe.rhai"),
        )
        .expect("copy provider-probe");
        for i in 0..8 {
            write(
                &home.join(format!("rules/p{i}.yaml")),
                &format!(
                    "schedule:\n  every: 1h\npreconditions:\n  - use: provider-probe\n    with: {{ url: \"http://p{i}.invalid/\" }}\ncommand:\n  argv: [\"true\"]\n"
                ),
            );
        }
    })
});

/// Eight lanes, each probing its own endpoint that answers in 2 ms: lane by lane the probes
/// add up; decided at once they overlap.
#[divan::bench(args = ["sequential", "concurrent"])]
fn pass_8_slow_probes(bencher: divan::Bencher, how: &str) {
    let config = &*EIGHT_PROBES;
    let lanes: Vec<&Lane> = config.lanes.iter().collect();
    let states = Arc::new(LaneStates::new());
    bencher.bench(|| run_pass(how, &lanes, &states, Arc::new(SlowObserver), config));
}

fn run_pass(
    how: &str,
    lanes: &[&Lane],
    states: &Arc<LaneStates>,
    observer: Arc<dyn Observer>,
    config: &Config,
) -> Vec<engine::Decision> {
    let f = match how {
        "sequential" => engine::pass_sequential,
        _ => engine::pass,
    };
    f(
        lanes,
        Arc::clone(states),
        now(),
        observer,
        &config.settings,
        None,
    )
}
