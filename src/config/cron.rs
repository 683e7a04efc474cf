//! Cron slots found with a bounded search.
//!
//! croner says a pattern never matches only after walking day by day to its last year (5000),
//! and back to year 1: `0 0 30 2 *` took 8 s and `0 0 L * +1#1` 49 s (the `schedule` fuzz
//! target, with debug assertions and ASan), in `validate`, every load and reload, and `status`.
//! Which dates match depends only on the kind of year (the weekday it starts on, and whether it
//! is a leap year: 14 kinds), so each kind is checked once; croner is asked only once a date
//! and a time of day are known to match, and then stops at the first slot.

use croner::errors::CronError;
use croner::time::{days_in_month, is_leap_year};
use croner::{Cron, CronPattern, Weekday, YEAR_LOWER_LIMIT, YEAR_UPPER_LIMIT};
use jiff::Zoned;
use jiff::civil::Date;

/// The first slot after `from`, as croner finds it; an error if there is none.
pub fn next(cron: &Cron, from: &Zoned) -> Result<Zoned, CronError> {
    if !some_time(&cron.pattern) || !some_date(&cron.pattern, from.date(), true) {
        return Err(CronError::TimeSearchLimitExceeded);
    }
    cron.find_next_occurrence(from, false)
}

/// The last slot before `from`, as croner finds it; an error if there is none.
pub fn previous(cron: &Cron, from: &Zoned) -> Result<Zoned, CronError> {
    if !some_time(&cron.pattern) || !some_date(&cron.pattern, from.date(), false) {
        return Err(CronError::TimeSearchLimitExceeded);
    }
    cron.find_previous_occurrence(from, false)
}

/// Whether the hour, minute and second fields each match some value: croner accepts an empty
/// one (`0 , * * 5L` has no hour), and would then try every matching date to its last year.
fn some_time(pattern: &CronPattern) -> bool {
    (0..24).any(|h| pattern.hour_match(h).unwrap_or(false))
        && (0..60).any(|m| pattern.minute_match(m).unwrap_or(false))
        && (0..60).any(|s| pattern.second_match(s).unwrap_or(false))
}

/// Whether a date from `from` on (`forward`) or up to `from` matches the pattern's year, month
/// and day fields, within the years croner searches. `from` itself counts both ways: a slot
/// may be left on that day.
fn some_date(pattern: &CronPattern, from: Date, forward: bool) -> bool {
    let first = i32::from(from.year());
    let years: Box<dyn Iterator<Item = i32>> = if forward {
        Box::new(first.max(YEAR_LOWER_LIMIT)..=YEAR_UPPER_LIMIT)
    } else {
        Box::new((YEAR_LOWER_LIMIT..=first.min(YEAR_UPPER_LIMIT)).rev())
    };
    let mut no_match = [false; 14];
    for year in years {
        if !pattern.year_match(year).unwrap_or(false) {
            continue;
        }
        let Some(jan1) = weekday_of_jan1(year) else {
            continue;
        };
        let kind = jan1.num_days_from_sunday() as usize + if is_leap_year(year) { 7 } else { 0 };
        let whole = year != first;
        if whole && no_match[kind] {
            continue;
        }
        let keep = |month: u32, day: u32| {
            let here = (month, day);
            let at = (
                u32::from(from.month().unsigned_abs()),
                u32::from(from.day().unsigned_abs()),
            );
            whole || if forward { here >= at } else { here <= at }
        };
        if year_has_a_date(pattern, year, jan1, keep) {
            return true;
        }
        if whole {
            no_match[kind] = true;
        }
    }
    false
}

/// Whether a date of `year` that `keep` accepts matches the month and day fields.
fn year_has_a_date(
    pattern: &CronPattern,
    year: i32,
    jan1: Weekday,
    keep: impl Fn(u32, u32) -> bool,
) -> bool {
    let mut first_of_month = jan1;
    for month in 1..=12 {
        let len = days_in_month(year, month);
        if pattern.month_match(month).unwrap_or(false) {
            for day in 1..=len {
                let weekday = first_of_month.shift(day as i32 - 1);
                if keep(month, day)
                    && pattern
                        .day_match(year, month, day, weekday)
                        .unwrap_or(false)
                {
                    return true;
                }
            }
        }
        first_of_month = first_of_month.shift(len as i32);
    }
    false
}

/// The weekday of 1 January of `year`, for years a date can hold.
fn weekday_of_jan1(year: i32) -> Option<Weekday> {
    let date = Date::new(i16::try_from(year).ok()?, 1, 1).ok()?;
    let days = u32::try_from(date.weekday().to_sunday_zero_offset()).ok()?;
    Some(Weekday::from_days_from_sunday(days))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn at(text: &str) -> Zoned {
        text.parse().expect("a zoned time")
    }

    /// Found by the `schedule` fuzz target: croner walked to the year 5000 and back to 1 to
    /// say these never fire (seconds each; 49 s for the third under the fuzzer).
    #[test]
    fn a_cron_that_never_fires_is_known_at_once() {
        let from = at("2026-12-02T13:00:00+01:00[Europe/Berlin]");
        for expr in [
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 L * +1#1",
            "0 0 0 1 1 * 2020",
            "0 , * * 5L",
        ] {
            let schedule = crate::config::Schedule::from_cron(expr).expect("croner accepts it");
            let started = Instant::now();
            assert!(
                schedule
                    .why_never_fires(from.time_zone(), from.timestamp())
                    .is_some(),
                "{expr} fires"
            );
            assert!(
                started.elapsed() < Duration::from_millis(200),
                "{expr}: {:?}",
                started.elapsed()
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
