//! `lanekeeper calendar`: the next fire times of each lane, by its schedule alone and as its
//! window gates allow (`systemd-analyze calendar`, gate-aware). Gates that depend on runtime
//! state are assumed to pass, and named. Reads the home; writes nothing.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::output::{clean, table};
use super::{Access, CliError, CliResult, Session, emit};
use crate::engine::calendar::{self, Fire};
use crate::home::Home;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane (default: every lane).
    lane: Option<String>,
    /// How many fire times per lane.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// Count from this RFC 3339 time (default: now), with the lanes' last runs as recorded then.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Show times in this IANA zone (default: each lane's own zone).
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// One JSON document: `{"from", "lanes": [{"lane", "schedule", "fires", "assumed"}]}`.
    #[arg(long)]
    json: bool,
}

/// One lane's calendar.
#[derive(Debug, Serialize)]
struct LaneCalendar {
    lane: String,
    zone: String,
    /// `every 24h`, `cron …`, `off`.
    rule: String,
    /// Due times by the schedule alone.
    schedule: Vec<Timestamp>,
    /// Fire times as the window gates allow.
    fires: Vec<FireJson>,
    /// Gates that depend on runtime state: assumed to pass.
    assumed: Vec<String>,
}

#[derive(Debug, Serialize)]
struct FireJson {
    at: Timestamp,
    due: Timestamp,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    moved_by: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    forced: bool,
}

impl From<Fire> for FireJson {
    fn from(f: Fire) -> Self {
        Self {
            at: f.at,
            due: f.due,
            moved_by: f.moved_by,
            forced: f.forced,
        }
    }
}

#[derive(Debug, Serialize)]
struct Calendar {
    from: Timestamp,
    lanes: Vec<LaneCalendar>,
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let tz = super::zone_flag(args.tz.as_deref())?;
    if args.count == 0 {
        return Err(CliError::Usage("--count must be at least 1".into()));
    }
    let session = Session::open(home, Access::Read)?;
    let from = match args.from.as_deref() {
        Some(t) => super::parse_at(t)?,
        None => session.now(),
    };
    let lanes = match &args.lane {
        Some(name) => vec![session.lane(name)?],
        None => session.config.lanes.iter().collect(),
    };
    let (states, notes) = session.states_at(from)?;
    for note in notes {
        eprintln!("lanekeeper: note: {}", clean(&note));
    }
    let calendars: Vec<LaneCalendar> = lanes
        .iter()
        .map(|lane| {
            let last = states.get(&lane.name).and_then(|s| s.last_run_at);
            LaneCalendar {
                lane: lane.name.clone(),
                zone: lane.zone.iana_name().unwrap_or("UTC").to_string(),
                rule: crate::status::describe(&lane.schedule),
                schedule: calendar::schedule_fires(lane, last, from, args.count),
                fires: calendar::gated_fires(lane, last, from, args.count)
                    .into_iter()
                    .map(FireJson::from)
                    .collect(),
                assumed: calendar::assumed(lane),
            }
        })
        .collect();
    if args.json {
        let doc = Calendar {
            from,
            lanes: calendars,
        };
        emit(&format!("{}\n", serde_json::to_string(&doc)?))?;
        return Ok(0);
    }
    let mut out = String::new();
    for (i, c) in calendars.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&render(c, tz.as_ref()));
    }
    emit(&out)?;
    Ok(0)
}

fn render(c: &LaneCalendar, tz: Option<&TimeZone>) -> String {
    let zone = tz
        .cloned()
        .unwrap_or_else(|| TimeZone::get(&c.zone).unwrap_or(TimeZone::UTC));
    let at = |t: Timestamp| {
        t.to_zoned(zone.clone())
            .strftime("%a %Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut out = format!(
        "{}  {} (times in {})\n",
        clean(&c.lane),
        clean(&c.rule),
        zone.iana_name().unwrap_or("UTC")
    );
    if c.schedule.is_empty() && c.fires.is_empty() {
        out.push_str("  never fires\n");
        return out;
    }
    let rows: Vec<Vec<String>> = (0..c.schedule.len().max(c.fires.len()))
        .map(|i| {
            let by_schedule = c.schedule.get(i).map_or("-".into(), |t| at(*t));
            let (gated, note) = match c.fires.get(i) {
                None => ("-".to_string(), String::new()),
                Some(f) => {
                    let note = match (f.forced, f.moved_by.is_empty()) {
                        (true, _) => format!(
                            "starvation guard waives {} (due {})",
                            f.moved_by.join(", "),
                            at(f.due)
                        ),
                        (false, false) => {
                            format!("moved by {} (due {})", f.moved_by.join(", "), at(f.due))
                        }
                        (false, true) => String::new(),
                    };
                    (at(f.at), note)
                }
            };
            vec![format!("  {by_schedule}"), gated, clean(&note).into_owned()]
        })
        .collect();
    out.push_str(&table(
        &["  SCHEDULE ALONE", "AS THE GATES ALLOW", ""],
        &rows,
    ));
    if !c.assumed.is_empty() {
        out.push_str(&format!(
            "  assumed to pass (they depend on runtime state): {}\n",
            clean(&c.assumed.join(", "))
        ));
    }
    out
}
