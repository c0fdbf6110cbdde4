//! The WhatsApp chatbot's API: "did this health worker get the SMS?" and
//! re-registration with a new number.
//!
//! NIKs and phone numbers travel only in JSON bodies (POST), never in the
//! URL, so they stay out of access logs.
//!
//! What an answer never holds: any NIK digit, the full phone number
//! (masked), or any part of the name. A look-up by phone alone is answered
//! to whoever holds that number, and numbers are recycled: even a first
//! name or the last NIK digits would tell a stranger who had the number
//! before (and NIK digits are half of what re-registration asks). The bot
//! greets people by what they told it themselves.
//!
//! "Not found" and "the last 6 digits do not match that phone" give the
//! same answer (200, `found: false`, same advice), so the API cannot be used
//! to learn whether a NIK exists or which number it has.
//!
//! Re-registration needs the full NIK and the full name as registered, and
//! the new number is the WhatsApp number of the conversation; failures are
//! counted and locked, and by default the new number waits for One Data
//! validation: see [`crate::store::ChatbotReregistration`] and the store's
//! `reregistration` module.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::campaign::fmt_wib;
use crate::domain::{Msisdn, Nik};
use crate::http::AppState;
use crate::store::{
    normalize_name, now_ms, sha256_hex, ChatbotReregistration, IdempotencyKey, Idempotent, Lookup,
    QueuedNotice, ReregisterOutcome, ReregisterState, SupportError, WorkerKey, WorkerStatus,
};

/// Shown when the worker did not get the notice (flagged).
pub const ADVICE_FLAGGED: &str = "SMS undangan tidak terkirim ke nomor Anda. Silakan daftar ulang dengan nomor aktif melalui chatbot ini atau di pedulilindungi.id.";
/// Shown for "not found" and "does not match": the same text for both.
pub const ADVICE_NOT_FOUND: &str = "Data Anda tidak ditemukan. Periksa kembali NIK dan nomor HP Anda. Jika Anda tenaga kesehatan, hubungi dinas kesehatan atau fasyankes tempat Anda bekerja agar data Anda didaftarkan.";
/// A phone number several workers share.
pub const ADVICE_AMBIGUOUS: &str = "Nomor ini terdaftar untuk lebih dari satu tenaga kesehatan. Kirimkan 6 digit terakhir NIK Anda.";
const ADVICE_NOT_VALIDATED: &str = "Data Anda sudah terdaftar tetapi belum divalidasi. Silakan hubungi dinas kesehatan atau fasyankes tempat Anda bekerja.";
const ADVICE_NOT_ELIGIBLE: &str =
    "Anda belum termasuk penerima vaksin tahap ini. Pantau informasi terbaru di pedulilindungi.id.";
const ADVICE_IN_PROGRESS: &str =
    "SMS undangan sedang dalam proses pengiriman ke nomor Anda. Mohon tunggu.";
/// The worker's NIK or number is on the suppression list. The reason is
/// not said (it may be "deceased", and the answer goes to whoever holds
/// the number).
pub const ADVICE_SUPPRESSED: &str = "Nomor atau data Anda tercatat tidak menerima SMS PEDULICOVID. Jika Anda ingin menerimanya, hubungi dinas kesehatan atau fasyankes tempat Anda bekerja, atau daftar langsung di pedulilindungi.id.";
const ADVICE_NOT_YET: &str =
    "Data Anda sudah terdaftar. SMS undangan belum dikirim; pantau informasi di pedulilindungi.id.";

/// How to find the worker: exactly one of `phone`, `nik` together with
/// `whatsapp_phone`, or `nik_last6` together with `phone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// Phone number in any usual form: `0812-3456-7890`, `+62812…`, `62812…`.
    #[schema(example = "081234567890")]
    pub phone: Option<String>,
    /// The full 16-digit NIK, with `whatsapp_phone`.
    pub nik: Option<String>,
    /// With `nik` (and only then): the WhatsApp number of this conversation,
    /// as WhatsApp gave it to the chatbot. NIKs not on file are counted
    /// against it; 5 within 24 hours lock its NIK look-ups.
    #[schema(example = "+6281398765432")]
    pub whatsapp_phone: Option<String>,
    /// The last 6 digits of the NIK, with `phone`.
    #[schema(example = "870001")]
    pub nik_last6: Option<String>,
}

/// The newest notice for the worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeView {
    /// queued, sending, sent, delivered, undelivered, expired, rejected,
    /// failed, unknown or cancelled.
    pub status: String,
    /// When it reached that status, WIB (`2021-01-13 08:00:05 WIB`).
    pub at: String,
    /// For a queued notice: when it is due, WIB.
    pub due: Option<String>,
}

