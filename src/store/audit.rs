//! The audit trail (`audit_log`): who did what to which subject, when.
//! Every change a person or the chatbot makes writes its entry in the same
//! transaction ([`audit_tx!`]); [`Store::audit`] is for changes made
//! elsewhere (a token created by the CLI).

use super::{now_ms, with_pool, Result, Store};

/// Appends to the audit trail inside the transaction `$tx`, so the entry
/// and the change it records commit or roll back together.
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! audit_tx {
    ($tx:expr, $actor:expr, $action:expr, $subject:expr, $detail:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (actor, action, subject, detail, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($actor)
        .bind($action)
        .bind($subject)
        .bind($detail)
        .bind($now)
        .execute(&mut *$tx)
        .await?
    };
}

pub(crate) use audit_tx;

impl Store {
    /// Appends to the audit trail.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<()> {
        with_pool!(self, p => sqlx::query(
            "INSERT INTO audit_log (actor, action, subject, detail, at) VALUES ($1, $2, $3, $4, $5)")
            .bind(actor).bind(action).bind(subject).bind(detail).bind(now_ms())
            .execute(p).await.map(|_| ())?);
        Ok(())
    }
}
