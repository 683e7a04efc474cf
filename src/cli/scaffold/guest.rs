//! __NAME__: defer with `__NAME__-failed` while the last run of the lane named by `lane` failed.
//!
//! ```yaml
//! - use: __NAME__
//!   with: { lane: backup }
//! ```
//!
//! Build with `./build.sh` (needs `rustup target add wasm32-unknown-unknown`); it writes
//! plugins/__NAME__.wasm. Test natively with `cargo test`. See docs/PLUGINS.md.

use lanekeeper_plugin::{Context, Verdict, export, lane};

export!(evaluate: evaluate, params: &[("lane", "lane")]);

/// The gate.
pub fn evaluate(ctx: &Context) -> Result<Verdict, String> {
    let peer = ctx
        .params()
        .str("lane")
        .ok_or("parameter `lane` is missing")?;
    let state = lane(peer); // recorded as evidence
    if state.and_then(|s| s.last_result).as_deref() == Some("failure") {
        return Ok(Verdict::defer(
            "__NAME__-failed",
            format!("the last run of {peer} failed"),
        ));
    }
    Ok(Verdict::pass_with(format!(
        "the last run of {peer} did not fail"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanekeeper_plugin::{LaneState, testing};

    fn run(last_result: Option<&str>) -> Verdict {
        testing::reset();
        testing::set_lane(LaneState {
            name: "peer".into(),
            last_result: last_result.map(str::to_string),
            ..Default::default()
        });
        evaluate(&testing::context(
            r#"{"lane":"subject","params":{"lane":"peer"}}"#,
        ))
        .unwrap()
    }

    #[test]
    fn defers_after_a_failure_and_passes_otherwise() {
        assert_eq!(
            run(Some("failure")),
            Verdict::defer("__NAME__-failed", "the last run of peer failed")
        );
        assert!(matches!(run(Some("success")), Verdict::Pass { .. }));
        assert!(matches!(run(None), Verdict::Pass { .. }));
    }
}
