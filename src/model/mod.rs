//! The bottom floor: plain data and ports, no I/O. The decision contract and the observations
//! behind it, lane states, durations, content fingerprints, metric sources, capability grants
//! and the observer port. Every other module builds on these and nothing here imports them.

pub mod decision;
pub mod duration;
pub mod fingerprint;
pub mod grants;
pub mod hook;
pub mod jitter;
pub mod lane_state;
pub mod metric;
pub mod observer;
pub mod size;
