//! The one place SQL lives.
//!
//! [`Store`] holds either a SQLite or a PostgreSQL pool, chosen by the URL
//! scheme. Most statements are written once: both engines accept `$n`
//! parameters, `RETURNING`, `ON CONFLICT` and `IS DISTINCT FROM`, and the
//! [`with_pool!`] macro runs the same text on whichever pool is in use. Where
//! the engines differ (claiming: `FOR UPDATE SKIP LOCKED` exists only in
//! PostgreSQL) the statement is chosen per backend, side by side, so the two
//! never drift apart unnoticed. Times are Unix milliseconds, UTC.
//!
//! # Layout
//! One module per thing stored: `workers` (the registry,
//! look-ups, search), `campaigns`, `queue` (messages, attempts, the
//! dispatcher processes), `notices` (extra notices, `resends`), `receipts`,
//! `flags` (non-recipients), `outcomes` (what outreach found, the
//! campaign's outreach report), `reregistration`, `erasure` (one
//! worker's personal data, tombstoned), `access` (tokens,
//! idempotency keys), `audit`, `gateways` (callback secrets, circuit
//! state), `timeline` and `gauges` (read-only views across tables). Rules
//! (limits, eligibility, windows, status moves) are not decided here but in
//! [`crate::domain`] and [`crate::status`].
//!
//! # Why macros
//! sqlx's SQLite and PostgreSQL pools and transactions are different types,
//! and a function generic over both needs a wall of executor bounds. So a
//! statement sequence that runs inside a caller's transaction is a
//! `macro_rules!` whose body is compiled once per database (`$tx` is
//! either), and [`with_pool!`] does the same for a pool. Each macro says
//! what it runs; where one body must be a function (a trait method), the
//! trait picks the database (`ConfirmPending`, [`BeginWrite`], [`ListParam`],
//! [`KeyLock`], which also shows where the two differ).

// By what each stores, in the order a notice meets them.
mod access;
mod audit;
mod campaigns;
mod erasure;
mod error;
mod flags;
mod gateways;
mod gauges;
mod measure;
mod notices;
mod outcomes;
mod queue;
mod receipts;
mod reregistration;
mod retention;
mod suppression;
mod timeline;
mod wake;
mod workers;

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, SqlitePool};

