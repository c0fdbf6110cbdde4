//! Import of validated health workers from the One Data CSV export.
//!
//! The header is required and must name exactly the columns in [`COLUMNS`]
//! (any order, case-insensitive). Each row is parsed into domain types; a row
//! that fails is rejected with its line number, the field and the reason,
//! and never stops the others. Valid rows are upserted by NIK in
//! transactions of [`CHUNK`] rows, so an import that dies half way leaves
//! whole chunks behind and a re-run finishes the job: re-importing the same
//! file changes nothing.
//!
//! A row is a line: [`LineGuard`] feeds the CSV parser one line at a time
//! and keeps back a line whose quote never closes, so a stray `"` costs one
//! row, not every row up to the next quote.
//!
//! Memory does not grow with the file except for 12 bytes per distinct NIK
//! ([`SeenNiks`]), needed to reject a NIK seen earlier in the same file:
//! rows are read one at a time (a line at most 1 MiB), written a chunk
//! at a time, and [`import_csv_streaming`] hands every rejection to a sink
//! (the `--rejects` file) and keeps only the first few in the report.
//! Measured figures: RELIABILITY.md, "Resource bounds".

use std::collections::HashMap;
use std::io::Read;

use serde::Serialize;

use crate::domain::{Msisdn, Nik, ProvinceCode};
use crate::store::{NewWorker, Store, StoreError, UpsertCounts};

/// The export's columns, in the documented order.
pub const COLUMNS: [&str; 9] = [
    "nik",
    "full_name",
    "phone",
    "profession",
    "facility_code",
    "regency_code",
    "province_code",
    "validated",
    "eligible",
];

/// Rows per transaction.
pub const CHUNK: usize = 1000;

/// Rejections `pedulicovid import --json` keeps in its report; the
/// `--rejects` file has all of them.
pub const KEPT_REJECTIONS: usize = 1000;

/// One reason a row was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// 1-based line in the file where the row starts (the header is line 1).
    pub line: u64,
    pub field: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Data rows read (header excluded).
    pub rows: u64,
    pub accepted: u64,
    pub rejected_rows: u64,
    #[serde(flatten)]
    pub counts: UpsertCounts,
    /// Rejections in file order (a row may have several): all of them from
    /// [`import_csv`], the first `keep` from [`import_csv_streaming`].
    pub rejections: Vec<Rejection>,
    /// Every rejection counted, kept in `rejections` or not.
    pub rejections_total: u64,
}

impl ImportReport {
    fn reject(
        &mut self,
        keep: usize,
        sink: &mut impl FnMut(&Rejection) -> std::io::Result<()>,
        r: Rejection,
    ) -> Result<(), ImportError> {
        self.rejections_total += 1;
        sink(&r).map_err(|e| ImportError::Rejects(e.to_string()))?;
        if self.rejections.len() < keep {
            self.rejections.push(r);
        }
        Ok(())
    }
}

