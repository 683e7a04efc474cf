//! `simulate` and `calendar` against the binary; and the acceptance test of issue 11: the
//! simulation and the daemon agree.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::harness::{Home, lane_in};

/// A loopback HTTP server answering every request with the status the test sets.
struct ScriptedServer {
    url: String,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl ScriptedServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("addr"));
        let status = Arc::new(AtomicU16::new(200));
        let answer = Arc::clone(&status);
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let code = answer.load(Ordering::SeqCst);
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Self { url, status, hits }
    }
}

/// Seven lanes whose gates depend only on time, windows, recorded state and one HTTP probe:
/// a group, a hard and a soft window (and the starvation guard), a probe that fails for a
/// while, a contention gate, a cron lane, and a lane whose runs fail and are retried. Intervals and
/// rechecks are uneven, so the wake times of different lanes rarely meet.
fn scenario(home: &Home, url: &str) {
    let cmd = "command:\n  argv: [\"true\"]\n  timeout: 1m\n";
    home.lane(
        "backup",
        &format!("schedule:\n  every: 6h\ngroup: heavy\npriority: 0\n{cmd}"),
    );
    home.lane(
        "nightly",
        &format!(
            "schedule:\n  every: 24h\n  timezone: Europe/Berlin\npreconditions:\n  - use: backup-recency\n    with: {{ lane: backup, max_age: 8h }}\n  - use: off-peak\n    with: {{ window: \"01:00-04:00\" }}\n    soft: true\nmax_deferral: 2h55m\nrecheck: 11m\ngroup: heavy\npriority: 5\n{cmd}"
        ),
    );
    home.lane(
        "compact",
        &format!(
            "schedule:\n  every: 12h\npreconditions:\n  - use: off-peak\n    with: {{ window: \"02:00-05:00\" }}\nrecheck: 17m\n{cmd}"
        ),
    );
    home.lane(
        "probe",
        &format!(
            "schedule:\n  every: 67m\npreconditions:\n  - use: provider-probe\n    with: {{ url: \"{url}\", timeout: 2s }}\nrecheck: 13m\n{cmd}"
        ),
    );
    home.lane(
        "report",
        &format!(
            "schedule:\n  every: 5h\npreconditions:\n  - use: contention\n    with: {{ peers: [backup] }}\nrecheck: 7m\n{cmd}"
        ),
    );
    // At 07:31 past every third hour: off the whole minutes where the other lanes wake.
    home.lane(
        "sweep",
        &format!("schedule:\n  cron: \"31 7 */3 * * *\"\n{cmd}"),
    );
    home.lane(
        "flaky",
        "schedule:\n  every: 4h\nretry: { delay: 9m, window: 25m }\ncommand:\n  argv: [\"false\"]\n  timeout: 1m\n",
    );
}

/// A lane's timeline as both sides are compared: triggers (when, source) and deferral
/// episodes (reason, gate, from, to, checks), built from decisions with the simulation's rule.
#[derive(Debug, Default, Clone)]
struct Timeline {
    triggers: Vec<(Timestamp, String)>,
    deferrals: Vec<Episode>,
}

#[derive(Debug, Clone)]
struct Episode {
    reason: String,
    gate: String,
    from: Timestamp,
    to: Option<Timestamp>,
    checks: u64,
}

fn ts(v: &Value) -> Timestamp {
    v.as_str().expect("a time").parse().expect("RFC 3339")
}

/// The daemon's decisions, pass by pass, folded into timelines.
fn timelines_of(passes: &[Vec<Value>]) -> std::collections::BTreeMap<String, Timeline> {
    let mut out: std::collections::BTreeMap<String, Timeline> = Default::default();
    for pass in passes {
        for d in pass {
            let lane = d["lane"].as_str().expect("lane").to_string();
            let at = ts(&d["at"]);
            let t = out.entry(lane).or_default();
            let held = d["outcome"] == "deferred" && d["gate"] != "schedule";
            let (reason, gate) = (
                d["reason"].as_str().unwrap_or("").to_string(),
                d["gate"].as_str().unwrap_or("").to_string(),
            );
            match t.deferrals.last_mut() {
                Some(e) if e.to.is_none() && held && e.reason == reason && e.gate == gate => {
                    e.checks += 1
                }
                last => {
                    if let Some(e) = last.filter(|e| e.to.is_none()) {
                        e.to = Some(at);
                    }
                    if held {
                        t.deferrals.push(Episode {
                            reason,
                            gate,
                            from: at,
                            to: None,
                            checks: 1,
                        });
                    }
                }
            }
            if d["outcome"] == "trigger" {
                t.triggers
                    .push((at, d["source"].as_str().expect("source").to_string()));
            }
        }
    }
    out
}