/// The answer to a look-up. Same shape whether or not a worker was found.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupAnswer {
    /// A worker matched the request.
    pub found: bool,
    /// The worker is in the One Data registry (same as `found`).
    pub registered: bool,
    /// Validated by One Data.
    pub validated: bool,
    /// Eligible in the current phase.
    pub eligible: bool,
    /// Flagged as a non-recipient (an open flag).
    pub flagged: bool,
    /// Reasons of the open flags: undelivered, rejected, expired,
    /// invalid_number, retries_exhausted, no_receipt, lease_lost, deadline,
    /// render_failed.
    pub flag_reasons: Vec<String>,
    pub last_notice: Option<NoticeView>,
    /// The number on file, masked (`+62812****890`). Only when the caller
    /// gave that number (`phone`, or `whatsapp_phone` with `nik`): a
    /// look-up by NIK from another number does not learn it.
    pub phone_masked: Option<String>,
    /// The NIK or number is on the suppression list (declined, and the
    /// like): no SMS goes to it, and no re-registration is offered.
    pub suppressed: bool,
    /// A short Indonesian text the bot can show as is.
    pub advice: String,
}

impl LookupAnswer {
    fn not_found(advice: &str) -> LookupAnswer {
        LookupAnswer {
            found: false,
            registered: false,
            validated: false,
            eligible: false,
            flagged: false,
            flag_reasons: vec![],
            last_notice: None,
            phone_masked: None,
            suppressed: false,
            advice: advice.to_string(),
        }
    }

    fn found(s: &WorkerStatus) -> LookupAnswer {
        let w = &s.worker;
        LookupAnswer {
            found: true,
            registered: true,
            validated: w.validated,
            eligible: w.eligible,
            flagged: !s.open_flags.is_empty(),
            flag_reasons: s.open_flags.clone(),
            last_notice: s.last_notice.as_ref().map(|n| NoticeView {
                status: n.status.clone(),
                at: fmt_wib(n.at),
                due: (n.status == "queued").then(|| fmt_wib(n.next_attempt_at)),
            }),
            phone_masked: Some(crate::domain::mask_phone(w.phone.as_e164())),
            suppressed: s.suppressed,
            advice: advice(s),
        }
    }
}

/// The advice for a found worker, most pressing first.
fn advice(s: &WorkerStatus) -> String {
    if !s.worker.validated {
        return ADVICE_NOT_VALIDATED.into();
    }
    if !s.worker.eligible {
        return ADVICE_NOT_ELIGIBLE.into();
    }
    // Never an offer to re-register someone who asked not to be messaged.
    if s.suppressed {
        return ADVICE_SUPPRESSED.into();
    }
    if !s.open_flags.is_empty() {
        return ADVICE_FLAGGED.into();
    }
    match s.last_notice.as_ref().map(|n| (n.status.as_str(), n.at)) {
        Some(("delivered", at)) => format!(
            "SMS undangan sudah terkirim ke nomor Anda pada {}. Silakan daftar dan pilih jadwal vaksin di pedulilindungi.id atau *119#.",
            fmt_wib(at)
        ),
        Some(("queued" | "sending" | "sent" | "unknown", _)) => ADVICE_IN_PROGRESS.into(),
        // Final but not delivered and not flagged (cancelled, or a flag
        // resolved without a new notice): the number may be wrong.
        Some(_) => ADVICE_FLAGGED.into(),
        None => ADVICE_NOT_YET.into(),
    }
}

fn parse_phone(field: &str, s: &str) -> Result<Msisdn, ApiError> {
    Msisdn::parse(s).map_err(|e| ApiError::bad(field, e.to_string()))
}

fn parse_nik(s: &str) -> Result<Nik, ApiError> {
    Nik::parse(s).map_err(|e| ApiError::bad("nik", format!("NIK {e}")))
}

/// Which worker a look-up asks about; for a NIK, with the conversation's
/// WhatsApp number.
fn lookup_key(req: &LookupRequest) -> Result<(WorkerKey, Option<Msisdn>), ApiError> {
    if let (Some(nik), None, None) = (&req.nik, &req.nik_last6, &req.phone) {
        let nik = parse_nik(nik)?;
        let wa = req
            .whatsapp_phone
            .as_deref()
            .ok_or_else(|| ApiError::bad("whatsapp_phone", "is required with nik"))?;
        return Ok((
            WorkerKey::Nik(nik),
            Some(parse_phone("whatsapp_phone", wa)?),
        ));
    }
    if req.nik.is_none() && req.whatsapp_phone.is_some() {
        return Err(ApiError::bad("whatsapp_phone", "goes only with nik"));
    }
    Ok((lookup_key_without_nik(req)?, None))
}