/// The import as a whole could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is empty: a header line is required ({})", COLUMNS.join(","))]
    Empty,
    #[error("header line: {0}")]
    Header(String),
    #[error("reading the file: {0}")]
    Read(String),
    #[error("writing the rejects file: {0}")]
    Rejects(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where each column sits in this file.
struct Layout([usize; 9]);

impl Layout {
    fn from_header(header: &csv::ByteRecord) -> Result<Layout, ImportError> {
        let first = header.get(0).unwrap_or_default();
        if first.starts_with(&[0xff, 0xfe])
            || first.starts_with(&[0xfe, 0xff])
            || header.iter().any(|f| f.contains(&0))
        {
            return Err(ImportError::Header(
                "the file is UTF-16 (or another two-byte encoding), not UTF-8: \
                 save it again as \"CSV UTF-8\" and import that"
                    .to_string(),
            ));
        }
        let cr_inside = |f: &[u8]| {
            let end = f
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .unwrap_or(0);
            f[..end].contains(&b'\r')
        };
        if header.iter().any(cr_inside) {
            return Err(ImportError::Header(CR_ONLY.to_string()));
        }
        let names = header_names(header);
        let mut idx = [0usize; 9];
        let mut missing = vec![];
        for (k, col) in COLUMNS.iter().enumerate() {
            match names.iter().position(|n| n == col) {
                Some(i) => idx[k] = i,
                None => missing.push(*col),
            }
        }
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !COLUMNS.contains(&n.as_str()))
            .map(|s| s.as_str())
            .collect();
        let mut dup = names.clone();
        dup.sort();
        dup.dedup();
        if !missing.is_empty() || !unknown.is_empty() || dup.len() != names.len() {
            let mut parts = vec![];
            if !missing.is_empty() {
                parts.push(format!("missing column(s) {}", missing.join(", ")));
            }
            if !unknown.is_empty() {
                parts.push(format!("unknown column(s) {}", unknown.join(", ")));
            }
            if dup.len() != names.len() {
                parts.push("a column appears twice".to_string());
            }
            return Err(ImportError::Header(format!(
                "{}; expected {}",
                parts.join("; "),
                COLUMNS.join(",")
            )));
        }
        Ok(Layout(idx))
    }
}

/// Parses one data row. Returns every problem found, not just the first, so
/// a clerk fixes a row once.
fn parse_row(
    rec: &csv::ByteRecord,
    layout: &Layout,
    width: usize,
) -> Result<NewWorker, Vec<(String, String)>> {
    if rec.len() != width {
        return Err(vec![(
            "row".into(),
            format!("expected {width} fields, found {}", rec.len()),
        )]);
    }
    let mut errors: Vec<(String, String)> = vec![];
    let mut text = |k: usize| -> Option<String> {
        let raw = &rec[layout.0[k]];
        match std::str::from_utf8(raw) {
            Ok(s) => Some(s.trim().to_string()),
            Err(_) => {
                errors.push((
                    COLUMNS[k].into(),
                    "is not valid UTF-8 (export the file as UTF-8)".into(),
                ));
                None
            }
        }
    };
    let fields: Vec<Option<String>> = (0..9).map(&mut text).collect();
    let get = |k: usize| fields[k].as_deref();

    let nik = get(0).map(|s| Nik::parse(s).map_err(|e| e.to_string()));
    let name = get(1).map(|s| clean_text(s, 100));
    let phone = get(2).map(|s| Msisdn::parse(s).map_err(|e| e.to_string()));
    let profession = get(3).map(|s| clean_text(s, 64));
    let facility = get(4).map(|s| code(s, 32));
    let province = get(6).map(|s| ProvinceCode::parse(s).map_err(|e| e.to_string()));
    let regency = get(5).map(|s| regency(s, province.as_ref().and_then(|p| p.as_ref().ok())));
    let validated = get(7).map(boolean);
    let eligible = get(8).map(boolean);

    fn take<T>(
        errors: &mut Vec<(String, String)>,
        col: &str,
        v: Option<Result<T, String>>,
    ) -> Option<T> {
        match v {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                errors.push((col.into(), e));
                None
            }
            None => None,
        }
    }
    let nik = take(&mut errors, "nik", nik);
    let name = take(&mut errors, "full_name", name);
    let phone = take(&mut errors, "phone", phone);
    let profession = take(&mut errors, "profession", profession);
    let facility = take(&mut errors, "facility_code", facility);
    let regency = take(&mut errors, "regency_code", regency);
    let province = take(&mut errors, "province_code", province);
    let validated = take(&mut errors, "validated", validated);
    let eligible = take(&mut errors, "eligible", eligible);
    match (
        nik, name, phone, profession, facility, regency, province, validated, eligible,
    ) {
        (
            Some(nik),
            Some(name),
            Some(phone),
            Some(prof),
            Some(fac),
            Some(reg),
            Some(prov),
            Some(v),
            Some(e),
        ) if errors.is_empty() => Ok(NewWorker {
            operator: phone.operator().as_str().to_string(),
            nik,
            full_name: name,
            phone,
            profession: prof,
            facility_code: fac,
            regency_code: reg,
            province_code: prov,
            validated: v,
            eligible: e,
        }),
        _ => Err(errors),
    }
}

