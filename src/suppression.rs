//! The suppression list: numbers and NIKs that must not be messaged (a
//! worker who declined, is already vaccinated according to One Data, has
//! died, or a number reported as someone else's). What an entry is and how
//! one is read from people (the command line, the API, a CSV file); the
//! store ([`crate::store::Store::suppress`]) applies it.
//!
//! A suppression stops notices before they are queued (campaign creation,
//! resends, re-registrations skip the worker and count it), cancels the
//! worker's queued notices when it is added, and keeps the worker out of
//! the non-recipients: a notice we chose not to send is not one that did
//! not arrive.

use std::fmt;
use std::str::FromStr;

use chrono::{Days, FixedOffset, NaiveDate, TimeZone as _};
use serde::{Deserialize, Serialize};

use crate::domain::{mask_nik, mask_phone, Msisdn, Nik};
use crate::registry::Rejection;

/// Why a number or a NIK is suppressed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The worker said no (through the chatbot's BERHENTI, or to staff).
    Declined,
    /// Already vaccinated according to One Data.
    Vaccinated,
    Deceased,
    /// The number belongs to someone else.
    WrongNumber,
    Other,
}

impl SuppressionReason {
    pub const ALL: [SuppressionReason; 5] = [
        SuppressionReason::Declined,
        SuppressionReason::Vaccinated,
        SuppressionReason::Deceased,
        SuppressionReason::WrongNumber,
        SuppressionReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Declined => "declined",
            SuppressionReason::Vaccinated => "vaccinated",
            SuppressionReason::Deceased => "deceased",
            SuppressionReason::WrongNumber => "wrong_number",
            SuppressionReason::Other => "other",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SuppressionReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        SuppressionReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a reason: use one of {}",
                    SuppressionReason::ALL.map(|r| r.as_str()).join(", ")
                )
            })
    }
}

impl TryFrom<String> for SuppressionReason {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// What is suppressed: one number (every worker who has it), or one NIK
/// (that worker, whatever number they have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuppressionTarget {
    Phone(Msisdn),
    Nik(Nik),
}

impl SuppressionTarget {
    /// `phone` or `nik`, as stored in `suppressions.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            SuppressionTarget::Phone(_) => "phone",
            SuppressionTarget::Nik(_) => "nik",
        }
    }

    /// The value as stored: E.164, or the NIK's 16 digits.
    pub fn value(&self) -> &str {
        match self {
            SuppressionTarget::Phone(p) => p.as_e164(),
            SuppressionTarget::Nik(n) => n.as_str(),
        }
    }

    /// For logs, audit entries and listings.
    pub fn masked(&self) -> String {
        mask_value(self.kind(), self.value())
    }

    /// Exactly one of a number and a NIK, as people give them (`08…`,
    /// `628…`, `+628…`; a NIK's 16 digits); the error names the field.
    pub fn from_parts(
        phone: Option<&str>,
        nik: Option<&str>,
    ) -> Result<SuppressionTarget, (&'static str, String)> {
        let phone = phone.map(str::trim).filter(|s| !s.is_empty());
        let nik = nik.map(str::trim).filter(|s| !s.is_empty());
        match (phone, nik) {
            (Some(p), None) => Msisdn::parse(p)
                .map(SuppressionTarget::Phone)
                .map_err(|e| ("phone", e.to_string())),
            (None, Some(n)) => Nik::parse(n)
                .map(SuppressionTarget::Nik)
                .map_err(|e| ("nik", e.to_string())),
            (Some(_), Some(_)) => Err((
                "phone",
                "give a phone number or a NIK, not both (one entry each)".to_string(),
            )),
            (None, None) => Err(("phone", "a phone number or a NIK is required".to_string())),
        }
    }
}

/// A stored value, masked by its kind.
pub fn mask_value(kind: &str, value: &str) -> String {
    if value.starts_with("erased:") {
        // The worker was erased: the entry no longer names anyone.
        return "[erased]".to_string();
    }
    match kind {
        "phone" => mask_phone(value),
        "nik" => mask_nik(value),
        _ => "***".to_string(),
    }
}

/// Parses `--until`: a date `YYYY-MM-DD`, suppressed through the end of
/// that day in WIB (the entry expires at the next midnight, Jakarta time),
/// or an RFC 3339 time. Refused when not in the future of `now_ms`.
pub fn parse_until(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    let at = if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let wib = FixedOffset::east_opt(7 * 3600).expect("UTC+7 is a valid offset");
        let next = d
            .checked_add_days(Days::new(1))
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or_else(|| format!("{s:?} is out of range"))?;
        wib.from_local_datetime(&next)
            .single()
            .ok_or_else(|| format!("{s:?} is out of range"))?
            .timestamp_millis()
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else {
        return Err(format!(
            "{s:?} is not a date: use YYYY-MM-DD (through the end of that day, WIB) \
             or an RFC 3339 time"
        ));
    };
    if at <= now_ms {
        return Err(format!("{s:?} is not in the future"));
    }
    Ok(at)
}

/// One suppression to add.
#[derive(Debug, Clone)]
pub struct NewSuppression {
    pub target: SuppressionTarget,
    pub reason: SuppressionReason,
    /// Free text for people (may be empty). Never a place for the NIK:
    /// erasure replaces the value, not notes.
    pub note: String,
    /// Unix ms after which it no longer applies; `None`: until removed.
    pub expires_at: Option<i64>,
    /// Who added it (the audit actor).
    pub added_by: String,
}

/// The longest note kept.
pub const MAX_NOTE_CHARS: usize = 500;

