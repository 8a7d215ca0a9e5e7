//! Admin email addresses. Invariant: a syntactically valid address, trimmed and lowercase,
//! so that comparing two values compares addresses case-insensitively.

use std::fmt;

use validator::ValidateEmail;

/// The longest address accepted, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Why a text is not a valid email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing is left once whitespace is trimmed.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_EMAIL_BYTES`].
    #[error("must be at most {MAX_EMAIL_BYTES} bytes long")]
    TooLong,
    /// Not of the form `local@domain`.
    #[error("must be a valid email address")]
    Invalid,
}

/// A valid email address, stored and compared in lowercase.
///
/// ```
/// use domain::Email;
/// let email = Email::parse("  Admin@Acme.COM ").unwrap();
/// assert_eq!(email.as_str(), "admin@acme.com");
/// assert!(Email::parse("not-an-email").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses an address typed by a user.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let email = input.trim().to_lowercase();
        if email.is_empty() {
            return Err(EmailError::Empty);
        }
        if email.len() > MAX_EMAIL_BYTES {
            return Err(EmailError::TooLong);
        }
        if !email.validate_email() {
            return Err(EmailError::Invalid);
        }
        Ok(Self(email))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_lowercased_and_validated() {
        for (input, expected) in [
            ("a@b.co", Ok("a@b.co")),
            ("  Admin@Example.COM ", Ok("admin@example.com")),
            ("first.last+tag@sub.example.org", Ok("first.last+tag@sub.example.org")),
            ("", Err(EmailError::Empty)),
            ("   ", Err(EmailError::Empty)),
            ("plainaddress", Err(EmailError::Invalid)),
            ("@example.com", Err(EmailError::Invalid)),
            ("a@", Err(EmailError::Invalid)),
            ("a b@example.com", Err(EmailError::Invalid)),
        ] {
            let actual = Email::parse(input);
            assert_eq!(actual.as_ref().map(Email::as_str).map_err(Clone::clone), expected, "{input:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }
}