/// Trims, collapses inner whitespace, refuses empty and overlong values.
fn clean_text(s: &str, max: usize) -> Result<String, String> {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("contains control characters".into());
    }
    Ok(s)
}

fn code(s: &str, max: usize) -> Result<String, String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > max {
        return Err(format!("is longer than {max} characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        return Err("may hold only letters, digits, '-', '_', '.' and '/'".into());
    }
    Ok(s.to_string())
}

/// Kemendagri regency/city code: 4 digits, the province's two first.
fn regency(s: &str, province: Option<&ProvinceCode>) -> Result<String, String> {
    let s = s.replace('.', "");
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?} must be 4 digits (province + regency, e.g. 3171)"
        ));
    }
    if &s[2..] == "00" {
        return Err(format!("{s}: regency 00 does not exist"));
    }
    if let Some(p) = province {
        if s[..2] != p.to_string() {
            return Err(format!("{s} is not in province {p}"));
        }
    }
    Ok(s)
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "ya" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "tidak" | "" => Ok(false),
        other => Err(format!(
            "{other:?} is not a yes/no value (use true/false, 1/0, ya/tidak)"
        )),
    }
}

/// The first line of every NIK seen so far in one file, in 12 bytes per
/// distinct NIK (its value as a u64, 16 digits fit, and the line as a u32)
/// with no hash-table slack: new NIKs go to a small hash map, which is
/// merged into two sorted arrays whenever it holds `recent` entries.
struct SeenNiks {
    /// Sorted.
    niks: Vec<u64>,
    /// `lines[i]` is the first line of `niks[i]`.
    lines: Vec<u32>,
    recent: HashMap<u64, u32>,
    recent_max: usize,
}

impl SeenNiks {
    /// Entries the hash map holds before a merge (about 1.5 MB).
    const RECENT: usize = 1 << 16;

    fn new(recent_max: usize) -> SeenNiks {
        SeenNiks {
            niks: Vec::new(),
            lines: Vec::new(),
            recent: HashMap::with_capacity(recent_max),
            recent_max,
        }
    }

    fn get(&self, nik: u64) -> Option<u64> {
        if let Some(line) = self.recent.get(&nik) {
            return Some(u64::from(*line));
        }
        let i = self.niks.binary_search(&nik).ok()?;
        Some(u64::from(self.lines[i]))
    }

    /// Records the first line of a NIK not seen before. A line past
    /// u32::MAX (a 300 GB file) is remembered as u32::MAX.
    fn insert(&mut self, nik: u64, line: u64) {
        self.recent
            .insert(nik, u32::try_from(line).unwrap_or(u32::MAX));
        if self.recent.len() >= self.recent_max {
            self.merge();
        }
    }

    /// Moves the hash map's entries into the sorted arrays: grows them by
    /// exactly that many and merges from the back, in place.
    fn merge(&mut self) {
        let mut new: Vec<(u64, u32)> = self.recent.drain().collect();
        new.sort_unstable_by_key(|e| e.0);
        let old = self.niks.len();
        self.niks.reserve_exact(new.len());
        self.lines.reserve_exact(new.len());
        self.niks.resize(old + new.len(), 0);
        self.lines.resize(old + new.len(), 0);
        let (mut i, mut j) = (old, new.len());
        while j > 0 {
            let k = i + j - 1;
            if i > 0 && self.niks[i - 1] > new[j - 1].0 {
                self.niks[k] = self.niks[i - 1];
                self.lines[k] = self.lines[i - 1];
                i -= 1;
            } else {
                (self.niks[k], self.lines[k]) = new[j - 1];
                j -= 1;
            }
        }
    }
}

