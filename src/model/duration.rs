//! Durations as operators write them: `90s`, `15m`, `36h`, `7d`, `250ms`.
//!
//! `0`, `off` and negative values mean "disabled" (the original coordinator's `Math.max(x, 0)`
//! rule), which is only meaningful for a schedule; elsewhere the loader rejects them.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// The longest any duration may be: 100 years. Timestamps end in the year 9999, so much longer
/// ones cannot be added to a date at all.
pub const MAX: Duration = Duration::from_secs(36_500 * 86_400);
/// The longest `recheck`: the daemon re-decides every lane at least hourly anyway.
pub const MAX_RECHECK: Duration = Duration::from_secs(86_400);
/// The longest wait on children: `command.grace` and `shutdown_timeout`.
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);
/// The longest budget of one plugin evaluation or metric read, which holds up a whole pass.
pub const MAX_EVALUATION: Duration = Duration::from_secs(3_600);

/// A duration field as written: either a positive duration or "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationSetting {
    /// `0`, `off`, or a negative number.
    Off,
    /// A positive duration.
    On(Duration),
}

/// Why a duration did not parse; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration; write e.g. 90s, 15m, 36h or 7d")]
    Empty,
    /// Not numbers with units.
    #[error("`{0}` is not a duration; write e.g. 90s, 15m, 36h or 7d")]
    NotADuration(String),
    /// A number without a unit.
    #[error("`{0}` has no unit; write e.g. 90s, 15m, 36h or 7d (units: ms, s, m, h, d, w)")]
    NoUnit(String),
    /// A unit we do not know.
    #[error("`{text}`: unknown unit `{unit}` (units: ms, s, m, h, d, w)")]
    UnknownUnit {
        /// The duration as written.
        text: String,
        /// The unit.
        unit: String,
    },
    /// `1.5h`: fractions are not supported; `instead` is the same length in whole units.
    #[error("`{text}`: fractions are not supported; write {}", instead.as_deref().unwrap_or("whole numbers of a smaller unit, e.g. 90m for 1.5h"))]
    Fraction {
        /// The duration as written.
        text: String,
        /// The same duration in a smaller unit, when there is one.
        instead: Option<String>,
    },
    /// Zero where a positive duration is required.
    #[error("`{0}` is zero; a positive duration is required here")]
    Zero(String),
    /// Longer than any date can be moved by.
    #[error("`{0}` is too long; a duration is at most 36500d (100 years)")]
    TooLong(String),
}

/// Parses `90s`, `15m`, `36h`, `7d`, `250ms`, `1h30m`; `0`, `off` and negatives give `Off`.
pub fn parse_setting(text: &str) -> Result<DurationSetting, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    if t.eq_ignore_ascii_case("off") || t == "0" {
        return Ok(DurationSetting::Off);
    }
    if let Some(rest) = t.strip_prefix('-') {
        parse(rest)?;
        return Ok(DurationSetting::Off);
    }
    parse(t).map(DurationSetting::On)
}

