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
        SmsText::counted(transliterate(s))
    }

    /// [`SmsText::new`] of a text the caller owns (a rendering): one that
    /// needs no transliteration (nearly all) is kept without a copy.
    pub fn from_string(s: String) -> SmsText {
        // One pass for the common case: a text GSM-7 carries as it is (no
        // CR either) is what `transliterate` returns, and its septets are
        // the units.
        match plain_septets(&s) {
            Some(septets) => SmsText::with_units(s, Encoding::Gsm7, septets),
            None => SmsText::counted(transliterate(&s)),
        }
    }

    /// Decides the encoding of `text` (transliterated already) and counts
    /// its segments.
    fn counted(text: String) -> SmsText {
        // Septets if every character has them, else UTF-16 units.
        let (encoding, units) = match text.chars().map(gsm7_units).sum::<Option<usize>>() {
            Some(septets) => (Encoding::Gsm7, septets),
            None => (Encoding::Ucs2, text.encode_utf16().count()),
        };
        SmsText::with_units(text, encoding, units)
    }

    /// `text` of `units` in `encoding`, its segments counted. The
    /// per-character costs are only needed to split a long message.
    fn with_units(text: String, encoding: Encoding, units: usize) -> SmsText {
        let segments = if units <= encoding.single_limit() {
            1
        } else {
            let costs: Vec<usize> = match encoding {
                Encoding::Gsm7 => text.chars().filter_map(gsm7_units).collect(),
                Encoding::Ucs2 => text.chars().map(char::len_utf16).collect(),
            };
            count_segments(&costs, units, encoding)
        };
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

    /// The text as it will be sent, without a copy.
    pub fn into_string(self) -> String {
        self.text
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
    // Nearly every character of a notice is ASCII: one table look-up
    // instead of the match's chain of comparisons (the two scans of each
    // message were 4 % of the dispatcher's CPU).
    let units = match ASCII_UNITS.get(c as usize) {
        Some(&units) => units,
        None => gsm7_units_of(c),
    };
    (units > 0).then_some(usize::from(units))
}

/// [`gsm7_units`] of the ASCII characters, 0 for none.
const ASCII_UNITS: [u8; 128] = {
    let mut table = [0; 128];
    let mut i = 0;
    while i < 128 {
        table[i] = gsm7_units_of(i as u8 as char);
        i += 1;
    }
    table
};

/// The table behind [`gsm7_units`]: 0 if GSM-7 cannot carry `c`.
const fn gsm7_units_of(c: char) -> u8 {
    match c {
        '@' | '£' | '$' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | '\n' | 'Ø' | 'ø' | '\r'
        | 'Å' | 'å' => 1,
        'Δ' | '_' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' => {
            1
        }
        ' ' | '!' | '"' | '#' | '¤' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-'
        | '.' | '/' => 1,
        '0'..='9' | ':' | ';' | '<' | '=' | '>' | '?' => 1,
        '¡' | 'A'..='Z' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' => 1,
        '¿' | 'a'..='z' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => 1,
        '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => 2,
        _ => 0,
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
/// Everything else, including letters outside GSM-7, is left alone: this
/// runs on every message, and a faithful replacement is all it may make.
/// Worker data (names) goes further before rendering, through
/// [`to_gsm7_data`], which folds `ç` to `c` and drops emoji: there a
/// misspelt accent costs less than a tripled bill. The result is stable:
/// applying `transliterate` twice changes nothing more.
pub fn transliterate(s: &str) -> String {
    if !needs_transliteration(s) {
        return s.to_owned();
    }
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

/// The septets of `s` if every character is GSM-7 and none is CR, so
/// that [`transliterate`] would return `s` as it is; `None` otherwise.
/// Byte by byte through a table first (a notice is nearly always ASCII),
/// character by character when it is not.
fn plain_septets(s: &str) -> Option<usize> {
    // One table look-up a byte, without a branch or a bounds check: a
    // notice and its four fields are five texts a send.
    let (septets, least) = s.bytes().fold((0usize, u8::MAX), |(sum, least), b| {
        let units = PLAIN_UNITS[usize::from(b)];
        (sum + usize::from(units), least.min(units))
    });
    if least != 0 {
        Some(septets)
    } else if s.is_ascii() {
        None
    } else {
        s.chars()
            .map(|c| if c == '\r' { None } else { gsm7_units(c) })
            .sum()
    }
}

/// [`ASCII_UNITS`] by byte for [`plain_septets`], 0 for CR and for every
/// byte of a non-ASCII character (those take the slower way).
const PLAIN_UNITS: [u8; 256] = {
    let mut table = [0; 256];
    let mut i = 0;
    while i < 128 {
        if i != b'\r' as usize {
            table[i] = ASCII_UNITS[i];
        }
        i += 1;
    }
    table
};

/// Whether [`transliterate`] could change `s`. The common case, text that
/// is GSM-7 already, it cannot: nothing there changes a GSM-7 character
/// but CR (joiners and the rest are not GSM-7).
fn needs_transliteration(s: &str) -> bool {
    plain_septets(s).is_none()
}

/// Zero-width joiner: glues emoji into one picture (👨 + ZWJ + ⚕ = 👨‍⚕).
const ZWJ: char = '\u{200D}';

/// A value from a worker's record (name, facility, profession, province)
/// reduced to what GSM-7 can carry, before it is rendered into a message.
///
/// The carrier bills segments: one emoji typed into a WhatsApp display name
/// would turn the whole notice UCS-2 and make it two or three segments
/// instead of one, for that worker and at national scale for thousands.
/// [`transliterate`] alone keeps letters as they are; this goes further, for
/// worker data only (a template's own text must be GSM-7 as written, see
/// `Renderer::validate`):
///
/// 1. [`transliterate`]: quotes, dashes, ellipsis, Unicode spaces, invisible
///    characters.
/// 2. Canonical composition (NFC), so a letter typed as base + combining
///    accent (`e` + U+0301, as some keyboards send it) is the one character
///    `é`.
/// 3. Every GSM-7 character stays, extension characters (`[ ] { } \ ~ ^ |
///    €`) included: they cost two units, but keep the message GSM-7. So do
///    the accented letters of the default alphabet (é è ù ì ò à Ç É Ä Ö Ñ Ü
///    ä ö ñ ü Å å Ø ø Æ æ ß): `Hélène` stays `Hélène`.
/// 4. A letter or digit that compatibility decomposition (NFKD) turns into
///    GSM-7 once its accents are removed is folded to that: `ç` → `c`, `ā` →
///    `a`, `Ş` → `S`, `ﬁ` → `fi`, fullwidth `Ａ` → `A`, `𝐁` (the "bold"
///    letters of name-styling apps) → `B`, `²` → `2`. A few Latin letters
///    have no decomposition (the stroke is not an accent): see
///    [`fold_undecomposable`].
/// 5. Anything else is dropped: emoji and their modifiers, pictographs,
///    symbols (`©`, `™`, `°`), joiners, letters of scripts GSM-7 lacks (CJK,
///    Cyrillic, Arabic, lower-case Greek). A dropped symbol between two
///    letters or digits leaves a space (`Siti❤Rahayu` → `Siti Rahayu`), as it
///    most likely separated words; a dropped letter or mark leaves nothing.
/// 6. Runs of spaces become one; the ends are trimmed.
///
/// Every character of the result is GSM-7 (a value with no GSM-7 equivalent
/// at all, say a name of emoji only, comes out empty: the caller decides
/// what to print instead), and applying it twice changes nothing more.
pub fn to_gsm7_data(s: &str) -> String {
    if is_plain_gsm7_data(s) {
        return s.to_owned();
    }
    reduce_to_gsm7(s)
}

/// [`to_gsm7_data`] of a value the caller owns: a plain one (nearly all)
/// is returned as it is, without a copy.
pub fn into_gsm7_data(s: String) -> String {
    if is_plain_gsm7_data(&s) {
        return s;
    }
    reduce_to_gsm7(&s)
}

/// Whether every byte of `s` is a printable ASCII character GSM-7 has (no
/// control character: no tab, CR or line feed either).
pub fn is_printable_gsm7_ascii(s: &str) -> bool {
    s.bytes()
        .all(|b| !b.is_ascii_control() && ASCII_UNITS.get(usize::from(b)).is_some_and(|&u| u > 0))
}

/// Whether [`to_gsm7_data`] would return `s` unchanged. Most values are
/// plain GSM-7, single-spaced and trimmed already, and the passes of
/// [`reduce_to_gsm7`] would return them unchanged (a GSM-7 character is
/// only ever changed by `transliterate` if it is CR): this runs for every
/// value of every message, so they are skipped.
fn is_plain_gsm7_data(s: &str) -> bool {
    !needs_transliteration(s) && !s.contains("  ") && s.trim() == s
}

/// [`to_gsm7_data`] without its shortcut for text that is GSM-7 already.
fn reduce_to_gsm7(s: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;

    /// Appends a kept character: a pending word break becomes a space
    /// between two letters or digits, and no space doubles or leads.
    fn keep(out: &mut String, c: char, word_break: &mut bool) {
        let after_word = out.chars().next_back().is_some_and(char::is_alphanumeric);
        if std::mem::take(word_break) && after_word && c.is_alphanumeric() {
            out.push(' ');
        }
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            return;
        }
        out.push(c);
    }

    let mut out = String::with_capacity(s.len());
    // A symbol was dropped since the last character kept.
    let mut word_break = false;
    for c in transliterate(s).nfc() {
        if is_gsm7_char(c) {
            keep(&mut out, c, &mut word_break);
        } else if let Some(folded) = fold_to_gsm7(c) {
            for f in folded.chars() {
                keep(&mut out, f, &mut word_break);
            }
        } else if !(c.is_alphanumeric() || is_combining_mark(c)) {
            word_break = true;
        }
    }
    out.trim().to_owned()
}

/// The GSM-7 letters or digits a letter or digit outside GSM-7 stands for,
/// or `None` if it has no such equivalent (see [`to_gsm7_data`], step 4).
fn fold_to_gsm7(c: char) -> Option<String> {
    use unicode_normalization::char::{decompose_compatible, is_combining_mark};

    if !c.is_alphanumeric() {
        // Symbols have compatibility forms too (`™` → `TM`, `㎏` → `kg`),
        // but a symbol in a name is decoration, not spelling.
        return None;
    }
    let mut folded = String::new();
    decompose_compatible(c, |d| {
        if !is_combining_mark(d) {
            folded.push(d);
        }
    });
    if !folded.is_empty() && folded.chars().all(is_gsm7_char) {
        return Some(folded);
    }
    fold_undecomposable(c).map(str::to_owned)
}

/// Latin letters that Unicode does not decompose (a stroke, a bar or a
/// ligature is part of the letter, not a combining accent), mapped to the
/// letters a reader would expect. A hand-written table, because the crates
/// that transliterate everything (`deunicode`, `any_ascii`) would also turn
/// emoji into words (`🦄` → `unicorn`) and `é` into `e`; we need neither.
fn fold_undecomposable(c: char) -> Option<&'static str> {
    Some(match c {
        'ł' => "l",
        'Ł' => "L",
        'đ' | 'ð' => "d",
        'Đ' | 'Ð' => "D",
        'ħ' => "h",
        'Ħ' => "H",
        'ı' => "i",
        'ŧ' => "t",
        'Ŧ' => "T",
        'œ' => "oe",
        'Œ' => "OE",
        'þ' => "th",
        'Þ' => "Th",
        'ŋ' => "ng",
        'Ŋ' => "Ng",
        _ => return None,
    })
}

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

    /// `to_gsm7_data` on names as they arrive from WhatsApp, Word and phone
    /// keyboards, one category at a time: (input, what is rendered).
    fn check_data(cases: &[(&str, &str)]) {
        for &(input, expected) in cases {
            let out = to_gsm7_data(input);
            assert_eq!(out, expected, "{input:?}");
            assert!(out.chars().all(is_gsm7_char), "{input:?} → {out:?}");
        }
    }

    #[test]
    fn data_curly_quotes_become_straight() {
        check_data(&[
            ("Muhammad Ma\u{2019}ruf", "Muhammad Ma'ruf"),
            ("Nur\u{2018}aini", "Nur'aini"),
            ("\u{201C}Ucok\u{201D} Siregar", "\"Ucok\" Siregar"),
            ("Ma\u{02BC}ruf", "Ma'ruf"),
        ]);
    }

    #[test]
    fn data_dashes_and_ellipsis_become_ascii() {
        check_data(&[
            ("Siti Rahayu \u{2013} Perawat", "Siti Rahayu - Perawat"),
            ("Sp.PD\u{2014}KPTI", "Sp.PD-KPTI"),
            ("Tri\u{2011}Wahyuni", "Tri-Wahyuni"),
            ("Budi\u{2026}", "Budi..."),
        ]);
    }

    #[test]
    fn data_unicode_spaces_become_single_spaces() {
        check_data(&[
            ("Siti\u{00A0}Rahayu", "Siti Rahayu"),
            (
                "\u{00A0}Siti \u{202F}\u{2009} Rahayu\u{3000}",
                "Siti Rahayu",
            ),
            ("Siti\u{200B}Rahayu\u{FEFF}", "SitiRahayu"),
        ]);
    }

    #[test]
    fn data_emoji_and_symbols_are_dropped() {
        check_data(&[
            ("Siti Rahayu \u{1F60A}", "Siti Rahayu"),
            ("\u{1F489}Dr. Budi", "Dr. Budi"),
            ("Budi \u{1F600} Santoso", "Budi Santoso"),
            // Between two letters the dropped picture separated words.
            ("Siti\u{2764}\u{FE0F}Rahayu", "Siti Rahayu"),
            // Before punctuation it leaves nothing.
            ("Ani\u{1F600}, Perawat", "Ani, Perawat"),
            // A ZWJ sequence with a skin tone (health worker), a flag, a
            // keycap, a heart with its variation selector.
            (
                "dr. Ani \u{1F469}\u{1F3FD}\u{200D}\u{2695}\u{FE0F}",
                "dr. Ani",
            ),
            ("Ayu \u{1F1EE}\u{1F1E9} \u{2764}\u{FE0F}", "Ayu"),
            ("Tim 1\u{FE0F}\u{20E3}", "Tim 1"),
            ("Joko\u{2122} \u{00A9} \u{00B0}", "Joko"),
            ("\u{1F600}\u{1F600}", ""),
        ]);
    }

    #[test]
    fn data_extension_characters_stay() {
        check_data(&[
            ("Budi [Puskesmas]", "Budi [Puskesmas]"),
            (
                "{Ani} ~ Budi | Rp 5 \u{20AC} ^ \\",
                "{Ani} ~ Budi | Rp 5 \u{20AC} ^ \\",
            ),
        ]);
        let sms = SmsText::new(&to_gsm7_data("Ani [Bidan]"));
        assert_eq!(sms.encoding(), Encoding::Gsm7);
        assert_eq!(sms.units(), 13);
    }

    #[test]
    fn data_accented_letters_stay_in_gsm7_or_fold_to_their_base() {
        check_data(&[
            // In the GSM-7 alphabet: kept as typed.
            ("Hélène Müller", "Hélène Müller"),
            ("ÉÄÖÑÜÅØÆÇ äöñüåøæß àèéìòù", "ÉÄÖÑÜÅØÆÇ äöñüåøæß àèéìòù"),
            // Outside it: folded to the base letter.
            ("François Ā", "Francois A"),
            ("Şükrü Çağlar", "Sükrü Çaglar"),
            ("Nguyễn Thị Ánh", "Nguyen Thi Anh"),
            ("Raúl Ñúñez", "Raul Ñuñez"),
            ("Łukasz Đorđević", "Lukasz Dordevic"),
            ("Œuvre ıri", "OEuvre iri"),
            // Typed as base letter + combining accent: composed first, so a
            // GSM-7 letter stays one.
            ("Rene\u{0301}e", "Renée"),
            ("c\u{0327}a x\u{0301}", "ca x"),
            // Styled and fullwidth letters from name-decorating apps.
            ("\u{1D401}\u{1D42E}\u{1D41D}\u{1D422}", "Budi"),
            ("\u{FF21}\u{FF4E}\u{FF49}", "Ani"),
            ("\u{FB01}tri", "fitri"),
        ]);
    }

    #[test]
    fn data_in_other_scripts_is_dropped() {
        check_data(&[
            ("Budi \u{738B}\u{5C0F}\u{660E}", "Budi"),
            ("\u{0410}\u{043D}\u{044F} Budi", "Budi"),
            ("\u{0639}\u{0644}\u{064A}", ""),
            // Upper-case Greek letters in GSM-7 stay, the rest go.
            ("\u{0394}\u{03B4}", "\u{0394}"),
        ]);
    }

    #[test]
    fn a_name_with_emoji_costs_one_gsm7_segment() {
        let raw = "Ni Luh Putu \u{201C}Ayu\u{201D} \u{1F60A}\u{1F489} Saraswati\u{2026}";
        let before = SmsText::new(raw);
        assert_eq!(before.encoding(), Encoding::Ucs2);
        let after = SmsText::new(&to_gsm7_data(raw));
        assert_eq!(after.as_str(), "Ni Luh Putu \"Ayu\" Saraswati...");
        assert_eq!((after.encoding(), after.segments()), (Encoding::Gsm7, 1));
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
        fn worker_data_is_gsm7_trimmed_single_spaced_and_stable(s in any::<String>()) {
            let once = to_gsm7_data(&s);
            prop_assert!(once.chars().all(is_gsm7_char), "{:?}", once);
            prop_assert_eq!(once.trim(), once.as_str());
            prop_assert!(!once.contains("  "));
            prop_assert_eq!(to_gsm7_data(&once), once.clone());
            prop_assert_eq!(SmsText::new(&once).encoding(), Encoding::Gsm7);
        }

        #[test]
        fn the_shortcut_for_gsm7_data_changes_nothing(s in "[A-Za-z.'éÇ€\\[ \r\n\t\u{0C}]{0,30}") {
            prop_assert_eq!(to_gsm7_data(&s), reduce_to_gsm7(&s));
            prop_assert_eq!(into_gsm7_data(s.clone()), to_gsm7_data(&s));
        }

        #[test]
        fn worker_data_keeps_gsm7_names_as_they_are(s in r"[A-Za-z0-9éèùìòÇØøÅåÄäÖöÑñÜüàßÉÆæ.,'&()\[\]{}~|^€-]{1,8}( [A-Za-zé.'-]{1,8}){0,3}") {
            prop_assert_eq!(to_gsm7_data(&s), s);
        }
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
            prop_assert_eq!(SmsText::from_string(s.clone()), SmsText::new(&s));
        }

        #[test]
        fn owned_ascii_texts_count_as_borrowed_ones(s in "[ -~\r\n\t]{0,400}|[ -~é€\r]{0,200}") {
            prop_assert_eq!(SmsText::from_string(s.clone()), SmsText::new(&s));
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
