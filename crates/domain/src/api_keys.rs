//! API keys: credentials an organization's admin hands to other services, each limited to
//! the scopes it was created with, and the rules of what a key may do.
//!
//! A key is `osk_`, 43 random base62 characters (256 bits) and a 6-character base62
//! CRC-32 of them. The prefix lets secret scanners find leaked keys; the checksum lets them
//! (and the service, before any database read) tell a key from random text. Only the key's
//! SHA-256 is stored: a 256-bit random secret needs no slow hash.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::{AdminId, ApiKeyId, OrgId, SessionId};

/// What every API key starts with.
pub const API_KEY_PREFIX: &str = "osk_";

/// The most characters an API key's name has.
pub const MAX_API_KEY_NAME_CHARS: usize = 100;

/// How many characters of a key's random part lists show, to tell keys apart.
const SHOWN_CHARS: usize = 6;

/// The random part's length: 43 base62 characters hold 256 bits.
const RANDOM_CHARS: usize = 43;

/// The checksum's length: 6 base62 characters hold 32 bits.
const CHECKSUM_CHARS: usize = 6;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// How stale a key's "last used" time may be: a key used all the time is written at most
/// once in this long, not on every request.
pub const LAST_USED_PRECISION: Duration = Duration::from_secs(60);

/// One thing a key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `org:read`: read the organization with its admin's view, and its connection details.
    OrgRead,
    /// `org:write`: rename the organization.
    OrgWrite,
    /// `audit:read`: read the organization's audit trail.
    AuditRead,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 3] = [Self::OrgRead, Self::OrgWrite, Self::AuditRead];

    /// The name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrgRead => "org:read",
            Self::OrgWrite => "org:write",
            Self::AuditRead => "audit:read",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::OrgRead => 1,
            Self::OrgWrite => 2,
            Self::AuditRead => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a list of scopes was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopesError {
    /// No scope was given: a key that may do nothing is a mistake.
    #[error("must name at least one scope")]
    Empty,
    /// A name is not one of the scopes.
    #[error("unknown scope {0:?} (known: org:read, org:write, audit:read)")]
    Unknown(String),
}

impl FromStr for Scope {
    type Err = ScopesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| ScopesError::Unknown(s.to_owned()))
    }
}

/// A non-empty set of scopes.
///
/// ```
/// use domain::{Scope, Scopes};
/// let scopes = Scopes::parse(["audit:read", "org:read", "org:read"]).unwrap();
/// assert!(scopes.contains(Scope::OrgRead) && !scopes.contains(Scope::OrgWrite));
/// assert_eq!(scopes.names(), ["org:read", "audit:read"]);
/// assert!(Scopes::parse(Vec::<&str>::new()).is_err());
/// assert!(Scopes::parse(["org:delete"]).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Parses scope names; repeats are allowed and count once.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopesError> {
        let mut bits = 0;
        for name in names {
            bits |= name.parse::<Scope>()?.bit();
        }
        if bits == 0 {
            return Err(ScopesError::Empty);
        }
        Ok(Self(bits))
    }

    /// Whether the set holds `scope`.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |scope| self.contains(*scope))
    }

    /// The scopes' names, in [`Scope::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// Something a caller asks to do to its organization, for the rule of who may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read the organization with its admin's view, or its connection details.
    ReadOrganization,
    /// Rename the organization.
    RenameOrganization,
    /// Change the admin's email or password.
    ChangeAdminCredentials,
    /// Delete the organization.
    DeleteOrganization,
    /// Create, list or revoke API keys.
    ManageApiKeys,
    /// Register, list, remove webhook endpoints, rotate their secrets, read their deliveries.
    ManageWebhooks,
    /// Create or rotate the organization's database credentials.
    RotateDatabaseCredentials,
    /// Read the audit trail.
    ReadAudit,
    /// End the caller's own session.
    LogOut,
}

impl Permission {
    /// The scope that allows it to an API key, if any scope does.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Self::ReadOrganization => Some(Scope::OrgRead),
            Self::RenameOrganization => Some(Scope::OrgWrite),
            Self::ReadAudit => Some(Scope::AuditRead),
            // These stay with the admin's session, whatever a key's scopes.
            Self::ChangeAdminCredentials
            | Self::DeleteOrganization
            | Self::ManageApiKeys
            | Self::ManageWebhooks
            | Self::RotateDatabaseCredentials
            | Self::LogOut => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::ReadOrganization => "read the organization",
            Self::RenameOrganization => "rename the organization",
            Self::ChangeAdminCredentials => "change the admin's email or password",
            Self::DeleteOrganization => "delete the organization",
            Self::ManageApiKeys => "manage API keys",
            Self::ManageWebhooks => "manage webhooks",
            Self::RotateDatabaseCredentials => "rotate the database credentials",
            Self::ReadAudit => "read the audit trail",
            Self::LogOut => "log out",
        }
    }
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token of the admin's login session.
    Session(SessionId),
    /// One of the organization's API keys.
    ApiKey {
        /// The key.
        id: ApiKeyId,
        /// What it may do.
        scopes: Scopes,
    },
}

