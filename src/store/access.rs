//! API tokens: who may call the HTTP API, in which role.
//!
//! A token is `pcv_<role>_<64 hex digits>` (32 random bytes). Only its
//! SHA-256 (hex) is stored; the token itself is shown once, when created.
//! Verification hashes the presented token and looks the hash up; the
//! stored hash is then compared again in constant time, which costs nothing
//! and keeps the check honest should the lookup ever change.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{now_ms, random_token, with_pool, Result, Store, StoreError};

/// What a token may do. Every `/api` route names the roles it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Campaign operators: create, control and watch campaigns.
    Operator,
    /// Help-desk staff: search, timelines, resends, flag resolution.
    Support,
    /// The WhatsApp chatbot: look-ups and re-registration.
    Chatbot,
    /// Carriers. No `/api` route accepts it yet: receipt callbacks are
    /// authenticated by per-gateway secrets.
    Carrier,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Support, Role::Chatbot, Role::Carrier];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Support => "support",
            Role::Chatbot => "chatbot",
            Role::Carrier => "carrier",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown role {s:?} (operator, support, chatbot, carrier)"))
    }
}

/// A token as stored (never the token itself).
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: i64,
    /// Unique label chosen by whoever created it (`chatbot-kominfo`).
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Updated at most once a minute per token (see the HTTP layer).
    pub last_used_at: Option<i64>,
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    Unknown,
    Revoked,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    role: String,
    token_hash: String,
    created_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TokenRow {
    fn into_token(self) -> Result<ApiToken> {
        Ok(ApiToken {
            id: self.id,
            role: self.role.parse().map_err(StoreError::Conflict)?,
            name: self.name,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        })
    }
}

/// A token just created ([`Store::create_token`]).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: ApiToken,
    /// The token text to hand to its user: never stored (only its hash),
    /// so it cannot be shown again.
    pub secret: String,
}

/// What a presented token is ([`Store::check_token`]).
#[derive(Debug, Clone)]
pub struct TokenVerdict {
    pub check: TokenCheck,
    /// The stored token, when one matched (valid or revoked).
    pub token: Option<ApiToken>,
}

impl TokenVerdict {
    const UNKNOWN: TokenVerdict = TokenVerdict {
        check: TokenCheck::Unknown,
        token: None,
    };
}

const TOKEN_COLUMNS: &str = "id, name, role, token_hash, created_at, revoked_at, last_used_at";

/// Hex SHA-256 of `s`.
pub fn sha256_hex(s: &[u8]) -> String {
    Sha256::digest(s)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks a token name: 1 to 64 of letters, digits, `.`, `-`, `_`, `@`.
/// Names show up in logs and the audit trail, so they stay plain.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "token name {name:?}: use 1 to 64 letters, digits, '.', '-', '_' or '@'"
        )))
    }
}

impl Store {
    /// Creates a token and returns it with the secret token text, which is
    /// never stored and cannot be shown again.
    pub async fn create_token(&self, name: &str, role: Role) -> Result<NewToken> {
        check_name(name)?;
        let token = format!("pcv_{}_{}", role.as_str(), random_token());
        let hash = sha256_hex(token.as_bytes());
        let now = now_ms();
        let inserted: std::result::Result<i64, sqlx::Error> = with_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(name).bind(role.as_str()).bind(&hash).bind(now)
            .fetch_one(p).await);
        let id = match inserted {
            Ok(id) => id,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "a token named {name:?} exists already"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(NewToken {
            token: ApiToken {
                id,
                name: name.to_string(),
                role,
                created_at: now,
                revoked_at: None,
                last_used_at: None,
            },
            secret: token,
        })
    }

