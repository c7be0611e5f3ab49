//! CronJob schedules: the standard five fields (minute, hour, day of month, month, day of week) with
//! `*`, lists, ranges, steps (`*/5`, `1-30/5`, `5/15`) and names (`JAN`, `MON`), the descriptors
//! `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight` and `@hourly`, and the day rule of
//! cron (and robfig/cron, which upstream uses): when both day fields are restricted a day matching either
//! one runs. Times are found in the CronJob's time zone (jiff's tz database, bundled in the binary). The
//! cron crates on crates.io work in chrono's types; tug's time is jiff's, hence this small parser.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether a day field was restricted (not `*`), for cron's day rule.
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(text: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(i as u32 + name_base);
    }
    let number: u32 = text.parse().map_err(|_| format!("failed to parse int from {text}"))?;
    if number < min || number > max {
        return Err(format!("{number} is out of range [{min}, {max}]"));
    }
    Ok(number)
}

/// One field as a bit set over `min..=max`.
fn field(text: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("failed to parse int from {step}"))?;
                if step == 0 {
                    return Err(format!("step of range should be a positive number: {part}"));
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (from, to) = match range {
            "*" | "?" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a, min, max, names, name_base)?, value(b, min, max, names, name_base)?),
                None => {
                    let v = value(range, min, max, names, name_base)?;
                    // "5/15" runs from 5 to the end, as robfig/cron reads it.
                    (v, if step.is_some() { max } else { v })
                }
            },
        };
        if from > to {
            return Err(format!("beginning of range ({from}) beyond end of range ({to}): {part}"));
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok(bits)
}

impl Schedule {
    /// Parses a schedule as upstream's validation does; the error reads like robfig/cron's.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(format!("unrecognized descriptor: {other}")),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: {text}", fields.len()));
        }
        let mut weekdays = field(fields[4], 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7); // 7 is Sunday too
        }
        Ok(Schedule {
            minutes: field(fields[0], 0, 59, &[], 0)?,
            hours: field(fields[1], 0, 23, &[], 0)?,
            days: field(fields[2], 1, 31, &[], 0)?,
            months: field(fields[3], 1, 12, &MONTHS, 1)?,
            weekdays,
            days_restricted: !fields[2].starts_with('*') && !fields[2].starts_with('?'),
            weekdays_restricted: !fields[4].starts_with('*') && !fields[4].starts_with('?'),
        })
    }

    fn day_matches(&self, at: DateTime) -> bool {
        let day = self.days & (1 << at.day()) != 0;
        let weekday = self.weekdays & (1 << at.weekday().to_sunday_zero_offset()) != 0;
        if self.days_restricted && self.weekdays_restricted {
            day || weekday
        } else {
            day && weekday
        }
    }

    /// The first scheduled time strictly after `after`, in time zone `tz`; None if there is none within
    /// five years (a schedule such as February 30th).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let mut at = start.checked_add(1.minute()).ok()?.with().second(0).subsec_nanosecond(0).build().ok()?;
        let limit = start.checked_add(5.years()).ok()?;
        while at < limit {
            if self.months & (1 << at.month()) == 0 {
                at = at.first_of_month().checked_add(1.month()).ok()?.start_of_day();
            } else if !self.day_matches(at) {
                at = at.checked_add(1.day()).ok()?.start_of_day();
            } else if self.hours & (1 << at.hour()) == 0 {
                at = at.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
            } else if self.minutes & (1 << at.minute()) == 0 {
                at = at.checked_add(1.minute()).ok()?;
            } else {
                let found = tz.to_ambiguous_timestamp(at).compatible().ok()?;
                // A local time that a DST change skipped maps past `after` but may repeat an earlier run.
                if found > after {
                    return Some(found);
                }
                at = at.checked_add(1.minute()).ok()?;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let tz = TimeZone::get(tz).expect("tz");
        let after: Timestamp = after.parse().expect("time");
        Schedule::parse(expr).expect("schedule").next_after(after, &tz).expect("next").to_string()
    }

    #[test]
    fn fields_steps_ranges_and_names() {
        assert_eq!(next("*/1 * * * *", "2024-01-01T00:00:30Z", "UTC"), "2024-01-01T00:01:00Z");
        assert_eq!(next("*/15 * * * *", "2024-01-01T00:16:00Z", "UTC"), "2024-01-01T00:30:00Z");
        assert_eq!(next("5/20 3 * * *", "2024-01-01T03:26:00Z", "UTC"), "2024-01-01T03:45:00Z");
        assert_eq!(next("0 9 * JAN-MAR MON", "2024-03-31T12:00:00Z", "UTC"), "2025-01-06T09:00:00Z");
        assert_eq!(next("@hourly", "2024-01-01T00:00:00Z", "UTC"), "2024-01-01T01:00:00Z");
        assert_eq!(next("@yearly", "2024-06-01T00:00:00Z", "UTC"), "2025-01-01T00:00:00Z");
        assert_eq!(next("0 0 * * 7", "2024-01-01T00:00:00Z", "UTC"), "2024-01-07T00:00:00Z", "7 is Sunday");
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th, or any Friday.
        assert_eq!(next("0 0 13 * FRI", "2024-01-01T00:00:00Z", "UTC"), "2024-01-05T00:00:00Z");
        assert_eq!(next("0 0 13 * FRI", "2024-01-12T00:00:00Z", "UTC"), "2024-01-13T00:00:00Z");
    }

    #[test]
    fn time_zones_shift_the_hour() {
        assert_eq!(next("0 9 * * *", "2024-07-01T00:00:00Z", "Europe/Berlin"), "2024-07-01T07:00:00Z");
        assert_eq!(next("0 9 * * *", "2024-01-01T00:00:00Z", "America/New_York"), "2024-01-01T14:00:00Z");
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in ["", "* * * *", "61 * * * *", "* * * * * *", "*/0 * * * *", "@every 5m", "5-1 * * * *", "x * * * *"]
        {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Schedule::parse("0 0 30 2 *")
            .expect("parses")
            .next_after(Timestamp::UNIX_EPOCH, &TimeZone::UTC)
            .is_none());
    }
}
