//! The context a WASM plugin receives: a fixed little-endian header with the numbers and the
//! places of the strings, then the strings. Fixed fields cost a guest a load each instead of a
//! JSON parse (measured: parsing the JSON context was most of an SDK guest's work). Only the
//! lane's `with:` parameters, whose shape is the plugin's own, stay JSON. Lane states are read
//! through the `lane` host function, so each read is recorded as evidence exactly as
//! `ctx.lanes.<name>` is in Rhai. The layout is in docs/PLUGINS.md.

use std::io::Write;

use crate::plugins::GateInput;

/// Layout version, the context's first field.
pub const VERSION: u32 = 1;

/// Bytes before the first string: version, flags, `now_ms`, the local-time numbers and eight
/// `(offset, len)` string places.
pub const HEADER: usize = 24 + 8 * 8;

/// Writes the context for one evaluation into `out`. `params` is the lane's `with:`
/// parameters, already JSON.
pub fn write(input: &GateInput<'_>, params: &str, out: &mut Vec<u8>) {
    let pass = input.pass;
    let now = pass.now();
    let local = now.to_zoned(input.zone.clone());
    let minutes =
        u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
    out.clear();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&now.as_millisecond().to_le_bytes());
    for n in [
        local.hour(),
        local.minute(),
        local.second(),
        local.weekday().to_monday_one_offset(),
    ] {
        out.push(n.unsigned_abs());
    }
    out.extend_from_slice(&minutes.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.resize(HEADER, 0);
    // Each string is formatted straight into `out`, then its place is filled in.
    let string = |i: usize, out: &mut Vec<u8>, write: &dyn Fn(&mut Vec<u8>)| {
        let at = out.len();
        write(out);
        let (place, len) = (24 + 8 * i, (out.len() - at) as u32);
        out[place..place + 4].copy_from_slice(&(at as u32).to_le_bytes());
        out[place + 4..place + 8].copy_from_slice(&len.to_le_bytes());
    };
    // Writing into a Vec cannot fail.
    string(0, out, &|o| o.extend_from_slice(input.lane.as_bytes()));
    string(1, out, &|o| {
        let _ = write!(o, "{now}");
    });
    string(2, out, &|o| {
        let _ = write!(o, "{}", local.date());
    });
    string(3, out, &|o| {
        let _ = write!(
            o,
            "{:02}:{:02}:{:02}",
            local.hour(),
            local.minute(),
            local.second()
        );
    });
    string(4, out, &|o| {
        o.extend_from_slice(local.time_zone().iana_name().unwrap_or("UTC").as_bytes())
    });
    string(5, out, &|o| {
        let _ = write!(o, "{}", local.offset());
    });
    string(6, out, &|o| o.extend_from_slice(params.as_bytes()));
    string(7, out, &|o| {
        o.extend_from_slice(pass.lane_names_json().as_bytes())
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::settings::MetricCatalog;
    use crate::model::lane_state::{LaneState, LaneStates};
    use crate::model::observer::Canned;
    use crate::plugins::PassHost;

    #[test]
    fn the_context_has_fixed_fields_and_local_time_in_the_lane_zone() {
        let mut states = LaneStates::new();
        states.insert("back\"up".into(), LaneState::default());
        let pass = Arc::new(PassHost::new(
            "2026-03-29T04:30:00Z".parse().unwrap(),
            Arc::new(states),
            Arc::new(Canned::up()),
            Arc::new(MetricCatalog::default()),
        ));
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let input = GateInput {
            lane: "night",
            zone: &zone,
            pass: &pass,
        };
        let mut out = Vec::new();
        write(&input, "{\"window\":\"01:00-06:00\"}", &mut out);
        let u32_at = |at: usize| u32::from_le_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        let string = |i: usize| {
            let (at, len) = (u32_at(24 + 8 * i), u32_at(28 + 8 * i));
            std::str::from_utf8(&out[at..at + len]).unwrap()
        };
        assert_eq!(u32_at(0), 1);
        let now_ms = i64::from_le_bytes(out[8..16].try_into().unwrap());
        assert_eq!(now_ms, 1_774_758_600_000);
        assert_eq!(out[16..20], [6, 30, 0, 7]);
        assert_eq!(u16::from_le_bytes([out[20], out[21]]), 390);
        assert_eq!(string(0), "night");
        assert_eq!(string(1), "2026-03-29T04:30:00Z");
        assert_eq!(string(2), "2026-03-29");
        assert_eq!(string(3), "06:30:00");
        assert_eq!(string(4), "Europe/Berlin");
        assert_eq!(string(5), "+02");
        assert_eq!(string(6), "{\"window\":\"01:00-06:00\"}");
        assert_eq!(string(7), "[\"back\\\"up\"]");
        assert_eq!(u32_at(24), HEADER);
        assert_eq!(u32_at(24 + 8 * 7) + u32_at(28 + 8 * 7), out.len());
    }
}
