//! The daemon's HTTP endpoint (off unless `listen:` or `--listen` is set; loopback unless an
//! address says otherwise): `/metrics` (OpenMetrics or classic Prometheus text, as the scraper
//! asks), `/status` (the same JSON as
//! `status --json`), `/history` (episodes and runs for the timeline) and `/`, a self-contained
//! status page. There are no mutating endpoints, so there is nothing to protect with a token.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::compile::Config;
use crate::dispatch::process;
use crate::metrics::{Format, Metrics};
use crate::state::{EpisodeSummary, Store};
use crate::status;

/// What the handlers share with the daemon.
pub struct WebState {
    /// Updated by the daemon as it decides and runs.
    pub metrics: Arc<Metrics>,
    /// The configuration in force (swapped on reload).
    pub config: Arc<RwLock<Arc<Config>>>,
    /// A connection of the endpoint's own (readers never block the daemon's writes in WAL).
    pub store: Mutex<Box<dyn Store>>,
    /// The daemon's clock, so `/status` and `/metrics` agree with its decisions (rehearsals too).
    pub clock: Arc<dyn Clock>,
    /// Where operators drop `simulate --json` reports (`Home::simulations_dir`).
    pub simulations: PathBuf,
}

impl WebState {
    fn config(&self) -> Arc<Config> {
        Arc::clone(
            &self
                .config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Box<dyn Store>> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The most connections served at once. Each holds a file descriptor the daemon also needs for
/// runs and the store; one more closes the oldest, so the newest request is always served.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection that has not sent a whole request head this long after it opened, or after its
/// last response, is closed: idle keep-alive connections and slow senders alike.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection outlives this, whatever it does (e.g. a client that never reads its response).
pub const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(300);
/// The wait after a failed accept (out of file descriptors), rather than spinning on it.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: Arc<WebState>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .route("/history", get(history))
        .route("/simulation", get(simulation))
        .with_state(state);
    tokio::spawn(accept_loop(listener, app));
    Ok(bound)
}

/// Open connections, oldest first, by id; dropping a sender closes its connection.
type Open = Arc<Mutex<VecDeque<(u64, oneshot::Sender<()>)>>>;

/// Accepts connections and serves each on its own task, under [`MAX_CONNECTIONS`],
/// [`HEADER_TIMEOUT`] and [`MAX_CONNECTION_LIFE`]. (`axum::serve` has none of these.)
async fn accept_loop(listener: tokio::net::TcpListener, app: Router) {
    let open = Open::default();
    for id in 0u64.. {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("The HTTP endpoint could not accept a connection: {e}.");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let (close, closed) = oneshot::channel();
        {
            let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
            while open.len() >= MAX_CONNECTIONS {
                open.pop_front();
            }
            open.push_back((id, close));
        }
        let (open, service) = (Arc::clone(&open), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = closed => {}
                () = tokio::time::sleep(MAX_CONNECTION_LIFE) => {}
            }
            open.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(i, _)| *i != id);
        });
    }
}

fn failed(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("lanekeeper: {e}\n"),
    )
        .into_response()
}

/// Runs store work off the event loop.
async fn blocking<T: Send + 'static>(
    state: Arc<WebState>,
    f: impl FnOnce(&WebState) -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(move || f(&state)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(e)),
        Err(e) => Err(failed(e)),
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// The format an `Accept` header asks for, negotiated as Prometheus's Go client does: the
/// acceptable media ranges in order of preference (q, then header order), the first one we can
/// serve wins; OpenMetrics only when asked for (unversioned or 1.0.0), classic text otherwise.
fn negotiate(accept: Option<&str>) -> Format {
    let mut ranges: Vec<(f64, Option<Format>)> = accept
        .unwrap_or("")
        .split(',')
        .map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut version) = (1.0, None);
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse::<f64>().unwrap_or(0.0),
                    "version" => version = Some(value.to_string()),
                    _ => {}
                }
            }
            let format = match (media.as_str(), version.as_deref()) {
                ("application/openmetrics-text", None | Some("1.0.0")) => Some(Format::OpenMetrics),
                ("text/plain", None | Some("0.0.4")) => Some(Format::Prometheus),
                _ => None,
            };
            (q, format)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // Stable: equal preferences keep the header's order.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges
        .into_iter()
        .find_map(|(_, format)| format)
        .unwrap_or(Format::Prometheus)
}