/// The simulation's `--json` report as timelines.
fn timelines_of_report(report: &Value) -> std::collections::BTreeMap<String, Timeline> {
    let mut out = std::collections::BTreeMap::new();
    for lane in report["lanes"].as_array().expect("lanes") {
        let triggers = lane["triggers"]
            .as_array()
            .expect("triggers")
            .iter()
            .map(|t| {
                (
                    ts(&t["at"]),
                    t["source"].as_str().expect("source").to_string(),
                )
            })
            .collect();
        let deferrals = lane["deferrals"]
            .as_array()
            .expect("deferrals")
            .iter()
            .map(|e| Episode {
                reason: e["reason"].as_str().expect("reason").to_string(),
                gate: e["gate"].as_str().expect("gate").to_string(),
                from: ts(&e["from"]),
                to: (!e["to"].is_null()).then(|| ts(&e["to"])),
                checks: e["checks"].as_u64().expect("checks"),
            })
            .collect();
        out.insert(
            lane["lane"].as_str().expect("lane").to_string(),
            Timeline {
                triggers,
                deferrals,
            },
        );
    }
    out
}

/// How far apart the two sides' times of the same event may be: the rehearsed daemon's clock
/// starts each pass a little after the instant asked (process start, and the runs of the pass
/// before), and those moments add up along a chain of rechecks.
const TOLERANCE: SignedDuration = SignedDuration::from_secs(15);

/// Compares lane by lane: the same triggers (source; time within [`TOLERANCE`]) and the same
/// deferral episodes (reason, gate and number of checks exactly; times within the tolerance).
/// Returns the largest time difference seen.
fn compare(
    daemon: &std::collections::BTreeMap<String, Timeline>,
    sim: &std::collections::BTreeMap<String, Timeline>,
) -> Result<SignedDuration, String> {
    let mut worst = SignedDuration::ZERO;
    let mut near = |what: &str, a: Timestamp, b: Timestamp| -> Result<(), String> {
        let d = (a - b).abs();
        let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
        worst = worst.max(d);
        if d > TOLERANCE {
            return Err(format!("{what}: daemon {a}, simulation {b}"));
        }
        Ok(())
    };
    let lanes: std::collections::BTreeSet<&String> = daemon.keys().chain(sim.keys()).collect();
    for lane in lanes {
        let (d, s) = (
            daemon.get(lane).cloned().unwrap_or_default(),
            sim.get(lane).cloned().unwrap_or_default(),
        );
        let sources = |t: &Timeline| t.triggers.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
        if sources(&d) != sources(&s) {
            return Err(format!(
                "{lane}: triggers differ:\n  daemon     {:?}\n  simulation {:?}",
                d.triggers, s.triggers
            ));
        }
        for (a, b) in d.triggers.iter().zip(&s.triggers) {
            near(&format!("{lane}: trigger {}", a.1), a.0, b.0)?;
        }
        let shape = |t: &Timeline| {
            t.deferrals
                .iter()
                .map(|e| (e.reason.clone(), e.gate.clone(), e.checks, e.to.is_some()))
                .collect::<Vec<_>>()
        };
        if shape(&d) != shape(&s) {
            return Err(format!(
                "{lane}: deferral episodes differ:\n  daemon     {:?}\n  simulation {:?}",
                d.deferrals, s.deferrals
            ));
        }
        for (a, b) in d.deferrals.iter().zip(&s.deferrals) {
            near(&format!("{lane}: {} from", a.reason), a.from, b.from)?;
            if let (Some(x), Some(y)) = (a.to, b.to) {
                near(&format!("{lane}: {} to", a.reason), x, y)?;
            }
        }
    }
    Ok(worst)
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

#[test]
fn simulation_and_daemon_agree() {
    // Three days ago, 18:00 UTC: in the past, as a rehearsal must be.
    let day = (Timestamp::now() - SignedDuration::from_hours(72))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let from = day
        .at(18, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("time")
        .timestamp();
    let to = from + SignedDuration::from_mins(12 * 60 + 30);
    let down_from = from + SignedDuration::from_mins(4 * 60 + 41);
    let down_to = from + SignedDuration::from_mins(5 * 60 + 52);
    let server = ScriptedServer::start();
    let status_at = |t: Timestamp| {
        if t >= down_from && t < down_to {
            503
        } else {
            200
        }
    };

    let facts = format!(
        "http:\n  \"{url}\":\n    - {{ status: 200 }}\n    - {{ from: \"{down_from}\", to: \"{down_to}\", status: 503 }}\nruns:\n  flaky:\n    - {{ outcome: failure }}\n",
        url = server.url
    );
    let sim_home = Home::standard();
    scenario(&sim_home, &server.url);
    sim_home.write("facts.yaml", &facts);
    let facts_path = sim_home.path().join("facts.yaml");
    let simulate = |extra: &[&str]| -> Value {
        let (f, t) = (from.to_string(), to.to_string());
        let mut args = vec![
            "simulate",
            "--from",
            &f,
            "--to",
            &t,
            "--durations",
            "*=0",
            "--json",
            "--facts",
            facts_path.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        serde_json::from_str(&sim_home.ok(&args)).expect("simulate --json")
    };
    let report = simulate(&[]);
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "the simulation probed nothing"
    );

    // The daemon, one pass at a time, at the instants it would wake itself: its logged next
    // wake, or, after a pass that started runs, as soon as they ended (an event).
    let home = Home::standard();
    scenario(&home, &server.url);
    let mut passes: Vec<Vec<Value>> = Vec::new();
    let mut at = from;
    while at < to {
        server.status.store(status_at(at), Ordering::SeqCst);
        let started = Instant::now();
        let out = home
            .command(&[
                "run",
                "--once",
                "--at",
                &at.to_string(),
                "--json",
                "--log-format",
                "json",
            ])
            .env("LANEKEEPER_LOG", "debug")
            .output()
            .expect("run --once");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run --once --at {at}: {stderr}");
        let took = SignedDuration::try_from(started.elapsed()).expect("elapsed");
        let decisions: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON decision"))
            .collect();
        let wake = logged_wake(&stderr).unwrap_or_else(|| panic!("no next wake logged: {stderr}"));
        let started_runs = decisions.iter().any(|d| d["outcome"] == "trigger");
        passes.push(decisions);
        let next = if started_runs {
            wake.min(at + took)
        } else {
            wake
        };
        at = next.max(at + SignedDuration::from_millis(1));
    }

    let daemon = timelines_of(&passes);
    let sim = timelines_of_report(&report);
    let worst = compare(&daemon, &sim).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} daemon passes, {} simulated; largest time difference {worst:?}",
        passes.len(),
        report["passes"]
    );
    assert_eq!(
        report["passes"].as_u64(),
        Some(passes.len() as u64),
        "both made the same passes"
    );

    // What the scenario covers, so agreement is not agreement about nothing.
    let reasons: std::collections::BTreeSet<String> = sim
        .values()
        .flat_map(|t| t.deferrals.iter().map(|e| e.reason.clone()))
        .collect();
    for r in [
        "backup-stale",
        "outside-off-peak",
        "provider-unreachable",
        "peer-task-running",
    ] {
        assert!(reasons.contains(r), "no {r} deferral in {reasons:?}");
    }
    let sources: std::collections::BTreeSet<String> = sim
        .values()
        .flat_map(|t| t.triggers.iter().map(|x| x.1.clone()))
        .collect();
    for s in [
        "periodic-sweep",
        "cron",
        "starvation-guard",
        "failed-run-retry",
    ] {
        assert!(sources.contains(s), "no {s} trigger in {sources:?}");
    }

    // The comparison can fail: a simulation that ignores the wake rule does not agree.
    let stepped = timelines_of_report(&simulate(&["--step", "10m"]));
    assert!(
        compare(&daemon, &stepped).is_err(),
        "a fixed 10m step agreed with the daemon"
    );
}

