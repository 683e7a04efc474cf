//! Cron slots found with a bounded search.
//!
//! croner says a pattern never matches only after walking day by day to its last year (5000),
//! and back to year 1, in `validate`, every load and reload, `status` and the schedule. Under
//! the `schedule` fuzz target's build (ASan, debug assertions) that took 8 s for the test suite's
//! `0 0 30 2 *`; the fuzzer found `0 , * * 5L` (an empty hour field: every last Friday tried);
//! and, read off croner's search, `0 0 L * +1#1` took 49 s and `* 30 2 31 3 +SUN` in
//! Europe/Berlin (every second of 02:30 on a 31 March that is a Sunday: always inside the
//! spring-forward gap) 28 s. Which dates match depends only on the kind of year (the weekday it
//! starts on, and whether it is a leap year: 14 kinds), so the dates are found without walking,
//! and croner is asked only once a date is known to hold a slot, so it stops there.

use croner::errors::CronError;
use croner::time::{days_in_month, is_leap_year};
use croner::{Cron, CronPattern, JobType, Weekday, YEAR_LOWER_LIMIT, YEAR_UPPER_LIMIT};
use jiff::Zoned;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// Matching dates looked at for a slot outside a daylight-saving gap before an interval
/// pattern is taken to have none: gaps come once a year at most, so a pattern whose first
/// eight dates all fall in one is tied to the gap.
const CANDIDATE_DATES: usize = 8;
/// Matching times of one date tried against its gap (a gap is an hour: 3,600 seconds).
const CANDIDATE_TIMES: usize = 4_000;

/// The first slot after `from`, as croner finds it; an error if there is none.
pub fn next(cron: &Cron, from: &Zoned) -> Result<Zoned, CronError> {
    next_from(cron, from, false)
}

/// [`next`], or `from` itself when it is a slot and `inclusive`.
pub fn next_from(cron: &Cron, from: &Zoned, inclusive: bool) -> Result<Zoned, CronError> {
    if bounded(cron, from, true) {
        cron.find_next_occurrence(from, inclusive)
    } else {
        Err(CronError::TimeSearchLimitExceeded)
    }
}

/// The last slot before `from`, as croner finds it; an error if there is none.
pub fn previous(cron: &Cron, from: &Zoned) -> Result<Zoned, CronError> {
    if bounded(cron, from, false) {
        cron.find_previous_occurrence(from, false)
    } else {
        Err(CronError::TimeSearchLimitExceeded)
    }
}

/// Whether croner's search from `from` has a slot to stop at soon: a date that matches holds a
/// matching time (after or before `from`, on its own day) that is not in a gap. A fixed-time
/// pattern is run right after a gap, so any matching date will do for it.
fn bounded(cron: &Cron, from: &Zoned, forward: bool) -> bool {
    let p = &cron.pattern;
    let dates = candidate_dates(p, from.date(), forward);
    if dates.is_empty() {
        return false;
    }
    let fixed = matches!(cron.determine_job_type(), JobType::FixedTime);
    fixed || dates.iter().any(|d| has_real_time(p, from, *d, forward))
}

/// The first matching dates from `from`'s (inclusive) on, or back from it, within the years
/// croner searches. Years of a kind with no matching date are skipped without a look. Only the
/// days from `from`'s on (or back) are tried, and the search stops at the last date it needs:
/// the schedule asks this on every pass of every cron lane, and trying the whole year each
/// time was most of a 100,000-lane pass.
fn candidate_dates(p: &CronPattern, from: Date, forward: bool) -> Vec<Date> {
    let mut out = Vec::new();
    if !some_time(p) {
        return out;
    }
    let kinds = matching_kinds(p);
    let first = i32::from(from.year());
    let years: Box<dyn Iterator<Item = i32>> = if forward {
        Box::new(first.max(YEAR_LOWER_LIMIT)..=YEAR_UPPER_LIMIT)
    } else {
        Box::new((YEAR_LOWER_LIMIT..=first.min(YEAR_UPPER_LIMIT)).rev())
    };
    let at = (
        u32::from(from.month().unsigned_abs()),
        u32::from(from.day().unsigned_abs()),
    );
    for year in years {
        if (year != first && !kinds[kind(year)]) || !p.year_match(year).unwrap_or(false) {
            continue;
        }
        let bound = (year == first).then_some(at);
        for (month, day) in dates_toward(p, year, forward, bound) {
            out.extend(Date::new(year as i16, month as i8, day as i8).ok());
            if out.len() >= CANDIDATE_DATES {
                return out;
            }
        }
    }
    out
}

