//! SMS text, its encoding and its cost in segments (3GPP TS 23.038).
//!
//! Every segment is billed, and a half-million-recipient blast multiplies any
//! waste: one curly apostrophe pasted from Word or WhatsApp ("Ma’ruf") turns
//! the whole message into UCS-2 and cuts a segment from 160 characters to 70.
//! [`SmsText::new`] therefore first replaces such characters with faithful
//! GSM-7 equivalents, then picks the encoding and counts segments the way the
//! network will split them.

/// The two character encodings an SMS can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The GSM 03.38 default alphabet plus its extension table: 7 bits a
    /// character, 160 in one SMS, 153 per part of a long one.
    Gsm7,
    /// UTF-16 code units (what "UCS-2" means in practice): 70 in one SMS, 67
    /// per part. Used as soon as one character is outside GSM-7.
    Ucs2,
}

impl Encoding {
    /// Stable lowercase name for storage, gateways' parameters and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Units that fit in a message sent as a single SMS.
    pub fn single_limit(&self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units per part of a concatenated message; the rest of each part is
    /// taken by the user-data header that lets the phone reassemble it.
    pub fn part_limit(&self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }
}

/// A message body ready to send: transliterated to GSM-7 where possible,
/// with its encoding, length in units and number of segments worked out once.
///
/// The fields are private so they always agree with `text`. There is
/// deliberately no `Display`: message bodies hold names and must not be
/// logged (log [`SmsText::segments`] and [`SmsText::encoding`] instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsText {
    /// The text as it will be sent, after [`transliterate`].
    text: String,
    /// GSM-7 if every character of `text` is in the GSM-7 tables.
    encoding: Encoding,
    /// Septets (GSM-7, extension characters count 2) or UTF-16 code units.
    units: usize,
    /// SMS parts the network will deliver, and the operator will bill.
    segments: u32,
}

impl SmsText {
    /// Transliterates `s`, then decides its encoding and counts its segments.
    ///
    /// Never fails: any text can be sent, the question is only what it costs.
    /// Empty text is 0 units in 1 segment, as an empty SMS still is one SMS.
    pub fn new(s: &str) -> SmsText {
        let text = transliterate(s);
        let (encoding, costs): (Encoding, Vec<usize>) = if text.chars().all(is_gsm7_char) {
            (
                Encoding::Gsm7,
                text.chars().filter_map(gsm7_units).collect(),
            )
        } else {
            (Encoding::Ucs2, text.chars().map(char::len_utf16).collect())
        };
        let units = costs.iter().sum();
        let segments = count_segments(&costs, units, encoding);
        SmsText {
            text,
            encoding,
            units,
            segments,
        }
    }

    /// The text exactly as it will be sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The encoding the gateway must be told to use.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Length in the encoding's units (septets or UTF-16 code units).
    pub fn units(&self) -> usize {
        self.units
    }

    /// Number of SMS parts: what each recipient costs.
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// Length in Unicode scalar values, for showing editors a familiar count.
    pub fn len_chars(&self) -> usize {
        self.text.chars().count()
    }
}

/// Splits a message into parts the way a sender must: a part is filled until
/// the next character would not fit, so neither an escape pair (GSM-7) nor a
/// surrogate pair (UCS-2) is ever cut in two. This can need one part more
/// than `ceil(units / part_limit)`.
fn count_segments(costs: &[usize], units: usize, encoding: Encoding) -> u32 {
    if units <= encoding.single_limit() {
        return 1;
    }
    let part = encoding.part_limit();
    let mut segments: u32 = 1;
    let mut used = 0;
    for &cost in costs {
        if used + cost > part {
            segments += 1;
            used = 0;
        }
        used += cost;
    }
    segments
}

