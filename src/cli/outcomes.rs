//! `pedulicovid flags outcome …` and `flags import-outcomes …`: what the
//! outreach team found, one flag at a time or the whole file back.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{cli_actor, open_store};
use crate::config::Settings;
use crate::domain::notice::FreeText;
use crate::domain::outcome::Outcome;
use crate::outreach;
use crate::store::{FlagChange, OutreachReport};

/// Rejections printed (without `--json`).
const SHOWN_REJECTIONS: usize = 20;

#[derive(Debug, Args)]
pub(super) struct OutcomeArgs {
    /// The flag's id (the `flag_id` column of `flags export`).
    flag_id: i64,
    /// reregistered, reached_by_phone, unreachable or declined.
    #[arg(value_parser = parse_outcome)]
    outcome: Outcome,
    /// What the outreach team noted (kept with the outcome and audited).
    #[arg(long)]
    note: Option<String>,
    /// Who records it, for the audit trail (default: $USER).
    #[arg(long)]
    staff: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct ImportOutcomesArgs {
    /// The CSV file, `-` for standard input: header with flag_id, outcome
    /// and optionally note (other columns ignored, so the export with an
    /// outcome column added will do).
    file: PathBuf,
    /// Accept only flags of this campaign (others are rejected rows).
    #[arg(long)]
    campaign: Option<i64>,
    /// Who records them, for the audit trail (default: $USER).
    #[arg(long)]
    staff: Option<String>,
}

fn parse_outcome(s: &str) -> Result<Outcome, String> {
    Outcome::parse(s).map_err(|e| e.0)
}

fn actor(staff: Option<&str>) -> anyhow::Result<FreeText> {
    Ok(FreeText::staff(staff.unwrap_or(&cli_actor()))?)
}

/// `flags outcome FLAG_ID OUTCOME`.
pub(super) async fn record(s: &Settings, a: &OutcomeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let note = match a.note.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(FreeText::note(n)?),
    };
    let staff = actor(a.staff.as_deref())?;
    let store = open_store(s).await?;
    let new = crate::store::NewOutcome {
        flag_id: a.flag_id,
        outcome: a.outcome,
        note,
    };
    let r = store.record_flag_outcome(&new, None, &staff).await?;
    if json {
        println!("{}", serde_json::json!({ "recorded": r }));
    } else {
        println!(
            "flag {} ({}, campaign {}): outcome {}{}; {}",
            r.flag_id,
            r.reason,
            r.campaign_id,
            r.outcome,
            r.previous_outcome
                .as_deref()
                .map(|p| format!(" (was {p})"))
                .unwrap_or_default(),
            match r.flag_change {
                FlagChange::Resolved => "flag resolved (outreach)".to_string(),
                FlagChange::Reopened => "flag open again".to_string(),
                FlagChange::Unchanged => match &r.resolution {
                    Some(x) => format!("flag stays resolved ({x})"),
                    None => "flag stays open".to_string(),
                },
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `flags import-outcomes FILE`.
pub(super) async fn import(
    s: &Settings,
    a: &ImportOutcomesArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let staff = actor(a.staff.as_deref())?;
    // The whole file first: outcomes are applied in one transaction.
    let mut text = Vec::new();
    if a.file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(&a.file)
            .and_then(|mut f| f.read_to_end(&mut text))
            .with_context(|| format!("reading {}", a.file.display()))?;
    }
    let store = open_store(s).await?;
    let (report, _) =
        outreach::import_outcomes(&store, text.as_slice(), a.campaign, &staff).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} rows: {} outcomes recorded ({} flags resolved, {} open again), {} rejected",
            report.rows,
            report.recorded,
            report.flags_resolved,
            report.flags_reopened,
            report.rejected_rows
        );
        for r in report.rejections.iter().take(SHOWN_REJECTIONS) {
            println!("  line {}: {}: {}", r.line, r.field, r.reason);
        }
        if report.rejections_total > SHOWN_REJECTIONS as u64 {
            println!(
                "  … {} more (use --json for the first {})",
                report.rejections_total - SHOWN_REJECTIONS as u64,
                outreach::KEPT_REJECTIONS
            );
        }
    }
    // The good rows are committed either way; a script must still notice
    // the bad ones.
    Ok(if report.rejected_rows > 0 {
        ExitCode::from(super::exit::REJECTED_ROWS)
    } else {
        ExitCode::SUCCESS
    })
}

/// The outreach lines of `campaign show`.
pub(super) fn print_report(r: &OutreachReport) {
    if r.flagged == 0 {
        return;
    }
    println!(
        "  outreach: {} non-recipient(s), {} finally reached ({})",
        r.flagged,
        r.reached,
        r.by_outcome
            .iter()
            .map(|c| format!("{} {}", c.outcome, c.count))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for x in &r.by_reason {
        println!(
            "    {:<18} {} of {} reached",
            x.reason, x.reached, x.flagged
        );
    }
    for p in &r.by_province {
        println!(
            "    {:<18} {} of {} reached",
            p.province_name, p.reached, p.flagged
        );
    }
}
