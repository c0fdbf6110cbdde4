//! Indonesian mobile numbers (MSISDNs), normalised to E.164 `+628…`.
//!
//! Phone columns in the health-worker data are typed by hand: spaces,
//! dashes, brackets, `+62`, `0062`, a stray `0` after the country code,
//! sometimes two numbers in one field, sometimes a landline. The parser
//! accepts every harmless variant and names the problem with everything
//! else, because a wrong number costs money and can reach a stranger.
//!
//! Normalisation (DOMAIN.md):
//! 1. remove whitespace (including non-breaking and other Unicode spaces),
//!    invisible formatting marks, `-` (and Unicode dashes), `.`, `(`, `)`, `/`;
//!    a `+` is allowed once, before the first digit;
//! 2. reject any other character, and fields holding two numbers;
//! 3. strip the first of `+62`, `0062`, `62`, `0`; if a `0` then remains,
//!    drop it;
//! 4. require `8[1-35-9]\d{7,10}`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::mask::mask_phone;

/// Shortest national significant number (after `+62`): `8` + 8 digits.
const NSN_MIN: usize = 9;
/// Longest national significant number: `8` + 11 digits.
const NSN_MAX: usize = 12;

/// Why a string is not an Indonesian mobile number. The message is shown to
/// whoever supplied the number (import report, API response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    /// No digits at all (blank, or only punctuation).
    #[error("empty")]
    Empty,
    /// A character that is neither a digit nor harmless punctuation, e.g. a
    /// letter or a `,`. A `+` anywhere but before the first digit lands here
    /// too.
    #[error("invalid character {0:?}")]
    InvalidCharacter(char),
    /// The field holds two (or more) numbers, e.g. `0812… / 0813…` or
    /// `0812…, 0813…`; we will not guess which one is meant.
    #[error("looks like two numbers; give one number per field")]
    TwoNumbers,
    /// An international number with another country code (`+65…`, `0065…`).
    #[error("not an Indonesian number: country code must be +62")]
    Foreign,
    /// Indonesian but not mobile, e.g. a landline `021…`: no SMS can reach it.
    #[error("not an Indonesian mobile number: must start 08 or +628")]
    NotMobile,
    /// Starts `08` but with a second digit no mobile range uses: `080x` are
    /// toll-free and premium numbers, `084x` is unallocated.
    #[error("not an Indonesian mobile number: prefix 08{0} is not a mobile prefix")]
    UnallocatedPrefix(char),
    /// Fewer than 9 digits after `0`/`+62`.
    #[error("too short: {0} digits after the 0 or +62 prefix, a mobile number has 9 to 12")]
    TooShort(usize),
    /// More than 12 digits after `0`/`+62`, yet too few to be two numbers.
    #[error("too long: {0} digits after the 0 or +62 prefix, a mobile number has 9 to 12")]
    TooLong(usize),
}

/// The operator a number was originally issued by, from its prefix.
///
/// A routing hint only: the prefix table comes from third-party lists and
/// operators have merged (Indosat with Tri, XL with Axis and Smartfren), so
/// never reject a number because of its operator. Serialised in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// Telkomsel (Halo, simPATI, by.U): 0811–0813, 0821–0823, 0851–0853.
    Telkomsel,
    /// Indosat Ooredoo: 0814–0816, 0855–0858.
    Indosat,
    /// Tri (3), now Indosat Ooredoo Hutchison: 0895–0899.
    Tri,
    /// XL Axiata: 0817–0819, 0859, 0877, 0878.
    Xl,
    /// Axis, part of XL: 0831–0833, 0838.
    Axis,
    /// Smartfren: 0881–0889.
    Smartfren,
    /// A mobile prefix in no list we have (e.g. 0820, 0834, 0854).
    Unknown,
}

impl Operator {
    /// Every operator, for reports and metrics labels.
    pub const ALL: [Operator; 7] = [
        Operator::Telkomsel,
        Operator::Indosat,
        Operator::Tri,
        Operator::Xl,
        Operator::Axis,
        Operator::Smartfren,
        Operator::Unknown,
    ];

