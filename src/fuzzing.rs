//! Entry points of the fuzz targets (`fuzz/`), shared with the corpus replay in `cargo test`
//! so CI checks every saved input without a nightly toolchain.
//!
//! Each takes arbitrary bytes and must return, `Ok` or `Err`, within a second and without a
//! large allocation, whatever the bytes: a panic or a hang is a bug in the code it drives.
//! They call the code the commands use, never a copy of it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::compile;
use crate::config::settings::{self, Settings};
use crate::config::{Diagnostics, Schedule, duration};
use crate::engine::schedule;
use crate::home::Home;
use crate::model::lane_state::{LaneState, LaneStates, RunResult};
use crate::model::metric::MetricCatalog;
use crate::model::observer::Canned;
use crate::plugins::rhai::RhaiPlugin;
use crate::plugins::wasm::{self, abi};
use crate::plugins::{GateInput, PassHost, Plugin, Registry, Verdict, host, schema};

/// An entry point: what a fuzz target calls with each input.
pub type Entry = fn(&[u8]) -> Result<(), String>;

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call it.
pub const TARGETS: &[(&str, Entry)] = &[
    ("compile", compile),
    ("schedule", schedule),
    ("rhai_verdict", rhai_verdict),
    ("wasm_verdict", wasm_verdict),
];

/// The moment inputs are decided at, fixed so a replay does what the fuzzer saw.
fn now() -> Timestamp {
    Timestamp::constant(1_796_216_400, 0) // 2026-12-02T13:00:00Z
}

/// The shipped home's plugins, loaded once: lane files bind their gates to these.
fn shipped_plugins() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        Registry::load(
            &dir,
            &Settings::default(),
            None,
            &mut Diagnostics::default(),
        )
    })
}

/// Where the files of a fuzzed home would be; nothing is read from or written there.
const HOME: &str = "/nonexistent/lanekeeper-fuzz";

/// A home's configuration files in one input: text before any `### NAME` line is the lane file
/// `rules/fuzz.yaml`; each `### NAME` line starts the file `NAME` (`lanekeeper.yaml`, or a
/// lane file in `rules/`). They go through the same parse, checks and binding as `validate`,
/// with the shipped plugins.
pub fn compile(data: &[u8]) -> Result<(), String> {
    const MAX_FILES: usize = 8;
    let home = Home::new(HOME);
    let mut settings = None;
    let mut lanes: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut current: (Option<String>, Vec<u8>) = (None, Vec::new());
    let mut files = Vec::new();
    for line in data.split_inclusive(|b| *b == b'\n') {
        if let Some(name) = line.strip_prefix(b"### ") {
            let name = String::from_utf8_lossy(name).trim().to_string();
            files.push(std::mem::replace(&mut current, (Some(name), Vec::new())));
        } else {
            current.1.extend_from_slice(line);
        }
    }
    files.push(current);
    for (i, (name, text)) in files.into_iter().enumerate().take(MAX_FILES) {
        match name.as_deref() {
            None if text.is_empty() => {}
            Some("lanekeeper.yaml") => settings = Some(text),
            name => {
                let file = name
                    .filter(|n| {
                        !n.is_empty()
                            && n.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
                            })
                            && !n.starts_with('.')
                    })
                    .map_or_else(|| format!("fuzz{i}.yaml"), str::to_string);
                lanes.push((home.rules_dir().join(file), text));
            }
        }
    }
    let (_, diags) = compile::load_texts(&home, settings, lanes, shipped_plugins().clone());
    // What `validate` prints.
    let report = diags.to_string();
    if diags.has_errors() {
        Err(report)
    } else {
        Ok(())
    }
}

