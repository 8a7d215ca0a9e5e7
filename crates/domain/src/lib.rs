//! The domain of the Organization Management Service: organizations, their admins, the
//! rules their names, emails and passwords obey, and the errors each operation can end in.
//!
//! This crate has no I/O and no async runtime so that other teams can reuse it as a plain
//! library. Every value type is parsed once by a validating constructor and stays valid
//! forever after: nothing else can build one.
//!
//! ```
//! use domain::{CollectionNaming, CollectionName, OrgId, OrganizationName};
//!
//! let name = OrganizationName::parse("  Acme   Corp ").unwrap();
//! assert_eq!(name.as_str(), "Acme Corp");
//! assert_eq!(name.key().as_str(), "acme_corp");
//!
//! let collection = CollectionName::for_organization(CollectionNaming::Key, OrgId::new(), name.key());
//! assert_eq!(collection.as_str(), "org_acme_corp");
//! ```

mod api_keys;
mod collection;
mod credentials;
mod email;
mod entities;
mod errors;
mod events;
mod ids;
mod jobs;
mod lockout;
mod name;
mod password;
mod placement;
mod security;
mod sessions;
mod webhooks;

pub use api_keys::{
    API_KEY_PREFIX, ApiKey, ApiKeyHash, ApiKeyName, ApiKeyNameError, ApiKeySecret, Credential, ExpiryInThePast,
    Forbidden, LAST_USED_PRECISION, MAX_API_KEY_NAME_CHARS, Permission, Scope, Scopes, ScopesError,
};
pub use collection::{CollectionName, CollectionNameError, CollectionNaming};
pub use credentials::{
    CredentialsError, DatabaseCredentials, DatabasePassword, DatabasePasswordError, DatabaseUser,
    MIN_DATABASE_PASSWORD_CHARS, SealedSecret,
};
pub use email::{Email, EmailError, MAX_EMAIL_BYTES};
pub use entities::{Admin, NewAdmin, NewOrganization, Organization, OrganizationChanges, Rename};
pub use errors::{
    CreateApiKeyError, CreateOrgError, CreateWebhookError, DeleteOrgError, GetOrgError, ListApiKeysError,
    ListWebhooksError, RevokeApiKeyError, StoreError, UpdateOrgError, WebhookEndpointError,
};
pub use events::{AttemptResult, Endpoint, Event, NextStep};
pub use ids::{AdminId, ApiKeyId, CheckId, EventId, IdError, JobId, MessageId, OrgId, SessionId, WebhookId};
pub use jobs::{
    JobFieldError, JobKind, JobLease, JobProgress, JobState, MoveError, MoveMode, MovePhase, MovePlan, Recovery,
    TieringPolicy, TieringPolicyError,
};
pub use lockout::{
    CHECK_LEASE, CheckFailed, CheckStart, LockoutPolicy, LockoutPolicyError, LoginThrottle, PendingCheck,
    THROTTLE_MEMORY,
};
pub use name::{MAX_KEY_BYTES, MAX_NAME_CHARS, OrgKey, OrganizationName, OrganizationNameError, Skeleton};
pub use password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, Password, PasswordError, PasswordHash, PasswordHashError};
pub use placement::{
    ClusterName, ClusterNameError, MAX_CLUSTER_NAME_CHARS, Placement, PlacementKind, PlacementKindError, TenantLocation,
};
pub use security::{AuditAction, AuditActionError, AuditEvent, AuditOutcome, Session};
pub use sessions::{RefreshHash, RefreshState, RotationDecision, SecurityPolicy};
pub use webhooks::{
    EndpointPolicy, EventFilter, EventFilterError, EventType, MAX_WEBHOOK_URL_CHARS, RetryPolicy, SIGNATURE_TOLERANCE,
    WEBHOOK_SECRET_BYTES, WEBHOOK_SECRET_PREFIX, WebhookSecret, WebhookSecretError, WebhookUrl, WebhookUrlError,
};

/// Truncates a timestamp to whole milliseconds, the precision every store keeps, so that a
/// value read back compares equal to the value written whatever the storage.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.timestamp_opt(1, 123_456_789).unwrap();
/// assert_eq!(domain::truncate_to_millis(t).timestamp_subsec_nanos(), 123_000_000);
/// ```
pub fn truncate_to_millis(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}