/// The `(month, day)`s of `year` that match the month and day fields: forward from `bound`
/// (inclusive; the whole year without one) in order, or backward from it, latest first.
fn dates_toward(
    p: &CronPattern,
    year: i32,
    forward: bool,
    bound: Option<(u32, u32)>,
) -> impl Iterator<Item = (u32, u32)> + '_ {
    let jan1 = jan1(year);
    // Days of the year before the first of each month.
    let mut before = [0u32; 13];
    for month in 1..=12u32 {
        before[month as usize] = before[month as usize - 1] + days_in_month(year, month);
    }
    let months: Box<dyn Iterator<Item = u32>> = if forward {
        Box::new(bound.map_or(1, |b| b.0)..=12)
    } else {
        Box::new((1..=bound.map_or(12, |b| b.0)).rev())
    };
    months
        .filter(move |month| p.month_match(*month).unwrap_or(false))
        .flat_map(move |month| {
            let len = days_in_month(year, month);
            let (lo, hi) = match bound {
                Some((m, d)) if m == month && forward => (d, len),
                Some((m, d)) if m == month => (1, d.min(len)),
                _ => (1, len),
            };
            let days: Box<dyn Iterator<Item = u32>> = if forward {
                Box::new(lo..=hi)
            } else {
                Box::new((lo..=hi).rev())
            };
            let offset = before[month as usize - 1];
            days.filter_map(move |day| {
                let weekday = jan1.shift((offset + day - 1) as i32);
                p.day_match(year, month, day, weekday)
                    .unwrap_or(false)
                    .then_some((month, day))
            })
        })
}

/// Whether the hour, minute and second fields each match some value: croner accepts an empty
/// one (`0 , * * 5L` has no hour), and would then try every matching date to its last year.
fn some_time(p: &CronPattern) -> bool {
    (0..24).any(|h| p.hour_match(h).unwrap_or(false))
        && (0..60).any(|m| p.minute_match(m).unwrap_or(false))
        && (0..60).any(|s| p.second_match(s).unwrap_or(false))
}

/// Which of the 14 kinds of year hold a date matching the month and day fields, each found
/// from one year of its kind.
fn matching_kinds(p: &CronPattern) -> [bool; 14] {
    let mut seen = [false; 14];
    let mut matches = [false; 14];
    for year in 2000..2400 {
        let k = kind(year);
        if !seen[k] {
            seen[k] = true;
            matches[k] = dates_of(p, year).next().is_some();
        }
    }
    matches
}

/// Which of 14 kinds `year` is: the weekday of its 1 January, and whether it is a leap year.
fn kind(year: i32) -> usize {
    jan1(year).num_days_from_sunday() as usize + if is_leap_year(year) { 7 } else { 0 }
}

/// The weekday of 1 January of `year` (Gauss), Gregorian.
fn jan1(year: i32) -> Weekday {
    let y = year - 1;
    let days = 1 + 5 * y.rem_euclid(4) + 4 * y.rem_euclid(100) + 6 * y.rem_euclid(400);
    Weekday::from_days_from_sunday(days.rem_euclid(7) as u32)
}

/// The `(month, day)`s of `year` that match the month and day fields, in order.
fn dates_of(p: &CronPattern, year: i32) -> impl Iterator<Item = (u32, u32)> + '_ {
    let mut first_of_month = jan1(year);
    (1..=12u32).flat_map(move |month| {
        let len = days_in_month(year, month);
        let first = first_of_month;
        first_of_month = first_of_month.shift(len as i32);
        let month_ok = p.month_match(month).unwrap_or(false);
        (1..=len).filter_map(move |day| {
            let weekday = first.shift(day as i32 - 1);
            (month_ok && p.day_match(year, month, day, weekday).unwrap_or(false))
                .then_some((month, day))
        })
    })
}

