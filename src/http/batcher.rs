//! Group commit for receipts. Carriers send receipts in bursts of hundreds of
//! concurrent callbacks; one transaction each would make the database's
//! commit rate the ceiling. Each handler hands its receipt to a bounded
//! queue and waits; a few batcher tasks take whatever is queued (up to
//! `max_batch`), store and apply it in one transaction
//! ([`Store::apply_receipts`]) and answer every waiting handler. A handler
//! still answers the carrier only after its receipt is committed, so nothing
//! acknowledged is ever lost, and a full queue slows callers down instead of
//! growing without bound.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::warn;

use crate::metrics::METRICS;
use crate::store::{Backend, IncomingReceipt, KeptConnection, ReceiptEffect, Store};

type Reply = oneshot::Sender<Result<ReceiptEffect, String>>;

/// The handlers' side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptBatcher {
    tx: mpsc::Sender<(IncomingReceipt, Reply)>,
}

impl ReceiptBatcher {
    /// Batcher tasks when `http.receipt_batchers` is 0. SQLite has one
    /// writer: one batcher. PostgreSQL: two, so one batch is being built
    /// and sent while the other waits on its commit. At Kannel's 512
    /// callbacks in flight two took the same 18–19 k callbacks/s of pure
    /// ingest as three, in a third fewer transactions, for less CPU a
    /// receipt on both sides; one took 12 % less (BENCHMARKS.md, eighth
    /// pass).
    pub fn default_tasks(backend: Backend) -> usize {
        match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        }
    }

    /// Starts `tasks` batcher tasks. They stop when every handle is dropped.
    pub fn spawn(store: Store, tasks: usize, max_batch: usize, queue: usize) -> ReceiptBatcher {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let keepers = keepers(store.pool_size());
        for task in 0..tasks.max(1) {
            let kept = (task < keepers).then(KeptConnection::default);
            tokio::spawn(run(store.clone(), rx.clone(), max_batch.max(1), kept));
        }
        ReceiptBatcher { tx }
    }

    /// Stores and applies one receipt; resolves once it is committed.
    pub async fn submit(&self, r: IncomingReceipt) -> Result<ReceiptEffect, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((r, reply))
            .await
            .map_err(|_| "receipt queue closed".to_string())?;
        // Depth right after our send (ours included): `bench receipts`
        // shows the queue stays within its bound. Written only when it is a
        // new peak, so callbacks do not all write one shared counter.
        let depth = (self.tx.max_capacity() - self.tx.capacity()) as u64;
        let peak = &METRICS.receipt_queue_peak;
        if depth > peak.load(Ordering::Relaxed) {
            peak.fetch_max(depth, Ordering::Relaxed);
        }
        answer
            .await
            .map_err(|_| "receipt batcher stopped".to_string())?
    }
}

type Queue = Arc<Mutex<mpsc::Receiver<(IncomingReceipt, Reply)>>>;

/// Batchers that may keep a connection ([`KeptConnection`]): half of a
/// pool of `pool_size`; the others take one from the pool for each batch.
/// However many batchers are configured, a steady stream of callbacks
/// never holds the whole pool, which the dispatcher, the API and
/// housekeeping share with them.
fn keepers(pool_size: u32) -> usize {
    pool_size as usize / 2
}

/// How long a batcher keeps its database connection without a batch to
/// apply before giving it back to the pool ([`KeptConnection`]).
const KEEP_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits for the next receipt and takes whatever else is queued, up to
/// `max_batch`; none once every handle is dropped. Cancel-safe: it waits
/// only on the lock and on `recv`.
async fn next_batch(rx: &Queue, max_batch: usize) -> Option<Vec<(IncomingReceipt, Reply)>> {
    let mut rx = rx.lock().await;
    let mut jobs = vec![rx.recv().await?];
    while jobs.len() < max_batch {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// One batcher: `kept` when it may keep a connection between batches
/// (see [`keepers`]).
async fn run(store: Store, rx: Queue, max_batch: usize, mut kept: Option<KeptConnection>) {
    // Kept while batches keep coming, given back after KEEP_IDLE without
    // one (and by the store after store::KEEP_AT_MOST), discarded after a
    // failure.
    loop {
        let next = match &mut kept {
            Some(k) if k.is_kept() => {
                match tokio::time::timeout(KEEP_IDLE, next_batch(&rx, max_batch)).await {
                    Ok(next) => next,
                    Err(_) => {
                        k.release();
                        next_batch(&rx, max_batch).await
                    }
                }
            }
            _ => next_batch(&rx, max_batch).await,
        };
        let Some(jobs) = next else { return };
        METRICS.receipt_batches.fetch_add(1, Ordering::Relaxed);
        METRICS
            .receipt_batch_rows
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let (batch, replies): (Vec<IncomingReceipt>, Vec<Reply>) = jobs.into_iter().unzip();
        let mut result = store.apply_receipts_kept(kept.as_mut(), &batch).await;
        for attempt in 1..=3u32 {
            let Err(e) = &result else { break };
            if let Some(k) = &mut kept {
                k.discard();
            }
            // A transient failure (lock timeout, a restarting database) is
            // worth a few more tries before the carriers are told to retry.
            warn!(error = %e, size = batch.len(), attempt, "receipt batch failed; retrying");
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            result = store.apply_receipts_kept(kept.as_mut(), &batch).await;
        }
        if let (Err(_), Some(k)) = (&result, &mut kept) {
            k.discard();
        }
        match result {
            Ok(applied) => {
                record_lags(&batch, &applied.final_lags_ms);
                for (reply, effect) in replies.into_iter().zip(applied.effects) {
                    let _ = reply.send(Ok(effect));
                }
            }
            Err(e) => {
                warn!(error = %e, size = batch.len(), "receipt batch failed; carriers will retry");
                for reply in replies {
                    let _ = reply.send(Err("storage unavailable".into()));
                }
            }
        }
    }
}

/// Hand-over → final receipt, into each gateway's receipt-lag histogram.
/// The gateway's slot is looked up once per gateway in the batch, not per
/// receipt.
fn record_lags(batch: &[IncomingReceipt], lags_ms: &[Option<i64>]) {
    let mut slot: Option<std::sync::Arc<crate::metrics::GatewayMetrics>> = None;
    for (r, lag) in batch.iter().zip(lags_ms) {
        let Some(ms) = lag else { continue };
        let m = match &slot {
            Some(m) if m.name == r.gateway => m.clone(),
            _ => {
                let m = METRICS.gateways.get(&r.gateway);
                slot = Some(m.clone());
                m
            }
        };
        m.receipt_lag.record(std::time::Duration::from_millis(
            u64::try_from(*ms).unwrap_or(0),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batchers_never_keep_the_whole_pool() {
        for pool in 1..=64 {
            assert!(keepers(pool) < pool as usize, "pool of {pool}");
        }
        // The default batchers on PostgreSQL keep theirs (store::connect's
        // pool of 8).
        assert!(keepers(8) >= ReceiptBatcher::default_tasks(Backend::Postgres));
    }
}
