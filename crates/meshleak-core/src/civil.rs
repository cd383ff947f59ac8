//! Calendar time without a time zone database: seconds since the epoch as a UTC date and
//! time, as `gmtime` gives them (Howard Hinnant's days-to-civil algorithm). Pure; used for
//! log timestamps and for dates x_tables rules carry.

/// `YYYY-MM-DDTHH:MM:SS` in UTC for `secs` seconds since the epoch (negative: before it).
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_across_leap_days_and_the_epoch() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00");
        assert_eq!(super::utc(0x7fff_ffff), "2038-01-19T03:14:07");
        assert_eq!(super::utc(1_709_210_096), "2024-02-29T12:34:56");
        assert_eq!(super::utc(-1), "1969-12-31T23:59:59");
    }
}