/// `simulate` with arguments, on `home`: (exit code, stdout, stderr).
fn sim(home: &Home, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["simulate"];
    all.extend_from_slice(args);
    let out = home.run(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_question_the_facts_leave_open_is_an_error_naming_the_lane_gate_and_what_was_asked() {
    let home = Home::standard();
    home.lane(
        "probe",
        "schedule:\n  every: 1h\npreconditions:\n  - use: provider-probe\n    with: { url: \"http://127.0.0.1:9/x\" }\ncommand:\n  argv: [\"true\"]\n  timeout: 1m\n",
    );
    let range = ["--from", "2026-11-01T00:00:00Z", "--to", "1d"];
    let (code, out, err) = sim(&home, &range);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(
            "lane `probe`, gate `provider-probe` asked for http GET http://127.0.0.1:9/x at 2026-11-01T00:00:00Z"
        ),
        "{err}"
    );
    assert!(out.is_empty(), "no timeline made up: {out}");

    // Answered until noon only: the error comes at noon.
    home.write(
        "facts.yaml",
        "http:\n  \"http://127.0.0.1:9/x\":\n    - { to: 2026-11-01T12:00:00Z, status: 200 }\n",
    );
    let facts = home.path().join("facts.yaml");
    let mut args = range.to_vec();
    args.extend(["--facts", facts.to_str().expect("utf8")]);
    let (code, _, err) = sim(&home, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("at 2026-11-01T12:00:00Z"), "{err}");

    // A metric, by its name.
    let home = Home::standard();
    home.write(
        "lanekeeper.yaml",
        "metrics:\n  queue: { file: state/queue }\n",
    );
    home.lane(
        "busy",
        "schedule:\n  every: 1h\npreconditions:\n  - use: contention\n    with: { metric: queue, above: 10 }\ncommand:\n  argv: [\"true\"]\n  timeout: 1m\n",
    );
    let (code, _, err) = sim(&home, &range);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("lane `busy`, gate `contention` asked for metric queue"),
        "{err}"
    );
    home.write(
        "facts.yaml",
        "metrics:\n  queue:\n    - { value: 3 }\n    - { from: 2026-11-01T05:00:00Z, to: 2026-11-01T07:00:00Z, value: 50 }\n",
    );
    let facts = home.path().join("facts.yaml");
    let mut args = range.to_vec();
    args.extend(["--facts", facts.to_str().expect("utf8"), "--json"]);
    let (code, out, err) = sim(&home, &args);
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).expect("json");
    let lane = &report["lanes"][0];
    assert_eq!(
        lane["deferrals"][0]["reason"], "substrate-contended",
        "{lane}"
    );
    assert_eq!(
        lane["deferrals"][0]["from"], "2026-11-01T05:00:00Z",
        "{lane}"
    );
    assert_eq!(lane["deferrals"][0]["to"], "2026-11-01T07:00:00Z", "{lane}");
    assert_eq!(lane["run_length_basis"], "timeout", "{lane}");

    // A facts metric the home does not know is a usage error.
    home.write("facts.yaml", "metrics:\n  qeue: [ { value: 3 } ]\n");
    let (code, _, err) = sim(&home, &args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`qeue`"), "{err}");
}

