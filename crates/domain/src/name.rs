//! Organization names and the keys that make them unique.
//!
//! Invariants: a display name is trimmed, has its inner whitespace collapsed to single
//! spaces, holds 1 to 64 characters and no control or invisible formatting characters; its
//! key is non-empty, made of case-folded letters, digits, combining marks and single `_`
//! separators, and at most [`MAX_KEY_BYTES`] long.
//!
//! Two names are the same organization when their keys are equal. Two names that only look
//! alike (a Cyrillic "Асме" and a Latin "Acme", "paypal" and "pаypal") have different keys
//! but the same [`Skeleton`] (UTS #39), and stores refuse a second organization whose
//! skeleton is taken: look-alikes cannot impersonate each other, while each keeps its own
//! key for lookups.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The longest display name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 64;

/// The longest key, in UTF-8 bytes. Compatibility normalization can expand a character
/// into many (`ﷺ` into 18), so a 64-character name could in theory make a key of several
/// kilobytes; this bounds what the unique index holds. A key longer than a collection name
/// allows still gets a collection (see `CollectionName::for_organization`).
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a text is not a valid organization name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationNameError {
    /// Nothing is left once whitespace is trimmed.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_NAME_CHARS`] characters after whitespace is collapsed.
    #[error("must be at most {MAX_NAME_CHARS} characters long")]
    TooLong,
    /// Holds a control character or an invisible formatting character.
    #[error("must not contain control or invisible formatting characters")]
    ControlCharacter,
    /// Holds no letter or digit, so its key would be empty.
    #[error("must contain at least one letter or digit")]
    NoLetterOrDigit,
    /// Its key is longer than [`MAX_KEY_BYTES`] (possible only with characters that
    /// normalization expands many times over).
    #[error("is too long once normalized: its key must be at most {MAX_KEY_BYTES} bytes in UTF-8")]
    KeyTooLong,
}

/// The display name of an organization, as the user typed it but tidied.
///
/// ```
/// use domain::OrganizationName;
///
/// let a = OrganizationName::parse("Acme Corp").unwrap();
/// let b = OrganizationName::parse("acme-corp").unwrap();
/// let c = OrganizationName::parse(" ACME  corp ").unwrap();
/// assert_eq!(c.as_str(), "ACME corp");
/// assert_eq!(a.key(), b.key());
/// assert_eq!(b.key(), c.key());
/// assert!(OrganizationName::parse("---").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrganizationName {
    display: String,
    key: OrgKey,
}

/// The normalized form of an organization name: what uniqueness, lookups and the tenant
/// collection name are based on.
///
/// ```
/// use domain::OrganizationName;
/// assert_eq!(OrganizationName::parse("Société Générale!").unwrap().key().as_str(), "société_générale");
/// assert_eq!(OrganizationName::parse("東京 Tech").unwrap().key().as_str(), "東京_tech");
/// assert_eq!(OrganizationName::parse("Straße").unwrap().key().as_str(), "strasse");
/// assert_eq!(OrganizationName::parse("İstanbul").unwrap().key().as_str(), "istanbul");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgKey(String);

impl OrganizationName {
    /// Parses a name typed by a user.
    pub fn parse(input: &str) -> Result<Self, OrganizationNameError> {
        if input.chars().any(is_forbidden) {
            return Err(OrganizationNameError::ControlCharacter);
        }
        let display = input.split_whitespace().collect::<Vec<_>>().join(" ");
        if display.is_empty() {
            return Err(OrganizationNameError::Empty);
        }
        if display.chars().count() > MAX_NAME_CHARS {
            return Err(OrganizationNameError::TooLong);
        }
        let key = OrgKey::derive(&display);
        if key.0.is_empty() {
            return Err(OrganizationNameError::NoLetterOrDigit);
        }
        if key.0.len() > MAX_KEY_BYTES {
            return Err(OrganizationNameError::KeyTooLong);
        }
        Ok(Self { display, key })
    }

