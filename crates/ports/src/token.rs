//! The access token port. Tokens name ids (admin and organization), never names, so that
//! a rename leaves them valid.

use chrono::{DateTime, Utc};
use domain::{AdminId, OrgId, SessionId};
use secrecy::SecretString;

/// What a token says about its bearer once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The admin the token was issued to.
    pub admin_id: AdminId,
    /// The admin's organization.
    pub org_id: OrgId,
    /// The login session the token belongs to (`sid`).
    pub session_id: SessionId,
    /// The token's unique id.
    pub token_id: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// A freshly issued access token.
#[derive(Debug)]
pub struct AccessToken {
    /// The encoded token, secret.
    pub token: SecretString,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, badly signed, expired or otherwise not acceptable.
    #[error("invalid token")]
    Invalid,
    /// The issuer failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Issues and verifies access tokens.
#[cfg_attr(test, mockall::automock)]
pub trait TokenIssuer: Send + Sync + 'static {
    /// Issues a token for an admin of an organization, within a session.
    fn issue(
        &self,
        admin_id: AdminId,
        org_id: OrgId,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, TokenError>;

    /// Verifies a token's signature, algorithm, issuer and expiry, and returns its claims.
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<TokenClaims, TokenError>;
}