#[test]
fn a_simulation_writes_nothing_and_models_runs_from_the_history() {
    let home = Home::standard();
    home.lane(
        "quick",
        &crate::harness::lane_yaml("1h", "", &crate::harness::sh("sleep 0.2")),
    );
    home.lane(
        "slow",
        "schedule:\n  every: 1d\ncommand:\n  argv: [\"false\"]\n  timeout: 45m\n",
    );
    home.lane("bare", &crate::harness::lane_yaml("1h", "", "[\"true\"]"));
    let range = ["--from", "2026-11-01T00:00:00Z", "--to", "3h", "--json"];

    // No history: a lane with neither a given length nor a timeout cannot be simulated.
    let (code, _, err) = sim(&home, &range);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("lane `bare`") && err.contains("--durations bare="),
        "{err}"
    );
    assert!(
        !home.path().join("state").exists(),
        "simulate created state/"
    );

    home.ok(&["run", "--once", "--at", "2026-11-01T00:00:00Z"]);
    let store = || {
        ["lanekeeper.db", "lanekeeper.db-wal"]
            .map(|f| std::fs::read(home.path().join("state").join(f)).unwrap_or_default())
    };
    let before = store();
    let range = ["--from", "2026-11-01T00:10:00Z", "--to", "3h", "--json"];
    let mut args = range.to_vec();
    args.extend(["--durations", "bare=5m"]);
    let (code, out, err) = sim(&home, &args);
    assert_eq!(code, Some(0), "{err}");
    assert!(store() == before, "simulate wrote to the store");
    let report: Value = serde_json::from_str(&out).expect("json");
    let lane = |name: &str| lane_in(&report, name).clone();
    assert_eq!(
        lane("quick")["run_length_basis"],
        "median of 1 recorded run"
    );
    // Its one recorded run failed: only successful runs give a length.
    assert_eq!(lane("slow")["run_length_basis"], "timeout");
    assert_eq!(lane("slow")["run_length"], "45m");
    assert_eq!(lane("bare")["run_length_basis"], "given");
    // The history says every lane ran at 00:00, so nothing is due before 01:00.
    let first = lane("bare")["triggers"][0]["at"]
        .as_str()
        .expect("at")
        .to_string();
    assert!(first.starts_with("2026-11-01T01:00:00"), "{first}");
    assert_eq!(lane("slow")["triggers"], serde_json::json!([]));
}

