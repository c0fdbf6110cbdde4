//! The non-recipient CSV export: the outreach list `flags export` writes
//! and `GET /api/v1/campaigns/{id}/nonrecipients.csv` serves, written by one
//! function so both are the same file.
//!
//! # Spreadsheet formulas
//! Outreach staff open this file in a spreadsheet, which runs a cell that
//! begins with `=`, `+`, `-` or `@` (or a tab or carriage return before
//! one) as a formula: a name imported as `=HYPERLINK(…)` would be a link
//! or worse on a help-desk laptop. Following OWASP ("CSV injection"), such a
//! cell gets a leading `'`, which spreadsheets show as text. The guard is
//! decided per column ([`COLUMNS`]): text that came from outside (a name)
//! is guarded; values we produce ourselves are not, so a phone number we
//! normalised to `+62…` stays a phone number.
//!
//! # Who may read the file
//! Every file we write that holds personal data (this export, the import's
//! rejects file, the demo's synthetic registry) is opened by
//! [`create_private_file`]: mode `0600` from the moment it exists, so there
//! is no window in which another local user can open it (a `chmod` after
//! writing leaves one, and a reader that opened the file in it keeps its
//! descriptor).

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::Path;

use crate::campaign::fmt_wib;
use crate::store::FlagRow;

/// Where a column's values come from, which decides the formula guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Produced or normalised by us (ids, a parsed NIK, an E.164 phone, a
    /// province code, a reason, a WIB time): written as is.
    Ours,
    /// Imported or typed by people: guarded with [`guard_formula`].
    FreeText,
}

/// The header of the export, each column with its [`Source`].
pub const COLUMNS: [(&str, Source); 11] = [
    ("flag_id", Source::Ours),
    ("campaign_id", Source::Ours),
    ("message_id", Source::Ours),
    // Parsed as 16 digits at import.
    ("nik", Source::Ours),
    ("full_name", Source::FreeText),
    // Normalised to E.164 (`+62…`) at import.
    ("phone", Source::Ours),
    ("province_code", Source::Ours),
    ("reason", Source::Ours),
    ("flagged_at", Source::Ours),
    ("resolved_at", Source::Ours),
    // One of our resolution codes (`reregistered`, `resent`, `support`).
    ("resolution", Source::Ours),
];

/// `s` with a leading `'` when a spreadsheet would read it as a formula:
/// it begins with `=`, `+`, `-`, `@`, a tab or a carriage return.
pub fn guard_formula(s: &str) -> Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

/// One flag as the export's cells, in [`COLUMNS`] order, guarded per column.
pub fn record(r: &FlagRow) -> [String; 11] {
    let mut cells = [
        r.id.to_string(),
        r.campaign_id.to_string(),
        r.message_id.to_string(),
        r.nik.clone(),
        r.full_name.clone(),
        r.phone.clone(),
        r.province_code.clone(),
        r.reason.clone(),
        fmt_wib(r.flagged_at),
        r.resolved_at.map(fmt_wib).unwrap_or_default(),
        r.resolution.clone().unwrap_or_default(),
    ];
    for (cell, (_, source)) in cells.iter_mut().zip(COLUMNS) {
        if source == Source::FreeText {
            if let Cow::Owned(guarded) = guard_formula(cell) {
                *cell = guarded;
            }
        }
    }
    cells
}

/// Creates (or truncates) `path` for writing, readable and writable by its
/// owner only (`0600`). A new file is created with that mode (`open(2)`
/// with `O_CREAT` and mode `0600`, further narrowed by the umask, never
/// widened). An existing regular file keeps its mode through `open(2)`, so
/// a wider one is narrowed to `0600` on the open descriptor before anything
/// is written. Devices and pipes (`/dev/stdout`, a FIFO) are left as they
/// are.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        let meta = f.metadata()?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(f)
    }
    #[cfg(not(unix))]
    {
        File::create(path)
    }
}

/// Writes the header and one row per flag to `out`, and returns it.
pub fn write_nonrecipients<W: io::Write>(out: W, rows: &[FlagRow]) -> io::Result<W> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS.map(|(name, _)| name))?;
    for r in rows {
        w.write_record(record(r))?;
    }
    w.into_inner().map_err(|e| e.into_error())
}