/// The look-ups that do not name a full NIK.
fn lookup_key_without_nik(req: &LookupRequest) -> Result<WorkerKey, ApiError> {
    match (&req.nik, &req.nik_last6, &req.phone) {
        (None, Some(last6), Some(phone)) => Ok(WorkerKey::last6_and_phone(
            last6,
            parse_phone("phone", phone)?,
        )?),
        (None, Some(_), None) => Err(ApiError::bad("phone", "is required with nik_last6")),
        (None, None, Some(phone)) => Ok(WorkerKey::Phone(parse_phone("phone", phone)?)),
        (None, None, None) => Err(ApiError::bad(
            "body",
            "give one of: phone, nik, or nik_last6 with phone",
        )),
        (Some(_), _, _) => Err(ApiError::bad(
            "nik",
            "give nik alone, or nik_last6 with phone, not both",
        )),
    }
}

/// Looks a health worker up by phone, by full NIK (from the conversation's
/// WhatsApp number), or by the last 6 digits of the NIK with the phone.
/// Misses by NIK or last 6 digits are counted per number and locked after
/// 5 within 24 hours.
#[utoipa::path(
    post,
    path = "/api/v1/chatbot/lookup",
    tag = "chatbot",
    request_body = LookupRequest,
    responses(
        (status = 200, description = "Found or not (`found`); the same shape either way", body = LookupAnswer),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a chatbot token", body = ErrorBody),
        (status = 429, description = "Over the per-token rate, or this number's NIK look-ups (`nik` from this `whatsapp_phone`, `nik_last6` with this `phone`) locked after 5 misses in 24 hours; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = ["chatbot"]))
)]
pub async fn lookup(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<axum::Json<LookupAnswer>, ApiError> {
    let (key, whatsapp_phone) = lookup_key(&req)?;
    let actor = format!("{}:{}", caller.role, caller.name);
    let found = match (&key, &whatsapp_phone) {
        // Guesses at a NIK, or part of one: failures counted and locked
        // per number.
        (WorkerKey::Last6AndPhone { last6, phone }, _) => {
            state.store.lookup_by_last6(last6, phone, &actor).await?
        }
        (WorkerKey::Nik(nik), Some(wa)) => state.store.lookup_by_nik(nik, wa, &actor).await?,
        _ => state.store.lookup_worker(&key).await?,
    };
    let answer = match found {
        Lookup::Found(s) => {
            let mut a = LookupAnswer::found(&s);
            // By NIK, the number on file is shown only to that number.
            if whatsapp_phone.is_some_and(|wa| wa != s.worker.phone) {
                a.phone_masked = None;
            }
            a
        }
        Lookup::Ambiguous if matches!(key, WorkerKey::Phone(_)) => {
            LookupAnswer::not_found(ADVICE_AMBIGUOUS)
        }
        Lookup::Ambiguous | Lookup::NotFound => LookupAnswer::not_found(ADVICE_NOT_FOUND),
    };
    Ok(axum::Json(answer))
}

/// Re-registration: the worker proves who they are with the full NIK and
/// the full name as registered; the new number is the WhatsApp number the
/// chatbot is talking to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReregisterRequest {
    /// The full 16-digit NIK, as the person typed it.
    #[schema(example = "3174051203870001")]
    pub nik: String,
    /// The full name as registered, as the person typed it; compared
    /// without case, accents, punctuation or spaces.
    #[schema(example = "Siti Nur'aini")]
    pub full_name: String,
    /// The WhatsApp number of this conversation, as WhatsApp gave it to the
    /// chatbot (never a number the person typed): the new number.
    #[schema(example = "+6281398765432")]
    pub whatsapp_phone: String,
}

/// The request in canonical form (parsed values), hashed to tell a retry
/// from a different request under the same Idempotency-Key.
#[derive(Serialize)]
struct Canonical<'a> {
    nik: &'a str,
    full_name: &'a str,
    whatsapp_phone: &'a str,
}

/// Shown when the re-registration waits for One Data validation.
pub const ADVICE_PENDING: &str = "Permintaan registrasi ulang Anda sudah kami terima. Nomor ini akan divalidasi oleh dinas kesehatan terlebih dahulu; SMS undangan dikirim ke nomor ini setelah validasi.";

