//! The storage ports. Each multi-step operation (create, update with a rename, delete) is
//! one method, so that an adapter can make it atomic, race-safe and crash-safe in whatever
//! way its store allows; callers never sequence the steps themselves.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Admin, AdminId, ApiKey, ApiKeyHash, ApiKeyId, AuditAction, AuditEvent, CollectionName, CreateOrgError,
    DatabasePassword, DatabaseUser, DeleteOrgError, Email, EventId, LoginThrottle, NewOrganization, OrgId, OrgKey,
    Organization, OrganizationChanges, PasswordHash, RefreshHash, RefreshState, RotationDecision, SecurityPolicy,
    Session, SessionId, StoreError, TenantLocation, UpdateOrgError,
};

use crate::throttle::{StoredThrottle, ThrottleKey};

/// Organizations, with their admins and tenant collections as far as their lifecycle goes.
///
/// Only committed, active organizations are visible to the finders: one being created,
/// renamed (under its new name) or deleted is not.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait OrganizationRepository: Send + Sync + 'static {
    /// Stores the organization and its admin and creates its tenant collection, all of them
    /// or none. Fails with `NameTaken` if any organization holds the name's key, and with
    /// `EmailTaken` if any admin holds the email.
    async fn create(&self, new: NewOrganization) -> Result<Organization, CreateOrgError>;

    /// The active organization with this key.
    async fn find_by_key(&self, key: &OrgKey) -> Result<Option<Organization>, StoreError>;

    /// The active organization with this id.
    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, StoreError>;

    /// Applies every change to the organization and its admin, or none of them. A rename
    /// moves the tenant collection with all its documents; it never overwrites another
    /// collection, and a name whose key another organization holds is `NameTaken`.
    async fn update(&self, id: OrgId, changes: OrganizationChanges) -> Result<Organization, UpdateOrgError>;

    /// Drops the tenant collection and removes the admins and the organization. From the
    /// moment it starts, the organization is invisible to the finders.
    async fn delete(&self, id: OrgId) -> Result<(), DeleteOrgError>;

    /// Every active organization, sorted by key: for operators' views.
    async fn list(&self) -> Result<Vec<Organization>, StoreError>;

    /// How many organizations are active.
    async fn count(&self) -> Result<u64, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Where the organization's documents are, as its own applications reach them (the
    /// connection string without the service's credentials).
    fn location(&self, org: &Organization) -> TenantLocation;

    /// Creates the organization's database user, or sets a new password on it if it
    /// exists, with one role: read-write on the organization's own database. From then on
    /// the previous password is refused. The organization is placed `database` (the use
    /// case checks); deleting it drops the user.
    async fn set_database_user(
        &self,
        org: &Organization,
        password: &DatabasePassword,
    ) -> Result<DatabaseUser, StoreError>;
}

/// Admins, looked up for logins and for every authenticated request.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait AdminRepository: Send + Sync + 'static {
    /// The admin with this email.
    async fn find_by_email(&self, email: &Email) -> Result<Option<Admin>, StoreError>;

    /// The admin with this id.
    async fn find_by_id(&self, id: AdminId) -> Result<Option<Admin>, StoreError>;
}

/// Direct access to tenant data, for operators and tests: the service itself never reads
/// tenant data. Data is addressed by organization, because where it lives depends on the
/// organization's placement: its own collection, or its documents in a shared collection.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Every tenant collection (`org_*`) that exists on any cluster, sorted. Organizations
    /// placed `shared` have none: their documents are in the shared collection.
    async fn tenant_collections(&self) -> Result<Vec<CollectionName>, StoreError>;

    /// Inserts documents into an organization's tenant data where its placement keeps it
    /// (under `shared`, each document gets the tenant field).
    async fn insert_documents(&self, org: &Organization, documents: Vec<serde_json::Value>) -> Result<(), StoreError>;

    /// Every document of an organization's tenant data, in insertion order, without the
    /// fields the store added (generated ids, the tenant field). Empty once the organization
    /// is deleted, whatever its placement.
    async fn documents(&self, org: &Organization) -> Result<Vec<serde_json::Value>, StoreError>;
}

/// The store of login throttles (see [`crate::LoginThrottles`]), and of password hash
/// upgrades. Throttles live in the store so that every instance sees one count per
/// address; every write is a compare-and-set on the version read, so parallel attempts
/// cannot both act on the same state.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait AccountLockout: Send + Sync + 'static {
    /// The throttle stored under `key`, with its version; `None` if there is none (never
    /// written, or forgotten after its `forget_after`).
    async fn load_throttle(&self, key: &ThrottleKey) -> Result<Option<StoredThrottle>, StoreError>;

    /// Stores `next` under `key` if the stored version is still `expected` (`None`: no
    /// throttle is stored), and returns whether it did. The store may forget the throttle
    /// after `forget_after`.
    async fn save_throttle(
        &self,
        key: &ThrottleKey,
        next: &LoginThrottle,
        expected: Option<u64>,
        forget_after: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Replaces the admin's password hash with an equivalent one (new parameters) if it is
    /// still `current`; returns whether it did. Used to upgrade outdated hashes at login.
    async fn upgrade_password_hash(
        &self,
        admin: AdminId,
        current: &PasswordHash,
        upgraded: PasswordHash,
    ) -> Result<bool, StoreError>;
}

