//! Masking of personal data for logs, traces, reports and error messages.
//!
//! Recycled phone numbers mean a message can reach a stranger, and logs are
//! read by more people than the database is. These functions work on raw,
//! unparsed strings too, so a rejected CSV row can be reported without
//! leaking what it held. They never return their whole input.

/// The fixed run of stars that stands for hidden digits. Fixed rather than
/// one star per digit so the mask does not reveal the number's length.
const HIDDEN: &str = "****";

/// Fewest digits a phone mask keeps hidden, however long the input.
const PHONE_MIN_HIDDEN: usize = 3;

/// Digits of a phone number shown at the start and the end.
const PHONE_HEAD: usize = 5;
const PHONE_TAIL: usize = 3;

/// Masks a phone number, parsed or not, for logs: `"+6281234567890"` becomes
/// `"+62812****890"`.
///
/// Only ASCII digits are considered (punctuation is dropped), a leading `+`
/// is kept, and at most the first 5 and last 3 digits are shown, always
/// hiding at least 3. Inputs with fewer than 7 digits come back as `"****"`,
/// and blank input as `""`.
pub fn mask_phone(s: &str) -> String {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let digits: Vec<char> = trimmed.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    if n < PHONE_TAIL + PHONE_MIN_HIDDEN + 1 {
        return HIDDEN.to_string();
    }
    let head = PHONE_HEAD.min(n - PHONE_TAIL - PHONE_MIN_HIDDEN);
    let mut out = String::with_capacity(1 + head + HIDDEN.len() + PHONE_TAIL);
    if trimmed.starts_with('+') {
        out.push('+');
    }
    out.extend(&digits[..head]);
    out.push_str(HIDDEN);
    out.extend(&digits[n - PHONE_TAIL..]);
    out
}

/// Characters of a NIK left visible at the end: enough to tell two records
/// apart in a report, far too few to identify anyone.
const NIK_VISIBLE: usize = 4;

/// Inputs shorter than this are starred completely, since their last four
/// characters would be most of them.
const NIK_MIN_LEN_TO_SHOW: usize = 8;

/// Masks a NIK, parsed or not: `"3174051203870001"` becomes
/// `"************0001"`.
///
/// Surrounding whitespace is trimmed; then every character but the last 4 is
/// replaced by `*`. Inputs shorter than 8 characters are starred entirely.
pub fn mask_nik(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    let n = chars.len();
    if n < NIK_MIN_LEN_TO_SHOW {
        return "*".repeat(n);
    }
    let mut out = "*".repeat(n - NIK_VISIBLE);
    out.extend(&chars[n - NIK_VISIBLE..]);
    out
}

/// Masks a person's name for logs and reports: `"Siti Rahayu"` becomes
/// `"S*** R*****"`.
///
/// Each whitespace-separated word keeps its first character; every other
/// non-whitespace character becomes `*`. Whitespace is kept, and characters
/// (not bytes) are counted, so names in any script are safe.
pub fn mask_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if c.is_whitespace() {
            out.push(c);
            at_word_start = true;
        } else if at_word_start {
            out.push(c);
            at_word_start = false;
        } else {
            out.push('*');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phone_examples() {
        assert_eq!(mask_phone("+6281234567890"), "+62812****890");
        assert_eq!(mask_phone("081234567890"), "08123****890");
        assert_eq!(mask_phone("0812-3456-7890"), "08123****890");
        assert_eq!(mask_phone("+62812345678"), "+62812****678");
        assert_eq!(mask_phone("0812345678"), "0812****678");
        assert_eq!(mask_phone("1234567"), "1****567");
        assert_eq!(mask_phone("123456"), "****");
        assert_eq!(mask_phone("12"), "****");
        assert_eq!(mask_phone("not a number"), "****");
        assert_eq!(mask_phone("   "), "");
    }

    #[test]
    fn nik_examples() {
        assert_eq!(mask_nik("3174051203870001"), "************0001");
        assert_eq!(mask_nik(" 3174051203870001 "), "************0001");
        assert_eq!(mask_nik("12345678"), "****5678");
        assert_eq!(mask_nik("1234567"), "*******");
        assert_eq!(mask_nik("1234"), "****");
        assert_eq!(mask_nik(""), "");
    }

    #[test]
    fn name_examples() {
        assert_eq!(mask_name("Siti Rahayu"), "S*** R*****");
        assert_eq!(mask_name("Ma'ruf Amin"), "M***** A***");
        assert_eq!(mask_name("Ni  Luh\tPutu"), "N*  L**\tP***");
        assert_eq!(mask_name("Ádám Öz"), "Á*** Ö*");
        assert_eq!(mask_name("王小明"), "王**");
        assert_eq!(mask_name(""), "");
    }

    proptest! {
        #[test]
        fn phone_mask_never_contains_the_input(s in "\\+?[0-9]{1,20}") {
            let masked = mask_phone(&s);
            prop_assert!(!masked.contains(&s), "{} -> {}", s, masked);
            let shown = masked.chars().filter(char::is_ascii_digit).count();
            let total = s.chars().filter(char::is_ascii_digit).count();
            prop_assert!(shown + PHONE_MIN_HIDDEN <= total || shown == 0);
        }

        #[test]
        fn phone_mask_hides_punctuated_numbers(s in "[+0-9 ().-]{0,12}[0-9][+0-9 ().-]{0,12}") {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            let masked = mask_phone(&s);
            let masked_digits: String = masked.chars().filter(char::is_ascii_digit).collect();
            prop_assert!(!masked_digits.contains(&digits));
        }

        #[test]
        fn nik_mask_never_contains_the_input(s in "[0-9]{1,20}") {
            let masked = mask_nik(&s);
            prop_assert!(!masked.contains(&s));
            prop_assert_eq!(masked.chars().count(), s.chars().count());
        }

        #[test]
        fn name_mask_never_contains_the_input(
            s in "[A-Za-zÀ-ÿ'\\-]{2,12}( [A-Za-zÀ-ÿ'\\-]{2,12}){0,3}"
        ) {
            let masked = mask_name(&s);
            prop_assert!(!masked.contains(&s));
            prop_assert_eq!(masked.chars().count(), s.chars().count());
        }

        #[test]
        fn masks_never_panic(s in any::<String>()) {
            let _ = mask_phone(&s);
            let _ = mask_nik(&s);
            let _ = mask_name(&s);
        }
    }
}
