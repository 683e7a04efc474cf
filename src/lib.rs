//! lanekeeper: decides, for every lane on every pass, whether to trigger it now or defer it, and
//! why; then runs triggered commands safely.
//!
//! The decision path is pure (`engine`): a lane, a clock reading, recorded lane states and a host
//! for plugin observations go in; a [`engine::Decision`] comes out. Everything that touches the
//! world — the store, HTTP probes, metric files, child processes — lives at the edges
//! (`state`, `observe`, `dispatch`) so that `check`, `run` and `explain` share one code path.

pub mod cli;
pub mod clock;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod engine;
pub mod fuzzing;
pub mod home;
pub mod json_schema;
pub mod lint;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod par;
pub mod plugins;
pub mod simulate;
pub mod state;
pub mod status;
pub mod web;
