//! `lanekeeper explain`: the whole chain and its evidence, evaluated live now, or the decision
//! recorded in force at a past `--at`.

use super::output::{or_dash, table};
use super::{CliError, CliResult, Session, emit, parse_at};
use crate::engine::{Decision, GateVerdict};
use crate::home::Home;
use crate::plugins::host::Observation;
use crate::state::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane to explain.
    lane: String,
    /// Show the decision recorded in force at this RFC 3339 time.
    #[arg(long)]
    at: Option<String>,
    /// One JSON decision (DESIGN §4 shape, with evidence).
    #[arg(long)]
    json: bool,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let session = Session::open(home)?;
    let lane = session.lane(&args.lane)?;
    let decision = match at {
        None => session
            .decide(&[lane], session.now(), Some(&lane.name))?
            .pop()
            .ok_or_else(|| CliError::Failed(anyhow::anyhow!("no decision for `{}`", lane.name)))?,
        Some(at) => session.store.decision_at(&lane.name, at)?.ok_or_else(|| {
            CliError::Failed(anyhow::anyhow!(
                "no decision about `{}` is recorded at or before {at}; decisions are recorded by `check`, `fire` and `run`",
                lane.name
            ))
        })?,
    };
    if args.json {
        emit(&format!("{}\n", serde_json::to_string(&decision)?))?;
    } else {
        emit(&render(&decision, at.is_some()))?;
    }
    Ok(0)
}

fn render(d: &Decision, recorded: bool) -> String {
    let mut out = String::new();
    let why = match (d.outcome.as_str(), d.reason.as_deref(), d.gate.as_deref()) {
        (o, Some(r), Some(g)) => format!("{o}: {r} (gate {g})"),
        (o, Some(r), None) => format!("{o}: {r}"),
        (o, None, _) => o.to_string(),
    };
    out.push_str(&format!("{}  {why}\n", d.lane));
    if let Some(detail) = &d.detail {
        out.push_str(&format!("  {detail}\n"));
    }
    out.push_str(&format!(
        "  {} {}\n\n",
        if recorded {
            "recorded decision in force at"
        } else {
            "evaluated live at"
        },
        d.at
    ));
    let rows: Vec<Vec<String>> = d
        .chain
        .iter()
        .map(|c| {
            let verdict = match c.verdict {
                GateVerdict::Pass => "pass",
                GateVerdict::Defer => "defer",
                GateVerdict::Waived => "waived",
                GateVerdict::Disabled => "disabled",
            };
            let mut detail = or_dash(c.detail.as_deref());
            if let Some(e) = &c.error {
                detail = format!("{detail} [error let through by on_error: pass: {e}]");
            }
            for obs in &c.evidence {
                detail.push_str(&format!("\n      · {}", evidence(obs)));
            }
            vec![
                format!("{}{}", if c.decided { "▶ " } else { "  " }, c.gate),
                format!("{verdict}{}", if c.soft { " (soft)" } else { "" }),
                or_dash(c.reason.as_deref()),
                c.micros
                    .map(|m| format!("{m}µs"))
                    .unwrap_or_else(|| "-".into()),
                detail,
            ]
        })
        .collect();
    out.push_str(&table(
        &["  GATE", "VERDICT", "REASON", "TIME", "DETAIL"],
        &rows,
    ));
    out
}

fn evidence(o: &Observation) -> String {
    let cached = |c: bool| if c { " (cached this pass)" } else { "" };
    match o {
        Observation::Http {
            url,
            status,
            latency_ms,
            error,
            cached: c,
        } => match (status, error) {
            (Some(s), _) => format!("GET {url} → {s} in {latency_ms}ms{}", cached(*c)),
            (None, Some(e)) => format!("GET {url} → {e} after {latency_ms}ms{}", cached(*c)),
            (None, None) => format!("GET {url}"),
        },
        Observation::Metric {
            name,
            source,
            value,
            error,
            cached: c,
        } => match (value, error) {
            (Some(v), _) => format!("metric {name} = {v} ({source}){}", cached(*c)),
            (None, e) => format!(
                "metric {name}: {} ({source})",
                e.as_deref().unwrap_or("no value")
            ),
        },
        Observation::Lane {
            lane,
            running,
            pid,
            last_success_at,
            last_run_at,
        } => format!(
            "lane {lane}: {}; last run {}; last success {}",
            match (running, pid) {
                (true, Some(p)) => format!("running pid {p}"),
                _ => "not running".into(),
            },
            last_run_at.map_or("never".to_string(), |t| t.to_string()),
            last_success_at.map_or("never".to_string(), |t| t.to_string()),
        ),
        Observation::Log { level, message } => format!("log {level}: {message}"),
    }
}
