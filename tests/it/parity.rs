//! Parity: each standard precondition gives the same verdict in Rhai and in WASM (pass or defer,
//! the reason, the detail, and the evidence it records) over generated contexts, boundaries
//! included. Library-level: both runtimes are loaded from the repository and evaluated on the
//! same pass inputs, each with a fresh `PassHost` so probe caching is identical.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use lanekeeper::config::Diagnostics;
use lanekeeper::config::settings::{MetricCatalog, Settings};
use lanekeeper::observe::{Canned, HttpResult};
use lanekeeper::plugins::host::{self, Observation};
use lanekeeper::plugins::{GateInput, PassHost, PluginErrorKind, Registry, Runtime, Verdict};
use lanekeeper::state::{LaneState, LaneStates, RunResult, RunningRun};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::{STANDARD_PLUGINS, repo};

struct Runtimes {
    rhai: Registry,
    wasm: Registry,
    _dir: tempfile::TempDir,
}

/// The standard plugins of one runtime, copied by name into a directory of their own so that
/// nothing else an operator put beside them in the checkout is loaded.
fn standard(dir: &str, ext: &str, into: &std::path::Path, settings: &Settings) -> Registry {
    std::fs::create_dir_all(into).expect("mkdir");
    for name in PLUGINS {
        let file = format!("{name}.{ext}");
        std::fs::copy(repo().join(dir).join(&file), into.join(&file)).expect("copy plugin");
    }
    let mut diags = Diagnostics::default();
    let registry = Registry::load(into, settings, None, &mut diags);
    assert!(diags.is_empty(), "{diags}");
    registry
}

static RUNTIMES: LazyLock<Runtimes> = LazyLock::new(|| {
    let settings = Settings::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let rhai = standard("plugins", "rhai", &dir.path().join("rhai"), &settings);
    let wasm = standard("plugins/wasm", "wasm", &dir.path().join("wasm"), &settings);
    Runtimes {
        rhai,
        wasm,
        _dir: dir,
    }
});

const PLUGINS: [&str; 4] = STANDARD_PLUGINS;

/// Probes and metric reads are answered from the generated case.
type Stub = Canned;
fn no_io() -> Stub {
    Stub {
        http: HttpResult {
            status: None,
            latency_ms: 0.0,
            error: Some("unused".into()),
        },
        metrics: BTreeMap::new(),
        otherwise: Err("no value for this metric".into()),
    }
}

/// What a gate did: verdict (or error kind) and evidence.
type Outcome = (Result<Verdict, PluginErrorKind>, Vec<Observation>);

struct Case {
    params: Value,
    states: LaneStates,
    now: Timestamp,
    zone: TimeZone,
    observer: Stub,
}

fn evaluate(registry: &Registry, plugin: &str, case: &Case, observer: Arc<Stub>) -> Outcome {
    let p = registry.get(plugin).expect("plugin loaded");
    let gate = p.bind(&case.params);
    let pass = Arc::new(PassHost::new(
        case.now,
        Arc::new(case.states.clone()),
        observer,
        Arc::new(MetricCatalog::default()),
    ));
    let input = GateInput {
        lane: "subject",
        zone: &case.zone,
        pass: &pass,
    };
    let (r, evidence) = host::observe(&pass, "subject", || gate.evaluate(&input));
    (r.map_err(|e| e.kind), evidence)
}