    /// Stable lowercase name for configuration, metrics and the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            Operator::Telkomsel => "telkomsel",
            Operator::Indosat => "indosat",
            Operator::Tri => "tri",
            Operator::Xl => "xl",
            Operator::Axis => "axis",
            Operator::Smartfren => "smartfren",
            Operator::Unknown => "unknown",
        }
    }

    /// Inverse of [`Operator::as_str`], ignoring ASCII case, for settings
    /// and database columns.
    pub fn from_str_name(s: &str) -> Option<Operator> {
        Operator::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Maps the first three digits of a national significant number
    /// (`"812"` for 0812…) to an operator, per DOMAIN.md's prefix table.
    fn from_nsn_prefix(prefix: &[u8]) -> Operator {
        match prefix {
            b"811" | b"812" | b"813" | b"821" | b"822" | b"823" | b"851" | b"852" | b"853" => {
                Operator::Telkomsel
            }
            b"814" | b"815" | b"816" | b"855" | b"856" | b"857" | b"858" => Operator::Indosat,
            b"895" | b"896" | b"897" | b"898" | b"899" => Operator::Tri,
            b"817" | b"818" | b"819" | b"859" | b"877" | b"878" => Operator::Xl,
            b"831" | b"832" | b"833" | b"838" => Operator::Axis,
            b"881" | b"882" | b"883" | b"884" | b"885" | b"886" | b"887" | b"888" | b"889" => {
                Operator::Smartfren
            }
            _ => Operator::Unknown,
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Indonesian mobile number, held in E.164 form (`+6281234567890`).
///
/// Constructed only by [`Msisdn::parse`], so it always matches
/// `\+628[1-35-9]\d{7,10}`. `Display` and `Debug` print the masked form
/// (`+62812****890`) so numbers do not leak into logs; use
/// [`Msisdn::as_e164`] or [`Msisdn::digits`] where the real number is
/// needed. Serialised as E.164.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Msisdn(String);

/// Invisible formatting characters that copy-and-paste brings along (from
/// WhatsApp, Excel, web pages): zero-width spaces and joiners, direction
/// marks and embeddings, word joiner, BOM and soft hyphen. `char::is_whitespace`
/// covers none of them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Hyphen-minus and the Unicode hyphens, dashes and minus signs that word
/// processors substitute for it; none of them can change the digits.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{FF0D}'
    )
}

/// Characters removed without comment: whitespace, invisible marks, dashes
/// and the punctuation people group digits with.
fn is_ignorable(c: char) -> bool {
    c.is_whitespace() || is_invisible(c) || is_dash(c) || matches!(c, '.' | '(' | ')' | '/')
}

/// Detects a field holding two numbers separated by something other than
/// grouping spaces: `/`, `,`, `;`, `&`, `|`, a newline, or a word such as
/// "atau"/"dan". The field is split at every such separator; if two pieces
/// each have enough digits to be a number on their own, it is two numbers.
///
/// `/` alone is ambiguous (`0812/3456/7890` is one number written oddly), so
/// the digit count, not the separator, decides.
fn holds_two_numbers(s: &str) -> bool {
    // Grouping characters keep a number together; everything else, plus
    // `/`, a newline and a `+` (which may only open a number), splits.
    let is_separator =
        |c: char| matches!(c, '/' | '\n' | '+') || !(c.is_ascii_digit() || is_ignorable(c));
    s.split(is_separator)
        .filter(|piece| piece.chars().filter(char::is_ascii_digit).count() >= NSN_MIN)
        .count()
        >= 2
}

/// Whether `s` is what [`Msisdn::parse`] returns: `+62` and a mobile
/// national number (`8`, not `80` or `84`, [`NSN_MIN`] to [`NSN_MAX`]
/// digits).
fn is_canonical(s: &str) -> bool {
    let Some(nsn) = s.strip_prefix("+62") else {
        return false;
    };
    let b = nsn.as_bytes();
    (NSN_MIN..=NSN_MAX).contains(&b.len())
        && b[0] == b'8'
        && !matches!(b[1], b'0' | b'4')
        && b.iter().all(u8::is_ascii_digit)
}

impl Msisdn {
    /// Normalises a hand-typed number to E.164, or says why it cannot.
    ///
    /// See the module documentation for the exact rules.
    pub fn parse(s: &str) -> Result<Msisdn, MsisdnError> {
        // A stored number is written as this returns it (every claimed
        // message reads one): kept as it is, one copy, not rebuilt.
        if is_canonical(s) {
            return Ok(Msisdn(s.to_owned()));
        }
        Self::parse_written(s)
    }

    /// [`Msisdn::parse`] step by step, for a number as a person wrote it.
    fn parse_written(s: &str) -> Result<Msisdn, MsisdnError> {
        if holds_two_numbers(s) {
            return Err(MsisdnError::TwoNumbers);
        }

        // Step 1 and 2: keep digits, note a leading '+', reject the rest.
        let mut digits = String::with_capacity(s.len());
        let mut plus = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
            } else if c == '+' && digits.is_empty() && !plus {
                plus = true;
            } else if !is_ignorable(c) {
                return Err(MsisdnError::InvalidCharacter(c));
            }
        }
        if digits.is_empty() {
            return Err(MsisdnError::Empty);
        }

        // Step 3: strip the first matching prefix, then one more '0'.
        let rest = if plus {
            digits.strip_prefix("62").ok_or(MsisdnError::Foreign)?
        } else if let Some(rest) = digits.strip_prefix("0062") {
            rest
        } else if digits.starts_with("00") {
            return Err(MsisdnError::Foreign);
        } else if let Some(rest) = digits.strip_prefix("62") {
            rest
        } else {
            digits.strip_prefix('0').unwrap_or(&digits)
        };
        let nsn = rest.strip_prefix('0').unwrap_or(rest);

        // Step 4: 8[1-35-9]\d{7,10}.
        let b = nsn.as_bytes();
        match b.first() {
            None => return Err(MsisdnError::TooShort(0)),
            Some(b'8') => {}
            Some(_) => return Err(MsisdnError::NotMobile),
        }
        if let Some(&second) = b.get(1) {
            if second == b'0' || second == b'4' {
                return Err(MsisdnError::UnallocatedPrefix(char::from(second)));
            }
        }
        if nsn.len() < NSN_MIN {
            return Err(MsisdnError::TooShort(nsn.len()));
        }
        if nsn.len() > NSN_MAX {
            // Two of the shortest numbers written bare (9 + 9 digits) is the
            // least a pair can have; the longest single number written in
            // full ("0062 0" + 12) has 17, so 18 or more digits is a pair.
            if digits.len() >= 2 * NSN_MIN {
                return Err(MsisdnError::TwoNumbers);
            }
            return Err(MsisdnError::TooLong(nsn.len()));
        }
        Ok(Msisdn(format!("+62{nsn}")))
    }

    /// E.164 with the plus, `"+6281234567890"`: the stored and exchanged form.
    pub fn as_e164(&self) -> &str {
        &self.0
    }

    /// E.164 without the plus, `"6281234567890"`: what Kannel and most SMS
    /// gateways want in `to`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The national significant number, `"81234567890"`: the part after
    /// `+62` that carries the operator prefix.
    pub fn national_significant_number(&self) -> &str {
        &self.0[3..]
    }

    /// The national form people dial, `"081234567890"`.
    pub fn national(&self) -> String {
        format!("0{}", self.national_significant_number())
    }

    /// The readable national form, grouped 4-4-rest: `"0812-3456-7890"`.
    /// For showing a number back to its owner (e.g. on their own profile),
    /// never in logs.
    pub fn display(&self) -> String {
        let national = self.national();
        // Shortest national form is 10 digits, so both splits are in range.
        format!("{}-{}-{}", &national[..4], &national[4..8], &national[8..])
    }

    /// The operator the prefix was issued to: a routing hint, see [`Operator`].
    pub fn operator(&self) -> Operator {
        Operator::from_nsn_prefix(&self.national_significant_number().as_bytes()[..3])
    }

    /// The form safe for logs and traces: `"+62812****890"` (the country
    /// code, the 3-digit operator prefix and the last 3 digits).
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

