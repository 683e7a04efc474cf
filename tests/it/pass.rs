//! One pass over many lanes: lanes are decided in the picker's order, and a lane dispatched
//! earlier in the pass counts as running for every later lane, so peers never start together.

use crate::harness::{Home, assert_decision, lane_yaml};

fn by_lane(lines: &str, lane: &str) -> serde_json::Value {
    lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON decision"))
        .find(|d| d["lane"] == lane)
        .unwrap_or_else(|| panic!("no decision for {lane} in {lines}"))
}

fn reader_and_writer() -> Home {
    let home = Home::standard();
    home.lane("writer", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane(
        "reader",
        &lane_yaml(
            "1h",
            "  - use: contention\n    with: { peers: [writer] }",
            "[\"true\"]",
        ),
    );
    home
}

#[test]
fn a_lane_dispatched_earlier_in_the_pass_counts_as_running_for_a_later_contention_check() {
    let home = reader_and_writer();
    // `check` and `explain` say what the daemon would do: the writer starts, the reader waits.
    let checked = home.ok(&["check", "--json"]);
    assert_eq!(by_lane(&checked, "writer")["outcome"], "trigger");
    let reader = by_lane(&checked, "reader");
    assert_decision(&reader, "deferred", "peer-task-running");
    assert_eq!(
        reader["detail"], "peer lane writer starts in this pass",
        "{reader}"
    );
    let explained = home.ok(&["explain", "reader", "--json"]);
    let explained: serde_json::Value = serde_json::from_str(&explained).expect("JSON");
    assert_eq!(verdict(&explained), verdict(&reader));

    let ran = home.ok(&["run", "--once", "--json"]);
    assert_eq!(by_lane(&ran, "writer")["outcome"], "trigger");
    assert_eq!(verdict(&by_lane(&ran, "reader")), verdict(&reader));
    assert_eq!(home.status("writer")["last_result"], "success");
    assert!(
        home.status("reader")["last_run_at"].is_null(),
        "the reader did not run beside the writer"
    );

    // Next pass: the writer is done, so the reader goes.
    let next = home.ok(&["run", "--once", "--json"]);
    assert_eq!(by_lane(&next, "reader")["outcome"], "trigger", "{next}");
}

/// What decided: outcome, reason, gate and detail.
fn verdict(d: &serde_json::Value) -> [serde_json::Value; 4] {
    ["outcome", "reason", "gate", "detail"].map(|k| d[k].clone())
}

#[test]
fn the_picker_says_the_name_decided_when_priority_and_overdue_are_equal() {
    let home = Home::new();
    let lane = "schedule:\n  every: 1h\ngroup: heavy\npriority: 5\ncommand:\n  argv: [\"true\"]\n";
    home.lane("alpha", lane);
    home.lane("beta", lane);
    let out = home.ok(&["check", "--json"]);
    assert_eq!(by_lane(&out, "alpha")["outcome"], "trigger");
    let held = by_lane(&out, "beta");
    assert_decision(&held, "deferred", "peer-task-running");
    let detail = held["detail"].as_str().expect("detail");
    assert!(
        detail.contains("alpha goes first")
            && detail.contains("equally overdue, so the name decided: alpha before beta"),
        "{detail}"
    );
}

#[test]
fn the_picker_names_priority_when_priority_decided() {
    let home = Home::new();
    let lane = |p: u32| {
        format!(
            "schedule:\n  every: 1h\ngroup: heavy\npriority: {p}\ncommand:\n  argv: [\"true\"]\n"
        )
    };
    home.lane("alpha", &lane(7));
    home.lane("beta", &lane(2));
    let out = home.ok(&["check", "--json"]);
    let held = by_lane(&out, "alpha");
    let detail = held["detail"].as_str().expect("detail");
    assert!(
        detail.contains("beta goes first") && detail.contains("lower priority: 2 before 7"),
        "{detail}"
    );
}

/// Lanes are decided at once, so a probe that hangs does not hold up the others: the second
/// lane's probe is made while the first lane's is still waiting for its server.
#[test]
fn one_slow_probe_does_not_delay_the_other_lanes() {
    let silent = crate::harness::TestServer::silent();
    let up = crate::harness::TestServer::start(200, "{}");
    let home = Home::standard();
    home.write("lanekeeper.yaml", "limits:\n  gate_timeout: 2m\n");
    let probe = |url: &str, priority: u32| {
        format!(
            "schedule:\n  every: 1h\npriority: {priority}\npreconditions:\n  - use: provider-probe\n    with: {{ url: \"{url}\", timeout: 60s }}\ncommand:\n  argv: [\"true\"]\n"
        )
    };
    // The slow lane comes first in the picker's order.
    home.lane("slow", &probe(&silent.url, 0));
    home.lane("fast", &probe(&up.url, 10));
    let mut check = home.spawn(&["check", "--json"]);
    let started = std::time::Instant::now();
    while up.hits() == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the fast lane's probe waited for the slow one"
        );
        assert!(
            check.try_wait().expect("check").is_none(),
            "check ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(silent.hits(), 1, "the slow probe is still waiting");
    let _ = check.kill();
    let _ = check.wait();
}

/// The concurrent pass decides exactly as deciding lane by lane in the picker's order does:
/// the same outcome, reason, gate, detail and chain (apart from timings and cache flags), over
/// lanes that read each other (declared and not), share groups, probe shared URLs, and run
/// in both runtimes.
#[test]
fn the_concurrent_pass_decides_as_the_sequential_one() {
    use std::sync::Arc;

    use lanekeeper::config::settings::MetricSource;
    use lanekeeper::observe::{HttpResult, Observer};
    use lanekeeper::state::{LaneState, LaneStates, RunningRun};

    struct Stub;
    impl Observer for Stub {
        fn http_get(&self, url: &str, _timeout: std::time::Duration) -> HttpResult {
            let status = match url {
                "http://a.invalid/" => Some(200),
                "http://b.invalid/" => Some(503),
                _ => None,
            };
            HttpResult {
                status,
                latency_ms: 1.0,
                error: status.is_none().then(|| "connection refused".into()),
            }
        }
        fn metric(&self, _: &MetricSource) -> Result<f64, String> {
            Err("no metrics here".into())
        }
    }

    /// A small deterministic generator (xorshift), so a failure names its seed.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("micros");
                m.remove("cached");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }

    let now: jiff::Timestamp = "2026-05-10T01:00:00Z".parse().unwrap();
    let mut peers_starting = 0;
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let home = Home::standard();
        std::fs::copy(
            crate::harness::repo().join("plugins/wasm/contention.wasm"),
            home.path().join("plugins/wcontention.wasm"),
        )
        .unwrap();
        // Reads a lane it is not told is a lane, so the picker does not order by it.
        home.write(
            "plugins/sneaky.rhai",
            "fn params() { #{ other: \"string\" } }\nfn evaluate(ctx) {\n    let s = lane(ctx.params.other);\n    if s != () && s.running { return #{ defer: \"other-busy\", detail: `${ctx.params.other} is busy` }; }\n    ()\n}\n",
        );
        home.write(
            "lanekeeper.yaml",
            "groups:\n  heavy: { max_concurrent: 1 }\n  light: { max_concurrent: 2 }\n",
        );
        let n = 24;
        let name = |i: u64| format!("l{i:02}");
        let mut states = LaneStates::new();
        for i in 0..n {
            let other = |rng: &mut Rng| {
                let mut o = rng.below(n);
                if o == i {
                    o = (o + 1) % n;
                }
                name(o)
            };
            let mut yaml = format!(
                "schedule:\n  every: {}\npriority: {}\n",
                ["10m", "1h", "24h", "off"][rng.below(4) as usize],
                rng.below(4)
            );
            match rng.below(3) {
                0 => yaml.push_str("group: heavy\n"),
                1 => yaml.push_str("group: light\n"),
                _ => {}
            }
            let mut gates = String::new();
            for _ in 0..rng.below(4) {
                let gate = match rng.below(6) {
                    0 => format!(
                        "  - use: contention\n    with: {{ peers: [{}, {}] }}\n",
                        other(&mut rng),
                        other(&mut rng)
                    ),
                    1 => format!(
                        "  - use: wcontention\n    with: {{ peers: [{}] }}\n",
                        other(&mut rng)
                    ),
                    2 => format!(
                        "  - use: sneaky\n    with: {{ other: {} }}\n",
                        other(&mut rng)
                    ),
                    3 => format!(
                        "  - use: backup-recency\n    with: {{ lane: {}, max_age: {} }}\n",
                        other(&mut rng),
                        ["1h", "36h"][rng.below(2) as usize]
                    ),
                    4 => format!(
                        "  - use: provider-probe\n    with: {{ url: \"http://{}.invalid/\" }}\n",
                        ["a", "b", "c"][rng.below(3) as usize]
                    ),
                    _ => {
                        "  - use: off-peak\n    with: { window: \"00:00-02:00\" }\n    soft: true\n"
                            .to_string()
                    }
                };
                gates.push_str(&gate);
            }
            if !gates.is_empty() {
                yaml.push_str(&format!("preconditions:\n{gates}"));
            }
            yaml.push_str("command:\n  argv: [\"true\"]\n");
            home.lane(&name(i), &yaml);

            let ago = |h: i64| now - jiff::SignedDuration::from_hours(h);
            let mut state = LaneState::default();
            match rng.below(4) {
                0 => {}
                1 => state.last_run_at = Some(ago(2)),
                2 => state.last_run_at = Some(ago(30)),
                _ => {
                    state.last_run_at = Some(ago(1));
                    state.running = (rng.below(3) == 0).then(|| RunningRun {
                        run_id: i as i64,
                        pid: 1000 + i as u32,
                        pid_start: 1,
                        started_at: ago(1),
                        supervisor: None,
                    });
                }
            }
            if rng.below(2) == 0 {
                state.last_success_at = Some(ago([1, 12, 48][rng.below(3) as usize]));
            }
            states.insert(name(i), state);
        }
        let config = lanekeeper::compile::load(&lanekeeper::home::Home::new(home.path()))
            .unwrap_or_else(|d| panic!("seed {seed}: {d}"));
        let lanes: Vec<&lanekeeper::compile::Lane> = config.lanes.iter().collect();
        let states = Arc::new(states);
        let decide = |concurrent: bool| {
            let f = if concurrent {
                lanekeeper::engine::pass
            } else {
                lanekeeper::engine::pass_sequential
            };
            let decisions = f(
                &lanes,
                Arc::clone(&states),
                now,
                Arc::new(Stub),
                &config.settings,
                Some("l03"),
            );
            let mut v = serde_json::to_value(&decisions).unwrap();
            strip(&mut v);
            v
        };
        let sequential = decide(false);
        let concurrent = decide(true);
        for (s, c) in sequential
            .as_array()
            .unwrap()
            .iter()
            .zip(concurrent.as_array().unwrap())
        {
            assert_eq!(s, c, "seed {seed}");
        }
        assert_eq!(sequential, concurrent, "seed {seed}");
        peers_starting += sequential
            .to_string()
            .matches("starts in this pass")
            .count();
    }
    assert!(
        peers_starting > 0,
        "the mix must have lanes that see a peer start in the same pass"
    );
}

