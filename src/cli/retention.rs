//! `pedulicovid retention …`: what is due for purging per kind of record,
//! and a purge run now (housekeeping runs the same batches on its own).

use std::process::ExitCode;

use clap::Subcommand;

use super::{cli_actor, open_store};
use crate::config::Settings;
use crate::store::RetentionStep;

#[derive(Debug, Subcommand)]
pub(super) enum RetentionCmd {
    /// Per kind of record: how long it is kept, rows due for purging, rows
    /// purged so far.
    Status,
    /// Purge everything due now, in the same bounded batches housekeeping
    /// uses (audited as `retention.run`).
    Run,
}

pub(super) async fn run(s: &Settings, c: &RetentionCmd, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    let policy = s.retention.policy(&s.worker);
    match c {
        RetentionCmd::Status => {
            let kinds = store.retention_status(&policy).await?;
            if json {
                println!("{}", serde_json::to_string(&kinds)?);
            } else {
                println!(
                    "{:<18} {:>10} {:>12} {:>12}",
                    "kind", "keep", "due", "purged"
                );
                for k in &kinds {
                    let keep = match k.keep_days {
                        Some(d) if d >= 1.0 => format!("{d:.0} days"),
                        Some(d) => format!("{:.0} hours", d * 24.0),
                        None => "for ever".into(),
                    };
                    println!("{:<18} {:>10} {:>12} {:>12}", k.kind, keep, k.due, k.purged);
                }
            }
        }
        RetentionCmd::Run => {
            let mut total = RetentionStep::default();
            loop {
                let step = store.retention_step(&policy).await?;
                total.add(&step);
                if !step.more {
                    break;
                }
            }
            store
                .audit(
                    &cli_actor(),
                    "retention.run",
                    "retention",
                    &format!(
                        "receipt payloads {}, message data {}, attempts {}, audit entries {}, idempotency keys {}",
                        total.receipt_payloads,
                        total.message_data,
                        total.attempts,
                        total.audit,
                        total.idempotency_keys
                    ),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&total)?);
            } else {
                println!(
                    "purged: {} receipt payload(s), {} message(s)' data, {} attempt(s), {} audit entr(ies), {} idempotency key(s)",
                    total.receipt_payloads,
                    total.message_data,
                    total.attempts,
                    total.audit,
                    total.idempotency_keys
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
