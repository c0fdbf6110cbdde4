//! The message status machine. Status only moves one way; [`Status::can_become`]
//! is the one place that says which moves exist, and every SQL update that
//! changes a status is guarded by the list it derives ([`Status::sources_of`],
//! [`Status::guard`], which refuses a list the machine does not allow).
//! Campaigns have their own, smaller machine ([`CampaignStatus`]).
//!
//! ```text
//! queued ─claim─▶ sending ─accepted─▶ sent ─receipt─▶ delivered
//!    ▲               │                  │ └─receipt─▶ undelivered │ expired │ rejected
//!    └──retryable────┤                  └─no receipt in time─▶ unknown
//!                    └─permanent / retries exhausted─▶ failed
//! any non-final ─cancel─▶ cancelled
//! ```
//! A final receipt may arrive while the row still says `queued` or `sending`
//! (the carrier was faster than our bookkeeping, or a lease expired after the
//! carrier took the message): it applies, because the carrier's word about a
//! message is better than our guess. A late `delivered` also overrides
//! `unknown` and `failed`: proof of delivery beats an assumption of failure.
//!
//! But a carrier only knows about what it was given. A receipt moves a
//! message only with evidence that the message was handed to the gateway
//! the callback came through ([`HandOver`]); [`Status::receipt_move`] is the
//! one place that decides, and the store's guards derive from it. A message
//! still queued and never handed over, cancelled, or sent through another
//! gateway is never moved by a receipt: the receipt is kept raw and counted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where one message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its `next_attempt_at`.
    Queued,
    /// Leased to a worker that is talking to the gateway.
    Sending,
    /// The gateway accepted it; waiting for a receipt.
    Sent,
    /// Final: on the handset.
    Delivered,
    /// Final: the network gave up.
    Undelivered,
    /// Final: validity ran out (or the campaign deadline passed).
    Expired,
    /// Final: refused by the carrier.
    Rejected,
    /// Final: we gave up (permanent error or retries exhausted).
    Failed,
    /// No final answer came (receipt timeout, or a lost lease under
    /// at-most-once); flagged for review. A late receipt still applies.
    Unknown,
    /// Final: the campaign was cancelled before this was sent.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Queued,
        Status::Sending,
        Status::Sent,
        Status::Delivered,
        Status::Undelivered,
        Status::Expired,
        Status::Rejected,
        Status::Failed,
        Status::Unknown,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Undelivered => "undelivered",
            Status::Expired => "expired",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
            Status::Cancelled => "cancelled",
        }
    }

    /// A state no ordinary event leaves (only proof of delivery may still
    /// override `failed`, see the module docs).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Queued | Status::Sending | Status::Sent | Status::Unknown
        )
    }

    /// Every allowed transition, and nothing else.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        match (self, next) {
            // The worker's own moves.
            (Queued, Sending) => true,
            (Sending, Queued | Sent | Failed | Unknown) => true,
            // Receipts: final outcomes for anything not yet final.
            (Queued | Sending | Sent | Unknown, Delivered | Undelivered | Expired | Rejected) => {
                true
            }
            // Proof of delivery beats our own conclusion that it failed.
            (Failed, Delivered) => true,
            // No receipt within the timeout.
            (Sent, Unknown) => true,
            // (Queued → Expired also covers a campaign deadline passing.)
            // Cancel stops whatever has not gone out yet.
            (Queued, Cancelled) => true,
            _ => false,
        }
    }

    /// The states from which `next` may be reached, for `WHERE status IN (…)`.
    pub fn sources_of(next: Status) -> Vec<Status> {
        Status::ALL
            .into_iter()
            .filter(|s| s.can_become(next))
            .collect()
    }

    /// `'a','b'` for an SQL `IN` list. The values are our own constants.
    pub fn sql_list(states: &[Status]) -> String {
        sql_list(states.iter().map(|s| s.as_str()))
    }

    /// The condition on a status column, after the column's name, that
    /// guards moving a message from one of `from` to `next`: ` = 'a'` for
    /// one state (the form the partial indexes `messages_due` and
    /// `messages_awaiting` are written in, so the planner uses them),
    /// ` IN ('a','b')` for more. Every state in `from`
    /// must be allowed to become `next`: a guard the machine does not allow
    /// is a bug in the statement, not a state of the data, so it panics
    /// (every statement building one runs in the integration tests, on
    /// both databases). `from` may be narrower
    /// than [`Status::sources_of`] where the statement itself says more
    /// (a lease that ran out is held by a `sending` row only).
    pub fn guard(from: &[Status], next: Status) -> String {
        for s in from {
            assert!(s.can_become(next), "{s} cannot become {next}");
        }
        Status::sql_is(from)
    }

    /// The condition on a status column, after the column's name, for a
    /// filter (no move): ` = 'a'` or ` IN ('a','b')`.
    pub fn sql_is(states: &[Status]) -> String {
        match states {
            [one] => format!(" = '{one}'"),
            _ => format!(" IN ({})", Status::sql_list(states)),
        }
    }

    /// Queued, being sent, or sent and awaiting its receipt: a message that
    /// still needs something from a worker or a carrier. (`unknown` waits
    /// for nothing: only a late receipt may still move it.)
    pub const IN_FLIGHT: [Status; 3] = [Status::Queued, Status::Sending, Status::Sent];

    /// Queued or being sent: in a worker's hands, so its campaign is not
    /// complete.
    pub const UNSENT: [Status; 2] = [Status::Queued, Status::Sending];
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown message status {s:?}"))
    }
}

