//! What a help-desk search query is read as: a full NIK, a phone number in
//! any format people type, or a fragment of a name. Decided here, so the
//! store only runs the query for an already-read [`SearchQuery`].

use super::{Msisdn, Nik};

/// Fewest characters of a name fragment: no trigram index serves fewer,
/// and two letters match a large share of any registry.
pub const NAME_MIN_CHARS: usize = 3;
/// Most characters of a name fragment.
pub const NAME_MAX_CHARS: usize = 100;

/// A parsed search query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchQuery {
    Nik(Nik),
    Phone(Msisdn),
    /// Trimmed, [`NAME_MIN_CHARS`] to [`NAME_MAX_CHARS`] characters.
    Name(String),
}

/// Why a query was refused (field `query`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query: {0}")]
pub struct InvalidQuery(pub String);

impl SearchQuery {
    /// A NIK if it parses as one, else a phone number, else a name.
    pub fn parse(query: &str) -> Result<SearchQuery, InvalidQuery> {
        let q = query.trim();
        if let Ok(nik) = Nik::parse(q) {
            return Ok(SearchQuery::Nik(nik));
        }
        if let Ok(phone) = Msisdn::parse(q) {
            return Ok(SearchQuery::Phone(phone));
        }
        let n = q.chars().count();
        if n < NAME_MIN_CHARS {
            return Err(InvalidQuery(
                "give a full NIK, a phone number, or at least 3 letters of a name".into(),
            ));
        }
        if n > NAME_MAX_CHARS {
            return Err(InvalidQuery("must be at most 100 characters".into()));
        }
        Ok(SearchQuery::Name(q.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_in_order() {
        assert!(matches!(
            SearchQuery::parse(" 081234567890 "),
            Ok(SearchQuery::Phone(_))
        ));
        assert_eq!(
            SearchQuery::parse("  siti "),
            Ok(SearchQuery::Name("siti".into()))
        );
        assert!(SearchQuery::parse(" ab ").is_err());
        assert!(SearchQuery::parse(&"x".repeat(101)).is_err());
    }
}