/// Septets a character takes in GSM-7: 1 in the default alphabet, 2 in the
/// extension table (escape + code), `None` if GSM-7 cannot carry it.
///
/// The default alphabet, in code order 0x00–0x7F (0x1B is the escape):
///
/// ```text
/// @ £ $ ¥ è é ù ì ò Ç LF Ø ø CR Å å
/// Δ _ Φ Γ Λ Ω Π Ψ Σ Θ Ξ ESC Æ æ ß É
/// SP ! " # ¤ % & ' ( ) * + , - . /
/// 0-9 : ; < = > ?
/// ¡ A-Z Ä Ö Ñ Ü §
/// ¿ a-z ä ö ñ ü à
/// ```
///
/// Note `$` is 0x02 and `¤` is 0x24, and there is no backtick, `ç` or `@`
/// substitute: those are the usual mistakes. The extension table adds
/// form feed and `^ { } \ [ ~ ] | €`.
fn gsm7_units(c: char) -> Option<usize> {
    match c {
        '@' | '£' | '$' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | '\n' | 'Ø' | 'ø' | '\r'
        | 'Å' | 'å' => Some(1),
        'Δ' | '_' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' => {
            Some(1)
        }
        ' ' | '!' | '"' | '#' | '¤' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-'
        | '.' | '/' => Some(1),
        '0'..='9' | ':' | ';' | '<' | '=' | '>' | '?' => Some(1),
        '¡' | 'A'..='Z' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' => Some(1),
        '¿' | 'a'..='z' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

/// Whether `c` can be sent in GSM-7 (default alphabet or extension table).
/// One character for which this is false makes a whole message UCS-2.
pub fn is_gsm7_char(c: char) -> bool {
    gsm7_units(c).is_some()
}

/// Invisible characters that copy-and-paste brings along and that would
/// only force UCS-2: zero-width space and non-joiner, direction marks and
/// embeddings, word joiner and friends, byte-order mark, soft hyphen.
/// The zero-width joiner is handled separately (see [`transliterate`]).
fn is_droppable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{200B}'
            | '\u{200C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Replaces characters that have a faithful GSM-7 equivalent, so text
/// pasted from Word, WhatsApp or a web page costs GSM-7 prices.
///
/// - curly and low single quotes, primes, `ʼ`, backtick and acute accent → `'`
/// - curly and low double quotes, double prime, guillemets → `"`
/// - hyphen, non-breaking hyphen, figure/en/em dash, horizontal bar, minus → `-`
/// - ellipsis `…` → `...`; bullets `•‣⁃◦∙` → `-`
/// - tab and Unicode spaces (no-break, narrow no-break, thin, en, em, …) → space
/// - CRLF and lone CR → LF; line and paragraph separators, NEL → LF
/// - zero-width and direction marks, BOM, soft hyphen → removed
/// - zero-width joiner → removed, except between two non-GSM characters,
///   where it glues an emoji sequence (👨‍⚕️) that is UCS-2 anyway and would
///   otherwise fall apart into separate pictures (a run of joiners there is
///   kept as one)
///
/// Everything else, including letters outside GSM-7, is left alone: guessing
/// at names (ç → c?) would misspell people. The result is stable: applying
/// `transliterate` twice changes nothing more.
pub fn transliterate(s: &str) -> String {
    // Pass 1: one-for-one replacements; joiners are kept for pass 2, which
    // needs to see their neighbours as they will finally be.
    let mut replaced = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' | '`'
            | '\u{00B4}' => replaced.push('\''),
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}'
            | '\u{00BB}' => replaced.push('"'),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => replaced.push('-'),
            '\u{2022}' | '\u{2023}' | '\u{2043}' | '\u{25E6}' | '\u{2219}' => replaced.push('-'),
            '\u{2026}' => replaced.push_str("..."),
            '\t'
            | '\u{00A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}' => replaced.push(' '),
            '\r' => {
                // CRLF becomes the LF that follows; a lone CR becomes LF.
                if chars.peek() != Some(&'\n') {
                    replaced.push('\n');
                }
            }
            '\u{0085}' | '\u{2028}' | '\u{2029}' => replaced.push('\n'),
            c if is_droppable(c) => {}
            c => replaced.push(c),
        }
    }

    // Pass 2: a run of joiners becomes one joiner if it sits between two
    // non-GSM characters (an emoji sequence), and nothing otherwise.
    let mut out = String::with_capacity(replaced.len());
    let mut chars = replaced.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ZWJ {
            out.push(c);
            continue;
        }
        while chars.peek() == Some(&ZWJ) {
            chars.next();
        }
        let after_non_gsm = out.chars().next_back().is_some_and(|p| !is_gsm7_char(p));
        let before_non_gsm = chars.peek().is_some_and(|&n| !is_gsm7_char(n));
        if after_non_gsm && before_non_gsm {
            out.push(ZWJ);
        }
    }
    out
}

/// Zero-width joiner: glues emoji into one picture (👨 + ZWJ + ⚕ = 👨‍⚕).
const ZWJ: char = '\u{200D}';

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The GSM 03.38 default alphabet in code order 0x00-0x7F, typed
    /// independently of `gsm7_units` from the standard's table; 0x1B is ESC.
    fn default_alphabet() -> Vec<char> {
        let table = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1B}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
        table.chars().collect()
    }

    #[test]
    fn default_alphabet_is_exactly_the_standard() {
        let table = default_alphabet();
        assert_eq!(table.len(), 128);
        assert_eq!(table[0x02], '$');
        assert_eq!(table[0x24], '¤');
        assert_eq!(table[0x40], '¡');
        assert_eq!(table[0x60], '¿');
        assert_eq!(table[0x7F], 'à');
        for (code, &c) in table.iter().enumerate() {
            if code == 0x1B {
                assert!(!is_gsm7_char(c), "ESC is not a character");
            } else {
                assert_eq!(gsm7_units(c), Some(1), "0x{code:02X} {c:?}");
            }
        }
        let extension = ['\u{000C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];
        for c in extension {
            assert_eq!(gsm7_units(c), Some(2), "{c:?}");
        }
        // Nothing else in the BMP is GSM-7: 127 + 10 characters in all.
        let count = (0..=0xFFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| is_gsm7_char(c))
            .count();
        assert_eq!(count, 127 + extension.len());
        for c in ['`', 'ç', '’', '“', '–', '…', '•', '\t', '\u{A0}', 'ā', '😀'] {
            assert!(!is_gsm7_char(c), "{c:?}");
        }
    }

    #[test]
    fn campaign_text_is_gsm7() {
        for s in [
            "*119#",
            "pedulilindungi.id",
            "&",
            "SMS 1199",
            "(Nama) (NIK: xxxxxxx), Anda calon penerima Vaksin COVID-19. Vaksin yang aman & \
             efektif melindungi anda & keluarga. Ayo cek di: PeduliLindungi.id.",
        ] {
            let sms = SmsText::new(s);
            assert_eq!(sms.encoding(), Encoding::Gsm7, "{s:?}");
            assert_eq!(sms.as_str(), s);
            assert_eq!(sms.units(), s.chars().count());
            assert_eq!(sms.segments(), 1);
        }
    }

    #[test]
    fn transliterates_pasted_punctuation() {
        assert_eq!(transliterate("Ma’ruf"), "Ma'ruf");
        assert_eq!(transliterate("“…”—"), "\"...\"-");
        assert_eq!(
            transliterate("‘a’ ‚b‛ 5′ 6″ ʼc `d´"),
            "'a' 'b' 5' 6\" 'c 'd'"
        );
        assert_eq!(transliterate("„x‟ «y»"), "\"x\" \"y\"");
        assert_eq!(transliterate("a–b—c‑d−e‐f‒g―h"), "a-b-c-d-e-f-g-h");
        assert_eq!(transliterate("• satu\n◦ dua"), "- satu\n- dua");
        assert_eq!(
            transliterate("Rp\u{00A0}10.000\u{202F}x\u{2009}y\u{2003}z\tw"),
            "Rp 10.000 x y z w"
        );
        assert_eq!(
            transliterate("\u{FEFF}Ha\u{200B}lo\u{00AD}!\u{200E}"),
            "Halo!"
        );
        assert_eq!(transliterate("a\r\nb\rc\u{2028}d"), "a\nb\nc\nd");
        assert_eq!(transliterate("Budi\u{200D}Santoso"), "BudiSantoso");
        // Inside an emoji sequence the joiner stays.
        assert_eq!(transliterate("👨\u{200D}⚕️"), "👨\u{200D}⚕️");
        // Letters outside GSM-7 are not guessed at.
        assert_eq!(transliterate("François Ā"), "François Ā");

        let sms = SmsText::new("Bpk. Ma’ruf – “vaksin” hari ini…");
        assert_eq!(sms.encoding(), Encoding::Gsm7);
        assert_eq!(sms.as_str(), "Bpk. Ma'ruf - \"vaksin\" hari ini...");
    }

    #[test]
    fn empty_text_is_one_segment() {
        let sms = SmsText::new("");
        assert_eq!(sms.units(), 0);
        assert_eq!(sms.segments(), 1);
        assert_eq!(sms.encoding(), Encoding::Gsm7);
        assert_eq!(sms.len_chars(), 0);
    }

    #[test]
    fn gsm7_segment_boundaries() {
        let seg = |s: &str| SmsText::new(s).segments();
        assert_eq!(seg(&"a".repeat(160)), 1);
        assert_eq!(seg(&"a".repeat(161)), 2);
        assert_eq!(seg(&"a".repeat(306)), 2);
        assert_eq!(seg(&"a".repeat(307)), 3);
        // Extension characters cost 2 units.
        let euro = SmsText::new(&"€".repeat(80));
        assert_eq!(
            (euro.units(), euro.segments(), euro.len_chars()),
            (160, 1, 80)
        );
        assert_eq!(SmsText::new(&"€".repeat(81)).segments(), 2);
        assert_eq!(SmsText::new(&format!("{}[", "a".repeat(159))).units(), 161);
        assert_eq!(seg(&format!("{}[", "a".repeat(159))), 2);
    }

    #[test]
    fn escape_pair_is_never_split_across_parts() {
        // 152 + 2 + 152 = 306 units: ceil(306 / 153) would say 2, but the
        // escape pair cannot start at unit 153 of part one, so it moves to
        // part two (2 + 151 = 153) and one 'a' spills into part three.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        let sms = SmsText::new(&text);
        assert_eq!(sms.encoding(), Encoding::Gsm7);
        assert_eq!(sms.units(), 306);
        assert_eq!(sms.segments(), 3);
        // Shift the pair one left and it fits: 151 + 2 = 153.
        let text = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(SmsText::new(&text).segments(), 2);
    }

    #[test]
    fn one_emoji_makes_everything_ucs2() {
        let sms = SmsText::new("Halo 😀");
        assert_eq!(sms.encoding(), Encoding::Ucs2);
        assert_eq!(sms.units(), 7);
        assert_eq!(sms.len_chars(), 6);
        // 150 GSM characters fit one SMS until one emoji arrives.
        let text = format!("{}😀", "a".repeat(150));
        let sms = SmsText::new(&text);
        assert_eq!(sms.encoding(), Encoding::Ucs2);
        assert_eq!(sms.units(), 152);
        assert_eq!(sms.segments(), 3);
    }

    #[test]
    fn ucs2_segment_boundaries() {
        let seg = |s: &str| SmsText::new(s).segments();
        assert_eq!(seg(&"ж".repeat(70)), 1);
        assert_eq!(seg(&"ж".repeat(71)), 2);
        assert_eq!(seg(&"ж".repeat(134)), 2);
        assert_eq!(seg(&"ж".repeat(135)), 3);
        assert_eq!(seg(&"😀".repeat(35)), 1);
        assert_eq!(seg(&"😀".repeat(36)), 2);
        // A surrogate pair at unit 67 moves whole to the next part.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(66));
        let sms = SmsText::new(&text);
        assert_eq!(sms.units(), 134);
        assert_eq!(sms.segments(), 3);
    }

    #[test]
    fn encoding_names_and_limits() {
        assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
        assert_eq!(Encoding::Ucs2.as_str(), "ucs2");
        assert_eq!(
            serde_json::to_string(&Encoding::Ucs2).expect("serialise"),
            "\"ucs2\""
        );
        assert_eq!(Encoding::Gsm7.single_limit(), 160);
        assert_eq!(Encoding::Ucs2.part_limit(), 67);
    }

    proptest! {
        #[test]
        fn transliterate_never_panics_and_is_stable(s in any::<String>()) {
            let once = transliterate(&s);
            prop_assert_eq!(transliterate(&once), once.clone());
            prop_assert!(!once.contains('\r'));
        }

        #[test]
        fn segment_count_is_consistent(s in any::<String>()) {
            check_consistent(&SmsText::new(&s))?;
        }

        #[test]
        fn segment_count_is_consistent_for_long_gsm(
            s in "[a-z €\\[\\]{}~|^]{100,500}"
        ) {
            let sms = SmsText::new(&s);
            prop_assert_eq!(sms.encoding(), Encoding::Gsm7);
            check_consistent(&sms)?;
        }

        #[test]
        fn segment_count_is_consistent_for_long_ucs2(
            s in "[a-zж😀🇮🇩 ]{40,300}"
        ) {
            check_consistent(&SmsText::new(&s))?;
        }
    }

    fn check_consistent(sms: &SmsText) -> Result<(), TestCaseError> {
        let enc = sms.encoding();
        let expected_units: usize = match enc {
            Encoding::Gsm7 => {
                prop_assert!(sms.as_str().chars().all(is_gsm7_char));
                sms.as_str().chars().filter_map(gsm7_units).sum()
            }
            Encoding::Ucs2 => {
                prop_assert!(!sms.as_str().chars().all(is_gsm7_char));
                sms.as_str().encode_utf16().count()
            }
        };
        prop_assert_eq!(sms.units(), expected_units);
        prop_assert_eq!(sms.segments() == 1, sms.units() <= enc.single_limit());
        let part = enc.part_limit();
        if sms.segments() > 1 {
            // Honest splitting needs at least the naive count, and wastes at
            // most one unit per part (a 2-unit character that did not fit).
            let segs = sms.segments() as usize;
            prop_assert!(segs >= sms.units().div_ceil(part));
            prop_assert!(segs <= sms.units().div_ceil(part - 1));
        }
        Ok(())
    }
}
