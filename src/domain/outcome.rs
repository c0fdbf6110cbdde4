//! What became of a non-recipient after outreach: the outcome the outreach
//! team (or an operator) records against a flag, and what each outcome
//! means for the flag and for the campaign's "finally reached" count.
//!
//! | outcome            | reached | resolves an open flag (`outreach`) |
//! |--------------------|---------|------------------------------------|
//! | `reregistered`     | yes     | yes                                |
//! | `reached_by_phone` | yes     | yes                                |
//! | `declined`         | no      | yes                                |
//! | `unreachable`      | no      | no: the chatbot keeps offering re-registration |
//!
//! A later outcome replaces an earlier one. A flag resolved `outreach` by
//! an earlier outcome opens again when the later one is `unreachable`; a
//! flag resolved otherwise (a late delivery, a resend, a re-registration,
//! support staff) keeps its resolution whatever the outcome.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The resolution a flag gets when an outcome resolves it.
pub const OUTREACH_RESOLUTION: &str = "outreach";

/// One outreach outcome (the `non_recipients.outcome` CHECK lists the same
/// four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The worker registered again (a new number with One Data, the
    /// chatbot or the facility).
    Reregistered,
    /// The worker was told by phone: the notice reached them.
    ReachedByPhone,
    /// No answer, wrong number, moved: not reached.
    Unreachable,
    /// The worker was reached and does not want the vaccination or the
    /// notices. Resolves the flag (no more outreach); not counted as
    /// reached. The suppression list may suppress on it.
    Declined,
}

/// An outcome that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownOutcome(pub String);

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Reregistered,
        Outcome::ReachedByPhone,
        Outcome::Unreachable,
        Outcome::Declined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Reregistered => "reregistered",
            Outcome::ReachedByPhone => "reached_by_phone",
            Outcome::Unreachable => "unreachable",
            Outcome::Declined => "declined",
        }
    }

    /// Whether the outcome says the worker was finally reached (the other
    /// half of "reached" is a later delivery: [`crate::store`]'s
    /// `reached_sql`).
    pub fn reaches(self) -> bool {
        matches!(self, Outcome::Reregistered | Outcome::ReachedByPhone)
    }

    /// Whether recording it resolves an open flag ([`OUTREACH_RESOLUTION`]),
    /// so the chatbot stops offering re-registration. `unreachable` does
    /// not: the worker may still come to the chatbot.
    pub fn resolves_flag(self) -> bool {
        !matches!(self, Outcome::Unreachable)
    }

    /// Parses a value as people type it: trimmed, any case.
    pub fn parse(s: &str) -> Result<Outcome, UnknownOutcome> {
        let v = s.trim().to_ascii_lowercase();
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == v)
            .ok_or_else(|| {
                let names = Outcome::ALL.map(Outcome::as_str).join(", ");
                UnknownOutcome(if v.is_empty() {
                    format!("is required: one of {names}")
                } else {
                    let shown: String = s.trim().chars().take(40).collect();
                    format!("{shown:?} is not an outcome: one of {names}")
                })
            })
    }
}

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::parse(s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_in_any_case_and_nothing_else() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Ok(o));
            assert_eq!(
                Outcome::parse(&format!(" {} ", o.as_str().to_uppercase())),
                Ok(o)
            );
        }
        let e = Outcome::parse("reached").unwrap_err().0;
        assert!(e.contains("\"reached\" is not an outcome"), "{e}");
        assert!(e.contains("reached_by_phone"), "{e}");
        assert!(Outcome::parse("  ")
            .unwrap_err()
            .0
            .starts_with("is required"));
    }

    #[test]
    fn only_unreachable_leaves_the_flag_open_and_two_reach() {
        let reach: Vec<_> = Outcome::ALL.into_iter().filter(|o| o.reaches()).collect();
        assert_eq!(reach, [Outcome::Reregistered, Outcome::ReachedByPhone]);
        let open: Vec<_> = Outcome::ALL
            .into_iter()
            .filter(|o| !o.resolves_flag())
            .collect();
        assert_eq!(open, [Outcome::Unreachable]);
    }
}
