//! pedulicovid: gets the PEDULICOVID vaccination-registration SMS to every
//! validated, eligible health worker, and finds those it did not reach.
//!
//! # Layout
//! In data-flow order:
//! - [`config`]: typed settings (defaults, TOML file, `PEDULICOVID__*` env);
//!   [`secret`] keeps passwords and keys out of `Debug` and logs.
//! - [`domain`]: parsed types: `Nik`, `Msisdn` (+ operator), `ProvinceCode`
//!   (+ time zone), `SmsText` (GSM-7/UCS-2, segments), `FreeText`; send
//!   windows; the rules for extra notices (limits, eligibility) and search
//!   queries. No I/O.
//! - [`store`]: the one place SQL lives, SQLite and PostgreSQL side by side,
//!   one module per thing stored (workers, campaigns, queue, notices,
//!   receipts, flags, re-registration, access, audit, gateways). It runs
//!   queries; it decides nothing the domain or [`status`] decides.
//! - [`registry`]: import of the One Data CSV export, row-level rejections.
//! - [`campaign`]: create a campaign and enqueue its audience.
//! - [`render`]: Indonesian SMS templates (tera).
//! - [`dispatch`]: the worker: claim → render → window → rate limit → send → record.
//! - [`gateway`]: carrier dialects behind one trait: `dialect` builds a
//!   gateway from its settings, `http` sends once for all, and each of
//!   `kannel`, `jasmin`, `json` supplies only its request and answer.
//! - [`status`]: the one-way message status machine and flag reasons.
//! - [`export`]: the non-recipient CSV (outreach list), formula-guarded;
//!   [`outreach`]: what became of each flag, back from the outreach team (CSV).
//! - [`http`]: receipt callbacks, the APIs and the support UI.
//! - [`metrics`]: counters and the send-latency histogram.
//! - [`app`]: wiring: `run`, `serve`, `worker`; [`demo`] and [`cli`] (one
//!   file per command group) on top.
//!
//! No module but [`store`] names a table, and [`store`] calls none of the
//! modules after it (it shares their types: a parsed receipt, a status).
//!
//! # Beside it
//! The tools are crates of their own in this workspace, so the product
//! library holds none of their code:
//! - `crates/carrier-sim` ([`carrier_sim`]): the carrier simulator, which
//!   this crate depends on for `demo`, `carrier-sim`, a gateway with
//!   `dialect = "simulator"`, and the tests; it never depends on this crate.
//! - `crates/bench` (`pedulicovid-bench`): the benchmarks, written against
//!   this crate's public API only.

/// The git commit this binary was built from (`build.rs`; `unknown`
/// outside a checkout unless `PEDULICOVID_COMMIT` was set at build time).
pub const BUILD_COMMIT: &str = env!("PEDULICOVID_COMMIT");

// Settings and parsed domain types first, then the flow of a notice.
pub mod allocator;
pub mod config;
pub mod secret;
pub mod domain;
pub mod store;
pub mod registry;
pub mod suppression;
pub mod campaign;
pub mod render;
pub mod dispatch;
pub mod gateway;
pub mod status;
pub mod export;
pub mod outreach;
pub mod http;
pub mod metrics;
pub mod app;
pub mod demo;
pub mod cli;
