//! Integration tests: the built `lanekeeper` binary driven against temporary homes.
//!
//! Time comes from `--at` and `record --at`; nothing here waits on the wall clock except for
//! real child processes and servers to reach a state, which is polled with a bound.

mod harness;

mod chain;
mod daemon;
mod dispatch;
mod history;
mod home;
mod parity;
mod plugins;
mod preconditions;
mod scaffold;
mod schedule;
mod shipped;
mod validation;
mod wasm;
mod web;