    /// A name read back from storage, as it was parsed when it was stored: its display
    /// name and key are taken as they are, not parsed again, so that a change of today's
    /// rules cannot make a stored organization unreadable. Only emptiness is refused.
    pub fn from_stored(display: String, key: String) -> Result<Self, OrganizationNameError> {
        if display.is_empty() || key.is_empty() {
            return Err(OrganizationNameError::Empty);
        }
        Ok(Self { display, key: OrgKey::from_stored(key) })
    }

    /// The display name.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The key that identifies the organization.
    pub fn key(&self) -> &OrgKey {
        &self.key
    }
}

impl OrgKey {
    /// A key read back from storage, taken as it was stored (see
    /// [`OrganizationName::from_stored`]).
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// Case-folds the compatibility-normalized (NFKC) text and turns every run of
    /// characters that are neither letters, digits nor combining marks into one `_`.
    ///
    /// NFKC comes first so that visually identical spellings (a precomposed `é` and an `e`
    /// followed by a combining accent, full-width `Ａ` and `A`) get the same key; combining
    /// marks count as part of the letter they decorate for the same reason. Full case
    /// folding (not lowercasing) makes "Straße" and "STRASSE" one key; the capital `İ`
    /// folds to `i` as in Turkish, rather than to `i` plus a combining dot.
    fn derive(display: &str) -> Self {
        if display.is_ascii() { Self::derive_ascii(display) } else { Self::derive_unicode(display) }
    }

    /// The rule on any text.
    fn derive_unicode(display: &str) -> Self {
        use caseless::Caseless;
        let mut key = String::with_capacity(display.len());
        let mut pending_separator = false;
        let dotless = display.nfkc().map(|c| if c == '\u{130}' { 'i' } else { c });
        for c in dotless.default_case_fold() {
            if c.is_alphanumeric() || is_combining_mark(c) {
                if pending_separator && !key.is_empty() {
                    key.push('_');
                }
                pending_separator = false;
                key.push(c);
            } else {
                pending_separator = true;
            }
        }
        Self(key.nfc().collect())
    }

    /// The same rule for ASCII text, where normalization changes nothing, case folding is
    /// lowercasing and the letters and digits are the ASCII ones: most names, on every
    /// lookup, without the Unicode tables.
    fn derive_ascii(display: &str) -> Self {
        let mut key = String::with_capacity(display.len());
        let mut pending_separator = false;
        for c in display.bytes() {
            if c.is_ascii_alphanumeric() {
                if pending_separator && !key.is_empty() {
                    key.push('_');
                }
                pending_separator = false;
                key.push(char::from(c.to_ascii_lowercase()));
            } else {
                pending_separator = true;
            }
        }
        Self(key)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UTS #39 skeletons of the key: what it looks like written in small letters and
    /// in capitals, each character replaced by its prototype among the characters it can be
    /// confused with. Keys are case-insensitive, so both matter: a Cyrillic "асме" differs
    /// from "acme" in small letters but not in capitals ("АСМЕ", "ACME"). Stores keep every
    /// skeleton unique beside the keys, so a name that merely looks like a taken one is
    /// taken.
    ///
    /// ```
    /// use domain::OrganizationName;
    /// let skeletons = |name: &str| OrganizationName::parse(name).unwrap().key().skeletons();
    /// let shared = |a: &str, b: &str| skeletons(a).iter().any(|s| skeletons(b).contains(s));
    /// assert!(shared("Acme", "\u{410}\u{441}\u{43c}\u{435}")); // Cyrillic "Асме"
    /// assert!(shared("paypal", "p\u{430}ypal")); // a Cyrillic "а"
    /// assert!(!shared("Acme", "Acne"));
    /// ```
    pub fn skeletons(&self) -> [Skeleton; 2] {
        [Skeleton::of('~', &self.0), Skeleton::of('^', &self.0.to_uppercase())]
    }
}

/// What an organization key looks like (UTS #39 skeleton, Unicode's confusables data):
/// equal for names that are visually confusable, such as a Latin and a Cyrillic spelling.
/// It is never shown to users; stores keep it unique. See [`OrgKey::skeletons`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Skeleton(String);

impl Skeleton {
    /// The skeleton of `text`, tagged with `form` (`~` for small letters, `^` for
    /// capitals) so that the two forms, and keys, which hold neither tag character, never
    /// meet in one unique index.
    fn of(form: char, text: &str) -> Self {
        use sha2::{Digest, Sha256};
        use unicode_security::confusable_detection::skeleton;
        let prototype: String = std::iter::once(form).chain(skeleton(text)).nfc().collect();
        if prototype.len() <= MAX_KEY_BYTES {
            return Self(prototype);
        }
        // Prototypes can be longer than the key ("m" looks like "rn"); a digest keeps what
        // the unique index holds bounded.
        Self(format!("{form}#{:x}", Sha256::digest(prototype.as_bytes())))
    }

