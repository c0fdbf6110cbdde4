//! The integration tests: one binary, one module per area, all sharing
//! [`common`] (test databases on both backends, settings, the Kannel
//! harness, worker processes).
//!
//! They run in parallel with each other (as cargo's default two threads on
//! this machine), against real SQLite files, a real PostgreSQL (a fresh
//! database per test) and the one real Kannel harness (each test matches
//! its own numbers at the SMSC). Tests that take a shared service down or
//! load the machine on purpose live in the `exclusive` binary instead.
//!
//! `cargo test --test it` runs them; `cargo test --test it routing::` one
//! module.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod api;
mod bad_input;
mod campaign_cli;
mod cli_conventions;
mod campaign_e2e;
mod dialects;
mod engine;
mod env_gateway;
mod erasure;
mod faults;
mod fuzz;
mod gateway_faults;
mod gateways_cli;
mod kannel_harness;
mod limits;
mod logs;
mod monitoring;
mod outcomes;
mod privacy;
mod readme;
mod receipts;
mod reregistration;
mod retention;
mod routing;
mod security;
mod shutdown;
mod sim_dialects;
mod support_search;
mod suppression;
mod tls;
mod ui_browser;
mod wakeup;
mod worker_metrics;
