//! The host's fixed-layout records (context, lane state, probe, metric reading): little-endian
//! fields at fixed offsets, read with plain loads instead of parsing JSON. The layouts are in
//! lanekeeper's docs/PLUGINS.md.

use crate::{Context, LaneState, Local, Params, Probe};

/// The unsigned little-endian number of `n` bytes at `at`.
pub(crate) fn num(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x)))
}

fn text(bytes: &[u8], at: usize) -> Option<String> {
    let rest = bytes.get(at..)?;
    (!rest.is_empty()).then(|| String::from_utf8_lossy(rest).into_owned())
}

impl Context {
    /// Reads the context as the host passes it: a fixed header, then strings (the layout is in
    /// lanekeeper's docs/PLUGINS.md).
    pub(crate) fn from_wire(bytes: &[u8]) -> Result<Self, String> {
        const VERSION: u32 = 1;
        const STRINGS: usize = 8;
        let num = |at: usize, n: usize| {
            num(bytes, at, n).ok_or_else(|| "the context is truncated".to_string())
        };
        if num(0, 4)? != u64::from(VERSION) {
            return Err(format!(
                "context layout {} is not {VERSION}; rebuild the plugin with a matching SDK",
                num(0, 4)?
            ));
        }
        let mut text = [""; STRINGS];
        for (i, t) in text.iter_mut().enumerate() {
            let (at, len) = (num(24 + 8 * i, 4)? as usize, num(28 + 8 * i, 4)? as usize);
            let b = bytes
                .get(at..at.saturating_add(len))
                .ok_or("a context string lies outside the context")?;
            *t = std::str::from_utf8(b).map_err(|_| "a context string is not UTF-8")?;
        }
        let [lane, now, date, time, zone, offset, params, lanes] = text;
        let small = |at: usize| num(at, 1).map(|v| v as u32);
        Ok(Context {
            lane: lane.to_string(),
            now_ms: num(8, 8)? as i64,
            now: now.to_string(),
            local: Local {
                date: date.to_string(),
                time: time.to_string(),
                hour: small(16)?,
                minute: small(17)?,
                second: small(18)?,
                weekday: small(19)?,
                minutes: num(20, 2)? as u32,
                zone: zone.to_string(),
                offset: offset.to_string(),
            },
            params: Params(crate::json::parse(params)?),
            lanes: lanes.to_string(),
        })
    }
}

impl LaneState {
    /// A lane-state record: presence bits, result, running, then six `i64`s.
    pub(crate) fn from_wire(name: &str, r: &[u8]) -> Option<Self> {
        if r.len() < 56 {
            return None;
        }
        let present = num(r, 0, 4)?;
        let value = |i: usize| -> Option<i64> {
            let v = num(r, 8 + 8 * i, 8)? as i64;
            (present & (1 << i) != 0).then_some(v)
        };
        Some(LaneState {
            name: name.to_string(),
            last_run_ms: value(0),
            last_success_ms: value(1),
            last_result: match num(r, 4, 1)? {
                1 => Some("success".into()),
                2 => Some("failure".into()),
                3 => Some("interrupted".into()),
                4 => Some("unknown".into()),
                _ => None,
            },
            last_exit_code: value(2),
            last_signal: value(3),
            running: num(r, 5, 1)? != 0,
            pid: value(4),
            running_since_ms: value(5),
        })
    }
}

impl Probe {
    /// A probe record: flags, status, latency, then the error text.
    pub(crate) fn from_wire(r: &[u8]) -> Option<Self> {
        let flags = num(r, 0, 4)?;
        num(r, 8, 8)?;
        Some(Probe {
            ok: flags & 1 != 0,
            status: (flags & 2 != 0).then_some(num(r, 4, 2)? as u16),
            latency_ms: f64::from_bits(num(r, 8, 8)?),
            error: text(r, 16),
        })
    }
}

/// A metric record: read or not, the value, then why not.
pub(crate) fn metric(r: &[u8]) -> Option<Result<f64, String>> {
    Some(if num(r, 0, 4)? == 1 {
        Ok(f64::from_bits(num(r, 8, 8)?))
    } else {
        Err(text(r, 16).unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_field_by_field() {
        let mut lane = vec![0b10_0010, 0, 0, 0, 2, 1, 0, 0];
        for v in [0i64, 1_000, 0, 0, 0, 7_000] {
            lane.extend_from_slice(&v.to_le_bytes());
        }
        let s = LaneState::from_wire("b", &lane).unwrap();
        assert_eq!(s.last_run_ms, None);
        assert_eq!(s.last_success_ms, Some(1_000));
        assert_eq!(s.last_result.as_deref(), Some("failure"));
        assert!(s.running);
        assert_eq!(s.running_since_ms, Some(7_000));
        assert_eq!(LaneState::from_wire("b", &lane[..20]), None);

        let mut probe = vec![3, 0, 0, 0, 200, 0, 0, 0];
        probe.extend_from_slice(&12.5f64.to_le_bytes());
        let p = Probe::from_wire(&probe).unwrap();
        assert_eq!(
            (p.ok, p.status, p.latency_ms, p.error),
            (true, Some(200), 12.5, None)
        );
        let mut refused = vec![0; 8];
        refused.extend_from_slice(&3.0f64.to_le_bytes());
        refused.extend_from_slice(b"refused");
        assert_eq!(
            Probe::from_wire(&refused).unwrap().error.as_deref(),
            Some("refused")
        );

        let mut read = vec![1, 0, 0, 0, 0, 0, 0, 0];
        read.extend_from_slice(&0.5f64.to_le_bytes());
        assert_eq!(metric(&read), Some(Ok(0.5)));
        let mut unread = vec![0; 16];
        unread.extend_from_slice(b"no such file");
        assert_eq!(metric(&unread), Some(Err("no such file".into())));
    }
}