/// What a re-registration did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReregisterAnswer {
    /// `pending_validation` (default mode: nothing changed yet, waits for
    /// One Data or support staff) or `reregistered` (the number is on file).
    pub status: ReregisterState,
    /// True when the number is now on file (`status` = `reregistered`).
    pub reregistered: bool,
    /// The new number, masked.
    pub phone_masked: String,
    /// False when nothing changed on file (pending, or the same number).
    pub phone_changed: bool,
    /// Open flags resolved `reregistered`.
    pub flags_resolved: u64,
    /// Notices still queued for the old number, cancelled.
    pub superseded: u64,
    /// The new notice; none while pending, or for a worker not validated or
    /// not eligible.
    pub notice: Option<QueuedNotice>,
    /// A short Indonesian text the bot can show as is.
    pub advice: String,
}

impl ReregisterAnswer {
    fn new(o: &ReregisterOutcome, now: i64) -> ReregisterAnswer {
        let advice = match (&o.state, &o.notice) {
            (ReregisterState::PendingValidation, _) => ADVICE_PENDING.to_string(),
            (_, Some(n)) if n.next_attempt_at <= now + 60_000 => format!(
                "Nomor HP Anda sudah diperbarui. SMS undangan akan segera dikirim ke {}.",
                n.phone_masked
            ),
            (_, Some(n)) => format!(
                "Nomor HP Anda sudah diperbarui. SMS undangan akan dikirim ke {} pada {}.",
                n.phone_masked, n.next_attempt_wib
            ),
            (_, None) => format!("Nomor HP Anda sudah diperbarui. {ADVICE_NOT_ELIGIBLE}"),
        };
        ReregisterAnswer {
            status: o.state,
            reregistered: o.state == ReregisterState::Reregistered,
            phone_masked: o.phone_masked.clone(),
            phone_changed: o.phone_changed,
            flags_resolved: o.flags_resolved,
            superseded: o.superseded,
            notice: o.notice.clone(),
            advice,
        }
    }
}

/// The `Idempotency-Key` header: 1 to 200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    let v = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::bad("Idempotency-Key", "header is required"))?;
    let k = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad(
                "Idempotency-Key",
                "must be 1 to 200 visible ASCII characters (a UUID is ideal)",
            )
        })?;
    Ok(k)
}