/// The evidence that the message a receipt names was handed to the gateway
/// the receipt came through. Recorded facts only, never the status alone:
/// a row can be back in `queued` after a lease expired on a message the
/// carrier did take, and a never-sent message is `queued` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandOver {
    /// Nothing says so: never claimed, failed before sending, cancelled, or
    /// every recorded attempt went to another gateway.
    None,
    /// The store recorded an attempt through this gateway whose outcome may
    /// have reached the carrier (`attempts.handed_over`: accepted, a
    /// timeout, a 5xx, an unreadable answer, a permanent refusal). Never
    /// `messages.gateway` alone, nor a throttle, a gateway fault (TLS,
    /// configuration) or a refused connection: nothing left us then.
    Recorded,
    /// The callback's URL carries our MAC for (this gateway, this message)
    /// (see `gateway::callback`), which only a request we built to this
    /// gateway contained, and the row has been claimed for sending since it
    /// was queued (`attempts > 0`): a hand-over in flight (a receipt racing
    /// the send) or one whose lease expired before its outcome was written.
    Signed,
}

/// What a receipt may do to a message, by the status machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptMove {
    /// Move the message to the receipt's status.
    Apply,
    /// Older news, or a duplicate: the message keeps its status.
    Stale,
    /// The message was not handed to this gateway (or never sent at all):
    /// a carrier cannot know anything about it.
    NotHandedOver,
}

impl Status {
    /// States a receipt may find a message in when it was handed over:
    /// being sent, sent, without an answer, failed after the hand-over, or
    /// back in the queue after a lease expired. `cancelled` is not one:
    /// cancel only stops what has not gone out.
    pub fn reachable_by_hand_over(self) -> bool {
        matches!(
            self,
            Status::Queued | Status::Sending | Status::Sent | Status::Unknown | Status::Failed
        ) || self.is_receipt_outcome()
    }

    /// The final states only a receipt leads to.
    pub fn is_receipt_outcome(self) -> bool {
        matches!(
            self,
            Status::Delivered | Status::Undelivered | Status::Expired | Status::Rejected
        )
    }

