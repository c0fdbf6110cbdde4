//! Wake-ups: telling idle dispatchers that work is due, instead of leaving
//! them to find it at their next poll.
//!
//! Whatever makes a message claimable now (an enqueue, a resend, a resume,
//! a re-registration) calls [`Store::wake_dispatchers`] after its commit.
//! That bumps a counter in this process, which every dispatch loop here
//! watches, and on PostgreSQL sends `NOTIFY pedulicovid_due`, which a
//! listener in every other process turns into the same bump. A loop that
//! waits on [`DueWatch::changed`] therefore claims within a round trip of
//! the commit, on any machine.
//!
//! Polling stays: a notification can be missed (the listener's connection
//! drops; a process starts after it was sent), a message becomes due by the
//! clock (a retry's back-off, a scheduled start) and SQLite has no
//! notifications between processes. A missed wake-up costs one poll
//! interval, never a message. Wake-ups carry no data and one bump stands for
//! any number of them, so a burst of enqueues is one claim round, not a
//! storm.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{Db, Store};

/// The PostgreSQL notification channel.
pub const DUE_CHANNEL: &str = "pedulicovid_due";

/// How long the listener waits before connecting again after a failure,
/// and how often it checks that a store is still there to wake.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// The process-wide wake-up counter a store and its clones share (one
/// `Arc`: a store is cloned per HTTP request), and whether the PostgreSQL
/// listener feeding it was started.
#[derive(Clone, Default)]
pub(crate) struct Wake(Arc<Shared>);

struct Shared {
    tx: watch::Sender<u64>,
    listening: OnceLock<()>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            tx: watch::channel(0).0,
            listening: OnceLock::new(),
        }
    }
}

impl Shared {
    fn bump(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What a dispatch loop waits on: [`DueWatch::changed`] returns once work
/// may have become due since the last call (at once if it already has).
pub struct DueWatch {
    rx: watch::Receiver<u64>,
}

impl DueWatch {
    /// Waits for the next wake-up. Never returns an error: the sender lives
    /// as long as any store clone, and without it this waits for ever (the
    /// caller's poll timer still runs).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Store {
    /// Wakes idle dispatchers here and, on PostgreSQL, in every other
    /// process. Call after the commit that made work due. Best effort: a
    /// failure is logged and polling finds the work.
    pub async fn wake_dispatchers(&self) {
        self.wake.0.bump();
        if let Db::Postgres(pool) = &self.db {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(DUE_CHANNEL)
                .execute(pool)
                .await
            {
                warn!(error = %e, "wake-up notification failed; dispatchers will poll");
            }
        }
    }

    /// How many wake-ups this process has seen: a dispatcher that notes it
    /// can tell later whether work may have become due since, wherever in
    /// the queue (its claim cursor, [`super::QueuePosition`]).
    pub fn wake_count(&self) -> u64 {
        *self.wake.0.tx.borrow()
    }

    /// A watch on wake-ups for one dispatch loop. On PostgreSQL the first
    /// call starts this process's listener (one connection, reconnecting on
    /// failure); every later call shares it.
    pub fn due_watch(&self) -> DueWatch {
        if let Db::Postgres(pool) = &self.db {
            self.wake.0.listening.get_or_init(|| {
                tokio::spawn(listen(pool.clone(), Arc::downgrade(&self.wake.0)));
            });
        }
        // A new receiver has seen the current value: it waits for the next.
        DueWatch {
            rx: self.wake.0.tx.subscribe(),
        }
    }
}

/// Turns `NOTIFY pedulicovid_due` into wake-ups while the store is open
/// (`store` not closed, some clone of it alive). The listener has a
/// connection of its own, outside the store's pool (closing the pool must
/// not wait for it, and it must not take a connection the work needs).
/// After a (re)connection it wakes the loops once: a notification may have
/// been sent while nobody listened.
async fn listen(store: sqlx::PgPool, wake: Weak<Shared>) {
    let options = (*store.connect_options()).clone();
    let done = || store.is_closed() || wake.strong_count() == 0;
    // False once no store is left to wake.
    let bump = || wake.upgrade().map(|w| w.bump()).is_some();
    loop {
        if done() {
            return;
        }
        let connected = async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options.clone())
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(DUE_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(l) => l,
            Err(e) => {
                if !done() {
                    warn!(error = %e, "wake-up listener cannot LISTEN; dispatchers poll meanwhile");
                }
                tokio::time::sleep(RELISTEN_AFTER).await;
                continue;
            }
        };
        debug!(channel = DUE_CHANNEL, "listening for wake-ups");
        if !bump() {
            return;
        }
        loop {
            // `try_recv` answers `None` for a lost connection (and
            // reconnects on the next call): wake the loops then too.
            match tokio::time::timeout(RELISTEN_AFTER, listener.try_recv()).await {
                Err(_elapsed) if done() => return,
                Err(_elapsed) => {}
                Ok(Ok(_)) => {
                    if !bump() {
                        return;
                    }
                }
                Ok(Err(_)) if done() => return,
                Ok(Err(e)) => {
                    warn!(error = %e, "wake-up listener failed; listening again");
                    tokio::time::sleep(RELISTEN_AFTER).await;
                    break;
                }
            }
        }
    }
}