/// Checks a note: printable, at most [`MAX_NOTE_CHARS`] characters.
pub fn check_note(note: &str) -> Result<String, String> {
    let note = note.trim();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(format!("longer than {MAX_NOTE_CHARS} characters"));
    }
    if note.chars().any(|c| c.is_control()) {
        return Err("contains control characters".to_string());
    }
    Ok(note.to_string())
}

/// The columns `suppress import` reads; `phone` or `nik` per row, the
/// others optional except `reason`.
pub const IMPORT_COLUMNS: [&str; 5] = ["phone", "nik", "reason", "until", "note"];

/// A suppression CSV, parsed: the entries to add, and the rows refused with
/// line, field and reason (the registry import's shape). A file without a
/// usable header is an error of its own.
#[derive(Debug, Default)]
pub struct ParsedImport {
    pub rows: u64,
    pub entries: Vec<(u64, NewSuppression)>,
    pub rejections: Vec<Rejection>,
}

/// Reads a suppression CSV (header line with `reason` and `phone` and/or
/// `nik`; `until` and `note` optional; other columns ignored). A row naming
/// the same number or NIK as an earlier row of the file is refused.
pub fn parse_import(
    input: impl std::io::Read,
    added_by: &str,
    now_ms: i64,
) -> Result<ParsedImport, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = r
        .headers()
        .map_err(|e| format!("line 1: the header cannot be read: {e}"))?
        .clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    let (phone, nik, reason, until, note) = (
        col("phone"),
        col("nik"),
        col("reason"),
        col("until"),
        col("note"),
    );
    if reason.is_none() {
        return Err("line 1: the header has no `reason` column".into());
    }
    if phone.is_none() && nik.is_none() {
        return Err("line 1: the header has neither a `phone` nor a `nik` column".into());
    }
    let mut out = ParsedImport::default();
    let mut seen = std::collections::HashSet::new();
    for rec in r.records() {
        out.rows += 1;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(out.rows + 1);
                out.rejections.push(Rejection {
                    line,
                    field: "row".into(),
                    reason: format!("unreadable CSV: {e}"),
                });
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(out.rows + 1);
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
        let reject = |field: &str, reason: String| Rejection {
            line,
            field: field.to_string(),
            reason,
        };
        let target = match SuppressionTarget::from_parts(Some(get(phone)), Some(get(nik))) {
            Ok(t) => t,
            Err((field, why)) => {
                out.rejections.push(reject(field, why));
                continue;
            }
        };
        let reason = match get(reason).parse::<SuppressionReason>() {
            Ok(r) => r,
            Err(why) => {
                out.rejections.push(reject("reason", why));
                continue;
            }
        };
        let expires_at = match get(until) {
            "" => None,
            s => match parse_until(s, now_ms) {
                Ok(t) => Some(t),
                Err(why) => {
                    out.rejections.push(reject("until", why));
                    continue;
                }
            },
        };
        let note = match check_note(get(note)) {
            Ok(n) => n,
            Err(why) => {
                out.rejections.push(reject("note", why));
                continue;
            }
        };
        if !seen.insert((target.kind(), target.value().to_string())) {
            out.rejections.push(reject(
                target.kind(),
                format!("{} appears earlier in the file", target.masked()),
            ));
            continue;
        }
        out.entries.push((
            line,
            NewSuppression {
                target,
                reason,
                note,
                expires_at,
                added_by: added_by.to_string(),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_610_000_000_000; // 2021-01-07

    #[test]
    fn until_is_the_end_of_the_day_in_wib() {
        let t = parse_until("2021-01-13", NOW).unwrap();
        // 2021-01-14 00:00 WIB = 2021-01-13 17:00 UTC.
        assert_eq!(t, 1_610_557_200_000);
        assert!(parse_until("2020-12-31", NOW)
            .unwrap_err()
            .contains("not in the future"));
        assert!(parse_until("13/01/2021", NOW)
            .unwrap_err()
            .contains("not a date"));
    }

    #[test]
    fn a_target_is_one_number_or_one_nik() {
        let t = SuppressionTarget::from_parts(Some("0812-3456-7890"), None).unwrap();
        assert_eq!((t.kind(), t.value()), ("phone", "+6281234567890"));
        assert!(!t.masked().contains("34567"));
        assert_eq!(
            SuppressionTarget::from_parts(None, None).unwrap_err().0,
            "phone"
        );
        assert!(SuppressionTarget::from_parts(Some("0812"), None).is_err());
        assert!(
            SuppressionTarget::from_parts(Some("081234567890"), Some("x"))
                .unwrap_err()
                .1
                .contains("not both")
        );
    }

    #[test]
    fn import_rejects_rows_with_line_and_field() {
        let csv = "phone,nik,reason,until,note\n\
                   081234567890,,declined,,asked on WhatsApp\n\
                   ,,declined,,\n\
                   081234567891,,sleepy,,\n\
                   +6281234567890,,other,,\n\
                   081234567892,,deceased,1999-01-01,\n";
        let p = parse_import(csv.as_bytes(), "ops", NOW).unwrap();
        assert_eq!(p.rows, 5);
        assert_eq!(p.entries.len(), 1);
        let got: Vec<_> = p
            .rejections
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [(3, "phone"), (4, "reason"), (5, "phone"), (6, "until")]
        );
        assert!(parse_import("phone,note\n".as_bytes(), "ops", NOW)
            .unwrap_err()
            .contains("reason"));
    }

    #[test]
    fn reasons_round_trip() {
        for r in SuppressionReason::ALL {
            assert_eq!(r.as_str().parse::<SuppressionReason>().unwrap(), r);
        }
        assert!("nope".parse::<SuppressionReason>().is_err());
    }
}
