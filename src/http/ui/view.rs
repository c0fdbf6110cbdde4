//! Rendering: the embedded tera templates, the filters they use, the
//! Indonesian labels for statuses and reasons, and [`UiError`], the one
//! error type of the UI's handlers, which renders as a page.
//!
//! Autoescaping is on for every template (they all end in `.html`), so a
//! name such as `<script>` or `{{ x }}` is printed as written. No template
//! uses `| safe`.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Serialize;
use tera::{Context, Tera, Value};

use crate::campaign::fmt_wib;
use crate::store::scrub;

/// The UI's templates, embedded so the binary works from any directory.
/// Paths are relative to this file.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/ui/base.html")),
    (
        "login.html",
        include_str!("../../../templates/ui/login.html"),
    ),
    (
        "search.html",
        include_str!("../../../templates/ui/search.html"),
    ),
    (
        "worker.html",
        include_str!("../../../templates/ui/worker.html"),
    ),
    (
        "campaigns.html",
        include_str!("../../../templates/ui/campaigns.html"),
    ),
    (
        "campaign.html",
        include_str!("../../../templates/ui/campaign.html"),
    ),
    (
        "error.html",
        include_str!("../../../templates/ui/error.html"),
    ),
];

/// The one stylesheet, served at `/ui/static/app.css`.
pub const STYLESHEET: &str = include_str!("../../../templates/ui/app.css");

/// The templates, parsed once. They are part of the binary, so a parse
/// error is a bug caught by `templates_parse_and_escape` below, not
/// something a deployment can cause.
static TERA: LazyLock<Tera> = LazyLock::new(|| build().expect("embedded UI templates parse"));

fn build() -> tera::Result<Tera> {
    let mut tera = Tera::default();
    // Every template ends in .html: autoescaping is on for all of them.
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_templates(TEMPLATES.iter().copied())?;
    tera.register_filter("wib", filter_wib);
    tera.register_filter("status", filter_status);
    tera.register_filter("alasan", filter_reason);
    tera.register_filter("label", filter_label);
    tera.register_filter("persen", filter_percent);
    tera.register_filter("angka", filter_number);
    Ok(tera)
}

/// Renders `template` with `ctx` as an HTML page with `status`.
pub fn page(status: StatusCode, template: &str, ctx: &Context) -> Response {
    match TERA.render(template, ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => UiError::Internal(anyhow::Error::new(e).context(format!("rendering {template}")))
            .into_response(),
    }
}

/// `Unix ms` → `2021-01-13 08:00:00 WIB`; empty → `—`.
fn filter_wib(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_i64() {
        Some(ms) => fmt_wib(ms),
        None => "—".into(),
    }))
}

/// A message status in Indonesian, as help-desk staff say it.
pub fn status_label(s: &str) -> &str {
    match s {
        "queued" => "antre",
        "sending" => "sedang dikirim",
        "sent" => "terkirim ke operator, menunggu laporan",
        "delivered" => "diterima",
        "undelivered" => "tidak sampai",
        "expired" => "kedaluwarsa",
        "rejected" => "ditolak operator",
        "failed" => "gagal",
        "unknown" => "tidak diketahui",
        "cancelled" => "dibatalkan",
        // Campaign states.
        "scheduled" => "terjadwal",
        "running" => "berjalan",
        "paused" => "dijeda",
        "completed" => "selesai",
        other => other,
    }
}

fn filter_status(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_str() {
        Some(s) => status_label(s).to_string(),
        None => "—".into(),
    }))
}

/// Why a worker was flagged as a non-recipient, in Indonesian.
pub fn reason_label(s: &str) -> &str {
    match s {
        "undelivered" => "SMS tidak sampai",
        "rejected" => "ditolak operator seluler",
        "expired" => "kedaluwarsa di jaringan",
        "invalid_number" => "nomor tidak valid",
        "retries_exhausted" => "gagal setelah semua percobaan",
        "no_receipt" => "tidak ada laporan terkirim",
        "lease_lost" => "status pengiriman tidak pasti",
        "deadline" => "batas waktu kampanye lewat",
        "render_failed" => "isi pesan tidak bisa dibuat",
        // Resolutions.
        "resent" => "dikirim ulang",
        "delivered_late" => "terkirim (laporan terlambat)",
        "superseded" => "digantikan pesan yang lebih baru",
        "reregistered" => "registrasi ulang lewat chatbot",
        "support" => "diselesaikan petugas",
        "outreach" => "diselesaikan lewat penjangkauan",
        other => other,
    }
}

fn filter_reason(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_str() {
        Some(s) => reason_label(s).to_string(),
        None => "—".into(),
    }))
}

