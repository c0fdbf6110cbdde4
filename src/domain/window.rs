//! The local time of day a recipient may be sent to, and times as people
//! in Jakarta read them. Below the store: campaigns, extra notices and the
//! dispatcher all move a time into a recipient's window the same way.

use chrono::{FixedOffset, TimeZone as _, Utc};

const DAY_MIN: i64 = 24 * 60;
const MIN_MS: i64 = 60_000;

/// The local time of day during which a recipient may be sent to, applied in
/// the recipient's own zone. `end` is exclusive; `00:00-24:00` is always open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_min: i32,
    pub end_min: i32,
}

impl Default for Window {
    /// 08:00–20:00: the financial regulator's rule for SMS offers, the
    /// sensible model DOMAIN.md suggests.
    fn default() -> Self {
        Window {
            start_min: 8 * 60,
            end_min: 20 * 60,
        }
    }
}

impl std::str::FromStr for Window {
    type Err = String;
    /// `HH:MM-HH:MM`, start before end, `24:00` allowed as the end.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("window {s:?}: expected HH:MM-HH:MM, e.g. 08:00-20:00"))?;
        let start = minutes(a.trim()).map_err(|e| format!("window start: {e}"))?;
        let end = minutes(b.trim()).map_err(|e| format!("window end: {e}"))?;
        if start >= end {
            return Err(format!(
                "window {s:?}: start must be before end (windows across midnight are not supported)"
            ));
        }
        Ok(Window {
            start_min: start,
            end_min: end,
        })
    }
}

fn minutes(s: &str) -> Result<i32, String> {
    let (h, m) = s
        .split_once([':', '.'])
        .ok_or_else(|| format!("{s:?} is not HH:MM"))?;
    let h: i32 = h.parse().map_err(|_| format!("{s:?} is not HH:MM"))?;
    let m: i32 = m.parse().map_err(|_| format!("{s:?} is not HH:MM"))?;
    if !(0..=24).contains(&h) || !(0..60).contains(&m) || (h == 24 && m != 0) {
        return Err(format!("{s:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

impl Window {
    /// Minute of the local day at `at_ms` in a zone `offset_hours` east of UTC.
    fn local_minute(at_ms: i64, offset_hours: i32) -> i64 {
        (at_ms.div_euclid(MIN_MS) + offset_hours as i64 * 60).rem_euclid(DAY_MIN)
    }

    pub fn is_open(&self, at_ms: i64, offset_hours: i32) -> bool {
        let m = Self::local_minute(at_ms, offset_hours);
        m >= self.start_min as i64 && m < self.end_min as i64
    }

    /// `at_ms` if the window is open then, else the next moment it opens.
    pub fn next_open(&self, at_ms: i64, offset_hours: i32) -> i64 {
        if self.is_open(at_ms, offset_hours) {
            return at_ms;
        }
        let m = Self::local_minute(at_ms, offset_hours);
        let start_of_minute = at_ms - at_ms.rem_euclid(MIN_MS);
        let wait = (self.start_min as i64 - m).rem_euclid(DAY_MIN);
        start_of_minute + wait * MIN_MS
    }
}

/// Formats Unix milliseconds as WIB local time for people.
pub fn fmt_wib(ms: i64) -> String {
    let wib = FixedOffset::east_opt(7 * 3600).expect("UTC+7 is a valid offset");
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t
            .with_timezone(&wib)
            .format("%Y-%m-%d %H:%M:%S WIB")
            .to_string(),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_refuse() {
        let w: Window = "08:00-20:00".parse().unwrap();
        assert_eq!((w.start_min, w.end_min), (480, 1200));
        assert_eq!("00:00-24:00".parse::<Window>().unwrap().end_min, 1440);
        assert!("20:00-08:00".parse::<Window>().is_err());
        assert!("8-20".parse::<Window>().is_err());
        assert!("08:00-25:00".parse::<Window>().is_err());
        assert_eq!(w.to_string(), "08:00-20:00");
    }

    #[test]
    fn wib_for_people() {
        assert_eq!(fmt_wib(0), "1970-01-01 07:00:00 WIB");
    }
}