#[test]
fn the_text_timeline_is_in_the_lane_zone_and_has_no_progress_bar_when_piped() {
    let home = Home::standard();
    home.lane(
        "night",
        "schedule:\n  every: 24h\n  timezone: Europe/Berlin\npreconditions:\n  - use: off-peak\n    with: { window: \"01:00-04:00\" }\nrecheck: 30m\ncommand:\n  argv: [\"true\"]\n  timeout: 10m\n",
    );
    home.write(
        "facts.yaml",
        "runs:\n  night:\n    - { on: 2026-11-02, outcome: failure, duration: 20m }\n",
    );
    let facts = home.path().join("facts.yaml");
    let (code, out, err) = sim(
        &home,
        &[
            "--from",
            "2026-11-01T12:00:00Z",
            "--to",
            "2d",
            "--facts",
            facts.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("simulating"),
        "a progress bar on a pipe: {err}"
    );
    assert!(
        out.contains("night  (times in Europe/Berlin; runs last 10m, timeout)"),
        "{out}"
    );
    assert!(
        out.contains("Sun 2026-11-01 13:00:00  deferred  outside-off-peak at off-peak, until Mon 2026-11-02 01:00:00 (12h), 24 checks"),
        "{out}"
    );
    assert!(
        out.contains("Mon 2026-11-02 01:00:00  trigger   periodic-sweep:86400000"),
        "{out}"
    );
    // The facts make the run on that day (UTC, the facts' zone) take 20m, past its timeout.
    assert!(
        out.contains("Mon 2026-11-02 01:00:00  run       10m, failure (timed out)"),
        "{out}"
    );
    assert!(
        out.contains("Tue 2026-11-03 01:00:00  run       10m, success"),
        "{out}"
    );

    // --tz shows every lane in one zone.
    let (_, out, _) = sim(
        &home,
        &[
            "--from",
            "2026-11-01T12:00:00Z",
            "--to",
            "2d",
            "--tz",
            "UTC",
        ],
    );
    assert!(out.contains("Mon 2026-11-02 00:00:00  trigger"), "{out}");
}

#[test]
fn on_a_terminal_a_long_simulation_shows_progress() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no script(1) to give the binary a terminal");
        return;
    }
    let home = Home::standard();
    home.lane("tick", &crate::harness::lane_yaml("1h", "", "[\"true\"]"));
    let cmd = format!(
        "{} --home {} simulate --from 2026-01-01T00:00:00Z --to 90d --durations '*=0'",
        env!("CARGO_BIN_EXE_lanekeeper"),
        home.path().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("simulating"),
        "no progress bar on a terminal: {text:.400}"
    );
    assert!(text.contains("Simulated"), "{text:.400}");
}

#[test]
fn calendar_moves_fires_into_windows_and_names_the_gates_it_cannot_foresee() {
    let home = Home::standard();
    home.lane(
        "backup",
        &crate::harness::lane_yaml("24h", "", "[\"true\"]"),
    );
    home.lane(
        "sandman",
        "schedule:\n  every: 24h\n  timezone: Europe/Berlin\npreconditions:\n  - use: backup-recency\n    with: { lane: backup, max_age: 36h }\n  - use: off-peak\n    with: { window: \"01:00-06:00\" }\n    soft: true\nmax_deferral: 12h\ncommand:\n  argv: [\"true\"]\n",
    );
    home.lane(
        "hurry",
        "schedule:\n  every: 24h\npreconditions:\n  - use: off-peak\n    with: { window: \"03:00-04:00\" }\n    soft: true\nmax_deferral: 1h\ncommand:\n  argv: [\"true\"]\n",
    );
    let out = home.ok(&[
        "calendar",
        "--from",
        "2026-12-01T20:00:00Z",
        "--count",
        "2",
        "--json",
    ]);
    let cal: Value = serde_json::from_str(&out).expect("json");
    let lane = |name: &str| lane_in(&cal, name).clone();
    let sandman = lane("sandman");
    assert_eq!(
        sandman["schedule"],
        serde_json::json!(["2026-12-01T20:00:00Z", "2026-12-02T20:00:00Z"])
    );
    // 01:00 Berlin is 00:00Z; the next day counts from the moved fire.
    assert_eq!(
        sandman["fires"][0]["at"], "2026-12-02T00:00:00Z",
        "{sandman}"
    );
    assert_eq!(
        sandman["fires"][0]["moved_by"],
        serde_json::json!(["off-peak"])
    );
    assert_eq!(
        sandman["fires"][1]["at"], "2026-12-03T00:00:00Z",
        "{sandman}"
    );
    assert_eq!(sandman["assumed"], serde_json::json!(["backup-recency"]));
    // Held an hour outside its window, the starvation guard waives it.
    let hurry = lane("hurry");
    assert_eq!(hurry["fires"][0]["at"], "2026-12-01T21:00:00Z", "{hurry}");
    assert_eq!(hurry["fires"][0]["forced"], true, "{hurry}");
    assert_eq!(lane("backup")["assumed"], serde_json::json!([]));

    let text = home.ok(&[
        "calendar",
        "sandman",
        "--from",
        "2026-12-01T20:00:00Z",
        "--count",
        "1",
    ]);
    assert!(
        text.contains("sandman  every 24h (times in Europe/Berlin)"),
        "{text}"
    );
    assert!(
        text.contains("Tue 2026-12-01 21:00:00  Wed 2026-12-02 01:00:00  moved by off-peak"),
        "{text}"
    );
    assert!(
        text.contains("assumed to pass (they depend on runtime state): backup-recency"),
        "{text}"
    );
}

