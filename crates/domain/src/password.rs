//! Passwords and their hashes. Neither type can be printed: `Debug` is redacted and there
//! is no `Display`, so a password or hash cannot reach a log line by accident.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

/// The shortest password accepted, in characters (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted, in characters; bounds the cost of hashing.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Why a text is not an acceptable password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_CHARS`].
    #[error("must be at least {MIN_PASSWORD_CHARS} characters long")]
    TooShort,
    /// Longer than [`MAX_PASSWORD_CHARS`].
    #[error("must be at most {MAX_PASSWORD_CHARS} characters long")]
    TooLong,
}

/// A password in clear: 8 to 128 characters, no composition rules, in Unicode
/// normalization form C (NIST SP 800-63B), so that `é` typed as one code point or as `e`
/// plus a combining accent is the same password on every keyboard.
///
/// ```
/// use domain::Password;
/// let password = Password::parse("correct horse".to_owned()).unwrap();
/// assert_eq!(password.expose(), "correct horse");
/// assert_eq!(format!("{password:?}"), "Password([REDACTED])");
/// assert!(Password::parse("short".to_owned()).is_err());
/// let decomposed = Password::parse("cafe\u{301} au lait".to_owned()).unwrap();
/// assert_eq!(decomposed.expose(), "caf\u{e9} au lait");
/// assert_eq!(decomposed.as_typed(), Some("cafe\u{301} au lait"));
/// ```
#[derive(Clone)]
pub struct Password {
    normalized: SecretString,
    /// The text as typed, kept only when it is not in NFC: hashes made before passwords
    /// were normalized were made from it.
    typed: Option<SecretString>,
}

impl Password {
    /// Normalizes a password to NFC and checks its length. Nothing else is required of it.
    pub fn parse(input: String) -> Result<Self, PasswordError> {
        let normalized: String = input.nfc().collect();
        match normalized.chars().count() {
            n if n < MIN_PASSWORD_CHARS => Err(PasswordError::TooShort),
            n if n > MAX_PASSWORD_CHARS => Err(PasswordError::TooLong),
            _ => {
                let typed = (normalized != input).then(|| SecretString::from(input));
                Ok(Self { normalized: SecretString::from(normalized), typed })
            }
        }
    }

    /// The normalized password in clear, for the hasher only.
    pub fn expose(&self) -> &str {
        self.normalized.expose_secret()
    }

    /// The password as typed, if normalization changed it: what a hash made before
    /// normalization was made from, for the hasher to try after the normalized form.
    pub fn as_typed(&self) -> Option<&str> {
        self.typed.as_ref().map(|typed| typed.expose_secret())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// Why a text is not an argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an argon2id PHC string")]
pub struct PasswordHashError;

/// An argon2id password hash as a PHC string, parameters included
/// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
///
/// ```
/// use domain::PasswordHash;
/// let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
/// let hash = PasswordHash::from_phc(phc.to_owned()).unwrap();
/// assert_eq!(hash.as_phc(), phc);
/// assert_eq!(format!("{hash:?}"), "PasswordHash([REDACTED])");
/// assert!(PasswordHash::from_phc("$2b$12$bcrypt".to_owned()).is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string, refusing anything that is not argon2id.
    pub fn from_phc(phc: String) -> Result<Self, PasswordHashError> {
        if phc.starts_with("$argon2id$") && phc.split('$').count() == 6 {
            Ok(Self(phc))
        } else {
            Err(PasswordHashError)
        }
    }

    /// The PHC string, for the hasher and the store only.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_counted_in_characters() {
        for (input, expected) in [
            ("1234567".to_owned(), Err(PasswordError::TooShort)),
            ("12345678".to_owned(), Ok(())),
            ("ééééééé".to_owned(), Err(PasswordError::TooShort)),
            ("éééééééé".to_owned(), Ok(())),
            ("        ".to_owned(), Ok(())),
            ("x".repeat(128), Ok(())),
            ("x".repeat(129), Err(PasswordError::TooLong)),
            ("é".repeat(128), Ok(())),
        ] {
            assert_eq!(Password::parse(input.clone()).map(|_| ()), expected, "{input:?}");
        }
    }
}
