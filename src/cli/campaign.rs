//! `pedulicovid campaign …`: create, schedule, pause, resume, cancel, list and
//! show campaigns.

use std::process::ExitCode;

use clap::Subcommand;

use super::{cli_actor, open_store};
use crate::campaign::{fmt_wib, CampaignRequest, Pace, Window};
use crate::config::Settings;
use crate::render::Renderer;
use crate::store::{CampaignAction, CreatedCampaign, RescheduledCampaign, Store};

#[derive(Debug, Subcommand)]
pub(super) enum CampaignCmd {
    /// Validate the template and enqueue every eligible, validated worker.
    Create {
        /// A name operators recognise, e.g. "Undangan nakes tahap 1".
        #[arg(long)]
        name: String,
        /// A template in templates/sms/ without `.tera`, e.g. undangan_registrasi.
        #[arg(long)]
        template: String,
        /// Start time: RFC 3339, or "YYYY-MM-DD HH:MM" in WIB. Default: now.
        #[arg(long)]
        at: Option<String>,
        /// Local send window, applied in each recipient's time zone.
        #[arg(long, default_value = "08:00-20:00")]
        window: String,
        /// Only these province codes (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        province: Vec<String>,
        /// Only these professions (repeat or comma-separate; case-insensitive).
        #[arg(long, value_delimiter = ',')]
        profession: Vec<String>,
        /// Unsent by then: expired and flagged `deadline` (same formats as --at).
        #[arg(long)]
        deadline: Option<String>,
    },
    /// Move the start of a campaign that has not finished (audited): its
    /// queued messages become due when each recipient's window opens after
    /// the new time. A paused campaign stays paused.
    Schedule {
        /// Campaign id (from `campaign list`).
        id: i64,
        /// New start: RFC 3339, or "YYYY-MM-DD HH:MM" in WIB (as for create).
        #[arg(long)]
        at: String,
    },
    /// Stop sending (effective within a second; the batch in flight finishes).
    Pause {
        /// Campaign id.
        id: i64,
        /// Why (shown with the campaign and kept in the audit trail).
        #[arg(long, default_value = "paused by operator")]
        reason: String,
    },
    /// Continue a paused campaign (nothing already sent is sent again);
    /// it is `scheduled` again while its start is still ahead.
    Resume {
        /// Campaign id.
        id: i64,
    },
    /// End every unsent message `cancelled`.
    Cancel {
        /// Campaign id.
        id: i64,
    },
    /// All campaigns.
    List,
    /// One campaign with counts per status, open flags per reason,
    /// throughput and ETA.
    Show {
        /// Campaign id.
        id: i64,
    },
}