impl FromStr for Msisdn {
    type Err = MsisdnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Msisdn::parse(s)
    }
}

/// Prints the masked form, so a number interpolated into a log line by
/// accident does not leak.
/// Reads a stored number (`#[sqlx(try_from = "String")]`, E.164): the
/// registry stores parsed numbers only.
impl TryFrom<String> for Msisdn {
    type Error = MsisdnError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Msisdn::parse(&s)
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Masked for the same reason as `Display`: `{:?}` ends up in logs too.
impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.masked())
    }
}

impl Serialize for Msisdn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Msisdn {
    /// Goes through [`Msisdn::parse`], so any accepted spelling (E.164,
    /// national, punctuated) deserialises to the same value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Msisdn::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> String {
        match Msisdn::parse(s) {
            Ok(m) => m.as_e164().to_string(),
            Err(e) => panic!("{s:?} rejected: {e}"),
        }
    }

    fn err(s: &str) -> MsisdnError {
        match Msisdn::parse(s) {
            Ok(m) => panic!("{s:?} accepted as {}", m.as_e164()),
            Err(e) => e,
        }
    }

    #[test]
    fn messy_inputs_from_domain_md() {
        let e164 = "+6281234567890";
        for s in [
            "+62 812-3456-7890",
            "+6281234567890",
            "6281234567890",
            "081234567890",
            "0812 3456 7890",
            "0812-3456-7890",
            "0812.3456.7890",
            "(0812) 3456.7890",
            "62 0812 3456 7890",
            "+62 (0) 812 3456 7890",
            "+62 0812-3456-7890",
            "006281234567890",
            "0062 0812 3456 7890",
            "81234567890",
            "0812/3456/7890",
            "  081234567890  ",
            "0812\u{00A0}3456\u{00A0}7890",
            "0812\u{202F}3456\u{2009}7890",
            "\u{202A}+62 812-3456-7890\u{202C}",
            "\u{FEFF}081234567890\u{200B}",
            "0812–3456–7890",
            "(+62) 812 3456 7890",
        ] {
            assert_eq!(ok(s), e164, "{s:?}");
        }
        assert_eq!(ok("0062812345678"), "+62812345678");
    }

    #[test]
    fn lengths_at_the_edges() {
        // 9 and 12 digits after 0 are the extremes of 8[1-35-9]\d{7,10}.
        assert_eq!(ok("0812345678"), "+62812345678");
        assert_eq!(ok("0812345678901"), "+62812345678901");
        assert_eq!(err("081234567"), MsisdnError::TooShort(8));
        assert_eq!(err("08123456789012"), MsisdnError::TooLong(13));
        assert_eq!(err("0"), MsisdnError::TooShort(0));
        assert_eq!(err("+62"), MsisdnError::TooShort(0));
        assert_eq!(err("08"), MsisdnError::TooShort(1));
    }

    #[test]
    fn rejections() {
        assert_eq!(err(""), MsisdnError::Empty);
        assert_eq!(err("   "), MsisdnError::Empty);
        assert_eq!(err("-"), MsisdnError::Empty);
        assert_eq!(
            err("0812 3456 7890 / 0813 1111 2222"),
            MsisdnError::TwoNumbers
        );
        assert_eq!(err("081234567890, 081311112222"), MsisdnError::TwoNumbers);
        assert_eq!(err("081234567890;081311112222"), MsisdnError::TwoNumbers);
        assert_eq!(
            err("081234567890 atau 081311112222"),
            MsisdnError::TwoNumbers
        );
        assert_eq!(err("081234567890\n081311112222"), MsisdnError::TwoNumbers);
        assert_eq!(
            err("0812 3456 7890 0813 1111 2222"),
            MsisdnError::TwoNumbers
        );
        assert_eq!(err("081234567890081311112222"), MsisdnError::TwoNumbers);
        assert_eq!(
            err("+62 812 3456 7890 +62 813 1111 2222"),
            MsisdnError::TwoNumbers
        );
        assert_eq!(
            err("Budi 081234567890, Ani 081311112222"),
            MsisdnError::TwoNumbers
        );
        // 17 digits can still be one number, written in full...
        assert_eq!(ok("0062 0812 3456 78901"), "+62812345678901");
        // ...so an over-long one with fewer than 18 digits is just too long.
        assert_eq!(err("+62 0812 3456 789012"), MsisdnError::TooLong(13));
        assert_eq!(err("021 555 1234"), MsisdnError::NotMobile);
        assert_eq!(err("(021) 5551234"), MsisdnError::NotMobile);
        assert_eq!(err("+62 21 555 1234"), MsisdnError::NotMobile);
        assert_eq!(err("+65 9123 4567"), MsisdnError::Foreign);
        assert_eq!(err("0065 9123 4567"), MsisdnError::Foreign);
        assert_eq!(err("+0812 3456 7890"), MsisdnError::Foreign);
        assert_eq!(err("0800 1234 5678"), MsisdnError::UnallocatedPrefix('0'));
        assert_eq!(err("0841 2345 6789"), MsisdnError::UnallocatedPrefix('4'));
        assert_eq!(err("0812345678a"), MsisdnError::InvalidCharacter('a'));
        assert_eq!(err("tel:081234567890"), MsisdnError::InvalidCharacter('t'));
        assert_eq!(
            err("0812-3456-7890 ext"),
            MsisdnError::InvalidCharacter('e')
        );
        assert_eq!(err("0812,3456"), MsisdnError::InvalidCharacter(','));
        assert_eq!(err("0812+3456+7890"), MsisdnError::InvalidCharacter('+'));
        assert_eq!(err("++6281234567890"), MsisdnError::InvalidCharacter('+'));
        assert_eq!(
            err("０８１２３４５６７８９０"),
            MsisdnError::InvalidCharacter('０')
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(MsisdnError::Empty.to_string(), "empty");
        assert_eq!(
            MsisdnError::InvalidCharacter('x').to_string(),
            "invalid character 'x'"
        );
        assert_eq!(
            MsisdnError::NotMobile.to_string(),
            "not an Indonesian mobile number: must start 08 or +628"
        );
        assert!(MsisdnError::TooShort(8)
            .to_string()
            .starts_with("too short"));
        assert!(MsisdnError::TooLong(13).to_string().starts_with("too long"));
        assert!(MsisdnError::TwoNumbers.to_string().contains("two numbers"));
        assert_eq!(
            MsisdnError::UnallocatedPrefix('4').to_string(),
            "not an Indonesian mobile number: prefix 084 is not a mobile prefix"
        );
    }

    #[test]
    fn output_forms() {
        let m = Msisdn::parse("0812-3456-7890").expect("valid");
        assert_eq!(m.as_e164(), "+6281234567890");
        assert_eq!(m.digits(), "6281234567890");
        assert_eq!(m.national_significant_number(), "81234567890");
        assert_eq!(m.national(), "081234567890");
        assert_eq!(m.display(), "0812-3456-7890");
        assert_eq!(m.masked(), "+62812****890");
        assert_eq!(m.to_string(), "+62812****890");
        assert_eq!(format!("{m:?}"), "Msisdn(+62812****890)");

        let short = Msisdn::parse("0812345678").expect("valid");
        assert_eq!(short.display(), "0812-3456-78");
        assert_eq!(short.masked(), "+62812****678");
        let long = Msisdn::parse("0812345678901").expect("valid");
        assert_eq!(long.display(), "0812-3456-78901");
        assert_eq!(long.masked(), "+62812****901");
    }

    #[test]
    fn operator_for_every_prefix_group() {
        let cases: &[(&[&str], Operator)] = &[
            (
                &[
                    "0811", "0812", "0813", "0821", "0822", "0823", "0851", "0852", "0853",
                ],
                Operator::Telkomsel,
            ),
            (
                &["0814", "0815", "0816", "0855", "0856", "0857", "0858"],
                Operator::Indosat,
            ),
            (&["0895", "0896", "0897", "0898", "0899"], Operator::Tri),
            (
                &["0817", "0818", "0819", "0859", "0877", "0878"],
                Operator::Xl,
            ),
            (&["0831", "0832", "0833", "0838"], Operator::Axis),
            (
                &[
                    "0881", "0882", "0883", "0884", "0885", "0886", "0887", "0888", "0889",
                ],
                Operator::Smartfren,
            ),
            (
                &["0820", "0834", "0854", "0870", "0891", "0880"],
                Operator::Unknown,
            ),
        ];
        for (prefixes, op) in cases {
            for p in *prefixes {
                let m = Msisdn::parse(&format!("{p}12345678")).expect("valid mobile");
                assert_eq!(m.operator(), *op, "{p}");
            }
        }
    }

    #[test]
    fn operator_names() {
        for op in Operator::ALL {
            assert_eq!(Operator::from_str_name(op.as_str()), Some(op));
            assert_eq!(op.to_string(), op.as_str());
        }
        assert_eq!(Operator::from_str_name("XL"), Some(Operator::Xl));
        assert_eq!(Operator::from_str_name("three"), None);
        assert_eq!(
            serde_json::to_string(&Operator::Smartfren).expect("serialise"),
            "\"smartfren\""
        );
        let op: Operator = serde_json::from_str("\"tri\"").expect("deserialise");
        assert_eq!(op, Operator::Tri);
    }

    #[test]
    fn serde_round_trip() {
        let m = Msisdn::parse("0812 3456 7890").expect("valid");
        let json = serde_json::to_string(&m).expect("serialise");
        assert_eq!(json, "\"+6281234567890\"");
        let back: Msisdn = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, m);
        let national: Msisdn = serde_json::from_str("\"0812-3456-7890\"").expect("lenient");
        assert_eq!(national, m);
        assert!(serde_json::from_str::<Msisdn>("\"021 555 1234\"").is_err());
    }

    fn nsn() -> impl Strategy<Value = String> {
        "8[1-35-9][0-9]{7,10}"
    }

    /// Writes `nsn` the way a person might: a prefix variant, then the
    /// digits with random grouping punctuation between them.
    fn messy(nsn: &str, prefix: usize, seps: &[usize]) -> String {
        const PREFIXES: [&str; 10] = [
            "", "0", "62", "+62", "0062", "+62 0", "62 0", "(+62) ", "+62 (0)", "0062-0",
        ];
        const SEPS: [&str; 10] = ["", "", "", " ", "-", ".", "\u{00A0}", " - ", "/", ") "];
        let mut out = PREFIXES[prefix % PREFIXES.len()].to_string();
        for (i, c) in nsn.chars().enumerate() {
            out.push(c);
            let sep = seps.get(i).copied().unwrap_or(0);
            out.push_str(SEPS[sep % SEPS.len()]);
        }
        out
    }

    proptest! {
        #[test]
        fn a_canonical_number_is_kept_as_the_steps_would_write_it(
            s in "\\+62[0-9]{6,15}|\\+62 ?8[0-9 ]{6,14}|[+0-9]{8,16}"
        ) {
            prop_assert_eq!(Msisdn::parse(&s), Msisdn::parse_written(&s));
            if is_canonical(&s) {
                prop_assert_eq!(Msisdn::parse(&s).map(|m| m.0), Ok(s.clone()));
            }
        }

        #[test]
        fn parse_is_idempotent_on_its_own_forms(nsn in nsn()) {
            let m = Msisdn::parse(&format!("0{nsn}")).expect("generated valid");
            prop_assert_eq!(m.as_e164(), format!("+62{nsn}"));
            for form in [m.as_e164().to_string(), m.national(), m.display(), m.digits().to_string()] {
                prop_assert_eq!(Msisdn::parse(&form), Ok(m.clone()), "{}", form);
            }
        }

        #[test]
        fn every_spelling_normalises_to_the_same_e164(
            nsn in nsn(),
            prefix in 0usize..10,
            seps in proptest::collection::vec(0usize..10, 12),
        ) {
            let input = messy(&nsn, prefix, &seps);
            prop_assert_eq!(
                Msisdn::parse(&input).map(|m| m.as_e164().to_string()),
                Ok(format!("+62{nsn}")),
                "{:?}", input
            );
        }

        #[test]
        fn two_valid_numbers_are_never_accepted(
            a in nsn(), b in nsn(), sep in "( / |, |;|\n| atau | dan | & | )"
        ) {
            let input = format!("0{a}{sep}0{b}");
            prop_assert!(Msisdn::parse(&input).is_err(), "{:?}", input);
        }

        #[test]
        fn masked_never_shows_the_number(nsn in nsn()) {
            let m = Msisdn::parse(&nsn).expect("generated valid");
            for shown in [m.masked(), m.to_string(), format!("{m:?}")] {
                prop_assert!(!shown.contains(&nsn));
                let digits_shown = shown.chars().filter(char::is_ascii_digit).count();
                // "62" + 3 prefix digits + 3 final digits, never more.
                prop_assert_eq!(digits_shown, 8);
            }
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Msisdn::parse(&s);
        }

        #[test]
        fn accepted_numbers_match_the_pattern(s in "[+0-9 ()./-]{0,24}") {
            if let Ok(m) = Msisdn::parse(&s) {
                let nsn = m.national_significant_number().as_bytes();
                prop_assert!(m.as_e164().starts_with("+628"));
                prop_assert!((NSN_MIN..=NSN_MAX).contains(&nsn.len()));
                prop_assert!(nsn.iter().all(u8::is_ascii_digit));
                prop_assert!(!matches!(nsn[1], b'0' | b'4'));
            }
        }
    }
}