/// Imports the CSV from `input`, keeping every rejection in the report (for
/// files of a known, small size). `progress` is told the bytes read so far.
pub async fn import_csv<R: Read>(
    store: &Store,
    input: R,
    progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    import_csv_streaming(store, input, usize::MAX, |_| Ok(()), progress).await
}

/// Why a file whose lines end in a lone CR cannot be read.
const CR_ONLY: &str = "lines end in a carriage return alone (an old Mac format): \
                       save the file again as \"CSV UTF-8\" and import that";

/// The longest line the import reads; a registry row is about 150 bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A line the [`LineGuard`] kept from the CSV parser.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldLine {
    line: u64,
    /// Column index (in the file) where the unclosed quote opens; `None`
    /// for a line over [`MAX_LINE_BYTES`].
    column: Option<usize>,
}

/// Feeds the CSV parser one line at a time and keeps from it every line
/// that would run into the next: one whose quote is never closed (a stray
/// `"` in a name is the usual cause) or one over [`MAX_LINE_BYTES`]. In
/// their place the parser gets an empty line, which it skips, so the line
/// numbers of the rows after stay right, and such a line costs only its own
/// rejection. Without this, the parser reads everything up to the next
/// quote, possibly the rest of the file, as one field: every row after it
/// lost, and the whole file in memory. No registry field holds a line
/// break, so a line is a row.
struct LineGuard<R> {
    inner: std::io::BufReader<R>,
    line: Vec<u8>,
    pos: usize,
    line_no: u64,
    /// Bytes of the input read so far, for the progress bar.
    consumed: u64,
    held: std::collections::VecDeque<HeldLine>,
}

impl<R: Read> LineGuard<R> {
    fn new(input: R) -> Self {
        LineGuard {
            inner: std::io::BufReader::with_capacity(64 * 1024, input),
            line: Vec::with_capacity(512),
            pos: 0,
            line_no: 0,
            consumed: 0,
            held: Default::default(),
        }
    }

    /// Held lines numbered below `line`, oldest first.
    fn take_held_before(&mut self, line: u64) -> Vec<HeldLine> {
        let n = self.held.iter().take_while(|h| h.line < line).count();
        self.held.drain(..n).collect()
    }