pub use access::{
    sha256_hex, ApiToken, IdempotencyKey, Idempotent, NewToken, Role, TokenCheck, TokenVerdict,
};
pub(crate) use audit::audit_tx;
pub use campaigns::{
    AutoPaused, Campaign, CampaignAction, CampaignFilter, CampaignReport, CreatedCampaign,
    NewCampaign, ProvinceDelivery, RescheduledCampaign,
};
pub use erasure::{tombstone, Erasure, ERASED_TEXT};
pub use error::{Result, StoreError, SupportError};
pub use flags::{FlagRow, TimelineFlag};
pub use gateways::{GatewaySecrets, GatewayState};
pub use gauges::{GatewayCount, Gauges};
pub use measure::{CampaignTimes, DbActivity, PerSecond, ScratchDatabase};
pub use notices::{
    QueuedNotice, REREGISTRATION_CAMPAIGN, REREGISTRATION_TEMPLATE, RESENDS_PER_NUMBER_PER_DAY,
};
pub use outcomes::{
    FlagChange, NewOutcome, OutcomeCount, OutcomeRefusal, OutreachReport, ProvinceOutreach,
    ReasonOutreach, RecordedOutcome, RecordedOutcomes,
};
pub use queue::{ClaimedMessage, QueuePosition, RetryCause, SendOutcome, StatusCount};
pub use receipts::{AppliedReceipts, EffectCount, IncomingReceipt, ReceiptEffect, StoredReceipt};
pub use reregistration::{
    normalize_name, ChatbotReregistration, ReregisterOutcome, ReregisterState,
    ReregistrationExportRow, ReregistrationLock, ReregistrationMode, ReregistrationView,
    FAILURE_WINDOW_MS, LOCK_MS, MAX_FAILURES, UNVALIDATED_CAMPAIGN, UNVALIDATED_TEMPLATE,
};
pub use retention::{KindStatus, RetentionPolicy, RetentionStep};
pub use suppression::{SuppressMany, Suppressed, Suppression, SuppressionView, RECHECK_MS};
pub use timeline::{
    scrub, AttemptEntry, AuditEntry, PhoneChange, ReceiptEntry, ResendEntry, Timeline,
    TimelineMessage,
};
pub use wake::{DueWatch, DUE_CHANNEL};
pub(crate) use workers::WORKER_COLUMNS;
pub use workers::{
    Lookup, NewWorker, NoticeState, SearchKind, SearchResults, UpsertCounts, WorkerKey, WorkerRow,
    WorkerStatus, WorkerSummary, SEARCH_LIMIT, SEARCH_TIMEOUT,
};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement text on whichever pool the store holds.
/// A macro because the two pools are different types: the body is
/// compiled once per pool, so one text serves both (module docs).
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A list condition with a statement text that does not depend on the
/// list's length: `= ANY($n)` with one array parameter on PostgreSQL, so a
/// batch of any size reuses one prepared statement (a new text per length
/// costs a Parse round trip and churns sqlx's statement cache); `IN (…)` on
/// SQLite, which has no arrays and prepares in-process anyway.
pub(crate) trait ListParam: sqlx::Database {
    fn push_in_ids(q: &mut sqlx::QueryBuilder<'_, Self>, ids: &[i64]);
    fn push_in_texts(q: &mut sqlx::QueryBuilder<'_, Self>, texts: &[String]);
}

impl ListParam for sqlx::Postgres {
    fn push_in_ids(q: &mut sqlx::QueryBuilder<'_, Self>, ids: &[i64]) {
        q.push(" = ANY(");
        q.push_bind(ids.to_vec());
        q.push(")");
    }
    fn push_in_texts(q: &mut sqlx::QueryBuilder<'_, Self>, texts: &[String]) {
        q.push(" = ANY(");
        q.push_bind(texts.to_vec());
        q.push(")");
    }
}

impl ListParam for sqlx::Sqlite {
    fn push_in_ids(q: &mut sqlx::QueryBuilder<'_, Self>, ids: &[i64]) {
        q.push(" IN (");
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        q.push(")");
    }
    fn push_in_texts(q: &mut sqlx::QueryBuilder<'_, Self>, texts: &[String]) {
        q.push(" IN (");
        let mut sep = q.separated(", ");
        for t in texts {
            sep.push_bind(t.clone());
        }
        q.push(")");
    }
}

/// One column of a batch of rows for [`push_rows`], in the order of the
/// rows.
pub(crate) enum Column<'a> {
    Int8(Vec<i64>),
    OptInt8(Vec<Option<i64>>),
    Int4(Vec<i32>),
    Bool(Vec<bool>),
    Text(Vec<&'a str>),
    OptText(Vec<Option<&'a str>>),
}

impl Column<'_> {
    /// PostgreSQL's array type of the column, for the cast of its parameter.
    fn pg_array(&self) -> &'static str {
        match self {
            Column::Int8(_) | Column::OptInt8(_) => "int8[]",
            Column::Int4(_) => "int4[]",
            Column::Bool(_) => "bool[]",
            Column::Text(_) | Column::OptText(_) => "text[]",
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Int8(v) => v.len(),
            Column::OptInt8(v) => v.len(),
            Column::Int4(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Text(v) => v.len(),
            Column::OptText(v) => v.len(),
        }
    }
}

/// A batch of rows as a table `v(column1, …, columnN)` to select from, with
/// a statement text that does not depend on their number (the rows version
/// of [`ListParam`]): `unnest($1::int8[], $2::text[], …)` with one array
/// parameter per column on PostgreSQL, `(VALUES (…), …)` on SQLite. A
/// `VALUES` list on PostgreSQL was a new statement for every batch size:
/// 156 texts for the receipts of a 30 k run, each prepared again (a Parse
/// and Describe round trip, the parse and analysis of up to 1,500
/// parameters) whenever sqlx's cache of 100 per connection had let it go.
pub(crate) trait RowsParam: sqlx::Database {
    fn push_rows<'a>(q: &mut sqlx::QueryBuilder<'a, Self>, columns: Vec<Column<'a>>);
}

impl RowsParam for sqlx::Postgres {
    fn push_rows<'a>(q: &mut sqlx::QueryBuilder<'a, Self>, columns: Vec<Column<'a>>) {
        let n = columns.len();
        q.push("unnest(");
        for (i, column) in columns.into_iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            let array = column.pg_array();
            match column {
                Column::Int8(v) => q.push_bind(v),
                Column::OptInt8(v) => q.push_bind(v),
                Column::Int4(v) => q.push_bind(v),
                Column::Bool(v) => q.push_bind(v),
                Column::Text(v) => q.push_bind(v),
                Column::OptText(v) => q.push_bind(v),
            };
            q.push("::");
            q.push(array);
        }
        q.push(") AS v(");
        push_column_names(q, n);
        q.push(")");
    }
}

