//! `lanekeeper explain`: the whole chain and its evidence, evaluated live now, or the decision
//! recorded in force at a past `--at`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use super::output::{clean, or_dash, table};
use super::{Access, CliError, CliResult, Session, emit, parse_at};
use crate::engine::{Decision, GateVerdict, Origin, Outcome};
use crate::home::Home;
use crate::plugins::host::Observation;
use crate::state::{EpisodeSummary, RunRecord, Store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The lane to explain.
    lane: String,
    /// Show the decision recorded in force at this RFC 3339 time.
    #[arg(long)]
    at: Option<String>,
    /// One JSON decision (docs/DESIGN.md §4 shape, with evidence).
    #[arg(long)]
    json: bool,
}

/// The episode a decision belongs to.
#[derive(Serialize)]
struct EpisodeInfo {
    #[serde(flatten)]
    summary: EpisodeSummary,
    /// The episode's first evaluation, when the decision shown is a later one.
    #[serde(skip_serializing_if = "Option::is_none")]
    first: Option<Decision>,
}

/// A configuration file whose content differs between the decision and now.
#[derive(Serialize)]
struct Change {
    file: String,
    then: Option<String>,
    now: Option<String>,
}

/// Which stored evaluation the decision and its evidence come from. An episode keeps only its
/// first and latest evaluations; the one shown is the nearest at or before the time asked.
#[derive(Serialize)]
struct Evaluation {
    at: Timestamp,
    /// `only`, `first` or `latest` evaluation of its episode.
    which: &'static str,
    /// How many evaluations the episode spans.
    of: i64,
}

/// What a recorded trigger led to.
#[derive(Serialize)]
struct Dispatch {
    /// Whether a run started.
    dispatched: bool,
    /// In words.
    summary: String,
    /// The run it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<RunRecord>,
}

#[derive(Serialize)]
struct Explanation {
    #[serde(flatten)]
    decision: Decision,
    /// What would have to change for the lane to fire.
    to_fire: Vec<String>,
    /// The lane's jitter and catch-up, when either is set: what moves its slots.
    #[serde(skip_serializing_if = "Option::is_none")]
    timing: Option<TimingInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evaluation: Option<Evaluation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatch: Option<Dispatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    episode: Option<EpisodeInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changed_since: Vec<Change>,
    /// The operator's pause in force (live explain): note, by, at, until.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<crate::state::Pause>,
    /// The lane's latest run (live explain), so a stopped or failed run is in view.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<RunRecord>,
    /// The lane's latest hook firing (live explain): event, what fired it, how it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_hook: Option<crate::state::HookFiring>,
    /// Values the lane file and `lanekeeper.yaml` took from the environment, by variable (a
    /// secret's value left out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    from_environment: Vec<crate::config::env::EnvRef>,
    /// On a shared store, the spans since the lane last ran (a week at most) when no replica
    /// led, so nothing was decided: its slots then follow its catch-up policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    no_leader: Vec<Span>,
}

/// A span of time.
#[derive(Serialize)]
struct Span {
    from: Timestamp,
    to: Timestamp,
}

/// `schedule.jitter` with this lane's offset on this host, and `schedule.catch_up`.
#[derive(serde::Serialize)]
struct TimingInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter_ms: Option<i64>,
    jitter_offset_ms: i64,
    catch_up: &'static str,
}

impl TimingInfo {
    fn of(lane: &crate::compile::Lane) -> Option<Self> {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        (lane.jitter.is_some() || lane.catch_up != crate::config::CatchUp::Once).then(|| Self {
            jitter_ms: lane.jitter.map(ms),
            jitter_offset_ms: ms(lane.jitter_offset),
            catch_up: lane.catch_up.as_str(),
        })
    }

    fn describe(&self) -> String {
        use crate::model::duration::format_ms;
        let jitter = match self.jitter_ms {
            Some(j) => format!(
                "jitter {} (this lane on this host: +{}), ",
                format_ms(j),
                format_ms(self.jitter_offset_ms)
            ),
            None => String::new(),
        };
        format!("{jitter}catch_up {}", self.catch_up)
    }
}

