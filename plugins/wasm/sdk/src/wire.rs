//! The host's fixed-layout records (context, lane state, probe, metric reading): little-endian
//! fields at fixed offsets, read with plain loads instead of parsing JSON. The layouts are in
//! lanekeeper's docs/PLUGINS.md.

use crate::{Context, LaneState, Local, Probe, Verdict};

/// The unsigned little-endian number of `n` bytes at `at`.
pub(crate) fn num(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x)))
}

fn text(bytes: &[u8], at: usize) -> Option<String> {
    let rest = bytes.get(at..)?;
    (!rest.is_empty()).then(|| String::from_utf8_lossy(rest).into_owned())
}

/// The context's layout version.
const VERSION: u32 = 1;

/// Bytes before the context's strings.
const HEADER: usize = 24 + 8 * STRINGS;

/// The context's strings: lane, now, date, time, zone, offset, params, lanes.
const STRINGS: usize = 8;

impl Context {
    /// Takes the context as the host passes it: a fixed header, then strings (the layout is in
    /// lanekeeper's docs/PLUGINS.md). Only the structure is checked here; fields are read when
    /// a plugin asks for them.
    pub(crate) fn from_wire(wire: Vec<u8>) -> Result<Self, String> {
        let version = num(&wire, 0, 4).ok_or("the context is truncated")?;
        if version != u64::from(VERSION) {
            return Err(format!(
                "context layout {version} is not {VERSION}; rebuild the plugin with a matching SDK"
            ));
        }
        if wire.len() < HEADER || (0..STRINGS).any(|i| context_bytes(&wire, i).is_none()) {
            return Err("the context is truncated".into());
        }
        Ok(Context {
            wire,
            ..Context::default()
        })
    }
}

fn context_bytes(wire: &[u8], i: usize) -> Option<&[u8]> {
    let at = num(wire, 24 + 8 * i, 4)? as usize;
    let len = num(wire, 28 + 8 * i, 4)? as usize;
    wire.get(at..at.checked_add(len)?)
}

/// The context's `i`-th string.
pub(crate) fn context_text(wire: &[u8], i: usize) -> Option<&str> {
    std::str::from_utf8(context_bytes(wire, i)?).ok()
}

/// Writes a context record, as the host does (for [`Context::parse`]).
pub(crate) fn context(
    lane: &str,
    now_ms: i64,
    now: &str,
    local: &Local,
    params: &str,
    lanes: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&now_ms.to_le_bytes());
    for n in [local.hour, local.minute, local.second, local.weekday] {
        out.push(n as u8);
    }
    out.extend_from_slice(&(local.minutes as u16).to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    let strings = [
        lane,
        now,
        &local.date,
        &local.time,
        &local.zone,
        &local.offset,
        params,
        lanes,
    ];
    let mut at = HEADER;
    for s in strings {
        out.extend_from_slice(&(at as u32).to_le_bytes());
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        at += s.len();
    }
    for s in strings {
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// The verdict record `evaluate` returns (`None`: a plain pass): `u32` kind (0 pass, 1 defer,
/// 2 error), `u32` presence bits (reason, detail, hint), three `(offset, len)` string places,
/// then the strings. An error's message is its detail.
pub(crate) fn verdict(outcome: &Result<Verdict, String>) -> Option<Vec<u8>> {
    let (kind, reason, detail, hint) = match outcome {
        Ok(Verdict::Pass { detail: None }) => return None,
        Ok(Verdict::Pass { detail }) => (0u32, None, detail.as_deref(), None),
        Ok(Verdict::Defer {
            reason,
            detail,
            hint,
        }) => (
            1,
            Some(reason.as_str()),
            Some(detail.as_str()),
            hint.as_deref(),
        ),
        Err(message) => (2, None, Some(message.as_str()), None),
    };
    let fields = [reason, detail, hint];
    let present = fields
        .iter()
        .enumerate()
        .fold(0u32, |bits, (i, f)| bits | (u32::from(f.is_some()) << i));
    let mut out = Vec::with_capacity(32 + fields.iter().flatten().map(|f| f.len()).sum::<usize>());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&present.to_le_bytes());
    let mut at = 32u32;
    for f in fields {
        let len = f.map_or(0, |f| f.len() as u32);
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        at += len;
    }
    for f in fields.into_iter().flatten() {
        out.extend_from_slice(f.as_bytes());
    }
    Some(out)
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
                5 => Some("cancelled".into()),
                _ => None,
            },
            last_exit_code: value(2),
            last_signal: value(3),
            running: num(r, 5, 1)? != 0,
            starting: num(r, 5, 1)? == 2,
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
    fn verdicts_encode_kind_presence_and_strings() {
        assert_eq!(verdict(&Ok(Verdict::pass())), None);
        let r = verdict(&Ok(Verdict::defer("late", "it is 9").with_hint("wait"))).unwrap();
        assert_eq!(num(&r, 0, 4), Some(1));
        assert_eq!(num(&r, 4, 4), Some(0b111));
        assert_eq!((num(&r, 8, 4), num(&r, 12, 4)), (Some(32), Some(4)));
        assert_eq!(&r[32..], b"lateit is 9wait");
        let e = verdict(&Err("boom".into())).unwrap();
        assert_eq!((num(&e, 0, 4), num(&e, 4, 4)), (Some(2), Some(0b010)));
        assert_eq!(&e[32..], b"boom");
    }

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
