//! How both backends store things: meta keys, the columns read back, timestamps as epoch
//! milliseconds, a decision's stored body and the downtime's text. One definition, so a
//! history copied from SQLite to PostgreSQL reads back the same.

use jiff::Timestamp;

use crate::model::decision::{Decision, Origin, Outcome};
use crate::model::lane_state::Downtime;

/// The meta key of the daemon's latest reload.
pub(super) const RELOAD_KEY: &str = "reload";
/// The meta key of the pruning horizon (epoch ms): history before it is gone.
pub(super) const HORIZON_KEY: &str = "history_horizon";
/// The last moment a daemon was seen deciding (its last pass, or its shutdown), in ms.
pub(super) const SEEN_KEY: &str = "daemon_seen_at";
/// The home's last downtime, `from..to` in ms, recorded by the daemon that ended it.
pub(super) const DOWNTIME_KEY: &str = "daemon_downtime";

/// A run as both backends read it back.
pub(super) const RUN_COLUMNS: &str = "SELECT id, lane, source, started_at, ended_at, result, exit_code, signal, pid, log_path, pid_start, stopped_by FROM runs";

/// An episode as both backends read it back.
pub(super) const EPISODE_COLUMNS: &str = "SELECT id, lane, outcome, reason, gate, first_at, last_at, count, first_body, last_body FROM episodes";

/// The longest detail a decision stored in short keeps.
const SHORT_DETAIL: usize = 4096;

/// A stored epoch-millisecond time; one out of range reads as none.
pub(super) fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.and_then(|m| Timestamp::from_millisecond(m).ok())
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub(super) fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether a decision ends the lane's deferral streak: a trigger `check` recorded dispatched
/// nothing, so it does not.
pub(super) fn ends_streak(outcome: Outcome, origin: Origin) -> bool {
    outcome != Outcome::Trigger || origin.dispatches()
}

/// The stored body of a decision: the decision with who recorded it. With `short`, the reason
/// it could not be stored whole, it goes without its chain, its detail cut and saying so.
pub(super) fn decision_body(
    d: &Decision,
    origin: Origin,
    short: Option<&str>,
) -> Result<String, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Recorded<'a> {
        #[serde(flatten)]
        decision: &'a Decision,
        origin: Origin,
        /// Why it was stored without its chain.
        #[serde(skip_serializing_if = "Option::is_none")]
        truncated: Option<&'a str>,
    }
    let shortened;
    let decision = match short {
        None => d,
        Some(why) => {
            let mut s = Decision {
                chain: Vec::new(),
                ..d.clone()
            };
            let mut detail = s.detail.take().unwrap_or_default();
            if detail.len() > SHORT_DETAIL {
                detail.truncate(cut(&detail, SHORT_DETAIL).len());
                detail.push('…');
            }
            s.detail = Some(format!(
                "{detail} (stored without its chain and evidence: {})",
                cut(why, 200)
            ));
            shortened = s;
            &shortened
        }
    };
    serde_json::to_string(&Recorded {
        decision,
        origin,
        truncated: short,
    })
}

/// The downtime as stored under [`DOWNTIME_KEY`], if it ended by `at` (any, without `at`).
pub(super) fn downtime(text: &str, at: Option<Timestamp>) -> Option<Downtime> {
    let (a, b) = text.split_once("..")?;
    let d = Downtime {
        from: ts(Some(a.parse().ok()?))?,
        to: ts(Some(b.parse().ok()?))?,
    };
    at.is_none_or(|at| d.to <= at).then_some(d)
}