/// Re-registers a worker with the WhatsApp number of the conversation,
/// once the caller proved the worker (full NIK and full name as
/// registered). An unknown NIK and a wrong name get the same 404. After
/// 5 failures within 24 hours for one NIK, or from one number, that NIK's
/// (that number's) re-registration is locked for 24 hours: 429 with
/// `Retry-After`, even with correct data, until it expires or support staff
/// lift it.
///
/// In the default `validated` mode a number not on file is stored pending
/// (`status: pending_validation`): nothing changes and nothing is sent
/// until a One Data import carries that number for the NIK or support
/// staff approve it. In the `immediate` mode it is applied at once: phone
/// history kept, open flags resolved `reregistered`, notices still queued
/// for the old number cancelled, and a notice without NIK digits queued.
/// Requires `Idempotency-Key`: a retry with the same key and request
/// returns the stored answer (`Idempotent-Replayed: true`) and does
/// nothing more.
#[utoipa::path(
    post,
    path = "/api/v1/chatbot/reregister",
    tag = "chatbot",
    request_body = ReregisterRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per re-registration (e.g. a UUID); retries reuse it")),
    responses(
        (status = 200, description = "Pending validation, or re-registered (or the stored answer of an earlier identical request)", body = ReregisterAnswer),
        (status = 400, description = "Malformed request or missing Idempotency-Key", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a chatbot token", body = ErrorBody),
        (status = 404, description = "NIK and name do not match a registered worker (one answer for an unknown NIK and a wrong name); counted as a failed attempt", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with a different request", body = ErrorBody),
        (status = 429, description = "Over the per-token rate, this NIK or number locked after repeated failures, the number's 3 re-registration requests per 24 hours, or the new number's daily notice limit; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = ["chatbot"]))
)]
pub async fn reregister(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ReregisterRequest>,
) -> Result<Response, ApiError> {
    let nik = parse_nik(&req.nik)?;
    let whatsapp_phone = parse_phone("whatsapp_phone", &req.whatsapp_phone)?;
    let full_name = normalize_name(&req.full_name);
    let key = idempotency_key(&headers)?;
    let canonical = Canonical {
        nik: nik.as_str(),
        full_name: &full_name,
        whatsapp_phone: whatsapp_phone.as_e164(),
    };
    let request_hash = sha256_hex(
        serde_json::to_string(&canonical)
            .map_err(|e| ApiError::Internal(e.into()))?
            .as_bytes(),
    );
    let rereg = ChatbotReregistration {
        nik,
        full_name: req.full_name,
        whatsapp_phone,
    };
    let actor = format!("{}:{}", caller.role, caller.name);
    let now = now_ms();
    let done = state
        .store
        .chatbot_reregister(
            &rereg,
            state.api.reregistration,
            &actor,
            Some(IdempotencyKey {
                token_id: caller.token_id,
                key,
                request_hash: &request_hash,
            }),
            |o| serde_json::to_string(&ReregisterAnswer::new(o, now)).unwrap_or_default(),
        )
        .await;
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            if matches!(e, SupportError::NotFound(_) | SupportError::Limit { .. }) {
                tracing::warn!(token = %caller.name, phone = %rereg.whatsapp_phone.masked(), error = %e,
                    "re-registration refused");
            }
            return Err(e.into());
        }
    };
    let json = HeaderValue::from_static("application/json");
    Ok(match done {
        Idempotent::Done { outcome, body } => {
            tracing::info!(
                token = %caller.name,
                phone = %outcome.phone_masked,
                state = ?outcome.state,
                reregistration.id = outcome.reregistration_id,
                message.id = outcome.notice.as_ref().map(|n| n.message_id),
                "worker re-registration accepted"
            );
            (
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, json)],
                body,
            )
                .into_response()
        }
        Idempotent::Replayed { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [
                (axum::http::header::CONTENT_TYPE, json),
                (
                    axum::http::HeaderName::from_static("idempotent-replayed"),
                    HeaderValue::from_static("true"),
                ),
            ],
            body,
        )
            .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NoticeState, WorkerRow};

    fn status(validated: bool, flags: &[&str], last: Option<&str>) -> WorkerStatus {
        WorkerStatus {
            worker: WorkerRow {
                id: 1,
                nik: crate::domain::Nik::parse("3174051203870001").unwrap(),
                full_name: "Siti Rahayu".into(),
                phone: crate::domain::Msisdn::parse("+6281234567890").unwrap(),
                operator: "telkomsel".into(),
                profession: "perawat".into(),
                facility_code: "F1".into(),
                regency_code: "3174".into(),
                province_code: crate::domain::ProvinceCode::parse("31").unwrap(),
                validated,
                eligible: true,
                created_at: 0,
                updated_at: 0,
                phone_unvalidated: false,
            },
            open_flags: flags.iter().map(|s| s.to_string()).collect(),
            last_notice: last.map(|s| NoticeState {
                message_id: 1,
                campaign_id: 1,
                status: s.into(),
                at: 1_610_500_000_000,
                next_attempt_at: 1_610_500_000_000,
            }),
            suppressed: false,
        }
    }

    #[test]
    fn advice_follows_the_state() {
        assert_eq!(
            advice(&status(true, &["undelivered"], Some("undelivered"))),
            ADVICE_FLAGGED
        );
        assert_eq!(advice(&status(false, &[], None)), ADVICE_NOT_VALIDATED);
        assert_eq!(
            advice(&status(true, &[], Some("queued"))),
            ADVICE_IN_PROGRESS
        );
        assert!(advice(&status(true, &[], Some("delivered"))).contains("sudah terkirim"));
        assert_eq!(advice(&status(true, &[], None)), ADVICE_NOT_YET);
        let mut s = status(true, &["undelivered"], Some("cancelled"));
        s.suppressed = true;
        assert_eq!(advice(&s), ADVICE_SUPPRESSED);
    }

    #[test]
    fn answers_hold_no_full_nik_phone_or_name() {
        let a = LookupAnswer::found(&status(true, &["undelivered"], Some("undelivered")));
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("3174051203870001"));
        assert!(!json.contains("6281234567890"));
        assert!(!json.contains("Siti"));
        // No NIK digits at all: not the last 4, not the last 6.
        assert!(!json.contains("0001") && !json.contains("870001"), "{json}");
        assert!(!json.contains("nik"), "{json}");
    }

    #[test]
    fn not_found_answers_have_the_found_shape() {
        let found = serde_json::to_value(LookupAnswer::found(&status(true, &[], None))).unwrap();
        let missing = serde_json::to_value(LookupAnswer::not_found(ADVICE_NOT_FOUND)).unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&found), keys(&missing));
    }
}
