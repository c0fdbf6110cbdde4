//! The outreach team's file back: outcomes in bulk, from CSV.
//!
//! The header is required and names the columns `flag_id` and `outcome`,
//! and optionally `note` (any order, any case). Other columns are ignored,
//! so the non-recipient export itself (`flags export`, which starts with
//! `flag_id`) comes back with an `outcome` and a `note` column added. A row
//! that fails is rejected with its line number, the field and the reason
//! ([`Rejection`], as the registry import reports), and never stops the
//! others: a malformed row, an unknown outcome, a flag id that does not
//! exist or belongs to another campaign than the one the import is bound
//! to, a flag id already given on an earlier line. The valid rows are
//! applied together in one transaction ([`Store::record_flag_outcomes`]), each
//! with its audit entry: a file is applied whole (minus its rejected rows)
//! or not at all.
//!
//! Rejections never quote a cell of an ignored column (names, NIKs and
//! numbers of the export stay out of reports and logs).

use std::collections::HashMap;
use std::io::Read;

use serde::Serialize;

use crate::domain::notice::FreeText;
use crate::domain::outcome::Outcome;
use crate::registry::Rejection;
use crate::store::{NewOutcome, RecordedOutcome, Store, StoreError};

/// The columns read; `note` may be left out.
pub const REQUIRED: [&str; 2] = ["flag_id", "outcome"];
pub const NOTE: &str = "note";

/// Rejections kept in a report (all are counted).
pub const KEPT_REJECTIONS: usize = 1000;

/// What an outcome import did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct OutcomeImportReport {
    /// Data rows read (header and blank lines excluded).
    pub rows: u64,
    /// Outcomes recorded.
    pub recorded: u64,
    /// Of them, flags that were open and are now resolved `outreach`.
    pub flags_resolved: u64,
    /// Of them, flags resolved `outreach` before and open again
    /// (`unreachable`).
    pub flags_reopened: u64,
    pub rejected_rows: u64,
    /// Rejections in file order (a row may have several), the first
    /// [`KEPT_REJECTIONS`].
    #[schema(value_type = Vec<Object>)]
    pub rejections: Vec<Rejection>,
    /// Every rejection counted, kept in `rejections` or not.
    pub rejections_total: u64,
}

/// The import as a whole could not run.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeImportError {
    #[error("the file is empty: a header line is required (flag_id,outcome[,note])")]
    Empty,
    #[error("header line: {0}")]
    Header(String),
    #[error("reading the file: {0}")]
    Read(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the columns sit in this file.
struct Layout {
    flag_id: usize,
    outcome: usize,
    note: Option<usize>,
}

impl Layout {
    fn from_header(header: &csv::ByteRecord) -> Result<Layout, OutcomeImportError> {
        let names = crate::registry::header_names(header);
        let find = |col: &str| names.iter().position(|n| n == col);
        let missing: Vec<&str> = REQUIRED.into_iter().filter(|c| find(c).is_none()).collect();
        if !missing.is_empty() {
            return Err(OutcomeImportError::Header(format!(
                "missing column(s) {}; expected flag_id,outcome and optionally note \
                 (other columns are ignored)",
                missing.join(", ")
            )));
        }
        for col in REQUIRED.into_iter().chain([NOTE]) {
            if names.iter().filter(|n| *n == col).count() > 1 {
                return Err(OutcomeImportError::Header(format!(
                    "column {col} appears twice"
                )));
            }
        }
        Ok(Layout {
            flag_id: find("flag_id").unwrap_or_default(),
            outcome: find("outcome").unwrap_or_default(),
            note: find(NOTE),
        })
    }
}

/// A row's problems: (field, reason), in the order found.
type RowErrors = Vec<(String, String)>;

/// Parses one row into an outcome, or every problem with it.
fn parse_row(
    rec: &csv::ByteRecord,
    layout: &Layout,
    width: usize,
) -> Result<NewOutcome, RowErrors> {
    if rec.len() != width {
        return Err(vec![(
            "row".into(),
            format!("expected {width} fields, found {}", rec.len()),
        )]);
    }
    let mut errors = vec![];
    let mut text = |k: usize, col: &str| match std::str::from_utf8(&rec[k]) {
        Ok(s) => Some(s.trim().to_string()),
        Err(_) => {
            errors.push((
                col.to_string(),
                "is not valid UTF-8 (save the file as CSV UTF-8)".to_string(),
            ));
            None
        }
    };
    let flag = text(layout.flag_id, "flag_id");
    let outcome = text(layout.outcome, "outcome");
    let note = layout.note.and_then(|k| text(k, NOTE));
    let flag_id = flag.and_then(|s| match s.parse::<i64>() {
        Ok(id) if id > 0 => Some(id),
        _ if s.is_empty() => {
            errors.push(("flag_id".into(), "is required".into()));
            None
        }
        _ => {
            errors.push((
                "flag_id".into(),
                "is not a flag id (a positive whole number from the export's flag_id column)"
                    .into(),
            ));
            None
        }
    });
    let outcome = outcome.and_then(|s| match Outcome::parse(&s) {
        Ok(o) => Some(o),
        Err(e) => {
            errors.push(("outcome".into(), e.0));
            None
        }
    });
    let note = match note.filter(|n| !n.is_empty()) {
        None => None,
        Some(n) => match FreeText::note(&n) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push((NOTE.into(), e.reason));
                None
            }
        },
    };
    match (flag_id, outcome) {
        (Some(flag_id), Some(outcome)) if errors.is_empty() => Ok(NewOutcome {
            flag_id,
            outcome,
            note,
        }),
        _ => Err(errors),
    }
}