#[test]
fn status_shows_an_off_peak_lane_next_due_inside_its_window() {
    let home = Home::standard();
    let now = Timestamp::now();
    let utc = jiff::tz::TimeZone::UTC;
    let opens = (now + SignedDuration::from_hours(2)).to_zoned(utc.clone());
    let closes = (now + SignedDuration::from_hours(3)).to_zoned(utc.clone());
    let window = format!("{}-{}", opens.strftime("%H:%M"), closes.strftime("%H:%M"));
    home.lane(
        "night",
        &format!("schedule:\n  every: 1h\npreconditions:\n  - use: off-peak\n    with: {{ window: \"{window}\" }}\ncommand:\n  argv: [\"true\"]\n"),
    );
    let ran = (now - SignedDuration::from_mins(30)).to_string();
    home.ok(&["record", "night", "--outcome", "success", "--at", &ran]);
    let expected = opens
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .expect("time")
        .timestamp();
    let s = home.status("night");
    let next: Timestamp = s["next_due_at"]
        .as_str()
        .expect("next due")
        .parse()
        .expect("time");
    // By the schedule alone it would be due in 30 minutes, outside the window.
    assert_eq!(next, expected, "{s}");
    let text = home.ok(&["status"]);
    assert!(text.contains("in 1h"), "{text}");
}

/// Three lanes whose decisions depend on a probe, a window and how runs end: what a replay of
/// their recorded history must reproduce.
fn replay_scenario(home: &Home, url: &str) {
    let cmd = "command:\n  argv: [\"true\"]\n  timeout: 1m\n";
    home.lane(
        "probe",
        &format!(
            "schedule:\n  every: 55m\npreconditions:\n  - use: provider-probe\n    with: {{ url: \"{url}\", timeout: 2s }}\nrecheck: 10m\n{cmd}"
        ),
    );
    home.lane(
        "compact",
        &format!(
            "schedule:\n  every: 145m\npreconditions:\n  - use: off-peak\n    with: {{ window: \"02:00-05:00\" }}\nrecheck: 10m\n{cmd}"
        ),
    );
    home.lane(
        "flaky",
        "schedule:\n  every: 115m\nretry: { delay: 15m, window: 50m }\ncommand:\n  argv: [\"false\"]\n  timeout: 1m\n",
    );
}

/// Real passes (`run --once --at`) every `step` from `from` to `to`, the server answering as
/// `status_at` says: each pass's decisions.
fn rehearse(
    home: &Home,
    server: &ScriptedServer,
    from: Timestamp,
    to: Timestamp,
    step: SignedDuration,
    status_at: &dyn Fn(Timestamp) -> u16,
) -> Vec<Vec<Value>> {
    let mut passes = Vec::new();
    let mut at = from;
    while at < to {
        server.status.store(status_at(at), Ordering::SeqCst);
        let out = home.ok(&["run", "--once", "--at", &at.to_string(), "--json"]);
        passes.push(
            out.lines()
                .map(|l| serde_json::from_str(l).expect("a JSON decision"))
                .collect(),
        );
        at += step;
    }
    passes
}

/// Midnight UTC three days ago: in the past, as recorded history is.
fn three_days_ago() -> Timestamp {
    (Timestamp::now() - SignedDuration::from_hours(72))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .at(0, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("time")
        .timestamp()
}

#[test]
fn replay_reproduces_the_recorded_decisions_and_a_gap_in_history_is_an_error() {
    let from = three_days_ago();
    let to = from + SignedDuration::from_hours(6);
    let (down_from, down_to) = (
        from + SignedDuration::from_mins(125),
        from + SignedDuration::from_mins(195),
    );
    let server = ScriptedServer::start();
    let home = Home::standard();
    replay_scenario(&home, &server.url);
    let step = SignedDuration::from_mins(10);
    let passes = rehearse(&home, &server, from, to, step, &|t| {
        if t >= down_from && t < down_to {
            503
        } else {
            200
        }
    });
    let hits = server.hits.load(Ordering::SeqCst);

    let (f, t) = (from.to_string(), to.to_string());
    let report: Value = serde_json::from_str(&home.ok(&[
        "simulate", "--replay", "--from", &f, "--to", &t, "--step", "10m", "--json",
    ]))
    .expect("simulate --json");
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        hits,
        "the replay probed nothing"
    );
    let daemon = timelines_of(&passes);
    let replayed = timelines_of_report(&report);
    compare(&daemon, &replayed).unwrap_or_else(|e| panic!("{e}"));
    let reasons: std::collections::BTreeSet<String> = replayed
        .values()
        .flat_map(|t| t.deferrals.iter().map(|e| e.reason.clone()))
        .collect();
    for r in ["provider-unreachable", "outside-off-peak"] {
        assert!(reasons.contains(r), "no {r} deferral in {reasons:?}");
    }
    let flaky = &lane_in(&report, "flaky")["runs"];
    assert!(
        flaky
            .as_array()
            .expect("runs")
            .iter()
            .all(|r| r["result"] == "failure"),
        "the recorded failures are replayed: {flaky}"
    );
    assert!(
        replayed["flaky"]
            .triggers
            .iter()
            .any(|x| x.1 == "failed-run-retry"),
        "{:?}",
        replayed["flaky"]
    );

    // With runs modelled instead, flaky's runs succeed and nothing is retried.
    let modelled: Value = serde_json::from_str(&home.ok(&[
        "simulate",
        "--replay",
        "--modelled-runs",
        "--from",
        &f,
        "--to",
        &t,
        "--step",
        "10m",
        "--json",
    ]))
    .expect("simulate --json");
    assert!(
        !timelines_of_report(&modelled)["flaky"]
            .triggers
            .iter()
            .any(|x| x.1 == "failed-run-retry")
    );

    // An hour before the history starts, the probe's question has no recorded answer.
    let early = from - SignedDuration::from_hours(1);
    let (code, out, err) = sim(
        &home,
        &["--replay", "--from", &early.to_string(), "--to", &f],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(&format!(
            "lane `probe`, gate `provider-probe` asked for http GET {} at {early}",
            server.url
        )),
        "{err}"
    );
    assert!(err.contains("recorded history has no observation"), "{err}");
    assert!(out.is_empty(), "no timeline made up: {out}");
}

