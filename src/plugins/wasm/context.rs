//! The context a WASM plugin receives, as one JSON object: what Rhai's `ctx` holds, except that
//! lane states are read through the `lane` host function, so each read is recorded as evidence
//! exactly as `ctx.lanes.<name>` is in Rhai.

use std::fmt::Write;

use crate::plugins::GateInput;

/// Writes the context JSON for one evaluation into `out`. `params` is the lane's `with:`
/// parameters, already JSON.
pub fn write(input: &GateInput<'_>, params: &str, out: &mut String) {
    let pass = input.pass;
    let now = pass.now();
    let local = now.to_zoned(input.zone.clone());
    out.push_str("{\"lane\":");
    string(out, input.lane);
    let _ = write!(out, ",\"now_ms\":{},\"now\":", now.as_millisecond());
    string(out, &now.to_string());
    let _ = write!(
        out,
        ",\"local\":{{\"date\":\"{}\",\"time\":\"{}\",\"hour\":{},\"minute\":{},\"second\":{},\"minutes\":{},\"weekday\":{},\"zone\":",
        local.date(),
        local.time().strftime("%H:%M:%S"),
        local.hour(),
        local.minute(),
        local.second(),
        i32::from(local.hour()) * 60 + i32::from(local.minute()),
        local.weekday().to_monday_one_offset(),
    );
    string(out, local.time_zone().iana_name().unwrap_or("UTC"));
    out.push_str(",\"offset\":");
    string(out, &local.offset().to_string());
    out.push_str("},\"params\":");
    out.push_str(params);
    out.push_str(",\"lanes\":[");
    for (i, name) in pass.states().keys().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, name);
    }
    out.push_str("]}");
}

/// Appends `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    // Serialising a `&str` cannot fail.
    if let Ok(json) = serde_json::to_string(s) {
        out.push_str(&json);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::settings::MetricCatalog;
    use crate::observe::LiveObserver;
    use crate::plugins::PassHost;
    use crate::state::{LaneState, LaneStates};

    #[test]
    fn the_context_is_json_with_local_time_in_the_lane_zone() {
        let mut states = LaneStates::new();
        states.insert("back\"up".into(), LaneState::default());
        let pass = Arc::new(PassHost::new(
            "2026-03-29T04:30:00Z".parse().unwrap(),
            Arc::new(states),
            Arc::new(LiveObserver::default()),
            Arc::new(MetricCatalog::default()),
        ));
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let input = GateInput {
            lane: "night",
            zone: &zone,
            pass: &pass,
        };
        let mut out = String::new();
        write(&input, "{\"window\":\"01:00-06:00\"}", &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["lane"], "night");
        assert_eq!(v["now"], "2026-03-29T04:30:00Z");
        assert_eq!(v["local"]["time"], "06:30:00");
        assert_eq!(v["local"]["minutes"], 390);
        assert_eq!(v["local"]["weekday"], 7);
        assert_eq!(v["local"]["zone"], "Europe/Berlin");
        assert_eq!(v["params"]["window"], "01:00-06:00");
        assert_eq!(v["lanes"][0], "back\"up");
    }
}
