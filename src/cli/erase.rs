//! `pedulicovid erase [NIK] --reason TEXT`: erases one worker's personal
//! data (or several, one NIK per line on standard input), each in its own
//! transaction ([`crate::store::Store::erase_worker`]).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{cli_actor, exit, open_store};
use crate::config::Settings;
use crate::domain::notice::FreeText;
use crate::domain::Nik;
use crate::store::{Erasure, SupportError};

#[derive(Debug, Args)]
pub(super) struct EraseArgs {
    /// The worker's NIK. `-` or absent: NIKs are read from standard input,
    /// one per line (so they stay out of `ps` and the shell's history).
    nik: Option<String>,
    /// Why (required; kept in the audit trail, without the NIK, numbers
    /// or name).
    #[arg(long)]
    reason: String,
}

/// One NIK to erase: where it came from (a line of standard input, or the
/// argument) and the NIK.
struct Asked {
    line: Option<usize>,
    nik: Nik,
}

fn place(line: Option<usize>) -> String {
    match line {
        Some(n) => format!("standard input, line {n}: "),
        None => String::new(),
    }
}

/// The NIKs asked for, every one parsed before anything is erased: a bad
/// line stops the command with nothing changed.
fn asked(arg: Option<&str>) -> anyhow::Result<Vec<Asked>> {
    if let Some(a) = arg.filter(|a| *a != "-") {
        let nik = Nik::parse(a.trim()).map_err(|e| anyhow::anyhow!("NIK: {e}"))?;
        return Ok(vec![Asked { line: None, nik }]);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("NIKs to erase, one per line; end with Ctrl-D:");
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.context("reading NIKs from standard input")?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        match Nik::parse(t) {
            Ok(nik) => out.push(Asked {
                line: Some(i + 1),
                nik,
            }),
            Err(e) => bad.push(format!("{}NIK: {e}", place(Some(i + 1)))),
        }
    }
    if !bad.is_empty() {
        anyhow::bail!("nothing erased:\n  {}", bad.join("\n  "));
    }
    if out.is_empty() {
        anyhow::bail!("no NIK given: pass one, or one per line on standard input");
    }
    Ok(out)
}

pub(super) async fn run(s: &Settings, a: &EraseArgs, json: bool) -> anyhow::Result<ExitCode> {
    let reason = FreeText::reason(&a.reason)?;
    let actor = FreeText::staff(&cli_actor())?;
    let asked = asked(a.nik.as_deref())?;
    let store = open_store(s).await?;
    let mut erased: Vec<Erasure> = Vec::new();
    let mut errors: Vec<serde_json::Value> = Vec::new();
    for q in &asked {
        match store.erase_worker(&q.nik, &actor, &reason).await {
            Ok(e) => {
                tracing::info!(worker.id = e.worker_id, "worker erased");
                if !json {
                    println!(
                        "worker {} erased: {} queued notice(s) cancelled, {} message(s), {} receipt(s), \
                         {} audit entries scrubbed",
                        e.worker_id, e.notices_cancelled, e.messages, e.receipts, e.audit_entries
                    );
                }
                erased.push(e);
            }
            Err(SupportError::NotFound(what)) => {
                let msg = format!("{}no {what}", place(q.line));
                eprintln!("error: {msg}");
                errors.push(serde_json::json!({ "line": q.line, "error": msg }));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{}erasing (nothing of this worker changed; {} erased before)",
                    place(q.line),
                    erased.len()
                )))
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "erased": erased, "errors": errors })
        );
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::ERROR)
    })
}
