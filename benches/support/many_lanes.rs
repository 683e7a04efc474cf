//! A home of many lanes, varied like the shipped ones, for the 100,000-lane figures (issue 13)
//! and the test that the concurrent pass decides as the sequential one over many lanes
//! (`tests/it/pass.rs` includes this file).
//!
//! Lanes come in blocks of 1,000. Every lane has the four standard Rhai gates, in the order
//! sandman has them: `backup-recency` on its block's first lane (which reads the previous
//! block's first lane), `provider-probe` on one of eight URLs, `contention` on two neighbours
//! in its block, and `off-peak` on one of five windows, soft on some, with a `max_deferral`.
//! Schedules are intervals (10m to 24h) or crons, in UTC, Europe/Berlin or America/New_York,
//! some with jitter; a fifth of the lanes are in a `heavy-<block>` group (one at a time), a
//! tenth in a `light-<block>` group (three at a time). States: a quarter never ran, others ran
//! 20 minutes, 2 hours or 30 hours before the pass, a tenth are running (in groups: only in
//! odd blocks); a few block leaders'
//! last success is too old for the gates reading them. Everything follows from the lane's
//! number, so a size gives the same home every time.

#![allow(dead_code)]

use std::path::Path;

use lanekeeper::state::{LaneState, LaneStates, RunningRun};

/// Lanes per block: a lane's gates read only lanes of its block (and the previous leader).
pub const BLOCK: usize = 1_000;

/// The instant the benchmark and the test decide at: 03:00 Europe/Berlin, 21:00 New York.
pub fn now() -> jiff::Timestamp {
    "2026-05-10T01:00:00Z".parse().expect("a valid instant")
}

/// The name of lane `i`.
pub fn name(i: usize) -> String {
    format!("lane-{i:06}")
}