    /// The skeleton as text, starting with its form's tag (at most [`MAX_KEY_BYTES`]
    /// bytes).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Skeleton {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Skeleton({:?})", self.0)
    }
}

/// Control characters (Unicode category Cc) and the invisible formatting characters that
/// make two names look alike or reorder text (zero-width and bidirectional controls).
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

impl fmt::Display for OrganizationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for OrganizationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrganizationName({:?})", self.display)
    }
}

impl fmt::Display for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgKey({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ascii_rule_is_the_unicode_rule_on_ascii_text() {
        // Every printable ASCII character alone, next to letters, and in pairs, plus names.
        let printable: Vec<char> = (0x20u8..0x7f).map(char::from).collect();
        let mut samples: Vec<String> = Vec::new();
        for &a in &printable {
            samples.push(format!("{a}"));
            samples.push(format!("Ab{a}Cd"));
            for &b in &printable {
                samples.push(format!("{a}{b}x"));
            }
        }
        samples.extend(["Acme Corp", "  ACME--corp__2 ", "I-i-İ", "a.b.c", "Z9 z9"].map(str::to_owned));
        for sample in samples.iter().filter(|s| s.is_ascii()) {
            assert_eq!(OrgKey::derive_ascii(sample), OrgKey::derive_unicode(sample), "{sample:?}");
        }
    }

    use super::OrganizationNameError as E;
    use super::*;

    /// Checks one input: `Ok((display, key))` or the expected error.
    fn check(input: &str, expected: Result<(&str, &str), E>) {
        let actual = OrganizationName::parse(input).map(|n| (n.display.clone(), n.key.0.clone()));
        let expected = expected.map(|(d, k)| (d.to_owned(), k.to_owned()));
        assert_eq!(actual, expected, "input {input:?}");
    }

    #[test]
    fn whitespace_is_trimmed_and_collapsed() {
        for (input, display, key) in [
            ("Acme", "Acme", "acme"),
            ("  Acme Corp  ", "Acme Corp", "acme_corp"),
            ("ACME  corp", "ACME corp", "acme_corp"),
            ("Acme\u{00A0}\u{2003}Corp", "Acme Corp", "acme_corp"),
            ("a", "a", "a"),
        ] {
            check(input, Ok((display, key)));
        }
    }

    #[test]
    fn punctuation_runs_become_one_separator_and_edges_are_stripped() {
        for (input, key) in [
            ("acme-corp", "acme_corp"),
            ("Acme, Inc.", "acme_inc"),
            ("--Acme--", "acme"),
            ("a!!!b???c", "a_b_c"),
            ("_a_", "a"),
            ("a_b", "a_b"),
            ("a__b", "a_b"),
            ("R&D 2024", "r_d_2024"),
            ("(1)", "1"),
            ("Acme 🚀 Rockets", "acme_rockets"),
        ] {
            check(input, Ok((input.trim(), key)));
        }
    }

    #[test]
    fn unicode_letters_and_digits_of_any_script_are_kept() {
        for (input, key) in [
            ("Société Générale", "société_générale"),
            ("ÜBER GmbH", "über_gmbh"),
            ("東京 Tech", "東京_tech"),
            ("Москва-Сити", "москва_сити"),
            ("مرحبا عالم", "مرحبا_عالم"),
            ("Ελλάδα", "ελλάδα"),
            ("١٢٣", "١٢٣"),
        ] {
            check(input, Ok((input, key)));
        }
    }

    #[test]
    fn equivalent_spellings_collide() {
        let groups: &[&[&str]] = &[
            &["Acme Corp", "acme-corp", "ACME  corp", "acme_corp", "Acme.Corp!", " acme corp "],
            // Precomposed and decomposed accents, full-width letters.
            &["Café", "Cafe\u{0301}", "CAFÉ", "ｃａｆé"],
        ];
        for group in groups {
            let keys: Vec<_> =
                group.iter().map(|n| OrganizationName::parse(n).expect("valid name").key().clone()).collect();
            assert!(keys.windows(2).all(|w| w[0] == w[1]), "{group:?} gave {keys:?}");
        }
        let distinct = ["Acme Corp", "Acme Corp 2", "AcmeCorp", "Acme Corps"];
        let keys: std::collections::HashSet<_> =
            distinct.iter().map(|n| OrganizationName::parse(n).expect("valid name").key().clone()).collect();
        assert_eq!(keys.len(), distinct.len());
    }

    #[test]
    fn empty_and_keyless_names_are_rejected() {
        for input in ["", " ", "\u{3000}"] {
            check(input, Err(E::Empty));
        }
        for input in ["-", "!!!", "_", "🚀", ". . ."] {
            check(input, Err(E::NoLetterOrDigit));
        }
    }

    #[test]
    fn control_and_invisible_characters_are_rejected() {
        for input in
            ["Acme\0Corp", "Acme\nCorp", "Acme\tCorp", "\u{7f}Acme", "Ac\u{200B}me", "\u{202E}emcA", "\u{FEFF}Acme"]
        {
            check(input, Err(E::ControlCharacter));
        }
    }

    #[test]
    fn lengths_are_counted_in_characters_after_collapsing() {
        let max = "a".repeat(64);
        check(&max, Ok((&max, &max)));
        check(&"a".repeat(65), Err(E::TooLong));
        let spaced = format!("  {}  ", "a".repeat(64));
        check(&spaced, Ok((&max, &max)));
        // Every name of at most 64 characters is valid whatever its script: a key too long
        // for a collection name gets a shortened collection name instead of a refusal,
        // which the OpenAPI schema (64 characters) could not express.
        check(&"é".repeat(64), Ok((&"é".repeat(64), &"é".repeat(64))));
        check(&"東".repeat(64), Ok((&"東".repeat(64), &"東".repeat(64))));
        check(&"\u{FDFA}".repeat(64), Err(E::KeyTooLong));
    }

    #[test]
    fn keys_are_case_folded_not_lowercased() {
        let key = |name: &str| OrganizationName::parse(name).expect("valid").key().as_str().to_owned();
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("Straße"), "strasse");
        assert_eq!(key("ΣΟΦΙΑ"), key("σοφια"));
        assert_eq!(key("σοφιας"), key("ΣΟΦΙΑΣ"), "a final sigma is a sigma");
        assert_eq!(key("İstanbul"), "istanbul");
        assert!(!key("İSTANBUL").chars().any(is_combining_mark));
        assert_eq!(key("Société Générale"), "société_générale");
    }

    #[test]
    fn look_alikes_share_a_skeleton_and_different_names_do_not() {
        let skeletons = |name: &str| OrganizationName::parse(name).expect("valid").key().skeletons();
        let shared = |a: &str, b: &str| skeletons(a).iter().any(|s| skeletons(b).contains(s));
        for (a, b) in [
            ("Acme", "\u{410}\u{441}\u{43c}\u{435}"), // Cyrillic А, с, м, е
            ("paypal", "p\u{430}yp\u{430}l"),         // Cyrillic а twice
            ("Google", "G\u{43e}\u{3bf}gle"),         // Cyrillic о, Greek ο
            ("Acme Corp", "Acme C\u{43e}rp"),
            ("scope", "\u{455}\u{441}\u{43e}\u{440}\u{435}"), // all Cyrillic
            ("modern", "rnodern"),
            ("Acme", "𝐀𝐜𝐦𝐞"), // also equal keys (NFKC)
        ] {
            assert!(shared(a, b), "{a:?} and {b:?} look alike");
        }
        for (a, b) in [("Acme", "Acne"), ("Москва", "Moskva"), ("Acme", "Acme 2"), ("Bank", "Bonk")] {
            assert!(!shared(a, b), "{a:?} and {b:?} do not look alike");
        }
    }

    #[test]
    fn the_ascii_look_alikes_are_zero_and_o_one_and_l_one_and_i_m_and_rn() {
        let skeletons = |name: &str| OrganizationName::parse(name).expect("valid").key().skeletons();
        let shared = |a: &str, b: &str| skeletons(a).iter().any(|s| skeletons(b).contains(s));
        let alphabet: Vec<String> = ('a'..='z').chain('0'..='9').map(String::from).collect();
        let mut pairs = Vec::new();
        for (i, a) in alphabet.iter().enumerate() {
            pairs.extend(alphabet[i + 1..].iter().filter(|b| shared(a, b)).map(|b| format!("{a}{b}")));
        }
        assert_eq!(pairs, ["i1", "l1", "o0"]);
        assert!(shared("modern", "rnodern") && shared("paypal", "paypa1") && shared("acme 0", "acme o"));
        assert!(!shared("team i", "team l"), "i and l differ in small letters and in capitals");
    }

    #[test]
    fn skeletons_are_bounded() {
        // "ﷺ" expands under NFKC, and "m" becomes "rn": the longest keys still give
        // skeletons that fit the bound.
        for input in ["m".repeat(64), "\u{FDFA}".repeat(50), "東".repeat(64)] {
            if let Ok(name) = OrganizationName::parse(&input) {
                for skeleton in name.key().skeletons() {
                    assert!(skeleton.as_str().len() <= MAX_KEY_BYTES, "{input:?}");
                }
            }
        }
    }

    #[test]
    fn stored_names_are_taken_as_stored() {
        // A name stored under older rules (here: one these rules refuse) is still readable.
        let stored =
            OrganizationName::from_stored("Ac\u{200B}me".to_owned(), "ac\u{200B}me".to_owned()).expect("stored");
        assert_eq!((stored.as_str(), stored.key().as_str()), ("Ac\u{200B}me", "ac\u{200B}me"));
        assert_eq!(OrganizationName::from_stored(String::new(), "k".to_owned()), Err(E::Empty));
    }

    #[test]
    fn every_valid_key_makes_a_collection_name_that_fits() {
        let id = crate::OrgId::new();
        for input in ["a", &"a".repeat(64), &"é".repeat(64), &"東".repeat(64), &"😀a".repeat(32), &"𝔘".repeat(64)]
        {
            let name = OrganizationName::parse(input).expect("valid");
            assert!(!name.key().as_str().contains(['$', '.', '\0']));
            let collection = crate::CollectionName::for_organization(crate::CollectionNaming::Key, id, name.key());
            assert!(collection.as_str().len() <= 120, "{input:?}");
            assert_eq!(crate::CollectionName::parse(collection.as_str()), Ok(collection));
        }
    }
}