/// One text as a duration, a size, a listen address, a window and a cron expression, each
/// read as the loader reads it; what parses is then scheduled as the engine would.
pub fn schedule(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let now = now();
    let zones = [
        TimeZone::UTC,
        jiff::tz::db()
            .get("Europe/Berlin")
            .map_err(|e| e.to_string())?,
    ];
    let lasts = [
        now,
        crate::clock::earlier(now, std::time::Duration::from_secs(90)),
        crate::clock::earlier(now, std::time::Duration::from_secs(400 * 86_400)),
    ];
    let mut parsed = Vec::new();
    match duration::parse_setting(text) {
        Ok(duration::DurationSetting::On(d)) => {
            let _ = duration::format(d);
            parsed.push(Schedule::Every(d));
        }
        Ok(duration::DurationSetting::Off) => parsed.push(Schedule::Disabled),
        Err(_) => {}
    }
    if let Ok(d) = duration::parse(text) {
        let _ = duration::format(d);
    }
    let _ = settings::parse_size(text).map(settings::format_size);
    let _ = settings::parse_listen(text);
    let _ = schema::parse_window(text);
    match Schedule::from_cron(text) {
        Ok(s) => parsed.push(s),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if parsed.is_empty() {
        return Err(format!("`{text}` is none of them"));
    }
    for s in &parsed {
        for zone in &zones {
            let _ = s.why_never_fires(zone, now);
            let timing = schedule::Timing::plain(s, zone);
            for last in lasts {
                let _ = schedule::due(&timing, Some(last), None, now);
                let _ = schedule::next_due(&timing, Some(last), None);
                // A downtime between the last run and now: the catch-up arithmetic too.
                let down = crate::model::lane_state::Downtime {
                    from: last,
                    to: now,
                };
                let _ = schedule::due(&timing, Some(last), Some(down), now);
            }
            let _ = schedule::due(&timing, None, None, now);
        }
    }
    Ok(())
}

/// The Rhai engine of the shipped limits, built once as a registry does.
fn rhai_engine() -> &'static Arc<::rhai::Engine> {
    static ENGINE: OnceLock<Arc<::rhai::Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| Arc::new(crate::plugins::rhai::engine(&Settings::default().rhai)))
}

/// A pass whose observer answers from a table, so scripts that probe send nothing.
fn canned_pass() -> Arc<PassHost> {
    let mut states = LaneStates::new();
    states.insert(
        "peer".into(),
        LaneState {
            last_run_at: Some(now()),
            last_result: Some(RunResult::Failure),
            ..LaneState::default()
        },
    );
    Arc::new(PassHost::new(
        now(),
        Arc::new(states),
        Arc::new(Canned::up()),
        Arc::new(MetricCatalog::default()),
    ))
}

/// A Rhai plugin, or the body of its `fn evaluate(ctx)` when the text has none, loaded and
/// evaluated once under the sandbox's default limits; its return value is decoded as a
/// verdict exactly as a lane's gate decodes it.
pub fn rhai_verdict(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let source = if text.contains("fn evaluate") {
        text.to_string()
    } else {
        format!("fn evaluate(ctx) {{\n{text}\n}}\n")
    };
    let plugin = RhaiPlugin::load(
        "fuzz",
        Path::new("plugins/fuzz.rhai"),
        &source,
        Arc::clone(rhai_engine()),
        &Settings::default().rhai,
    )
    .map_err(|e| e.message)?;
    let gate = plugin.bind(&serde_json::json!({}));
    let pass = canned_pass();
    let input = GateInput {
        lane: "fuzz",
        zone: &TimeZone::UTC,
        pass: &pass,
    };
    let (verdict, _evidence) = host::observe(&pass, "fuzz", || gate.evaluate(&input));
    verdict.map(drop).map_err(|e| e.message)
}

/// Bytes as a WASM plugin's verdict record, and as `ptr << 32 | len` (the first 8 bytes,
/// little-endian) pointing into a memory holding the rest: read and decoded as a gate does,
/// with the detail cap checked.
pub fn wasm_verdict(data: &[u8]) -> Result<(), String> {
    const PLUGIN: &str = "plugin `fuzz` (plugins/fuzz.wasm)";
    let pass = canned_pass();
    let decode = |out: Option<&[u8]>| -> Result<Verdict, String> {
        let (r, _) = host::observe(&pass, "fuzz", || {
            let verdict = wasm::verdict(PLUGIN, out).map_err(|e| e.message)?;
            host::check_verdict(&verdict).map_err(|f| f.into_error(PLUGIN).message)?;
            Ok(verdict)
        });
        r
    };
    let whole = decode(Some(data));
    let (packed, memory) = data
        .split_first_chunk::<8>()
        .ok_or("shorter than a packed pointer")?;
    let pointed =
        abi::output(memory, i64::from_le_bytes(*packed)).and_then(|out| decode(out.as_deref()));
    whole.and(pointed).map(drop)
}
