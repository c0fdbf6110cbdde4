//! NIK (Nomor Induk Kependudukan), the 16-digit national identity number.
//!
//! Layout: province (2) + regency/city (2) + district (2) + birth date DDMMYY,
//! with 40 added to the day for women + serial (4). There is no check digit,
//! so the parser checks the structure and nothing more; it never compares the
//! embedded date with a birth date given elsewhere.
//!
//! A NIK is personal data: an SMS with a full NIK can reach a stranger on a
//! recycled number. `Display` and `Debug` therefore print the masked form;
//! only [`Nik::as_str`] and serialisation give the full number.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::mask::mask_nik;
use super::province::ProvinceCode;

/// Number of digits in every NIK.
const LEN: usize = 16;

/// Why a string is not a NIK. Each variant names one rule, so an import
/// report can tell the data owner exactly what to fix.
///
/// Messages are phrased to follow the field name ("NIK must be 16 digits, got
/// 15"). They never contain the whole NIK; the birth-date variants show the
/// six date digits, which alone identify no one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NikError {
    /// Nothing but whitespace.
    #[error("is empty")]
    Empty,
    /// A character other than an ASCII digit, e.g. a space inside the number
    /// or the `.`/`E+` of a spreadsheet's scientific notation.
    #[error("contains a non-digit character {0:?}")]
    NonDigit(char),
    /// All digits, but not 16 of them (spreadsheets drop leading zeros and
    /// people drop or double a digit).
    #[error("must be 16 digits, got {0}")]
    WrongLength(usize),
    /// The first two digits are not a Kemendagri province code.
    #[error("unknown province code {0:02}")]
    UnknownProvince(u8),
    /// Digits 3–4 are `00`; regencies start at 01 and cities at 71.
    #[error("regency code 00 is not valid")]
    RegencyZero,
    /// Digits 5–6 are `00`; districts are numbered from 01.
    #[error("district code 00 is not valid")]
    DistrictZero,
    /// Digits 7–8 are neither 01–31 nor, for women, 41–71.
    #[error("birth day {0:02} must be 01-31, or 41-71 for women")]
    BirthDay(u8),
    /// Digits 9–10 are not 01–12.
    #[error("birth month {0:02} must be 01-12")]
    BirthMonth(u8),
    /// Day and month are in range but name no real day in 19YY or 20YY,
    /// e.g. 31 February, or 29 February of a year that is leap in neither.
    #[error("birth date {0} is not a calendar date")]
    BirthDate(String),
    /// Digits 13–16 are `0000`; serials start at 0001.
    #[error("serial 0000 is not valid")]
    SerialZero,
}

/// A structurally valid NIK, held as its 16 ASCII digits.
///
/// Constructed only by [`Nik::parse`], so everything past the import edge can
/// rely on the layout. `Display` and `Debug` mask all but the last 4 digits;
/// `Serialize` writes the full number because the database and internal
/// APIs need it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Nik(String);

impl Nik {
    /// Parses a NIK typed by a person or read from a spreadsheet.
    ///
    /// Only surrounding whitespace is forgiven; inner spaces or dots are
    /// reported rather than guessed around, because a NIK that needed fixing
    /// may also have a mistyped digit the owner should check.
    pub fn parse(s: &str) -> Result<Nik, NikError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NikError::Empty);
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_digit()) {
            return Err(NikError::NonDigit(c));
        }
        // All ASCII digits from here on, so byte indexing is char indexing.
        if s.len() != LEN {
            return Err(NikError::WrongLength(s.len()));
        }
        let b = s.as_bytes();
        let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');

        ProvinceCode::from_code(two(0)).map_err(|_| NikError::UnknownProvince(two(0)))?;
        if two(2) == 0 {
            return Err(NikError::RegencyZero);
        }
        if two(4) == 0 {
            return Err(NikError::DistrictZero);
        }

        let raw_day = two(6);
        let day = match raw_day {
            1..=31 => raw_day,
            41..=71 => raw_day - 40,
            _ => return Err(NikError::BirthDay(raw_day)),
        };
        let month = two(8);
        if !(1..=12).contains(&month) {
            return Err(NikError::BirthMonth(month));
        }
        let yy = i32::from(two(10));
        let real_day = |century: i32| {
            NaiveDate::from_ymd_opt(century + yy, u32::from(month), u32::from(day)).is_some()
        };
        if !real_day(1900) && !real_day(2000) {
            return Err(NikError::BirthDate(s[6..12].to_string()));
        }

        if &s[12..] == "0000" {
            return Err(NikError::SerialZero);
        }
        Ok(Nik(s.to_string()))
    }

    /// The full 16 digits. Use only where the full number is required
    /// (storage, the registration API); anything human-facing wants
    /// [`Nik::masked`] or [`Nik::last_digits`].
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The province where the NIK was first issued. This is not where the
    /// person lives or works, so it is no basis for routing a health worker.
    pub fn province(&self) -> ProvinceCode {
        // parse() checked the first two digits against the province table.
        ProvinceCode::parse(&self.0[..2]).expect("Nik holds a valid province code")
    }

    /// The last `n` digits (all 16 if `n` is larger), e.g. the last 6 that
    /// the Kominfo chatbot asks a health worker to confirm.
    pub fn last_digits(&self, n: usize) -> &str {
        &self.0[LEN - n.min(LEN)..]
    }

    /// The form safe for logs, reports and message text: `************3456`.
    pub fn masked(&self) -> String {
        mask_nik(&self.0)
    }
}

