//! Who is signed in: server-side sessions, their cookie, and the checks
//! every form goes through (CSRF token, Origin/Referer).
//!
//! # Sessions
//! Signing in with an API token creates a session in [`Sessions`], an
//! in-memory map: the cookie carries a random 256-bit session id, never the
//! API token, and the map is keyed by the id's SHA-256, so not even a heap
//! dump holds a usable cookie. Sessions therefore do not survive a restart
//! (everyone signs in again) and are not shared between processes: run the
//! UI in one `serve` process, or behind sticky sessions. A session ends
//! after [`IDLE`] without a request, [`MAX_AGE`] after sign-in, at sign-out,
//! and as soon as its API token is revoked (every request re-reads the
//! token).
//!
//! # Cookies
//! `pcv_ui=<id>; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=…`, plus
//! `Secure` ([`secure_cookies`]):
//! - by default, whenever the listener is not a loopback address: a UI
//!   reachable from other machines is meant to be reached through HTTPS (a
//!   TLS proxy, or our own TLS), and a `Secure` cookie is never sent back
//!   over plain HTTP, where anyone on the path could read it;
//! - on a loopback listener (a laptop demo, the tests, a TLS proxy on the
//!   same host), when the request came over HTTPS (`X-Forwarded-Proto:
//!   https` or `Forwarded: proto=https` from the proxy in front);
//! - the setting `http.ui_secure_cookies = true` forces it on every
//!   answer, `false` turns the listener-based default off (a plain-HTTP UI
//!   on a private network, at the operator's risk); requests over HTTPS
//!   still get it.
//!
//! # CSRF
//! Every form carries the session's random CSRF token in a hidden `csrf`
//! field, compared in constant time; the sign-in form, which has no session
//! yet, uses a double-submit nonce in its own cookie (`pcv_ui_login`,
//! `Path=/ui/login`). A form whose `Origin` (or, without one, `Referer`)
//! names another host than the request's is refused as well. Both refusals
//! are 403 with an Indonesian page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use subtle::ConstantTimeEq;

use super::view::{Notice, UiError};
use super::Ui;
use crate::http::AppState;
use crate::store::{random_token, sha256_hex, Role};

/// The session cookie.
pub const SESSION_COOKIE: &str = "pcv_ui";
/// The sign-in form's double-submit nonce.
pub const LOGIN_COOKIE: &str = "pcv_ui_login";
/// Where the session cookie is sent: the UI only, never `/api`.
const SESSION_PATH: &str = "/ui";
const LOGIN_PATH: &str = "/ui/login";

/// A session unused this long ends: a help-desk screen left open.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Every session ends this long after sign-in: one working shift.
pub const MAX_AGE: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; past it the least recently used one goes. Only
/// a valid token creates one, so this bounds memory, not abuse.
const MAX_SESSIONS: usize = 10_000;

/// Roles that may sign in. Support staff see everything; operators see
/// the campaign dashboard only.
pub const UI_ROLES: &[Role] = &[Role::Support, Role::Operator];

/// 403 text for a form without the right CSRF token.
pub const CSRF_REFUSED: &str =
    "Formulir ditolak: token keamanan (CSRF) tidak ada atau tidak cocok. \
     Muat ulang halaman, lalu kirim formulir lagi.";
/// 403 text for a form sent from another site.
pub const ORIGIN_REFUSED: &str =
    "Formulir ditolak: formulir ini dikirim dari situs lain. Buka halaman layanan ini langsung, \
     lalu kirim lagi.";
/// 403 text for a form without a live session.
pub const SESSION_ENDED: &str =
    "Sesi Anda sudah berakhir atau Anda belum masuk. Silakan masuk lagi dengan token layanan.";

struct Session {
    token_id: i64,
    csrf: String,
    created: Instant,
    last_seen: Instant,
    /// Shown once on the next page (after a redirect).
    flash: Option<Notice>,
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) < IDLE
            && now.saturating_duration_since(self.created) < MAX_AGE
    }
}