/// Imports outcomes from the CSV `input` by `actor`; with `campaign`, only
/// flags of that campaign are accepted (a flag of another is a rejected
/// row).
pub async fn import_outcomes<R: Read>(
    store: &Store,
    input: R,
    campaign: Option<i64>,
    actor: &FreeText,
) -> Result<(OutcomeImportReport, Vec<RecordedOutcome>), OutcomeImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        // Records end at `\n` alone, as in the registry import: with the
        // default terminator the reader numbers every row of a CRLF file
        // (what spreadsheets on Windows write) one line too early. The `\r`
        // left at the end of the last field is trimmed with the rest.
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(input);
    let mut header = csv::ByteRecord::new();
    let has_header = reader
        .read_byte_record(&mut header)
        .map_err(|e| OutcomeImportError::Read(e.to_string()))?;
    if !has_header {
        return Err(OutcomeImportError::Empty);
    }
    let layout = Layout::from_header(&header)?;
    let width = header.len();

    let mut report = OutcomeImportReport::default();
    let mut rejections: Vec<Rejection> = vec![];
    let mut first_line: HashMap<i64, u64> = HashMap::new();
    let mut valid: Vec<NewOutcome> = vec![];
    let mut lines: Vec<u64> = vec![];
    let mut rec = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(OutcomeImportError::Read(e.to_string())),
        }
        // The line the record starts on (the header is line 1).
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() == 1 && rec[0].iter().all(|b| b.is_ascii_whitespace()) {
            continue; // blank line
        }
        report.rows += 1;
        match parse_row(&rec, &layout, width) {
            Ok(o) => {
                if let Some(first) = first_line.get(&o.flag_id) {
                    report.rejected_rows += 1;
                    rejections.push(Rejection {
                        line,
                        field: "flag_id".into(),
                        reason: format!(
                            "duplicate flag_id: line {first} has the same flag (one outcome per flag)"
                        ),
                    });
                    continue;
                }
                first_line.insert(o.flag_id, line);
                valid.push(o);
                lines.push(line);
            }
            Err(errors) => {
                report.rejected_rows += 1;
                for (field, reason) in errors {
                    rejections.push(Rejection {
                        line,
                        field,
                        reason,
                    });
                }
            }
        }
    }
    let done = store.record_flag_outcomes(&valid, campaign, actor).await?;
    for (i, why) in &done.refused {
        report.rejected_rows += 1;
        rejections.push(Rejection {
            line: lines[*i],
            field: "flag_id".into(),
            reason: why.describe(valid[*i].flag_id, campaign),
        });
    }
    for r in &done.recorded {
        report.recorded += 1;
        match r.flag_change {
            crate::store::FlagChange::Resolved => report.flags_resolved += 1,
            crate::store::FlagChange::Reopened => report.flags_reopened += 1,
            crate::store::FlagChange::Unchanged => {}
        }
    }
    // File order; a row's own problems stay in the order found.
    rejections.sort_by_key(|r| r.line);
    report.rejections_total = rejections.len() as u64;
    rejections.truncate(KEPT_REJECTIONS);
    report.rejections = rejections;
    Ok((report, done.recorded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<(u64, Result<NewOutcome, RowErrors>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(text.as_bytes());
        let mut header = csv::ByteRecord::new();
        r.read_byte_record(&mut header).unwrap();
        let layout = Layout::from_header(&header).unwrap();
        let mut out = vec![];
        let mut rec = csv::ByteRecord::new();
        while r.read_byte_record(&mut rec).unwrap() {
            out.push((
                rec.position().unwrap().line(),
                parse_row(&rec, &layout, header.len()),
            ));
        }
        out
    }

    #[test]
    fn header_needs_flag_id_and_outcome_and_ignores_the_rest() {
        let h = |s: &str| {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(s.as_bytes());
            let mut rec = csv::ByteRecord::new();
            r.read_byte_record(&mut rec).unwrap();
            Layout::from_header(&rec)
        };
        let l = h("\u{feff}NIK,Outcome,full_name,FLAG_ID\n").unwrap();
        assert_eq!((l.flag_id, l.outcome, l.note), (3, 1, None));
        let e = h("flag_id,note\n").err().unwrap().to_string();
        assert!(e.contains("missing column(s) outcome"), "{e}");
        let e = h("flag_id,outcome,outcome\n").err().unwrap().to_string();
        assert!(e.contains("outcome appears twice"), "{e}");
    }

    #[test]
    fn rows_report_every_bad_field_with_their_line_even_after_crlf_and_quotes() {
        let got = rows(
            "flag_id,outcome,note\r\n\
             7,REACHED_BY_PHONE,\r\n\
             x,maybe,\"two\nlines\"\r\n\
             8,declined\r\n\
             9,unreachable,\"called twice\"\r\n",
        );
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, 2);
        let ok = got[0].1.as_ref().unwrap();
        assert_eq!(
            (ok.flag_id, ok.outcome, ok.note.is_none()),
            (7, Outcome::ReachedByPhone, true)
        );
        assert_eq!(got[1].0, 3);
        let bad = got[1].1.as_ref().unwrap_err();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].0, "flag_id");
        assert_eq!(bad[1].0, "outcome");
        assert!(bad[1].1.contains("\"maybe\" is not an outcome"));
        assert_eq!(got[2].0, 5, "a quoted line break counts");
        assert_eq!(
            got[2].1.as_ref().unwrap_err()[0],
            ("row".to_string(), "expected 3 fields, found 2".to_string())
        );
        assert_eq!(got[3].0, 6);
        assert_eq!(
            got[3].1.as_ref().unwrap().note.as_ref().unwrap().as_str(),
            "called twice"
        );
    }
}
