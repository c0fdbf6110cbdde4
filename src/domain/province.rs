//! Kemendagri province codes (the first two digits of every NIK) and the
//! three Indonesian time zones they fall in.
//!
//! The campaign needs both: the province says which time zone a recipient's
//! "local time" window is computed in, and the NIK parser rejects a NIK whose
//! first two digits name no province.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// One of Indonesia's three civil time zones. None observes daylight saving
/// time, so a fixed UTC offset is the whole story.
///
/// Serialised as its abbreviation (`"WIB"`, `"WITA"`, `"WIT"`), the form
/// Indonesians read on every schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TimeZone {
    /// Waktu Indonesia Barat, UTC+7 (Sumatra, Java, West and Central Kalimantan).
    Wib,
    /// Waktu Indonesia Tengah, UTC+8 (Bali, Nusa Tenggara, rest of Kalimantan, Sulawesi).
    Wita,
    /// Waktu Indonesia Timur, UTC+9 (Maluku and Papua).
    Wit,
}

impl TimeZone {
    /// Every zone, west to east, for building per-zone schedules.
    pub const ALL: [TimeZone; 3] = [TimeZone::Wib, TimeZone::Wita, TimeZone::Wit];

    /// Whole hours ahead of UTC; the sending window is computed from this.
    pub fn utc_offset_hours(&self) -> i32 {
        match self {
            TimeZone::Wib => 7,
            TimeZone::Wita => 8,
            TimeZone::Wit => 9,
        }
    }

    /// Seconds ahead of UTC, the unit `chrono::FixedOffset` wants.
    pub fn utc_offset_seconds(&self) -> i32 {
        self.utc_offset_hours() * 3600
    }

    /// The offset as a `chrono` type, so callers can convert instants to
    /// local wall-clock time without a time-zone database.
    pub fn fixed_offset(&self) -> chrono::FixedOffset {
        // The offsets are +7..+9 hours, far inside FixedOffset's ±24 h range,
        // so `east_opt` cannot return None here.
        chrono::FixedOffset::east_opt(self.utc_offset_seconds())
            .expect("UTC+7..+9 is a valid fixed offset")
    }

    /// The abbreviation printed in messages and reports ("pukul 08.00 WIB").
    pub fn abbreviation(&self) -> &'static str {
        match self {
            TimeZone::Wib => "WIB",
            TimeZone::Wita => "WITA",
            TimeZone::Wit => "WIT",
        }
    }

    /// Inverse of [`TimeZone::utc_offset_hours`], for settings that name a
    /// zone by its offset.
    pub fn from_offset_hours(hours: i32) -> Option<TimeZone> {
        match hours {
            7 => Some(TimeZone::Wib),
            8 => Some(TimeZone::Wita),
            9 => Some(TimeZone::Wit),
            _ => None,
        }
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.abbreviation())
    }
}

/// Why a string is not a province code. The caller (CSV import, API) shows
/// the message to the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvinceError {
    /// Two digits, but no province in the Kemendagri table has them.
    #[error("unknown province code {0:02}")]
    Unknown(u8),
    /// Not exactly two ASCII digits.
    #[error("province code must be 2 digits")]
    NotTwoDigits,
}

/// A Kemendagri province code such as 31 (DKI Jakarta).
///
/// The private field holds a code from the province table only, so [`name`](Self::name)
/// and [`time_zone`](Self::time_zone) never fail. Serialised as the two-digit
/// string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Ord, PartialOrd)]
pub struct ProvinceCode(u8);

/// One row of the province table.
struct Entry {
    code: u8,
    name: &'static str,
    zone: TimeZone,
}

const fn entry(code: u8, name: &'static str, zone: TimeZone) -> Entry {
    Entry { code, name, zone }
}