pub fn run(home: &Home, args: Args) -> CliResult {
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let session = Session::open(home, Access::Read)?;
    let lane = session.lane(&args.lane)?;
    let now = session.now();
    let (decision, episode) = match at {
        None => {
            let live = session
                .decide(&[lane], now, Some(&lane.name))?
                .pop()
                .ok_or_else(|| {
                    CliError::Failed(anyhow::anyhow!("no decision for `{}`", lane.name))
                })?;
            (live, session.store.episode_at(&lane.name, now)?)
        }
        Some(at) => {
            let episode = session.store.episode_at(&lane.name, at)?.ok_or_else(|| {
                CliError::Failed(anyhow::anyhow!(
                    "no decision about `{}` is recorded at or before {at}; decisions are recorded by `run`, `check` and `fire`",
                    lane.name
                ))
            })?;
            (episode.at(at).clone(), Some(episode))
        }
    };
    let changed_since = changes(decision.hashes.as_deref(), &lane.fingerprints);
    let evaluation = match (at, &episode) {
        (Some(_), Some(e)) => Some(Evaluation {
            at: decision.at,
            which: if e.summary.count == 1 {
                "only"
            } else if decision.at == e.first.at
                && e.last.as_ref().is_none_or(|l| l.at != e.first.at)
            {
                "first"
            } else {
                "latest"
            },
            of: e.summary.count,
        }),
        _ => None,
    };
    let dispatch = match at {
        Some(_) if decision.outcome == Outcome::Trigger => {
            Some(dispatch(&*session.store, &decision)?)
        }
        _ => None,
    };
    let episode = episode.map(|e| EpisodeInfo {
        first: (e.first.at != decision.at).then(|| e.first.clone()),
        summary: e.summary(),
    });
    let latest_run = session.store.recent_runs(&lane.name, 1)?.pop();
    let last_run = match at {
        None => latest_run.clone(),
        Some(_) => None,
    };
    let last_hook = match at {
        None => session.store.last_hook(&lane.name)?,
        Some(_) => None,
    };
    let paused = match at {
        None => session
            .store
            .lane_states()?
            .remove(&lane.name)
            .and_then(|s| s.pause)
            .filter(|p| p.in_force(now)),
        Some(_) => None,
    };
    let until = at.unwrap_or(now);
    let since = latest_run
        .map(|r| r.started_at)
        .unwrap_or(until)
        .max(
            until
                .checked_sub(jiff::SignedDuration::from_hours(7 * 24))
                .unwrap_or(until),
        )
        .min(until);
    let no_leader = session
        .store
        .leaderless(since)?
        .into_iter()
        .filter(|(from, _)| *from <= until)
        .map(|(from, to)| Span { from, to })
        .collect();
    let explanation = Explanation {
        no_leader,
        timing: TimingInfo::of(lane),
        paused,
        last_run,
        last_hook,
        from_environment: lane
            .env
            .iter()
            .chain(session.config.settings.env.iter())
            .cloned()
            .collect(),
        to_fire: decision.hints(),
        evaluation,
        dispatch,
        decision,
        episode,
        changed_since,
    };
    // A secret from the environment may sit in a URL, a detail or evidence: never printed.
    let secrets = explanation.from_environment.clone();
    let text = if args.json {
        format!("{}\n", serde_json::to_string(&explanation)?)
    } else {
        render_all(&explanation, at.is_some(), now)
    };
    emit(&crate::config::env::redact(&text, &secrets))?;
    Ok(0)
}