/// Other codes shown on a timeline: attempt outcomes, receipt effects,
/// phone-change sources, extra-notice kinds, audit actions.
pub fn code_label(s: &str) -> &str {
    match s {
        // attempts.outcome
        "sent" => "diterima operator seluler",
        "retry" => "gagal sementara, dicoba lagi",
        "throttled" => "dibatasi operator, dicoba lagi",
        "gateway_fault" => "gateway bermasalah (TLS/URL), menunggu perbaikan",
        "failed" => "gagal",
        "deferred" => "ditunda",
        // receipts.effect
        "applied" => "diterapkan",
        "ignored" => "diabaikan (status sudah final)",
        "intermediate" => "laporan sementara",
        "pending" => "menunggu pesannya tercatat",
        "unknown_message" => "pesan tidak dikenal",
        "unknown_code" => "kode status tidak dikenal (disimpan apa adanya)",
        "malformed" => "laporan rusak",
        "not_ours" => "dari gateway lain: tidak diterapkan",
        "not_sent" => "pesan belum pernah dikirim: tidak diterapkan",
        // phone_history.source
        "import" => "impor data",
        "chatbot" => "chatbot",
        "support" => "petugas layanan",
        // resends.kind
        "resend" => "kirim ulang oleh petugas",
        "reregister" => "registrasi ulang lewat chatbot",
        // audit_log.action
        "worker.resend" => "kirim ulang",
        "worker.reregister" => "registrasi ulang",
        "flag.resolve" => "tanda diselesaikan",
        "reregistration.request" => "registrasi ulang diminta (menunggu validasi)",
        "reregistration.failed" => "registrasi ulang gagal (NIK dan nama tidak cocok)",
        "reregistration.lock" => "registrasi ulang dikunci",
        "reregistration.unlock" => "kunci registrasi ulang dibuka",
        "reregistration.approve" => "registrasi ulang disetujui petugas",
        "reregistration.confirm" => "registrasi ulang dikonfirmasi impor One Data",
        other => other,
    }
}

fn filter_label(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_str() {
        Some(s) => code_label(s).to_string(),
        None => "—".into(),
    }))
}

/// A share in 0..=1 as an Indonesian percentage: `0.875` → `87,5 %`.
pub fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0).replace('.', ",")
}

fn filter_percent(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_f64() {
        Some(x) => percent(x),
        None => "—".into(),
    }))
}

/// An integer with Indonesian thousands separators: `12345` → `12.345`.
pub fn number(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

fn filter_number(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match v.as_i64() {
        Some(n) => number(n),
        None => "—".into(),
    }))
}

/// A message shown at the top of a page.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// `ok` or `error`: the CSS class, and `role="status"` or `"alert"`.
    pub kind: &'static str,
    pub text: String,
}

impl Notice {
    pub fn ok(text: impl Into<String>) -> Notice {
        Notice {
            kind: "ok",
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Notice {
        Notice {
            kind: "error",
            text: text.into(),
        }
    }
}

/// Every way a UI request can fail, each rendered as an Indonesian page.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No session (or an expired one) on a page: go and sign in.
    #[error("not signed in")]
    SignIn,
    /// 403 with the reason: no session on a form, a bad CSRF token, a
    /// foreign Origin, or a role that may not see the page.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// 500; the cause is logged (masked), never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl UiError {
    pub fn status(&self) -> StatusCode {
        match self {
            UiError::SignIn => StatusCode::SEE_OTHER,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (title, message) = match &self {
            UiError::SignIn => return Redirect::to("/ui/login").into_response(),
            UiError::Forbidden(m) => ("Akses ditolak", m.clone()),
            UiError::NotFound(m) => ("Tidak ditemukan", m.clone()),
            UiError::BadRequest(m) => ("Permintaan tidak valid", m.clone()),
            UiError::Internal(e) => {
                // Masked: a database error may quote a value.
                tracing::error!(error = %scrub(&format!("{e:#}")), "support UI request failed");
                (
                    "Terjadi kesalahan",
                    "Terjadi kesalahan di server. Coba lagi sebentar lagi; \
                     jika masih terjadi, hubungi tim teknis."
                        .to_string(),
                )
            }
        };
        let mut ctx = Context::new();
        ctx.insert("user", &None::<()>);
        ctx.insert("title", title);
        ctx.insert("message", &message);
        let status = self.status();
        match TERA.render("error.html", &ctx) {
            Ok(html) => (status, Html(html)).into_response(),
            // The error page itself failed: plain text, still Indonesian.
            Err(_) => {
                let mut r = (status, format!("{title}: {message}")).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }
        }
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound(_) => {
                UiError::NotFound("Data yang diminta tidak ada.".into())
            }
            other => UiError::Internal(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_escape() {
        let tera = build().expect("templates parse");
        let mut ctx = Context::new();
        ctx.insert("user", &None::<()>);
        ctx.insert("title", "Uji");
        ctx.insert("message", "<script>alert(1)</script> {{ x }}");
        let html = tera.render("error.html", &ctx).unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"));
        assert!(html.contains("{{ x }}"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<html lang=\"id\">"));
    }

    #[test]
    fn numbers_and_percentages_read_the_indonesian_way() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(1000), "1.000");
        assert_eq!(number(1234567), "1.234.567");
        assert_eq!(number(-1234), "-1.234");
        assert_eq!(percent(0.875), "87,5 %");
        assert_eq!(percent(1.0), "100,0 %");
    }

    #[test]
    fn every_status_has_a_label() {
        for s in crate::status::Status::ALL {
            assert_ne!(status_label(s.as_str()), s.as_str(), "{s:?}");
        }
        for r in crate::status::FlagReason::ALL {
            assert_ne!(reason_label(r.as_str()), r.as_str(), "{r:?}");
        }
    }
}
