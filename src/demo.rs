//! `pedulicovid demo`: a newcomer's first run. A fresh SQLite database, a
//! synthetic registry covering every province and profession (with a few
//! deliberately bad rows), the built-in simulator and the HTTP server
//! in-process, and one whole campaign to completion with a report.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::app::{App, Parts};
use crate::campaign::{self, CampaignRequest, Window};
use crate::config::{GatewaySettings, Settings};
use crate::domain::ProvinceCode;
use crate::registry::{self, COLUMNS};
use crate::status::Status;
use carrier_sim::SimStats;

/// The 13 health-workforce groups of the 2014 law (UU 36/2014).
pub const PROFESSIONS: [&str; 13] = [
    "dokter",
    "dokter gigi",
    "perawat",
    "bidan",
    "apoteker",
    "tenaga kesehatan masyarakat",
    "tenaga kesehatan lingkungan",
    "ahli gizi",
    "fisioterapis",
    "tenaga keteknisian medis",
    "tenaga teknik biomedika",
    "psikolog klinis",
    "tenaga kesehatan tradisional",
];

const GIVEN: [&str; 16] = [
    "Siti",
    "Dewi",
    "Agus",
    "Budi",
    "Sri",
    "Nur",
    "Ahmad",
    "Putri",
    "Rina",
    "Eko",
    "Yohanes",
    "Made",
    "Ketut",
    "Ayu",
    "Fransiska",
    "Muhammad",
];
const FAMILY: [&str; 16] = [
    "Rahayu",
    "Lestari",
    "Santoso",
    "Wibowo",
    "Hidayat",
    "Saragih",
    "Nainggolan",
    "Wati",
    "Pratama",
    "Kurniawan",
    "Manurung",
    "Setiawan",
    "Ma'ruf",
    "Sitompul",
    "Wonda",
    "Tanjung",
];
const PREFIXES: [&str; 12] = [
    "811", "812", "813", "821", "852", "814", "856", "817", "859", "838", "896", "881",
];

/// A progress bar on a terminal, nothing otherwise (the demo's, and the
/// `import` command's through `cli`).
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {percent:>3}% {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Writes a synthetic One Data export of `n` workers (plus bad rows) and
/// returns how many bad rows it holds.
pub fn write_registry(out: impl Write, n: usize, seed: u64) -> anyhow::Result<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS)?;
    let provinces = ProvinceCode::all();
    for i in 0..n {
        let p = provinces[i % provinces.len()];
        let regency = rng.gen_range(1..=20);
        let district = rng.gen_range(1..=30);
        let mut day = rng.gen_range(1..=28);
        if rng.gen_bool(0.6) {
            day += 40; // women: day + 40
        }
        let month = rng.gen_range(1..=12);
        let year = rng.gen_range(60..=99);
        let serial = (i / provinces.len()) % 9999 + 1;
        let nik = format!("{p}{regency:02}{district:02}{day:02}{month:02}{year:02}{serial:04}");
        let name = format!(
            "{} {}",
            GIVEN[rng.gen_range(0..GIVEN.len())],
            FAMILY[rng.gen_range(0..FAMILY.len())]
        );
        // Unique numbers: the index is in the subscriber part.
        let prefix = PREFIXES[i % PREFIXES.len()];
        let phone = format!("0{prefix}{:08}", i * 7 + rng.gen_range(0..7));
        let profession = PROFESSIONS[(i / 3) % PROFESSIONS.len()];
        let validated = !rng.gen_bool(0.03);
        let eligible = !rng.gen_bool(0.02);
        w.write_record([
            nik,
            name,
            phone,
            profession.to_string(),
            format!("FKS{p}{:05}", rng.gen_range(1..99999)),
            format!("{p}{regency:02}"),
            p.to_string(),
            validated.to_string(),
            eligible.to_string(),
        ])?;
    }
    // The kind of rows a real export contains, one of each.
    let bad: [[&str; 9]; 6] = [
        [
            "317101450590001",
            "Nik Pendek",
            "081234500001",
            "perawat",
            "F1",
            "3171",
            "31",
            "1",
            "1",
        ],
        [
            "3171014505900002",
            "Nomor Rumah",
            "021-5550123",
            "bidan",
            "F1",
            "3171",
            "31",
            "1",
            "1",
        ],
        [
            "3171014505900003",
            "Provinsi Salah",
            "081234500003",
            "dokter",
            "F1",
            "9971",
            "99",
            "1",
            "1",
        ],
        [
            "3171014505900004",
            "",
            "081234500004",
            "apoteker",
            "F1",
            "3171",
            "31",
            "1",
            "1",
        ],
        [
            "3171014505900005",
            "Regensi Lain",
            "081234500005",
            "perawat",
            "F1",
            "3271",
            "31",
            "1",
            "1",
        ],
        [
            "3171014505900006",
            "Belum Jelas",
            "081234500006",
            "perawat",
            "F1",
            "3171",
            "31",
            "mungkin",
            "1",
        ],
    ];
    for row in bad {
        w.write_record(row)?;
    }
    w.flush()?;
    Ok(bad.len())
}

/// What the demo prints.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub backend: &'static str,
    pub registry_rows: u64,
    pub rejected_rows: u64,
    pub enqueued: i64,
    pub sent: i64,
    pub delivered: i64,
    /// Final, not delivered: undelivered, expired, rejected, failed, unknown.
    pub failed: i64,
    pub flagged: i64,
    pub flagged_by_reason: BTreeMap<String, i64>,
    pub by_status: BTreeMap<String, i64>,
    /// Messages still queued, sending or awaiting a receipt (0 when done).
    pub in_flight: i64,
    pub duration_s: f64,
    pub messages_per_s: f64,
    pub simulator: Option<SimStats>,
}

