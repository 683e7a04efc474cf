//! The daemon's HTTP endpoint: /metrics, /status and the status page in a real browser.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::daemon::{Daemon, log_of, wait_for};
use crate::harness::{Home, lane_yaml};

/// Starts a daemon serving HTTP on a free loopback port; returns it and the base URL.
fn serving(home: &Home) -> (Daemon, String) {
    let daemon = Daemon::start_with(home, &["--listen", "127.0.0.1:0"]);
    with_address(home, daemon)
}

/// The daemon and the base URL it logged.
fn with_address(home: &Home, daemon: Daemon) -> (Daemon, String) {
    wait_for(home, "the HTTP endpoint", || {
        log_of(home).contains("HTTP endpoint listening")
    });
    let log = log_of(home);
    let addr = log
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address in the log")
        .to_string();
    (daemon, format!("http://{addr}"))
}

fn get(url: &str) -> (u16, String, String) {
    let resp = reqwest::blocking::get(url).expect("GET");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ctype, resp.text().expect("body"))
}

/// `/metrics` as the default (classic Prometheus text) format, parsed.
fn scrape(base: &str) -> (String, prometheus_parse::Scrape) {
    let (status, _, body) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200, "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    (body, scrape)
}

/// The value of the first sample of `name` carrying `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn busy_home() -> Home {
    let home = Home::standard();
    home.write("plugins/broken.rhai", "fn evaluate(ctx) { loop {} }\n");
    home.lane("backup", &lane_yaml("24h", "", "[\"true\"]"));
    home.lane(
        "sandman",
        &lane_yaml(
            "24h",
            "  - use: backup-recency\n    with: { lane: flaky, max_age: 1h }",
            "[\"true\"]",
        ),
    );
    home.lane("flaky", &lane_yaml("24h", "  - use: broken", "[\"true\"]"));
    home
}

#[test]
fn metrics_parse_as_prometheus_text_and_cover_the_lanes() {
    let home = busy_home();
    let (_daemon, base) = serving(&home);
    home.wait_status("backup", "the first run", |s| s["last_result"] == "success");
    let (status, ctype, body) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200);
    // reqwest asks for `*/*`: the classic text format.
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert!(
        value(
            "lanekeeper_lane_decisions_total",
            &[("lane", "backup"), ("outcome", "trigger")]
        ) >= Some(1.0),
        "{body}"
    );
    assert!(
        value(
            "lanekeeper_lane_deferrals_total",
            &[
                ("lane", "sandman"),
                ("gate", "backup-recency"),
                ("reason", "backup-stale")
            ]
        ) >= Some(1.0),
        "{body}"
    );
    assert_eq!(
        value("lanekeeper_lane_running", &[("lane", "backup")]),
        Some(0.0)
    );
    assert!(
        value(
            "lanekeeper_lane_seconds_since_last_success",
            &[("lane", "backup")]
        )
        .is_some()
    );
    assert_eq!(
        value(
            "lanekeeper_runs_total",
            &[("lane", "backup"), ("result", "success")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            "lanekeeper_plugin_errors_total",
            &[("plugin", "broken"), ("kind", "budget")]
        ) >= Some(1.0),
        "{body}"
    );
    assert!(value("lanekeeper_lane_deferred_seconds", &[("lane", "flaky")]).is_some());
    for family in [
        "lanekeeper_run_duration_seconds",
        "lanekeeper_plugin_eval_seconds",
        "lanekeeper_config_reloads",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family}")),
            "{family} missing:\n{body}"
        );
    }
}

#[test]
fn status_endpoint_serves_what_status_json_prints() {
    let home = busy_home();
    let (_daemon, base) = serving(&home);
    home.wait_status("backup", "the first run", |s| s["last_result"] == "success");
    let (code, _, body) = get(&format!("{base}/status"));
    assert_eq!(code, 200);
    let http: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cli: serde_json::Value = serde_json::from_str(&home.ok(&["status", "--json"])).unwrap();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["lane"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&http), names(&cli));
    for (h, c) in http["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cli["lanes"].as_array().unwrap())
    {
        for key in [
            "schedule",
            "last_run_at",
            "last_result",
            "last_success_at",
            "next_due_at",
        ] {
            assert_eq!(h[key], c[key], "{key} of {}", h["lane"]);
        }
    }
    let sandman = crate::harness::lane_in(&http, "sandman");
    assert_eq!(sandman["episode"]["reason"], "backup-stale", "{body}");
}

