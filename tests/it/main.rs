//! Integration tests: the built `lanekeeper` binary driven against temporary homes.
//!
//! Time comes from `--at` and `record --at`; nothing here waits on the wall clock except for
//! real child processes and servers to reach a state, which is polled with a bound.

// The binary's present is the wall clock, so tests that set up "an hour ago" read it too.
#![allow(clippy::disallowed_methods)]

mod harness;
mod pg_harness;

mod architecture;
mod builtin_metrics;
mod catchup;
mod cgroup;
mod chain;
mod chaos;
mod daemon;
mod dispatch;
mod docs;
mod env_overrides;
mod fuzz_corpus;
mod grants;
mod history;
mod home;
mod hooks;
mod hosts;
mod lint;
mod ops;
mod packaging;
mod parity;
mod pass;
mod plugins;
mod postgres;
mod preconditions;
mod replicas;
mod scaffold;
mod schedule;
mod schema;
mod shipped;
mod simulate;
mod state;
mod terminal;
mod validation;
mod wasm;
mod web;
mod what_if;
