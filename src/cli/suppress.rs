//! `pedulicovid suppress …`: the suppression list (numbers and NIKs that
//! must not be messaged), added one by one or from a CSV file, removed,
//! listed masked.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{arg_or_stdin, cli_actor, open_store};
use crate::config::Settings;
use crate::domain::fmt_wib;
use crate::store::{now_ms, SuppressionView};
use crate::suppression::{self, NewSuppression, SuppressionReason, SuppressionTarget};

#[derive(Debug, Subcommand)]
pub(super) enum SuppressCmd {
    /// Stop messaging a number or a NIK (audited): the worker's queued
    /// notices are cancelled, later campaigns and resends leave them out,
    /// and they are never flagged as a non-recipient.
    Add {
        #[command(flatten)]
        target: TargetArgs,
        /// Why: declined, vaccinated, deceased, wrong_number or other.
        #[arg(long, value_enum)]
        reason: SuppressionReason,
        /// Last day it applies (YYYY-MM-DD, through the end of that day
        /// in WIB) or an RFC 3339 time; default: until removed.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// A note for people (no personal data: it is kept as written).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// End the suppression of a number or a NIK (audited). Notices
    /// cancelled while it applied stay cancelled; resend if needed.
    Remove {
        #[command(flatten)]
        target: TargetArgs,
        /// Why (kept in the audit trail).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Suppressions in force, newest first (numbers and NIKs masked).
    List {
        /// Every entry ever added, removed and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// Add suppressions from a CSV file (header: `phone` and/or `nik`,
    /// `reason`, optional `until`, `note`). Bad rows are reported with line,
    /// field and reason; the good ones are added in one transaction.
    Import {
        /// The CSV file; `-` reads standard input.
        file: PathBuf,
        /// Write every rejected row (line, field, reason) to this CSV file.
        #[arg(long, value_name = "FILE")]
        rejects: Option<PathBuf>,
    },
}

/// Exactly one of `--phone` and `--nik`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(super) struct TargetArgs {
    /// A phone number in any common form (08…, 628…, +628…); `-` reads it
    /// from standard input.
    #[arg(long)]
    phone: Option<String>,
    /// A NIK (16 digits); `-` reads it from standard input (keeps it out
    /// of `ps` and shell history).
    #[arg(long)]
    nik: Option<String>,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<SuppressionTarget> {
        let phone = self
            .phone
            .as_deref()
            .map(|p| arg_or_stdin(p, "phone number"))
            .transpose()?;
        let nik = self
            .nik
            .as_deref()
            .map(|n| arg_or_stdin(n, "NIK"))
            .transpose()?;
        SuppressionTarget::from_parts(phone.as_deref(), nik.as_deref())
            .map_err(|(field, why)| anyhow::anyhow!("--{field}: {why}"))
    }
}

pub(super) async fn run(s: &Settings, c: &SuppressCmd, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match c {
        SuppressCmd::Add {
            target,
            reason,
            until,
            note,
        } => {
            let new = NewSuppression {
                target: target.target()?,
                reason: *reason,
                note: suppression::check_note(note).map_err(|e| anyhow::anyhow!("--note: {e}"))?,
                expires_at: until
                    .as_deref()
                    .map(|u| suppression::parse_until(u, now_ms()))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--until: {e}"))?,
                added_by: cli_actor(),
            };
            let done = store.suppress(&new).await?;
            if json {
                println!("{}", serde_json::to_string(&done)?);
            } else if done.created {
                println!(
                    "suppression {}: {} {} ({}{}); {} queued notice(s) cancelled, {} open flag(s) resolved",
                    done.entry.id,
                    done.entry.kind,
                    done.entry.value_masked,
                    done.entry.reason,
                    until_text(&done.entry),
                    done.cancelled,
                    done.flags_resolved
                );
            } else {
                println!(
                    "{} {} is already suppressed (suppression {}, {}{}, since {}): kept as it is",
                    done.entry.kind,
                    done.entry.value_masked,
                    done.entry.id,
                    done.entry.reason,
                    until_text(&done.entry),
                    fmt_wib(done.entry.added_at)
                );
            }
        }
        SuppressCmd::Remove { target, note } => {
            let note = suppression::check_note(note).map_err(|e| anyhow::anyhow!("--note: {e}"))?;
            let e = store
                .unsuppress(&target.target()?, &cli_actor(), &note)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&e)?);
            } else {
                println!(
                    "suppression {} of {} {} removed",
                    e.id, e.kind, e.value_masked
                );
            }
        }
        SuppressCmd::List { all } => {
            let rows = store.suppressions(*all).await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:>5} {:<6} {:<18} {:<13} {:<24} {:<26} by",
                    "id", "kind", "value", "reason", "added", "until"
                );
                for r in &rows {
                    println!(
                        "{:>5} {:<6} {:<18} {:<13} {:<24} {:<26} {}{}",
                        r.id,
                        r.kind,
                        r.value_masked,
                        r.reason.as_str(),
                        fmt_wib(r.added_at),
                        match (r.removed_at, r.expires_at) {
                            (Some(t), _) => format!("removed {}", fmt_wib(t)),
                            (None, Some(t)) => fmt_wib(t),
                            (None, None) => "-".into(),
                        },
                        r.added_by,
                        if r.note.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", r.note)
                        }
                    );
                }
            }
        }
        SuppressCmd::Import { file, rejects } => {
            let input: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(
                    std::fs::File::open(file)
                        .with_context(|| format!("opening {}", file.display()))?,
                )
            };
            let parsed = suppression::parse_import(input, &cli_actor(), now_ms())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let entries: Vec<_> = parsed.entries.into_iter().map(|(_, e)| e).collect();
            let done = store.suppress_many(&entries).await?;
            if let Some(path) = rejects {
                let f = crate::export::create_private_file(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut w = csv::Writer::from_writer(std::io::BufWriter::new(f));
                w.write_record(["line", "field", "reason"])?;
                for r in &parsed.rejections {
                    w.write_record([r.line.to_string().as_str(), &r.field, &r.reason])?;
                }
                w.flush()
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "rows": parsed.rows,
                        "added": done.added,
                        "already": done.already,
                        "cancelled": done.cancelled,
                        "flags_resolved": done.flags_resolved,
                        "rejected_rows": parsed.rejections.len(),
                        "rejections": parsed.rejections,
                    })
                );
            } else {
                println!(
                    "{} rows: {} added, {} already suppressed, {} rejected; {} queued notice(s) cancelled, {} open flag(s) resolved",
                    parsed.rows,
                    done.added,
                    done.already,
                    parsed.rejections.len(),
                    done.cancelled,
                    done.flags_resolved
                );
                for r in parsed.rejections.iter().take(20) {
                    println!("  line {}: {}: {}", r.line, r.field, r.reason);
                }
                if parsed.rejections.len() > 20 {
                    println!("  … {} more", parsed.rejections.len() - 20);
                }
            }
            if !parsed.rejections.is_empty() {
                return Ok(ExitCode::from(super::exit::REJECTED_ROWS));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn until_text(e: &SuppressionView) -> String {
    e.expires_at
        .map(|t| format!(", until {}", fmt_wib(t)))
        .unwrap_or_default()
}
