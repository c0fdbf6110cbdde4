//! pedulicovid: gets the PEDULICOVID vaccination-registration SMS to every
//! validated, eligible health worker, and finds those it did not reach.
//!
//! # Layout
//! In data-flow order:
//! - [`config`]: typed settings (defaults, TOML file, `PEDULICOVID__*` env).
//! - [`domain`]: parsed types: `Nik`, `Msisdn` (+ operator), `ProvinceCode`
//!   (+ time zone), `SmsText` (GSM-7/UCS-2, segments).
//! - [`store`]: the one place SQL lives; SQLite and PostgreSQL.
//! - [`registry`]: import of the One Data CSV export, row-level rejections.
//! - [`campaign`]: create a campaign and enqueue its audience.
//! - [`render`]: Indonesian SMS templates (tera).
//! - [`dispatch`]: the worker: claim → render → window → rate limit → send → record.
//! - [`gateway`]: carrier dialects behind one trait (Kannel; the simulator speaks it).
//! - [`status`]: the one-way message status machine and flag reasons.
//! - [`http`]: receipt callbacks and the HTTP surface.
//! - [`simulator`]: the built-in carrier simulator.
//! - [`app`]: wiring: `run`, `serve`, `worker`, `demo`.

pub mod app;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod registry;
pub mod render;
pub mod secret;
pub mod simulator;
pub mod status;
pub mod store;