impl RowsParam for sqlx::Sqlite {
    fn push_rows<'a>(q: &mut sqlx::QueryBuilder<'a, Self>, columns: Vec<Column<'a>>) {
        let rows = columns.first().map_or(0, Column::len);
        q.push("(VALUES ");
        for r in 0..rows {
            if r > 0 {
                q.push(", ");
            }
            q.push("(");
            let mut values = q.separated(", ");
            for column in &columns {
                match column {
                    Column::Int8(v) => values.push_bind(v[r]),
                    Column::OptInt8(v) => values.push_bind(v[r]),
                    Column::Int4(v) => values.push_bind(v[r]),
                    Column::Bool(v) => values.push_bind(v[r]),
                    Column::Text(v) => values.push_bind(v[r]),
                    Column::OptText(v) => values.push_bind(v[r]),
                };
            }
            q.push(")");
        }
        q.push(") AS v");
    }
}

/// `column1, …, columnN`: the names SQLite and PostgreSQL give the columns
/// of a `VALUES` list, and [`RowsParam`] gives an `unnest` too.
fn push_column_names<DB: sqlx::Database>(q: &mut sqlx::QueryBuilder<'_, DB>, n: usize) {
    for i in 1..=n {
        if i > 1 {
            q.push(", ");
        }
        q.push(format_args!("column{i}"));
    }
}

/// Appends a batch of rows `v(column1, …)` to select from ([`RowsParam`]);
/// every column holds one value per row. A free function so the database
/// type may be inferred after the call.
pub(crate) fn push_rows<'a, DB: RowsParam>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    columns: Vec<Column<'a>>,
) {
    debug_assert!(
        columns.windows(2).all(|w| w[0].len() == w[1].len()),
        "ragged rows"
    );
    DB::push_rows(q, columns)
}

/// Appends ` IN (…)` / ` = ANY($n)` for `ids` ([`ListParam`]); a free
/// function so the database type may be inferred after the call.
pub(crate) fn push_in_ids<DB: ListParam>(q: &mut sqlx::QueryBuilder<'_, DB>, ids: &[i64]) {
    DB::push_in_ids(q, ids)
}

/// [`push_in_ids`] for text values.
pub(crate) fn push_in_texts<DB: ListParam>(q: &mut sqlx::QueryBuilder<'_, DB>, texts: &[String]) {
    DB::push_in_texts(q, texts)
}

/// Starts a write transaction. SQLite: `BEGIN IMMEDIATE`, which takes the
/// write lock up front; a deferred transaction that reads and then writes
/// fails with `database is locked` (without waiting on the busy timeout)
/// when another writer committed in between. PostgreSQL: plain `BEGIN`.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
           + Send;
}

/// A PostgreSQL connection a busy caller keeps between transactions
/// ([`Store::apply_receipts_kept`]): the pool tests every connection it
/// hands out and every connection given back with a round trip each
/// (sqlx's `test_before_acquire` and its check on release), two of the
/// receipt batch's eight while callbacks queue behind it. The keeper gives
/// the connection back when it goes idle ([`KeptConnection::release`]) and
/// discards it after any failure ([`KeptConnection::discard`]), so a
/// broken connection is found by the retry that follows, on a fresh, tested
/// one. It is also given back after [`KEEP_AT_MOST`] however busy the
/// keeper is, so the pool's own rules (its connections' `max_lifetime`)
/// still apply under a campaign's unbroken stream of callbacks. On SQLite
/// nothing is kept: its pool may hold a single connection (in memory), and
/// its round trips stay in the process.
#[derive(Default)]
pub struct KeptConnection {
    /// The connection, and when it was taken from the pool.
    conn: Option<(
        sqlx::pool::PoolConnection<sqlx::Postgres>,
        std::time::Instant,
    )>,
}

