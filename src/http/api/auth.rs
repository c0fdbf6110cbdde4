//! Who is calling: bearer tokens, roles, and the chatbot's rate limit.
//!
//! Every `/api` route names the roles it accepts (see [`super::api_routes`]);
//! [`guard`] runs in front of it: no token, an unknown one or a revoked one
//! is 401, a token of another role is 403, and a chatbot token over its rate
//! is 429 with `Retry-After`. Handlers read the caller with the [`Caller`]
//! extractor.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::http::AppState;
use crate::store::{now_ms, Role, TokenCheck};

/// Chatbot requests per second per token (burst of the same size). The
/// Kominfo bot fronts thousands of chats; 20/s per token keeps one runaway
/// client from crowding out the dispatcher's database.
pub const CHATBOT_RATE_PER_SEC: u32 = 20;

/// `last_used_at` is written at most this often per token, so a busy chatbot
/// does not turn every request into a database write.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    /// The token's name: the actor in the audit trail.
    pub name: String,
    pub role: Role,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Put there by `guard`; a route without a guard has no caller.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))
    }
}

/// Access state shared by every request.
#[derive(Clone)]
pub struct Access {
    chatbot_rate: u32,
    chatbot_limiter: Arc<DefaultKeyedRateLimiter<i64>>,
    /// token id → last `last_used_at` written.
    touched: Arc<Mutex<HashMap<i64, i64>>>,
}

impl Access {
    pub fn new(chatbot_rate_per_sec: u32) -> Access {
        let rate = NonZeroU32::new(chatbot_rate_per_sec).unwrap_or(NonZeroU32::MIN);
        Access {
            chatbot_rate: rate.get(),
            chatbot_limiter: Arc::new(RateLimiter::keyed(Quota::per_second(rate))),
            touched: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Whether `last_used_at` of `token` is due for a write.
    fn should_touch(&self, token: i64, now: i64) -> bool {
        let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        match t.get(&token) {
            Some(&at) if now - at < TOUCH_EVERY_MS => false,
            _ => {
                t.insert(token, now);
                true
            }
        }
    }
}

/// What a route's guard checks.
#[derive(Clone)]
pub struct Guard {
    pub state: AppState,
    pub roles: &'static [Role],
    pub rate_limited: bool,
}

/// Authenticates, authorises and rate-limits one request.
pub async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    match check(&g, req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn check(g: &Guard, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let verdict = g.state.store.check_token(presented).await?;
    let token = match (verdict.check, verdict.token) {
        (TokenCheck::Valid, Some(t)) => t,
        (TokenCheck::Revoked, _) => return Err(ApiError::Unauthorized("token revoked".into())),
        _ => return Err(ApiError::Unauthorized("invalid token".into())),
    };
    let now = now_ms();
    if g.state.api.access.should_touch(token.id, now) {
        let store = g.state.store.clone();
        let id = token.id;
        // Off the request path: a slow write must not slow the answer.
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(id, now).await {
                tracing::debug!(error = %e, "recording token use failed");
            }
        });
    }
    if !g.roles.contains(&token.role) {
        let accepted = g
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ApiError::Forbidden(format!(
            "role {} may not use this endpoint (accepted: {accepted})",
            token.role
        )));
    }
    if g.rate_limited {
        if let Err(not_until) = g.state.api.access.chatbot_limiter.check_key(&token.id) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "rate limit: at most {} requests per second per token",
                    g.state.api.access.chatbot_rate
                ),
                retry_after_secs: wait.as_millis().div_ceil(1000) as u64,
            });
        }
    }
    Ok(Caller {
        token_id: token.id,
        name: token.name,
        role: token.role,
    })
}
