//! ISO-8601 UTC timestamps in the form JavaScript's `Date.prototype.toISOString()` writes, without a date crate.
//!
//! The index and the sidecar store times as strings written by JS hosts; we only need to produce the same text and to
//! read it back. The calendar is the proleptic Gregorian one, as in JS.

const MS_PER_DAY: i64 = 86_400_000;
/// Days from 0000-03-01 (the start of a 400-year era whose leap day falls last) to 1970-01-01.
const EPOCH_SHIFT_DAYS: i64 = 719_468;
const DAYS_PER_ERA: i64 = 146_097;

/// Milliseconds since the epoch → "2026-04-24T19:45:20.123Z" (exactly JS Date.toISOString() for years 0..=9999).
///
/// Outside that range JS switches to a signed six-digit year ("+010000-…", "-000001-…"); so do we. Negative `ms`
/// (before 1970) is handled exactly.
pub fn iso_from_ms(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (second, milli) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.unsigned_abs())
    };
    format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// `iso == iso_from_ms(ms)`, without building the string for four-digit years (the per-entry test of the official
/// equality rule, run for every entry of a large index).
pub fn is_iso_of_ms(iso: &str, ms: i64) -> bool {
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return iso == iso_from_ms(ms);
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let fields = [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, ms_of_day / 3_600_000),
        (14, 2, ms_of_day / 60_000 % 60),
        (17, 2, ms_of_day / 1000 % 60),
        (20, 3, ms_of_day % 1000),
    ];
    for (start, width, mut value) in fields {
        for at in (start..start + width).rev() {
            text[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    iso.as_bytes() == text
}

/// Parse "YYYY-MM-DDTHH:MM:SS(.fff)?Z" (also accept 1–9 fractional digits, and "+00:00") → ms; None if malformed.
///
/// Any other "±HH:MM" offset is accepted too and applied, for timestamps written by hosts other than JS (lock files).
/// Digits beyond milliseconds are truncated, as JS does. Only four-digit years are read, so years before 1970 give
/// negative milliseconds; the extended "+YYYYYY" form is not accepted. Leap seconds (":60") are rejected.
pub fn ms_from_iso(iso: &str) -> Option<i64> {
    let bytes = iso.as_bytes();
    if bytes.len() < 20 || !separators_match(bytes) {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    let hour = digits(&bytes[11..13])?;
    let minute = digits(&bytes[14..16])?;
    let second = digits(&bytes[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (milli, zone) = split_fraction(&bytes[19..])?;
    let offset_minutes = zone_offset_minutes(zone)?;
    let days = days_from_civil(year, month, day);
    let local_ms = days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + milli;
    Some(local_ms - offset_minutes * 60_000)
}

/// "Z" → 0; "±HH:MM" → signed minutes east of UTC.
fn zone_offset_minutes(zone: &[u8]) -> Option<i64> {
    if zone == b"Z" {
        return Some(0);
    }
    let [sign, h1, h2, b':', m1, m2] = *zone else {
        return None;
    };
    let (hours, minutes) = (digits(&[h1, h2])?, digits(&[m1, m2])?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    match sign {
        b'+' => Some(hours * 60 + minutes),
        b'-' => Some(-(hours * 60 + minutes)),
        _ => None,
    }
}

fn separators_match(bytes: &[u8]) -> bool {
    bytes[4] == b'-' && bytes[7] == b'-' && bytes[10] == b'T' && bytes[13] == b':' && bytes[16] == b':'
}

/// An optional ".fff…" (1–9 digits) at the start of `rest`: its milliseconds (truncated) and what follows it.
fn split_fraction(rest: &[u8]) -> Option<(i64, &[u8])> {
    let Some(after_dot) = rest.strip_prefix(b".") else {
        return Some((0, rest));
    };
    let count = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=9).contains(&count) {
        return None;
    }
    let milli = after_dot[..count.min(3)]
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    Some((milli, &after_dot[count..]))
}

/// A fixed-width run of ASCII digits as a number.
fn digits(run: &[u8]) -> Option<i64> {
    run.iter().try_fold(0i64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0')))
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31). Counts years from March so the leap day is the last day of
/// a year, which makes every month length except February's a fixed pattern.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + EPOCH_SHIFT_DAYS;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted - era * DAYS_PER_ERA;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month 1–12, day 1–31) → days since 1970-01-01; the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let march_year = if month <= 2 { year - 1 } else { year };
    let era = march_year.div_euclid(400);
    let year_of_era = march_year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT_DAYS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_iso_of_ms_agrees_with_iso_from_ms() {
        let samples =
            [0, 1, 999, -1, -86_400_001, 1_780_000_000_123, 951_782_400_000, 253_402_300_799_999, 253_402_300_800_000];
        for ms in samples.into_iter().chain((0..2000).map(|i| i * 7_919_993_977_i64 - 62_000_000_000_000)) {
            let iso = iso_from_ms(ms);
            assert!(is_iso_of_ms(&iso, ms), "{iso} {ms}");
            assert!(!is_iso_of_ms(&iso, ms + 1), "{iso} {}", ms + 1);
            assert!(!is_iso_of_ms(&iso[..iso.len() - 1], ms), "a truncated {iso}");
        }
        assert!(!is_iso_of_ms("2026-11-24T10:00:00Z", 1_795_514_400_000), "a shorter spelling of the same instant");
    }

    #[test]
    fn epoch_formats_like_javascript() {
        assert_eq!(iso_from_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn known_instants_format_like_javascript() {
        assert_eq!(iso_from_ms(1_777_059_920_123), "2026-04-24T19:45:20.123Z");
        assert_eq!(iso_from_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_from_ms(2_147_483_648_000), "2038-01-19T03:14:08.000Z");
        assert_eq!(iso_from_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso_from_ms(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn negative_milliseconds_count_back_from_the_epoch() {
        assert_eq!(iso_from_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso_from_ms(-86_400_000), "1969-12-31T00:00:00.000Z");
        assert_eq!(ms_from_iso("1969-12-31T23:59:59.999Z"), Some(-1));
    }

    #[test]
    fn years_outside_four_digits_use_the_extended_form() {
        assert_eq!(iso_from_ms(253_402_300_800_000), "+010000-01-01T00:00:00.000Z");
        assert_eq!(iso_from_ms(-62_167_219_200_001), "-000001-12-31T23:59:59.999Z");
    }

    #[test]
    fn extreme_milliseconds_do_not_panic() {
        assert!(iso_from_ms(i64::MAX).starts_with('+'));
        assert!(iso_from_ms(i64::MIN).starts_with('-'));
    }

    #[test]
    fn round_trip_holds_from_year_0_to_9999() {
        let first = -62_167_219_200_000i64;
        let last = 253_402_300_799_999i64;
        // A step that is not a multiple of a second, minute or day, so every field varies.
        let step = 7_919_999_993i64;
        let mut ms = first;
        while ms <= last {
            assert_eq!(ms_from_iso(&iso_from_ms(ms)), Some(ms), "{}", iso_from_ms(ms));
            ms += step;
        }
        assert_eq!(ms_from_iso(&iso_from_ms(last)), Some(last));
    }

    #[test]
    fn every_day_from_1900_to_2500_matches_a_naive_calendar_walk() {
        let (mut year, mut month, mut day) = (1900, 1, 1);
        let mut days = -25_567i64;
        while year <= 2500 {
            let expected = format!("{year:04}-{month:02}-{day:02}T00:00:00.000Z");
            assert_eq!(iso_from_ms(days * MS_PER_DAY), expected);
            assert_eq!(ms_from_iso(&expected), Some(days * MS_PER_DAY));
            days += 1;
            day += 1;
            if day > days_in_month(year, month) {
                (day, month) = (1, month + 1);
            }
            if month > 12 {
                (month, year) = (1, year + 1);
            }
        }
    }

    #[test]
    fn fraction_is_optional_and_truncated_beyond_milliseconds() {
        assert_eq!(ms_from_iso("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(ms_from_iso("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(ms_from_iso("1970-01-01T00:00:01.25Z"), Some(1250));
        assert_eq!(ms_from_iso("1970-01-01T00:00:01.123456789Z"), Some(1123));
    }

    #[test]
    fn utc_offset_form_is_accepted() {
        assert_eq!(ms_from_iso("2026-04-24T19:45:20.123+00:00"), Some(1_777_059_920_123));
        assert_eq!(ms_from_iso("2026-04-24T19:45:20.123-00:00"), Some(1_777_059_920_123));
    }

    #[test]
    fn other_offsets_are_applied() {
        assert_eq!(ms_from_iso("2026-04-24T21:45:20.123+02:00"), Some(1_777_059_920_123));
        assert_eq!(ms_from_iso("2026-04-24T18:15:20.123-01:30"), Some(1_777_059_920_123));
        assert_eq!(ms_from_iso("1970-01-01T00:00:00+00:01"), Some(-60_000));
    }

    #[test]
    fn malformed_timestamps_are_rejected() {
        for bad in [
            "",
            "2026-04-24",
            "2026-04-24T19:45:20",
            "2026-04-24 19:45:20Z",
            "2026-04-24T19:45:20.Z",
            "2026-04-24T19:45:20.1234567890Z",
            "2026-04-24T19:45:20+01",
            "2026-04-24T19:45:20+0100",
            "2026-04-24T19:45:20*01:00",
            "2026-04-24T19:45:20+24:00",
            "2026-04-24T19:45:20+01:60",
            "2026-04-24T19:45:20+01:00junk",
            "2026-04-24T19:45:20z",
            "2026-04-24T19:45:20ZZ",
            "2026-4-24T19:45:20Z",
            "+2026-04-24T19:45:20Z",
            "２０２6-04-24T19:45:20Z",
        ] {
            assert_eq!(ms_from_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn out_of_range_fields_are_rejected() {
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-24T24:00:00Z",
            "2026-04-24T23:60:00Z",
            "2026-04-24T23:59:60Z",
        ] {
            assert_eq!(ms_from_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn leap_days_of_leap_years_are_accepted() {
        assert_eq!(ms_from_iso("2000-02-29T00:00:00.000Z"), Some(951_782_400_000));
        assert_eq!(ms_from_iso("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
    }
}
