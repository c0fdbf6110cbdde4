//! A string that never prints: passwords, callback tokens, API secrets.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// A secret value. `Debug` and `Display` print `[redacted]`; read it with
/// [`Secret::expose`] at the one place that needs it (building a request,
/// comparing a token).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear value. Call sites are few and easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a presented value in constant time (no early exit on the
    /// first differing byte), so timing does not reveal the secret.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.as_bytes();
        // Lengths are compared openly: the length of a random token is not the
        // secret, its bytes are.
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    /// Serialises redacted: settings dumps never leak the value.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// A URL fit for logs, errors and `Debug`: a password in it, and the value
/// of any query parameter whose name looks like a credential (`password`,
/// `api_key`, `token`, `secret`, `auth`, `sig`…), replaced by `redacted`.
/// Anything that does not parse as a URL is returned as written (it holds
/// no structure to find a password in, and hiding it would hide the mistake).
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("redacted"));
    }
    let credential = |name: &str| {
        let name = name.to_ascii_lowercase();
        ["pass", "pwd", "key", "token", "secret", "auth", "sig"]
            .iter()
            .any(|c| name.contains(c))
    };
    if u.query_pairs().any(|(k, _)| credential(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if credential(&k) {
                    "redacted".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// `Debug` for a URL setting: [`redact_url`] of it, quoted like a string.
pub struct DebugUrl<'a>(pub &'a str);

impl fmt::Debug for DebugUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(self.0), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_and_compares() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter"));
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/pc?sslmode=require&password=hunter2"),
            "postgres://app:redacted@db:5432/pc?sslmode=require&password=redacted"
        );
        assert_eq!(
            redact_url("https://api.example/v1/send?api_key=hunter2&from=PEDULICOVID"),
            "https://api.example/v1/send?api_key=redacted&from=PEDULICOVID"
        );
        assert_eq!(
            redact_url("sqlite://pedulicovid.db"),
            "sqlite://pedulicovid.db"
        );
        assert_eq!(
            format!("{:?}", DebugUrl("http://u:hunter2@h/")),
            "\"http://u:redacted@h/\""
        );
    }
}
