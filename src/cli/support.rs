//! `pedulicovid support …`: the help desk's search, timeline and resend.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{arg_or_stdin, open_store};
use crate::campaign::fmt_wib;
use crate::config::Settings;
use crate::domain::notice::FreeText;
use crate::store::{SearchResults, Store};

#[derive(Debug, Subcommand)]
pub(super) enum SupportCmd {
    /// Find workers by full NIK, phone number or part of a name (masked output).
    Search {
        /// A full NIK, a phone number in any common format, or 3+ letters of a
        /// name; `-` reads it from standard input (keeps a NIK out of `ps`
        /// and shell history).
        query: String,
    },
    /// Everything that happened to one worker, oldest first.
    Timeline {
        /// The worker's full NIK; `-` reads it from standard input (keeps it
        /// out of `ps` and shell history).
        nik: String,
    },
    /// Queue the worker's notice again (audited; at most
    /// `limits.resends_per_number_per_day`, default 3, per number a day).
    Resend {
        /// The worker's full NIK; `-` reads it from standard input (keeps it
        /// out of `ps` and shell history).
        nik: String,
        /// Why (kept in the audit trail), e.g. "called the help desk".
        #[arg(long)]
        reason: String,
        /// The staff member's name, for the audit trail.
        #[arg(long)]
        staff: String,
    },
}

async fn worker_id_by_nik(store: &Store, nik: &str) -> anyhow::Result<i64> {
    let nik = arg_or_stdin(nik, "NIK")?;
    let nik = crate::domain::Nik::parse(&nik).map_err(|e| anyhow::anyhow!("NIK {e}"))?;
    store
        .worker_by_nik(nik.as_str())
        .await?
        .map(|w| w.id)
        .with_context(|| format!("no worker with NIK {}", nik.masked()))
}

pub(super) async fn run(s: &Settings, c: &SupportCmd, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match c {
        SupportCmd::Search { query } => {
            let query = arg_or_stdin(query, "query")?;
            let SearchResults {
                kind,
                workers: rows,
            } = store.search_workers(&query).await?;
            if json {
                println!("{}", serde_json::json!({"kind": kind, "results": rows}));
            } else {
                println!(
                    "{:>8} {:<16} {:<14} {:<4} {:<10} {:>5} {:<11} name",
                    "id", "nik", "phone", "prov", "valid/elig", "flags", "last"
                );
                for r in &rows {
                    println!(
                        "{:>8} {:<16} {:<14} {:<4} {:<10} {:>5} {:<11} {}",
                        r.id,
                        r.nik_masked,
                        r.phone_masked,
                        r.province_code,
                        format!("{}/{}", yes_no(r.validated), yes_no(r.eligible)),
                        r.open_flags,
                        r.last_status.as_deref().unwrap_or("-"),
                        r.name_masked
                    );
                }
                eprintln!(
                    "{} match(es) by {:?}{}",
                    rows.len(),
                    kind,
                    if rows.len() as i64 >= store.limits().search_rows {
                        " (limit reached: narrow the query)"
                    } else {
                        ""
                    }
                );
            }
        }
        SupportCmd::Timeline { nik } => {
            let id = worker_id_by_nik(&store, nik).await?;
            let t = store.timeline(id).await?;
            if json {
                println!("{}", serde_json::to_string(&t)?);
            } else {
                print_timeline(&t);
            }
        }
        SupportCmd::Resend { nik, reason, staff } => {
            let id = worker_id_by_nik(&store, nik).await?;
            let n = store
                .resend(id, &FreeText::staff(staff)?, &FreeText::reason(reason)?)
                .await?;
            if json {
                println!("{}", serde_json::json!({ "queued": n }));
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "message {} (generation {}) queued in campaign {} {:?} to {}, due {}",
                n.message_id,
                n.generation,
                n.campaign_id,
                n.campaign_name,
                n.phone_masked,
                n.next_attempt_wib
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A worker's timeline as text, every event in time order.
fn print_timeline(t: &crate::store::Timeline) {
    let w = &t.worker;
    println!(
        "worker {}: {} NIK {} phone {} province {} {} (validated {}, eligible {}), {} open flag(s)",
        w.id,
        w.name_masked,
        w.nik_masked,
        w.phone_masked,
        w.province_code,
        w.profession,
        yes_no(w.validated),
        yes_no(w.eligible),
        w.open_flags
    );
    let mut events: Vec<(i64, String)> = vec![];
    for m in &t.messages {
        events.push((
            m.created_at,
            format!(
                "message {} queued: campaign {} {:?}, generation {}, to {} (now {}, {} attempt(s){})",
                m.id,
                m.campaign_id,
                m.campaign_name,
                m.generation,
                m.phone_masked,
                m.status,
                m.attempts,
                m.last_error
                    .as_deref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ),
        ));
        for a in &m.attempt_log {
            events.push((
                a.at,
                format!(
                    "  message {} attempt {} via {}: {}{}",
                    m.id,
                    a.attempt,
                    a.gateway.as_deref().unwrap_or("-"),
                    a.outcome,
                    a.detail
                        .as_deref()
                        .filter(|d| !d.is_empty())
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            ));
        }
        for r in &m.receipts {
            events.push((
                r.received_at,
                format!(
                    "  message {} receipt from {}: {} (raw {}, {})",
                    m.id,
                    r.gateway,
                    r.outcome.as_deref().unwrap_or("-"),
                    r.raw_status.as_deref().unwrap_or("-"),
                    r.effect.as_deref().unwrap_or("-")
                ),
            ));
        }
    }
    for f in &t.flags {
        events.push((
            f.flagged_at,
            format!(
                "flag {} raised: {} (message {})",
                f.id, f.reason, f.message_id
            ),
        ));
        if let Some(at) = f.resolved_at {
            events.push((
                at,
                format!(
                    "flag {} resolved {} by {}{}",
                    f.id,
                    f.resolution.as_deref().unwrap_or("-"),
                    f.resolved_by.as_deref().unwrap_or("-"),
                    f.note
                        .as_deref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    for p in &t.phone_changes {
        events.push((
            p.changed_at,
            format!(
                "phone {} -> {} ({})",
                p.old_phone_masked.as_deref().unwrap_or("-"),
                p.new_phone_masked,
                p.source
            ),
        ));
    }
    for a in &t.audit {
        events.push((a.at, format!("{} by {}: {}", a.action, a.actor, a.detail)));
    }
    for x in &t.suppressions {
        events.push((
            x.added_at,
            format!(
                "suppressed ({} {}, {}) by {}{}",
                x.kind,
                x.value_masked,
                x.reason.as_str(),
                x.added_by,
                match (x.active, x.removed_at) {
                    (true, _) => " — in force".to_string(),
                    (false, Some(_)) =>
                        format!(" — removed by {}", x.removed_by.as_deref().unwrap_or("-")),
                    (false, None) => " — expired".to_string(),
                }
            ),
        ));
    }
    events.sort_by_key(|(at, _)| *at);
    for (at, line) in events {
        println!("{}  {line}", fmt_wib(at));
    }
}
