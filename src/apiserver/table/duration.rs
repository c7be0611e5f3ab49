//! Timestamps and ages: RFC 3339 parsing with Go's zero time as unset, and upstream's
//! `duration.HumanDuration` ("5s", "3m20s", "2d3h", ...) as used for AGE and other durations.

use jiff::{SignedDuration, Timestamp};

/// Go's zero `time.Time`, which upstream prints as `<unknown>`.
pub(super) const GO_ZERO_TIME: Timestamp = Timestamp::constant(-62_135_596_800, 0);

/// Parses an RFC 3339 (micro)time; None when absent, malformed or Go's zero time.
pub(super) fn parse_time(s: Option<&str>) -> Option<Timestamp> {
    s?.parse::<Timestamp>().ok().filter(|t| *t != GO_ZERO_TIME)
}

/// Upstream's translateTimestampSince: the human age of a timestamp, `<unknown>` when unset.
pub(super) fn since(ts: Option<&str>, now: Timestamp) -> String {
    match parse_time(ts) {
        Some(t) => human_signed(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// Upstream's `duration.HumanDuration` of a std duration; only the tests call it, the printers
/// work on timestamps.
#[cfg(test)]
pub(super) fn human_duration(d: std::time::Duration) -> String {
    human_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// HumanDuration of a possibly negative duration (clock skew prints `0s` or `<invalid>`).
pub(super) fn human_signed(d: SignedDuration) -> String {
    human_secs(d.as_secs())
}

/// HumanDuration of whole seconds, truncated toward zero as Go's `int(d.Seconds())`.
pub(super) fn human_secs(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_unit(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_unit(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_unit(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_unit(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// "3m" or "3m20s": the second unit only when non-zero.
fn with_unit(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}
