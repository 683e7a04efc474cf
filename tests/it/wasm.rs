//! WebAssembly plugins: budgets, traps, validation and the standard guests, through the binary.
//!
//! Fixtures are small WAT modules compiled with the `wat` crate and written into temp homes as
//! `.wasm`, so these tests need no wasm32 toolchain.

use std::time::{Duration, Instant};

use crate::harness::{Home, TestServer, assert_decision, lane_yaml, problems, repo};

/// `alloc` hands out memory at 1024; `evaluate` runs `body` and returns what it leaves.
fn module(body: &str) -> Vec<u8> {
    module_with("", body)
}

fn module_with(extra: &str, body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
            {extra}
            (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 1024)
            (func (export "evaluate") (param i32 i32) (result i64) {body}))"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("fixture: {e}\n{text}"))
}

/// A verdict record (docs/PLUGINS.md, "The verdict") as a WAT data string, and its length.
fn verdict(
    kind: u32,
    reason: Option<&str>,
    detail: Option<&str>,
    hint: Option<&str>,
) -> (String, usize) {
    let fields = [reason, detail, hint];
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&kind.to_le_bytes());
    let present = (0..3).fold(0u32, |b, i| b | (u32::from(fields[i].is_some()) << i));
    bytes.extend_from_slice(&present.to_le_bytes());
    let mut at = 32u32;
    for f in fields {
        let len = f.map_or(0, |f| f.len() as u32);
        bytes.extend_from_slice(&at.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        at += len;
    }
    for f in fields.into_iter().flatten() {
        bytes.extend_from_slice(f.as_bytes());
    }
    let data = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    (data, bytes.len())
}

/// A home whose plugin `bad` returns the `len` bytes of `data` (a WAT data string) as its verdict.
fn returning(data: &str, len: usize) -> Home {
    plugin_home(
        &module_with(
            &format!(r#"(data (i32.const 0) "{data}")"#),
            &format!("i64.const {len}"),
        ),
        "",
    )
}

fn write_wasm(home: &Home, name: &str, bytes: &[u8]) {
    let path = home.path().join("plugins").join(format!("{name}.wasm"));
    std::fs::write(path, bytes).expect("write wasm");
}

fn plugin_home(bytes: &[u8], settings: &str) -> Home {
    let home = Home::new();
    write_wasm(&home, "bad", bytes);
    home.write("lanekeeper.yaml", settings);
    home.lane("victim", &lane_yaml("1h", "  - use: bad", "[\"true\"]"));
    home
}

fn detail(home: &Home) -> String {
    let d = home.check_at("victim", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "plugin-error");
    assert_eq!(d["gate"], "bad");
    assert_eq!(d["chain"][1]["runtime"], "wasm");
    d["detail"].as_str().unwrap().to_string()
}

#[test]
fn a_passing_module_lets_the_lane_trigger() {
    let home = plugin_home(&module("i64.const 0"), "");
    let d = home.check_at("victim", "2026-05-10T00:00:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert_eq!(d["chain"][1]["runtime"], "wasm");
}

#[test]
fn a_looping_plugin_runs_out_of_fuel() {
    // A generous deadline, so that on a loaded machine fuel, not time, is what stops it.
    let home = plugin_home(
        &module("(loop br 0) i64.const 0"),
        "limits:\n  wasm:\n    deadline: 60s\n",
    );
    let d = detail(&home);
    assert!(d.contains("plugin `bad`") && d.contains("bad.wasm"), "{d}");
    assert!(d.contains("ran out of fuel (50000000 units)"), "{d}");
}

#[test]
fn a_looping_plugin_defers_within_its_deadline() {
    let home = plugin_home(
        &module("(loop br 0) i64.const 0"),
        "limits:\n  wasm: { fuel: 1000000000000000, deadline: 100ms }\n",
    );
    let started = Instant::now();
    let d = detail(&home);
    assert!(d.contains("missed its deadline of 100ms"), "{d}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // The evaluation itself stopped close to its deadline.
    let out = home.ok(&["check", "victim", "--at", "2026-05-10T00:00:00Z", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let micros = v["chain"][1]["micros"].as_u64().unwrap();
    assert!(
        (100_000..2_000_000).contains(&micros),
        "stopped after {micros} us"
    );
}

#[test]
fn a_plugin_allocating_without_bound_hits_the_memory_limit() {
    let home = plugin_home(
        &module("(loop (drop (memory.grow (i32.const 1))) br 0) i64.const 0"),
        "limits:\n  wasm: { max_memory: 2MiB }\n",
    );
    let d = detail(&home);
    assert!(
        d.contains("exceeded its memory limit of 2 MiB (tried to grow to 2112 KiB)"),
        "{d}"
    );
}

#[test]
fn a_module_starting_above_the_memory_limit_is_rejected_at_load() {
    let home = Home::new();
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 64)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "evaluate") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    write_wasm(&home, "big", &wasm);
    home.write("lanekeeper.yaml", "limits:\n  wasm: { max_memory: 1MiB }\n");
    let p = problems(&home);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].contains("starts with 4 MiB of memory"), "{p:#?}");
}

#[test]
fn a_trapping_plugin_defers_its_lane_and_the_others_still_decide() {
    let home = Home::new();
    write_wasm(&home, "trap", &module("unreachable"));
    write_wasm(&home, "fine", &module("i64.const 0"));
    home.lane("victim", &lane_yaml("1h", "  - use: trap", "[\"true\"]"));
    home.lane("bystander", &lane_yaml("1h", "  - use: fine", "[\"true\"]"));
    let out = home.ok(&["check", "--at", "2026-05-10T00:00:00Z", "--json"]);
    let decisions: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decisions.len(), 2, "{out}");
    let victim = decisions.iter().find(|d| d["lane"] == "victim").unwrap();
    let bystander = decisions.iter().find(|d| d["lane"] == "bystander").unwrap();
    assert_decision(victim, "deferred", "plugin-error");
    let detail = victim["detail"].as_str().unwrap();
    assert!(
        detail.contains("trapped: wasm `unreachable` instruction executed"),
        "{detail}"
    );
    assert!(detail.contains(", at 0x"), "names the offset: {detail}");
    assert_eq!(bystander["outcome"], "trigger", "{bystander}");
}

