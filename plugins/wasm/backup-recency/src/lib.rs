//! backup-recency: defer with `backup-stale` unless the named lane succeeded recently.
//!
//! ```yaml
//! - use: backup-recency
//!   with: { lane: backup, max_age: 36h }
//! ```
//!
//! Stale when there is no recorded success, or when now - last_success > max_age. Exactly
//! max_age old still passes. The same semantics and wording as plugins/backup-recency.rhai.

use lanekeeper_plugin::{Context, Verdict, export, fmt_duration, lane};

export!(evaluate: evaluate, params: &[("lane", "lane"), ("max_age", "duration")]);

/// The gate.
pub fn evaluate(ctx: &Context) -> Result<Verdict, String> {
    let p = ctx.params();
    let name = p.str("lane").ok_or("parameter `lane` is missing")?;
    let max = p.int("max_age").ok_or("parameter `max_age` is missing")?;
    let Some(success) = lane(name).and_then(|s| s.last_success_ms) else {
        return Ok(Verdict::defer(
            "backup-stale",
            format!(
                "{name} has no recorded success (max age {})",
                fmt_duration(max)
            ),
        )
        .with_hint(format!(
            "passes once {name} succeeds (no recorded success yet)"
        )));
    };
    let age = ctx.now_ms() - success;
    let detail = format!(
        "{name} last succeeded {} ago (max {})",
        fmt_duration(age),
        fmt_duration(max)
    );
    if age > max {
        let hint = format!(
            "passes once {name} succeeds (last success {} ago, max {})",
            fmt_duration(age),
            fmt_duration(max)
        );
        return Ok(Verdict::defer("backup-stale", detail).with_hint(hint));
    }
    Ok(Verdict::pass_with(detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanekeeper_plugin::{LaneState, testing};

    const HOUR: i64 = 3_600_000;

    fn ctx(now_ms: i64) -> Context {
        testing::context(&format!(
            r#"{{"lane":"heavy","now_ms":{now_ms},"params":{{"lane":"backup","max_age":{}}}}}"#,
            36 * HOUR
        ))
    }

    #[test]
    fn exactly_max_age_passes_and_older_defers() {
        testing::set_lane(LaneState {
            name: "backup".into(),
            last_success_ms: Some(0),
            ..Default::default()
        });
        assert!(matches!(
            evaluate(&ctx(36 * HOUR)),
            Ok(Verdict::Pass { .. })
        ));
        let late = evaluate(&ctx(36 * HOUR + 1000)).unwrap();
        assert_eq!(
            late,
            Verdict::defer("backup-stale", "backup last succeeded 36h ago (max 36h)")
                .with_hint("passes once backup succeeds (last success 36h ago, max 36h)")
        );
    }

    #[test]
    fn no_success_is_stale() {
        testing::reset();
        let v = evaluate(&ctx(0)).unwrap();
        assert_eq!(
            v,
            Verdict::defer(
                "backup-stale",
                "backup has no recorded success (max age 36h)"
            )
            .with_hint("passes once backup succeeds (no recorded success yet)")
        );
    }

    #[test]
    fn declares_its_parameters() {
        assert_eq!(
            __lanekeeper_params_json(),
            r#"{"lane":"lane","max_age":"duration"}"#
        );
    }
}
