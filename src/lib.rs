//! pedulicovid: gets the PEDULICOVID vaccination-registration SMS to every
//! validated, eligible health worker, and finds those it did not reach.
//!
//! # Layout
//! In data-flow order:
//! - [`config`]: typed settings (defaults, TOML file, `PEDULICOVID__*` env).
//! - [`domain`]: parsed types: `Nik`, `Msisdn` (+ operator), `ProvinceCode`
//!   (+ time zone), `SmsText` (GSM-7/UCS-2, segments); send windows; the
//!   rules for extra notices (limits, eligibility) and search queries.
//! - [`store`]: the one place SQL lives; SQLite and PostgreSQL.
//! - [`registry`]: import of the One Data CSV export, row-level rejections.
//! - [`campaign`]: create a campaign and enqueue its audience.
//! - [`render`]: Indonesian SMS templates (tera).
//! - [`dispatch`]: the worker: claim → render → window → rate limit → send → record.
//! - [`gateway`]: carrier dialects behind one trait (Kannel, Jasmin, JSON).
//! - [`status`]: the one-way message status machine and flag reasons.
//! - [`export`]: the non-recipient CSV (outreach list), formula-guarded.
//! - [`http`]: receipt callbacks and the HTTP surface.
//! - [`metrics`]: counters and the send-latency histogram.
//! - [`app`]: wiring: `run`, `serve`, `worker`; [`demo`] and [`cli`] on top.
//!
//! # Beside it
//! The tools are crates of their own in this workspace, so the product
//! library holds none of their code:
//! - `crates/carrier-sim` ([`carrier_sim`]): the carrier simulator, which
//!   this crate depends on for `demo`, `carrier-sim`, a gateway with
//!   `dialect = "simulator"`, and the tests; it never depends on this crate.
//! - `crates/bench` (`pedulicovid-bench`): the benchmarks, written against
//!   this crate's public API only.

// Settings and parsed domain types first, then the flow of a notice.
pub mod config;
pub mod secret;
pub mod domain;
pub mod store;
pub mod registry;
pub mod campaign;
pub mod render;
pub mod dispatch;
pub mod gateway;
pub mod status;
pub mod export;
pub mod http;
pub mod metrics;
pub mod app;
pub mod demo;
pub mod cli;
