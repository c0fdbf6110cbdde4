//! `pedulicovid flags …`: non-recipients, listed masked, exported in full
//! (audited), resolved by hand; outreach outcomes ([`super::outcomes`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{cli_actor, open_store};
use crate::config::Settings;
use crate::domain::notice::FreeText;
use crate::domain::{mask_name, mask_nik, mask_phone};
use crate::store::FlagRow;

#[derive(Debug, Subcommand)]
pub(super) enum FlagsCmd {
    /// Open flags (names, NIKs and numbers masked).
    List {
        /// Only this campaign's flags.
        #[arg(long)]
        campaign: Option<i64>,
        /// Include resolved flags.
        #[arg(long)]
        all: bool,
    },
    /// Export flags with full contact data, for re-registration outreach
    /// (audited; names guarded against spreadsheet formulas).
    Export {
        /// Only this campaign's flags.
        #[arg(long)]
        campaign: Option<i64>,
        /// CSV (the only format for now).
        #[arg(long, default_value_t = true)]
        csv: bool,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Include resolved flags.
        #[arg(long)]
        all: bool,
    },
    /// Mark a flag resolved by hand, with a note (audited).
    Resolve {
        /// The flag's id (from `flags list`).
        flag_id: i64,
        /// What was done (kept in the audit trail).
        #[arg(long)]
        note: String,
        /// The staff member's name, for the audit trail.
        #[arg(long)]
        staff: String,
    },
    /// Record what outreach found for a flag: reregistered,
    /// reached_by_phone, unreachable or declined (audited; all but
    /// unreachable resolve an open flag).
    Outcome(super::outcomes::OutcomeArgs),
    /// Record outcomes from the outreach team's CSV (flag_id,outcome[,note]);
    /// bad rows are reported with their line, the others applied in one
    /// transaction (exit 3 when some were rejected).
    ImportOutcomes(super::outcomes::ImportOutcomesArgs),
}

pub(super) async fn run(s: &Settings, f: &FlagsCmd, json: bool) -> anyhow::Result<ExitCode> {
    if json && matches!(f, FlagsCmd::Export { .. }) {
        return Ok(super::usage(
            "--json: `flags export` writes CSV (use `flags list --json` for masked JSON)",
        ));
    }
    match f {
        FlagsCmd::Outcome(a) => return super::outcomes::record(s, a, json).await,
        FlagsCmd::ImportOutcomes(a) => return super::outcomes::import(s, a, json).await,
        _ => {}
    }
    let store = open_store(s).await?;
    match f {
        FlagsCmd::List { campaign, all } if json => {
            let rows: Vec<_> = store
                .flags(*campaign, *all)
                .await?
                .iter()
                .map(masked_flag)
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
        FlagsCmd::List { campaign, all } => {
            let rows = store.flags(*campaign, *all).await?;
            println!(
                "{:>6} {:>8} {:<18} {:<16} {:<14} {:<4} name",
                "id", "campaign", "reason", "nik", "phone", "prov"
            );
            for r in &rows {
                println!(
                    "{:>6} {:>8} {:<18} {:<16} {:<14} {:<4} {}{}",
                    r.id,
                    r.campaign_id,
                    r.reason,
                    mask_nik(&r.nik),
                    mask_phone(&r.phone),
                    r.province_code,
                    mask_name(&r.full_name),
                    r.resolution
                        .as_deref()
                        .map(|x| format!(" (resolved: {x})"))
                        .unwrap_or_default()
                );
            }
            eprintln!("{} flag(s)", rows.len());
        }
        FlagsCmd::Export {
            campaign,
            output,
            all,
            ..
        } => {
            // The file first: an export that cannot be written is not
            // recorded as made.
            let out: Box<dyn std::io::Write> = match output {
                Some(p) => Box::new(
                    crate::export::create_private_file(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            // Read in the transaction that writes its audit entry.
            let rows = store.export_flags(*campaign, *all, &cli_actor()).await?;
            crate::export::write_nonrecipients(out, &rows)?.flush()?;
            eprintln!("{} flag(s) exported", rows.len());
        }
        FlagsCmd::Resolve {
            flag_id,
            note,
            staff,
        } => {
            let f = store
                .resolve_flag(*flag_id, &FreeText::staff(staff)?, &FreeText::note(note)?)
                .await?;
            if json {
                println!("{}", serde_json::json!({ "resolved": f }));
            } else {
                println!(
                    "flag {} ({}) resolved by {}",
                    f.id,
                    f.reason,
                    f.resolved_by.as_deref().unwrap_or(staff)
                );
            }
        }
        FlagsCmd::Outcome(_) | FlagsCmd::ImportOutcomes(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A flag as `flags list --json` prints it: name, NIK and number masked as
/// in the text listing.
fn masked_flag(r: &FlagRow) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "campaign_id": r.campaign_id,
        "message_id": r.message_id,
        "worker_id": r.worker_id,
        "reason": r.reason,
        "nik_masked": mask_nik(&r.nik),
        "phone_masked": mask_phone(&r.phone),
        "name_masked": mask_name(&r.full_name),
        "province_code": r.province_code,
        "flagged_at": r.flagged_at,
        "resolved_at": r.resolved_at,
        "resolution": r.resolution,
    })
}