/// The live sessions, keyed by the SHA-256 of the cookie's session id.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map consistent (every
        // change is one insert or remove), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for the token; returns the cookie's session id.
    pub fn create(&self, token_id: i64, now: Instant) -> String {
        let id = random_token();
        let mut map = self.lock();
        map.retain(|_, s| s.alive(now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            sha256_hex(id.as_bytes()),
            Session {
                token_id,
                csrf: random_token(),
                created: now,
                last_seen: now,
                flash: None,
            },
        );
        id
    }

    /// The token and CSRF token of a live session, which counts as used
    /// now. An expired session is forgotten.
    pub fn touch(&self, id: &str, now: Instant) -> Option<(i64, String)> {
        let key = sha256_hex(id.as_bytes());
        let mut map = self.lock();
        let s = map.get_mut(&key)?;
        if !s.alive(now) {
            map.remove(&key);
            return None;
        }
        s.last_seen = now;
        Some((s.token_id, s.csrf.clone()))
    }

    /// Whether `id` names a live session (without using it).
    pub fn is_live(&self, id: &str, now: Instant) -> bool {
        self.lock()
            .get(&sha256_hex(id.as_bytes()))
            .is_some_and(|s| s.alive(now))
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(&sha256_hex(id.as_bytes()));
    }

    pub fn set_flash(&self, id: &str, notice: Notice) {
        if let Some(s) = self.lock().get_mut(&sha256_hex(id.as_bytes())) {
            s.flash = Some(notice);
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<Notice> {
        self.lock()
            .get_mut(&sha256_hex(id.as_bytes()))
            .and_then(|s| s.flash.take())
    }
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the request reached the TLS proxy in front over HTTPS.
pub fn came_over_https(headers: &HeaderMap, uri: &Uri) -> bool {
    if uri.scheme_str() == Some("https") {
        return true;
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if first("x-forwarded-proto").as_deref() == Some("https") {
        return true;
    }
    first("forwarded").is_some_and(|f| {
        f.split(';')
            .any(|kv| kv.trim().eq_ignore_ascii_case("proto=https"))
    })
}

/// Whether the UI marks every cookie `Secure`, whatever the request looked
/// like: `setting` is `http.ui_secure_cookies`, and without it, true unless
/// the listener is a loopback address. Requests that came over HTTPS get
/// `Secure` in any case ([`came_over_https`]).
pub fn secure_cookies(setting: Option<bool>, listener: std::net::IpAddr) -> bool {
    setting.unwrap_or(!listener.is_loopback())
}

/// A `Set-Cookie` value. `max_age` 0 deletes the cookie.
fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let mut c =
        format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    // Names are constants; values are hex or empty.
    HeaderValue::from_str(&c).expect("cookie is visible ASCII")
}

/// The session cookie for `id`.
pub fn session_cookie(id: &str, secure: bool) -> HeaderValue {
    set_cookie(SESSION_COOKIE, id, SESSION_PATH, MAX_AGE.as_secs(), secure)
}

/// Deletes the session cookie.
pub fn clear_session_cookie(secure: bool) -> HeaderValue {
    set_cookie(SESSION_COOKIE, "", SESSION_PATH, 0, secure)
}

/// The sign-in form's nonce cookie (an hour to fill the form in).
pub fn login_cookie(nonce: &str, secure: bool) -> HeaderValue {
    set_cookie(LOGIN_COOKIE, nonce, LOGIN_PATH, 3600, secure)
}

pub fn clear_login_cookie(secure: bool) -> HeaderValue {
    set_cookie(LOGIN_COOKIE, "", LOGIN_PATH, 0, secure)
}

/// `expected == presented`, in time independent of where they differ.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    !expected.is_empty()
        && !presented.is_empty()
        && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The host (and port) the browser addressed: `X-Forwarded-Host` from a
/// proxy, else `Host`, else the request URI's authority (HTTP/2).
fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let h = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
    };
    h(header::HeaderName::from_static("x-forwarded-host"))
        .or_else(|| h(header::HOST))
        .or_else(|| uri.authority().map(|a| a.as_str().to_ascii_lowercase()))
}

/// `host[:port]` of an Origin or Referer URL, the way a Host header
/// writes it (default ports left out).
fn url_host(value: &str) -> Option<String> {
    let u = url::Url::parse(value).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// Refuses a form whose `Origin` (or, without one, `Referer`) names a host
/// other than the one the request was sent to. Without either header the
/// CSRF token alone decides (some privacy tools strip both).
pub fn check_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), UiError> {
    let claimed = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (Some(o), _) => Some(o),
        (None, Some(r)) => Some(r),
        (None, None) => None,
    };
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let claimed = claimed.to_str().ok().and_then(url_host);
    match (claimed, request_host(headers, uri)) {
        (Some(c), Some(h)) if c == h => Ok(()),
        _ => Err(UiError::Forbidden(ORIGIN_REFUSED.into())),
    }
}

/// Checks a posted form: same origin, and the session's CSRF token.
pub fn check_form(
    headers: &HeaderMap,
    uri: &Uri,
    expected: &str,
    presented: Option<&str>,
) -> Result<(), UiError> {
    check_origin(headers, uri)?;
    if tokens_match(expected, presented.unwrap_or("")) {
        Ok(())
    } else {
        Err(UiError::Forbidden(CSRF_REFUSED.into()))
    }
}

/// The signed-in staff member of a request.
#[derive(Debug, Clone)]
pub struct Staff {
    pub token_id: i64,
    /// The token's name: the actor in the audit trail.
    pub name: String,
    pub role: Role,
    /// The session's CSRF token, for the forms on the page.
    pub csrf: String,
    /// The cookie's session id, for flash messages and sign-out.
    pub sid: String,
}

impl Staff {
    /// Refuses operators on the help-desk pages (search, timelines,
    /// resends): those show personal data operators do not need.
    pub fn require_support(&self) -> Result<(), UiError> {
        if self.role == Role::Support {
            Ok(())
        } else {
            Err(UiError::Forbidden(
                "Halaman ini hanya untuk petugas layanan (token dengan peran support). \
                 Token operator hanya dapat membuka dasbor kampanye."
                    .into(),
            ))
        }
    }
}

