//! The built binary on a shared PostgreSQL store: every command on it, `state copy` from an
//! SQLite home, and three replicas of one home electing one leader, failing over when it is
//! killed, and fencing it when it wakes from a stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Home, kill, lane_in, sh};
use crate::pg_harness::Postgres;

/// A home whose lanekeeper.yaml names the server's database as its state.
pub(crate) fn shared_home(pg: &Postgres, extra: &str) -> Home {
    let home = Home::standard();
    home.write(
        "lanekeeper.yaml",
        &format!("state: \"{}\"\n{extra}", pg.url()),
    );
    home
}

pub(crate) fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

pub(crate) fn eventually(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_command_works_on_postgresql_and_nothing_is_written_to_the_home() {
    let Some(pg) = Postgres::start() else { return };
    let home = shared_home(&pg, "");
    home.lane(
        "alpha",
        &format!(
            "schedule: {{ every: 1h }}\ncommand: {{ argv: {} }}\n",
            sh("echo alpha ran")
        ),
    );
    home.lane(
        "beta",
        &format!(
            "schedule: {{ every: 1h }}\ncommand: {{ argv: {} }}\n",
            sh("exit 3")
        ),
    );

    let out = home.run(&["run", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = json(&home.run(&["status", "--json"]));
    assert_eq!(
        lane_in(&status, "alpha")["last_result"],
        "success",
        "{status}"
    );
    assert_eq!(
        lane_in(&status, "beta")["last_result"],
        "failure",
        "{status}"
    );
    // The history is in PostgreSQL: the home has no database of its own.
    assert!(!home.path().join("state/lanekeeper.db").exists());
    let rows: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM runs", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 2);

    // Pause, and everything that reads it.
    let out = home.run(&["pause", "alpha", "--note", "disk swap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = json(&home.run(&["status", "--json"]));
    assert_eq!(lane_in(&status, "alpha")["paused"]["note"], "disk swap");
    let checked = json(&home.run(&["check", "alpha", "--json"]));
    assert_eq!(checked["lane"], "alpha", "{checked}");
    let out = home.run(&["resume", "alpha"]);
    assert!(out.status.success());

    let explain = String::from_utf8_lossy(&home.run(&["explain", "beta"]).stdout).to_string();
    assert!(explain.contains("last run:"), "{explain}");
    let history = json(&home.run(&["history", "beta", "--json"]));
    assert!(history.to_string().contains("failure"), "{history}");
    let out = home.run(&["record", "alpha", "--outcome", "success"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = home.run(&["fire", "beta", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM runs WHERE lane = 'beta'", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 2);
}

#[test]
fn a_password_in_the_state_location_is_refused_with_where_it_belongs() {
    let home = Home::standard();
    home.write(
        "lanekeeper.yaml",
        "state: postgres://me:secret@127.0.0.1/lk\n",
    );
    let out = home.run(&["validate"]);
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lanekeeper.yaml:1:8"), "{err}");
    assert!(err.contains("PGPASSWORD"), "{err}");
    let out = Home::standard().run(&["--state", "postgres://me:pw@127.0.0.1/x", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state"));
}

#[test]
fn state_copy_moves_an_sqlite_history_into_postgresql() {
    let Some(pg) = Postgres::start() else { return };
    pg.sql("CREATE DATABASE moved");
    let home = Home::standard();
    home.lane(
        "alpha",
        &format!(
            "schedule: {{ every: 1h }}\ncommand: {{ argv: {} }}\n",
            sh("true")
        ),
    );
    home.lane(
        "beta",
        &format!(
            "schedule: {{ every: 1h }}\ncommand: {{ argv: {} }}\n",
            sh("exit 1")
        ),
    );
    assert!(home.run(&["run", "--once"]).status.success());
    assert!(home.run(&["pause", "beta", "--note", "n"]).status.success());
    let before = json(&home.run(&["status", "--json"]));

    let url = pg.url_of("moved");
    let out = home.run(&["state", "copy", "--to", &url]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("runs: 2"), "{said}");
    assert!(said.contains("next: set `state:`"), "{said}");

    let after = json(&home.run(&["--state", &url, "status", "--json"]));
    for lane in ["alpha", "beta"] {
        for key in ["last_run_at", "last_result", "last_success_at", "paused"] {
            assert_eq!(
                lane_in(&after, lane)[key],
                lane_in(&before, lane)[key],
                "{lane}.{key}"
            );
        }
    }
    // Again into the same database: refused, saying why and what to do.
    let out = home.run(&["state", "copy", "--to", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("already holds a lanekeeper history"), "{err}");
    // Not a PostgreSQL URL: a usage error.
    let out = home.run(&["state", "copy", "--to", "elsewhere.db"]);
    assert_eq!(out.status.code(), Some(2));
}

/// One replica of a shared home, with its log in a file.
pub(crate) struct Replica {
    pub(crate) host: &'static str,
    pub(crate) child: Child,
    log: std::path::PathBuf,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

pub(crate) fn replica(home: &Home, host: &'static str) -> Replica {
    let log = home.path().join(format!("replica-{host}.log"));
    let port = free_port();
    // Appended to, so a replica restarted by a test keeps its earlier lives' log.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log");
    let child = home
        .command(&["run", "--listen", &format!("127.0.0.1:{port}")])
        .env("LANEKEEPER_HOST", host)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn replica");
    Replica {
        host,
        child,
        log,
        port,
    }
}

impl Replica {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The response to a GET of `path` on the replica's endpoint, headers included.
    fn get(&self, path: &str) -> String {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    }

    fn metrics(&self) -> String {
        self.get("/metrics")
    }

    /// `/status`'s leader host.
    fn status_leader(&self) -> Option<String> {
        let response = self.get("/status");
        let body = response.split("\r\n\r\n").nth(1)?;
        let status: Value = serde_json::from_str(body).ok()?;
        status["leader"]["lease"]["host"]
            .as_str()
            .map(str::to_string)
    }

    fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The leader's host and token as `status --json` says from `home`.
pub(crate) fn leader(home: &Home) -> Option<(String, i64)> {
    let status = json(&home.run(&["status", "--json"]));
    let l = &status["leader"];
    let live = l["lease"]["expires_at"].as_str()? > l["now"].as_str()?;
    live.then(|| {
        (
            l["lease"]["host"].as_str().unwrap_or_default().to_string(),
            l["lease"]["token"].as_i64().unwrap_or_default(),
        )
    })
}

#[test]
fn three_replicas_elect_one_leader_and_another_takes_over_when_it_is_killed() {
    let Some(pg) = Postgres::start() else { return };
    let home = shared_home(&pg, "lease_ttl: 2s\n");
    let runs = home.path().join("ran");
    home.lane(
        "tick",
        &format!(
            "schedule: {{ every: 1h }}\ncommand: {{ argv: {} }}\n",
            sh(&format!("echo $LANEKEEPER_HOST >> {}", runs.display()))
        ),
    );
    let mut replicas: Vec<Replica> = ["a", "b", "c"].iter().map(|h| replica(&home, h)).collect();
    eventually("a leader", Duration::from_secs(20), || {
        leader(&home).is_some()
    });
    let (first, token) = leader(&home).expect("leader");
    // Exactly one replica says it leads; the lane ran once, on the leader.
    eventually("the first run", Duration::from_secs(20), || {
        std::fs::read_to_string(&runs).is_ok_and(|r| r.lines().count() == 1)
    });
    let leading: Vec<&str> = replicas
        .iter()
        .filter(|r| r.log().contains("Leading"))
        .map(|r| r.host)
        .collect();
    assert_eq!(leading, [first.as_str()], "logs say who leads");
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap_or_default().trim(),
        first
    );
    // Every replica's /metrics agrees on the leader.
    for r in &replicas {
        eventually("metrics", Duration::from_secs(10), || {
            r.metrics()
                .contains(&format!("lanekeeper_leader{{host=\"{first}\"}} 1"))
        });
        assert_eq!(
            r.metric("lanekeeper_leading "),
            Some(f64::from(u8::from(r.host == first)))
        );
        assert_eq!(
            r.status_leader().as_deref(),
            Some(first.as_str()),
            "/status of {}",
            r.host
        );
    }

    // kill -9 the leader: another takes over with the next token, within the TTL and a pass.
    let i = replicas
        .iter()
        .position(|r| r.host == first)
        .expect("leader replica");
    let mut dead = replicas.remove(i);
    let killed = Instant::now();
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    eventually("a new leader", Duration::from_secs(20), || {
        leader(&home).is_some_and(|(h, _)| h != first)
    });
    let took = killed.elapsed();
    let (second, token2) = leader(&home).expect("new leader");
    assert!(token2 > token, "token {token2} after {token}");
    assert!(replicas.iter().any(|r| r.host == second));
    // The lane ran once, and was not run again by the new leader (it is not due).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count(),
        1
    );
    // `explain` from any replica names the leaderless span.
    let explain = String::from_utf8_lossy(&home.run(&["explain", "tick"]).stdout).to_string();
    assert!(explain.contains("no leader from"), "{explain}");
    eprintln!("failover took {took:?}");
}

/// A loopback HTTP server answering 200 at once, except that while `hold` is set a request
/// for `/a` waits (noted in `held`) until `hold` is cleared.
struct Gatekeeper {
    port: u16,
    hold: Arc<AtomicBool>,
    held: Arc<Mutex<usize>>,
}

fn gatekeeper() -> Gatekeeper {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = Arc::new(AtomicBool::new(true));
    let held = Arc::new(Mutex::new(0));
    let (h, n) = (Arc::clone(&hold), Arc::clone(&held));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (h, n) = (Arc::clone(&h), Arc::clone(&n));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&conn);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                        break;
                    }
                }
                if line.contains(" /a ") && h.load(Ordering::SeqCst) {
                    if let Ok(mut n) = n.lock() {
                        *n += 1;
                    }
                    while h.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                let mut conn = &conn;
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    Gatekeeper { port, hold, held }
}

#[test]
fn a_leader_stopped_past_its_lease_is_fenced_when_it_wakes_and_starts_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let gate = gatekeeper();
    // Each replica probes a URL of its own (`${LANEKEEPER_HOST}`), so the test can hold the
    // first leader inside its pass, after it renewed its lease and before it records.
    let home = shared_home(&pg, "lease_ttl: 2s\nlimits: { gate_timeout: 60s }\n");
    let runs = home.path().join("ran");
    home.lane(
        "probed",
        &format!(
            "schedule: {{ every: 1h }}\npreconditions:\n  - use: provider-probe\n    with: {{ url: \"http://127.0.0.1:{}/${{LANEKEEPER_HOST}}\", timeout: 60s }}\ncommand: {{ argv: {} }}\n",
            gate.port,
            sh(&format!("echo $LANEKEEPER_HOST >> {}", runs.display()))
        ),
    );
    let a = replica(&home, "a");
    eventually("a to lead", Duration::from_secs(20), || {
        leader(&home).is_some_and(|(h, _)| h == "a")
    });
    let b = replica(&home, "b");
    // a is inside its pass, waiting on its probe: stop it there.
    eventually("a's probe", Duration::from_secs(20), || {
        gate.held.lock().map(|n| *n > 0).unwrap_or(false)
    });
    let pid = i64::from(a.child.id());
    kill(pid, "STOP");
    gate.hold.store(false, Ordering::SeqCst);
    eventually("b to lead", Duration::from_secs(20), || {
        leader(&home).is_some_and(|(h, _)| h == "b")
    });
    eventually("b's run", Duration::from_secs(20), || {
        std::fs::read_to_string(&runs).is_ok_and(|r| r.contains('b'))
    });
    kill(pid, "CONT");
    // a finishes its pass: its trigger's record is refused by fencing, and nothing starts.
    eventually("a's refusal", Duration::from_secs(20), || {
        a.log().contains("fenced")
    });
    eventually(
        "the refusal in a's /metrics",
        Duration::from_secs(10),
        || {
            a.metric("lanekeeper_fenced_writes_total")
                .is_some_and(|n| n >= 1.0)
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap_or_default().trim(),
        "b",
        "only b ran the lane; a's log:\n{}",
        a.log()
    );
    assert_eq!(b.metric("lanekeeper_fenced_writes_total"), Some(0.0));
    drop(b);
}

#[test]
fn a_run_claimed_on_one_host_keeps_fire_on_another_from_starting_it() {
    let Some(pg) = Postgres::start() else { return };
    // Two machines: homes of their own (so no lane lock is shared), one database.
    let (one, two) = (shared_home(&pg, ""), shared_home(&pg, ""));
    let release = one.path().join("release");
    let lane = format!(
        "schedule: {{ every: 1h }}\ncommand: {{ argv: {} }}\n",
        sh(&format!(
            "while [ ! -e {} ]; do sleep 0.05; done",
            release.display()
        ))
    );
    one.lane("long", &lane);
    two.lane("long", &lane);
    let mut first = one
        .command(&["fire", "long", "--wait"])
        .env("LANEKEEPER_HOST", "one")
        .stderr(Stdio::null())
        .spawn()
        .expect("fire on one");
    eventually("the claim", Duration::from_secs(20), || {
        pg.client()
            .query_one("SELECT count(*) FROM run_claims WHERE host = 'one'", &[])
            .is_ok_and(|r| r.get::<_, i64>(0) == 1)
    });
    let out = two
        .command(&["fire", "long"])
        .env("LANEKEEPER_HOST", "two")
        .output()
        .expect("fire on two");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("claimed on host one"), "{err}");
    std::fs::write(&release, "").expect("release");
    assert!(first.wait().expect("wait").success());
    let claims: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM run_claims", &[])
        .expect("count")
        .get(0);
    assert_eq!(claims, 0, "the run's end released its claim");
    let out = two
        .command(&["fire", "long", "--wait"])
        .env("LANEKEEPER_HOST", "two")
        .output()
        .expect("fire on two");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