#[path = "../../benches/support/many_lanes.rs"]
mod many_lanes;

/// The same over many lanes, the home the 100,000-lane benchmark loads, at a size a debug
/// build decides in seconds: every lane with the four standard gates, contention between
/// neighbours, groups of one and of three, soft gates past their `max_deferral`, lanes running
/// and never run; enough lanes that the pass spreads them over scoped threads. Two instants:
/// inside and outside most off-peak windows.
#[test]
fn the_concurrent_pass_decides_as_the_sequential_one_over_many_lanes() {
    use std::sync::Arc;

    use lanekeeper::config::settings::MetricSource;
    use lanekeeper::observe::{HttpResult, Observer};

    struct Stub;
    impl Observer for Stub {
        fn http_get(&self, url: &str, _timeout: std::time::Duration) -> HttpResult {
            let status = many_lanes::answer(url);
            HttpResult {
                status,
                latency_ms: 1.0,
                error: status.is_none().then(|| "connection refused".into()),
            }
        }
        fn metric(&self, _: &MetricSource) -> Result<f64, String> {
            Err("no metrics here".into())
        }
    }

    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("micros");
                m.remove("cached");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }

    const LANES: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    many_lanes::write_home(
        dir.path(),
        &crate::harness::repo(),
        LANES,
        &many_lanes::URLS,
    );
    let config = lanekeeper::compile::load(&lanekeeper::home::Home::new(dir.path()))
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(config.lanes.len(), LANES);
    let lanes: Vec<&lanekeeper::compile::Lane> = config.lanes.iter().collect();
    let states = Arc::new(many_lanes::states(LANES));
    let (mut seen, mut four) = (String::new(), 0);
    for now in [
        many_lanes::now(),
        many_lanes::now() + jiff::SignedDuration::from_hours(9),
    ] {
        let decide = |concurrent: bool| {
            let f = if concurrent {
                lanekeeper::engine::pass
            } else {
                lanekeeper::engine::pass_sequential
            };
            let decisions = f(
                &lanes,
                Arc::clone(&states),
                now,
                Arc::new(Stub),
                &config.settings,
                None,
            );
            let mut v = serde_json::to_value(&decisions).unwrap();
            strip(&mut v);
            v
        };
        let sequential = decide(false);
        let concurrent = decide(true);
        let (s, c) = (
            sequential.as_array().unwrap(),
            concurrent.as_array().unwrap(),
        );
        assert_eq!(s.len(), LANES);
        for (s, c) in s.iter().zip(c) {
            assert_eq!(s, c, "at {now}");
        }
        seen.push_str(&sequential.to_string());
        four += s
            .iter()
            .filter(|d| d["chain"].as_array().is_some_and(|c| c.len() == 5))
            .count();
    }
    // The mix must make lanes interact, or the comparison proves little.
    for what in [
        "starts in this pass",
        "goes first in this pass",
        "is full",
        "\"outcome\":\"trigger\"",
        "\"verdict\":\"waived\"",
        "backup-stale",
        "provider-unreachable",
        "outside-off-peak",
        "is running (pid",
    ] {
        assert!(seen.contains(what), "no decision with {what}");
    }
    assert!(four > 100, "only {four} decisions ran all four gates");
}