impl FromStr for Nik {
    type Err = NikError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Nik::parse(s)
    }
}

/// Prints the masked form, so a NIK interpolated into a log line or message
/// by accident still reveals only its last 4 digits.
/// Reads a stored NIK (`#[sqlx(try_from = "String")]`): the registry
/// stores parsed NIKs only, so one that does not parse is a damaged row.
impl TryFrom<String> for Nik {
    type Error = NikError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Nik::parse(&s)
    }
}

impl fmt::Display for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Masked for the same reason as `Display`: `{:?}` ends up in logs too.
impl fmt::Debug for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nik({})", self.masked())
    }
}

impl Serialize for Nik {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Nik {
    /// Goes through [`Nik::parse`], so a NIK read back from any source is
    /// held to the same rules as one typed in.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Nik::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Jakarta Timur (31 75), district 05, born 12 March 1987, serial 0001.
    const VALID: &str = "3175051203870001";

    fn err(s: &str) -> NikError {
        Nik::parse(s).expect_err(s)
    }

    #[test]
    fn accepts_a_valid_nik_and_trims() {
        let nik = Nik::parse(" \t3175051203870001\n").expect("valid");
        assert_eq!(nik.as_str(), VALID);
        assert_eq!(nik.province().code(), 31);
        assert_eq!(nik.province().name(), "DKI Jakarta");
    }

    #[test]
    fn rejects_every_rule() {
        assert_eq!(err(""), NikError::Empty);
        assert_eq!(err("   "), NikError::Empty);
        assert_eq!(err("3175 0512 0387 0001"), NikError::NonDigit(' '));
        assert_eq!(err("3.17505E+15"), NikError::NonDigit('.'));
        assert_eq!(err("317505120387000١"), NikError::NonDigit('١'));
        assert_eq!(err("317505120387001"), NikError::WrongLength(15));
        assert_eq!(err("31750512038700011"), NikError::WrongLength(17));
        assert_eq!(err("9975051203870001"), NikError::UnknownProvince(99));
        assert_eq!(err("2075051203870001"), NikError::UnknownProvince(20));
        assert_eq!(err("3100051203870001"), NikError::RegencyZero);
        assert_eq!(err("3175001203870001"), NikError::DistrictZero);
        assert_eq!(err("3175050003870001"), NikError::BirthDay(0));
        assert_eq!(err("3175053203870001"), NikError::BirthDay(32));
        assert_eq!(err("3175054003870001"), NikError::BirthDay(40));
        assert_eq!(err("3175057203870001"), NikError::BirthDay(72));
        assert_eq!(err("3175051200870001"), NikError::BirthMonth(0));
        assert_eq!(err("3175051213870001"), NikError::BirthMonth(13));
        assert_eq!(
            err("3175053102990001"),
            NikError::BirthDate("310299".into())
        );
        assert_eq!(
            err("3175053104870001"),
            NikError::BirthDate("310487".into())
        );
        assert_eq!(err("3175051203870000"), NikError::SerialZero);
    }

    #[test]
    fn error_messages_are_plain_english() {
        assert_eq!(
            NikError::WrongLength(15).to_string(),
            "must be 16 digits, got 15"
        );
        assert_eq!(
            NikError::NonDigit('x').to_string(),
            "contains a non-digit character 'x'"
        );
        assert_eq!(
            NikError::UnknownProvince(99).to_string(),
            "unknown province code 99"
        );
        assert_eq!(
            NikError::RegencyZero.to_string(),
            "regency code 00 is not valid"
        );
        assert_eq!(
            NikError::DistrictZero.to_string(),
            "district code 00 is not valid"
        );
        assert_eq!(
            NikError::BirthDate("310299".into()).to_string(),
            "birth date 310299 is not a calendar date"
        );
        assert_eq!(NikError::SerialZero.to_string(), "serial 0000 is not valid");
        assert_eq!(
            NikError::BirthDay(35).to_string(),
            "birth day 35 must be 01-31, or 41-71 for women"
        );
        assert_eq!(
            NikError::BirthMonth(13).to_string(),
            "birth month 13 must be 01-12"
        );
    }