#[test]
fn a_panic_message_reaches_the_detail() {
    let msg = "panicked at src/lib.rs:7:5:\ndisk on fire";
    let home = plugin_home(
        &module_with(
            &format!(
                r#"(import "lanekeeper" "panic_message" (func $panic (param i32 i32)))
                   (data (i32.const 0) "{}")"#,
                msg.replace('\n', "\\0a")
            ),
            &format!(
                "(call $panic (i32.const 0) (i32.const {})) unreachable",
                msg.len()
            ),
        ),
        "",
    );
    let d = detail(&home);
    assert!(
        d.contains("panicked: panicked at src/lib.rs:7:5:\ndisk on fire"),
        "{d}"
    );
}

#[test]
fn malformed_output_is_a_plugin_error() {
    let short = ("\\01\\00".to_string(), 2);
    let json = r#"{\"defer\":\"old-abi\"}"#;
    let cases = [
        (
            (json.to_string(), 19),
            "returned JSON, but a verdict is a record",
        ),
        (short, "shorter than its 32-byte header"),
        (verdict(7, None, None, None), "verdict kind 7"),
        (
            verdict(1, None, Some("why"), None),
            "a deferral without a reason",
        ),
        (verdict(1, Some("Not Kebab"), None, None), "not kebab-case"),
    ];
    for ((data, len), needle) in cases {
        let d = detail(&returning(&data, len));
        assert!(d.contains(needle), "{data}: {d}");
    }
    // A string place outside the record.
    let (mut data, len) = verdict(0, None, Some("x"), None);
    data.replace_range(16 * 3..16 * 3 + 3, "\\ff");
    let d = detail(&returning(&data, len));
    assert!(d.contains("detail lies outside it"), "{d}");
    // A pointer outside memory.
    let home = plugin_home(&module("i64.const 0x7fff000000000010"), "");
    let d = detail(&home);
    assert!(d.contains("outside its memory"), "{d}");
}

