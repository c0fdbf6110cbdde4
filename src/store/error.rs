//! The store's two errors: [`StoreError`] (the database, or a conflict or
//! absence the caller reports) and [`SupportError`], which support staff
//! and the chatbot see, one HTTP status per variant.

use crate::domain::notice::InvalidText;

/// A failure talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} must start with sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The SQLite database file could not be created owner-only.
    #[error("database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a support or chatbot operation was refused. The HTTP layer maps each
/// to one status code.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// Bad input, naming the field (400).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No such worker/flag (404). For the chatbot, also "the digits do not
    /// match that phone", so existence does not leak.
    #[error("{0} not found")]
    NotFound(String),
    /// A notice is still queued, being sent, or awaiting its receipt (409).
    #[error("{0}")]
    InFlight(String),
    /// The state does not allow it (409), e.g. a flag already resolved.
    #[error("{0}")]
    Conflict(String),
    /// The worker is not someone a notice may go to (422).
    #[error("{0}")]
    NotEligible(String),
    /// The per-number daily limit (429). `retry_at` is when one more is
    /// allowed (Unix ms).
    #[error("{message}")]
    Limit { message: String, retry_at: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InvalidText> for SupportError {
    fn from(e: InvalidText) -> Self {
        SupportError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<sqlx::Error> for SupportError {
    fn from(e: sqlx::Error) -> Self {
        SupportError::Store(StoreError::Sqlx(e))
    }
}
