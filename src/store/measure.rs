//! Figures about a campaign's timing and the database server, and the
//! database upkeep a measurement needs: what a benchmark, a capacity test or
//! an operator's script asks of the store beyond the engine's own work.
//! Everything here reads or maintains; nothing changes what a message,
//! worker or campaign is (the benchmarks, crates/bench, use only these and
//! the store's other public methods).

use super::{with_pool, Db, Result, Store, StoreError};

/// When the messages of one campaign were sent and became final (Unix ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignTimes {
    /// Messages with a recorded send (`sent_at`).
    pub sent: i64,
    /// Messages final (`final_at`): a final receipt, or given up.
    pub finals: i64,
    pub first_sent: Option<i64>,
    pub last_sent: Option<i64>,
    pub first_final: Option<i64>,
    pub last_final: Option<i64>,
}

/// What a database has run so far ([`Store::activity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbActivity {
    pub transactions: i64,
    /// `None` without `pg_stat_statements`.
    pub statements: Option<i64>,
}

/// A campaign's sends and finals per whole second since a start time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerSecond {
    /// `sent[s]`: messages whose send was recorded in second `s`.
    pub sent: Vec<u64>,
    /// `finals[s]`: messages that became final in second `s`.
    pub finals: Vec<u64>,
}

impl Store {
    /// When the messages of campaign `id` were sent and became final.
    pub async fn campaign_times(&self, id: i64) -> Result<CampaignTimes> {
        type Row = (i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let r: Row = with_pool!(self, p => sqlx::query_as(
            "SELECT COUNT(sent_at), COUNT(final_at), MIN(sent_at), MAX(sent_at), \
             MIN(final_at), MAX(final_at) FROM messages WHERE campaign_id = $1")
            .bind(id).fetch_one(p).await?);
        Ok(CampaignTimes {
            sent: r.0,
            finals: r.1,
            first_sent: r.2,
            last_sent: r.3,
            first_final: r.4,
            last_final: r.5,
        })
    }

    /// Campaign `id`'s sends and finals per whole second since `t0_ms`
    /// (anything earlier counts in second 0).
    pub async fn campaign_per_second(&self, id: i64, t0_ms: i64) -> Result<PerSecond> {
        let mut out = PerSecond::default();
        for (column, into) in [("sent_at", &mut out.sent), ("final_at", &mut out.finals)] {
            // Our own column names, never input.
            let sql = format!(
                "SELECT ({column} - $2) / 1000 AS s, COUNT(*) FROM messages \
                 WHERE campaign_id = $1 AND {column} IS NOT NULL GROUP BY 1 ORDER BY 1"
            );
            let rows: Vec<(i64, i64)> = with_pool!(self, p => sqlx::query_as(&sql)
                .bind(id).bind(t0_ms).fetch_all(p).await?);
            let len = rows.iter().map(|r| r.0.max(0) as usize + 1).max();
            *into = vec![0; len.unwrap_or(0)];
            for (s, c) in rows {
                into[s.max(0) as usize] += c as u64;
            }
        }
        Ok(out)
    }

    /// PostgreSQL: reclaims the dead row versions a change to every message
    /// of a campaign leaves behind and refreshes the planner's statistics of
    /// `messages` (`VACUUM ANALYZE messages`), for a server that runs
    /// without autovacuum (the benchmark server) before a measurement.
    /// Nothing on SQLite. Unlike [`Store::refresh_statistics`], waits and
    /// returns the error.
    pub async fn vacuum_messages(&self) -> Result<()> {
        if let Db::Postgres(p) = &self.db {
            sqlx::query("VACUUM ANALYZE messages").execute(p).await?;
        }
        Ok(())
    }

    /// PostgreSQL: the transactions (committed and rolled back) this
    /// database has run, from `pg_stat_database`, and the statements, from
    /// `pg_stat_statements` when that extension is loaded by the server
    /// (`shared_preload_libraries`) and installed in the database (this
    /// call installs it when it can). For per-message costs: read before and
    /// after a run whose connections are closed (a backend reports its
    /// counts at exit at the latest). `None` on SQLite.
    pub async fn activity(&self) -> Result<Option<DbActivity>> {
        let Db::Postgres(p) = &self.db else {
            return Ok(None);
        };
        let transactions: i64 = sqlx::query_scalar(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(p)
        .await?;
        let preloaded: bool = sqlx::query_scalar(
            "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'",
        )
        .fetch_one(p)
        .await?;
        let mut statements = None;
        if preloaded
            && sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(p)
                .await
                .is_ok()
        {
            statements = sqlx::query_scalar(
                "SELECT COALESCE(SUM(calls), 0)::BIGINT FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(p)
            .await
            .ok();
        }
        Ok(Some(DbActivity {
            transactions,
            statements,
        }))
    }

    /// PostgreSQL: the process ids of the server processes serving this
    /// database and of the server's background processes, for measuring the
    /// database's CPU on the same machine (`/proc/PID/stat`). `None` on
    /// SQLite, which runs inside this process.
    pub async fn server_pids(&self) -> Result<Option<Vec<i32>>> {
        let Db::Postgres(p) = &self.db else {
            return Ok(None);
        };
        let pids = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             OR backend_type <> 'client backend'",
        )
        .fetch_all(p)
        .await?;
        Ok(Some(pids))
    }
}

/// A throw-away PostgreSQL database on the server of an admin URL, for a
/// benchmark or a test that wants a fresh one: created by
/// [`ScratchDatabase::create`], removed by [`ScratchDatabase::drop_database`]
/// (never on its own: a run may want to keep it for a look).
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    /// `PREFIX_<12 hex digits>`.
    pub name: String,
    /// `admin_url` with the path replaced by the new database's name.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `{prefix}_{random}` on the server of `admin_url`, whose user
    /// may create databases. `prefix`: lowercase ASCII letters, digits and
    /// `_`, starting with a letter (it becomes an unquoted identifier).
    pub async fn create(admin_url: &str, prefix: &str) -> Result<ScratchDatabase> {
        let mut chars = prefix.chars();
        let identifier = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !identifier {
            return Err(StoreError::Conflict(format!(
                "database name prefix {prefix:?}: lowercase letters, digits and _ only"
            )));
        }
        let mut url = url::Url::parse(admin_url)
            .map_err(|_| StoreError::UnsupportedUrl(super::redact_url(admin_url)))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(StoreError::UnsupportedUrl(super::redact_url(admin_url)));
        }
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = sqlx::PgPool::connect(admin_url).await?;
        // The name is checked above and ours: no quoting needed.
        let created = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await;
        admin.close().await;
        created?;
        url.set_path(&format!("/{name}"));
        Ok(ScratchDatabase {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_database(self) -> Result<()> {
        let admin = sqlx::PgPool::connect(&self.admin_url).await?;
        let dropped = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await;
        admin.close().await;
        dropped.map(|_| ()).map_err(StoreError::from)
    }
}

impl Store {
    /// Benchmarks only (`pedulicovid-bench --purge-backlog`): a campaign
    /// that finished at `finished_at`, with `n` delivered messages (body and
    /// number) to the first `n` workers, one attempt and one receipt
    /// (payload with the number) each, all stamped `finished_at`: a backlog
    /// for retention to purge. Returns the campaign's id.
    pub async fn seed_finished_campaign(&self, n: i64, finished_at: i64) -> Result<i64> {
        let body =
            "Yth. Bapak/Ibu, Anda terdaftar sebagai penerima vaksin COVID-19. Registrasi ulang \
                    di pedulilindungi.id atau *119# dan pilih jadwal vaksinasi. PEDULICOVID";
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let c: i64 = sqlx::query_scalar(
                "INSERT INTO campaigns (name, template, status, scheduled_at, window_start, window_end, \
                 created_by, enqueued, created_at, updated_at) VALUES ('Bench: finished long ago', \
                 'undangan_registrasi', 'completed', $1, 0, 1440, 'bench', $2, $1, $1) RETURNING id")
                .bind(finished_at).bind(n).fetch_one(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO messages (campaign_id, worker_id, generation, phone, utc_offset, status, \
                 attempts, next_attempt_at, gateway, gateway_message_id, body, encoding, segments, \
                 created_at, updated_at, sent_at, final_at) SELECT $1, id, 1, phone, 7, 'delivered', 1, \
                 $2, 'sim', 'old-' || CAST(id AS TEXT), $3, 'gsm7', 1, $2, $2, $2, $2 \
                 FROM health_workers ORDER BY id LIMIT $4")
                .bind(c).bind(finished_at).bind(body).bind(n).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO attempts (message_id, attempt, gateway, outcome, at, campaign_id, handed_over) \
                 SELECT id, 1, 'sim', 'sent', $2, campaign_id, $3 FROM messages WHERE campaign_id = $1")
                .bind(c).bind(finished_at).bind(true).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO receipts (gateway, message_id, gateway_message_id, raw_status, outcome, \
                 payload, received_at, effect) SELECT 'sim', id, gateway_message_id, '1', 'delivered', \
                 'id=' || gateway_message_id || '&to=' || phone || '&status=1', $2, 'applied' \
                 FROM messages WHERE campaign_id = $1")
                .bind(c).bind(finished_at).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scratch_database_names_are_identifiers() {
        for bad in ["", "Bench", "1bench", "bench-x", "bench;drop"] {
            let got = ScratchDatabase::create("postgres://u@127.0.0.1:1/postgres", bad).await;
            assert!(matches!(got, Err(StoreError::Conflict(_))), "{bad:?}");
        }
        let got = ScratchDatabase::create("sqlite://x.db", "bench").await;
        assert!(matches!(got, Err(StoreError::UnsupportedUrl(_))));
    }

    #[tokio::test]
    async fn campaign_times_of_nothing_are_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        assert_eq!(
            store.campaign_times(1).await.expect("times"),
            CampaignTimes::default()
        );
        assert_eq!(
            store.campaign_per_second(1, 0).await.expect("per second"),
            PerSecond::default()
        );
        assert_eq!(store.server_pids().await.expect("pids"), None);
        store.vacuum_messages().await.expect("nothing on SQLite");
    }
}