    #[test]
    fn women_have_forty_added_to_the_day() {
        // 12 March 1987, woman: day 52.
        assert!(Nik::parse("3175055203870001").is_ok());
        // 31 January, woman: day 71 is the top of the range.
        assert!(Nik::parse("3175057101870001").is_ok());
        // 1 January, woman: day 41.
        assert!(Nik::parse("3175054101870001").is_ok());
        // 31 April does not exist for women either.
        assert_eq!(
            err("3175057104870001"),
            NikError::BirthDate("710487".into())
        );
    }

    #[test]
    fn february_29_needs_a_leap_year_in_either_century() {
        // 1988 is leap (so is 2088).
        assert!(Nik::parse("3175052902880001").is_ok());
        // 00: 1900 is not leap but 2000 is, so accepted.
        assert!(Nik::parse("3175052902000001").is_ok());
        // Woman, 29 Feb 1996.
        assert!(Nik::parse("3175056902960001").is_ok());
        // 1987 and 2087 are not leap.
        assert_eq!(
            err("3175052902870001"),
            NikError::BirthDate("290287".into())
        );
        assert_eq!(
            err("3175053002880001"),
            NikError::BirthDate("300288".into())
        );
    }

    #[test]
    fn cities_and_new_papua_provinces() {
        // City codes 71-99 are fine, as are regency codes 01-69.
        assert!(Nik::parse("3171010101900001").is_ok());
        assert!(Nik::parse("3199010101900001").is_ok());
        assert!(Nik::parse("9601010101900001").is_ok());
        assert_eq!(
            Nik::parse("9601010101900001")
                .expect("valid")
                .province()
                .time_zone(),
            crate::domain::TimeZone::Wit
        );
    }

    #[test]
    fn display_and_debug_are_masked() {
        let nik = Nik::parse("3175051203873456").expect("valid");
        assert_eq!(nik.masked(), "************3456");
        assert_eq!(nik.to_string(), "************3456");
        assert_eq!(format!("{nik:?}"), "Nik(************3456)");
        assert!(!format!("{nik} {nik:?} {nik:#?}").contains("31750512"));
    }

    #[test]
    fn last_digits_clamps() {
        let nik = Nik::parse(VALID).expect("valid");
        assert_eq!(nik.last_digits(6), "870001");
        assert_eq!(nik.last_digits(0), "");
        assert_eq!(nik.last_digits(16), VALID);
        assert_eq!(nik.last_digits(100), VALID);
    }

    #[test]
    fn serde_round_trips_full_number_and_validates() {
        let nik = Nik::parse(VALID).expect("valid");
        let json = serde_json::to_string(&nik).expect("serialise");
        assert_eq!(json, format!("\"{VALID}\""));
        let back: Nik = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, nik);
        let bad = serde_json::from_str::<Nik>("\"3175051203870000\"")
            .expect_err("serial 0000")
            .to_string();
        assert!(bad.contains("serial 0000 is not valid"), "{bad}");
        assert!(serde_json::from_str::<Nik>("3175051203870001").is_err());
    }

    /// Builds a NIK from its parts, each within the rules.
    fn valid_nik() -> impl Strategy<Value = String> {
        (
            proptest::sample::select(ProvinceCode::all()),
            1u8..=99,
            1u8..=99,
            1u8..=28,
            any::<bool>(),
            1u8..=12,
            0u8..=99,
            1u16..=9999,
        )
            .prop_map(|(p, reg, dist, day, woman, month, yy, serial)| {
                let day = if woman { day + 40 } else { day };
                format!("{p}{reg:02}{dist:02}{day:02}{month:02}{yy:02}{serial:04}")
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Nik::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_digit_strings(s in "[0-9]{14,18}") {
            let _ = Nik::parse(&s);
        }

        #[test]
        fn accepts_constructed_valid_niks(s in valid_nik()) {
            let nik = Nik::parse(&s);
            prop_assert!(nik.is_ok(), "{} -> {:?}", s, nik);
            let nik = nik.expect("checked above");
            prop_assert_eq!(nik.as_str(), s.as_str());
            prop_assert_eq!(Nik::parse(nik.as_str()), Ok(nik.clone()));
            prop_assert!(!nik.to_string().contains(&s[..12]));
        }
    }
}