/// How long a [`KeptConnection`] holds one connection before giving it back
/// to the pool (which closes it there if it outlived `max_lifetime`, and
/// tests it otherwise): a pair of pool round trips a minute.
pub const KEEP_AT_MOST: Duration = Duration::from_secs(60);

impl KeptConnection {
    /// Whether a connection is held now.
    pub fn is_kept(&self) -> bool {
        self.conn.is_some()
    }

    /// Gives the connection back to the pool (tested there as usual).
    pub fn release(&mut self) {
        self.conn = None;
    }

    /// Closes the connection instead of giving it back: after a failure its
    /// state is unknown.
    pub fn discard(&mut self) {
        if let Some((mut c, _)) = self.conn.take() {
            c.close_on_drop();
        }
    }

    /// The connection in use, taken from `pool` when none is held or the one
    /// held has been kept [`KEEP_AT_MOST`].
    async fn connection(
        &mut self,
        pool: &PgPool,
    ) -> Result<&mut sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
        if self
            .conn
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= KEEP_AT_MOST)
        {
            self.release();
        }
        let (conn, _) = match &mut self.conn {
            Some(held) => held,
            slot => slot.insert((pool.acquire().await?, std::time::Instant::now())),
        };
        Ok(conn)
    }
}

/// [`BeginWrite`] on a connection the caller may keep: on PostgreSQL the
/// one in `kept` (taken from the pool the first time), elsewhere the pool's.
pub(crate) trait BeginKept: BeginWrite {
    fn begin_kept<'c>(
        &'c self,
        kept: Option<&'c mut KeptConnection>,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'c, Self::Db>, sqlx::Error>>
           + Send
           + 'c;
}

impl BeginKept for SqlitePool {
    async fn begin_kept<'c>(
        &'c self,
        _kept: Option<&'c mut KeptConnection>,
    ) -> Result<sqlx::Transaction<'c, sqlx::Sqlite>, sqlx::Error> {
        self.begin_write().await
    }
}

impl BeginKept for PgPool {
    async fn begin_kept<'c>(
        &'c self,
        kept: Option<&'c mut KeptConnection>,
    ) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, sqlx::Error> {
        let Some(kept) = kept else {
            return self.begin_write().await;
        };
        sqlx::Connection::begin(&mut **kept.connection(self).await?).await
    }
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send {
        self.begin()
    }
}

/// Makes concurrent transactions working on one key (a NIK's or a number's
/// hash) run one after the other until they end. PostgreSQL: a transaction
/// advisory lock on the key. SQLite: nothing to do, its single writer
/// (`BEGIN IMMEDIATE`, [`BeginWrite`]) already serialises them.
pub(crate) trait KeyLock: sqlx::Database {
    fn lock_key<'c>(
        tx: &'c mut sqlx::Transaction<'static, Self>,
        key: &'c str,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c;
}

impl KeyLock for sqlx::Postgres {
    async fn lock_key<'c>(
        tx: &'c mut sqlx::Transaction<'static, Self>,
        key: &'c str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut **tx)
            .await
            .map(|_| ())
    }
}

impl KeyLock for sqlx::Sqlite {
    async fn lock_key<'c>(
        _tx: &'c mut sqlx::Transaction<'static, Self>,
        _key: &'c str,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

/// [`KeyLock::lock_key`] as a free function, so the database type is
/// inferred from the transaction.
pub(crate) async fn lock_key<DB: KeyLock>(
    tx: &mut sqlx::Transaction<'static, DB>,
    key: &str,
) -> Result<(), sqlx::Error> {
    DB::lock_key(tx, key).await
}

/// Storage for everything pedulicovid knows. Cheap to clone (pools inside).
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    /// Most database time a support name search may take
    /// ([`SEARCH_TIMEOUT`] unless [`Store::with_search_timeout`] says).
    pub(crate) search_timeout: Duration,
    /// The limits the settings give (`[limits]`), defaults until
    /// [`Store::with_limits`].
    pub(crate) limits: Limits,
    /// Wake-ups for idle dispatchers, shared by every clone ([`wake`]).
    pub(crate) wake: wake::Wake,
    /// `import --revive-erased`: the actor an import that reconnects
    /// erased workers to their NIKs audits as ([`Store::reviving_erased`]);
    /// `None`, the default: an erased NIK imported again is a new worker.
    pub(crate) revive_erased: Option<String>,
}

