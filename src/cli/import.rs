//! `pedulicovid import FILE`: the One Data CSV export into the registry.

use std::process::ExitCode;

use anyhow::Context;

use super::{open_store, progress_bar};
use crate::config::Settings;
use crate::registry;

/// Rejections `pedulicovid import` prints (without `--json`).
const SHOWN_REJECTIONS: usize = 20;

pub(super) async fn run(
    s: &Settings,
    file: &std::path::Path,
    rejects: Option<&std::path::Path>,
    revive_erased: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    let store = if revive_erased {
        store.reviving_erased(&super::cli_actor())
    } else {
        store
    };
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, "importing");
    // Rejections go to the rejects file as they are found; the report keeps
    // only what is printed, so memory does not grow with the bad rows.
    let mut out = match rejects {
        Some(path) => {
            let f = crate::export::create_private_file(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = csv::Writer::from_writer(std::io::BufWriter::new(f));
            w.write_record(["line", "field", "reason"])?;
            Some(w)
        }
        None => None,
    };
    let keep = if json {
        registry::KEPT_REJECTIONS
    } else {
        SHOWN_REJECTIONS
    };
    let report = registry::import_csv_streaming(
        &store,
        std::io::BufReader::new(f),
        keep,
        |r| match out.as_mut() {
            Some(w) => w
                .write_record([r.line.to_string().as_str(), &r.field, &r.reason])
                .map_err(std::io::Error::other),
            None => Ok(()),
        },
        |pos| bar.set_position(pos.min(size)),
    )
    .await?;
    bar.finish_and_clear();
    if let (Some(mut w), Some(path)) = (out, rejects) {
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} rows: {} accepted ({} new, {} updated, {} unchanged, {} phone changes), {} rejected",
            report.rows,
            report.accepted,
            report.counts.inserted,
            report.counts.updated,
            report.counts.unchanged,
            report.counts.phone_changes,
            report.rejected_rows
        );
        if report.counts.revived > 0 {
            println!(
                "{} erased worker(s) revived (--revive-erased)",
                report.counts.revived
            );
        }
        if report.counts.reregistrations_confirmed > 0 {
            println!(
                "{} pending chatbot re-registration(s) confirmed (notices queued to the new numbers)",
                report.counts.reregistrations_confirmed
            );
        }
        for r in report.rejections.iter().take(SHOWN_REJECTIONS) {
            println!("  line {}: {}: {}", r.line, r.field, r.reason);
        }
        if report.rejections_total > SHOWN_REJECTIONS as u64 {
            println!(
                "  … {} more{}",
                report.rejections_total - SHOWN_REJECTIONS as u64,
                if rejects.is_some() {
                    " (see the rejects file)"
                } else {
                    " (use --rejects FILE for all)"
                }
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