#[test]
fn a_guest_error_verdict_is_a_plugin_error_with_its_message() {
    let (data, len) = verdict(2, None, Some("cannot read queue"), None);
    let d = detail(&returning(&data, len));
    assert!(d.ends_with("failed: cannot read queue"), "{d}");
}

#[test]
fn a_deferral_and_its_log_lines_are_recorded() {
    let (data, len) = verdict(1, Some("quiet-hours"), Some("shh"), None);
    let home = plugin_home(
        &module_with(
            &format!(
                r#"(import "lanekeeper" "log" (func $log (param i32 i32 i32)))
                   (data (i32.const 0) "{data}looked")"#
            ),
            &format!("(call $log (i32.const {len}) (i32.const 6)) i64.const {len}")
                .replace("(call $log", "(call $log (i32.const 0)"),
        ),
        "",
    );
    let d = home.check_at("victim", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "quiet-hours");
    assert_eq!(d["detail"], "shh");
    assert_eq!(d["chain"][1]["evidence"][0]["kind"], "log");
    assert_eq!(d["chain"][1]["evidence"][0]["message"], "looked");
}

fn assert_one_at_1_1(home: &Home, file: &str, needle: &str) {
    let p = problems(home);
    assert_eq!(p.len(), 1, "{p:#?}");
    let expected = format!("{}:1:1: ", home.path().join(file).display());
    assert!(
        p[0].starts_with(&expected),
        "expected `{expected}…`: {p:#?}"
    );
    assert!(p[0].contains(needle), "expected `{needle}` in {p:#?}");
}

#[test]
fn a_module_importing_what_the_host_lacks_is_reported() {
    let home = Home::new();
    write_wasm(
        &home,
        "wasi",
        &module_with(
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            "i64.const 0",
        ),
    );
    assert_one_at_1_1(
        &home,
        "plugins/wasi.wasm",
        "plugin `wasi`: imports `wasi_snapshot_preview1.fd_write` (a function (i32, i32, i32, i32) -> i32), which the host does not provide",
    );

    let home = Home::new();
    write_wasm(
        &home,
        "typo",
        &module_with(
            r#"(import "lanekeeper" "lane" (func (param i32) (result i64)))"#,
            "i64.const 0",
        ),
    );
    assert_one_at_1_1(
        &home,
        "plugins/typo.wasm",
        "imports `lanekeeper.lane` as a function (i32) -> i64, but the host provides lanekeeper.lane(i32, i32) -> i64",
    );
}

#[test]
fn a_module_without_evaluate_or_with_the_wrong_signature_is_reported() {
    let home = Home::new();
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "check") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    write_wasm(&home, "noeval", &wasm);
    assert_one_at_1_1(
        &home,
        "plugins/noeval.wasm",
        "has no `evaluate` export; a plugin must export evaluate(i32, i32) -> i64",
    );

    let home = Home::new();
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "evaluate") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    write_wasm(&home, "wrongsig", &wasm);
    assert_one_at_1_1(
        &home,
        "plugins/wrongsig.wasm",
        "exports `evaluate` as a function (i32) -> i32; it must be evaluate(i32, i32) -> i64",
    );
}

#[test]
fn a_file_that_is_not_webassembly_is_reported() {
    let home = Home::new();
    home.write("plugins/notes.wasm", "remember the milk\n");
    assert_one_at_1_1(
        &home,
        "plugins/notes.wasm",
        "plugin `notes`: is not a WebAssembly module: it does not start with the `\\0asm` header",
    );

    let home = Home::new();
    home.write("plugins/text.wasm", "(module)\n");
    assert_one_at_1_1(&home, "plugins/text.wasm", "looks like WebAssembly text");

    let home = Home::new();
    let mut truncated = module("i64.const 0");
    truncated.truncate(truncated.len() - 3);
    write_wasm(&home, "cut", &truncated);
    assert_one_at_1_1(
        &home,
        "plugins/cut.wasm",
        "is not a valid WebAssembly module",
    );
}