/// No live session: a page sends the browser to sign in, a form is 403.
fn no_session(method: &Method) -> UiError {
    if method == Method::GET || method == Method::HEAD {
        UiError::SignIn
    } else {
        UiError::Forbidden(SESSION_ENDED.into())
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let ui = parts.extensions.get::<Ui>().cloned().ok_or_else(|| {
            UiError::Internal(anyhow::anyhow!("UI state missing: routes built without it"))
        })?;
        let sid = cookie(&parts.headers, SESSION_COOKIE)
            .ok_or_else(|| no_session(&parts.method))?
            .to_string();
        let (token_id, csrf) = ui
            .sessions
            .touch(&sid, Instant::now())
            .ok_or_else(|| no_session(&parts.method))?;
        // Re-read the token: revoking it ends its sessions at once.
        let token = state.store.token_by_id(token_id).await?;
        match token {
            Some(t) if t.revoked_at.is_none() && UI_ROLES.contains(&t.role) => Ok(Staff {
                token_id,
                name: t.name,
                role: t.role,
                csrf,
                sid,
            }),
            _ => {
                ui.sessions.remove(&sid);
                Err(no_session(&parts.method))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn sessions_expire_when_idle_and_at_max_age() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.create(7, t0);
        assert_eq!(s.touch(&id, t0 + IDLE / 2).map(|x| x.0), Some(7));
        // Used half-way: the idle clock restarted.
        assert!(s.touch(&id, t0 + IDLE).is_some());
        assert!(s.touch(&id, t0 + IDLE * 3).is_none(), "idle too long");
        assert!(s.touch(&id, t0).is_none(), "forgotten once expired");

        let id = s.create(8, t0);
        let mut t = t0;
        while t < t0 + MAX_AGE - IDLE / 2 {
            t += IDLE / 2;
            assert!(s.touch(&id, t).is_some());
        }
        assert!(s.touch(&id, t0 + MAX_AGE).is_none(), "max age");
    }

    #[test]
    fn the_map_holds_hashes_of_session_ids_only() {
        let s = Sessions::default();
        let id = s.create(1, Instant::now());
        let map = s.lock();
        assert!(!map.contains_key(&id));
        assert!(map.contains_key(&sha256_hex(id.as_bytes())));
    }

    #[test]
    fn flash_is_shown_once() {
        let s = Sessions::default();
        let id = s.create(1, Instant::now());
        s.set_flash(&id, Notice::ok("ok"));
        assert_eq!(s.take_flash(&id).map(|n| n.text), Some("ok".into()));
        assert!(s.take_flash(&id).is_none());
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let h = headers(&[("cookie", "a=1; pcv_ui=abc"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "pcv_ui"), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "pcv"), None);
        assert_eq!(cookie(&headers(&[("cookie", "pcv_ui=")]), "pcv_ui"), None);
    }

    #[test]
    fn cookie_flags() {
        let c = session_cookie("abc", false);
        assert_eq!(
            c.to_str().unwrap(),
            "pcv_ui=abc; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=28800"
        );
        assert!(session_cookie("abc", true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        assert!(clear_session_cookie(false)
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
    }

    #[test]
    fn https_is_recognised_behind_a_proxy() {
        let uri: Uri = "/ui".parse().unwrap();
        assert!(!came_over_https(&HeaderMap::new(), &uri));
        assert!(came_over_https(
            &headers(&[("x-forwarded-proto", "https")]),
            &uri
        ));
        assert!(came_over_https(
            &headers(&[("forwarded", "for=1.2.3.4;proto=https;by=x")]),
            &uri
        ));
        assert!(!came_over_https(
            &headers(&[("x-forwarded-proto", "http")]),
            &uri
        ));
    }

    #[test]
    fn cookies_are_secure_unless_the_listener_is_loopback() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for (listener, want) in [
            ("127.0.0.1", false),
            ("127.0.0.2", false),
            ("::1", false),
            ("0.0.0.0", true),
            ("::", true),
            ("10.1.2.3", true),
            ("192.168.1.10", true),
            ("203.0.113.5", true),
        ] {
            assert_eq!(secure_cookies(None, ip(listener)), want, "{listener}");
        }
        // The explicit setting wins both ways.
        assert!(secure_cookies(Some(true), ip("127.0.0.1")));
        assert!(!secure_cookies(Some(false), ip("0.0.0.0")));
    }

    #[test]
    fn origin_must_match_the_host() {
        let uri: Uri = "/ui/login".parse().unwrap();
        let ok = |h: &[(&'static str, &str)]| check_origin(&headers(h), &uri).is_ok();
        assert!(ok(&[("host", "127.0.0.1:8080")]));
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(ok(&[
            ("host", "layanan.example.id"),
            ("origin", "https://layanan.example.id")
        ]));
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://127.0.0.1:8080/ui/nakes/1")
        ]));
        assert!(ok(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-host", "layanan.example.id"),
            ("origin", "https://layanan.example.id")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "null")]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9090")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://evil.example/ui")
        ]));
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(!tokens_match("", ""));
    }
}