/// Parses a strictly positive duration such as `90s` or `1h30m`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let mut total: u128 = 0;
    let mut rest = t;
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(DurationError::NotADuration(t.to_string()));
        }
        let (num, tail) = rest.split_at(digits);
        if let Some(fraction) = tail.strip_prefix(['.', ',']) {
            return Err(fractional(t, num, fraction));
        }
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        // Only digits, so only too many of them fail; that is too long, said below.
        let value: u128 = num.parse().unwrap_or(u128::MAX);
        let ms_per: u128 = match unit_ms(unit) {
            Some(ms) => ms,
            None if unit.is_empty() => return Err(DurationError::NoUnit(t.to_string())),
            None => {
                return Err(DurationError::UnknownUnit {
                    text: t.to_string(),
                    unit: unit.to_string(),
                });
            }
        };
        total = total.saturating_add(value.saturating_mul(ms_per));
        rest = tail;
    }
    if total == 0 {
        return Err(DurationError::Zero(t.to_string()));
    }
    match u64::try_from(total).map(Duration::from_millis) {
        Ok(d) if d <= MAX => Ok(d),
        _ => Err(DurationError::TooLong(t.to_string())),
    }
}

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u128); 6] = [
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

fn unit_ms(unit: &str) -> Option<u128> {
    UNITS.iter().find(|(u, _)| *u == unit).map(|(_, ms)| *ms)
}

/// The error for `1.5h` (`whole` and `fraction` are `1` and `5h`): fractions are not
/// supported, so say the same length in a smaller unit when there is one.
fn fractional(text: &str, whole: &str, fraction: &str) -> DurationError {
    let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
    let (frac, unit) = fraction.split_at(digits);
    let exact = (|| {
        let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        let whole: u128 = whole.parse().ok()?;
        let frac: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        let scaled = whole
            .checked_mul(scale)?
            .checked_add(frac)?
            .checked_mul(unit_ms(unit)?)?;
        let ms = (scaled % scale == 0).then_some(scaled / scale)?;
        let (name, per) = UNITS.iter().find(|(_, per)| ms % per == 0)?;
        (ms > 0).then(|| format!("{}{name}", ms / per))
    })();
    DurationError::Fraction {
        text: text.to_string(),
        instead: exact,
    }
}

/// Formats a duration compactly for humans: `40h`, `3h12m`, `90s`, `250ms`.
pub fn format(d: Duration) -> String {
    format_ms(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Formats a signed millisecond count compactly (`-` prefix when negative).
pub fn format_ms(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", format_ms(ms.saturating_neg()));
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1_000;
    // Days only from a week up, so `36h` reads back as written rather than `1d12h`.
    let days = if secs >= 7 * 86_400 { secs / 86_400 } else { 0 };
    secs -= days * 86_400;
    let hours = secs / 3_600;
    secs %= 3_600;
    let mins = secs / 60;
    secs %= 60;
    let mut out = String::new();
    // The two most significant units are enough to read at a glance.
    let parts = [(days, "d"), (hours, "h"), (mins, "m"), (secs, "s")];
    let first = parts.iter().position(|(v, _)| *v > 0).unwrap_or(3);
    for (v, u) in parts.iter().skip(first).take(2) {
        if *v > 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationSetting;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 90s, 15m, 36h or 7d, or `off`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_setting(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v <= 0 {
                    Ok(DurationSetting::Off)
                } else {
                    Err(E::custom(format!(
                        "`{v}` has no unit; write e.g. {v}s, {v}m or {v}h (0 or off disables)"
                    )))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v <= 0.0 {
                    Ok(DurationSetting::Off)
                } else {
                    Err(E::custom(format!(
                        "`{v}` has no unit; write e.g. 90s, 15m, 36h or 7d"
                    )))
                }
            }
            // YAML 1.1 reads a bare `off` as the boolean false.
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::custom(
                        "`true` is not a duration; write e.g. 24h, or `off`",
                    ))
                } else {
                    Ok(DurationSetting::Off)
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// In a JSON Schema: `90s`, `1h30m`, `off`, or a number that is 0 or negative (off).
impl schemars::JsonSchema for DurationSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration such as 90s, 15m, 36h, 7d or 1h30m (units ms, s, m, h, d, w; whole numbers), or `off`",
            "anyOf": [
                { "type": "string", "pattern": "^\\s*(off|0|-.*|([0-9]+\\s*(ms|s|m|h|d|w)\\s*)+)$" },
                { "type": "number", "maximum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn off_zero_and_negative_disable() {
        assert_eq!(parse_setting("off"), Ok(DurationSetting::Off));
        assert_eq!(parse_setting("0"), Ok(DurationSetting::Off));
        assert_eq!(parse_setting("-5m"), Ok(DurationSetting::Off));
        assert_eq!(
            parse_setting("24h"),
            Ok(DurationSetting::On(Duration::from_secs(86400)))
        );
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        assert!(
            parse("soon")
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
        assert!(parse("10").unwrap_err().to_string().contains("no unit"));
        assert!(
            parse("10y")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert_eq!(
            parse("1.5h").unwrap_err().to_string(),
            "`1.5h`: fractions are not supported; write 90m"
        );
        assert!(
            parse("0.25s")
                .unwrap_err()
                .to_string()
                .ends_with("write 250ms")
        );
        assert!(parse("2.0d").unwrap_err().to_string().ends_with("write 2d"));
        assert!(
            parse("1.0001ms")
                .unwrap_err()
                .to_string()
                .contains("whole numbers")
        );
        assert!(
            parse("1.5")
                .unwrap_err()
                .to_string()
                .contains("whole numbers")
        );
        assert!(
            parse("36501d")
                .unwrap_err()
                .to_string()
                .contains("at most 36500d")
        );
        assert!(
            parse("99999999999999999999999w")
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        assert_eq!(parse("36500d"), Ok(MAX));
    }

    #[test]
    fn formats_two_units() {
        assert_eq!(format_ms(40 * 3_600_000), "40h");
        assert_eq!(format_ms(7 * 86_400_000 + 3_600_000), "7d1h");
        assert_eq!(format_ms(3 * 3_600_000 + 12 * 60_000 + 5_000), "3h12m");
        assert_eq!(format_ms(90_000), "1m30s");
        assert_eq!(format_ms(250), "250ms");
    }
}