/// Runs the demo. An empty `database_url` means a fresh temporary SQLite file.
pub async fn run(
    mut s: Settings,
    workers: usize,
    seed: u64,
    json: bool,
) -> anyhow::Result<DemoReport> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    if s.database_url.is_empty() {
        s.database_url = format!("sqlite://{}", dir.path().join("demo.db").display());
    }
    s.http.listen = "127.0.0.1:0".into();
    s.http.public_url = None;
    s.simulator.listen = "127.0.0.1:0".into();
    s.simulator.seed = Some(seed);
    s.simulator.receipt_delay_ms = 20;
    s.simulator.receipt_jitter_ms = 30;
    // The demo sends to the built-in simulator only, asked for by name;
    // configured gateways are left out (a demo never reaches a carrier).
    s.gateways = vec![GatewaySettings::simulator("sim")];
    s.worker.backoff_initial_ms = 200;

    let say = |m: &str| {
        if !json {
            eprintln!("{m}");
        }
    };
    let start = Instant::now();
    let csv_path = dir.path().join("registry.csv");
    let bad = write_registry(
        std::io::BufWriter::new(crate::export::create_private_file(&csv_path)?),
        workers,
        seed,
    )?;
    say(&format!(
        "synthetic registry: {workers} health workers in {} provinces, {bad} deliberately bad rows",
        ProvinceCode::all().len()
    ));

    let app = App::start(s.clone(), Parts::ALL).await?;
    let size = std::fs::metadata(&csv_path)?.len();
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(size, "import")
    };
    let imported = registry::import_csv(
        &app.store,
        std::io::BufReader::new(std::fs::File::open(&csv_path)?),
        |p| bar.set_position(p.min(size)),
    )
    .await?;
    bar.finish_and_clear();
    say(&format!(
        "imported {} workers, rejected {} rows:",
        imported.accepted, imported.rejected_rows
    ));
    for r in &imported.rejections {
        say(&format!("  line {}: {}: {}", r.line, r.field, r.reason));
    }

    let t0 = Instant::now();
    let crate::store::CreatedCampaign {
        campaign: c,
        enqueued,
        ..
    } = campaign::create(
        &app.store,
        &app.renderer,
        s.sms.max_segments,
        CampaignRequest {
            name: "Demo: undangan registrasi vaksinasi nakes".into(),
            template: "undangan_registrasi".into(),
            at: None,
            // The demo runs whatever the hour (the 2021 blast started at
            // midnight); real campaigns default to 08:00-20:00 local time.
            window: "00:00-24:00"
                .parse::<Window>()
                .map_err(anyhow::Error::msg)?,
            provinces: vec![],
            professions: vec![],
            created_by: "demo".into(),
            deadline: None,
        },
    )
    .await?;
    say(&format!(
        "campaign {}: {enqueued} eligible and validated workers enqueued",
        c.id
    ));

    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(enqueued, "sending")
    };
    let mut last_change = Instant::now();
    let mut last_done = -1;
    let report = loop {
        let r = app.store.campaign_report(c.id).await?;
        let done = r.enqueued - r.in_flight();
        bar.set_position(done.max(0) as u64);
        if r.in_flight() == 0 {
            break r;
        }
        if done != last_done {
            last_done = done;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(60) {
            bar.finish_and_clear();
            bail!(
                "no progress for 60 s with {} messages in flight",
                r.in_flight()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    let campaign_secs = t0.elapsed().as_secs_f64();
    let sim = app.simulator.as_ref().map(|h| h.stats());
    let backend = app.store.backend().as_str();
    app.stop(Duration::from_secs(10)).await;

    let by_status: BTreeMap<String, i64> = report.by_status.iter().cloned().collect();
    let failed = [
        Status::Undelivered,
        Status::Expired,
        Status::Rejected,
        Status::Failed,
        Status::Unknown,
    ]
    .iter()
    .map(|st| report.status(*st))
    .sum();
    let out = DemoReport {
        backend,
        registry_rows: imported.rows,
        rejected_rows: imported.rejected_rows,
        enqueued: report.enqueued,
        sent: report.sent,
        delivered: report.status(Status::Delivered),
        failed,
        flagged: report.flagged(),
        flagged_by_reason: report.flagged_by_reason.iter().cloned().collect(),
        by_status,
        in_flight: report.in_flight(),
        duration_s: round2(start.elapsed().as_secs_f64()),
        messages_per_s: round2(report.enqueued as f64 / campaign_secs.max(1e-9)),
        simulator: sim,
    };
    if json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        print_report(&out);
    }
    Ok(out)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn print_report(r: &DemoReport) {
    println!();
    println!("PEDULICOVID demo report ({})", r.backend);
    println!(
        "  registry rows     {:>8}  (rejected {})",
        r.registry_rows, r.rejected_rows
    );
    println!("  enqueued          {:>8}", r.enqueued);
    println!("  sent              {:>8}", r.sent);
    println!("  delivered         {:>8}", r.delivered);
    println!("  not delivered     {:>8}", r.failed);
    for (k, v) in &r.by_status {
        if *v > 0 && k != "delivered" {
            println!("    {k:<16}{v:>8}");
        }
    }
    println!(
        "  flagged           {:>8}  (non-recipients for the chatbot)",
        r.flagged
    );
    for (k, v) in &r.flagged_by_reason {
        println!("    {k:<16}{v:>8}");
    }
    println!("  duration          {:>8.2} s", r.duration_s);
    println!("  throughput        {:>8.0} messages/s", r.messages_per_s);
}