/// The provinces of DOMAIN.md's time-zone table, sorted by code so lookups can
/// binary-search.
///
/// The codes for the Papua provinces created in 2022 differ between code
/// systems; we follow DOMAIN.md (93–96). Every code starting with 9 is WIT
/// whichever system is right, and older NIKs there still start 91 or 92.
const TABLE: [Entry; 38] = [
    entry(11, "Aceh", TimeZone::Wib),
    entry(12, "Sumatera Utara", TimeZone::Wib),
    entry(13, "Sumatera Barat", TimeZone::Wib),
    entry(14, "Riau", TimeZone::Wib),
    entry(15, "Jambi", TimeZone::Wib),
    entry(16, "Sumatera Selatan", TimeZone::Wib),
    entry(17, "Bengkulu", TimeZone::Wib),
    entry(18, "Lampung", TimeZone::Wib),
    entry(19, "Kepulauan Bangka Belitung", TimeZone::Wib),
    entry(21, "Kepulauan Riau", TimeZone::Wib),
    entry(31, "DKI Jakarta", TimeZone::Wib),
    entry(32, "Jawa Barat", TimeZone::Wib),
    entry(33, "Jawa Tengah", TimeZone::Wib),
    entry(34, "DI Yogyakarta", TimeZone::Wib),
    entry(35, "Jawa Timur", TimeZone::Wib),
    entry(36, "Banten", TimeZone::Wib),
    entry(51, "Bali", TimeZone::Wita),
    entry(52, "Nusa Tenggara Barat", TimeZone::Wita),
    entry(53, "Nusa Tenggara Timur", TimeZone::Wita),
    // Asia/Pontianak: a different IANA name, but the same UTC+7 as Jakarta.
    entry(61, "Kalimantan Barat", TimeZone::Wib),
    entry(62, "Kalimantan Tengah", TimeZone::Wib),
    entry(63, "Kalimantan Selatan", TimeZone::Wita),
    entry(64, "Kalimantan Timur", TimeZone::Wita),
    entry(65, "Kalimantan Utara", TimeZone::Wita),
    entry(71, "Sulawesi Utara", TimeZone::Wita),
    entry(72, "Sulawesi Tengah", TimeZone::Wita),
    entry(73, "Sulawesi Selatan", TimeZone::Wita),
    entry(74, "Sulawesi Tenggara", TimeZone::Wita),
    entry(75, "Gorontalo", TimeZone::Wita),
    entry(76, "Sulawesi Barat", TimeZone::Wita),
    entry(81, "Maluku", TimeZone::Wit),
    entry(82, "Maluku Utara", TimeZone::Wit),
    entry(91, "Papua", TimeZone::Wit),
    entry(92, "Papua Barat", TimeZone::Wit),
    entry(93, "Papua Selatan", TimeZone::Wit),
    entry(94, "Papua Tengah", TimeZone::Wit),
    entry(95, "Papua Pegunungan", TimeZone::Wit),
    entry(96, "Papua Barat Daya", TimeZone::Wit),
];

/// Every valid code, in the same order as [`TABLE`].
const ALL: [ProvinceCode; TABLE.len()] = {
    let mut out = [ProvinceCode(0); TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        out[i] = ProvinceCode(TABLE[i].code);
        i += 1;
    }
    out
};

impl ProvinceCode {
    /// Parses the two-digit form found in NIKs, CSV columns and settings.
    /// Surrounding whitespace is ignored; anything else must be exactly two
    /// ASCII digits naming a listed province.
    pub fn parse(s: &str) -> Result<ProvinceCode, ProvinceError> {
        let s = s.trim();
        let bytes = s.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(ProvinceError::NotTwoDigits);
        }
        ProvinceCode::from_code((bytes[0] - b'0') * 10 + (bytes[1] - b'0'))
    }

    /// Accepts a numeric code, for callers that already hold it as a number
    /// (database columns, JSON numbers).
    pub fn from_code(code: u8) -> Result<ProvinceCode, ProvinceError> {
        match TABLE.binary_search_by_key(&code, |e| e.code) {
            Ok(_) => Ok(ProvinceCode(code)),
            Err(_) => Err(ProvinceError::Unknown(code)),
        }
    }

    /// Every province, in code order: for reports, pickers and per-zone
    /// scheduling.
    pub fn all() -> &'static [ProvinceCode] {
        &ALL
    }

    /// The numeric code, e.g. 31.
    pub fn code(&self) -> u8 {
        self.0
    }

    /// The two-digit string, e.g. "31", as it appears in a NIK.
    pub fn code_str(&self) -> String {
        format!("{:02}", self.0)
    }

    /// The Indonesian province name, for reports read by campaign staff.
    pub fn name(&self) -> &'static str {
        self.entry().name
    }

    /// The time zone whose local hours decide when this province may be sent
    /// to.
    pub fn time_zone(&self) -> TimeZone {
        // DOMAIN.md: anything starting with 9 is WIT in every code system.
        if self.0 / 10 == 9 {
            return TimeZone::Wit;
        }
        self.entry().zone
    }

    fn entry(&self) -> &'static Entry {
        match TABLE.binary_search_by_key(&self.0, |e| e.code) {
            Ok(i) => &TABLE[i],
            // Every constructor checks the code against TABLE, and the field
            // is private, so a ProvinceCode always has an entry.
            Err(_) => unreachable!("ProvinceCode {} is not in TABLE", self.0),
        }
    }
}

impl FromStr for ProvinceCode {
    type Err = ProvinceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProvinceCode::parse(s)
    }
}

impl TryFrom<u8> for ProvinceCode {
    type Error = ProvinceError;

    fn try_from(code: u8) -> Result<Self, Self::Error> {
        ProvinceCode::from_code(code)
    }
}

/// Reads a stored code (`#[sqlx(try_from = "String")]`): the registry
/// stores parsed codes only, so an unknown one is a damaged row, refused.
impl TryFrom<String> for ProvinceCode {
    type Error = ProvinceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ProvinceCode::parse(&s)
    }
}

impl fmt::Display for ProvinceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

