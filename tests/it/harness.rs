//! A temporary lanekeeper home and helpers to run the binary against it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The repository root, where the shipped rules, plugins and jobs live.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The standard preconditions, shipped as `plugins/<name>.rhai` and `plugins/wasm/<name>.wasm`.
pub const STANDARD_PLUGINS: [&str; 4] =
    ["backup-recency", "contention", "off-peak", "provider-probe"];
/// The shipped lanes, `rules/<name>.yaml`.
pub const SHIPPED_LANES: [&str; 6] = [
    "backup",
    "golden-path",
    "graph-maintenance",
    "kb-sync",
    "sandman",
    "summary",
];
/// The shipped jobs under `jobs/`.
pub const SHIPPED_JOBS: [&str; 3] = ["backup.py", "notify-webhook.sh", "work.sh"];

/// A temporary home.
pub struct Home {
    dir: TempDir,
}

impl Home {
    /// An empty home with `rules/` and `plugins/`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
        Self { dir }
    }

    /// A home with the four standard plugins and no lanes.
    pub fn standard() -> Self {
        let home = Self::new();
        home.copy_shipped("plugins", &STANDARD_PLUGINS.map(|p| format!("{p}.rhai")));
        home
    }

    /// A copy of the shipped home: exactly the committed rules, plugins and jobs named here, so
    /// a plugin or lane an operator adds to the checkout never leaks into a test.
    pub fn shipped() -> Self {
        let home = Self::standard();
        home.copy_shipped("rules", &SHIPPED_LANES.map(|l| format!("{l}.yaml")));
        home.copy_shipped("jobs", &SHIPPED_JOBS.map(str::to_string));
        home
    }

    fn copy_shipped(&self, dir: &str, files: &[String]) {
        std::fs::create_dir_all(self.path().join(dir)).expect("mkdir");
        for file in files {
            std::fs::copy(
                repo().join(dir).join(file),
                self.path().join(dir).join(file),
            )
            .unwrap_or_else(|e| panic!("copy shipped {dir}/{file}: {e}"));
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file relative to the home.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path().join(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(p, content).expect("write");
    }

    /// Gives the home a state database (still empty), as it has once the daemon, `run`, `fire`
    /// or `record` used it: `check` at the real present records only into an existing one.
    pub fn init_history(&self) {
        self.write("state/lanekeeper.db", "");
    }

    /// Writes `rules/<name>.yaml`.
    pub fn lane(&self, name: &str, yaml: &str) {
        self.write(&format!("rules/{name}.yaml"), yaml);
    }

    /// The command, ready to run against this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanekeeper"));
        cmd.arg("--home").arg(self.path()).args(args);
        cmd.env_remove("LANEKEEPER_HOME")
            .env_remove("LANEKEEPER_LOG");
        cmd
    }

    /// Starts the binary in the background with stderr captured.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn lanekeeper")
    }

    /// Runs the binary and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run lanekeeper")
    }

    /// Runs the binary like [`Self::run`], but gives up (killing it) if it is still running
    /// after `bound`: for commands that must not hang on a slow peer.
    pub fn run_within(&self, args: &[&str], bound: Duration) -> Output {
        self.run_cmd_within(self.command(args), args, bound)
    }

    /// [`Self::run_within`] for a prepared command.
    pub fn run_cmd_within(&self, mut cmd: Command, args: &[&str], bound: Duration) -> Output {
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn lanekeeper");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(bound) {
            Ok(out) => out.expect("wait for lanekeeper"),
            Err(_) => {
                kill(i64::from(pid), "KILL");
                panic!("lanekeeper {args:?} was still running after {bound:?}");
            }
        }
    }

    /// Runs the binary, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lanekeeper {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// `check LANE --at AT --json`, parsed.
    pub fn check_at(&self, lane: &str, at: &str) -> Value {
        let out = self.ok(&["check", lane, "--at", at, "--json"]);
        serde_json::from_str(out.trim()).expect("one JSON decision")
    }

    /// `check LANE --json` at the real present (recorded), parsed.
    pub fn check_now(&self, lane: &str) -> Value {
        let out = self.ok(&["check", lane, "--json"]);
        serde_json::from_str(out.trim()).expect("one JSON decision")
    }

    /// `status --json`, the entry for `lane`.
    pub fn status(&self, lane: &str) -> Value {
        let out = self.ok(&["status", "--json"]);
        let v: Value = serde_json::from_str(&out).expect("status JSON");
        lane_in(&v, lane).clone()
    }

    /// Polls `status` until `pred` holds for `lane`, for at most 20 s.
    pub fn wait_status(&self, lane: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let s = self.status(lane);
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {lane}: {what}; last status {s}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// The entry for `lane` in a document's `lanes` (`status --json`, `/status`, a simulation or
/// calendar report).
pub fn lane_in<'a>(doc: &'a Value, lane: &str) -> &'a Value {
    doc["lanes"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["lane"] == lane))
        .unwrap_or_else(|| panic!("{lane} not in {doc}"))
}

/// A lane with `every` and the given precondition YAML (a list, indented by 2) and command.
pub fn lane_yaml(every: &str, preconditions: &str, argv: &str) -> String {
    let pre = if preconditions.trim().is_empty() {
        String::new()
    } else {
        format!("preconditions:\n{preconditions}\n")
    };
    format!("schedule:\n  every: {every}\n{pre}command:\n  argv: {argv}\n")
}

/// Asserts a decision's outcome and reason, showing the decision on failure.
pub fn assert_decision(d: &Value, outcome: &str, reason: &str) {
    assert_eq!(d["outcome"], outcome, "decision: {d}");
    assert_eq!(d["reason"], reason, "decision: {d}");
}

/// A tiny HTTP server on loopback answering every request with `status` and `body`, counting
/// requests; it serves at most 200 connections.
pub struct TestServer {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
}

impl TestServer {
    pub fn start(status: u16, body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(200) {
                let Ok(mut s) = stream else { continue };
                read_request(&mut s);
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, hits }
    }

    /// A server that accepts connections and never answers.
    pub fn silent() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().take(50).flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        Self { url, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn read_request(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A loopback URL on which nothing listens.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/")
}

/// An argv running `script` under `sh -c`, as YAML.
pub fn sh(script: &str) -> String {
    format!("[sh, -c, {}]", serde_json::to_string(script).expect("json"))
}

/// Whether `pid` is a live (non-zombie) process.
pub fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Sends `signal` to `pid` with kill(1).
pub fn kill(pid: i64, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -s {signal} {pid}");
}

/// Waits (at most 10 s) until `pid` is gone.
pub fn wait_gone(pid: i64) {
    let start = Instant::now();
    while pid_alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "process {pid} is still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `validate`, asserts exit 1, returns the problem lines (without the summary).
pub fn problems(home: &Home) -> Vec<String> {
    let out = home.run(&["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    stderr
        .lines()
        .filter(|l| !l.starts_with("lanekeeper:"))
        .map(str::to_string)
        .collect()
}
