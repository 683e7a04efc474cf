//! contention: defer while a peer lane runs, or while a shared resource is under pressure.
//!
//! ```yaml
//! - use: contention
//!   with:
//!     peers: [summary, kb-sync, backup]          # `peer-task-running` while any of these runs
//!     metrics:                                   # `substrate-contended` while any is above
//!       - { metric: add_memory_p99_ms, above: 800 }
//! ```
//!
//! A single threshold may also be written flat: `metric: NAME, above: NUMBER`. A value equal to
//! its threshold passes. The same semantics and wording as plugins/contention.rhai.

use lanekeeper_plugin::{Context, Number, Value, Verdict, export, lane, metric};

export!(
    evaluate: evaluate,
    params: &[
        ("peers", "lanes?"),
        ("metrics", "thresholds?"),
        ("metric", "metric?"),
        ("above", "number?"),
    ]
);

/// The gate.
pub fn evaluate(ctx: &Context) -> Result<Verdict, String> {
    let p = ctx.params();
    for peer in p.list("peers").iter().filter_map(Value::as_str) {
        if let Some(s) = lane(peer).filter(|s| s.running) {
            if s.starting {
                return Ok(Verdict::defer(
                    "peer-task-running",
                    format!("peer lane {peer} starts in this pass"),
                )
                .with_hint(format!("passes once {peer} finishes")));
            }
            let pid = s.pid.map(|p| p.to_string()).unwrap_or_default();
            return Ok(Verdict::defer(
                "peer-task-running",
                format!("peer lane {peer} is running (pid {pid})"),
            )
            .with_hint(format!("passes once {peer} (pid {pid}) finishes")));
        }
    }
    let mut checks: Vec<(&str, &Value)> = p
        .list("metrics")
        .iter()
        .filter_map(|c| Some((c.get("metric").as_str()?, c.get("above"))))
        .collect();
    if let Some(name) = p.str("metric") {
        if p.get("above").is_null() {
            return Err(format!(
                "metric {name} needs a threshold: add 'above: NUMBER'"
            ));
        }
        checks.push((name, p.get("above")));
    }
    let mut detail = String::new();
    for (name, above) in checks {
        let v = metric(name)
            .map_err(|_| format!("cannot read metric {name} (see the evidence for why)"))?;
        let limit = above.as_f64().unwrap_or(f64::NAN);
        if v > limit {
            return Ok(Verdict::defer(
                "substrate-contended",
                format!("{name} is {}, above {above}", Number(v)),
            )
            .with_hint(format!(
                "passes once {name} is at most {above} (now {})",
                Number(v)
            )));
        }
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&format!("{name} is {}, not above {above}", Number(v)));
    }
    Ok(if detail.is_empty() {
        Verdict::pass()
    } else {
        Verdict::pass_with(detail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanekeeper_plugin::{LaneState, testing};

    #[test]
    fn a_running_peer_defers_first() {
        testing::reset();
        testing::set_lane(LaneState {
            name: "backup".into(),
            running: true,
            pid: Some(42),
            ..Default::default()
        });
        let ctx = testing::context(r#"{"params":{"peers":["summary","backup"]}}"#);
        assert_eq!(
            evaluate(&ctx).unwrap(),
            Verdict::defer("peer-task-running", "peer lane backup is running (pid 42)")
                .with_hint("passes once backup (pid 42) finishes")
        );
    }

    #[test]
    fn equal_to_the_threshold_passes() {
        testing::reset();
        testing::set_metric("p99", Ok(800.0));
        let ctx = testing::context(r#"{"params":{"metric":"p99","above":800}}"#);
        assert_eq!(
            evaluate(&ctx).unwrap(),
            Verdict::pass_with("p99 is 800.0, not above 800")
        );
        testing::set_metric("p99", Ok(800.5));
        assert_eq!(
            evaluate(&ctx).unwrap(),
            Verdict::defer("substrate-contended", "p99 is 800.5, above 800")
                .with_hint("passes once p99 is at most 800 (now 800.5)")
        );
    }

    #[test]
    fn an_unreadable_metric_is_an_error() {
        testing::reset();
        let ctx = testing::context(r#"{"params":{"metric":"queue","above":1}}"#);
        assert!(evaluate(&ctx).unwrap_err().contains("queue"));
    }
}
