//! Login sessions and the audit trail: the rules of authentication that do not depend on
//! how tokens are encoded or where state is kept.

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

use crate::{AdminId, ApiKeyId, EventId, OrgId, SessionId};

/// A login session: what a refresh token keeps alive and what every access token names in
/// its `sid` claim. Revoking it ends both at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Immutable id.
    pub id: SessionId,
    /// The admin who logged in.
    pub admin_id: AdminId,
    /// The admin's organization.
    pub org_id: OrgId,
    /// When the admin logged in.
    pub created_at: DateTime<Utc>,
    /// When the session ends even if refreshed (the refresh token's lifetime).
    pub expires_at: DateTime<Utc>,
}

/// What happened, in an audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// `organization.created`
    OrganizationCreated,
    /// `organization.renamed`
    OrganizationRenamed,
    /// `organization.deleted`
    OrganizationDeleted,
    /// `admin.email_changed`
    AdminEmailChanged,
    /// `admin.password_changed`
    AdminPasswordChanged,
    /// `login.succeeded`
    LoginSucceeded,
    /// `login.failed`
    LoginFailed,
    /// `login.locked`: the attempt locked the account, or was refused because it is locked.
    LoginLocked,
    /// `session.refresh_reused`: an already-rotated refresh token was presented and its
    /// session revoked.
    SessionRefreshReused,
    /// `session.logged_out`
    SessionLoggedOut,
    /// `database_credentials.rotated`: the organization's database user was created or got
    /// a new password.
    DatabaseCredentialsRotated,
    /// `api_key.created`
    ApiKeyCreated,
    /// `api_key.revoked`
    ApiKeyRevoked,
    /// `webhook.created`: a webhook endpoint was registered.
    WebhookCreated,
    /// `webhook.deleted`
    WebhookDeleted,
    /// `webhook.secret_rotated`
    WebhookSecretRotated,
}

/// The text is not one of the audit actions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a known audit action")]
pub struct AuditActionError;

impl AuditAction {
    /// Every action, in a stable order.
    pub const ALL: [AuditAction; 16] = [
        Self::OrganizationCreated,
        Self::OrganizationRenamed,
        Self::OrganizationDeleted,
        Self::AdminEmailChanged,
        Self::AdminPasswordChanged,
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LoginLocked,
        Self::SessionRefreshReused,
        Self::SessionLoggedOut,
        Self::DatabaseCredentialsRotated,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
        Self::WebhookCreated,
        Self::WebhookDeleted,
        Self::WebhookSecretRotated,
    ];

    /// The dotted name used in the API and in storage.
    ///
    /// ```
    /// use domain::AuditAction;
    /// assert_eq!(AuditAction::LoginFailed.as_str(), "login.failed");
    /// assert_eq!("session.logged_out".parse(), Ok(AuditAction::SessionLoggedOut));
    /// assert!("login.maybe".parse::<AuditAction>().is_err());
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganizationCreated => "organization.created",
            Self::OrganizationRenamed => "organization.renamed",
            Self::OrganizationDeleted => "organization.deleted",
            Self::AdminEmailChanged => "admin.email_changed",
            Self::AdminPasswordChanged => "admin.password_changed",
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::LoginLocked => "login.locked",
            Self::SessionRefreshReused => "session.refresh_reused",
            Self::SessionLoggedOut => "session.logged_out",
            Self::DatabaseCredentialsRotated => "database_credentials.rotated",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::WebhookCreated => "webhook.created",
            Self::WebhookDeleted => "webhook.deleted",
            Self::WebhookSecretRotated => "webhook.secret_rotated",
        }
    }
}

impl FromStr for AuditAction {
    type Err = AuditActionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or(AuditActionError)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// It was done.
    Success,
    /// It was attempted and refused (wrong password, reused token).
    Failure,
    /// It was refused without being attempted (locked account).
    Denied,
}

impl AuditOutcome {
    /// The lowercase name used in the API and in storage.
    ///
    /// ```
    /// use domain::AuditOutcome;
    /// assert_eq!(AuditOutcome::Denied.as_str(), "denied");
    /// assert_eq!("success".parse(), Ok(AuditOutcome::Success));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

impl FromStr for AuditOutcome {
    type Err = AuditActionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Success, Self::Failure, Self::Denied].into_iter().find(|o| o.as_str() == s).ok_or(AuditActionError)
    }
}

/// One security-relevant action. It never holds a password, hash or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Time-ordered id.
    pub id: EventId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub action: AuditAction,
    /// The organization concerned; none for a login with an unknown email.
    pub organization_id: Option<OrgId>,
    /// The admin who acted or whose account was concerned, when known.
    pub actor_id: Option<AdminId>,
    /// The API key that acted, when one did (for the admin in `actor_id`, who created it).
    pub api_key_id: Option<ApiKeyId>,
    /// The client's address as the service determined it.
    pub ip: Option<String>,
    /// The request's id, to find its log lines.
    pub request_id: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
}