#[test]
fn one_name_in_two_runtimes_names_both_files() {
    let home = Home::standard();
    std::fs::copy(
        repo().join("plugins/wasm/off-peak.wasm"),
        home.path().join("plugins/off-peak.wasm"),
    )
    .unwrap();
    let p = problems(&home);
    let rhai = home
        .path()
        .join("plugins/off-peak.rhai")
        .display()
        .to_string();
    let wasm = home
        .path()
        .join("plugins/off-peak.wasm")
        .display()
        .to_string();
    assert!(!p.is_empty());
    assert!(
        p.iter()
            .all(|l| l.contains(&rhai) && l.contains(&wasm) && l.contains("defined twice")),
        "{p:#?}"
    );
}

#[test]
fn a_lane_uses_a_standard_wasm_plugin_by_name() {
    let home = Home::new();
    std::fs::copy(
        repo().join("plugins/wasm/off-peak.wasm"),
        home.path().join("plugins/off-peak.wasm"),
    )
    .unwrap();
    home.lane(
        "night",
        "schedule:\n  every: 1h\n  timezone: Europe/Berlin\npreconditions:\n  - use: off-peak\n    with: { window: \"01:00-06:00\" }\ncommand:\n  argv: [\"true\"]\n",
    );
    home.ok(&["validate"]);
    // 29 March 2026: clocks went forward; 04:30Z is 06:30 CEST, outside.
    let d = home.check_at("night", "2026-03-29T04:30:00Z");
    assert_decision(&d, "deferred", "outside-off-peak");
    assert_eq!(
        d["detail"],
        "local time 06:30:00 Europe/Berlin is outside 01:00-06:00"
    );
    assert_eq!(d["chain"][1]["runtime"], "wasm");
    let d = home.check_at("night", "2026-03-28T04:30:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
    assert_eq!(
        d["chain"][1]["detail"],
        "local time 05:30:00 Europe/Berlin is inside 01:00-06:00"
    );
}

#[test]
fn wasm_plugins_declare_their_parameters() {
    let home = Home::new();
    std::fs::copy(
        repo().join("plugins/wasm/backup-recency.wasm"),
        home.path().join("plugins/backup-recency.wasm"),
    )
    .unwrap();
    home.lane("backup", &lane_yaml("1h", "", "[\"true\"]"));
    home.lane(
        "a",
        &lane_yaml(
            "1h",
            "  - use: backup-recency\n    with: { lane: backup, max_age: soon }",
            "[\"true\"]",
        ),
    );
    let p = problems(&home);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with(&format!(
            "{}:5:",
            home.path().join("rules/a.yaml").display()
        )) && p[0].contains("parameter `max_age`"),
        "{p:#?}"
    );
}

#[test]
fn time_waiting_on_a_probe_does_not_count_against_the_deadline() {
    let silent = TestServer::silent();
    let home = Home::new();
    std::fs::copy(
        repo().join("plugins/wasm/provider-probe.wasm"),
        home.path().join("plugins/provider-probe.wasm"),
    )
    .unwrap();
    home.write("lanekeeper.yaml", "limits:\n  wasm: { deadline: 50ms }\n");
    home.lane(
        "llm",
        &lane_yaml(
            "1h",
            &format!(
                "  - use: provider-probe\n    with: {{ url: \"{}\", timeout: 300ms }}",
                silent.url
            ),
            "[\"true\"]",
        ),
    );
    let d = home.check_at("llm", "2026-05-10T00:00:00Z");
    assert_decision(&d, "deferred", "provider-unreachable");
    assert!(d["detail"].as_str().unwrap().contains("timed out"), "{d}");
    assert_eq!(d["chain"][1]["evidence"][0]["kind"], "http");
}

#[test]
fn compiled_modules_are_cached_and_a_corrupt_entry_is_recompiled() {
    let home = plugin_home(&module("i64.const 0"), "");
    // The cache lives in state/, which loading never creates.
    std::fs::create_dir(home.path().join("state")).unwrap();
    home.ok(&["validate"]);
    let cache = home.path().join("state/wasm-cache");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].extension().unwrap(), "cwasm");
    // Corrupt the entry: it must be recompiled, never executed.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();
    let d = home.check_at("victim", "2026-05-10T00:00:00Z");
    assert_eq!(d["outcome"], "trigger", "{d}");
}

