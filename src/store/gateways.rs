//! What the store keeps about each gateway: its generated callback secret
//! (`gateway_secrets`, with the previous one through a rotation) and its
//! last recorded circuit-breaker state (`gateway_health`).

use super::{audit_tx, now_ms, random_token, with_pool, BeginWrite, Result, Store, StoreError};
use crate::secret::Secret;

/// A gateway's generated callback secrets ([`Store::gateway_secret_set`]).
#[derive(Debug, Clone)]
pub struct GatewaySecrets {
    /// The secret new callback URLs are signed with.
    pub current: Secret,
    /// The one before the last rotation, still accepted for the grace
    /// period the caller's settings give; none before the first rotation.
    pub previous: Option<Secret>,
    /// When the last rotation happened (Unix ms).
    pub rotated_at: Option<i64>,
}

/// A gateway's last recorded circuit-breaker state (`gateway_health`),
/// written by whichever worker saw the change last; for operators.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayState {
    /// The gateway's configured name.
    pub gateway: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Why it changed (the error that opened it), secrets redacted.
    pub detail: String,
    /// The worker that recorded it.
    pub worker: String,
    /// When (Unix ms).
    pub changed_at: i64,
}

impl Store {
    /// The callback token for `gateway`: generated once and kept in the
    /// database, so `serve` and every `worker` process agree on it.
    pub async fn gateway_secret(&self, gateway: &str) -> Result<Secret> {
        let fresh = random_token();
        with_pool!(self, p => {
            sqlx::query(
                "INSERT INTO gateway_secrets (gateway, secret, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (gateway) DO NOTHING",
            )
            .bind(gateway)
            .bind(&fresh)
            .bind(now_ms())
            .execute(p)
            .await?;
            let s: String = sqlx::query_scalar("SELECT secret FROM gateway_secrets WHERE gateway = $1")
                .bind(gateway)
                .fetch_one(p)
                .await?;
            Ok(Secret::new(s))
        })
    }

    /// A generated callback secret with the one before its last rotation;
    /// creates the secret when missing, as [`Store::gateway_secret`] does.
    pub async fn gateway_secret_set(&self, gateway: &str) -> Result<GatewaySecrets> {
        self.gateway_secret(gateway).await?;
        let (current, previous, rotated_at): (String, Option<String>, Option<i64>) = with_pool!(self, p => sqlx::query_as(
                "SELECT secret, previous_secret, rotated_at FROM gateway_secrets WHERE gateway = $1")
                .bind(gateway).fetch_one(p).await?);
        Ok(GatewaySecrets {
            current: Secret::new(current),
            previous: previous.map(Secret::new),
            rotated_at,
        })
    }

    /// Replaces `gateway`'s generated callback secret with a fresh one; the
    /// old one becomes `previous_secret` (valid for the grace period the
    /// caller's settings give), and the rotation is audited in the same
    /// transaction. A secret rotated before and still in its grace period
    /// is dropped: rotate at most once per grace period.
    pub async fn rotate_gateway_secret(&self, gateway: &str, actor: &str) -> Result<i64> {
        self.gateway_secret(gateway).await?;
        let now = now_ms();
        let fresh = random_token();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "UPDATE gateway_secrets SET previous_secret = secret, secret = $1, rotated_at = $2 WHERE gateway = $3")
                .bind(&fresh).bind(now).bind(gateway)
                .execute(&mut *tx).await?.rows_affected();
            if n != 1 {
                return Err(StoreError::NotFound(format!("gateway secret {gateway:?}")));
            }
            audit_tx!(tx, actor, "gateway.rotate_secret", format!("gateway:{gateway}"),
                "callback secret rotated; the previous one stays valid for the grace period", now);
            tx.commit().await?;
        });
        Ok(now)
    }

    /// Records a gateway's circuit state (last writer wins; for operators).
    pub async fn set_gateway_state(
        &self,
        gateway: &str,
        state: &str,
        detail: &str,
        worker: &str,
    ) -> Result<()> {
        with_pool!(self, p => sqlx::query(
            "INSERT INTO gateway_health (gateway, state, detail, worker, changed_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (gateway) DO UPDATE SET state = excluded.state, detail = excluded.detail, \
             worker = excluded.worker, changed_at = excluded.changed_at")
            .bind(gateway).bind(state).bind(detail).bind(worker).bind(now_ms())
            .execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Every gateway's last recorded circuit state, by gateway name.
    pub async fn gateway_states(&self) -> Result<Vec<GatewayState>> {
        Ok(with_pool!(self, p => sqlx::query_as(
            "SELECT gateway, state, detail, worker, changed_at FROM gateway_health ORDER BY gateway")
            .fetch_all(p).await?))
    }
}