fn same(plugin: &str, case: Case) -> Result<(), TestCaseError> {
    let rt = &*RUNTIMES;
    let observer = Arc::new(case.observer);
    let case = Case {
        observer: no_io(),
        ..case
    };
    let rhai = evaluate(&rt.rhai, plugin, &case, Arc::clone(&observer));
    let wasm = evaluate(&rt.wasm, plugin, &case, observer);
    prop_assert_eq!(
        &rhai,
        &wasm,
        "{} with {} at {}",
        plugin,
        case.params,
        case.now
    );
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Instants through 2026, to the millisecond.
fn instant() -> impl Strategy<Value = Timestamp> {
    (1_767_225_600_000i64..1_798_761_600_000)
        .prop_map(|ms| Timestamp::from_millisecond(ms).unwrap())
}

fn before(now: Timestamp, ms: i64) -> Timestamp {
    now.checked_sub(SignedDuration::from_millis(ms)).unwrap()
}

#[test]
fn both_runtimes_declare_the_same_parameters() {
    let rt = &*RUNTIMES;
    for name in PLUGINS {
        let rhai = rt.rhai.get(name).unwrap();
        let wasm = rt.wasm.get(name).unwrap();
        assert_eq!(rhai.runtime(), Runtime::Rhai);
        assert_eq!(wasm.runtime(), Runtime::Wasm);
        assert_eq!(rhai.schema(), wasm.schema(), "{name}");
        assert!(rhai.schema().params.is_some());
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn backup_recency(
        now in instant(),
        max_age in prop_oneof![Just(36 * 3_600_000i64), 1i64..100 * 86_400_000],
        kind in 0..4u8,
        delta in prop_oneof![Just(0i64), Just(1), Just(-1), Just(1000), Just(-1000), -86_400_000i64..86_400_000],
    ) {
        let mut states = LaneStates::new();
        match kind {
            0 => {}
            1 => { states.insert("backup".into(), LaneState { last_result: Some(RunResult::Failure), ..LaneState::default() }); }
            // Succeeded max_age + delta ago: the boundary itself when delta = 0.
            _ => {
                let at = before(now, max_age + delta);
                states.insert("backup".into(), LaneState {
                    last_run_at: Some(at),
                    last_success_at: Some(at),
                    last_result: Some(RunResult::Success),
                    ..LaneState::default()
                });
            }
        }
        same("backup-recency", Case {
            params: json!({ "lane": "backup", "max_age": max_age }),
            states,
            now,
            zone: TimeZone::UTC,
            observer: no_io(),
        })?;
    }

    #[test]
    fn provider_probe(
        status in prop_oneof![
            Just(None), Just(Some(199u16)), Just(Some(200)), Just(Some(299)), Just(Some(300)),
            Just(Some(503)), (100u16..600).prop_map(Some)
        ],
        error in prop_oneof![Just(None), Just(Some("connection refused".to_string())), Just(Some("timed out after 300ms".to_string()))],
        latency in prop_oneof![Just(0.0f64), Just(12.0), 0.0f64..5000.0],
        timeout in prop_oneof![Just(None), (0u64..10_000).prop_map(Some)],
        now in instant(),
    ) {
        let mut params = json!({ "url": "http://127.0.0.1:11434/api/tags" });
        if let Some(t) = timeout {
            params["timeout"] = json!(t);
        }
        same("provider-probe", Case {
            params,
            states: LaneStates::new(),
            now,
            zone: TimeZone::UTC,
            observer: Stub {
                http: HttpResult { status, latency_ms: latency, error },
                metrics: BTreeMap::new(),
                otherwise: Err("no value for this metric".into()),
            },
        })?;
    }

    #[test]
    fn contention(
        peers in proptest::sample::subsequence(vec!["a", "b", "c", "d"], 0..=4),
        running in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(3)], 4),
        thresholds in proptest::collection::vec(
            (
                prop_oneof![Just("loadavg.1"), Just("loadavg.5"), Just("psi.io.some.avg10")],
                prop_oneof![(0i64..1000).prop_map(|i| json!(i)), (0.0f64..1000.0).prop_map(|f| json!(f))],
                prop_oneof![Just(Some(0.0f64)), Just(Some(0.5)), Just(Some(-0.5)), Just(None), (-100.0f64..100.0).prop_map(Some)],
            ),
            0..3,
        ),
        flat in prop_oneof![Just(0u8), Just(1), Just(2)],
        now in instant(),
    ) {
        let mut states = LaneStates::new();
        for (lane, state) in ["a", "b", "c", "d"].iter().zip(&running) {
            match state {
                0 => {}
                1 => { states.insert(lane.to_string(), LaneState::default()); }
                // Dispatched by an earlier lane of the same pass: running, no pid yet.
                3 => {
                    states.insert(lane.to_string(), LaneState { starting: true, ..LaneState::default() });
                }
                _ => {
                    states.insert(lane.to_string(), LaneState {
                        running: Some(RunningRun { run_id: 1, pid: 4242, pid_start: 1, started_at: before(now, 60_000), supervisor: None }),
                        last_run_at: Some(before(now, 60_000)),
                        ..LaneState::default()
                    });
                }
            }
        }
        let catalog = MetricCatalog::default();
        let mut metrics = BTreeMap::new();
        let mut list = Vec::new();
        for (name, above, delta) in &thresholds {
            let source = catalog.resolve(name).unwrap().to_string();
            let value = match delta {
                Some(d) => Ok(above.as_f64().unwrap() + d),
                None => Err(format!("cannot read {name}")),
            };
            metrics.entry(source).or_insert(value);
            list.push(json!({ "metric": name, "above": above }));
        }
        let mut params = json!({});
        if !peers.is_empty() {
            params["peers"] = json!(peers);
        }
        match (flat, list.split_first()) {
            // The first threshold written flat: `metric: NAME, above: NUMBER`.
            (1, Some((first, rest))) => {
                params["metric"] = first["metric"].clone();
                params["above"] = first["above"].clone();
                params["metrics"] = json!(rest);
            }
            // `metric:` without `above:` is the plugin's error.
            (2, Some((first, _))) => params["metric"] = first["metric"].clone(),
            _ => {
                if !list.is_empty() {
                    params["metrics"] = json!(list);
                }
            }
        }
        same("contention", Case {
            params,
            states,
            now,
            zone: TimeZone::UTC,
            observer: Stub {
                metrics,
                ..no_io()
            },
        })?;
    }

    #[test]
    fn off_peak(
        start in 0u32..1440,
        len in 1u32..1440,
        zone in prop_oneof![
            Just("UTC"), Just("Europe/Berlin"), Just("America/New_York"), Just("Asia/Kolkata"),
            Just("Australia/Lord_Howe"), Just("America/St_Johns")
        ],
        at in prop_oneof![
            // Local time on a window edge, a minute either side, or anywhere.
            (0u8..6, 0u32..366, 0u32..60).prop_map(|(edge, day, sec)| (Some(edge), day, sec)),
            (Just(0u8), 0u32..366, 0u32..60).prop_map(|(_, day, sec)| (None, day, sec)),
        ],
        anywhere in instant(),
    ) {
        let end = (start + len) % 1440;
        prop_assume!(start != end);
        let zone = TimeZone::get(zone).unwrap();
        let (edge, day, sec) = at;
        let now = match edge {
            None => anywhere,
            Some(edge) => {
                let base = [start, end][usize::from(edge % 2)];
                let minute = (base + 1440 + [0, 0, 1, 1, 1439, 1439][usize::from(edge)]) % 1440;
                let date = jiff::civil::date(2026, 1, 1).checked_add(jiff::Span::new().days(i64::from(day))).unwrap();
                let time = jiff::civil::time((minute / 60) as i8, (minute % 60) as i8, (sec % 60) as i8, 0);
                date.to_datetime(time).to_zoned(zone.clone()).unwrap().timestamp()
            }
        };
        let window = format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60);
        same("off-peak", Case {
            params: json!({ "window": window }),
            states: LaneStates::new(),
            now,
            zone,
            observer: no_io(),
        })?;
    }
}