impl Serialize for ProvinceCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.code_str())
    }
}

impl<'de> Deserialize<'de> for ProvinceCode {
    /// Accepts the two-digit string and, leniently, a JSON number, since
    /// spreadsheets and hand-written JSON often drop the quotes.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = ProvinceCode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a two-digit Indonesian province code such as \"31\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProvinceCode, E> {
                ProvinceCode::parse(v).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ProvinceCode, E> {
                let code = u8::try_from(v).map_err(|_| E::custom(ProvinceError::NotTwoDigits))?;
                if code < 10 {
                    return Err(E::custom(ProvinceError::NotTwoDigits));
                }
                ProvinceCode::from_code(code).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ProvinceCode, E> {
                let v = u64::try_from(v).map_err(|_| E::custom(ProvinceError::NotTwoDigits))?;
                self.visit_u64(v)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listed_codes_and_trims() {
        let jakarta = ProvinceCode::parse(" 31\n").expect("31 is DKI Jakarta");
        assert_eq!(jakarta.code(), 31);
        assert_eq!(jakarta.code_str(), "31");
        assert_eq!(jakarta.to_string(), "31");
        assert_eq!(jakarta.name(), "DKI Jakarta");
        assert_eq!(jakarta.time_zone(), TimeZone::Wib);
    }

    #[test]
    fn rejects_unknown_and_malformed_codes() {
        assert_eq!(ProvinceCode::parse("99"), Err(ProvinceError::Unknown(99)));
        assert_eq!(ProvinceCode::parse("00"), Err(ProvinceError::Unknown(0)));
        assert_eq!(ProvinceCode::parse("20"), Err(ProvinceError::Unknown(20)));
        for bad in ["", "3", "310", "3a", "+3", "３１", "3 1"] {
            assert_eq!(
                ProvinceCode::parse(bad),
                Err(ProvinceError::NotTwoDigits),
                "{bad:?}"
            );
        }
        assert_eq!(
            ProvinceError::Unknown(99).to_string(),
            "unknown province code 99"
        );
        assert_eq!(
            ProvinceError::Unknown(5).to_string(),
            "unknown province code 05"
        );
        assert_eq!(
            ProvinceError::NotTwoDigits.to_string(),
            "province code must be 2 digits"
        );
    }

    #[test]
    fn table_matches_domain_time_zones() {
        let expect = |codes: &[u8], zone: TimeZone| {
            for &c in codes {
                let p = ProvinceCode::from_code(c).expect("listed in DOMAIN.md");
                assert_eq!(p.time_zone(), zone, "province {c}");
            }
        };
        expect(
            &[
                11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 31, 32, 33, 34, 35, 36, 61, 62,
            ],
            TimeZone::Wib,
        );
        expect(
            &[51, 52, 53, 63, 64, 65, 71, 72, 73, 74, 75, 76],
            TimeZone::Wita,
        );
        expect(&[81, 82, 91, 92, 93, 94, 95, 96], TimeZone::Wit);
        assert_eq!(ProvinceCode::all().len(), 38);
    }

    #[test]
    fn all_is_sorted_unique_and_round_trips() {
        let all = ProvinceCode::all();
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        for p in all {
            assert_eq!(ProvinceCode::parse(&p.code_str()), Ok(*p));
            assert!(!p.name().is_empty());
            if p.code() >= 90 {
                assert_eq!(p.time_zone(), TimeZone::Wit);
            }
        }
    }

    #[test]
    fn time_zone_offsets() {
        assert_eq!(TimeZone::Wib.utc_offset_hours(), 7);
        assert_eq!(TimeZone::Wita.utc_offset_seconds(), 8 * 3600);
        assert_eq!(TimeZone::Wit.abbreviation(), "WIT");
        assert_eq!(TimeZone::Wit.fixed_offset().local_minus_utc(), 9 * 3600);
        for z in TimeZone::ALL {
            assert_eq!(TimeZone::from_offset_hours(z.utc_offset_hours()), Some(z));
        }
        assert_eq!(TimeZone::from_offset_hours(0), None);
        assert_eq!(TimeZone::Wita.to_string(), "WITA");
    }

    #[test]
    fn serde_uses_two_digit_string() {
        let p = ProvinceCode::parse("31").expect("valid");
        assert_eq!(serde_json::to_string(&p).expect("serialise"), "\"31\"");
        let back: ProvinceCode = serde_json::from_str("\"31\"").expect("deserialise");
        assert_eq!(back, p);
        let lenient: ProvinceCode = serde_json::from_str("31").expect("number accepted");
        assert_eq!(lenient, p);
        assert!(serde_json::from_str::<ProvinceCode>("\"99\"").is_err());
        assert!(serde_json::from_str::<ProvinceCode>("5").is_err());
        assert_eq!(
            serde_json::to_string(&TimeZone::Wita).expect("serialise"),
            "\"WITA\""
        );
    }
}
