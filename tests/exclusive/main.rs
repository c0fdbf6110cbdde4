//! Tests that need the machine or the process to themselves: PostgreSQL
//! restarted mid-campaign, the real Kannel stopped mid-campaign, worker
//! processes killed at random, and the process-wide metrics counted
//! exactly. They cannot share a process (or a moment) with the other
//! tests, so they live in their own binary, run one at a time ([`SERIAL`]),
//! and cargo runs this binary after or before `it`, never beside it.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod chaos;
mod db_faults;
mod kannel_outage;
mod metrics;

/// One test of this binary at a time: each stops, restarts or starves
/// something the others need.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
