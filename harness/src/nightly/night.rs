//! Night directories under ROOT: `YYYY-MM-DD` (UTC), or `YYYY-MM-DDTHHMMSS` when that day
//! already has a night, so every invocation keeps its own directory; and finding the
//! previous night that ran a scenario.

use std::path::{Path, PathBuf};

use raftbus_reports::model::SUMMARY_FILE;

/// Calendar date and time of day (UTC) of a Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    pub fn from_unix(secs: i64) -> UtcTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYYY-MM-DDTHHMMSS`.
    pub fn date_time(&self) -> String {
        format!(
            "{}T{:02}{:02}{:02}",
            self.date(),
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `YYYY-MM-DDTHH:MM:SS` (ISO 8601, for JUnit timestamps).
    pub fn iso(&self) -> String {
        format!(
            "{}T{:02}:{:02}:{:02}",
            self.date(),
            self.hour,
            self.minute,
            self.second
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days end each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` is a night directory name this module writes.
pub fn is_night_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.len() < 10
        || !digits(&name[0..4])
        || b[4] != b'-'
        || !digits(&name[5..7])
        || b[7] != b'-'
        || !digits(&name[8..10])
    {
        return false;
    }
    let rest = &name[10..];
    if rest.is_empty() {
        return true;
    }
    let Some(time) = rest.strip_prefix('T') else {
        return false;
    };
    if time.len() < 6 || !digits(&time[..6]) {
        return false;
    }
    match &time[6..] {
        "" => true,
        suffix => suffix.strip_prefix('-').is_some_and(digits),
    }
}

/// The directory name for a night starting at `unix_s` under `root`: the date, or the
/// date and time if the date is taken, or that with `-2`, `-3`… if even that is taken.
pub fn night_name(root: &Path, unix_s: i64) -> String {
    let t = UtcTime::from_unix(unix_s);
    let date = t.date();
    if !root.join(&date).exists() {
        return date;
    }
    let base = t.date_time();
    if !root.join(&base).exists() {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !root.join(name).exists())
        .expect("an unused name")
}

/// Night directories under `root` other than `current`, newest first.
pub fn previous_nights(root: &Path, current: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_night_name(n) && n != current)
        .collect();
    // Names sort chronologically: `D` < `DTHHMMSS` < `DTHHMMSS-2` < next day.
    names.sort();
    names.into_iter().rev().map(|n| root.join(n)).collect()
}

/// Whether `dir` holds a run (`summary.json`) or a `both` pair of runs.
pub fn has_results(dir: &Path) -> bool {
    dir.join(SUMMARY_FILE).is_file()
        || dir.join("bus").join(SUMMARY_FILE).is_file()
        || dir.join("redis").join(SUMMARY_FILE).is_file()
}

/// The most recent previous night's results for `scenario`, if any night has them.
pub fn previous_results(root: &Path, current: &str, scenario: &str) -> Option<PathBuf> {
    previous_nights(root, current)
        .into_iter()
        .map(|n| n.join(scenario))
        .find(|d| has_results(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(UtcTime::from_unix(0).date_time(), "1970-01-01T000000");
        // 2000-02-29 12:34:56 UTC (a 400-year leap day).
        let t = UtcTime::from_unix(951_827_696);
        assert_eq!(t.iso(), "2000-02-29T12:34:56");
        // 2024-12-31 23:59:59 and the second after.
        assert_eq!(
            UtcTime::from_unix(1_735_689_599).iso(),
            "2024-12-31T23:59:59"
        );
        assert_eq!(UtcTime::from_unix(1_735_689_600).date(), "2025-01-01");
        // 2100 is not a leap year: 2100-02-28 is followed by 2100-03-01.
        assert_eq!(UtcTime::from_unix(4_107_456_000).date(), "2100-02-28");
        assert_eq!(UtcTime::from_unix(4_107_542_400).date(), "2100-03-01");
        assert_eq!(UtcTime::from_unix(-1).iso(), "1969-12-31T23:59:59");
    }

    #[test]
    fn night_names() {
        for ok in ["2025-01-02", "2025-01-02T030405", "2025-01-02T030405-12"] {
            assert!(is_night_name(ok), "{ok}");
        }
        for bad in [
            "index.html",
            "2025-01-0",
            "2025-01-02x",
            "2025-01-02T0304",
            "2025-01-02T030405-",
            "2025-01-02T030405x",
        ] {
            assert!(!is_night_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_second_night_the_same_day_gets_its_own_directory() {
        let root = tempfile::tempdir().unwrap();
        let t = 1_735_732_800; // 2025-01-01T12:00:00Z
        assert_eq!(night_name(root.path(), t), "2025-01-01");
        std::fs::create_dir(root.path().join("2025-01-01")).unwrap();
        assert_eq!(night_name(root.path(), t), "2025-01-01T120000");
        std::fs::create_dir(root.path().join("2025-01-01T120000")).unwrap();
        assert_eq!(night_name(root.path(), t), "2025-01-01T120000-2");
    }

    #[test]
    fn previous_results_are_the_newest_night_with_that_scenario() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for (night, scenario, file) in [
            ("2025-01-01", "bench", "bus/summary.json"),
            ("2025-01-02", "bench", "summary.json"),
            ("2025-01-02T080000", "chaos", "summary.json"),
            ("2025-01-03", "bench", "nightly.log"),
            ("not-a-night", "bench", "summary.json"),
        ] {
            let p = r.join(night).join(scenario).join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "{}").unwrap();
        }
        std::fs::create_dir_all(r.join("2025-01-04")).unwrap();
        assert_eq!(
            previous_results(r, "2025-01-04", "bench"),
            Some(r.join("2025-01-02").join("bench"))
        );
        assert_eq!(
            previous_results(r, "2025-01-02", "bench"),
            Some(r.join("2025-01-01").join("bench"))
        );
        assert_eq!(previous_results(r, "2025-01-04", "nothing"), None);
        let nights = previous_nights(r, "2025-01-04");
        assert_eq!(nights[0], r.join("2025-01-03"));
        assert_eq!(nights[1], r.join("2025-01-02T080000"));
        assert_eq!(nights.len(), 4);
    }
}