    /// What a receipt leading to `next` does to a message in `self`, given
    /// the hand-over evidence for the gateway it came through.
    pub fn receipt_move(self, next: Status, evidence: HandOver) -> ReceiptMove {
        if evidence == HandOver::None || !self.reachable_by_hand_over() {
            return ReceiptMove::NotHandedOver;
        }
        // A MAC alone speaks for a hand-over still in flight or whose
        // outcome was never written (a lease that expired): `queued`,
        // `sending`, `unknown`. A message failed or sent after it has its
        // gateway recorded; one failed with none (it never rendered, or its
        // lease ran out with its attempts) is not moved on a MAC alone.
        if evidence == HandOver::Signed
            && !matches!(self, Status::Queued | Status::Sending | Status::Unknown)
            && !self.is_receipt_outcome()
        {
            return ReceiptMove::NotHandedOver;
        }
        if self.can_become(next) {
            ReceiptMove::Apply
        } else {
            ReceiptMove::Stale
        }
    }

    /// The states a receipt with `evidence` may move to `next` from, for
    /// the store's `WHERE status IN (…)` guard.
    pub fn receipt_sources(next: Status, evidence: HandOver) -> Vec<Status> {
        Status::ALL
            .into_iter()
            .filter(|s| s.receipt_move(next, evidence) == ReceiptMove::Apply)
            .collect()
    }
}

/// Where a campaign is in its life. Like [`Status`], it moves only as
/// [`CampaignStatus::can_become`] says, and the store's `WHERE status …`
/// guards are built from it ([`CampaignStatus::sql_moves`]).
///
/// ```text
/// scheduled ─start time─▶ running ─nothing left─▶ completed
///     ▲ │ ◀──reschedule──── │ ▲ ◀─a new notice queued─┘
///     │ └──────┬─pause─────┘ │
///     │        ▼             │
///     └─resume─ paused ─resume┘
/// scheduled, running, paused ─cancel─▶ cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Created; its start time has not come.
    Scheduled,
    /// Sending: its queued messages are claimed as they fall due.
    Running,
    /// Stopped by an operator or the auto-pause; nothing is claimed until
    /// it is resumed.
    Paused,
    /// Nothing queued or being sent. A notice queued into it later (a
    /// resend, a re-registration) makes it `running` again.
    Completed,
    /// Final: stopped for good, its unsent messages `cancelled`.
    Cancelled,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 5] = [
        CampaignStatus::Scheduled,
        CampaignStatus::Running,
        CampaignStatus::Paused,
        CampaignStatus::Completed,
        CampaignStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
        }
    }

    /// Every allowed transition, and nothing else.
    pub fn can_become(self, next: CampaignStatus) -> bool {
        use CampaignStatus::*;
        match (self, next) {
            // Its start time came, or an operator rescheduled it.
            (Scheduled, Running) | (Running, Scheduled) => true,
            // Operators (and the auto-pause) stop and resume.
            (Scheduled | Running, Paused) => true,
            (Paused, Scheduled | Running) => true,
            // Nothing left to send; a new notice reopens it.
            (Running, Completed) | (Completed, Running) => true,
            // Cancel stops anything not finished.
            (Scheduled | Running | Paused, Cancelled) => true,
            _ => false,
        }
    }

    /// Finished: completed or cancelled. Not rescheduled.
    pub fn is_finished(self) -> bool {
        matches!(self, CampaignStatus::Completed | CampaignStatus::Cancelled)
    }

    /// Its messages may be claimed (the time may still have to come: a
    /// message is due by its own `next_attempt_at`).
    pub fn may_send(self) -> bool {
        matches!(self, CampaignStatus::Scheduled | CampaignStatus::Running)
    }

    /// The states from which `next` may be reached.
    pub fn sources_of(next: CampaignStatus) -> Vec<CampaignStatus> {
        CampaignStatus::ALL
            .into_iter()
            .filter(|s| s.can_become(next))
            .collect()
    }

    /// `'a','b'` for an SQL `IN` list of the states in `from`, each of
    /// which must be allowed to become `next`: the guard of one move the
    /// store makes. A move the machine does not allow is a bug here, not a
    /// state of the data, so it panics (every statement building one runs
    /// in the integration tests).
    pub fn sql_moves(from: &[CampaignStatus], next: CampaignStatus) -> String {
        for s in from {
            assert!(s.can_become(next), "campaign {s} cannot become {next}");
        }
        sql_list(from.iter().map(|s| s.as_str()))
    }

    /// `'a','b'` for an SQL `IN` list of states, not a move (a filter).
    pub fn sql_list(states: &[CampaignStatus]) -> String {
        sql_list(states.iter().map(|s| s.as_str()))
    }

    /// `'scheduled','running'`: the campaigns whose messages may be claimed.
    pub fn sql_sending() -> String {
        CampaignStatus::sql_list(
            &CampaignStatus::ALL
                .into_iter()
                .filter(|s| s.may_send())
                .collect::<Vec<_>>(),
        )
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so the CLI's column widths apply.
        f.pad(self.as_str())
    }
}

