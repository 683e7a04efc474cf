//! `simulate` and `calendar` against the binary; and the acceptance test of issue 11: the
//! simulation and the daemon agree.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::harness::Home;

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

/// Six lanes whose gates depend only on time, windows, recorded state and one HTTP probe:
/// a group, a hard and a soft window (and the starvation guard), a probe that fails for a
/// while, a contention gate, and a lane whose runs fail and are retried. Intervals and
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
    for s in ["periodic-sweep", "starvation-guard", "failed-run-retry"] {
        assert!(sources.contains(s), "no {s} trigger in {sources:?}");
    }

    // The comparison can fail: a simulation that ignores the wake rule does not agree.
    let stepped = timelines_of_report(&simulate(&["--step", "10m"]));
    assert!(
        compare(&daemon, &stepped).is_err(),
        "a fixed 10m step agreed with the daemon"
    );
}
