//! `pedulicovid reregistrations …`: chatbot re-registrations waiting for
//! One Data validation.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{cli_actor, open_store};
use crate::campaign::fmt_wib;
use crate::config::Settings;
use crate::domain::notice::FreeText;

#[derive(Debug, Subcommand)]
pub(super) enum ReregistrationsCmd {
    /// Re-registrations, newest first (NIKs, names and numbers masked).
    List {
        /// pending, confirmed, approved, superseded, applied, or all.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Export the pending ones in full (NIK, name, old and new number) as
    /// CSV for One Data validation (audited; names guarded against
    /// spreadsheet formulas; the file is created readable by its owner
    /// only). A later import that carries the new number for the NIK
    /// confirms the re-registration and sends the notice.
    Export {
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Approve a pending re-registration after validating the new number
    /// another way (audited): the notice goes to the new number.
    Approve {
        /// The re-registration's id (from `reregistrations list`).
        id: i64,
        /// How the number was validated (kept in the audit trail).
        #[arg(long)]
        note: String,
        /// The staff member's name, for the audit trail.
        #[arg(long)]
        staff: String,
    },
}

pub(super) async fn run(
    s: &Settings,
    c: &ReregistrationsCmd,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json && matches!(c, ReregistrationsCmd::Export { .. }) {
        return Ok(super::usage(
            "--json: `reregistrations export` writes CSV (use `reregistrations list --json`)",
        ));
    }
    let store = open_store(s).await?;
    match c {
        ReregistrationsCmd::List { status } => {
            let status = (status != "all").then_some(status.as_str());
            let rows = store.reregistrations(status, None, 10_000).await?;
            if json {
                // Masked, as the text listing.
                println!("{}", serde_json::to_string(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>6} {:>7} {:<11} {:<16} {:<14} {:<14} {:<20} name",
                "id", "worker", "status", "nik", "old phone", "new phone", "requested (WIB)"
            );
            for r in &rows {
                println!(
                    "{:>6} {:>7} {:<11} {:<16} {:<14} {:<14} {:<20} {}",
                    r.id,
                    r.worker_id,
                    r.status,
                    r.nik_masked,
                    r.old_phone_masked,
                    r.new_phone_masked,
                    fmt_wib(r.requested_at),
                    r.name_masked
                );
            }
            eprintln!("{} re-registration(s)", rows.len());
        }
        ReregistrationsCmd::Export { output } => {
            // The file first: an export that cannot be written is not
            // recorded as made.
            let out: Box<dyn std::io::Write> = match output {
                Some(p) => Box::new(
                    crate::export::create_private_file(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let rows = store.export_pending_reregistrations(&cli_actor()).await?;
            crate::export::write_reregistrations(out, &rows)?.flush()?;
            eprintln!("{} pending re-registration(s) exported", rows.len());
        }
        ReregistrationsCmd::Approve { id, note, staff } => {
            let o = store
                .approve_reregistration(*id, &FreeText::staff(staff)?, &FreeText::note(note)?)
                .await?;
            if json {
                println!("{}", serde_json::json!({ "approved": o }));
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "re-registration {} approved: {} on file{}",
                o.reregistration_id,
                o.phone_masked,
                o.notice
                    .as_ref()
                    .map(|n| format!(
                        "; notice (message {}) due {}",
                        n.message_id, n.next_attempt_wib
                    ))
                    .unwrap_or_else(|| "; no notice (not validated or not eligible)".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
