//! off-peak: defer with `outside-off-peak` outside a daily window of local time.
//!
//! ```yaml
//! - use: off-peak
//!   with: { window: "01:00-06:00" }
//!   soft: true
//! ```
//!
//! The window is HH:MM-HH:MM in the lane's `schedule.timezone`, start inclusive, end exclusive;
//! it may wrap midnight. Local time follows DST changes (the host computes it). The same
//! semantics and wording as plugins/off-peak.rhai.

use lanekeeper_plugin::{Context, Verdict, export, parse_window};

export!(evaluate: evaluate, params: &[("window", "window")]);

/// The gate.
pub fn evaluate(ctx: &Context) -> Result<Verdict, String> {
    let window = ctx
        .params()
        .str("window")
        .ok_or("parameter `window` is missing")?;
    let (start, end) = parse_window(window)?;
    let local = ctx.local();
    let now = local.minutes;
    let inside = if start < end {
        now >= start && now < end
    } else {
        now >= start || now < end
    };
    let place = format!("local time {} {}", local.time, local.zone);
    if !inside {
        let opens = window.split('-').next().unwrap_or(window);
        return Ok(
            Verdict::defer("outside-off-peak", format!("{place} is outside {window}"))
                .with_hint(format!("off-peak opens at {opens} {}", local.zone)),
        );
    }
    Ok(Verdict::pass_with(format!("{place} is inside {window}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanekeeper_plugin::testing;

    fn at(minutes: u32) -> Result<Verdict, String> {
        let ctx = testing::context(&format!(
            r#"{{"params":{{"window":"22:00-04:00"}},"local":{{"minutes":{minutes},"time":"x","zone":"UTC"}}}}"#
        ));
        evaluate(&ctx)
    }

    #[test]
    fn a_wrapping_window_is_start_inclusive_end_exclusive() {
        assert!(matches!(at(22 * 60 - 1), Ok(Verdict::Defer { .. })));
        assert!(matches!(at(22 * 60), Ok(Verdict::Pass { .. })));
        assert!(matches!(at(4 * 60 - 1), Ok(Verdict::Pass { .. })));
        assert!(matches!(at(4 * 60), Ok(Verdict::Defer { .. })));
    }
}
