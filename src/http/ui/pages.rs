//! The UI's handlers: sign-in and sign-out, search, a worker's timeline
//! with the resend and resolve-flag forms, and the campaign dashboard.
//!
//! Every page reads the store through the same functions the support API
//! uses (`search_workers`, `timeline`, `resend`, `resolve_flag`,
//! `campaign_report`), so masking and auditing happen in one place. Forms
//! follow post/redirect/get: a success stores a notice in the session and
//! redirects; a refusal renders the page again with the refusal in
//! Indonesian, the typed text kept, and a fitting status code.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Serialize;
use tera::Context;

use super::session::{
    came_over_https, check_form, check_origin, clear_login_cookie, clear_session_cookie, cookie,
    login_cookie, session_cookie, tokens_match, Staff, CSRF_REFUSED, LOGIN_COOKIE, SESSION_COOKIE,
    UI_ROLES,
};
use super::view::{page, percent, Notice, UiError, STYLESHEET};
use super::{chart, Ui};
use crate::campaign::{fmt_wib, Pace, THROUGHPUT_WINDOW_SECS};
use crate::domain::notice::FreeText;
use crate::domain::ProvinceCode;
use crate::http::AppState;
use crate::store::{
    now_ms, random_token, Role, SearchKind, SupportError, Timeline, TimelineMessage, TokenCheck,
};

/// Longest reason and note accepted (checked here to keep what was typed).
const REASON_MAX: usize = FreeText::REASON_MAX;
const NOTE_MAX: usize = FreeText::NOTE_MAX;

/// A posted form, read leniently: any body parses, and a missing field is
/// just absent, so a form without its CSRF token is refused by the CSRF
/// check (403) rather than by a parser (415/422).
pub struct FormData(HashMap<String, String>);

impl FormData {
    fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, UiError> {
        let body = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                UiError::BadRequest("Isian formulir terlalu panjang.".into())
            } else {
                UiError::BadRequest("Formulir tidak dapat dibaca.".into())
            }
        })?;
        Ok(FormData(
            url::form_urlencoded::parse(&body).into_owned().collect(),
        ))
    }
}

/// The sign-in form (documentation: [`FormData`] reads every form).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only.
pub struct LoginForm {
    /// The value of the `pcv_ui_login` cookie the form page set.
    csrf: String,
    /// An API token of role `support` or `operator`.
    token: String,
}

/// A form with only the session's CSRF token (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only.
pub struct CsrfForm {
    /// The session's CSRF token, from the page's hidden field.
    csrf: String,
}

/// The search form (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only.
pub struct SearchForm {
    /// The session's CSRF token, from the page's hidden field.
    csrf: String,
    /// A full NIK, a phone number in any form, or part of a name.
    q: String,
}

/// The resend form (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only.
pub struct ResendForm {
    /// The session's CSRF token, from the page's hidden field.
    csrf: String,
    /// Why the notice is sent again (audited), at most 500 characters.
    reason: String,
}

/// The resolve-flag form (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only.
pub struct ResolveForm {
    /// The session's CSRF token, from the page's hidden field.
    csrf: String,
    /// What was done about it (audited), at most 1000 characters.
    note: String,
}

/// The lift-a-lock form (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only.
pub struct LiftForm {
    /// The session's CSRF token, from the page's hidden field.
    csrf: String,
    /// Why the lock is lifted (audited), at most 500 characters.
    reason: String,
}

/// The approve-a-re-registration form (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only.
pub struct ApproveForm {
    /// The session's CSRF token, from the page's hidden field.
    csrf: String,
    /// How the new number was validated (audited), at most 1000 characters.
    note: String,
}

/// Query parameters of a GET.
fn query(raw: Option<String>) -> HashMap<String, String> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

fn parse_id(s: &str) -> Result<i64, UiError> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| UiError::NotFound("Halaman tidak ditemukan.".into()))
}

/// The signed-in user, for the header of every page.
#[derive(Serialize)]
struct UserView<'a> {
    name: &'a str,
    role: &'static str,
    /// Whether the help-desk pages are open to this user.
    support: bool,
    csrf: &'a str,
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Support => "petugas layanan",
        Role::Operator => "operator kampanye",
        Role::Chatbot => "chatbot",
        Role::Carrier => "operator seluler",
    }
}

/// The context every signed-in page starts from; takes the session's
/// pending notice.
fn context(ui: &Ui, staff: &Staff, nav: &str) -> Context {
    let mut ctx = Context::new();
    ctx.insert(
        "user",
        &UserView {
            name: &staff.name,
            role: role_label(staff.role),
            support: staff.role == Role::Support,
            csrf: &staff.csrf,
        },
    );
    ctx.insert("nav", nav);
    ctx.insert("flash", &ui.sessions.take_flash(&staff.sid));
    ctx
}

fn province_name(code: &str) -> String {
    ProvinceCode::parse(code)
        .map(|p| p.name().to_string())
        .unwrap_or_else(|_| code.to_string())
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// Store errors on read paths.
fn read_error(e: SupportError) -> UiError {
    match e {
        SupportError::NotFound(_) => {
            UiError::NotFound("Tenaga kesehatan atau data yang diminta tidak ditemukan.".into())
        }
        SupportError::Store(s) => s.into(),
        other => UiError::Internal(other.into()),
    }
}

// ------------------------------------------------------------ sign-in

/// The stylesheet; cacheable, it holds nothing personal.
#[utoipa::path(
    get,
    path = "/ui/static/app.css",
    tag = "ui",
    operation_id = "ui_stylesheet",
    responses((status = 200, description = "The UI's stylesheet (cacheable)", content_type = "text/css; charset=utf-8", body = String))
)]
pub async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