/// The header of the pending re-registration export (`pedulicovid
/// reregistrations export`, `GET /api/v1/reregistrations/pending.csv`),
/// for One Data validation, each column with its [`Source`].
pub const REREGISTRATION_COLUMNS: [(&str, Source); 9] = [
    ("reregistration_id", Source::Ours),
    ("nik", Source::Ours),
    ("full_name", Source::FreeText),
    ("old_phone", Source::Ours),
    // The chatbot's WhatsApp number, parsed to E.164.
    ("new_phone", Source::Ours),
    ("facility_code", Source::FreeText),
    ("regency_code", Source::Ours),
    ("province_code", Source::Ours),
    ("requested_at", Source::Ours),
];

/// Writes the header and one row per pending re-registration to `out`,
/// guarded per column, and returns it.
pub fn write_reregistrations<W: io::Write>(
    out: W,
    rows: &[crate::store::ReregistrationExportRow],
) -> io::Result<W> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(REREGISTRATION_COLUMNS.map(|(name, _)| name))?;
    for r in rows {
        let mut cells = [
            r.id.to_string(),
            r.nik.clone(),
            r.full_name.clone(),
            r.old_phone.clone(),
            r.new_phone.clone(),
            r.facility_code.clone(),
            r.regency_code.clone(),
            r.province_code.clone(),
            fmt_wib(r.requested_at),
        ];
        for (cell, (_, source)) in cells.iter_mut().zip(REREGISTRATION_COLUMNS) {
            if source == Source::FreeText {
                if let Cow::Owned(guarded) = guard_formula(cell) {
                    *cell = guarded;
                }
            }
        }
        w.write_record(cells)?;
    }
    w.into_inner().map_err(|e| e.into_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(name: &str, phone: &str) -> FlagRow {
        FlagRow {
            id: 1,
            campaign_id: 2,
            message_id: 3,
            worker_id: 4,
            nik: "3171014505900012".into(),
            full_name: name.into(),
            phone: phone.into(),
            province_code: "31".into(),
            reason: "undelivered".into(),
            flagged_at: 0,
            resolved_at: None,
            resolution: None,
        }
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_created_and_narrowed_to_0600() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let fresh = dir.path().join("fresh.csv");
        create_private_file(&fresh)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert_eq!(mode(&fresh), 0o600);

        // An existing world-readable file is narrowed and truncated.
        let old = dir.path().join("old.csv");
        std::fs::write(&old, b"previous export").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_file(&old).unwrap().write_all(b"y").unwrap();
        assert_eq!(mode(&old), 0o600);
        assert_eq!(std::fs::read(&old).unwrap(), b"y");
    }

    #[test]
    fn formula_starts_are_guarded() {
        for (input, want) in [
            ("=1+1", "'=1+1"),
            ("+62 812", "'+62 812"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("Siti Rahayu", "Siti Rahayu"),
            ("Siti =1", "Siti =1"),
            ("", ""),
        ] {
            assert_eq!(guard_formula(input), want, "{input:?}");
        }
    }

    #[test]
    fn names_are_guarded_and_our_phones_are_not() {
        let rec = record(&flag("=HYPERLINK(\"http://x\")", "+6281200000020"));
        assert_eq!(rec[4], "'=HYPERLINK(\"http://x\")");
        assert_eq!(rec[5], "+6281200000020");
        let rec = record(&flag("Budi Santoso", "+6281200000020"));
        assert_eq!(rec[4], "Budi Santoso");
        assert_eq!(rec[3], "3171014505900012");
    }

    #[test]
    fn the_file_has_the_header_and_quotes_as_csv_does() {
        let out = write_nonrecipients(Vec::new(), &[flag("@x, \"y\"", "+62812")]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "flag_id,campaign_id,message_id,nik,full_name,phone,province_code,reason,\
             flagged_at,resolved_at,resolution"
        );
        assert!(
            lines
                .next()
                .unwrap()
                .contains(",\"'@x, \"\"y\"\"\",+62812,"),
            "{text}"
        );
    }
}