/// Whether `date` has a matching time of day that is a real instant in `from`'s zone (not in
/// a gap), after `from` (or before it, backwards) when it is `from`'s own date.
fn has_real_time(p: &CronPattern, from: &Zoned, date: Date, forward: bool) -> bool {
    let zone: &TimeZone = from.time_zone();
    let same_day = date == from.date();
    let hours: Vec<i8> = (0..24)
        .filter(|h| p.hour_match(*h as u32).unwrap_or(false))
        .collect();
    let minutes: Vec<i8> = (0..60)
        .filter(|m| p.minute_match(*m as u32).unwrap_or(false))
        .collect();
    let seconds: Vec<i8> = (0..60)
        .filter(|s| p.second_match(*s as u32).unwrap_or(false))
        .collect();
    let order = |v: &[i8]| -> Vec<i8> {
        if forward {
            v.to_vec()
        } else {
            v.iter().rev().copied().collect()
        }
    };
    let mut tried = 0;
    for h in order(&hours) {
        for m in order(&minutes) {
            for s in order(&seconds) {
                let Ok(time) = Time::new(h, m, s, 0) else {
                    continue;
                };
                if same_day
                    && (if forward {
                        time <= from.time()
                    } else {
                        time >= from.time()
                    })
                {
                    continue;
                }
                tried += 1;
                if tried > CANDIDATE_TIMES {
                    return false;
                }
                let at = DateTime::from_parts(date, time);
                if !matches!(
                    zone.to_ambiguous_zoned(at).offset(),
                    AmbiguousOffset::Gap { .. }
                ) {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {

    use super::*;

    fn at(text: &str) -> Zoned {
        text.parse().expect("a zoned time")
    }

    /// croner walked to the year 5000 and back to 1 to say these never fire (seconds each
    /// under the fuzz build; see the module's docs).
    #[test]
    fn a_cron_that_never_fires_is_known() {
        // How fast is the fuzz README's business (croner alone took up to 49 s on these); a
        // test only says that each is known to never fire.
        let from = at("2026-12-02T13:00:00+01:00[Europe/Berlin]");
        for expr in [
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 L * +1#1",
            "0 0 0 1 1 * 2020",
            "0 , * * 5L",
            "* 30 2 31 3 +SUN",
        ] {
            let schedule = crate::config::Schedule::from_cron(expr).expect("croner accepts it");
            assert!(
                schedule
                    .why_never_fires(from.time_zone(), from.timestamp())
                    .is_some(),
                "{expr} fires"
            );
        }
    }

    /// The same slots as croner's own search, where there is one.
    #[test]
    fn slots_are_croners() {
        let from = at("2026-12-02T13:00:00+01:00[Europe/Berlin]");
        for expr in [
            "0 3 * * *",
            "30 0 3 * * *",
            "0 0 29 2 *",
            "0 0 29 2 +MON",
            "0 0 L * *",
            "0 0 * * 5L",
            "0 0 15W * *",
            "0 30 2 * * *",
            "0 0 0 1 1 * 2020-2030",
            "0 0 0 29 2 * 4996",
            "0 0 13 2 12 *",
            "0 0 14 2 12 *",
            "0 30 2 31 3 +SUN",
            "* 30 2 * 3 SUN",
            "0 0 0 * * * 2026",
        ] {
            let cron: Cron = expr.parse().expect("croner accepts it");
            assert_eq!(
                next(&cron, &from).ok(),
                cron.find_next_occurrence(&from, false).ok(),
                "{expr}"
            );
            assert_eq!(
                previous(&cron, &from).ok(),
                cron.find_previous_occurrence(&from, false).ok(),
                "{expr}"
            );
        }
    }
}
