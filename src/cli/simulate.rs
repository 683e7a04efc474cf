//! `lanekeeper simulate`: the real engine over a period of simulated time, answered from a facts
//! file, printed as a timeline per lane. Reads the home; writes nothing.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::output::clean;
use super::{Access, CliError, CliResult, Session, emit};
use crate::home::Home;
use crate::model::duration::format_ms;
use crate::simulate::replay::Replay;
use crate::simulate::report::{LaneReport, Report};
use crate::simulate::{self, Facts, Plan, SimError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to start: an RFC 3339 time (default: now). In the past, lanes start as the history
    /// recorded them then.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Where to stop (exclusive): an RFC 3339 time, or a duration after --from such as 7d.
    #[arg(long, value_name = "TIME|DURATION")]
    to: String,
    /// A pass every DURATION instead of the daemon's wake rule.
    #[arg(long, value_name = "DURATION")]
    step: Option<String>,
    /// Run lengths, e.g. `backup=10m,sandman=1h,*=5m` (`*`: every other lane; `0`: a run ends
    /// as it starts). Default: the median of the lane's recorded successful runs, else its
    /// command.timeout.
    #[arg(long, value_name = "LANE=DURATION,...")]
    durations: Option<String>,
    /// What probes answer, metrics read and runs do, over time (YAML; see docs/DESIGN.md §5).
    #[arg(long, value_name = "FILE", conflicts_with = "replay")]
    facts: Option<PathBuf>,
    /// Take the facts from recorded history: the probe results and metric values stored with
    /// each decision (the one nearest at or before each simulated instant), and the real runs'
    /// outcomes and lengths. A question history never answered is an error.
    #[arg(long)]
    replay: bool,
    /// With --replay: runs succeed and last as --durations, the median or the timeout say,
    /// instead of as the recorded runs did.
    #[arg(long, requires = "replay")]
    modelled_runs: bool,
    /// Show times in this IANA zone (default: each lane's own zone).
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// Also write the timeline as an SVG Gantt chart to FILE: a row per lane, deferrals coloured
    /// by reason, runs by outcome, triggers as ticks, with a legend and an axis in --tz (UTC).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// One JSON document: `{"from", "to", "passes", "lanes": [{triggers, deferrals, runs}]}`.
    #[arg(long)]
    json: bool,
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let tz = super::zone_flag(args.tz.as_deref())?;
    let session = Session::open(home, Access::Read)?;
    let from = match args.from.as_deref() {
        Some(t) => time("--from", t)?,
        None => session.now(),
    };
    let to = match args.to.parse::<Timestamp>() {
        Ok(t) => t,
        Err(_) => {
            let d = crate::model::duration::parse(&args.to).map_err(|e| {
                usage(format!(
                    "--to `{}` is neither an RFC 3339 time nor a duration ({e})",
                    args.to
                ))
            })?;
            crate::clock::later(from, d)
        }
    };
    let step = args
        .step
        .as_deref()
        .map(|s| crate::model::duration::parse(s).map_err(|e| usage(format!("--step: {e}"))))
        .transpose()?;
    let given = parse_durations(args.durations.as_deref().unwrap_or(""))?;
    let facts = match &args.facts {
        Some(path) => Facts::load(path, tz.as_ref().unwrap_or(&TimeZone::UTC)).map_err(usage)?,
        None if args.replay => simulate::replay::recorded_facts(
            &*session.store,
            &session.config,
            Replay {
                runs: !args.modelled_runs,
            },
        )?,
        None => Facts::default(),
    };
    let run_lengths =
        simulate::run_lengths(&session.config.lanes, &given, &*session.store).map_err(sim_error)?;
    let (states, notes) = session.states_at(from)?;
    for note in notes {
        eprintln!("lanekeeper: note: {}", clean(&note));
    }
    let plan = Plan {
        from,
        to,
        step,
        run_lengths,
    };
    let bar = progress_bar(from, to);
    let report = simulate::simulate(
        &session.config,
        states,
        &plan,
        Arc::new(facts),
        &mut |now| bar.at(now),
    );
    bar.done();
    let report = report.map_err(sim_error)?;
    if let Some(path) = &args.svg {
        let chart = simulate::svg::render(&report, tz.as_ref().unwrap_or(&TimeZone::UTC));
        std::fs::write(path, chart).map_err(|e| {
            CliError::Failed(anyhow::anyhow!(
                "--svg {}: cannot write it: {e}",
                path.display()
            ))
        })?;
    }
    if args.json {
        emit(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else {
        emit(&render(&report, tz.as_ref()))?;
    }
    Ok(0)
}

fn time(flag: &str, text: &str) -> Result<Timestamp, CliError> {
    text.parse::<Timestamp>().map_err(|e| {
        usage(format!(
            "{flag} `{text}` is not an RFC 3339 time ({e}); write e.g. 2026-12-01T00:00:00Z or 2026-12-01T00:00:00+01:00"
        ))
    })
}

/// Names the wrong input as a usage error (exit 2); a simulation that could not finish fails
/// (exit 1).
fn sim_error(e: SimError) -> CliError {
    match e {
        SimError::UnknownLane { .. } | SimError::UnknownMetric(_) | SimError::EmptyRange { .. } => {
            usage(e)
        }
        other => CliError::Failed(other.into()),
    }
}

/// `backup=10m,sandman=1h`.
fn parse_durations(text: &str) -> Result<BTreeMap<String, Duration>, CliError> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (lane, d) = item.split_once('=').ok_or_else(|| {
            usage(format!(
                "--durations: `{item}` is not LANE=DURATION (e.g. backup=10m)"
            ))
        })?;
        let d = simulate::facts::parse_length(d)
            .map_err(|e| usage(format!("--durations: {}: {e}", lane.trim())))?;
        out.insert(lane.trim().to_string(), d);
    }
    Ok(out)
}