/// A copy of the home's rules/ in `dir`, with `edit` applied to each file's text.
fn copy_rules(home: &Home, dir: &str, edit: &dyn Fn(&str, String) -> String) -> String {
    let to = home.path().join(dir);
    std::fs::create_dir_all(&to).expect("mkdir");
    for entry in std::fs::read_dir(home.path().join("rules")).expect("rules/") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).expect("read");
        std::fs::write(to.join(&name), edit(&name, text)).expect("write");
    }
    to.to_str().expect("utf8").to_string()
}

#[test]
fn diff_finds_a_planted_change_and_nothing_in_an_unchanged_copy() {
    let from = three_days_ago();
    let to = from + SignedDuration::from_hours(6);
    let server = ScriptedServer::start();
    let home = Home::standard();
    replay_scenario(&home, &server.url);
    let (down_from, down_to) = (
        from + SignedDuration::from_mins(125),
        from + SignedDuration::from_mins(195),
    );
    rehearse(
        &home,
        &server,
        from,
        to,
        SignedDuration::from_mins(10),
        &|t| {
            if t >= down_from && t < down_to {
                503
            } else {
                200
            }
        },
    );
    let (f, t) = (from.to_string(), to.to_string());
    let diff = |rules: &str, json: bool| {
        // Passes at the recorded instants, so every question has the answer of its own time.
        let mut args = vec![
            "diff", "--rules", rules, "--from", &f, "--to", &t, "--step", "10m",
        ];
        if json {
            args.push("--json");
        }
        let out = home.run(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let same = copy_rules(&home, "same", &|_, text| text);
    let (code, out, err) = diff(&same, false);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("No differences"), "{out}");

    // A narrower off-peak window: compact waits an hour longer and triggers once, not twice.
    let narrow = copy_rules(&home, "narrow", &|name, text| {
        if name.starts_with("compact") {
            text.replace("02:00-05:00", "03:00-05:00")
        } else {
            text
        }
    });
    let (code, out, err) = diff(&narrow, false);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("compact: 1 trigger instead of 2"), "{out}");
    assert!(out.contains("longer, by outside-off-peak"), "{out}");
    assert!(!out.contains("probe:") && !out.contains("flaky:"), "{out}");
    let (code, out, _) = diff(&narrow, true);
    assert_eq!(code, Some(1));
    let doc: Value = serde_json::from_str(&out).expect("diff --json");
    assert_eq!(doc["differs"], true);
    let lanes = doc["lanes"].as_array().expect("lanes");
    assert_eq!(lanes.len(), 1, "{doc}");
    assert_eq!(lanes[0]["lane"], "compact");
    assert_eq!(lanes[0]["current"]["triggers"], 2);
    assert_eq!(lanes[0]["candidate"]["triggers"], 1);

    // A removed gate: the probe no longer holds its lane back while the server is down.
    let ungated = copy_rules(&home, "ungated", &|name, text| {
        if name.starts_with("probe") {
            let cut = text.find("preconditions:").expect("preconditions");
            let rest = text.find("recheck:").expect("recheck");
            format!("{}{}", &text[..cut], &text[rest..])
        } else {
            text
        }
    });
    let (code, out, err) = diff(&ungated, false);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("probe: deferred"), "{out}");
    assert!(out.contains("shorter, by provider-unreachable"), "{out}");

    // Candidate rules that do not load are a usage error.
    let broken = copy_rules(&home, "broken", &|_, text| text.replace("every:", "evry:"));
    let (code, _, err) = diff(&broken, false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("candidate rules"), "{err}");
}

