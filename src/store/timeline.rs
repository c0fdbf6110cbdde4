//! Everything that happened to one worker, masked: messages with their
//! attempts and receipts, flags, phone changes, extra notices and audit
//! entries. Masking happens here, where the rows are read, so no front end
//! (API, CLI, support UI) can forget it.

use serde::Serialize;

use super::{with_pool, Store, SupportError, TimelineFlag, WorkerSummary};
use crate::domain::mask_phone;

type Result<T, E = SupportError> = std::result::Result<T, E>;

/// Everything that happened to one worker, masked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub worker: WorkerSummary,
    /// Oldest first, each with its attempts and receipts.
    pub messages: Vec<TimelineMessage>,
    pub flags: Vec<TimelineFlag>,
    pub phone_changes: Vec<PhoneChange>,
    /// Support resends and chatbot re-registrations: who, why, when.
    pub resends: Vec<ResendEntry>,
    /// Audit entries whose subject is this worker.
    pub audit: Vec<AuditEntry>,
    /// Suppression entries of the worker's NIK and of every number they
    /// had, in force or not, oldest first (values masked).
    pub suppressions: Vec<super::SuppressionView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineMessage {
    pub id: i64,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub generation: i32,
    pub status: String,
    pub attempts: i32,
    pub gateway: Option<String>,
    pub phone_masked: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub final_at: Option<i64>,
    /// Phone-like digit runs masked.
    pub last_error: Option<String>,
    pub attempt_log: Vec<AttemptEntry>,
    pub receipts: Vec<ReceiptEntry>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptEntry {
    pub attempt: i32,
    pub gateway: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub at: i64,
}

/// A receipt without its raw payload (which holds the phone number).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReceiptEntry {
    pub id: i64,
    pub gateway: String,
    pub raw_status: Option<String>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub effect: Option<String>,
    pub received_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhoneChange {
    pub old_phone_masked: Option<String>,
    pub new_phone_masked: String,
    /// import, chatbot, support.
    pub source: String,
    pub changed_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResendEntry {
    pub message_id: i64,
    /// `resend` (support staff) or `reregister` (chatbot).
    pub kind: String,
    pub actor: String,
    pub reason: String,
    pub phone_masked: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub at: i64,
}

/// Masks every run of 7 or more digits (with an optional leading `+`) in
/// free text from gateways, which may quote the number it refused.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let plus = chars[i] == '+';
        let mut j = if plus { i + 1 } else { i };
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        let digits = j - if plus { i + 1 } else { i };
        if digits >= 7 {
            let run: String = chars[start..j].iter().collect();
            out.push_str(&mask_phone(&run));
            i = j;
        } else if digits > 0 {
            out.extend(&chars[start..j]);
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

impl Store {
    /// Everything that happened to one worker: messages with attempts and
    /// receipts, flags, phone changes, resends and audit entries.
    pub async fn timeline(&self, worker_id: i64) -> Result<Timeline> {
        type MsgRow = (
            i64,
            i64,
            String,
            i32,
            String,
            i32,
            Option<String>,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        type AttemptRow = (i64, i32, Option<String>, String, Option<String>, i64);
        type ReceiptRow = (
            i64,
            Option<i64>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
        );
        type PhoneRow = (Option<String>, String, String, i64);
        type ResendRow = (i64, String, String, String, String, i64);
        let worker = self.worker_summary(worker_id).await?;
        let subject = format!("worker:{worker_id}");
        struct Rows {
            msgs: Vec<MsgRow>,
            attempts: Vec<AttemptRow>,
            receipts: Vec<ReceiptRow>,
            flags: Vec<TimelineFlag>,
            phones: Vec<PhoneRow>,
            resends: Vec<ResendRow>,
            audit: Vec<AuditEntry>,
            suppressions: Vec<super::Suppression>,
        }
        let suppressions_sql = format!(
            "SELECT {} FROM suppressions s WHERE \
             (s.kind = 'nik' AND s.value = (SELECT nik FROM health_workers WHERE id = $1)) \
             OR (s.kind = 'phone' AND (s.value = (SELECT phone FROM health_workers WHERE id = $1) \
             OR s.value IN (SELECT new_phone FROM phone_history WHERE worker_id = $1))) ORDER BY s.id",
            super::suppression::COLUMNS
        );
        let rows: Rows = with_pool!(self, p => {
            let msgs = sqlx::query_as(
                "SELECT m.id, m.campaign_id, c.name, m.generation, m.status, m.attempts, m.gateway, m.phone, \
                 m.created_at, m.sent_at, m.final_at, m.last_error FROM messages m \
                 JOIN campaigns c ON c.id = m.campaign_id WHERE m.worker_id = $1 ORDER BY m.id")
                .bind(worker_id).fetch_all(p).await?;
            let attempts = sqlx::query_as(
                "SELECT a.message_id, a.attempt, a.gateway, a.outcome, a.detail, a.at FROM attempts a \
                 JOIN messages m ON m.id = a.message_id WHERE m.worker_id = $1 ORDER BY a.id")
                .bind(worker_id).fetch_all(p).await?;
            let receipts = sqlx::query_as(
                "SELECT r.id, r.message_id, r.gateway, r.raw_status, r.outcome, r.error_code, r.effect, r.received_at \
                 FROM receipts r JOIN messages m ON m.id = r.message_id WHERE m.worker_id = $1 ORDER BY r.id")
                .bind(worker_id).fetch_all(p).await?;
            let flags = sqlx::query_as(
                "SELECT id, campaign_id, message_id, reason, flagged_at, resolved_at, resolution, resolved_by, note \
                 FROM non_recipients WHERE worker_id = $1 ORDER BY id")
                .bind(worker_id).fetch_all(p).await?;
            let phones = sqlx::query_as(
                "SELECT old_phone, new_phone, source, changed_at FROM phone_history WHERE worker_id = $1 ORDER BY id")
                .bind(worker_id).fetch_all(p).await?;
            let resends = sqlx::query_as(
                "SELECT message_id, kind, actor, reason, phone, created_at FROM resends WHERE worker_id = $1 ORDER BY id")
                .bind(worker_id).fetch_all(p).await?;
            let audit = sqlx::query_as(
                "SELECT id, actor, action, detail, at FROM audit_log WHERE subject = $1 ORDER BY id")
                .bind(&subject).fetch_all(p).await?;
            let suppressions = sqlx::query_as(&suppressions_sql)
                .bind(worker_id).fetch_all(p).await?;
            Rows { msgs, attempts, receipts, flags, phones, resends, audit, suppressions }
        });
        let Rows {
            msgs,
            attempts,
            receipts,
            flags,
            phones,
            resends,
            audit,
            suppressions,
        } = rows;
        let messages = msgs
            .into_iter()
            .map(|m| TimelineMessage {
                id: m.0,
                campaign_id: m.1,
                campaign_name: m.2,
                generation: m.3,
                status: m.4,
                attempts: m.5,
                gateway: m.6,
                phone_masked: mask_phone(&m.7),
                created_at: m.8,
                sent_at: m.9,
                final_at: m.10,
                last_error: m.11.as_deref().map(scrub),
                attempt_log: attempts
                    .iter()
                    .filter(|a| a.0 == m.0)
                    .map(|a| AttemptEntry {
                        attempt: a.1,
                        gateway: a.2.clone(),
                        outcome: a.3.clone(),
                        detail: a.4.as_deref().map(scrub),
                        at: a.5,
                    })
                    .collect(),
                receipts: receipts
                    .iter()
                    .filter(|r| r.1 == Some(m.0))
                    .map(|r| ReceiptEntry {
                        id: r.0,
                        gateway: r.2.clone(),
                        raw_status: r.3.clone(),
                        outcome: r.4.clone(),
                        error_code: r.5.clone(),
                        effect: r.6.clone(),
                        received_at: r.7,
                    })
                    .collect(),
            })
            .collect();
        Ok(Timeline {
            worker,
            messages,
            flags,
            phone_changes: phones
                .into_iter()
                .map(|p| PhoneChange {
                    old_phone_masked: p.0.as_deref().map(mask_phone),
                    new_phone_masked: mask_phone(&p.1),
                    source: p.2,
                    changed_at: p.3,
                })
                .collect(),
            resends: resends
                .into_iter()
                .map(|r| ResendEntry {
                    message_id: r.0,
                    kind: r.1,
                    actor: r.2,
                    reason: r.3,
                    phone_masked: mask_phone(&r.4),
                    created_at: r.5,
                })
                .collect(),
            audit,
            suppressions: suppressions.iter().map(Into::into).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_numbers_only() {
        assert_eq!(
            scrub("invalid number +6281234567890 (code 12)"),
            "invalid number +62812****890 (code 12)"
        );
        assert_eq!(scrub("to 081234567890."), "to 08123****890.");
        assert_eq!(scrub("HTTP 503 after 2 tries"), "HTTP 503 after 2 tries");
        assert_eq!(scrub("+"), "+");
        assert_eq!(scrub(""), "");
    }
}