/// What a recorded trigger led to: nothing for a plain `check`; otherwise the run that started
/// after it, before the lane's next decision, if any did.
fn dispatch(store: &dyn Store, d: &Decision) -> Result<Dispatch, CliError> {
    if d.origin.is_some_and(|o| !o.dispatches()) {
        return Ok(Dispatch {
            dispatched: false,
            summary: "would have triggered; nothing was dispatched (recorded by a plain `check`, which only decides)".into(),
            run: None,
        });
    }
    let until = store.next_episode_at(&d.lane, d.at)?;
    let run = store.run_started_between(&d.lane, d.at, until)?;
    let by = d.origin.map_or("lanekeeper".to_string(), |o| match o {
        Origin::Daemon => "the daemon".into(),
        Origin::RunOnce => "`run --once`".into(),
        Origin::Fire => "`fire`".into(),
        Origin::Check => "`check`".into(),
    });
    Ok(match run {
        Some(run) => Dispatch {
            dispatched: true,
            summary: format!(
                "dispatched by {by}: run {} started {}{}, {}",
                run.id,
                run.started_at,
                run.pid.map(|p| format!(" as pid {p}")).unwrap_or_default(),
                match (run.result, run.ended_at) {
                    (Some(r), Some(end)) => format!(
                        "ended {end} ({}{})",
                        r.as_str(),
                        run.stopped_by
                            .as_deref()
                            .map(|b| format!(", stopped by {b}"))
                            .unwrap_or_default()
                    ),
                    _ => "still running".to_string(),
                }
            ),
            run: Some(run),
        },
        None => Dispatch {
            dispatched: false,
            summary: format!(
                "triggered by {by}, but no run started before the lane's next decision (the start was refused or failed; see the daemon's log)"
            ),
            run: None,
        },
    })
}

fn changes(then: Option<&BTreeMap<String, String>>, now: &BTreeMap<String, String>) -> Vec<Change> {
    let Some(then) = then else { return Vec::new() };
    let files: BTreeSet<&String> = then.keys().chain(now.keys()).collect();
    files
        .into_iter()
        .filter(|f| then.get(*f) != now.get(*f))
        .map(|f| Change {
            file: f.clone(),
            then: then.get(f).cloned(),
            now: now.get(f).cloned(),
        })
        .collect()
}

fn render_all(e: &Explanation, recorded: bool, now: Timestamp) -> String {
    let mut out = render(&e.decision, recorded);
    if let Some(t) = &e.timing {
        out.push_str(&format!("\nschedule: {}\n", t.describe()));
    }
    if let Some(d) = &e.dispatch {
        out.push_str(&format!("\n{}\n", clean(&d.summary)));
    }
    for gap in &e.no_leader {
        out.push_str(&format!(
            "\nno leader from {} to {}: no replica decided then; missed slots follow the lane's catch_up\n",
            gap.from, gap.to
        ));
    }
    if let Some(r) = &e.last_run {
        let how = match (r.result, &r.stopped_by) {
            (Some(res), Some(by)) => format!("{} by {}", res.as_str(), clean(by)),
            (Some(res), None) => res.as_str().to_string(),
            (None, _) => "still running".into(),
        };
        out.push_str(&format!(
            "\nlast run: {} started {} ({}{}), `lanekeeper logs {}` shows its log\n",
            r.id,
            r.started_at,
            how,
            r.exit.map(|x| format!(", {x}")).unwrap_or_default(),
            e.decision.lane
        ));
    }
    if let Some(h) = &e.last_hook {
        out.push_str(&format!(
            "\nlast hook: {} ({}) at {}: {}{}; its output is in state/hooks/{}.log\n",
            h.event.key(),
            clean(&h.key),
            h.at,
            h.result
                .map_or("running, or its runner died", |r| r.as_str()),
            h.detail
                .as_deref()
                .map(|d| format!(" ({})", clean(d)))
                .unwrap_or_default(),
            e.decision.lane
        ));
    }
    if !e.from_environment.is_empty() {
        out.push_str("\nvalues from the environment (as the loading process saw it):\n");
        for r in &e.from_environment {
            out.push_str(&format!("  {}\n", clean(&r.describe())));
        }
    }
    if !e.to_fire.is_empty() {
        out.push_str("\nwhat would have to change for it to fire:\n");
        for hint in &e.to_fire {
            out.push_str(&format!("  - {}\n", clean(hint)));
        }
    }
    if let Some(ev) = &e.evaluation {
        out.push_str(&format!(
            "\nevidence from the {} evaluation of its episode, at {}{}\n",
            ev.which,
            ev.at,
            if ev.of > 1 {
                format!(
                    " ({} evaluations; an episode keeps its first and latest, and this is the nearest at or before the time asked)",
                    ev.of
                )
            } else {
                String::new()
            }
        ));
    }
    if let Some(ep) = e.episode.as_ref().map(|e| &e.summary) {
        out.push_str(&format!(
            "\nepisode: {} {} from {} to {} ({} evaluation{}; started {})\n",
            clean(&ep.outcome),
            clean(ep.reason.as_deref().unwrap_or("")),
            ep.first_at,
            ep.last_at,
            ep.count,
            if ep.count == 1 { "" } else { "s" },
            super::output::relative(now, Some(ep.first_at)),
        ));
    }
    if let Some(hashes) = &e.decision.hashes {
        out.push_str("\nconfiguration in force:\n");
        for (name, value) in hashes.iter() {
            let change = e.changed_since.iter().find(|c| &c.file == name);
            let (file, hash) = (clean(name), clean(value));
            match change {
                Some(c) => out.push_str(&format!(
                    "  {file} {hash}  (changed since: now {})\n",
                    clean(c.now.as_deref().unwrap_or("removed"))
                )),
                None => out.push_str(&format!("  {file} {hash}  (unchanged)\n")),
            }
        }
        for c in e.changed_since.iter().filter(|c| c.then.is_none()) {
            out.push_str(&format!(
                "  {} (added since: {})\n",
                clean(&c.file),
                clean(c.now.as_deref().unwrap_or(""))
            ));
        }
    }
    out
}

