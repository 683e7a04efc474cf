//! `simulate --svg FILE`: the report as a Gantt chart, one row per lane, its deferral episodes
//! coloured by reason, its runs by outcome, its triggers as ticks, with a legend and a time axis
//! in a chosen zone. Hand-written SVG, deterministic (same report, same bytes), so it can be
//! checked into a review and compared.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::report::Report;
use crate::model::lane_state::RunResult;

const LABEL_W: f64 = 170.0;
const PLOT_W: f64 = 820.0;
const ROW_H: f64 = 26.0;
const TOP: f64 = 34.0;
const RUN_OK: &str = "#2e7d32";
const RUN_FAILED: &str = "#c62828";
const RUN_OPEN: &str = "#9e9e9e";
const TRIGGER: &str = "#000000";
const FORCED: &str = "#ef6c00";
/// Deferral colours, given to reasons in alphabetical order.
const PALETTE: [&str; 8] = [
    "#90caf9", "#ffe082", "#ce93d8", "#80cbc4", "#f48fb1", "#bcaaa4", "#b0bec5", "#c5e1a5",
];

/// Text safe inside an SVG (or HTML) element or attribute.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Hours between axis ticks: the smallest of these giving at most a dozen ticks.
fn tick_hours(span_ms: i64) -> i64 {
    let hours = span_ms / 3_600_000;
    [1, 2, 3, 6, 12, 24, 48, 168, 336, 720]
        .into_iter()
        .find(|h| hours / h <= 12)
        .unwrap_or(720)
}

/// The chart of `report`, its axis in `zone`.
pub fn render(report: &Report, zone: &TimeZone) -> String {
    let (from, to) = (report.from.as_millisecond(), report.to.as_millisecond());
    let span = (to - from).max(1) as f64;
    let x = |t: Timestamp| {
        let ms = t.as_millisecond().clamp(from, to);
        LABEL_W + (ms - from) as f64 / span * PLOT_W
    };
    let reasons: Vec<String> = report
        .lanes
        .iter()
        .flat_map(|l| l.deferrals.iter().map(|d| d.reason.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let colour = |reason: &str| {
        let i = reasons.iter().position(|r| r == reason).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let rows = report.lanes.len() as f64;
    let legend_y = TOP + rows * ROW_H + 30.0;
    let legend_items = 4 + reasons.len();
    let height = legend_y + (legend_items as f64 / 4.0).ceil() * 18.0 + 10.0;
    let width = LABEL_W + PLOT_W + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );

    // The axis: ticks on whole hours of the zone.
    let zone_name = zone.iana_name().unwrap_or("UTC");
    let _ = writeln!(
        svg,
        r#"<g class="axis"><text x="4" y="14">times in {}</text>"#,
        esc(zone_name)
    );
    let step = tick_hours(to - from);
    let first = report
        .from
        .to_zoned(zone.clone())
        .with()
        .minute(0)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .map(|z| z.timestamp())
        .unwrap_or(report.from);
    let mut t = first.as_millisecond();
    while t < to {
        if let Ok(ts) = Timestamp::from_millisecond(t) {
            let z = ts.to_zoned(zone.clone());
            let on_step = if step < 24 {
                i64::from(z.hour()) % step == 0
            } else {
                z.hour() == 0 && (i64::from(z.day_of_year()) - 1) % (step / 24) == 0
            };
            if ts >= report.from && on_step {
                let px = x(ts);
                let _ = writeln!(
                    svg,
                    r##"<line x1="{px:.1}" y1="{y1}" x2="{px:.1}" y2="{y2}" stroke="#dddddd"/><text x="{px:.1}" y="{ty}" text-anchor="middle">{}</text>"##,
                    z.strftime("%m-%d %H:%M"),
                    y1 = TOP - 4.0,
                    y2 = TOP + rows * ROW_H,
                    ty = TOP - 8.0,
                );
            }
        }
        t += 3_600_000;
    }
    let _ = writeln!(svg, "</g>");

    for (i, lane) in report.lanes.iter().enumerate() {
        let y = TOP + i as f64 * ROW_H;
        let _ = writeln!(
            svg,
            r##"<g class="lane" data-lane="{name}"><text x="4" y="{ty:.1}">{name}</text><line x1="{LABEL_W}" y1="{yb:.1}" x2="{x2}" y2="{yb:.1}" stroke="#eeeeee"/>"##,
            name = esc(&lane.lane),
            ty = y + ROW_H / 2.0 + 4.0,
            yb = y + ROW_H,
            x2 = LABEL_W + PLOT_W,
        );
        for d in &lane.deferrals {
            let (x1, x2) = (x(d.from), x(d.to.unwrap_or(report.to)));
            let _ = writeln!(
                svg,
                r#"<rect x="{x1:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>deferred: {} at {}</title></rect>"#,
                y + 4.0,
                (x2 - x1).max(1.0),
                ROW_H - 8.0,
                colour(&d.reason),
                esc(&d.reason),
                esc(&d.gate)
            );
        }
        for r in &lane.runs {
            let (x1, x2) = (x(r.started_at), x(r.ended_at.unwrap_or(report.to)));
            let (fill, how) = match r.result {
                Some(RunResult::Failure) => (RUN_FAILED, "failure"),
                Some(_) => (RUN_OK, "success"),
                None => (RUN_OPEN, "running at the end"),
            };
            let _ = writeln!(
                svg,
                r#"<rect x="{x1:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>run: {how}</title></rect>"#,
                y + 8.0,
                (x2 - x1).max(1.5),
                ROW_H - 16.0,
            );
        }
        for t in &lane.triggers {
            let px = x(t.at);
            let stroke = if t.forced { FORCED } else { TRIGGER };
            let _ = writeln!(
                svg,
                r#"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="1.5"><title>{}</title></line>"#,
                y + 2.0,
                y + ROW_H - 2.0,
                esc(&t.reason)
            );
        }
        let _ = writeln!(svg, "</g>");
    }

    // The legend, four entries a line.
    let mut items: Vec<(String, &str)> = vec![
        ("run: success".into(), RUN_OK),
        ("run: failure".into(), RUN_FAILED),
        ("trigger".into(), TRIGGER),
        ("forced trigger".into(), FORCED),
    ];
    items.extend(
        reasons
            .iter()
            .map(|r| (format!("deferred: {r}"), colour(r))),
    );
    let _ = writeln!(svg, r#"<g class="legend">"#);
    for (i, (label, fill)) in items.iter().enumerate() {
        let lx = 4.0 + (i % 4) as f64 * 240.0;
        let ly = legend_y + (i / 4) as f64 * 18.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{fill}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 10.0,
            lx + 16.0,
            esc(label)
        );
    }
    let _ = writeln!(svg, "</g>\n</svg>");
    svg
}