impl Credential {
    /// Whether this credential may do `permission`: a session may do everything, a key
    /// only what one of its scopes allows.
    ///
    /// ```
    /// use domain::{ApiKeyId, Credential, Permission, Scopes, SessionId};
    /// let key = Credential::ApiKey { id: ApiKeyId::new(), scopes: Scopes::parse(["org:write"]).unwrap() };
    /// assert!(key.allow(Permission::RenameOrganization).is_ok());
    /// assert!(key.allow(Permission::ReadAudit).is_err());
    /// assert!(key.allow(Permission::DeleteOrganization).is_err());
    /// assert!(Credential::Session(SessionId::new()).allow(Permission::DeleteOrganization).is_ok());
    /// ```
    pub fn allow(self, permission: Permission) -> Result<(), Forbidden> {
        match self {
            Self::Session(_) => Ok(()),
            Self::ApiKey { scopes, .. } => match permission.scope() {
                Some(scope) if scopes.contains(scope) => Ok(()),
                needed => Err(Forbidden { permission, needed }),
            },
        }
    }

    /// The session, for a session's credential.
    pub fn session(self) -> Option<SessionId> {
        match self {
            Self::Session(id) => Some(id),
            Self::ApiKey { .. } => None,
        }
    }

    /// The key, for an API key's credential.
    pub fn api_key(self) -> Option<ApiKeyId> {
        match self {
            Self::ApiKey { id, .. } => Some(id),
            Self::Session(_) => None,
        }
    }
}

/// An API key asked for something its scopes do not allow, or that no key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.detail())]
pub struct Forbidden {
    /// What was asked.
    pub permission: Permission,
    /// The scope that would allow it, if any does.
    pub needed: Option<Scope>,
}

impl Forbidden {
    fn detail(&self) -> String {
        match self.needed {
            Some(scope) => format!("an API key needs the {scope} scope to {}", self.permission.describe()),
            None => format!("only the admin's session may {}, not an API key", self.permission.describe()),
        }
    }
}

/// Why an API key's name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyNameError {
    /// Empty once trimmed.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_API_KEY_NAME_CHARS`].
    #[error("must be at most 100 characters")]
    TooLong,
    /// Holds a control character.
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// What an admin calls a key ("billing service"), trimmed; names need not be unique.
///
/// ```
/// use domain::ApiKeyName;
/// assert_eq!(ApiKeyName::parse("  billing ").unwrap().as_str(), "billing");
/// assert!(ApiKeyName::parse(" ").is_err());
/// assert!(ApiKeyName::parse("a\nb").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    /// Parses a name.
    pub fn parse(text: &str) -> Result<Self, ApiKeyNameError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ApiKeyNameError::Empty);
        }
        if trimmed.chars().count() > MAX_API_KEY_NAME_CHARS {
            return Err(ApiKeyNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ApiKeyNameError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The SHA-256 of an API key, hex: all a store keeps of one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(String);

impl ApiKeyHash {
    /// Wraps a hex digest read back from a store.
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }

    /// The hex digest.
    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyHash({}…)", self.0.get(..8).unwrap_or(""))
    }
}

/// An API key in clear: shown once when it is created, presented by services afterwards.
/// Only its [`ApiKeyHash`] and its first characters are kept.
pub struct ApiKeySecret(SecretString);

impl ApiKeySecret {
    /// The key made of 256 random bits (from the caller's random source).
    ///
    /// ```
    /// use domain::ApiKeySecret;
    /// use secrecy::ExposeSecret;
    /// let key = ApiKeySecret::from_entropy([7; 32]);
    /// assert!(key.expose().expose_secret().starts_with("osk_"));
    /// assert_eq!(key.expose().expose_secret().len(), 53);
    /// assert!(ApiKeySecret::presented(key.expose().expose_secret()).is_some());
    /// ```
    pub fn from_entropy(entropy: [u8; 32]) -> Self {
        let random = base62(&entropy, RANDOM_CHARS);
        let checksum = base62(&crc32(random.as_bytes()).to_be_bytes(), CHECKSUM_CHARS);
        Self(SecretString::from(format!("{API_KEY_PREFIX}{random}{checksum}")))
    }

    /// A key a caller presented, if it is well formed (prefix, length, alphabet and
    /// checksum): anything else cannot be a key, and needs no database read to be refused.
    ///
    /// ```
    /// use domain::ApiKeySecret;
    /// assert!(ApiKeySecret::presented("osk_not-a-key").is_none());
    /// assert!(ApiKeySecret::presented("eyJhbGciOiJIUzI1NiJ9.e30.x").is_none());
    /// ```
    pub fn presented(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(API_KEY_PREFIX)?;
        if rest.len() != RANDOM_CHARS + CHECKSUM_CHARS || !rest.bytes().all(|b| BASE62.contains(&b)) {
            return None;
        }
        let (random, checksum) = rest.split_at(RANDOM_CHARS);
        (base62(&crc32(random.as_bytes()).to_be_bytes(), CHECKSUM_CHARS) == checksum)
            .then(|| Self(SecretString::from(text.to_owned())))
    }