#[test]
fn http_is_off_unless_asked_for() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    let daemon = Daemon::start(&home);
    home.wait_status("a", "a run", |s| s["last_result"] == "success");
    assert!(!log_of(&home).contains("HTTP endpoint"));
    drop(daemon);
    home.write("lanekeeper.yaml", "listen: \"not an address\"\n");
    let out = home.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lanekeeper.yaml:1:9: listen:"));
}

/// Headless Chromium, if this machine has it.
pub fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Headless Chromium that reaches nothing but the page it is given.
pub const HEADLESS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
];

/// Runs headless chromium on the status page with `extra` arguments.
fn headless(browser: &Path, base: &str, profile: &Path, extra: &[String]) -> Output {
    let mut cmd = Command::new(browser);
    cmd.args(HEADLESS)
        .arg("--window-size=1400,600")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("{base}/"));
    cmd.output().expect("run chromium")
}

#[test]
fn the_status_page_renders_lanes_and_reasons_in_a_real_browser() {
    let Some(browser) = chromium() else {
        // .ci/run installs Debian's chromium, so CI always runs this.
        eprintln!("skipped: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let home = busy_home();
    let (_daemon, base) = serving(&home);
    home.wait_status("backup", "the first run", |s| s["last_result"] == "success");
    let profile = tempfile::tempdir().unwrap();
    let headless = |extra: &[String]| headless(&browser, &base, profile.path(), extra);
    let out = headless(&["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&out.stdout);
    for lane in ["backup", "sandman", "flaky"] {
        assert!(
            dom.contains(&format!("data-lane=\"{lane}\"")),
            "lane {lane} missing from the rendered DOM:\n{dom}"
        );
    }
    assert!(
        dom.contains("backup-stale"),
        "the current reason is shown:\n{dom}"
    );
    assert!(dom.contains("plugin-error"), "{dom}");
    assert!(
        dom.contains("class=\"run success\""),
        "the timeline shows the backup run:\n{dom}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(&[format!("--screenshot={}", shot.display())]);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "a screenshot was saved at {}",
        shot.display()
    );
}

#[test]
fn a_rejected_edit_counts_as_a_rejected_reload() {
    let home = Home::new();
    home.lane("a", &lane_yaml("1h", "", "[\"true\"]"));
    let (_daemon, base) = serving(&home);
    let rejected = |base: &str| {
        sample(
            &scrape(base).1,
            "lanekeeper_config_reloads_total",
            &[("result", "rejected")],
        )
    };
    assert_eq!(rejected(&base), Some(0.0));

    home.lane(
        "a",
        "schedule:\n  every: 1h\nbogus: 1\ncommand:\n  argv: [\"true\"]\n",
    );
    wait_for(&home, "the rejection", || {
        log_of(&home).contains("Reload rejected")
    });
    assert_eq!(rejected(&base), Some(1.0), "{}", scrape(&base).0);
}

/// The metric families README's `/metrics` entry lists, so the docs and the endpoint agree.
fn documented_families() -> Vec<String> {
    let readme = std::fs::read_to_string(crate::harness::repo().join("README.md")).unwrap();
    let section = readme
        .split("- `/metrics`:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the /metrics entry in README.md");
    let mut names: Vec<String> = section
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("lanekeeper_"))
        .map(|w| w.trim_end_matches("_total").to_string())
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{section}");
    names
}

#[test]
fn every_documented_metric_family_has_series_at_the_first_scrape() {
    let home = Home::new();
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    home.lane("held", &lane_yaml("1h", "  - use: wait", "[\"true\"]"));
    home.lane("done", &lane_yaml("24h", "", "[\"true\"]"));
    home.ok(&["record", "done", "--outcome", "success"]);
    let (_daemon, base) = serving(&home);

    // Nothing has run, and nothing will: `held` always defers and `done` is not due.
    let (body, scrape) = scrape(&base);
    for family in documented_families() {
        let series = scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric
                    .strip_prefix(family.as_str())
                    .is_some_and(|rest| ["", "_total", "_bucket", "_sum", "_count"].contains(&rest))
            })
            .count();
        assert!(series > 0, "no series of {family}:\n{body}");
    }
    for lane in ["held", "done"] {
        for result in ["success", "failure", "interrupted", "unknown"] {
            assert_eq!(
                sample(
                    &scrape,
                    "lanekeeper_runs_total",
                    &[("lane", lane), ("result", result)]
                ),
                Some(0.0),
                "{lane} {result}:\n{body}"
            );
        }
        for outcome in ["trigger", "deferred", "disabled"] {
            assert!(
                sample(
                    &scrape,
                    "lanekeeper_lane_decisions_total",
                    &[("lane", lane), ("outcome", outcome)]
                )
                .is_some(),
                "{lane} {outcome}:\n{body}"
            );
        }
        assert!(
            body.contains(&format!(
                "lanekeeper_run_duration_seconds_count{{lane=\"{lane}\"}} 0"
            )),
            "{body}"
        );
    }
    assert!(
        sample(
            &scrape,
            "lanekeeper_lane_deferrals_total",
            &[
                ("lane", "held"),
                ("gate", "wait"),
                ("reason", "plugin-error")
            ]
        )
        .is_some(),
        "{body}"
    );
    for kind in ["budget", "deadline", "limit", "thrown", "bad-verdict"] {
        assert_eq!(
            sample(
                &scrape,
                "lanekeeper_plugin_errors_total",
                &[("plugin", "wait"), ("kind", kind)]
            ),
            Some(0.0),
            "{kind}:\n{body}"
        );
    }
    assert!(
        body.contains("lanekeeper_plugin_eval_seconds_count{plugin=\"wait\",runtime=\"rhai\"}"),
        "{body}"
    );
    // Never succeeded reads as infinitely long ago, so a staleness alert fires for it too.
    assert_eq!(
        sample(
            &scrape,
            "lanekeeper_lane_seconds_since_last_success",
            &[("lane", "held")]
        ),
        Some(f64::INFINITY),
        "{body}"
    );
}

/// A GET of `path` sending exactly the headers given (an HTTP/1.0 request, so the body ends at
/// the close); returns the content type and the body.
fn raw_get(base: &str, path: &str, headers: &[&str]) -> (String, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (ctype, body.to_string())
}

#[test]
fn metrics_speak_openmetrics_when_asked_and_classic_text_otherwise() {
    let home = busy_home();
    let (_daemon, base) = serving(&home);
    home.wait_status("backup", "the first run", |s| s["last_result"] == "success");

    let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let classic = "text/plain; version=0.0.4; charset=utf-8";
    // What Prometheus sends when scraping, what a plain OpenMetrics client sends, and a
    // preference for classic text over OpenMetrics.
    let asks_openmetrics = [
        "Accept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "Accept: application/openmetrics-text",
    ];
    for accept in asks_openmetrics {
        let (ctype, body) = raw_get(&base, "/metrics", &[accept]);
        assert_eq!(ctype, openmetrics, "{accept}");
        assert!(body.ends_with("# EOF\n"), "{accept}:\n{body}");
        assert!(
            body.contains("# HELP lanekeeper_runs Finished runs"),
            "{body}"
        );
    }
    let asks_classic = [
        None,
        Some("Accept: */*"),
        Some("Accept: text/plain"),
        Some("Accept: text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"),
        Some("Accept: application/openmetrics-text;q=0, text/plain;q=0.1"),
    ];
    for accept in asks_classic {
        let (ctype, body) = raw_get(&base, "/metrics", accept.as_slice());
        assert_eq!(ctype, classic, "{accept:?}");
        assert!(!body.contains("# EOF"), "{accept:?}:\n{body}");
        assert!(
            body.contains("# HELP lanekeeper_runs_total Finished runs"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE lanekeeper_runs_total counter"),
            "{body}"
        );
        assert!(
            body.contains("lanekeeper_runs_total{lane=\"backup\",result=\"success\"} 1"),
            "{body}"
        );
    }
}

#[test]
fn metrics_pass_promtool_check() {
    let promtool = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    let Some(promtool) = promtool else {
        // .ci/run installs Debian's prometheus package, so CI runs this.
        eprintln!("skipped: promtool not installed (apt-get install prometheus)");
        return;
    };
    let home = busy_home();
    let (_daemon, base) = serving(&home);
    home.wait_status("backup", "the first run", |s| s["last_result"] == "success");
    let (_, body) = raw_get(&base, "/metrics", &[]);
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({:?}):\n{}{}\n--- /metrics:\n{body}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A lane that defers and is re-checked every 100 ms, so the daemon keeps making passes.
fn ticker(home: &Home) {
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    home.lane(
        "ticker",
        "schedule:\n  every: 1h\nrecheck: 100ms\npreconditions:\n  - use: wait\ncommand:\n  argv: [\"true\"]\n",
    );
}

/// Waits until the daemon has made at least `n` more passes (counted by `ticker`'s checks).
fn more_passes(home: &Home, n: i64) {
    let count = |s: &serde_json::Value| s["episode"]["count"].as_i64().unwrap_or(0);
    let start = count(&home.status("ticker"));
    home.wait_status("ticker", "more passes", |s| count(s) >= start + n);
}

fn exhausted_lines(home: &Home) -> usize {
    log_of(home)
        .lines()
        .filter(|l| l.contains("Retries exhausted"))
        .count()
}

#[test]
fn retries_used_up_while_the_daemon_was_away_are_logged_once_and_counted() {
    let home = Home::new();
    ticker(&home);
    home.lane(
        "backup",
        "schedule:\n  every: 24h\nretry: { delay: 15m, window: 1h }\ncommand:\n  argv: [\"true\"]\n",
    );
    // The failure streak is two hours old: its one-hour retry window is over.
    let ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
    home.ok(&["record", "backup", "--outcome", "failure", "--at", &ago]);
    let (_daemon, base) = serving(&home);
    wait_for(&home, "the warning", || exhausted_lines(&home) > 0);
    more_passes(&home, 5);

    assert_eq!(exhausted_lines(&home), 1, "{}", log_of(&home));
    let line = log_of(&home)
        .lines()
        .find(|l| l.contains("Retries exhausted"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("WARN") && line.contains("lane=backup"),
        "{line}"
    );
    let (body, scrape) = scrape(&base);
    assert_eq!(
        sample(
            &scrape,
            "lanekeeper_retries_exhausted_total",
            &[("lane", "backup")]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &scrape,
            "lanekeeper_retries_exhausted_total",
            &[("lane", "ticker")]
        ),
        Some(0.0),
        "{body}"
    );
}

#[test]
fn a_lane_that_keeps_failing_is_retried_then_its_exhaustion_is_logged_once_and_counted() {
    let home = Home::new();
    ticker(&home);
    home.lane(
        "flaky",
        "schedule:\n  every: 1h\nretry: { delay: 200ms, window: 1s }\ncommand:\n  argv: [\"false\"]\n",
    );
    let (_daemon, base) = serving(&home);
    wait_for(&home, "the warning", || exhausted_lines(&home) > 0);
    more_passes(&home, 5);

    assert_eq!(exhausted_lines(&home), 1, "{}", log_of(&home));
    let log = log_of(&home);
    assert!(
        log.matches("Run started.").count() >= 2,
        "the failure was retried before giving up:\n{log}"
    );
    assert_eq!(
        sample(
            &scrape(&base).1,
            "lanekeeper_retries_exhausted_total",
            &[("lane", "flaky")]
        ),
        Some(1.0)
    );
}

/// The cells of `lane`'s row in `lanekeeper status` (columns are two or more spaces apart).
fn cli_row(home: &Home, lane: &str) -> Vec<String> {
    let table = home.ok(&["status"]);
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(lane))
        .unwrap_or_else(|| panic!("{lane} in:\n{table}"));
    row.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The text of each cell of `lane`'s row in the rendered page.
fn page_row(dom: &str, lane: &str) -> Vec<String> {
    let start = dom
        .find(&format!("<tr data-lane=\"{lane}\">"))
        .unwrap_or_else(|| panic!("{lane} in:\n{dom}"));
    let row = &dom[start..start + dom[start..].find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|cell| {
            // Tag-free text of the cell, entities and spacing as shown.
            let mut text = String::new();
            let mut in_tag = true;
            for c in cell.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

#[test]
fn the_status_page_and_the_cli_show_a_lane_that_is_not_due_the_same_way() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let home = Home::new();
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    home.lane("later", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane("held", &lane_yaml("1h", "  - use: wait", "[\"true\"]"));
    let ago =
        |mins: i64| (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(mins)).to_string();
    home.ok(&["record", "later", "--outcome", "success", "--at", &ago(20)]);
    home.ok(&["record", "held", "--outcome", "success", "--at", &ago(120)]);
    let (_daemon, base) = serving(&home);
    home.wait_status("held", "its deferral", |s| s["deferral"].is_object());
    home.wait_status("later", "its decision", |s| s["episode"].is_object());

    let profile = tempfile::tempdir().unwrap();
    let out = headless(&browser, &base, profile.path(), &["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&out.stdout);
    // Page: lane, state, current decision, last run, next due, timeline.
    // CLI: LANE, STATE, LAST RUN, LAST SUCCESS, NEXT DUE, DEFERRED.
    let (page, cli) = (page_row(&dom, "later"), cli_row(&home, "later"));
    assert_eq!(page[1], "idle", "{page:?}");
    assert_eq!(cli[1], "idle", "{cli:?}");
    // Not due is not a deferral: the CLI shows none, and the page says "not due".
    assert_eq!(cli[5], "-", "{cli:?}");
    assert_eq!(page[2], "not due", "{page:?}");
    assert!(
        page[4].starts_with("in 39m") || page[4].starts_with("in 40m"),
        "{page:?}"
    );
    assert!(
        cli[4].starts_with("in 39m") || cli[4].starts_with("in 40m"),
        "{cli:?}"
    );

    // Due and held back: both say deferred with the reason, and both word "overdue" alike.
    let (page, cli) = (page_row(&dom, "held"), cli_row(&home, "held"));
    assert!(page[2].starts_with("deferred waiting for "), "{page:?}");
    assert!(cli[5].starts_with("waiting for "), "{cli:?}");
    assert_eq!(page[4], "now (overdue 1h)", "{page:?}");
    assert_eq!(cli[4], "now (overdue 1h)", "{cli:?}");
}

#[test]
fn decisions_the_store_refuses_while_another_process_holds_it_are_recorded_later() {
    let home = Home::new();
    home.write("plugins/wait.rhai", "fn evaluate(ctx) { \"waiting\" }\n");
    home.lane(
        "a",
        "schedule:\n  every: 1h\nrecheck: 100ms\npreconditions:\n  - use: wait\ncommand:\n  argv: [\"true\"]\n",
    );
    let (_daemon, base) = serving(&home);
    home.wait_status("a", "the first deferral", |s| s["deferral"].is_object());
    let db = rusqlite::Connection::open(home.path().join("state/lanekeeper.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    wait_for(&home, "a refused record", || {
        log_of(&home).contains("Could not record decisions")
    });
    wait_for(&home, "more passes", || {
        log_of(&home).matches("Could not record decisions").count() >= 3
    });
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    wait_for(&home, "the kept decisions", || {
        log_of(&home).contains("Recorded the decisions kept from earlier passes")
    });
    // Every decision made so far (counted as it is made) is in the history.
    let (_, scrape) = scrape(&base);
    let made = sample(
        &scrape,
        "lanekeeper_lane_decisions_total",
        &[("lane", "a"), ("outcome", "deferred")],
    )
    .unwrap();
    let out = home.ok(&["explain", "a", "--json"]);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    let recorded = e["episode"]["count"].as_f64().unwrap();
    assert!(
        recorded >= made,
        "{made} decisions made, {recorded} recorded"
    );
}

#[test]
fn idle_connections_are_closed_and_starve_neither_status_nor_dispatch() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Duration;

    let home = Home::new();
    home.lane("tick", &lane_yaml("1s", "", "[\"true\"]"));
    // As found: 300 idle connections to a daemon allowed 256 open files.
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -n 256 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_lanekeeper"))
        .arg("--home")
        .arg(home.path())
        .args(["run", "--listen", "127.0.0.1:0"])
        .env_remove("LANEKEEPER_HOME");
    let (_daemon, base) = with_address(&home, Daemon::start_command(&home, command));
    home.wait_status("tick", "the first run", |s| s["last_result"] == "success");

    let addr = base.trim_start_matches("http://");
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let (status, _, body) = get(&format!("{base}/status"));
    assert_eq!(status, 200, "{body}");
    let before = home.status("tick")["last_run_at"].clone();
    home.wait_status("tick", "a run after the flood", |s| {
        s["last_run_at"] != before && s["last_result"] == "success"
    });
    assert!(
        !log_of(&home).contains("Too many open files"),
        "{}",
        log_of(&home)
    );
    for (i, mut stream) in idle.into_iter().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("idle connection {i} was not closed: {other:?}"),
        }
    }
}

#[test]
fn a_call_outside_a_gates_grants_is_counted() {
    let home = Home::new();
    home.write(
        "plugins/snoop.rhai",
        "fn evaluate(ctx) { http_get(\"http://127.0.0.2:9/\", 500); () }\n",
    );
    home.lane("a", &lane_yaml("1h", "  - use: snoop", "[\"true\"]"));
    let (_daemon, base) = serving(&home);
    home.wait_status("a", "the denied gate", |s| s["deferral"].is_object());
    let (_, scrape) = scrape(&base);
    let denied = sample(
        &scrape,
        "lanekeeper_plugin_errors_total",
        &[("plugin", "snoop"), ("kind", "denied")],
    );
    assert!(denied.is_some_and(|n| n >= 1.0), "{denied:?}");
}

#[test]
fn the_newest_published_simulation_is_shown_with_the_chart_simulate_draws() {
    let home = crate::simulate::chart_home();
    let (_daemon, base) = serving(&home);
    let (status, _, body) = get(&format!("{base}/simulation"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No simulation is published"), "{body}");
    assert!(
        body.contains("simulations/week.json"),
        "how to publish one: {body}"
    );

    // The operator publishes two reports; the newer one is shown (older by modification time).
    let facts = home.path().join("facts.yaml");
    let old = home.ok(&[
        "simulate",
        "--from",
        "2026-10-01T00:00:00Z",
        "--to",
        "2h",
        "--durations",
        "*=5m",
        "--facts",
        facts.to_str().expect("utf8"),
        "--json",
    ]);
    let (svg, report) = crate::simulate::draw(&home, "chart.svg", &["--json"]);
    home.write("simulations/old.json", &old);
    let old_file = std::fs::File::options()
        .write(true)
        .open(home.path().join("simulations/old.json"))
        .expect("open");
    old_file
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .expect("set mtime");
    home.write("simulations/night.json", &report);
    home.write("simulations/notes.txt", "not a report");

    let (status, ctype, body) = get(&format!("{base}/simulation?tz=Europe/Berlin"));
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(body.contains("<code>night.json</code>"), "{body}");
    assert!(
        body.contains(&svg),
        "the page holds the chart `simulate --svg` drew, byte for byte:\n{body}"
    );
    assert!(
        body.contains("2026-11-01T00:00:00Z to 2026-11-01T12:00:00Z"),
        "{body}"
    );
    for lane in ["compact", "flaky"] {
        assert!(
            body.contains(&format!("<tr data-lane=\"{lane}\">")),
            "{body}"
        );
    }
    // Without tz the axis is in UTC; a zone that is none is refused.
    let (_, _, utc) = get(&format!("{base}/simulation"));
    assert!(utc.contains("times in UTC"), "{utc}");
    let (status, _, _) = get(&format!("{base}/simulation?tz=Mars/Olympus"));
    assert_eq!(status, 400);
    // The status page links to it.
    let (_, _, page) = get(&format!("{base}/"));
    assert!(page.contains("href=\"/simulation\""), "{page}");

    // A file that is not a report is an error naming it, not a crash.
    home.write("simulations/zz-broken.json", "{\"from\": 1}");
    let (status, _, body) = get(&format!("{base}/simulation"));
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("zz-broken.json is not a `lanekeeper simulate --json` report"),
        "{body}"
    );
}