    /// Reads the next line into `self.line`; false at the end of the input.
    fn next_line(&mut self) -> std::io::Result<bool> {
        use std::io::BufRead;
        self.line.clear();
        self.pos = 0;
        let n = (&mut self.inner)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(false);
        }
        self.consumed += n as u64;
        self.line_no += 1;
        let ends = self.line.last() == Some(&b'\n');
        if !ends && n > MAX_LINE_BYTES {
            if self.line_no == 1 {
                // No header, nothing to read: say so before reading on.
                return self.hold(None).map(|()| true);
            }
            // Skip to the end of this line without keeping it.
            loop {
                let buf = self.inner.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.inner.consume(i + 1);
                        self.consumed += i as u64 + 1;
                        break;
                    }
                    None => {
                        let len = buf.len();
                        self.inner.consume(len);
                        self.consumed += len as u64;
                    }
                }
            }
            self.hold(None)?;
            return Ok(true);
        }
        if let Some(column) = unclosed_quote(&self.line) {
            self.hold(Some(column))?;
        }
        Ok(true)
    }

    /// Keeps the current line from the parser. The header cannot be
    /// replaced: without it nothing can be read, so that is an error.
    fn hold(&mut self, column: Option<usize>) -> std::io::Result<()> {
        if self.line_no == 1 {
            let cr_inside = self
                .line
                .iter()
                .rev()
                .skip_while(|b| b.is_ascii_whitespace())
                .any(|&b| b == b'\r');
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                match column {
                    // Lines ending in a lone CR: the whole file is "line 1".
                    _ if cr_inside => CR_ONLY,
                    Some(_) => "the header line has a quote (\") that is never closed",
                    None => "the header line is longer than 1 MiB",
                },
            ));
        }
        self.held.push_back(HeldLine {
            line: self.line_no,
            column,
        });
        self.line.clear();
        self.line.push(b'\n');
        Ok(())
    }
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.line.len() && !self.next_line()? {
            return Ok(0);
        }
        let n = buf.len().min(self.line.len() - self.pos);
        buf[..n].copy_from_slice(&self.line[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The column whose quote `line` opens and never closes, read as the csv
/// parser reads it (a quote opens a field only at its start; `""` inside
/// a quoted field is one quote), or `None` when every quote is closed.
fn unclosed_quote(line: &[u8]) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Start,
        Plain,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = S::Start;
    let mut column = 0;
    for &b in line {
        state = match (state, b) {
            (S::Quoted, b'"') => S::QuoteInQuoted,
            (S::Quoted, _) => S::Quoted,
            (_, b',') => {
                column += 1;
                S::Start
            }
            (S::Start, b'"') | (S::QuoteInQuoted, b'"') => S::Quoted,
            (S::Start | S::Plain | S::QuoteInQuoted, _) => S::Plain,
        };
    }
    (state == S::Quoted).then_some(column)
}

/// Imports the CSV from `input` in bounded memory: every rejection goes to
/// `on_reject` as it is found (an error there stops the import), and only
/// the first `keep` stay in the report. `progress` is told the bytes read.
pub async fn import_csv_streaming<R: Read>(
    store: &Store,
    input: R,
    keep: usize,
    mut on_reject: impl FnMut(&Rejection) -> std::io::Result<()>,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        // Records end at `\n` alone: with the default (`\r`, `\n` or
        // `\r\n`) the csv reader numbers every row of a CRLF file (what
        // spreadsheets on Windows write) one line too early. The `\r` left
        // at the end of the last field is trimmed with the rest.
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(LineGuard::new(input));
    let mut header = csv::ByteRecord::new();
    let has_header = reader
        .read_byte_record(&mut header)
        .map_err(|e| ImportError::Read(e.to_string()))?;
    if !has_header {
        return Err(ImportError::Empty);
    }
    let layout = Layout::from_header(&header)?;
    let width = header.len();

    let mut report = ImportReport::default();
    // First line of every NIK seen in this file: a second row with the same
    // NIK is a conflict the clerk must resolve, not something to guess.
    let mut seen = SeenNiks::new(SeenNiks::RECENT);
    let mut chunk: Vec<NewWorker> = Vec::with_capacity(CHUNK);
    let mut rec = csv::ByteRecord::new();
    loop {
        let more = match reader.read_byte_record(&mut rec) {
            Ok(more) => more,
            Err(e) => {
                // With byte records and flexible widths the parser fails
                // only when reading fails, and it reads nothing after that:
                // going on would end the import as if the file ended here.
                // The chunks written so far stay (a re-run finishes the job).
                return Err(ImportError::Read(format!(
                    "after line {}: {e}",
                    reader.get_ref().line_no
                )));
            }
        };
        let line = if more {
            // The guard hands the parser one line at a time, so the line it
            // holds now is the one this record ended on (and, as no record
            // spans lines, began on). The parser's own count is off by one
            // after every empty line it skips.
            reader.get_ref().line_no
        } else {
            u64::MAX
        };
        for held in reader.get_mut().take_held_before(line) {
            report.rows += 1;
            report.rejected_rows += 1;
            let rejection = match held.column {
                Some(c) => Rejection {
                    line: held.line,
                    field: layout
                        .0
                        .iter()
                        .position(|&i| i == c)
                        .map_or("row".to_string(), |k| COLUMNS[k].to_string()),
                    reason: "a quote (\") opened in this field is not closed on this line; \
                             the row is not imported (the rows after it are)"
                        .to_string(),
                },
                None => Rejection {
                    line: held.line,
                    field: "row".into(),
                    reason: format!("longer than {MAX_LINE_BYTES} bytes: not a registry row"),
                },
            };
            report.reject(keep, &mut on_reject, rejection)?;
        }
        if !more {
            break;
        }
        if rec.len() == 1 && rec[0].iter().all(|b| b.is_ascii_whitespace()) {
            continue; // blank line
        }
        report.rows += 1;
        match parse_row(&rec, &layout, width) {
            Ok(w) => {
                // A parsed NIK is exactly 16 ASCII digits.
                let key: u64 = w.nik.as_str().parse().expect("a parsed NIK is 16 digits");
                if let Some(first) = seen.get(key) {
                    report.rejected_rows += 1;
                    let reason = format!("duplicate NIK: line {first} has the same NIK");
                    report.reject(
                        keep,
                        &mut on_reject,
                        Rejection {
                            line,
                            field: "nik".into(),
                            reason,
                        },
                    )?;
                    continue;
                }
                seen.insert(key, line);
                chunk.push(w);
                if chunk.len() >= CHUNK {
                    report
                        .counts
                        .add(store.upsert_workers(&chunk, "import").await?);
                    report.accepted += chunk.len() as u64;
                    chunk.clear();
                    progress(reader.get_ref().consumed);
                }
            }
            Err(errors) => {
                report.rejected_rows += 1;
                for (field, reason) in errors {
                    report.reject(
                        keep,
                        &mut on_reject,
                        Rejection {
                            line,
                            field,
                            reason,
                        },
                    )?;
                }
            }
        }
    }
    if !chunk.is_empty() {
        report
            .counts
            .add(store.upsert_workers(&chunk, "import").await?);
        report.accepted += chunk.len() as u64;
    }
    // The next campaign's enqueue and every claim join `health_workers`:
    // plan them on statistics of the registry as it is now.
    if report.counts.inserted > 0 {
        store.refresh_statistics(&["health_workers"]).await;
    }
    progress(u64::MAX);
    Ok(report)
}

/// A CSV header's column names as the imports compare them: a UTF-8 byte
/// order mark before the first dropped, trimmed, lower case.
pub fn header_names(header: &csv::ByteRecord) -> Vec<String> {
    header
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let s = String::from_utf8_lossy(f);
            let s = if i == 0 {
                s.trim_start_matches('\u{feff}')
            } else {
                &s
            };
            s.trim().to_ascii_lowercase()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `unclosed_quote` reads a line exactly as the csv parser does: the
        /// parser ends the record on this line precisely when the quote
        /// check finds nothing open, and the open column is the last field
        /// the parser starts.
        #[test]
        fn unclosed_quote_agrees_with_the_csv_parser(line in "[a\",\r ]{0,12}") {
            let input = format!("{line}\nnext,row\n");
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .terminator(csv::Terminator::Any(b'\n'))
                .from_reader(input.as_bytes());
            let mut rec = csv::ByteRecord::new();
            let mut records = vec![];
            while reader.read_byte_record(&mut rec).unwrap() {
                records.push(rec.clone());
            }
            let spans = records
                .first()
                .is_some_and(|r| r.iter().any(|f| f.contains(&b'\n')));
            match unclosed_quote(line.as_bytes()) {
                None => prop_assert!(!spans, "{line:?} parsed as {records:?}"),
                Some(column) => {
                    prop_assert!(spans, "{line:?} parsed as {records:?}");
                    prop_assert_eq!(column + 1, records[0].len(), "{:?}", line);
                }
            }
        }
    }

    #[test]
    fn the_guard_holds_back_only_broken_lines() {
        let input = "h1,h2\nok,\"fine\"\"x\"\nbad,\"open\nnext,ok\n";
        let mut g = LineGuard::new(input.as_bytes());
        let mut out = String::new();
        g.read_to_string(&mut out).unwrap();
        assert_eq!(out, "h1,h2\nok,\"fine\"\"x\"\n\nnext,ok\n");
        assert_eq!(g.consumed, input.len() as u64);
        let held = g.take_held_before(u64::MAX);
        assert_eq!(
            held,
            [HeldLine {
                line: 3,
                column: Some(1)
            }]
        );

        let long = format!("h\n{}\nafter\n", "x".repeat(MAX_LINE_BYTES + 10));
        let mut g = LineGuard::new(long.as_bytes());
        let mut out = String::new();
        g.read_to_string(&mut out).unwrap();
        assert_eq!(out, "h\n\nafter\n");
        assert_eq!(
            g.take_held_before(u64::MAX),
            [HeldLine {
                line: 2,
                column: None
            }]
        );

        let mut g = LineGuard::new("nik,\"full_name\nx\n".as_bytes());
        let err = g.read_to_string(&mut String::new()).unwrap_err();
        assert!(err.to_string().contains("header"), "{err}");
    }

    fn layout() -> Layout {
        Layout::from_header(&csv::ByteRecord::from(COLUMNS.to_vec())).unwrap()
    }

    #[test]
    fn header_errors_name_the_columns() {
        let err = Layout::from_header(&csv::ByteRecord::from(vec!["nik", "phon"]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing column(s) full_name, phone"), "{err}");
        assert!(err.contains("unknown column(s) phon"), "{err}");
        let bom = ["\u{feff}nik"]
            .into_iter()
            .chain(COLUMNS[1..].iter().copied())
            .collect::<Vec<_>>();
        assert!(Layout::from_header(&csv::ByteRecord::from(bom)).is_ok());
    }

    #[test]
    fn a_row_reports_every_bad_field() {
        let rec = csv::ByteRecord::from(vec![
            "123", "", "021-555", "Perawat", "P3171", "3271", "31", "maybe", "1",
        ]);
        let errs = parse_row(&rec, &layout(), 9).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["nik", "full_name", "phone", "regency_code", "validated"]
        );
        assert!(errs[3].1.contains("not in province 31"));
    }

    #[test]
    fn non_utf8_and_short_rows() {
        let mut rec = csv::ByteRecord::new();
        for f in COLUMNS {
            rec.push_field(f.as_bytes());
        }
        let mut bad = csv::ByteRecord::new();
        bad.push_field(b"3171014505900001");
        bad.push_field(b"Sit\xff Rahayu");
        for f in ["081234567890", "Perawat", "P1", "3171", "31", "1", "1"] {
            bad.push_field(f.as_bytes());
        }
        let errs = parse_row(&bad, &layout(), 9).unwrap_err();
        assert_eq!(errs[0].0, "full_name");
        assert!(errs[0].1.contains("UTF-8"));
        let short = csv::ByteRecord::from(vec!["a", "b"]);
        assert_eq!(
            parse_row(&short, &layout(), 9).unwrap_err()[0].1,
            "expected 9 fields, found 2"
        );
    }

    #[test]
    fn seen_niks_across_merges() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = SeenNiks::new(5);
        let mut model: HashMap<u64, u64> = HashMap::new();
        for line in 2..2000u64 {
            let nik = 3_171_000_000_000_000 + rng.gen_range(0..1500u64);
            assert_eq!(seen.get(nik), model.get(&nik).copied(), "line {line}");
            if let std::collections::hash_map::Entry::Vacant(e) = model.entry(nik) {
                e.insert(line);
                seen.insert(nik, line);
            }
        }
        assert!(
            seen.niks.windows(2).all(|w| w[0] < w[1]),
            "sorted, distinct"
        );
        assert_eq!(seen.niks.len() + seen.recent.len(), model.len());
        for (nik, line) in &model {
            assert_eq!(seen.get(*nik), Some(*line));
        }
        assert_eq!(seen.get(1), None);
        assert_eq!(seen.get(u64::MAX), None);
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean("Ya"), Ok(true));
        assert_eq!(boolean("tidak"), Ok(false));
        assert!(boolean("2").is_err());
    }
}