pub async fn not_found() -> UiError {
    UiError::NotFound("Halaman tidak ditemukan.".into())
}

/// Whether `s` looks like a nonce we issued (64 hex digits).
fn is_nonce(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sign-in page with `nonce` in its form and cookie.
fn login_page(
    ui: &Ui,
    headers: &HeaderMap,
    uri: &Uri,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let secure = ui.secure_cookies || came_over_https(headers, uri);
    let nonce = cookie(headers, LOGIN_COOKIE)
        .filter(|n| is_nonce(n))
        .map(str::to_string)
        .unwrap_or_else(random_token);
    let mut ctx = Context::new();
    ctx.insert("user", &None::<()>);
    ctx.insert("nav", "login");
    ctx.insert("flash", &notice);
    ctx.insert("csrf", &nonce);
    let mut resp = page(status, "login.html", &ctx);
    resp.headers_mut()
        .append(header::SET_COOKIE, login_cookie(&nonce, secure));
    resp
}

#[utoipa::path(
    get,
    path = "/ui/login",
    tag = "ui",
    operation_id = "ui_login_form",
    params(("keluar" = Option<String>, Query, description = "Present after signing out: the page says so")),
    responses(
        (status = 200, description = "The sign-in form; sets the `pcv_ui_login` cookie whose value is the form's `csrf` field", content_type = "text/html; charset=utf-8", body = String),
        (status = 303, description = "Already signed in: to `/ui`"),
    )
)]
pub async fn login_form(
    Extension(ui): Extension<Ui>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    if cookie(&headers, SESSION_COOKIE).is_some_and(|sid| ui.sessions.is_live(sid, Instant::now()))
    {
        return see_other("/ui");
    }
    let notice = query(raw)
        .contains_key("keluar")
        .then(|| Notice::ok("Anda sudah keluar. Sampai jumpa."));
    login_page(&ui, &headers, &uri, StatusCode::OK, notice)
}

/// Signs in with an API token of role `support` or `operator`.
#[utoipa::path(
    post,
    path = "/ui/login",
    tag = "ui",
    operation_id = "ui_login",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: sets the `pcv_ui` session cookie (HttpOnly, SameSite=Strict); to `/ui` (support) or `/ui/kampanye` (operator)"),
        (status = 400, description = "No token typed", content_type = "text/html; charset=utf-8", body = String),
        (status = 401, description = "Unknown or revoked token", content_type = "text/html; charset=utf-8", body = String),
        (status = 403, description = "CSRF or Origin check failed, or a role that may not sign in", content_type = "text/html; charset=utf-8", body = String),
    )
)]
pub async fn login(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    headers: HeaderMap,
    uri: Uri,
    form: FormData,
) -> Result<Response, UiError> {
    check_origin(&headers, &uri)?;
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !tokens_match(nonce, form.get("csrf").unwrap_or("")) {
        return Err(UiError::Forbidden(CSRF_REFUSED.into()));
    }
    let refuse = |status: StatusCode, text: &str| {
        login_page(&ui, &headers, &uri, status, Some(Notice::error(text)))
    };
    let presented = form.get("token").unwrap_or("").trim();
    if presented.is_empty() {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "Tempelkan token layanan Anda di kolom Token.",
        ));
    }
    // A string not shaped like a token is refused without a look-up.
    let verdict = app.store.check_token(presented).await?;
    let token = match (verdict.check, verdict.token) {
        (TokenCheck::Valid, Some(t)) => t,
        (TokenCheck::Revoked, _) => {
            tracing::info!("support UI sign-in refused: revoked token");
            return Ok(refuse(
                StatusCode::UNAUTHORIZED,
                "Token ini sudah dicabut. Minta token baru kepada admin.",
            ));
        }
        _ => {
            tracing::info!("support UI sign-in refused: unknown token");
            return Ok(refuse(
                StatusCode::UNAUTHORIZED,
                "Token tidak dikenal. Periksa lagi token yang Anda tempelkan.",
            ));
        }
    };
    if !UI_ROLES.contains(&token.role) {
        tracing::info!(token = %token.name, role = %token.role, "support UI sign-in refused: role");
        return Ok(refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "Token dengan peran {} tidak boleh masuk ke layanan ini. \
                 Gunakan token dengan peran support (petugas layanan) atau operator.",
                token.role
            ),
        ));
    }
    // A fresh session id at every sign-in: a session id planted before
    // sign-in is worth nothing after it.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        ui.sessions.remove(old);
    }
    let sid = ui.sessions.create(token.id, Instant::now());
    if let Err(e) = app.store.touch_token(token.id, now_ms()).await {
        tracing::debug!(error = %e, "recording token use failed");
    }
    tracing::info!(token = %token.name, role = %token.role, "support UI sign-in");
    let secure = ui.secure_cookies || came_over_https(&headers, &uri);
    let mut resp = see_other(if token.role == Role::Support {
        "/ui"
    } else {
        "/ui/kampanye"
    });
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, session_cookie(&sid, secure));
    h.append(header::SET_COOKIE, clear_login_cookie(secure));
    Ok(resp)
}