impl FromStr for CampaignStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CampaignStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown campaign status {s:?}"))
    }
}

/// Reads `campaigns.status` (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for CampaignStatus {
    type Error = UnknownStatus;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map_err(UnknownStatus)
    }
}

/// Reads `messages.status`.
impl TryFrom<String> for Status {
    type Error = UnknownStatus;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map_err(UnknownStatus)
    }
}

/// A status column held a value the machine does not know (a database
/// written by a newer version, or by hand).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownStatus(String);

/// `'a','b'`: our own constants, never input.
fn sql_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a worker is flagged as a non-recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagReason {
    Undelivered,
    Rejected,
    Expired,
    InvalidNumber,
    RetriesExhausted,
    NoReceipt,
    /// A worker died holding the message under at-most-once: it may or may
    /// not have been sent, and we will not risk a duplicate.
    LeaseLost,
    /// The campaign deadline passed before it could be sent.
    Deadline,
    /// The template could not be rendered for this worker (or came out too
    /// long to send).
    RenderFailed,
}

impl FlagReason {
    pub const ALL: [FlagReason; 9] = [
        FlagReason::Undelivered,
        FlagReason::Rejected,
        FlagReason::Expired,
        FlagReason::InvalidNumber,
        FlagReason::RetriesExhausted,
        FlagReason::NoReceipt,
        FlagReason::LeaseLost,
        FlagReason::Deadline,
        FlagReason::RenderFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlagReason::Undelivered => "undelivered",
            FlagReason::Rejected => "rejected",
            FlagReason::Expired => "expired",
            FlagReason::InvalidNumber => "invalid_number",
            FlagReason::RetriesExhausted => "retries_exhausted",
            FlagReason::NoReceipt => "no_receipt",
            FlagReason::LeaseLost => "lease_lost",
            FlagReason::Deadline => "deadline",
            FlagReason::RenderFailed => "render_failed",
        }
    }
}