fn render(d: &Decision, recorded: bool) -> String {
    let mut out = String::new();
    let why = match (d.outcome.as_str(), d.reason.as_deref(), d.gate.as_deref()) {
        (o, Some(r), Some(g)) => format!("{o}: {} (gate {})", clean(r), clean(g)),
        (o, Some(r), None) => format!("{o}: {}", clean(r)),
        (o, None, _) => o.to_string(),
    };
    out.push_str(&format!("{}  {why}\n", d.lane));
    if let Some(detail) = &d.detail {
        out.push_str(&format!("  {}\n", clean(detail)));
    }
    if recorded {
        out.push_str(&format!(
            "  recorded decision in force at {}{}\n\n",
            d.at,
            d.origin
                .map(|o| format!(", by {}", o.as_str()))
                .unwrap_or_default()
        ));
    } else {
        out.push_str(&format!("  evaluated live at {}\n\n", d.at));
    }
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
            // Each part cleaned on its own: the line breaks between them are the layout's.
            let mut detail = clean(&or_dash(c.detail.as_deref())).into_owned();
            if let Some(h) = &c.hint {
                detail.push_str(&format!("\n      → {}", clean(h)));
            }
            if let Some(e) = &c.error {
                detail = format!(
                    "{detail} [error let through by on_error: pass: {}]",
                    clean(e)
                );
            }
            for obs in &c.evidence {
                detail.push_str(&format!("\n      · {}", clean(&evidence(obs))));
            }
            vec![
                format!("{}{}", if c.decided { "▶ " } else { "  " }, clean(&c.gate)),
                format!("{verdict}{}", if c.soft { " (soft)" } else { "" }),
                clean(&or_dash(c.reason.as_deref())).into_owned(),
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
            starting,
            last_success_at,
            last_run_at,
        } => format!(
            "lane {lane}: {}; last run {}; last success {}",
            match (running, pid) {
                _ if *starting => "starts in this pass".into(),
                (true, Some(p)) => format!("running pid {p}"),
                _ => "not running".into(),
            },
            last_run_at.map_or("never".to_string(), |t| t.to_string()),
            last_success_at.map_or("never".to_string(), |t| t.to_string()),
        ),
        Observation::Log { level, message } => format!("log {level}: {message}"),
    }
}
