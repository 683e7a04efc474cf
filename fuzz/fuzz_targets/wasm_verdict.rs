//! Fuzz target `wasm_verdict`: see `lanekeeper::fuzzing::wasm_verdict` and fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Err is a normal answer to a bad input; only a panic, a hang or a huge allocation is a bug.
    let _ = lanekeeper::fuzzing::wasm_verdict(data);
});