#[utoipa::path(
    post,
    path = "/ui/keluar",
    tag = "ui",
    operation_id = "ui_logout",
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out (or not signed in): to `/ui/login`"),
        (status = 403, description = "CSRF or Origin check failed", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn logout(
    Extension(ui): Extension<Ui>,
    staff: Staff,
    headers: HeaderMap,
    uri: Uri,
    form: FormData,
) -> Result<Response, UiError> {
    check_form(&headers, &uri, &staff.csrf, form.get("csrf"))?;
    ui.sessions.remove(&staff.sid);
    tracing::info!(token = %staff.name, "support UI sign-out");
    let secure = ui.secure_cookies || came_over_https(&headers, &uri);
    let mut resp = see_other("/ui/login?keluar=1");
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(secure));
    Ok(resp)
}

// ------------------------------------------------------------ search

#[derive(Serialize)]
struct SearchRow {
    id: i64,
    name: String,
    nik_masked: String,
    phone_masked: String,
    province: String,
    profession: String,
    validated: bool,
    eligible: bool,
    open_flags: i64,
    last_status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/ui",
    tag = "ui",
    operation_id = "ui_home",
    responses(
        (status = 200, description = "The search page (support)", content_type = "text/html; charset=utf-8", body = String),
        (status = 303, description = "Not signed in: to `/ui/login`; an operator: to `/ui/kampanye`"),
    ),
    security(("session" = []))
)]
pub async fn home(Extension(ui): Extension<Ui>, staff: Staff) -> Result<Response, UiError> {
    if staff.role != Role::Support {
        return Ok(see_other("/ui/kampanye"));
    }
    let mut ctx = context(&ui, &staff, "cari");
    ctx.insert("q", "");
    Ok(page(StatusCode::OK, "search.html", &ctx))
}

/// `GET /ui/cari`: searching is a POST (below), so a NIK or phone number
/// never sits in a URL (browser history, proxy logs, Referer). An old link
/// or bookmark with `?q=` is sent to the empty search page; its query is
/// not run.
#[utoipa::path(
    get,
    path = "/ui/cari",
    tag = "ui",
    operation_id = "ui_search_get",
    responses(
        (status = 303, description = "Always: to `/ui` (the search form); a `?q=` is ignored, never run"),
    )
)]
pub async fn search_get() -> Response {
    see_other("/ui")
}