/// Limits the store applies, from the settings (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Extra notices (resends, re-registrations) one number may get in any
    /// 24 hours ([`RESENDS_PER_NUMBER_PER_DAY`] by default).
    pub resends_per_number_per_day: i64,
    /// Rows a support search returns at most ([`SEARCH_LIMIT`] by default).
    pub search_rows: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            resends_per_number_per_day: RESENDS_PER_NUMBER_PER_DAY,
            search_rows: SEARCH_LIMIT,
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend().as_str())
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A statement slower than this is logged by the driver at WARN, with its
/// SQL. The driver's default (1 s) fits a web request, not this workload:
/// enqueuing a national campaign of 1.5 M rows is one statement of about
/// 10 s, and an `ANALYZE` after an import takes seconds, both expected.
/// A minute is not expected of any statement here.
pub const SLOW_STATEMENT: Duration = Duration::from_secs(60);

impl Store {
    /// Opens a pool for `url`. SQLite files are created when missing, in WAL
    /// mode with a busy timeout so a concurrent writer waits instead of
    /// failing with `database is locked`; the file is created owner-only
    /// (`0600`) before SQLite opens it ([`private_sqlite_file`]).
    pub async fn connect(url: &str) -> Result<Store> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory {
                private_sqlite_file(opts.get_filename())?;
            }
            // In-memory databases exist per connection: keep exactly one.
            let max = if in_memory { 1 } else { 8 };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(opts)
                .await?;
            Ok(Store {
                db: Db::Sqlite(pool),
                search_timeout: SEARCH_TIMEOUT,
                limits: Limits::default(),
                wake: wake::Wake::default(),
                revive_erased: None,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?
                .application_name("pedulicovid")
                .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT);
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                // Custom plans always: a generic plan cached while the queue
                // was empty turned a 500-row claim into a 28 s semi-join over
                // a 300 k queue (BENCHMARKS.md). Planning a claim costs
                // ~0.1 ms. No JIT: every statement here is short, and a
                // cost estimate inflated by missing statistics (a table
                // that grew from nothing during the campaign) crossed
                // `jit_above_cost`, so a 0.1 ms look-up spent 33 ms
                // compiling itself, for every batch of receipts (at 1.5 M
                // messages, BENCHMARKS.md "Cost per message"). `SET`s
                // rather than startup options, which connection poolers
                // such as PgBouncer refuse.
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        sqlx::query("SET plan_cache_mode = force_custom_plan")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("SET jit = off").execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await?;
            Ok(Store {
                db: Db::Postgres(pool),
                search_timeout: SEARCH_TIMEOUT,
                limits: Limits::default(),
                wake: wake::Wake::default(),
                revive_erased: None,
            })
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Gives PostgreSQL's planner fresh statistics for `tables` after a
    /// bulk change (an import, an enqueue): autovacuum may be off or a
    /// minute late, and a claim planned on an empty queue's statistics sorts
    /// the whole queue (BENCHMARKS.md). Nothing to do on SQLite, whose
    /// planner does not depend on gathered statistics here.
    ///
    /// Best effort: it runs after the work has committed, so a failure is
    /// logged, never returned. (An error here would tell an operator that a
    /// campaign already enqueued had failed, inviting a second one.)
    pub async fn refresh_statistics(&self, tables: &[&str]) {
        if let Db::Postgres(pool) = &self.db {
            // Our own table names, never input.
            let sql = format!("ANALYZE {}", tables.join(", "));
            if let Err(e) = sqlx::query(&sql).execute(pool).await {
                tracing::warn!(error = %e, tables = %tables.join(", "), "refreshing planner statistics failed");
            }
        }
    }

    /// This store with another bound on a support name search's database
    /// time (tests and benchmarks). Zero: already out of time on SQLite; at
    /// least 1 ms on PostgreSQL, where a `statement_timeout` of 0 would mean
    /// no limit.
    pub fn with_search_timeout(mut self, limit: Duration) -> Store {
        self.search_timeout = limit;
        self
    }

    /// This store with the settings' limits.
    pub fn with_limits(mut self, limits: Limits) -> Store {
        self.limits = limits;
        self
    }

    /// This store with imports that reconnect an erased worker's NIK to
    /// its erased row (restoring name and number from the import) instead
    /// of creating a new worker, audited `worker.revive` by `actor`
    /// (`pedulicovid import --revive-erased`; [`erasure`]).
    pub fn reviving_erased(mut self, actor: &str) -> Store {
        self.revive_erased = Some(actor.to_string());
        self
    }

    /// The limits this store applies.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections the pool opens at most.
    pub fn pool_size(&self) -> u32 {
        with_pool!(self, p => p.options().get_max_connections())
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// ` FOR UPDATE` where row locks exist (PostgreSQL); SQLite's single
    /// writer (`BEGIN IMMEDIATE`) already serialises.
    pub(crate) fn row_lock(&self) -> &'static str {
        match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Applies the embedded migrations for this backend.
    pub async fn migrate(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// True when the database answers and every migration is applied.
    pub async fn ready(&self) -> Result<bool> {
        let expected = match self.backend() {
            Backend::Sqlite => SQLITE_MIGRATIONS.iter().count(),
            Backend::Postgres => POSTGRES_MIGRATIONS.iter().count(),
        } as i64;
        let applied: i64 = with_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE success = $1")
            .bind(true)
            .fetch_one(p)
            .await?);
        Ok(applied >= expected)
    }

    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

pub use crate::secret::redact_url;

/// Makes the SQLite database at `path` readable by its owner only, before
/// SQLite opens it: a missing file is created empty with mode `0600` (an
/// empty file is an empty database to SQLite), so it never exists with the
/// umask's usual `0644`. SQLite creates the `-wal` and `-shm` files with the
/// database file's own mode (its unix VFS copies it, whatever the umask),
/// so they are `0600` too. A database file or `-wal`/`-shm`/`-journal` left
/// readable by others by an older version is narrowed to `0600`, with a
/// warning; where that is not allowed (another owner) the warning says so
/// and the database opens as before.
pub fn private_sqlite_file(path: &std::path::Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let err = |p: &std::path::Path, source| StoreError::File {
            path: p.display().to_string(),
            source,
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(path, e)),
        }
        let mut names = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            names.push(p.into());
        }
        for p in names {
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if !meta.is_file() || mode & 0o077 == 0 {
                continue;
            }
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => tracing::warn!(
                    file = %p.display(),
                    was = format!("{mode:o}"),
                    "database file was readable by other users: narrowed to owner-only"
                ),
                Err(e) => tracing::warn!(
                    file = %p.display(),
                    mode = format!("{mode:o}"),
                    error = %e,
                    "database file is readable by other users and could not be narrowed"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// 32 random bytes as hex: for callback tokens.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept connection is reused from one transaction to the next, and
    /// given back to the pool once held [`KEEP_AT_MOST`]: a pool whose
    /// connections live 100 ms then closes it and opens another.
    #[tokio::test]
    async fn a_kept_connection_goes_back_to_the_pool_after_a_while() {
        let url = std::env::var("PEDULICOVID_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .max_lifetime(Duration::from_millis(100))
            .connect(&url)
            .await
            .expect("the tests' PostgreSQL");
        let mut kept = KeptConnection::default();
        let backend = async |kept: &mut KeptConnection| -> i32 {
            let mut tx = pool.begin_kept(Some(kept)).await.unwrap();
            let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            pid
        };
        let first = backend(&mut kept).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            backend(&mut kept).await,
            first,
            "kept, past the pool's lifetime"
        );
        let (_, since) = kept.conn.as_mut().unwrap();
        *since = since
            .checked_sub(KEEP_AT_MOST)
            .expect("a clock past a minute");
        assert_ne!(
            backend(&mut kept).await,
            first,
            "given back after KEEP_AT_MOST"
        );
    }
}