/// A session as stored with its refresh token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The session.
    pub session: Session,
    /// SHA-256 of its first refresh token.
    pub refresh_hash: RefreshHash,
}

/// How many rotated refresh hashes a session remembers for reuse detection; an older one
/// presented again is merely unknown. At one rotation per access token lifetime (15
/// minutes), that is a day of history.
pub const REMEMBERED_ROTATIONS: usize = 100;

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current (or the grace retry of the one just rotated): the session now
    /// answers to the new hash only.
    Rotated(Session),
    /// The token had already been rotated: the session is revoked.
    Reused(Session),
    /// Unknown, expired or revoked.
    Invalid,
}

/// A session found by one of its refresh tokens, with the state the rotation rule needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session.
    pub session: Session,
    /// Its revocation and refresh tokens.
    pub state: RefreshState,
}

/// How many times a refresh retries when another refresh of the same session changed it
/// between reading and writing.
const ROTATION_ATTEMPTS: usize = 16;

/// Login sessions and their refresh tokens. Stores load and save; the decisions (is a
/// session live, what does a presented refresh token do) are the domain's
/// ([`domain::Session::is_live`], [`SecurityPolicy::rotation`]), applied by the provided
/// methods with compare-and-set writes.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync + 'static {
    /// Stores a new session.
    async fn create_session(&self, new: NewSession) -> Result<(), StoreError>;

    /// The session whose current refresh token, or one of its last
    /// [`REMEMBERED_ROTATIONS`] rotated ones, has this hash.
    async fn find_by_refresh(&self, presented: &RefreshHash) -> Result<Option<StoredSession>, StoreError>;

    /// The session and whether it is revoked.
    async fn find_session(&self, id: SessionId) -> Result<Option<(Session, bool)>, StoreError>;

    /// Makes the session answer to `replacement`, remembering `expected_current` among the
    /// rotated hashes and `previous` as the one rotated away last, if the session still
    /// answers to `expected_current` and is not revoked (compare-and-set). Returns whether
    /// it did.
    async fn save_rotation(
        &self,
        id: SessionId,
        expected_current: &RefreshHash,
        replacement: &RefreshHash,
        previous: Option<(RefreshHash, DateTime<Utc>)>,
    ) -> Result<bool, StoreError>;

    /// Exchanges a refresh token for a new one as [`SecurityPolicy::rotation`] decides:
    /// the current token rotates, the one rotated away last rotates again within the grace
    /// window, any other rotated token revokes the session. Atomic per session: of
    /// parallel refreshes with one token, one rotates.
    async fn rotate(
        &self,
        presented: &RefreshHash,
        replacement: &RefreshHash,
        policy: &SecurityPolicy,
        now: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        for _ in 0..ROTATION_ATTEMPTS {
            let Some(found) = self.find_by_refresh(presented).await? else { return Ok(Rotation::Invalid) };
            match policy.rotation(&found.session, &found.state, presented, now) {
                RotationDecision::Refuse => return Ok(Rotation::Invalid),
                RotationDecision::Revoke => {
                    self.revoke_session(found.session.id, now).await?;
                    return Ok(Rotation::Reused(found.session));
                }
                RotationDecision::Rotate { previous } => {
                    if self.save_rotation(found.session.id, &found.state.current, replacement, previous).await? {
                        return Ok(Rotation::Rotated(found.session));
                    }
                }
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!("too much contention on one session")))
    }

    /// Whether the session exists and is live ([`domain::Session::is_live`]).
    async fn session_active(&self, id: SessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.find_session(id).await?.is_some_and(|(session, revoked)| session.is_live(revoked, now)))
    }

    /// Revokes one session.
    async fn revoke_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Revokes every session of an admin but `except`.
    async fn revoke_admin_sessions(
        &self,
        admin: AdminId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Revokes every session of an organization.
    async fn revoke_organization_sessions(&self, org: OrgId, now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// An organization's API keys, known by the hash of their secret. Stores load and save;
/// whether a key works, what it may do and when its use is worth writing down are the
/// domain's ([`domain::ApiKey`], [`domain::Credential::allow`]).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ApiKeyRepository: Send + Sync + 'static {
    /// Stores a new key under the hash of its secret.
    async fn create_api_key(&self, key: ApiKey, hash: ApiKeyHash) -> Result<(), StoreError>;

    /// The key whose secret has this hash.
    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError>;

    /// An organization's keys, oldest first.
    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKey>, StoreError>;

    /// Removes one of an organization's keys; returns whether it had it.
    async fn revoke_api_key(&self, org: OrgId, id: ApiKeyId) -> Result<bool, StoreError>;

    /// Removes every key of an organization (it is being deleted).
    async fn revoke_organization_api_keys(&self, org: OrgId) -> Result<(), StoreError>;

    /// Writes down that the key was used at `at`.
    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError>;
}

/// A page request of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this action, if set.
    pub action: Option<AuditAction>,
    /// Only events older than this one (the cursor), if set.
    pub before: Option<EventId>,
    /// At most this many events.
    pub limit: usize,
}

/// The audit trail.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends an event.
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError>;

    /// An organization's events, newest first.
    async fn events(&self, org: OrgId, query: AuditQuery, now: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError>;

    /// Schedules a deleted organization's events for removal at `at`.
    async fn expire_events(&self, org: OrgId, at: DateTime<Utc>) -> Result<(), StoreError>;
}