async fn metrics(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let format = negotiate(Some(&accept));
    let body = blocking(state, move |s| {
        let config = s.config();
        let states =
            process::live_states(&**s.store(), &config.lanes).map_err(|e| e.to_string())?;
        s.metrics.refresh(&config.lanes, &states, s.clock.now());
        s.metrics.encode(format).map_err(|e| e.to_string())
    })
    .await;
    match body {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(r) => r,
    }
}

async fn status_json(State(state): State<Arc<WebState>>) -> Response {
    let report = blocking(state, |s| {
        let config = s.config();
        let store = s.store();
        let states = process::live_states(&**store, &config.lanes).map_err(|e| e.to_string())?;
        status::build(&config.lanes, states, &**store, s.clock.now()).map_err(|e| e.to_string())
    })
    .await;
    match report {
        Ok(r) => axum::Json(r).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    hours: Option<u32>,
}

#[derive(Serialize)]
struct HistoryRun {
    lane: String,
    source: String,
    started_at: Timestamp,
    ended_at: Option<Timestamp>,
    result: Option<crate::state::RunResult>,
}

#[derive(Serialize)]
struct History {
    from: Timestamp,
    to: Timestamp,
    episodes: Vec<EpisodeSummary>,
    runs: Vec<HistoryRun>,
}

async fn history(State(state): State<Arc<WebState>>, Query(q): Query<HistoryQuery>) -> Response {
    let hours = u64::from(q.hours.unwrap_or(24).clamp(1, 24 * 31));
    let report = blocking(state, move |s| {
        let to = s.clock.now();
        let from = crate::clock::earlier(to, Duration::from_secs(hours * 3600));
        let store = s.store();
        let episodes = store.episodes_since(from).map_err(|e| e.to_string())?;
        let runs = store.runs_since(from).map_err(|e| e.to_string())?;
        Ok(History {
            from,
            to,
            episodes: episodes
                .iter()
                .map(crate::state::Episode::summary)
                .collect(),
            runs: runs
                .into_iter()
                .map(|r| HistoryRun {
                    lane: r.lane,
                    source: r.source,
                    started_at: r.started_at,
                    ended_at: r.ended_at,
                    result: r.result,
                })
                .collect(),
        })
    })
    .await;
    match report {
        Ok(h) => axum::Json(h).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct SimulationQuery {
    tz: Option<String>,
}

/// The largest report `/simulation` reads: a year of the shipped home is about 20 MB.
const MAX_SIMULATION_BYTES: u64 = 64 << 20;

/// The newest `*.json` file in `dir` (by modification time, then name), if any.
fn newest_json(dir: &Path) -> std::io::Result<Option<(PathBuf, std::time::SystemTime)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut newest: Option<(PathBuf, std::time::SystemTime)> = None;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if newest
            .as_ref()
            .is_none_or(|(p, m)| (modified, &path) > (*m, p))
        {
            newest = Some((path, modified));
        }
    }
    Ok(newest)
}

/// A page around `body`, in the status page's style.
fn simulation_page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lanekeeper: simulation</title>
<style>
  body {{ margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #fbfbfa; color: #1d1f21; }}
  header {{ display: flex; align-items: baseline; gap: 1rem; padding: 1rem 1.5rem .5rem; }}
  h1 {{ font-size: 1.25rem; margin: 0; }}
  main {{ padding: 0 1.5rem 1.5rem; overflow-x: auto; }}
  .meta {{ color: #6b7075; }}
  table {{ border-collapse: collapse; margin-top: 1rem; }}
  th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e3e4e6; }}
  th {{ color: #6b7075; font-size: .8rem; }}
  code {{ font-family: ui-monospace, monospace; }}
</style>
</head>
<body>
<header><h1>Simulation</h1><a href="/">status</a></header>
<main>
{body}
</main>
</body>
</html>
"#
    );
    (status, Html(html)).into_response()
}

async fn simulation(
    State(state): State<Arc<WebState>>,
    Query(q): Query<SimulationQuery>,
) -> Response {
    use crate::simulate::{report::Report, svg};
    let zone = match q.tz.as_deref() {
        None => jiff::tz::TimeZone::UTC,
        Some(z) => match jiff::tz::TimeZone::get(z) {
            Ok(zone) => zone,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("lanekeeper: tz `{z}` is not an IANA time zone ({e})\n"),
                )
                    .into_response();
            }
        },
    };
    let dir = state.simulations.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let Some((path, modified)) =
            newest_json(&dir).map_err(|e| format!("{}: {e}", dir.display()))?
        else {
            return Ok(None);
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_SIMULATION_BYTES + 1),
            &mut text,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        if text.len() as u64 > MAX_SIMULATION_BYTES {
            return Err(format!(
                "{} is over {} MB; simulate a shorter period",
                path.display(),
                MAX_SIMULATION_BYTES >> 20
            ));
        }
        let report: Report = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a `lanekeeper simulate --json` report: {e}",
                path.display()
            )
        })?;
        Ok(Some((name, Timestamp::try_from(modified).ok(), report)))
    })
    .await;
    let (name, modified, report) = match read {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => {
            return simulation_page(
                StatusCode::NOT_FOUND,
                &format!(
                    "<p id=\"none\">No simulation is published. Write one into <code>{}</code>, e.g. <code>lanekeeper simulate --to 7d --json &gt; {}/week.json</code>; the newest file there is shown.</p>",
                    svg::esc(&state.simulations.display().to_string()),
                    svg::esc(&state.simulations.display().to_string()),
                ),
            );
        }
        Ok(Err(e)) => return failed(e),
        Err(e) => return failed(e),
    };
    let mut body = format!(
        "<p class=\"meta\" id=\"source\"><code>{}</code>{}: {} to {}, {} passes ({}); times in {}.</p>\n<figure id=\"chart\">\n{}</figure>\n",
        svg::esc(&name),
        modified.map_or(String::new(), |t| format!(
            ", written {}",
            t.round(jiff::Unit::Second).unwrap_or(t)
        )),
        report.from,
        report.to,
        report.passes,
        svg::esc(&report.stepping),
        svg::esc(zone.iana_name().unwrap_or("UTC")),
        svg::render(&report, &zone),
    );
    body.push_str("<table id=\"lanes\">\n<tr><th>lane</th><th>triggers (forced)</th><th>runs (failed)</th><th>deferral episodes</th><th>runs last</th></tr>\n");
    for lane in &report.lanes {
        body.push_str(&format!(
            "<tr data-lane=\"{name}\"><td>{name}</td><td>{} ({})</td><td>{} ({})</td><td>{}</td><td>{} ({})</td></tr>\n",
            lane.triggers.len(),
            lane.forced(),
            lane.runs.len(),
            lane.failed(),
            lane.deferrals.len(),
            svg::esc(&lane.run_length),
            svg::esc(&lane.run_length_basis),
            name = svg::esc(&lane.lane),
        ));
    }
    body.push_str("</table>");
    simulation_page(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_serves_openmetrics_only_to_scrapers_that_ask_for_it() {
        let cases = [
            (None, Format::Prometheus),
            (Some(""), Format::Prometheus),
            (Some("*/*"), Format::Prometheus),
            (Some("text/plain"), Format::Prometheus),
            (Some("application/json"), Format::Prometheus),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Format::OpenMetrics,
            ),
            // Prometheus 3's scrape header.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
                     application/openmetrics-text;version=0.0.1;q=0.5,\
                     text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
                     text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                Format::OpenMetrics,
            ),
            // Preference order decides, not position.
            (
                Some("application/openmetrics-text;q=0.5, text/plain;version=0.0.4;q=0.9"),
                Format::Prometheus,
            ),
            (
                Some("text/plain;q=0.2, APPLICATION/OpenMetrics-Text;q=0.8"),
                Format::OpenMetrics,
            ),
            // q=0 means "not acceptable"; a version we do not speak is skipped.
            (Some("application/openmetrics-text;q=0"), Format::Prometheus),
            (
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Prometheus,
            ),
            (
                Some("application/openmetrics-text;version=0.0.1, text/plain"),
                Format::Prometheus,
            ),
            (
                Some("application/openmetrics-text; version=\"1.0.0\""),
                Format::OpenMetrics,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(accept), want, "{accept:?}");
        }
    }
}
