//! Extra notices: a support resend or a chatbot re-registration queues one
//! more message to a worker. Who may get one, how many one number may get,
//! what blocks a resend and when the notice is due are decided here; the
//! store reads the rows these decisions need, calls them inside its
//! transaction, and writes what they decided.

use std::fmt;

use super::{fmt_wib, mask_phone, ProvinceCode, Window};
use crate::status::Status;

/// Extra notices (support resends and chatbot re-registrations) one phone
/// number may get in any 24 hours. Three covers "the phone was off", "it was
/// full" and one mistake; more looks like spam to a carrier.
pub const RESENDS_PER_NUMBER_PER_DAY: i64 = 3;

/// The period of the per-number limits, in milliseconds.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// A per-number limit within [`DAY_MS`] was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReached {
    /// How many the number had in the last 24 hours.
    pub count: usize,
    /// When one more is allowed (Unix ms): the moment the oldest counted
    /// one leaves the window.
    pub retry_at: i64,
}

/// At most `max` within any [`DAY_MS`]: `recent` are the times (Unix ms,
/// oldest first) of those within the last 24 hours.
pub fn within_daily_limit(recent: &[i64], max: i64) -> Result<(), LimitReached> {
    if (recent.len() as i64) < max {
        return Ok(());
    }
    Err(LimitReached {
        count: recent.len(),
        retry_at: recent[recent.len() - max as usize] + DAY_MS,
    })
}

/// [`within_daily_limit`] for extra notices to `phone` (E.164): at most
/// `max` a day (`limits.resends_per_number_per_day`, default
/// [`RESENDS_PER_NUMBER_PER_DAY`]), with the sentence support staff and the
/// chatbot show.
pub fn extra_notice_allowed(phone: &str, recent: &[i64], max: i64) -> Result<(), (String, i64)> {
    within_daily_limit(recent, max).map_err(|l| {
        (
            format!(
                "phone {} already got {} extra notices in the last 24 hours (at most {} per number, \
                 or carriers block the sender); the next one is possible after {}",
                mask_phone(phone),
                l.count,
                max,
                fmt_wib(l.retry_at)
            ),
            l.retry_at,
        )
    })
}

/// Why a worker gets no notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    /// One Data has not validated the worker.
    NotValidated,
    /// Validated, but not someone the programme notifies.
    NotEligible,
}

impl fmt::Display for Ineligible {
    /// What the worker is not: "validated" or "eligible".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ineligible::NotValidated => "validated",
            Ineligible::NotEligible => "eligible",
        })
    }
}

/// Only a validated and eligible worker gets a notice, first or extra.
pub fn may_get_notice(validated: bool, eligible: bool) -> Result<(), Ineligible> {
    match (validated, eligible) {
        (false, _) => Err(Ineligible::NotValidated),
        (true, false) => Err(Ineligible::NotEligible),
        (true, true) => Ok(()),
    }
}

/// What a worker's newest message in `status` means for a resend: `Some`
/// (how to say it) while it still needs something from a worker or a
/// carrier ([`Status::IN_FLIGHT`]), so a resend must wait for its outcome.
pub fn blocks_resend(status: Status) -> Option<&'static str> {
    match status {
        Status::Queued => Some("is queued"),
        Status::Sending => Some("is being sent"),
        Status::Sent => Some("was sent and awaits its delivery receipt"),
        _ => None,
    }
}

/// When an extra notice queued at `now` may first be sent, and the UTC
/// offset it is stored with: now, or when `window` next opens in the
/// recipient's zone (the province's; every stored province has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: i64,
    pub utc_offset: i32,
}

impl Due {
    pub fn in_window(window: Window, province: ProvinceCode, now: i64) -> Due {
        let utc_offset = province.time_zone().utc_offset_hours();
        Due {
            at: window.next_open(now, utc_offset),
            utc_offset,
        }
    }
}

/// A free-text field people type (a reason, a note, a staff name):
/// trimmed, required, at most so many characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeText(String);

/// Why a [`FreeText`] was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidText {
    pub field: &'static str,
    pub reason: String,
}

impl FreeText {
    /// Longest staff name, reason and note accepted.
    pub const STAFF_MAX: usize = 100;
    pub const REASON_MAX: usize = 500;
    pub const NOTE_MAX: usize = 1000;

    pub fn parse(field: &'static str, value: &str, max: usize) -> Result<FreeText, InvalidText> {
        let v = value.trim();
        if v.is_empty() {
            return Err(InvalidText {
                field,
                reason: "is required".into(),
            });
        }
        if v.chars().count() > max {
            return Err(InvalidText {
                field,
                reason: format!("must be at most {max} characters"),
            });
        }
        Ok(FreeText(v.to_string()))
    }

    /// Who acted (support staff, as their token or the CLI names them):
    /// field `staff`, at most 100 characters.
    pub fn staff(value: &str) -> Result<FreeText, InvalidText> {
        FreeText::parse("staff", value, Self::STAFF_MAX)
    }

    /// Why (a resend, lifting a lock): field `reason`, at most 500
    /// characters.
    pub fn reason(value: &str) -> Result<FreeText, InvalidText> {
        FreeText::parse("reason", value, Self::REASON_MAX)
    }

    /// What support staff found (resolving a flag, approving a
    /// re-registration): field `note`, at most 1000 characters.
    pub fn note(value: &str) -> Result<FreeText, InvalidText> {
        FreeText::parse("note", value, Self::NOTE_MAX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for FreeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_limit_reopens_when_the_oldest_leaves_the_window() {
        assert!(within_daily_limit(&[10, 20], 3).is_ok());
        assert_eq!(
            within_daily_limit(&[10, 20, 30], 3),
            Err(LimitReached {
                count: 3,
                retry_at: 10 + DAY_MS
            })
        );
        assert_eq!(
            within_daily_limit(&[10, 20, 30, 40], 3)
                .unwrap_err()
                .retry_at,
            20 + DAY_MS
        );
    }

    #[test]
    fn only_validated_eligible_workers_get_notices() {
        assert_eq!(may_get_notice(true, true), Ok(()));
        assert_eq!(may_get_notice(false, true), Err(Ineligible::NotValidated));
        assert_eq!(may_get_notice(false, false), Err(Ineligible::NotValidated));
        assert_eq!(
            may_get_notice(true, false).unwrap_err().to_string(),
            "eligible"
        );
    }

    #[test]
    fn in_flight_messages_block_a_resend() {
        for s in Status::ALL {
            assert_eq!(
                blocks_resend(s).is_some(),
                Status::IN_FLIGHT.contains(&s),
                "{s}"
            );
        }
    }

    #[test]
    fn due_in_the_recipients_zone() {
        let papua = ProvinceCode::parse("91").unwrap();
        // 2021-01-12 00:30 UTC: 09:30 WIT, open.
        let t = 1_610_411_400_000;
        assert_eq!(
            Due::in_window(Window::default(), papua, t),
            Due {
                at: t,
                utc_offset: 9
            }
        );
        let jakarta = ProvinceCode::parse("31").unwrap();
        let d = Due::in_window(Window::default(), jakarta, t);
        assert_eq!((d.at - t, d.utc_offset), (30 * 60_000, 7));
    }

    #[test]
    fn free_text_is_trimmed_required_and_bounded() {
        assert_eq!(FreeText::parse("note", "  hi ", 5).unwrap().as_str(), "hi");
        assert_eq!(
            FreeText::parse("note", "   ", 5).unwrap_err().reason,
            "is required"
        );
        assert!(FreeText::parse("note", "abcdef", 5).is_err());
    }
}
