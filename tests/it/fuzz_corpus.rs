//! The fuzz corpus, replayed: every file under `fuzz/corpus/<target>/` goes through the same
//! `lanekeeper::fuzzing` entry point its fuzz target calls, so CI checks each saved input (the
//! seeds, and every crash once fixed) with the stable toolchain. See fuzz/README.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lanekeeper::fuzzing::TARGETS;

use crate::harness::repo;

/// A replay this slow is a hang, not a slow machine: the fuzzer's own bound is 1 s in a
/// release build, and a debug build on a loaded 2-core machine is up to ~50 times slower.
/// Speed itself is measured by the fuzzer, not here.
const HANG: Duration = Duration::from_secs(120);

/// The files of one target's corpus, sorted, read from the committed directory.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_directory_has_a_target_and_inputs() {
    let dir = repo().join("fuzz/corpus");
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} has no entry point in lanekeeper::fuzzing::TARGETS"
        );
    }
    for (target, _) in TARGETS {
        assert!(
            !corpus(target).is_empty(),
            "fuzz/corpus/{target} is empty or missing"
        );
        assert!(
            repo()
                .join(format!("fuzz/fuzz_targets/{target}.rs"))
                .is_file(),
            "no fuzz/fuzz_targets/{target}.rs"
        );
    }
}

#[test]
fn every_corpus_input_returns_in_time() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (target, entry) in TARGETS {
        for file in corpus(target) {
            let bytes = std::fs::read(&file).expect("corpus file");
            let name = file
                .strip_prefix(repo())
                .unwrap_or(&file)
                .display()
                .to_string();
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| entry(&bytes));
            let took = started.elapsed();
            count += 1;
            if outcome.is_err() {
                failures.push(format!("{name}: panicked (see the message above)"));
            } else if took > HANG {
                failures.push(format!("{name}: took {took:?}"));
            }
        }
    }
    assert!(count > 0, "no corpus files");
    assert!(
        failures.is_empty(),
        "{} of {count} corpus inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