/// A progress bar on stderr while both outputs are a terminal; nothing otherwise.
struct Progress {
    bar: indicatif::ProgressBar,
    from_ms: i64,
    shown: std::cell::Cell<u64>,
}

fn progress_bar(from: Timestamp, to: Timestamp) -> Progress {
    let secs = u64::try_from((to.as_millisecond() - from.as_millisecond()) / 1000).unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() {
        let bar = indicatif::ProgressBar::new(secs.max(1));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "simulating {wide_bar} {percent:>3}% {msg} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    Progress {
        bar,
        from_ms: from.as_millisecond(),
        shown: std::cell::Cell::new(0),
    }
}

impl Progress {
    fn at(&self, now: Timestamp) {
        if self.bar.is_hidden() {
            return;
        }
        let pos = u64::try_from((now.as_millisecond() - self.from_ms) / 1000).unwrap_or(0);
        // A message per simulated hour is plenty, and formatting one per pass is not free.
        if pos / 3600 != self.shown.get() / 3600 || pos == 0 {
            self.bar
                .set_message(now.strftime("%Y-%m-%d %H:%MZ").to_string());
            self.shown.set(pos);
        }
        self.bar.set_position(pos);
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The timeline as text: per lane, its events in order, in its zone (or `tz`).
pub fn render(report: &Report, tz: Option<&TimeZone>) -> String {
    let utc = TimeZone::UTC;
    let range_zone = tz.unwrap_or(&utc);
    let at = |t: Timestamp, z: &TimeZone| {
        t.to_zoned(z.clone())
            .strftime("%a %Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut out = format!(
        "Simulated {} to {} ({}): {} passes, {}.\n",
        at(report.from, range_zone),
        at(report.to, range_zone),
        range_zone.iana_name().unwrap_or("UTC"),
        thousands(report.passes),
        if report.stepping == "wake-rule" {
            "woken as the daemon wakes".to_string()
        } else {
            format!("one every {}", report.stepping)
        }
    );
    for lane in &report.lanes {
        let zone = tz
            .cloned()
            .unwrap_or_else(|| TimeZone::get(&lane.zone).unwrap_or(TimeZone::UTC));
        out.push('\n');
        out.push_str(&lane_text(lane, report.to, &zone, &|t| at(t, &zone)));
    }
    out
}

fn lane_text(
    lane: &LaneReport,
    end: Timestamp,
    zone: &TimeZone,
    at: &dyn Fn(Timestamp) -> String,
) -> String {
    let mut out = format!(
        "{}  (times in {}; runs last {}, {})\n",
        clean(&lane.lane),
        zone.iana_name().unwrap_or("UTC"),
        lane.run_length,
        lane.run_length_basis
    );
    // (instant, order at that instant, line)
    let mut events: Vec<(Timestamp, u8, String)> = Vec::new();
    for d in &lane.deferrals {
        let until = match d.to {
            Some(to) => format!(
                "until {} ({})",
                at(to),
                format_ms(to.as_millisecond() - d.from.as_millisecond())
            ),
            None => "to the end".into(),
        };
        events.push((
            d.from,
            0,
            format!(
                "deferred  {} at {}, {}, {}: {}",
                clean(&d.reason),
                clean(&d.gate),
                until,
                if d.checks == 1 {
                    "1 check".to_string()
                } else {
                    format!("{} checks", thousands(d.checks))
                },
                clean(&d.detail)
            ),
        ));
    }
    for t in &lane.triggers {
        let word = if t.forced { "forced  " } else { "trigger " };
        events.push((t.at, 1, format!("{word}  {}", clean(&t.reason))));
    }
    for r in &lane.runs {
        let how = match (r.ended_at, r.result) {
            (Some(end), Some(result)) => format!(
                "{}, {}{}",
                format_ms(end.as_millisecond() - r.started_at.as_millisecond()),
                result.as_str(),
                if r.timed_out { " (timed out)" } else { "" }
            ),
            _ => "still running at the end".into(),
        };
        events.push((r.started_at, 2, format!("run       {how}")));
    }
    events.sort_by_key(|e| (e.0, e.1));
    for (t, _, line) in &events {
        out.push_str(&format!("  {}  {line}\n", at(*t)));
    }
    if events.is_empty() {
        out.push_str("  nothing happened\n");
    }
    let held: i64 = lane
        .deferrals
        .iter()
        .map(|d| d.to.unwrap_or(end).as_millisecond() - d.from.as_millisecond())
        .sum();
    out.push_str(&format!(
        "  {} trigger{} ({} forced), {} run{} ({} failed), {} deferral episode{} ({} held back)\n",
        lane.triggers.len(),
        plural(lane.triggers.len()),
        lane.forced(),
        lane.runs.len(),
        plural(lane.runs.len()),
        lane.failed(),
        lane.deferrals.len(),
        plural(lane.deferrals.len()),
        format_ms(held.max(0))
    ));
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