    /// Whether a bearer credential is meant as an API key (by its prefix), well formed or
    /// not: such a credential is never tried as an access token.
    pub fn is_meant(text: &str) -> bool {
        text.starts_with(API_KEY_PREFIX)
    }

    /// The hash under which the store knows the key.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(hex_digest(self.0.expose_secret().as_bytes()))
    }

    /// The prefix and the first characters of the random part, which lists show.
    pub fn shown_prefix(&self) -> String {
        self.0.expose_secret().chars().take(API_KEY_PREFIX.len() + SHOWN_CHARS).collect()
    }

    /// The key, to hand to the admin once.
    pub fn expose(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret([REDACTED])")
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::with_capacity(64), |mut hex, byte| {
        use fmt::Write;
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// `bytes` as a big-endian number in base 62, left-padded with zeros to `width` digits.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while digits.len() < width {
        // One long division of the whole number by 62.
        let mut remainder = 0u32;
        for byte in &mut number {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = u8::try_from(value / 62).unwrap_or(u8::MAX);
            remainder = value % 62;
        }
        digits.push(BASE62[remainder as usize]);
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

/// The CRC-32 (IEEE) of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Why an expiry time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be in the future")]
pub struct ExpiryInThePast;

/// An API key as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Immutable id.
    pub id: ApiKeyId,
    /// The organization it acts for.
    pub org_id: OrgId,
    /// The admin who created it.
    pub created_by: AdminId,
    /// What the admin calls it.
    pub name: ApiKeyName,
    /// What it may do.
    pub scopes: Scopes,
    /// Its first characters, to tell it apart in lists.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used, to within [`LAST_USED_PRECISION`].
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Checks a requested expiry time against `now`.
    pub fn check_expiry(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), ExpiryInThePast> {
        match expires_at {
            Some(at) if at <= now => Err(ExpiryInThePast),
            _ => Ok(()),
        }
    }

    /// Whether the key still works at `now`.
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }

    /// Whether a use at `now` should be written down (the last one written is older than
    /// [`LAST_USED_PRECISION`]).
    pub fn use_worth_recording(&self, now: DateTime<Utc>) -> bool {
        let precision = chrono::Duration::from_std(LAST_USED_PRECISION).unwrap_or(chrono::Duration::MAX);
        self.last_used_at.is_none_or(|at| now - at >= precision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_distinct_and_hash_stably() {
        let a = ApiKeySecret::from_entropy([0; 32]);
        let b = ApiKeySecret::from_entropy([255; 32]);
        let (ta, tb) = (a.expose().expose_secret().to_owned(), b.expose().expose_secret().to_owned());
        assert_ne!(ta, tb);
        assert_eq!(ta.len(), 53);
        assert_eq!(tb.len(), 53);
        assert_eq!(ApiKeySecret::presented(&ta).map(|k| k.hash()), Some(a.hash()));
        assert_eq!(a.hash().as_hex().len(), 64);
        assert_eq!(a.shown_prefix(), ta[..10]);
        assert!(format!("{a:?}").contains("REDACTED"));
    }

    #[test]
    fn one_changed_character_breaks_the_checksum() {
        let key = ApiKeySecret::from_entropy([42; 32]);
        let text = key.expose().expose_secret().to_owned();
        for position in API_KEY_PREFIX.len()..text.len() {
            let mut changed = text.clone().into_bytes();
            changed[position] = if changed[position] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(changed).expect("ascii");
            assert!(ApiKeySecret::presented(&changed).is_none(), "accepted a typo at {position}");
        }
    }

    #[test]
    fn the_crc_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn base62_covers_256_bits_in_43_digits() {
        assert_eq!(&base62(&[255; 32], 44)[..1], "0", "2^256 - 1 fits in 43 digits");
        assert_ne!(&base62(&[255; 32], 43)[..1], "0", "and needs all of them");
    }

    #[test]
    fn expiry_and_last_use() {
        let now = Utc::now();
        assert!(ApiKey::check_expiry(Some(now), now).is_err());
        assert!(ApiKey::check_expiry(Some(now + chrono::Duration::seconds(1)), now).is_ok());
        assert!(ApiKey::check_expiry(None, now).is_ok());
        let key = ApiKey {
            id: ApiKeyId::new(),
            org_id: OrgId::new(),
            created_by: AdminId::new(),
            name: ApiKeyName::parse("k").expect("name"),
            scopes: Scopes::parse(["org:read"]).expect("scopes"),
            prefix: "osk_abcdef".into(),
            created_at: now,
            expires_at: Some(now + chrono::Duration::seconds(10)),
            last_used_at: Some(now),
        };
        assert!(key.usable_at(now + chrono::Duration::seconds(9)));
        assert!(!key.usable_at(now + chrono::Duration::seconds(10)));
        assert!(!key.use_worth_recording(now + chrono::Duration::seconds(59)));
        assert!(key.use_worth_recording(now + chrono::Duration::seconds(60)));
    }
}