/// Whether rustc can build for wasm32-unknown-unknown here.
pub fn wasm32_target_installed() -> bool {
    let out = std::process::Command::new("rustc")
        .args([
            "--print",
            "target-libdir",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
            std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
        }
        _ => false,
    }
}

#[test]
fn the_committed_guests_are_up_to_date() {
    if !wasm32_target_installed() {
        println!(
            "skipped: the wasm32-unknown-unknown target is not installed (rustup target add wasm32-unknown-unknown)"
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("bash")
        .arg(repo().join("plugins/wasm/build.sh"))
        .arg(out.path())
        .env("CARGO_TARGET_DIR", repo().join("target/wasm-guests"))
        .status()
        .expect("run plugins/wasm/build.sh");
    assert!(status.success(), "plugins/wasm/build.sh failed");
    for name in ["backup-recency", "contention", "off-peak", "provider-probe"] {
        let built = std::fs::read(out.path().join(format!("{name}.wasm"))).unwrap();
        let committed = std::fs::read(repo().join(format!("plugins/wasm/{name}.wasm"))).unwrap();
        assert!(
            built == committed,
            "plugins/wasm/{name}.wasm is stale: rebuild with plugins/wasm/build.sh and commit it"
        );
    }
}

#[test]
fn unbounded_recursion_hits_the_stack_limit() {
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 1024)
            (func $f (export "evaluate") (param i32 i32) (result i64)
                (call $f (local.get 0) (local.get 1))))"#,
    )
    .unwrap();
    let home = plugin_home(&wasm, "");
    let d = detail(&home);
    assert!(d.contains("exceeded its stack limit"), "{d}");
}

#[test]
fn wasm_limits_are_validated_where_they_are_written() {
    let home = Home::new();
    home.write(
        "lanekeeper.yaml",
        "limits:\n  wasm:\n    fuel: 0\n    max_memory: lots\n    deadline: off\n",
    );
    let p = problems(&home);
    let file = home.path().join("lanekeeper.yaml").display().to_string();
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with(&format!("{file}:3:11: ")) && p[0].contains("fuel"),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("max_memory") && l.contains("16MiB")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|l| l.contains("limits.wasm.deadline")),
        "{p:#?}"
    );
}

/// Instances are reused between evaluations (reset from a snapshot): nothing one evaluation
/// leaves behind may be visible to the next. This guest defers with `state-leaked` if it sees
/// its mutable global set, an allocation not at the start, a grown memory, or any non-zero byte
/// after the context it was given (so also the tail of a longer earlier context); then it sets
/// the global, sometimes grows memory, and writes bytes across both pages at places that depend
/// on the context's length. Lanes are taken in name order (a pass decides up to eight at once)
/// and their names get shorter, so a context is mostly shorter than those before it.
#[test]
fn nothing_an_evaluation_leaves_behind_reaches_the_next() {
    every_lane_sees_a_clean_instance("", "");
}

/// The same guest with a start function, which rules out reuse, or with reuse turned off: a
/// fresh instance each time.
#[test]
fn without_reuse_every_evaluation_gets_a_fresh_instance() {
    every_lane_sees_a_clean_instance("(func $start) (start $start)", "");
    every_lane_sees_a_clean_instance("", "limits:\n  wasm: { reuse: false }\n");
}