    /// Every token, revoked ones included, oldest first.
    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id");
        let rows: Vec<TokenRow> = with_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await?);
        rows.into_iter().map(TokenRow::into_token).collect()
    }

    /// The token a caller presented, and whether it may be used.
    pub async fn check_token(&self, presented: &str) -> Result<TokenVerdict> {
        if !has_token_shape(presented) {
            // Not one we could have issued: answered without a database
            // look-up, so a flood of garbage costs no more than parsing it.
            return Ok(TokenVerdict::UNKNOWN);
        }
        let hash = sha256_hex(presented.as_bytes());
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1");
        let row: Option<TokenRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(&hash).fetch_optional(p).await?);
        let Some(row) = row else {
            return Ok(TokenVerdict::UNKNOWN);
        };
        if !bool::from(row.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(TokenVerdict::UNKNOWN);
        }
        let revoked = row.revoked_at.is_some();
        let token = row.into_token()?;
        Ok(TokenVerdict {
            check: if revoked {
                TokenCheck::Revoked
            } else {
                TokenCheck::Valid
            },
            token: Some(token),
        })
    }

    /// Revokes the token with this name, or else with this id. Revoking
    /// twice is harmless (the first revocation time stays).
    pub async fn revoke_token(&self, id_or_name: &str) -> Result<ApiToken> {
        let key = id_or_name.trim();
        let by_name = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE name = $1");
        let by_id = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let mut row: Option<TokenRow> =
            with_pool!(self, p => sqlx::query_as(&by_name).bind(key).fetch_optional(p).await?);
        if row.is_none() {
            if let Ok(id) = key.parse::<i64>() {
                row =
                    with_pool!(self, p => sqlx::query_as(&by_id).bind(id).fetch_optional(p).await?);
            }
        }
        let row = row.ok_or_else(|| StoreError::NotFound(format!("token {key:?}")))?;
        let sql = format!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
             RETURNING {TOKEN_COLUMNS}"
        );
        let row: TokenRow = with_pool!(self, p => sqlx::query_as(&sql)
            .bind(now_ms()).bind(row.id).fetch_one(p).await?);
        row.into_token()
    }

    /// Records that a token was used at `at`.
    pub async fn touch_token(&self, id: i64, at: i64) -> Result<()> {
        with_pool!(self, p => sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(at).bind(id).execute(p).await.map(|_| ())?);
        Ok(())
    }
}

/// One request done at most once per (token, key).
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    pub token_id: i64,
    pub key: &'a str,
    /// Hex SHA-256 of the canonical request: the same key with another
    /// request is refused.
    pub request_hash: &'a str,
}

/// The outcome of an idempotent operation.
#[derive(Debug, Clone)]
pub enum Idempotent<T> {
    /// Done now; `body` is the response stored for retries.
    Done { outcome: T, body: String },
    /// Done before: the stored status and response, nothing more was done.
    Replayed { status: u16, body: String },
}

impl Store {
    /// Forgets chatbot idempotency keys stored before `before` (Unix ms):
    /// a retry that late is a new request. Returns how many were deleted.
    pub async fn purge_idempotency_keys(&self, before: i64) -> Result<u64> {
        let deleted = with_pool!(self, p => sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before).execute(p).await?.rows_affected());
        Ok(deleted)
    }

    /// The token with this id, revoked or not; `None` when there is none.
    pub async fn token_by_id(&self, id: i64) -> Result<Option<ApiToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row: Option<TokenRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        row.map(TokenRow::into_token).transpose()
    }
}

/// Whether `t` looks like a token `token create` issues: `pcv_`, a role, `_`,
/// 64 lowercase hex digits (see the module documentation).
fn has_token_shape(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("pcv_") else {
        return false;
    };
    let Some((role, secret)) = rest.split_once('_') else {
        return false;
    };
    role.parse::<Role>().is_ok()
        && secret.len() == 64
        && secret
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::has_token_shape;

    #[test]
    fn only_issued_shapes_reach_the_database() {
        let hex = "0123456789abcdef".repeat(4);
        for role in ["operator", "support", "chatbot", "carrier"] {
            assert!(has_token_shape(&format!("pcv_{role}_{hex}")), "{role}");
        }
        for bad in [
            String::new(),
            format!("pcv_admin_{hex}"),
            format!("pcv_chatbot_{}", &hex[1..]),
            format!("pcv_chatbot_{hex}0"),
            format!("pcv_chatbot_{}", hex.to_uppercase()),
            format!("pcv_chatbot{hex}"),
            format!("xyz_chatbot_{hex}"),
            "pcv_chatbot_nope".to_string(),
            "x".repeat(10_000),
        ] {
            assert!(!has_token_shape(&bad), "{bad:.40}");
        }
    }
}
