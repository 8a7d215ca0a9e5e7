//! Passwords and their hashes. Neither type can be printed: `Debug` is redacted and there
//! is no `Display`, so a password or hash cannot reach a log line by accident.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

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

/// A password in clear, as typed: 8 to 128 characters, no composition rules.
///
/// ```
/// use domain::Password;
/// let password = Password::parse("correct horse".to_owned()).unwrap();
/// assert_eq!(password.expose(), "correct horse");
/// assert_eq!(format!("{password:?}"), "Password([REDACTED])");
/// assert!(Password::parse("short".to_owned()).is_err());
/// ```
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    /// Checks the length of a password. Nothing else is required of it.
    pub fn parse(input: String) -> Result<Self, PasswordError> {
        match input.chars().count() {
            n if n < MIN_PASSWORD_CHARS => Err(PasswordError::TooShort),
            n if n > MAX_PASSWORD_CHARS => Err(PasswordError::TooLong),
            _ => Ok(Self(SecretString::from(input))),
        }
    }

    /// The password in clear, for the hasher only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
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