fn every_lane_sees_a_clean_instance(extra: &str, settings: &str) {
    let (leak, leak_len) = verdict(
        1,
        Some("state-leaked"),
        Some("saw a previous evaluation"),
        None,
    );
    let wat = format!(
        r#"(module
          {extra}
          (memory (export "memory") 2)
          (global $used (mut i32) (i32.const 0))
          (global $next (mut i32) (i32.const 1024))
          (data (i32.const 0) "{data}")
          (func (export "alloc") (param $len i32) (result i32) (local $p i32)
            (local.set $p (global.get $next))
            (global.set $next (i32.add (global.get $next) (local.get $len)))
            (local.get $p))
          (func (export "evaluate") (param $ptr i32) (param $len i32) (result i64) (local $i i32)
            (if (i32.or (global.get $used)
                  (i32.or (i32.ne (local.get $ptr) (i32.const 1024))
                          (i32.ne (memory.size) (i32.const 2))))
              (then (return (i64.const {n}))))
            (local.set $i (i32.add (local.get $ptr) (local.get $len)))
            (loop $scan
              (if (i32.load8_u (local.get $i)) (then (return (i64.const {n}))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $scan (i32.lt_u (local.get $i) (i32.const 131072))))
            (global.set $used (i32.const 1))
            (local.set $i (i32.const 0))
            (loop $write
              (i32.store8
                (i32.add (i32.const 8192)
                  (i32.rem_u
                    (i32.add (i32.mul (local.get $len) (i32.const 7919))
                             (i32.mul (local.get $i) (i32.const 4099)))
                    (i32.const 122880)))
                (i32.const 171))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $write (i32.lt_u (local.get $i) (i32.const 64))))
            (if (i32.eq (i32.rem_u (local.get $len) (i32.const 3)) (i32.const 0))
              (then (drop (memory.grow (i32.const 1)))))
            (i64.const 0)))"#,
        data = leak,
        n = leak_len
    );
    let home = Home::new();
    home.write("lanekeeper.yaml", settings);
    write_wasm(&home, "scribble", &wat::parse_str(&wat).expect("fixture"));
    let names: Vec<String> = (0..24u8)
        .map(|i| {
            format!(
                "{}{}",
                char::from(b'a' + i),
                "x".repeat(usize::from(24 - i))
            )
        })
        .collect();
    for name in &names {
        home.lane(name, &lane_yaml("1h", "  - use: scribble", "[\"true\"]"));
    }
    let out = home.ok(&["check", "--at", "2026-05-10T00:00:00Z", "--json"]);
    let decisions: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(decisions.len(), names.len(), "{out}");
    for d in &decisions {
        assert_eq!(d["outcome"], "trigger", "{d}");
    }
}

/// A module whose mutable global is not exported is rewritten to export it (for the reset);
/// a trap's offset still names the byte in the file as written.
#[test]
fn trap_offsets_name_the_original_file_when_globals_are_exported_for_reuse() {
    let bytes = module_with("(global (mut i32) (i32.const 0))", "unreachable");
    // The module ends with evaluate's body: `unreachable` (0x00), then `end` (0x0b).
    assert_eq!(bytes[bytes.len() - 2..], [0x00, 0x0b]);
    let home = plugin_home(&bytes, "");
    let d = detail(&home);
    let at = format!(", at {:#x} in", bytes.len() - 2);
    assert!(d.contains(&at), "expected `{at}` in: {d}");
}

/// A guest written against docs/PLUGINS.md alone, not the SDK: it reads the context record's
/// fixed fields at their documented offsets and defers, with the lane's name (read through its
/// string place) as the detail, only if each field holds what the host should have written.
#[test]
fn the_context_record_has_the_documented_layout() {
    let (header, _) = verdict(1, Some("late"), Some(""), None);
    let wat = format!(
        r#"(module
          (memory (export "memory") 1)
          (data (i32.const 0) "{header}late")
          (func (export "alloc") (param i32) (result i32) i32.const 1024)
          (func (export "evaluate") (param $ctx i32) (param $len i32) (result i64)
            (if (i32.eqz
                  (i32.and
                    (i32.and
                      (i32.eq (i32.load (local.get $ctx)) (i32.const 1))
                      (i64.eq (i64.load offset=8 (local.get $ctx)) (i64.const 1778382420000)))
                    (i32.and
                      (i32.and (i32.eq (i32.load8_u offset=16 (local.get $ctx)) (i32.const 3))
                               (i32.eq (i32.load8_u offset=17 (local.get $ctx)) (i32.const 7)))
                      (i32.and (i32.eq (i32.load8_u offset=19 (local.get $ctx)) (i32.const 7))
                               (i32.eq (i32.load16_u offset=20 (local.get $ctx)) (i32.const 187))))))
              (then (return (i64.const 0))))
            ;; the detail is the lane name: its place, moved to be relative to the record at 0
            (i32.store (i32.const 16) (i32.add (local.get $ctx) (i32.load offset=24 (local.get $ctx))))
            (i32.store (i32.const 20) (i32.load offset=28 (local.get $ctx)))
            (i64.extend_i32_u (i32.add (local.get $ctx) (local.get $len)))))"#
    );
    let home = Home::new();
    write_wasm(&home, "raw", &wat::parse_str(&wat).expect("fixture"));
    home.lane("by-hand", &lane_yaml("1h", "  - use: raw", "[\"true\"]"));
    let d = home.check_at("by-hand", "2026-05-10T03:07:00Z");
    assert_decision(&d, "deferred", "late");
    assert_eq!(d["detail"], "by-hand");
}