/// A fixed pseudo-random number for lane `i` and a purpose `salt` (splitmix64).
fn mix(i: usize, salt: u64) -> u64 {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(i: usize, salt: u64, from: &[T]) -> T {
    from[(mix(i, salt) % from.len() as u64) as usize]
}

/// The URLs the lanes probe; [`answer`] says how each answers.
pub const URLS: [&str; 8] = [
    "http://llm-0.invalid/api/tags",
    "http://llm-1.invalid/api/tags",
    "http://llm-2.invalid/api/tags",
    "http://llm-3.invalid/api/tags",
    "http://llm-4.invalid/api/tags",
    "http://llm-5.invalid/api/tags",
    "http://llm-6.invalid/api/tags",
    "http://down.invalid/api/tags",
];

/// The status a URL of [`URLS`] answers with (`None`: connection refused).
pub fn answer(url: &str) -> Option<u16> {
    match url {
        "http://down.invalid/api/tags" => None,
        "http://llm-6.invalid/api/tags" => Some(503),
        _ => Some(200),
    }
}

/// `lanekeeper.yaml`: the groups of `n` lanes.
pub fn settings(n: usize) -> String {
    let mut s = String::from("groups:\n");
    for b in 0..n.div_ceil(BLOCK) {
        s.push_str(&format!(
            "  heavy-{b}: {{ max_concurrent: 1 }}\n  light-{b}: {{ max_concurrent: 3 }}\n"
        ));
    }
    s
}

/// The lane file of lane `i` of `n`, probing one of `urls`.
pub fn lane_file(i: usize, n: usize, urls: &[&str]) -> String {
    let block = i / BLOCK;
    let first = block * BLOCK;
    let size = BLOCK.min(n - first);
    let leader = if i == first {
        // The first lane of a block reads the previous block's first lane.
        let blocks = n.div_ceil(BLOCK);
        ((block + blocks - 1) % blocks) * BLOCK
    } else {
        first
    };
    let in_block = |k: usize| name(first + (i - first + k) % size);
    let mut y = format!("# Lane {i} of the many-lanes home.\nlabel: Lane {i}\nschedule:\n");
    match mix(i, 1) % 10 {
        0..=5 => y.push_str(&format!(
            "  every: {}\n",
            pick(i, 2, &["10m", "30m", "1h", "6h", "24h"])
        )),
        _ => y.push_str(&format!(
            "  cron: \"{}\"\n",
            pick(
                i,
                3,
                &["*/15 * * * *", "0 */2 * * *", "30 3 * * *", "0 1 * * *"]
            )
        )),
    }
    let zone = pick(i, 4, &["UTC", "Europe/Berlin", "America/New_York"]);
    if zone != "UTC" {
        y.push_str(&format!("  timezone: {zone}\n"));
    }
    if mix(i, 5).is_multiple_of(4) {
        y.push_str("  jitter: 5m\n");
    }
    let soft = mix(i, 6).is_multiple_of(2);
    y.push_str(&format!(
        "preconditions:\n  - use: backup-recency\n    with: {{ lane: {}, max_age: {} }}\n  - use: provider-probe\n    with: {{ url: \"{}\", timeout: 3s }}\n  - use: contention\n    with: {{ peers: [{}, {}] }}\n  - use: off-peak\n    with: {{ window: \"{}\" }}\n",
        name(leader),
        pick(i, 7, &["24h", "36h"]),
        pick(i, 8, urls),
        in_block(size - 1),
        in_block(3.min(size - 1).max(1)),
        pick(i, 9, &["01:00-06:00", "02:00-06:00", "22:00-04:00", "00:00-23:59", "12:00-14:00"]),
    ));
    if soft {
        y.push_str("    soft: true\nmax_deferral: 12h\n");
    }
    match mix(i, 10) % 10 {
        0 | 1 => y.push_str(&format!("group: heavy-{block}\n")),
        2 => y.push_str(&format!("group: light-{block}\n")),
        _ => {}
    }
    debug_assert_eq!(y.contains("group:"), in_group(i));
    y.push_str(&format!("priority: {}\n", mix(i, 11) % 7));
    if mix(i, 12).is_multiple_of(5) {
        y.push_str("retry: { delay: 15m, window: 1h }\n");
    }
    y.push_str("command:\n  argv: [\"true\"]\n  timeout: 20m\n");
    y
}

/// Whether lane `i` is in a group.
fn in_group(i: usize) -> bool {
    mix(i, 10) % 10 < 3
}

/// Writes a home of `n` lanes probing `urls` under `dir`: `lanekeeper.yaml`, `rules/`, and
/// the four standard Rhai plugins copied from the repository at `repo`.
pub fn write_home(dir: &Path, repo: &Path, n: usize, urls: &[&str]) {
    std::fs::create_dir_all(dir.join("rules")).expect("rules/");
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins/");
    for p in ["backup-recency", "contention", "off-peak", "provider-probe"] {
        std::fs::copy(
            repo.join(format!("plugins/{p}.rhai")),
            dir.join(format!("plugins/{p}.rhai")),
        )
        .expect("standard plugin");
    }
    std::fs::write(dir.join("lanekeeper.yaml"), settings(n)).expect("lanekeeper.yaml");
    for i in 0..n {
        std::fs::write(
            dir.join(format!("rules/{}.yaml", name(i))),
            lane_file(i, n, urls),
        )
        .expect("lane file");
    }
}

/// The recorded states of the `n` lanes at [`now`].
pub fn states(n: usize) -> LaneStates {
    let now = now();
    let ago = |mins: i64| now - jiff::SignedDuration::from_mins(mins);
    let mut states = LaneStates::new();
    for i in 0..n {
        let mut s = LaneState::default();
        match mix(i, 20) % 20 {
            0..=4 => {}
            5..=9 => s.last_run_at = Some(ago(20)),
            10..=13 => s.last_run_at = Some(ago(120)),
            14..=17 => s.last_run_at = Some(ago(30 * 60)),
            // Group lanes of even blocks never run at the pass, so their groups are filled
            // by the pass itself; those of odd blocks may be full already.
            _ if in_group(i) && (i / BLOCK).is_multiple_of(2) => s.last_run_at = Some(ago(20)),
            _ => {
                s.last_run_at = Some(ago(5));
                s.running = Some(RunningRun {
                    run_id: i as i64,
                    pid: 100_000 + i as u32,
                    pid_start: 1,
                    started_at: ago(5),
                    supervisor: None,
                });
            }
        }
        s.last_success_at = s.last_run_at;
        if i % BLOCK == 0 {
            // Block leaders: most succeeded 10 hours ago, a few 30 hours ago (stale for 24h).
            let hours = if mix(i, 21).is_multiple_of(5) { 30 } else { 10 };
            s.last_success_at = Some(ago(hours * 60));
        }
        if s.last_run_at.is_some() && mix(i, 22).is_multiple_of(6) {
            // Due and deferred for a while: the starvation guard may waive soft gates.
            s.deferral_since = Some(ago(13 * 60));
            s.deferral_reason = Some("outside-off-peak".into());
        }
        states.insert(name(i), s);
    }
    states
}