impl fmt::Display for FlagReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finals_never_move_except_failed_to_delivered() {
        for from in Status::ALL {
            for to in Status::ALL {
                if from.is_final() && from.can_become(to) {
                    assert_eq!((from, to), (Status::Failed, Status::Delivered));
                }
            }
        }
    }

    #[test]
    fn intermediate_never_goes_backwards_from_sent() {
        assert!(!Status::Sent.can_become(Status::Queued));
        assert!(!Status::Sent.can_become(Status::Sending));
        assert!(!Status::Delivered.can_become(Status::Undelivered));
        assert!(!Status::Undelivered.can_become(Status::Delivered));
        assert!(Status::Unknown.can_become(Status::Delivered));
        assert!(!Status::Sent.can_become(Status::Cancelled));
    }

    #[test]
    fn round_trips_names() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("bogus".parse::<Status>().is_err());
    }

    #[test]
    fn receipts_move_only_what_was_handed_over() {
        use HandOver::*;
        for from in Status::ALL {
            for to in Status::ALL {
                // No evidence: nothing moves, whatever the status says.
                assert_ne!(from.receipt_move(to, None), ReceiptMove::Apply);
                for ev in [Recorded, Signed] {
                    let m = from.receipt_move(to, ev);
                    if m == ReceiptMove::Apply {
                        assert!(from.can_become(to), "{from} -> {to}");
                    }
                }
            }
        }
        // A cancelled message never went out.
        assert_eq!(
            Status::Cancelled.receipt_move(Status::Delivered, Recorded),
            ReceiptMove::NotHandedOver
        );
        // Racing the send, and a lease that expired after the hand-over.
        assert_eq!(
            Status::Sending.receipt_move(Status::Delivered, Signed),
            ReceiptMove::Apply
        );
        assert_eq!(
            Status::Queued.receipt_move(Status::Delivered, Signed),
            ReceiptMove::Apply
        );
        assert_eq!(
            Status::Queued.receipt_move(Status::Delivered, None),
            ReceiptMove::NotHandedOver
        );
        assert_eq!(
            Status::Failed.receipt_move(Status::Delivered, Signed),
            ReceiptMove::NotHandedOver
        );
        assert_eq!(
            Status::Failed.receipt_move(Status::Delivered, Recorded),
            ReceiptMove::Apply
        );
        assert_eq!(
            Status::Delivered.receipt_move(Status::Delivered, Signed),
            ReceiptMove::Stale
        );
        // A duplicate final report.
        assert_eq!(
            Status::Delivered.receipt_move(Status::Delivered, Recorded),
            ReceiptMove::Stale
        );
        assert_eq!(
            Status::receipt_sources(Status::Delivered, None),
            Vec::<Status>::new()
        );
        let d = Status::receipt_sources(Status::Delivered, Recorded);
        assert!(d.contains(&Status::Sent) && d.contains(&Status::Failed));
        assert!(!d.contains(&Status::Cancelled));
    }

    #[test]
    fn campaigns_move_as_the_diagram_says() {
        use CampaignStatus::*;
        for s in CampaignStatus::ALL {
            assert_eq!(s.as_str().parse::<CampaignStatus>().unwrap(), s);
            assert_eq!(format!("{s:<10}|").len(), 11, "{s} pads");
            // Nothing leaves cancelled; nothing stays put by a "move".
            assert!(!Cancelled.can_become(s));
            assert!(!s.can_become(s));
        }
        assert_eq!(CampaignStatus::sources_of(Paused), vec![Scheduled, Running]);
        assert_eq!(
            CampaignStatus::sources_of(Cancelled),
            vec![Scheduled, Running, Paused]
        );
        assert!(!Completed.can_become(Paused) && !Completed.can_become(Cancelled));
        assert_eq!(CampaignStatus::sql_sending(), "'scheduled','running'");
        assert_eq!(
            CampaignStatus::sql_moves(&[Scheduled, Running], Paused),
            "'scheduled','running'"
        );
        assert!("bogus".parse::<CampaignStatus>().is_err());
    }

    #[test]
    #[should_panic(expected = "campaign completed cannot become paused")]
    fn a_guard_for_a_forbidden_campaign_move_is_a_bug() {
        CampaignStatus::sql_moves(&[CampaignStatus::Completed], CampaignStatus::Paused);
    }

    #[test]
    fn guards_render_for_the_partial_indexes() {
        assert_eq!(
            Status::guard(&[Status::Queued], Status::Sending),
            " = 'queued'"
        );
        assert_eq!(
            Status::guard(&Status::sources_of(Status::Cancelled), Status::Cancelled),
            " = 'queued'"
        );
        assert_eq!(Status::sql_is(&Status::UNSENT), " IN ('queued','sending')");
        for s in Status::IN_FLIGHT {
            assert!(!s.is_final() && s != Status::Unknown);
        }
    }

    #[test]
    #[should_panic(expected = "sent cannot become queued")]
    fn a_guard_for_a_forbidden_move_is_a_bug() {
        Status::guard(&[Status::Sent], Status::Queued);
    }

    #[test]
    fn sources_follow_can_become() {
        assert_eq!(Status::sources_of(Status::Sending), vec![Status::Queued]);
        let d = Status::sources_of(Status::Delivered);
        assert!(d.contains(&Status::Sent) && d.contains(&Status::Failed));
        assert!(!d.contains(&Status::Undelivered));
    }
}