/// A guest calling `log` in a loop is stopped at its evidence cap: the host call traps, and
/// the decision, the log and the host's memory hold no more than the cap.
#[test]
fn a_wasm_plugin_logging_in_a_loop_is_stopped_at_its_evidence_cap() {
    // A small fuel budget keeps the unfixed host from running out of memory.
    let settings = "limits:\n  wasm: { fuel: 20000 }\n";
    for (len, cause, kept) in [
        (
            5,
            "evidence over 64 entries (limits.evidence.max_entries)",
            64,
        ),
        (4096, "evidence over 64 KiB (limits.evidence.max_bytes)", 15),
    ] {
        let home = plugin_home(
            &module_with(
                r#"(import "lanekeeper" "log" (func $log (param i32 i32 i32)))
                   (data (i32.const 16384) "flood")"#,
                &format!(
                    "(loop (call $log (i32.const 0) (i32.const 16384) (i32.const {len})) br 0) i64.const 0"
                ),
            ),
            settings,
        );
        let mut cmd = home.command(&["check", "victim", "--at", "2026-05-10T00:00:00Z", "--json"]);
        cmd.env("LANEKEEPER_LOG", "info");
        let out = home.run_cmd_within(cmd, &["check"], Duration::from_secs(60));
        assert!(out.status.success(), "{out:?}");
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_decision(&d, "deferred", "plugin-error");
        let detail = d["detail"].as_str().unwrap();
        assert!(detail.contains(cause), "{detail}");
        assert!(
            detail.contains("bad.wasm, at 0x"),
            "names the place: {detail}"
        );
        assert_eq!(d["chain"][1]["evidence"].as_array().unwrap().len(), kept);
        let logged = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("flood"))
            .count();
        assert_eq!(logged, kept, "only what is kept reaches the log");
    }
}

/// A guest's `http_get` is cut to the gate's budget too, and the gate ends as a deadline
/// `plugin-error` instead of holding the pass for the guest's own timeout.
#[test]
fn a_wasm_http_get_cannot_outlive_the_gate_budget() {
    let silent = TestServer::silent();
    let url = silent.url.clone();
    let home = plugin_home(
        &module_with(
            &format!(
                r#"(import "lanekeeper" "http_get" (func $get (param i32 i32 i64) (result i64)))
                   (data (i32.const 0) "{url}")"#
            ),
            &format!(
                "(loop (drop (call $get (i32.const 0) (i32.const {}) (i64.const 60000))) br 0) i64.const 0",
                url.len()
            ),
        ),
        "limits:\n  gate_timeout: 400ms\nplugins:\n  bad: { allow: { http: [\"127.0.0.1\"] } }\n",
    );
    let out = home.run_within(
        &["check", "victim", "--at", "2026-05-10T00:00:00Z", "--json"],
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_decision(&d, "deferred", "plugin-error");
    let detail = d["detail"].as_str().unwrap();
    assert!(
        detail.contains("ran past its gate budget of 400ms (limits.gate_timeout)"),
        "{detail}"
    );
    assert_eq!(
        d["chain"][1]["evidence"].as_array().unwrap().len(),
        1,
        "{d}"
    );
}