/// `POST /ui/cari` (field `q`, with the CSRF token): by full NIK, phone
/// number, or part of a name; the results are this response. Result links
/// carry only the worker's numeric id.
#[utoipa::path(
    post,
    path = "/ui/cari",
    tag = "ui",
    operation_id = "ui_search",
    request_body(content = SearchForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Matching health workers, masked", content_type = "text/html; charset=utf-8", body = String),
        (status = 303, description = "Not signed in, or the session ended: to `/ui/login`"),
        (status = 400, description = "A query too short, too long, or too broad to search in time", content_type = "text/html; charset=utf-8", body = String),
        (status = 403, description = "CSRF or Origin check failed, or an operator token: help-desk pages are for support staff", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn search(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
    headers: HeaderMap,
    uri: Uri,
    form: FormData,
) -> Result<Response, UiError> {
    check_form(&headers, &uri, &staff.csrf, form.get("csrf"))?;
    staff.require_support()?;
    let q = form.get("q").unwrap_or("").trim();
    let mut ctx = context(&ui, &staff, "cari");
    ctx.insert("q", q);
    if q.is_empty() {
        return Ok(page(StatusCode::OK, "search.html", &ctx));
    }
    let (kind, results) = match app.store.search_workers(q).await {
        Ok(found) => (found.kind, found.workers),
        Err(SupportError::Invalid { .. }) => {
            ctx.insert(
                "error",
                "Masukkan NIK lengkap (16 digit), nomor telepon, atau minimal 3 huruf nama \
                 (paling banyak 100 karakter).",
            );
            return Ok(page(StatusCode::BAD_REQUEST, "search.html", &ctx));
        }
        Err(e) => return Err(read_error(e)),
    };
    let ids: Vec<i64> = results.iter().map(|r| r.id).collect();
    let mut names = app.store.worker_names(&ids).await?;
    let rows: Vec<SearchRow> = results
        .into_iter()
        .map(|r| SearchRow {
            name: names.remove(&r.id).unwrap_or(r.name_masked),
            province: province_name(&r.province_code),
            id: r.id,
            nik_masked: r.nik_masked,
            phone_masked: r.phone_masked,
            profession: r.profession,
            validated: r.validated,
            eligible: r.eligible,
            open_flags: r.open_flags,
            last_status: r.last_status,
        })
        .collect();
    tracing::info!(token = %staff.name, results = rows.len(), "support UI search");
    ctx.insert(
        "kind",
        match kind {
            SearchKind::Nik => "NIK",
            SearchKind::Phone => "nomor telepon",
            SearchKind::Name => "nama",
        },
    );
    ctx.insert("limit", &app.store.limits().search_rows);
    ctx.insert("results", &rows);
    Ok(page(StatusCode::OK, "search.html", &ctx))
}

// ------------------------------------------------------------ worker

/// What the forms on a worker page show again after a refusal.
#[derive(Default)]
struct Typed<'a> {
    reason: &'a str,
    /// The flag whose note is being typed, with the note.
    note: Option<(i64, &'a str)>,
}

#[derive(Serialize)]
struct InFlight {
    id: i64,
    generation: i32,
    status: String,
}

/// The newest message still queued, being sent, or awaiting its receipt.
fn in_flight(messages: &[TimelineMessage]) -> Option<InFlight> {
    messages
        .iter()
        .filter(|m| matches!(m.status.as_str(), "queued" | "sending" | "sent"))
        .max_by_key(|m| m.id)
        .map(|m| InFlight {
            id: m.id,
            generation: m.generation,
            status: m.status.clone(),
        })
}

/// Renders a worker's page: summary, forms, and the whole timeline,
/// newest first.
async fn worker_page(
    app: &AppState,
    mut ctx: Context,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
    typed: Typed<'_>,
) -> Result<Response, UiError> {
    let t: Timeline = app.store.timeline(id).await.map_err(read_error)?;
    let w = app.store.worker(id).await.map_err(read_error)?;
    let open_flags = t.flags.iter().filter(|f| f.resolved_at.is_none()).count();
    ctx.insert("in_flight", &in_flight(&t.messages));
    ctx.insert("name", &w.full_name);
    ctx.insert("province", &province_name(&t.worker.province_code));
    ctx.insert("worker", &t.worker);
    ctx.insert("open_flag_count", &open_flags);
    ctx.insert("messages", &t.messages.iter().rev().collect::<Vec<_>>());
    ctx.insert("flags", &t.flags.iter().rev().collect::<Vec<_>>());
    ctx.insert(
        "phone_changes",
        &t.phone_changes.iter().rev().collect::<Vec<_>>(),
    );
    ctx.insert("resends", &t.resends.iter().rev().collect::<Vec<_>>());
    ctx.insert("audit", &t.audit.iter().rev().collect::<Vec<_>>());
    ctx.insert(
        "suppressions",
        &t.suppressions.iter().rev().collect::<Vec<_>>(),
    );
    ctx.insert(
        "rereg_locks",
        &app.store
            .reregistration_locks(Some(id), false)
            .await
            .map_err(read_error)?,
    );
    ctx.insert(
        "reregistrations",
        &app.store
            .reregistrations(None, Some(id), 20)
            .await
            .map_err(read_error)?,
    );
    ctx.insert(
        "resend_limit",
        &app.store.limits().resends_per_number_per_day,
    );
    ctx.insert("reason_max", &REASON_MAX);
    ctx.insert("note_max", &NOTE_MAX);
    ctx.insert("reason", typed.reason);
    ctx.insert("note_flag", &typed.note.map(|n| n.0));
    ctx.insert("note", typed.note.map(|n| n.1).unwrap_or(""));
    ctx.insert("notice", &notice);
    Ok(page(status, "worker.html", &ctx))
}

#[utoipa::path(
    get,
    path = "/ui/nakes/{id}",
    tag = "ui",
    operation_id = "ui_worker",
    params(("id" = i64, Path, description = "Health worker id")),
    responses(
        (status = 200, description = "The worker's timeline, with the resend and resolve-flag forms", content_type = "text/html; charset=utf-8", body = String),
        (status = 303, description = "Not signed in, or the session ended: to `/ui/login`"),
        (status = 403, description = "Signed in with an operator token: help-desk pages are for support staff", content_type = "text/html; charset=utf-8", body = String),
        (status = 404, description = "No such worker", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn worker(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    staff.require_support()?;
    let id = parse_id(&id)?;
    let ctx = context(&ui, &staff, "cari");
    worker_page(&app, ctx, id, StatusCode::OK, None, Typed::default()).await
}

/// Why a resend or resolution was refused, in Indonesian, with its status.
async fn refusal(
    app: &AppState,
    worker: i64,
    e: SupportError,
) -> Result<(StatusCode, String), UiError> {
    Ok(match e {
        SupportError::InFlight(_) => (
            StatusCode::CONFLICT,
            "Belum bisa kirim ulang: pesan sebelumnya untuk nakes ini masih dalam proses \
             (antre, sedang dikirim, atau menunggu laporan terkirim dari operator seluler). \
             Kirim ulang setelah pesan itu punya hasil akhir."
                .into(),
        ),
        SupportError::Limit { retry_at, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Batas harian tercapai: nomor ini sudah mendapat {} \
                 pesan tambahan dalam 24 jam terakhir. Agar pengirim tidak diblokir operator \
                 seluler, kirim ulang berikutnya baru bisa setelah {}.",
                app.store.limits().resends_per_number_per_day,
                fmt_wib(retry_at)
            ),
        ),
        SupportError::NotEligible(_) => {
            let w = app.store.worker_summary(worker).await.map_err(read_error)?;
            let why = if !w.validated {
                "nakes ini belum tervalidasi"
            } else if !w.eligible {
                "nakes ini tidak termasuk penerima vaksinasi tahap ini"
            } else {
                "tidak ada kampanye yang masih berlaku untuk nakes ini, jadi tidak ada pesan \
                 yang bisa dikirim ulang"
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Tidak bisa kirim ulang: {why}."),
            )
        }
        SupportError::Conflict(_) => (
            StatusCode::CONFLICT,
            "Tanda ini sudah diselesaikan sebelumnya; tidak ada yang diubah.".into(),
        ),
        SupportError::Invalid { field, reason } => (
            StatusCode::BAD_REQUEST,
            format!("Isian tidak valid ({field}): {reason}."),
        ),
        other => return Err(read_error(other)),
    })
}

/// A refused form: the status and the message shown above the form.
type Refused = (StatusCode, String);

/// A form's free-text field (a reason, a note): required, at most `max`
/// characters. The refusal names the field (`label`) and says what to
/// write (`hint`), in the staff's language.
fn required_text<'a>(
    text: &'a str,
    label: &str,
    hint: &str,
    max: usize,
) -> Result<&'a str, Refused> {
    if text.is_empty() {
        Err((
            StatusCode::BAD_REQUEST,
            format!("{label} wajib diisi: {hint}."),
        ))
    } else if text.chars().count() > max {
        Err((
            StatusCode::BAD_REQUEST,
            format!("{label} terlalu panjang: paling banyak {max} karakter."),
        ))
    } else {
        Ok(text)
    }
}

/// The worker's page again, with the refusal above the form and what the
/// staff member typed still in it.
async fn refused_page(
    app: &AppState,
    ui: &Ui,
    staff: &Staff,
    id: i64,
    (status, message): Refused,
    typed: Typed<'_>,
) -> Result<Response, UiError> {
    let ctx = context(ui, staff, "cari");
    worker_page(app, ctx, id, status, Some(Notice::error(message)), typed).await
}

/// `POST /ui/nakes/{id}/kirim-ulang`: a new message generation, audited
/// with the token's name and the reason.
#[utoipa::path(
    post,
    path = "/ui/nakes/{id}/kirim-ulang",
    tag = "ui",
    operation_id = "ui_resend",
    params(("id" = i64, Path, description = "Health worker id")),
    request_body(content = ResendForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Queued and audited: to the worker's page. Not signed in, or the session ended: to `/ui/login`"),
        (status = 400, description = "Reason missing or too long", content_type = "text/html; charset=utf-8", body = String),
        (status = 403, description = "CSRF or Origin check failed, or not a support session", content_type = "text/html; charset=utf-8", body = String),
        (status = 404, description = "No such worker", content_type = "text/html; charset=utf-8", body = String),
        (status = 409, description = "A notice is still in flight", content_type = "text/html; charset=utf-8", body = String),
        (status = 422, description = "Not validated, not eligible, or no campaign to resend in", content_type = "text/html; charset=utf-8", body = String),
        (status = 429, description = "Per-number resend limit reached", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn resend(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    form: FormData,
) -> Result<Response, UiError> {
    check_form(&headers, &uri, &staff.csrf, form.get("csrf"))?;
    staff.require_support()?;
    let id = parse_id(&id)?;
    let reason = form.get("reason").unwrap_or("").trim();
    let refused = match required_text(
        reason,
        "Alasan",
        "tulis mengapa pesan perlu dikirim ulang",
        REASON_MAX,
    ) {
        Err(refused) => refused,
        Ok(reason) => match async {
            let (who, why) = (FreeText::staff(&staff.name)?, FreeText::reason(reason)?);
            app.store.resend(id, &who, &why).await
        }
        .await
        {
            Ok(n) => {
                tracing::info!(token = %staff.name, worker.id = id, message.id = n.message_id,
                    "support UI resend");
                ui.sessions.set_flash(
                    &staff.sid,
                    Notice::ok(format!(
                        "Pesan dijadwalkan ulang: pesan #{} (generasi {}) di kampanye \"{}\" \
                         ke {}, dikirim mulai {}.",
                        n.message_id,
                        n.generation,
                        n.campaign_name,
                        n.phone_masked,
                        n.next_attempt_wib
                    )),
                );
                return Ok(see_other(&format!("/ui/nakes/{id}")));
            }
            Err(e) => refusal(&app, id, e).await?,
        },
    };
    refused_page(&app, &ui, &staff, id, refused, Typed { reason, note: None }).await
}

/// `POST /ui/nakes/{id}/tanda/{flag}/selesai`: resolves one of the
/// worker's open flags with a note, audited.
#[utoipa::path(
    post,
    path = "/ui/nakes/{id}/tanda/{flag}/selesai",
    tag = "ui",
    operation_id = "ui_resolve_flag",
    params(
        ("id" = i64, Path, description = "Health worker id"),
        ("flag" = i64, Path, description = "One of the worker's flags"),
    ),
    request_body(content = ResolveForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Resolved and audited: to the worker's page. Not signed in, or the session ended: to `/ui/login`"),
        (status = 400, description = "Note missing or too long", content_type = "text/html; charset=utf-8", body = String),
        (status = 403, description = "CSRF or Origin check failed, or not a support session", content_type = "text/html; charset=utf-8", body = String),
        (status = 404, description = "No such worker, or not this worker's flag", content_type = "text/html; charset=utf-8", body = String),
        (status = 409, description = "Already resolved", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn resolve_flag(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
    Path((id, flag)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    form: FormData,
) -> Result<Response, UiError> {
    check_form(&headers, &uri, &staff.csrf, form.get("csrf"))?;
    staff.require_support()?;
    let id = parse_id(&id)?;
    let flag = parse_id(&flag)?;
    let t = app.store.timeline(id).await.map_err(read_error)?;
    if !t.flags.iter().any(|f| f.id == flag) {
        return Err(UiError::NotFound(
            "Tanda ini tidak ada pada nakes tersebut.".into(),
        ));
    }
    let note = form.get("note").unwrap_or("").trim();
    let refused = match required_text(note, "Catatan", "tulis apa yang sudah dilakukan", NOTE_MAX) {
        Err(refused) => refused,
        Ok(note) => match async {
            let (who, what) = (FreeText::staff(&staff.name)?, FreeText::note(note)?);
            app.store.resolve_flag(flag, &who, &what).await
        }
        .await
        {
            Ok(f) => {
                tracing::info!(token = %staff.name, worker.id = id, flag.id = flag,
                    "support UI flag resolved");
                ui.sessions.set_flash(
                    &staff.sid,
                    Notice::ok(format!(
                        "Tanda #{} ({}) sudah diselesaikan.",
                        f.id,
                        super::view::reason_label(&f.reason)
                    )),
                );
                return Ok(see_other(&format!("/ui/nakes/{id}")));
            }
            Err(e) => refusal(&app, id, e).await?,
        },
    };
    let typed = Typed {
        reason: "",
        note: Some((flag, note)),
    };
    refused_page(&app, &ui, &staff, id, refused, typed).await
}

/// `POST /ui/nakes/{id}/kunci/{lock}/buka`: lifts a failed-attempt lock
/// on this worker's re-registration, audited with the reason.
#[utoipa::path(
    post,
    path = "/ui/nakes/{id}/kunci/{lock}/buka",
    tag = "ui",
    operation_id = "ui_lift_lock",
    params(
        ("id" = i64, Path, description = "Health worker id"),
        ("lock" = i64, Path, description = "One of the worker's re-registration locks"),
    ),
    request_body(content = LiftForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Lifted and audited: to the worker's page. Not signed in, or the session ended: to `/ui/login`"),
        (status = 400, description = "Reason missing or too long", content_type = "text/html; charset=utf-8", body = String),
        (status = 403, description = "CSRF or Origin check failed, or not a support session", content_type = "text/html; charset=utf-8", body = String),
        (status = 404, description = "No such worker, or not this worker's lock", content_type = "text/html; charset=utf-8", body = String),
        (status = 409, description = "Already lifted or expired", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn lift_lock(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
    Path((id, lock)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    form: FormData,
) -> Result<Response, UiError> {
    check_form(&headers, &uri, &staff.csrf, form.get("csrf"))?;
    staff.require_support()?;
    let id = parse_id(&id)?;
    let lock = parse_id(&lock)?;
    // Only a lock shown on this worker's page: the form cannot reach
    // another worker's (or a number's) lock.
    let locks = app
        .store
        .reregistration_locks(Some(id), false)
        .await
        .map_err(read_error)?;
    if !locks.iter().any(|l| l.id == lock) {
        return Err(UiError::NotFound(
            "Kunci ini tidak ada pada nakes tersebut.".into(),
        ));
    }
    let reason = form.get("reason").unwrap_or("").trim();
    let refused = match required_text(
        reason,
        "Alasan",
        "tulis mengapa kunci ini dibuka",
        REASON_MAX,
    ) {
        Err(refused) => refused,
        Ok(reason) => match async {
            let (who, why) = (FreeText::staff(&staff.name)?, FreeText::reason(reason)?);
            app.store.lift_reregistration_lock(lock, &who, &why).await
        }
        .await
        {
            Ok(_) => {
                tracing::info!(token = %staff.name, worker.id = id, lock.id = lock,
                    "support UI re-registration lock lifted");
                ui.sessions.set_flash(
                    &staff.sid,
                    Notice::ok(format!(
                        "Kunci #{lock} sudah dibuka: nakes ini bisa mencoba registrasi ulang lagi."
                    )),
                );
                return Ok(see_other(&format!("/ui/nakes/{id}")));
            }
            Err(SupportError::Conflict(_)) => (
                StatusCode::CONFLICT,
                "Kunci ini sudah tidak berlaku; tidak ada yang diubah.".into(),
            ),
            Err(e) => refusal(&app, id, e).await?,
        },
    };
    refused_page(&app, &ui, &staff, id, refused, Typed::default()).await
}

/// `POST /ui/nakes/{id}/registrasi-ulang/{rereg}/setujui`: approves this
/// worker's pending re-registration (the number goes on file and the notice
/// is queued to it), audited with the note.
#[utoipa::path(
    post,
    path = "/ui/nakes/{id}/registrasi-ulang/{rereg}/setujui",
    tag = "ui",
    operation_id = "ui_approve_reregistration",
    params(
        ("id" = i64, Path, description = "Health worker id"),
        ("rereg" = i64, Path, description = "One of the worker's re-registrations"),
    ),
    request_body(content = ApproveForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Approved and audited: to the worker's page. Not signed in, or the session ended: to `/ui/login`"),
        (status = 400, description = "Note missing or too long", content_type = "text/html; charset=utf-8", body = String),
        (status = 403, description = "CSRF or Origin check failed, or not a support session", content_type = "text/html; charset=utf-8", body = String),
        (status = 404, description = "No such worker, or not this worker's re-registration", content_type = "text/html; charset=utf-8", body = String),
        (status = 409, description = "No longer pending", content_type = "text/html; charset=utf-8", body = String),
        (status = 429, description = "Per-number notice limit reached", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn approve_reregistration(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
    Path((id, rereg)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    form: FormData,
) -> Result<Response, UiError> {
    check_form(&headers, &uri, &staff.csrf, form.get("csrf"))?;
    staff.require_support()?;
    let id = parse_id(&id)?;
    let rereg = parse_id(&rereg)?;
    let mine = app
        .store
        .reregistrations(None, Some(id), 1000)
        .await
        .map_err(read_error)?;
    if !mine.iter().any(|r| r.id == rereg) {
        return Err(UiError::NotFound(
            "Permintaan registrasi ulang ini tidak ada pada nakes tersebut.".into(),
        ));
    }
    let note = form.get("note").unwrap_or("").trim();
    let refused = match required_text(
        note,
        "Catatan",
        "tulis bagaimana nomor baru ini divalidasi",
        NOTE_MAX,
    ) {
        Err(refused) => refused,
        Ok(note) => match async {
            let (who, what) = (FreeText::staff(&staff.name)?, FreeText::note(note)?);
            app.store.approve_reregistration(rereg, &who, &what).await
        }
        .await
        {
            Ok(o) => {
                tracing::info!(token = %staff.name, worker.id = id, reregistration.id = rereg,
                    "support UI re-registration approved");
                let sent = o
                    .notice
                    .as_ref()
                    .map(|n| {
                        format!(
                            " SMS dijadwalkan ke {}, mulai {}.",
                            n.phone_masked, n.next_attempt_wib
                        )
                    })
                    .unwrap_or_default();
                ui.sessions.set_flash(
                    &staff.sid,
                    Notice::ok(format!(
                        "Registrasi ulang #{rereg} disetujui: nomor {} sekarang tercatat.{sent}",
                        o.phone_masked
                    )),
                );
                return Ok(see_other(&format!("/ui/nakes/{id}")));
            }
            Err(SupportError::Conflict(_)) => (
                StatusCode::CONFLICT,
                "Permintaan ini sudah tidak menunggu validasi; tidak ada yang diubah.".into(),
            ),
            Err(e) => refusal(&app, id, e).await?,
        },
    };
    refused_page(&app, &ui, &staff, id, refused, Typed::default()).await
}

// ------------------------------------------------------------ campaigns

#[derive(Serialize)]
struct CampaignRow {
    id: i64,
    name: String,
    template: String,
    status: String,
    enqueued: i64,
    scheduled_at: i64,
    /// Share of messages with an outcome, for running and paused campaigns.
    done_share: Option<f64>,
}

#[utoipa::path(
    get,
    path = "/ui/kampanye",
    tag = "ui",
    operation_id = "ui_campaigns",
    responses(
        (status = 200, description = "Campaign dashboard (support and operator)", content_type = "text/html; charset=utf-8", body = String),
        (status = 303, description = "Not signed in, or the session ended: to `/ui/login`"),
    ),
    security(("session" = []))
)]
pub async fn campaigns(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
) -> Result<Response, UiError> {
    let mut rows = vec![];
    for c in app.store.campaigns().await?.into_iter().rev() {
        let status = c.status.to_string();
        // A progress bar for every campaign that is under way (one report
        // statement each; finished ones need none).
        let done_share = if matches!(status.as_str(), "running" | "paused") && c.enqueued > 0 {
            let r = app.store.campaign_report(c.id).await?;
            Some((r.enqueued - r.in_flight()) as f64 / r.enqueued.max(1) as f64)
        } else {
            None
        };
        rows.push(CampaignRow {
            id: c.id,
            name: c.name,
            template: c.template,
            status,
            enqueued: c.enqueued,
            scheduled_at: c.scheduled_at,
            done_share,
        });
    }
    let mut ctx = context(&ui, &staff, "kampanye");
    ctx.insert("campaigns", &rows);
    Ok(page(StatusCode::OK, "campaigns.html", &ctx))
}

/// Buckets of the progress chart: a point every 1/48 of the campaign so
/// far (every half hour of a day-long campaign).
const PROGRESS_BUCKETS: i64 = 48;

/// The campaign's progress over time as an SVG ([`chart::progress`]): from
/// its start (or its first outcome, if earlier) to its last outcome, or to
/// now while it runs; cancelled messages are out of the total.
async fn progress_chart(
    app: &AppState,
    c: &crate::store::Campaign,
    cancelled: i64,
) -> Result<String, UiError> {
    let Some((first, last)) = app.store.finals_span(c.id).await? else {
        return Ok(chart::progress(&[], "—", "—"));
    };
    let from = c.scheduled_at.min(first);
    let active = matches!(c.status.to_string().as_str(), "running" | "paused");
    let to = if active { now_ms().max(last) } else { last }.max(from + 1);
    let width = ((to - from) + PROGRESS_BUCKETS - 1) / PROGRESS_BUCKETS;
    let total = c.enqueued - cancelled;
    let mut delivered = vec![0i64; PROGRESS_BUCKETS as usize];
    let mut not_delivered = vec![0i64; PROGRESS_BUCKETS as usize];
    for (bucket, status, n) in app.store.finals_by_bucket(c.id, from, width).await? {
        let b = bucket.clamp(0, PROGRESS_BUCKETS - 1) as usize;
        match status.as_str() {
            "delivered" => delivered[b] += n,
            "cancelled" => {}
            _ => not_delivered[b] += n,
        }
    }
    let mut points = vec![chart::ProgressPoint {
        at: from,
        delivered: 0,
        not_delivered: 0,
        pending: total,
    }];
    let (mut d, mut nd) = (0, 0);
    for b in 0..PROGRESS_BUCKETS as usize {
        d += delivered[b];
        nd += not_delivered[b];
        points.push(chart::ProgressPoint {
            at: (from + (b as i64 + 1) * width).min(to),
            delivered: d,
            not_delivered: nd,
            pending: (total - d - nd).max(0),
        });
    }
    Ok(chart::progress(&points, &fmt_wib(from), &fmt_wib(to)))
}

/// Minutes after midnight as `HH:MM` (1440 is `24:00`).
fn hhmm(min: i32) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

/// Seconds as Indonesian words: `1 jam 5 menit`, `3 menit`, `< 1 menit`.
fn duration_words(secs: f64) -> String {
    let mins = (secs / 60.0).round() as i64;
    match mins {
        m if m < 1 => "kurang dari 1 menit".into(),
        m if m < 60 => format!("{m} menit"),
        m => format!("{} jam {} menit", m / 60, m % 60),
    }
}

#[derive(Serialize)]
struct Count {
    key: String,
    count: i64,
}

#[derive(Serialize)]
struct ProvinceRow {
    code: String,
    name: String,
    messages: i64,
    finished: i64,
    delivered: i64,
    rate: Option<f64>,
}

/// `GET /ui/kampanye/{id}`: progress, throughput, ETA, flags, the
/// delivery rate per province, and non-recipients reached after outreach.
#[utoipa::path(
    get,
    path = "/ui/kampanye/{id}",
    tag = "ui",
    operation_id = "ui_campaign",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Progress, throughput, ETA, flags and delivery rate per province", content_type = "text/html; charset=utf-8", body = String),
        (status = 303, description = "Not signed in, or the session ended: to `/ui/login`"),
        (status = 404, description = "No such campaign", content_type = "text/html; charset=utf-8", body = String),
    ),
    security(("session" = []))
)]
pub async fn campaign(
    State(app): State<AppState>,
    Extension(ui): Extension<Ui>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = parse_id(&id)?;
    let c = app.store.campaign(id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => {
            UiError::NotFound(format!("Kampanye #{id} tidak ada."))
        }
        other => other.into(),
    })?;
    let r = app.store.campaign_report(id).await?;
    // The same throughput and ETA as the operator API and `campaign show`.
    let pace = Pace::of(&app.store, &c, &r).await?;
    let provinces: Vec<ProvinceRow> = app
        .store
        .province_delivery(id)
        .await?
        .into_iter()
        .map(|p| ProvinceRow {
            rate: p.rate(),
            code: p.province_code,
            name: p.province_name,
            messages: p.messages,
            finished: p.finished,
            delivered: p.delivered,
        })
        .collect();
    let finished: i64 = provinces.iter().map(|p| p.finished).sum();
    let delivered: i64 = provinces.iter().map(|p| p.delivered).sum();
    let done = r.enqueued - r.in_flight();

    let mut ctx = context(&ui, &staff, "kampanye");
    ctx.insert("campaign", &c);
    ctx.insert(
        "window",
        &format!("{}–{}", hhmm(c.window_start), hhmm(c.window_end)),
    );
    ctx.insert("enqueued", &r.enqueued);
    ctx.insert("sent", &r.sent);
    ctx.insert("in_flight", &r.in_flight());
    ctx.insert("done", &done);
    ctx.insert(
        "done_share",
        &(r.enqueued > 0).then(|| done as f64 / r.enqueued as f64),
    );
    ctx.insert(
        "by_status",
        &r.by_status
            .iter()
            .map(|(k, v)| Count {
                key: k.clone(),
                count: *v,
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("flagged", &r.flagged());
    ctx.insert("suppressed", &r.suppressed);
    ctx.insert(
        "progress_chart",
        &progress_chart(&app, &c, r.status(crate::status::Status::Cancelled)).await?,
    );
    let by_reason: Vec<(String, i64)> = r
        .flagged_by_reason
        .iter()
        .map(|(k, v)| (super::view::reason_label(k).to_string(), *v))
        .collect();
    ctx.insert(
        "flags_chart",
        &chart::bars(
            "grafik-alasan",
            "Tanda bukan penerima terbuka, per alasan",
            &by_reason,
        ),
    );
    ctx.insert(
        "flagged_by_reason",
        &r.flagged_by_reason
            .iter()
            .map(|(k, v)| Count {
                key: k.clone(),
                count: *v,
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "throughput",
        &format!("{:.1}", pace.throughput_per_sec).replace('.', ","),
    );
    ctx.insert("throughput_window", &THROUGHPUT_WINDOW_SECS);
    ctx.insert("eta", &pace.eta_seconds.map(duration_words));
    ctx.insert("eta_wib", &pace.eta_wib);
    ctx.insert("provinces", &provinces);
    ctx.insert("finished", &finished);
    ctx.insert("delivered", &delivered);
    ctx.insert(
        "delivery_rate",
        &(finished > 0).then(|| percent(delivered as f64 / finished as f64)),
    );
    // Non-recipients finally reached (README, "Outreach outcomes").
    let outreach = app.store.outreach_report(id).await?;
    ctx.insert("outreach_share", &outreach.reached_share().map(percent));
    ctx.insert("outreach", &outreach);
    Ok(page(StatusCode::OK, "campaign.html", &ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration_words(10.0), "kurang dari 1 menit");
        assert_eq!(duration_words(180.0), "3 menit");
        assert_eq!(duration_words(3900.0), "1 jam 5 menit");
        assert_eq!(hhmm(480), "08:00");
        assert_eq!(hhmm(1440), "24:00");
    }

    #[test]
    fn only_positive_numeric_ids() {
        assert_eq!(parse_id("12").unwrap(), 12);
        for bad in ["0", "-1", "x", "1e3", ""] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }
}