/// A small home for charts: an off-peak lane deferred until its window, and a lane whose runs
/// fail; the facts say so.
pub fn chart_home() -> Home {
    let home = Home::standard();
    home.lane(
        "compact",
        "schedule:\n  every: 12h\npreconditions:\n  - use: off-peak\n    with: { window: \"02:00-05:00\" }\nrecheck: 10m\ncommand:\n  argv: [\"true\"]\n  timeout: 1m\n",
    );
    home.lane(
        "flaky",
        "schedule:\n  every: 2h\ncommand:\n  argv: [\"true\"]\n  timeout: 1m\n",
    );
    home.write(
        "facts.yaml",
        "runs:\n  flaky:\n    - { outcome: failure }\n",
    );
    home
}

/// `simulate --svg` of 12 fixed hours of [`chart_home`] (axis in Europe/Berlin), written to
/// `name` in the home; `extra` arguments are added. Returns the chart and the command's stdout.
pub fn draw(home: &Home, name: &str, extra: &[&str]) -> (String, String) {
    let path = home.path().join(name);
    let facts = home.path().join("facts.yaml");
    let mut args = vec![
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "12h",
        "--durations",
        "*=5m",
        "--tz",
        "Europe/Berlin",
        "--facts",
        facts.to_str().expect("utf8"),
        "--svg",
        path.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = sim(home, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    (
        std::fs::read_to_string(path).expect("the SVG is written"),
        out,
    )
}

#[test]
fn svg_is_a_deterministic_gantt_chart_with_lanes_legend_and_axis() {
    let home = chart_home();
    let chart = |name: &str| draw(&home, name, &[]).0;
    let svg = chart("a.svg");
    assert_eq!(
        svg,
        chart("b.svg"),
        "the same simulation draws the same bytes"
    );
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    for lane in ["compact", "flaky"] {
        assert!(svg.contains(&format!("data-lane=\"{lane}\"")), "{svg}");
    }
    for entry in [
        "run: success",
        "run: failure",
        "trigger",
        "forced trigger",
        "deferred: outside-off-peak",
    ] {
        assert!(
            svg.contains(&format!(">{entry}</text>")),
            "legend lacks {entry}: {svg}"
        );
    }
    // The axis in the chosen zone: 00:00Z is 01:00 in Berlin.
    assert!(svg.contains("times in Europe/Berlin"), "{svg}");
    assert!(svg.contains(">11-01 01:00</text>"), "{svg}");
    assert!(svg.contains("<title>run: failure</title>"), "{svg}");
}

#[test]
fn svg_matches_its_reviewed_snapshot() {
    let (svg, _) = draw(&chart_home(), "chart.svg", &[]);
    // A change to the chart shows here as a diff to review (`cargo insta review`); CI (CI=true)
    // never writes snapshots, so an unreviewed change fails it.
    insta::assert_snapshot!("simulate_svg", svg);
}

/// A number attribute of the `<svg>` element, e.g. `width`.
fn svg_attr(svg: &str, name: &str) -> u32 {
    let head = svg.split('>').next().unwrap_or("");
    let value = head
        .split(&format!(" {name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {name} on <svg>: {head}"));
    value
        .parse::<f64>()
        .unwrap_or_else(|e| panic!("{name}={value}: {e}"))
        .ceil() as u32
}

#[test]
fn svg_renders_in_chromium_to_a_png_kept_as_an_artefact() {
    let Some(browser) = crate::web::chromium() else {
        eprintln!("skipped: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let home = chart_home();
    let (svg, _) = draw(&home, "chart.svg", &[]);
    let (width, height) = (svg_attr(&svg, "width"), svg_attr(&svg, "height"));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).expect("artefact dir");
    let shot = dir.join("simulate.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().expect("profile");
    let out = std::process::Command::new(&browser)
        .args(crate::web::HEADLESS)
        .arg("--hide-scrollbars")
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!(
            "file://{}",
            home.path().join("chart.svg").display()
        ))
        .output()
        .expect("run chromium");
    let bytes = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
    let frame = reader.next_frame(&mut pixels).expect("PNG pixels");
    assert_eq!(
        (frame.width, frame.height),
        (width, height),
        "the screenshot is the chart's size"
    );
    let pixels = &pixels[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    // Non-blank: besides the white background, the run colours are there (success green
    // #2e7d32, failure red #c62828), and the deferral colour, as the SVG fills them.
    let has = |rgb: [u8; 3]| {
        pixels
            .chunks(channels)
            .any(|p| p.len() >= 3 && p[..3].iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 8))
    };
    assert!(has([0xff, 0xff, 0xff]), "white background");
    assert!(has([0x2e, 0x7d, 0x32]), "a successful run");
    assert!(has([0xc6, 0x28, 0x28]), "a failed run");
    assert!(has([0x90, 0xca, 0xf9]), "a deferral");
    eprintln!("the chart as Chromium draws it: {}", shot.display());
}