pub(super) async fn run(s: &Settings, c: &CampaignCmd, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match c {
        CampaignCmd::Create {
            name,
            template,
            at,
            window,
            province,
            profession,
            deadline,
        } => {
            let renderer = Renderer::load(Some(std::path::Path::new(&s.sms.templates_dir)))?;
            let req = CampaignRequest {
                name: name.clone(),
                template: template.clone(),
                at: at
                    .as_deref()
                    .map(crate::campaign::parse_time)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--at: {e}"))?,
                window: window
                    .parse::<Window>()
                    .map_err(|e| anyhow::anyhow!("--window: {e}"))?,
                provinces: province.clone(),
                professions: profession.clone(),
                created_by: cli_actor(),
                deadline: deadline
                    .as_deref()
                    .map(crate::campaign::parse_time)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--deadline: {e}"))?,
            };
            // Audited (`campaign.create`) in the creating transaction.
            let CreatedCampaign {
                campaign: c,
                enqueued: n,
                suppressed,
            } = crate::campaign::create(&store, &renderer, s.sms.max_segments, req).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"campaign": c, "enqueued": n, "suppressed": suppressed})
                );
            } else {
                println!(
                    "campaign {} {:?}: {} messages enqueued{}, starts {}",
                    c.id,
                    c.name,
                    n,
                    if suppressed > 0 {
                        format!(" ({suppressed} suppressed worker(s) left out)")
                    } else {
                        String::new()
                    },
                    fmt_wib(c.scheduled_at)
                );
            }
        }
        CampaignCmd::Schedule { id, at } => {
            let at =
                crate::campaign::parse_time(at.trim()).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
            let RescheduledCampaign {
                campaign: c,
                retimed: n,
            } = crate::campaign::reschedule(&store, *id, at, &cli_actor()).await?;
            if json {
                println!("{}", serde_json::json!({"campaign": c, "retimed": n}));
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "campaign {} is {}, starts {}; {n} queued message(s) re-timed",
                c.id,
                c.status,
                fmt_wib(c.scheduled_at)
            );
        }
        CampaignCmd::Pause { id, reason } => {
            control(&store, *id, CampaignAction::Pause, reason, json).await?
        }
        CampaignCmd::Resume { id } => {
            control(&store, *id, CampaignAction::Resume, "", json).await?
        }
        CampaignCmd::Cancel { id } => {
            control(&store, *id, CampaignAction::Cancel, "", json).await?
        }
        CampaignCmd::List => {
            let all = store.campaigns().await?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                println!(
                    "{:>4}  {:<10} {:>9}  {:<22} {:<11} name",
                    "id", "status", "enqueued", "starts", "window"
                );
                for c in all {
                    let w = Window {
                        start_min: c.window_start,
                        end_min: c.window_end,
                    };
                    println!(
                        "{:>4}  {:<10} {:>9}  {:<22} {:<11} {} ({})",
                        c.id,
                        c.status,
                        c.enqueued,
                        fmt_wib(c.scheduled_at),
                        w.to_string(),
                        c.name,
                        c.template
                    );
                }
            }
        }
        CampaignCmd::Show { id } => {
            let c = store.campaign(*id).await?;
            let r = store.campaign_report(*id).await?;
            let pace = Pace::of(&store, &c, &r).await?;
            let outreach = store.outreach_report(*id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"campaign": c, "report": r, "pace": pace, "outreach": outreach})
                );
            } else {
                println!(
                    "campaign {} {:?} [{}], template {}, starts {}",
                    c.id,
                    c.name,
                    c.status,
                    c.template,
                    fmt_wib(c.scheduled_at)
                );
                println!(
                    "  enqueued {}, sent {}, suppressed {}, segments per message {}",
                    r.enqueued,
                    r.sent,
                    r.suppressed,
                    r.segments_per_message
                        .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"))
                );
                println!(
                    "  throughput {:.2}/s (last {} s), ETA {}",
                    pace.throughput_per_sec,
                    crate::campaign::THROUGHPUT_WINDOW_SECS,
                    match (pace.eta_seconds, &pace.eta_wib) {
                        (Some(secs), Some(at)) => format!("{at} (in {:.0} s)", secs),
                        _ => "-".into(),
                    }
                );
                for (k, v) in &r.by_status {
                    if *v > 0 {
                        println!("  {k:<12} {v}");
                    }
                }
                if !r.flagged_by_reason.is_empty() {
                    println!("  flagged (open):");
                    for (k, v) in &r.flagged_by_reason {
                        println!("    {k:<18} {v}");
                    }
                }
                super::outcomes::print_report(&outreach);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn control(
    store: &Store,
    id: i64,
    action: CampaignAction,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    // Audited in the transaction that makes the change.
    let c = store
        .control_campaign(id, action, reason, &cli_actor())
        .await?;
    let r = store.campaign_report(id).await?;
    if json {
        println!("{}", serde_json::json!({"campaign": c, "report": r}));
        return Ok(());
    }
    println!(
        "campaign {id} is now {}{}; {} queued, {} cancelled",
        c.status,
        c.pause_reason
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        r.status(crate::status::Status::Queued),
        r.status(crate::status::Status::Cancelled)
    );
    Ok(())
}
