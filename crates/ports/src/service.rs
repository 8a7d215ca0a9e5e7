//! The use cases: create, read, log in, refresh, log out, authenticate, update and delete
//! organizations, and read the audit trail.
//!
//! [`OrgService`] is generic over its core ports; the HTTP adapter sees it only through the
//! [`OrganizationApi`] trait so that it can be wired once at the composition root.

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    AdminId, AuditAction, AuditEvent, AuditOutcome, CheckId, CollectionName, CollectionNaming, CreateOrgError,
    DeleteOrgError, Email, EventId, GetOrgError, NewAdmin, NewOrganization, OrgId, Organization, OrganizationChanges,
    OrganizationName, Password, Rename, Session, SessionId, StoreError, UpdateOrgError,
};
use secrecy::SecretString;

use crate::sessions::{RefreshToken, SecurityPolicy, SessionCache};
use crate::{
    AccessToken, AccountLockout, AdminRepository, AuditLog, AuditQuery, CheckPermit, Clock, HashError, LoginThrottles,
    NewSession, OrganizationRepository, PasswordHasher, Rotation, SessionRepository, ThrottleKeyer, TokenError,
    TokenIssuer,
};

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The client's address, as the HTTP adapter determined it.
    pub ip: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
}

/// A request to create an organization with its first admin.
#[derive(Debug)]
pub struct CreateOrganizationRequest {
    /// The organization's name.
    pub name: OrganizationName,
    /// The admin's email.
    pub email: Email,
    /// The admin's password.
    pub password: Password,
}

/// A login attempt.
#[derive(Debug)]
pub struct LoginRequest {
    /// The admin's email.
    pub email: Email,
    /// The password to check.
    pub password: Password,
}

/// Changes an admin asks for: at least one of them.
#[derive(Debug)]
pub struct UpdateOrganizationRequest {
    name: Option<OrganizationName>,
    email: Option<Email>,
    password: Option<Password>,
}

impl UpdateOrganizationRequest {
    /// Builds a request, or `None` when it would change nothing.
    pub fn new(name: Option<OrganizationName>, email: Option<Email>, password: Option<Password>) -> Option<Self> {
        (name.is_some() || email.is_some() || password.is_some()).then_some(Self { name, email, password })
    }
}

/// The authenticated caller of a protected use case: an admin whose token verified and
/// whose session, admin and organization were live when the request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The admin.
    pub admin_id: AdminId,
    /// The admin's organization.
    pub org_id: OrgId,
    /// The session the token belongs to.
    pub session_id: SessionId,
}

/// A newly created organization and its admin.
#[derive(Debug, Clone)]
pub struct CreatedOrganization {
    /// The organization.
    pub organization: Organization,
    /// Its admin's email.
    pub admin_email: Email,
}

/// An organization as a caller may see it.
#[derive(Debug, Clone)]
pub struct OrganizationView {
    /// The organization.
    pub organization: Organization,
    /// Its admin's email: present only for the organization's own admin.
    pub admin_email: Option<Email>,
}

/// What a login or a refresh hands out.
#[derive(Debug)]
pub struct SessionTokens {
    /// The short-lived access token.
    pub access: AccessToken,
    /// The new refresh token, in clear, shown once.
    pub refresh_token: SecretString,
}

/// One page of the audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<EventId>,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown email or wrong password; deliberately not told apart.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed attempts: the account is locked until then.
    #[error("the account is locked after too many failed logins")]
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// A dependency is down or saturated.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// An unexpected failure.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired or revoked refresh token.
    #[error("invalid or expired refresh token")]
    Invalid,
    /// An already-rotated refresh token: its session is now revoked.
    #[error("refresh token reused; the session is revoked")]
    Reused,
    /// A dependency is down or saturated.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// An unexpected failure.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// Why a request could not be authenticated, or an authenticated-only use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is invalid, or its session, admin or organization is no longer live.
    #[error("invalid or expired token")]
    InvalidToken,
    /// A dependency is down.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// An unexpected failure.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

macro_rules! from_infrastructure_errors {
    ($($error:ident),*) => {$(
        impl From<HashError> for $error {
            fn from(error: HashError) -> Self {
                match error {
                    HashError::Busy => Self::Unavailable(anyhow!(HashError::Busy)),
                    HashError::Failed(e) => Self::Unknown(e),
                }
            }
        }

        impl From<TokenError> for $error {
            fn from(error: TokenError) -> Self {
                Self::Unknown(anyhow!(error))
            }
        }
    )*};
}
from_infrastructure_errors!(CreateOrgError, UpdateOrgError, LoginError, RefreshError);

macro_rules! from_store_error {
    ($($error:ident),*) => {$(
        impl From<StoreError> for $error {
            fn from(error: StoreError) -> Self {
                match error {
                    StoreError::Unavailable(e) => Self::Unavailable(e),
                    StoreError::Unknown(e) => Self::Unknown(e),
                }
            }
        }
    )*};
}
from_store_error!(LoginError, AuthError, RefreshError);

/// The use cases the driving adapters (HTTP, CLI) call.
#[async_trait]
pub trait OrganizationApi: Send + Sync + 'static {
    /// Creates an organization, its admin and its tenant collection.
    async fn create(
        &self,
        request: CreateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<CreatedOrganization, CreateOrgError>;

    /// Reads an organization by name; its admin's email is shown only to its own admin.
    async fn get(&self, name: &OrganizationName, viewer: Option<&Principal>) -> Result<OrganizationView, GetOrgError>;

    /// Checks an admin's credentials (subject to the lockout) and opens a session.
    async fn login(&self, request: LoginRequest, context: &RequestContext) -> Result<SessionTokens, LoginError>;

    /// Exchanges a refresh token for new tokens (rotation with reuse detection).
    async fn refresh(&self, token: SecretString, context: &RequestContext) -> Result<SessionTokens, RefreshError>;

    /// Ends the caller's session: its access and refresh tokens stop working.
    async fn logout(&self, caller: &Principal, context: &RequestContext) -> Result<(), AuthError>;

    /// Verifies a token and that its session, admin and organization are still live.
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError>;

    /// Applies the caller's changes to their organization and admin, all or none. A new
    /// email or password ends every other session of the admin.
    async fn update(
        &self,
        caller: &Principal,
        request: UpdateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<OrganizationView, UpdateOrgError>;

    /// Deletes the caller's organization, named to guard against deleting the wrong one,
    /// and ends all of its sessions.
    async fn delete(
        &self,
        caller: &Principal,
        name: &OrganizationName,
        context: &RequestContext,
    ) -> Result<(), DeleteOrgError>;

    /// The caller's organization's audit events, newest first.
    async fn audit(&self, caller: &Principal, query: AuditQuery) -> Result<AuditPage, AuthError>;

    /// How many organizations are active, for metrics.
    async fn organization_count(&self) -> Result<u64, StoreError>;

    /// Checks that the store answers.
    async fn ready(&self) -> Result<(), StoreError>;
}

/// The stores of sessions, lockout counters and audit events, with the policy that
/// governs them.
#[derive(Clone)]
pub struct SecurityStores {
    /// Sessions and refresh tokens.
    pub sessions: Arc<dyn SessionRepository>,
    /// Login throttles (failed-login counters per email address).
    pub lockout: Arc<dyn AccountLockout>,
    /// The secret under which throttles are keyed; the same on every instance.
    pub throttle_keyer: ThrottleKeyer,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// The policy.
    pub policy: SecurityPolicy,
}

/// The use cases, written against the ports.
pub struct OrgService<O, A, H, T, C> {
    organizations: Arc<O>,
    admins: Arc<A>,
    hasher: H,
    tokens: T,
    clock: C,
    naming: CollectionNaming,
    security: SecurityStores,
    throttles: LoginThrottles,
    session_cache: SessionCache,
}

impl<O, A, H, T, C> OrgService<O, A, H, T, C>
where
    O: OrganizationRepository,
    A: AdminRepository,
    H: PasswordHasher,
    T: TokenIssuer,
    C: Clock,
{
    /// Wires the use cases to their ports.
    pub fn new(
        organizations: Arc<O>,
        admins: Arc<A>,
        hasher: H,
        tokens: T,
        clock: C,
        naming: CollectionNaming,
        security: SecurityStores,
    ) -> Self {
        let throttles = LoginThrottles::new(
            Arc::clone(&security.lockout),
            security.policy.lockout,
            security.throttle_keyer.clone(),
        );
        Self {
            organizations,
            admins,
            hasher,
            tokens,
            clock,
            naming,
            security,
            throttles,
            session_cache: SessionCache::default(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        domain::truncate_to_millis(self.clock.now())
    }

    async fn admin_email(&self, id: AdminId) -> Result<Email, StoreError> {
        match self.admins.find_by_id(id).await? {
            Some(admin) => Ok(admin.email),
            None => Err(StoreError::Unknown(anyhow!("organization's admin {id} is missing"))),
        }
    }

    /// Records an audit event. A failure to record is logged, not returned: the action it
    /// describes has already happened and must not be reported as failed.
    async fn audit_event(
        &self,
        action: AuditAction,
        outcome: AuditOutcome,
        organization_id: Option<OrgId>,
        actor_id: Option<AdminId>,
        context: &RequestContext,
    ) {
        let event = AuditEvent {
            id: EventId::new_ordered(),
            at: self.now(),
            action,
            organization_id,
            actor_id,
            ip: context.ip.clone(),
            request_id: context.request_id.clone(),
            outcome,
        };
        if let Err(error) = self.security.audit.record(event).await {
            tracing::error!(%action, error = %error, "could not record an audit event");
        }
    }

    /// Opens a session for an admin and issues its first tokens.
    async fn open_session(&self, admin_id: AdminId, org_id: OrgId) -> Result<SessionTokens, LoginError> {
        let now = self.now();
        let ttl = chrono::Duration::from_std(self.security.policy.session_ttl).unwrap_or(chrono::Duration::MAX);
        let session = Session { id: SessionId::new(), admin_id, org_id, created_at: now, expires_at: now + ttl };
        let refresh = RefreshToken::generate();
        self.security
            .sessions
            .create_session(NewSession { session: session.clone(), refresh_hash: refresh.hash() })
            .await?;
        let access = self.tokens.issue(admin_id, org_id, session.id, self.clock.now())?;
        Ok(SessionTokens { access, refresh_token: refresh.into_secret() })
    }

    /// Replaces a hash made with outdated parameters after a successful login. Failing to
    /// upgrade costs nothing but a later retry, so failures are only logged.
    async fn upgrade_hash(&self, admin: &domain::Admin, password: Password) {
        let upgraded = match self.hasher.hash(password).await {
            Ok(hash) => hash,
            Err(error) => return tracing::warn!(error = %error, "could not rehash an outdated password hash"),
        };
        match self.security.lockout.upgrade_password_hash(admin.id, &admin.password_hash, upgraded).await {
            Ok(true) => tracing::info!(admin_id = %admin.id, "password hash upgraded to the current parameters"),
            Ok(false) => {}
            Err(error) => tracing::warn!(error = %error, "could not store an upgraded password hash"),
        }
    }
}

#[async_trait]
impl<O, A, H, T, C> OrganizationApi for OrgService<O, A, H, T, C>
where
    O: OrganizationRepository,
    A: AdminRepository,
    H: PasswordHasher,
    T: TokenIssuer,
    C: Clock,
{
    async fn create(
        &self,
        request: CreateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<CreatedOrganization, CreateOrgError> {
        let id = OrgId::new();
        let collection = CollectionName::for_organization(self.naming, id, request.name.key());
        let password_hash = self.hasher.hash(request.password).await?;
        let new = NewOrganization {
            id,
            name: request.name,
            collection,
            admin: NewAdmin { id: AdminId::new(), email: request.email.clone(), password_hash },
            created_at: self.now(),
        };
        let organization = self.organizations.create(new).await?;
        tracing::info!(organization_id = %organization.id, key = %organization.name.key(), "organization created");
        self.audit_event(
            AuditAction::OrganizationCreated,
            AuditOutcome::Success,
            Some(organization.id),
            Some(organization.admin_id),
            context,
        )
        .await;
        Ok(CreatedOrganization { organization, admin_email: request.email })
    }

    async fn get(&self, name: &OrganizationName, viewer: Option<&Principal>) -> Result<OrganizationView, GetOrgError> {
        let organization = self.organizations.find_by_key(name.key()).await?.ok_or(GetOrgError::NotFound)?;
        let admin_email = match viewer {
            Some(viewer) if viewer.org_id == organization.id => Some(self.admin_email(organization.admin_id).await?),
            _ => None,
        };
        Ok(OrganizationView { organization, admin_email })
    }

    async fn login(&self, request: LoginRequest, context: &RequestContext) -> Result<SessionTokens, LoginError> {
        let admin = self.admins.find_by_email(&request.email).await?;
        let (org_id, actor_id) = (admin.as_ref().map(|a| a.organization_id), admin.as_ref().map(|a| a.id));
        // Every address, an admin's or not, takes a slot of its throttle before its password
        // is checked, so parallel guesses cannot outrun the lockout, and known and unknown
        // addresses get the same answers after the same store work.
        let check = CheckId::new();
        if let CheckPermit::Locked { until } = self.throttles.start(&request.email, check, &self.clock).await? {
            self.audit_event(AuditAction::LoginLocked, AuditOutcome::Denied, org_id, actor_id, context).await;
            return Err(LoginError::Locked { until });
        }
        // The hasher verifies against a dummy hash when there is no admin, so an unknown
        // email costs as much time as a wrong password.
        let hash = admin.as_ref().map(|a| a.password_hash.clone());
        let rehash =
            admin.as_ref().filter(|a| self.hasher.needs_rehash(&a.password_hash)).map(|_| request.password.clone());
        let matches = match self.hasher.verify(request.password, hash).await {
            Ok(matches) => matches,
            Err(error) => {
                // Nothing was checked: the slot is given back without counting a failure.
                self.throttles.abandoned(&request.email, check, &self.clock).await?;
                return Err(error.into());
            }
        };
        let Some(admin) = admin.filter(|_| matches) else {
            let locked = self.throttles.failed(&request.email, check, &self.clock).await?;
            self.audit_event(AuditAction::LoginFailed, AuditOutcome::Failure, org_id, actor_id, context).await;
            if locked.is_some() {
                self.audit_event(AuditAction::LoginLocked, AuditOutcome::Failure, org_id, actor_id, context).await;
            }
            return Err(LoginError::InvalidCredentials);
        };
        self.throttles.succeeded(&request.email, check, &self.clock).await?;
        // An admin whose organization is being created or deleted cannot log in.
        if self.organizations.find_by_id(admin.organization_id).await?.is_none() {
            return Err(LoginError::InvalidCredentials);
        }
        if let Some(password) = rehash {
            self.upgrade_hash(&admin, password).await;
        }
        let tokens = self.open_session(admin.id, admin.organization_id).await?;
        self.audit_event(AuditAction::LoginSucceeded, AuditOutcome::Success, org_id, actor_id, context).await;
        Ok(tokens)
    }

    async fn refresh(&self, token: SecretString, context: &RequestContext) -> Result<SessionTokens, RefreshError> {
        let presented = RefreshToken::presented(token).hash();
        let replacement = RefreshToken::generate();
        let policy = &self.security.policy;
        match self.security.sessions.rotate(&presented, &replacement.hash(), policy.refresh_grace, self.now()).await? {
            Rotation::Rotated(session) => {
                // The admin or organization may be gone even though the session is not.
                let admin = self.admins.find_by_id(session.admin_id).await?;
                let org = self.organizations.find_by_id(session.org_id).await?;
                if admin.is_none_or(|a| a.organization_id != session.org_id) || org.is_none() {
                    self.security.sessions.revoke_session(session.id, self.now()).await?;
                    return Err(RefreshError::Invalid);
                }
                let access = self.tokens.issue(session.admin_id, session.org_id, session.id, self.clock.now())?;
                Ok(SessionTokens { access, refresh_token: replacement.into_secret() })
            }
            Rotation::Reused(session) => {
                self.session_cache.forget_session(session.id);
                tracing::warn!(session_id = %session.id, "refresh token reuse detected; session revoked");
                self.audit_event(
                    AuditAction::SessionRefreshReused,
                    AuditOutcome::Failure,
                    Some(session.org_id),
                    Some(session.admin_id),
                    context,
                )
                .await;
                Err(RefreshError::Reused)
            }
            Rotation::Invalid => Err(RefreshError::Invalid),
        }
    }

    async fn logout(&self, caller: &Principal, context: &RequestContext) -> Result<(), AuthError> {
        self.security.sessions.revoke_session(caller.session_id, self.now()).await?;
        self.session_cache.forget_session(caller.session_id);
        self.audit_event(
            AuditAction::SessionLoggedOut,
            AuditOutcome::Success,
            Some(caller.org_id),
            Some(caller.admin_id),
            context,
        )
        .await;
        Ok(())
    }

    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = match self.tokens.verify(token, self.clock.now()) {
            Ok(claims) => claims,
            Err(TokenError::Invalid) => return Err(AuthError::InvalidToken),
            Err(TokenError::Failed(e)) => return Err(AuthError::Unknown(e)),
        };
        let now = self.now();
        if !self.session_cache.fresh(claims.session_id, now, self.security.policy.revocation_bound) {
            if !self.security.sessions.session_active(claims.session_id, now).await? {
                return Err(AuthError::InvalidToken);
            }
            self.session_cache.remember(claims.session_id, claims.admin_id, claims.org_id, now);
        }
        // A token outlives nothing it names: a deleted admin or organization ends it.
        let admin = self.admins.find_by_id(claims.admin_id).await?;
        if admin.is_none_or(|a| a.organization_id != claims.org_id) {
            return Err(AuthError::InvalidToken);
        }
        if self.organizations.find_by_id(claims.org_id).await?.is_none() {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal { admin_id: claims.admin_id, org_id: claims.org_id, session_id: claims.session_id })
    }

    async fn update(
        &self,
        caller: &Principal,
        request: UpdateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<OrganizationView, UpdateOrgError> {
        let current = self.organizations.find_by_id(caller.org_id).await?.ok_or(UpdateOrgError::NotFound)?;
        let before = self.admins.find_by_id(current.admin_id).await?.ok_or(UpdateOrgError::NotFound)?;
        let rename = request.name.map(|name| Rename {
            collection: CollectionName::for_organization(self.naming, current.id, name.key()),
            name,
        });
        let password_hash = match request.password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let email_changes = request.email.as_ref().is_some_and(|e| *e != before.email);
        let credentials_change = email_changes || password_hash.is_some();
        if credentials_change {
            // Other sessions end before the change rather than after it: if the change then
            // fails, they were ended for nothing, but never does a changed credential leave
            // another session alive.
            self.security.sessions.revoke_admin_sessions(caller.admin_id, Some(caller.session_id), self.now()).await?;
            self.session_cache.forget_admin(caller.admin_id);
        }
        let changes_password = password_hash.is_some();
        let changes = OrganizationChanges { rename, email: request.email, password_hash, at: self.now() };
        let organization = self.organizations.update(current.id, changes).await?;
        if credentials_change {
            // Keep the caller's own session in the cache: it was never revoked.
            self.session_cache.remember(caller.session_id, caller.admin_id, caller.org_id, self.now());
        }
        let (org, actor) = (Some(organization.id), Some(caller.admin_id));
        if organization.name.key() != current.name.key() {
            tracing::info!(organization_id = %organization.id, from = %current.name.key(), to = %organization.name.key(), "organization renamed");
        }
        if organization.name != current.name {
            self.audit_event(AuditAction::OrganizationRenamed, AuditOutcome::Success, org, actor, context).await;
        }
        if email_changes {
            self.audit_event(AuditAction::AdminEmailChanged, AuditOutcome::Success, org, actor, context).await;
        }
        if changes_password {
            self.audit_event(AuditAction::AdminPasswordChanged, AuditOutcome::Success, org, actor, context).await;
        }
        let admin_email = self.admin_email(organization.admin_id).await?;
        Ok(OrganizationView { organization, admin_email: Some(admin_email) })
    }

    async fn delete(
        &self,
        caller: &Principal,
        name: &OrganizationName,
        context: &RequestContext,
    ) -> Result<(), DeleteOrgError> {
        let organization = self.organizations.find_by_key(name.key()).await?.ok_or(DeleteOrgError::NotFound)?;
        if organization.id != caller.org_id {
            return Err(DeleteOrgError::NotOwner);
        }
        self.organizations.delete(organization.id).await?;
        tracing::info!(organization_id = %organization.id, "organization deleted");
        self.session_cache.forget_organization(organization.id);
        // The organization's tokens are refused already (its existence is checked on every
        // request); revoking its sessions also ends them for good.
        self.security.sessions.revoke_organization_sessions(organization.id, self.now()).await?;
        self.audit_event(
            AuditAction::OrganizationDeleted,
            AuditOutcome::Success,
            Some(organization.id),
            Some(caller.admin_id),
            context,
        )
        .await;
        let retention =
            chrono::Duration::from_std(self.security.policy.audit_retention).unwrap_or(chrono::Duration::MAX);
        self.security.audit.expire_events(organization.id, self.now() + retention).await?;
        Ok(())
    }

    async fn audit(&self, caller: &Principal, query: AuditQuery) -> Result<AuditPage, AuthError> {
        let limit = query.limit;
        let mut events =
            self.security.audit.events(caller.org_id, AuditQuery { limit: limit + 1, ..query }, self.now()).await?;
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage { events, next_cursor })
    }

    async fn organization_count(&self) -> Result<u64, StoreError> {
        self.organizations.count().await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.organizations.ping().await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use std::time::Duration;

    use domain::{Admin, PasswordHash};
    use mockall::predicate::{always, eq};
    use secrecy::ExposeSecret;

    use super::*;
    use crate::hasher::MockPasswordHasher;
    use crate::repository::{
        MockAccountLockout, MockAdminRepository, MockAuditLog, MockOrganizationRepository, MockSessionRepository,
    };
    use crate::token::MockTokenIssuer;
    use crate::{AccessToken, StoredThrottle, TokenClaims};
    use domain::LoginThrottle;

    struct FixedClock;
    #[async_trait]
    impl Clock for FixedClock {
        fn now(&self) -> chrono::DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("time")
        }

        async fn pause(&self, _: std::time::Duration) {}
    }

    /// Makes the lockout mock behave like a store holding one throttle, with real
    /// compare-and-set semantics; returns the throttle for the test to inspect.
    fn throttle_store(lockout: &mut MockAccountLockout) -> Arc<std::sync::Mutex<Option<StoredThrottle>>> {
        throttle_store_holding(lockout, None)
    }

    fn throttle_store_holding(
        lockout: &mut MockAccountLockout,
        initial: Option<StoredThrottle>,
    ) -> Arc<std::sync::Mutex<Option<StoredThrottle>>> {
        let cell = Arc::new(std::sync::Mutex::new(initial));
        let read = cell.clone();
        lockout.expect_load_throttle().returning(move |_| Ok(read.lock().expect("lock").clone()));
        let write = cell.clone();
        lockout.expect_save_throttle().returning(move |_, next, expected, _| {
            let mut stored = write.lock().expect("lock");
            if stored.as_ref().map(|s| s.version) != expected {
                return Ok(false);
            }
            *stored = Some(StoredThrottle { throttle: next.clone(), version: expected.map_or(1, |v| v + 1) });
            Ok(true)
        });
        cell
    }

    struct Mocks {
        orgs: MockOrganizationRepository,
        admins: MockAdminRepository,
        hasher: MockPasswordHasher,
        tokens: MockTokenIssuer,
        sessions: MockSessionRepository,
        lockout: MockAccountLockout,
        audit: MockAuditLog,
    }

    impl Mocks {
        fn new() -> Self {
            Self {
                orgs: MockOrganizationRepository::new(),
                admins: MockAdminRepository::new(),
                hasher: MockPasswordHasher::new(),
                tokens: MockTokenIssuer::new(),
                sessions: MockSessionRepository::new(),
                lockout: MockAccountLockout::new(),
                audit: MockAuditLog::new(),
            }
        }

        /// Mocks that accept any audit event, for tests about something else.
        fn auditing_anything() -> Self {
            let mut m = Self::new();
            m.audit.expect_record().returning(|_| Ok(()));
            m.hasher.expect_needs_rehash().returning(|_| false);
            m
        }

        fn service(self, naming: CollectionNaming) -> impl OrganizationApi {
            let security = SecurityStores {
                sessions: Arc::new(self.sessions),
                lockout: Arc::new(self.lockout),
                throttle_keyer: ThrottleKeyer::new(b"test"),
                audit: Arc::new(self.audit),
                policy: SecurityPolicy::default(),
            };
            OrgService::new(
                Arc::new(self.orgs),
                Arc::new(self.admins),
                self.hasher,
                self.tokens,
                FixedClock,
                naming,
                security,
            )
        }
    }

    fn ctx() -> RequestContext {
        RequestContext { ip: Some("192.0.2.1".to_owned()), request_id: Some("req-1".to_owned()) }
    }

    fn principal(org: &Organization) -> Principal {
        Principal { admin_id: org.admin_id, org_id: org.id, session_id: SessionId::new() }
    }

    fn hash() -> PasswordHash {
        PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()).expect("phc")
    }

    fn org(name: &str) -> Organization {
        let name = OrganizationName::parse(name).expect("name");
        let id = OrgId::new();
        Organization {
            id,
            collection: CollectionName::for_organization(CollectionNaming::Key, id, name.key()),
            name,
            admin_id: AdminId::new(),
            created_at: FixedClock.now(),
            updated_at: FixedClock.now(),
        }
    }

    fn admin_of(org: &Organization) -> Admin {
        Admin {
            id: org.admin_id,
            organization_id: org.id,
            email: Email::parse("a@acme.test").expect("email"),
            password_hash: hash(),
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }

    fn password() -> Password {
        Password::parse("correct horse".to_owned()).expect("password")
    }

    fn create_request(name: &str) -> CreateOrganizationRequest {
        CreateOrganizationRequest {
            name: OrganizationName::parse(name).expect("name"),
            email: Email::parse("a@acme.test").expect("email"),
            password: password(),
        }
    }

    fn access_token() -> AccessToken {
        AccessToken { token: "signed".to_owned().into(), expires_in: 900 }
    }

    #[tokio::test]
    async fn create_hashes_the_password_and_names_the_collection_by_key_or_id() {
        for naming in [CollectionNaming::Key, CollectionNaming::Id] {
            let mut m = Mocks::auditing_anything();
            m.hasher.expect_hash().times(1).returning(|p| {
                assert_eq!(p.expose(), "correct horse");
                Ok(hash())
            });
            m.orgs.expect_create().times(1).returning(move |new| {
                let expected = match naming {
                    CollectionNaming::Key => "org_acme_corp".to_owned(),
                    CollectionNaming::Id => format!("org_{}", new.id.as_uuid().simple()),
                };
                assert_eq!(new.collection.as_str(), expected);
                assert_eq!(new.admin.password_hash, hash());
                assert_eq!(new.created_at, FixedClock.now());
                Ok(Organization {
                    id: new.id,
                    name: new.name,
                    collection: new.collection,
                    admin_id: new.admin.id,
                    created_at: new.created_at,
                    updated_at: new.created_at,
                })
            });
            let created = m.service(naming).create(create_request("Acme Corp"), &ctx()).await.expect("create");
            assert_eq!(created.admin_email.as_str(), "a@acme.test");
        }
    }

    #[tokio::test]
    async fn create_passes_the_stores_conflicts_through() {
        let mut m = Mocks::auditing_anything();
        m.hasher.expect_hash().returning(|_| Ok(hash()));
        m.orgs.expect_create().returning(|_| Err(CreateOrgError::NameTaken));
        let result = m.service(CollectionNaming::Key).create(create_request("Acme"), &ctx()).await;
        assert!(matches!(result, Err(CreateOrgError::NameTaken)), "{result:?}");
    }

    #[tokio::test]
    async fn create_is_unavailable_when_hashing_is_saturated_and_stores_nothing() {
        let mut m = Mocks::auditing_anything();
        m.hasher.expect_hash().returning(|_| Err(HashError::Busy));
        m.orgs.expect_create().never();
        let result = m.service(CollectionNaming::Key).create(create_request("Acme"), &ctx()).await;
        assert!(matches!(result, Err(CreateOrgError::Unavailable(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_login_the_hasher_could_not_check_counts_no_failure() {
        let admin = admin_of(&org("Acme"));
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let throttle = throttle_store(&mut m.lockout);
        m.hasher.expect_verify().returning(|_, _| Err(HashError::Busy));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::Unavailable(_))), "{result:?}");
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!(stored.throttle, LoginThrottle::default(), "the slot is given back, nothing counted");
    }

    #[tokio::test]
    async fn login_with_an_unknown_email_still_verifies_against_a_dummy_hash() {
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(|_| Ok(None));
        let throttle = throttle_store(&mut m.lockout);
        m.hasher.expect_verify().withf(|_, hash| hash.is_none()).times(1).returning(|_, _| Ok(false));
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("nobody@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
        // The unknown address counts a failure exactly as an admin's would.
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!(stored.throttle, LoginThrottle { failures: 1, locked_until: None, checks: Vec::new() });
    }

    #[tokio::test]
    async fn login_with_a_wrong_password_is_refused() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let throttle = throttle_store(&mut m.lockout);
        m.hasher.expect_verify().withf(|_, hash| hash.as_ref() == Some(&self::hash())).returning(|_, _| Ok(false));
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!((stored.throttle.failures, stored.throttle.checks.len()), (1, 0), "one failure, no check left");
    }

    #[tokio::test]
    async fn login_issues_a_token_naming_the_admin_and_organization_ids() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let (admin_id, org_id) = (admin.id, org.id);
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let throttle = throttle_store_holding(
            &mut m.lockout,
            Some(StoredThrottle {
                throttle: LoginThrottle { failures: 3, locked_until: None, checks: Vec::new() },
                version: 7,
            }),
        );
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        m.orgs.expect_find_by_id().with(eq(org_id)).returning(move |_| Ok(Some(org.clone())));
        let created = Arc::new(std::sync::Mutex::new(None));
        let stored = created.clone();
        m.sessions.expect_create_session().times(1).returning(move |new| {
            assert_eq!((new.session.admin_id, new.session.org_id), (admin_id, org_id));
            assert_eq!(new.session.expires_at - new.session.created_at, chrono::Duration::days(30));
            *stored.lock().expect("lock") = Some(new);
            Ok(())
        });
        m.tokens
            .expect_issue()
            .with(eq(admin_id), eq(org_id), always(), always())
            .times(1)
            .returning(|_, _, _, _| Ok(access_token()));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let tokens = m.service(CollectionNaming::Key).login(request, &ctx()).await.expect("login");
        assert_eq!(tokens.access.expires_in, 900);
        // Only the refresh token's hash is stored.
        let new = created.lock().expect("lock").take().expect("session stored");
        assert_eq!(RefreshToken::presented(tokens.refresh_token).hash(), new.refresh_hash);
        // The success cleared the address's failures.
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!(stored.throttle, LoginThrottle::default());
    }

    #[tokio::test]
    async fn login_to_an_organization_that_is_gone_is_refused() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        throttle_store(&mut m.lockout);
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        m.orgs.expect_find_by_id().returning(|_| Ok(None));
        m.sessions.expect_create_session().never();
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    fn claims(org: &Organization) -> TokenClaims {
        TokenClaims {
            admin_id: org.admin_id,
            org_id: org.id,
            session_id: SessionId::parse("00000000-0000-4000-8000-000000000001").expect("sid"),
            token_id: "jti".to_owned(),
            expires_at: FixedClock.now(),
        }
    }

    #[tokio::test]
    async fn authenticate_checks_that_the_admin_and_organization_still_exist() {
        let org = org("Acme");
        // Each case: does the admin exist, does it belong to the token's organization, does
        // the organization exist, and is the token then accepted.
        for (admin_exists, same_org, org_exists, accepted) in [
            (true, true, true, true),
            (false, true, true, false),
            (true, false, true, false),
            (true, true, false, false),
        ] {
            let mut m = Mocks::auditing_anything();
            let token_claims = claims(&org);
            let sid = token_claims.session_id;
            m.tokens.expect_verify().returning(move |_, _| Ok(token_claims.clone()));
            m.sessions.expect_session_active().with(eq(sid), always()).returning(|_, _| Ok(true));
            let mut admin = admin_of(&org);
            if !same_org {
                admin.organization_id = OrgId::new();
            }
            m.admins.expect_find_by_id().returning(move |_| Ok(admin_exists.then(|| admin.clone())));
            let found = org.clone();
            m.orgs.expect_find_by_id().returning(move |_| Ok(org_exists.then(|| found.clone())));
            let result = m.service(CollectionNaming::Key).authenticate("token").await;
            match result {
                Ok(principal) => {
                    assert!(accepted);
                    assert_eq!(
                        principal,
                        Principal { admin_id: org.admin_id, org_id: org.id, session_id: principal.session_id }
                    );
                }
                Err(AuthError::InvalidToken) => assert!(!accepted),
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[tokio::test]
    async fn authenticate_refuses_a_bad_token_without_touching_the_store() {
        let mut m = Mocks::auditing_anything();
        m.tokens.expect_verify().returning(|_, _| Err(TokenError::Invalid));
        m.admins.expect_find_by_id().never();
        m.orgs.expect_find_by_id().never();
        let result = m.service(CollectionNaming::Key).authenticate("token").await;
        assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn get_shows_the_admin_email_only_to_the_organizations_own_admin() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let own = principal(&org);
        let other = Principal { admin_id: AdminId::new(), org_id: OrgId::new(), session_id: SessionId::new() };
        for (viewer, shown) in [(None, false), (Some(other), false), (Some(own), true)] {
            let mut m = Mocks::auditing_anything();
            let found = org.clone();
            m.orgs.expect_find_by_key().returning(move |_| Ok(Some(found.clone())));
            let admin = admin.clone();
            m.admins.expect_find_by_id().times(usize::from(shown)).returning(move |_| Ok(Some(admin.clone())));
            let view = m.service(CollectionNaming::Key).get(&org.name, viewer.as_ref()).await.expect("get");
            assert_eq!(view.admin_email.is_some(), shown);
        }
    }

    #[tokio::test]
    async fn delete_refuses_another_organization_without_deleting_anything() {
        let org = org("Acme");
        let mut m = Mocks::auditing_anything();
        let found = org.clone();
        m.orgs.expect_find_by_key().returning(move |_| Ok(Some(found.clone())));
        m.orgs.expect_delete().never();
        let caller = Principal { admin_id: AdminId::new(), org_id: OrgId::new(), session_id: SessionId::new() };
        let result = m.service(CollectionNaming::Key).delete(&caller, &org.name, &ctx()).await;
        assert!(matches!(result, Err(DeleteOrgError::NotOwner)), "{result:?}");
    }

    #[tokio::test]
    async fn delete_of_an_unknown_name_is_not_found() {
        let mut m = Mocks::auditing_anything();
        m.orgs.expect_find_by_key().returning(|_| Ok(None));
        m.orgs.expect_delete().never();
        let caller = Principal { admin_id: AdminId::new(), org_id: OrgId::new(), session_id: SessionId::new() };
        let name = OrganizationName::parse("Nobody").expect("name");
        let result = m.service(CollectionNaming::Key).delete(&caller, &name, &ctx()).await;
        assert!(matches!(result, Err(DeleteOrgError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn update_hashes_a_new_password_and_targets_the_new_collection() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let caller = principal(&org);
        let mut m = Mocks::auditing_anything();
        let found = org.clone();
        m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        m.hasher.expect_hash().times(1).returning(|_| Ok(hash()));
        // A new password ends every other session of the admin, before the change applies.
        let mut order = mockall::Sequence::new();
        m.sessions
            .expect_revoke_admin_sessions()
            .with(eq(caller.admin_id), eq(Some(caller.session_id)), always())
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(()));
        let current = org.clone();
        m.orgs.expect_update().times(1).in_sequence(&mut order).returning(move |id, changes| {
            assert_eq!(id, current.id);
            let rename = changes.rename.expect("rename");
            assert_eq!(rename.collection.as_str(), "org_acme_two");
            assert_eq!(changes.password_hash, Some(hash()));
            assert_eq!(changes.email, None);
            assert_eq!(changes.at, FixedClock.now());
            Ok(Organization { name: rename.name, collection: rename.collection, ..current.clone() })
        });
        m.admins.expect_find_by_id().returning(move |_| Ok(Some(admin.clone())));
        let request = UpdateOrganizationRequest::new(
            Some(OrganizationName::parse("Acme Two").expect("name")),
            None,
            Some(password()),
        )
        .expect("request");
        let view = m.service(CollectionNaming::Key).update(&caller, request, &ctx()).await.expect("update");
        assert_eq!(view.organization.name.as_str(), "Acme Two");
        assert_eq!(view.admin_email.expect("email").as_str(), "a@acme.test");
    }

    #[tokio::test]
    async fn a_locked_account_is_refused_without_checking_the_password() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let until = FixedClock.now() + chrono::Duration::minutes(1);
        let mut m = Mocks::new();
        m.hasher.expect_needs_rehash().returning(|_| false);
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let locked = LoginThrottle { failures: 5, locked_until: Some(until), checks: Vec::new() };
        m.lockout
            .expect_load_throttle()
            .returning(move |_| Ok(Some(StoredThrottle { throttle: locked.clone(), version: 3 })));
        m.lockout.expect_save_throttle().never();
        m.hasher.expect_verify().never();
        m.audit
            .expect_record()
            .withf(|e| e.action == AuditAction::LoginLocked && e.outcome == AuditOutcome::Denied)
            .times(1)
            .returning(|_| Ok(()));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::Locked { until: u }) if u == until), "{result:?}");
    }

    #[tokio::test]
    async fn an_outdated_hash_is_upgraded_after_a_successful_login() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let admin_id = admin.id;
        let mut m = Mocks::new();
        m.audit.expect_record().returning(|_| Ok(()));
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        throttle_store(&mut m.lockout);
        m.hasher.expect_needs_rehash().returning(|_| true);
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        let upgraded = PasswordHash::from_phc("$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$bmV3".to_owned()).expect("phc");
        let new_hash = upgraded.clone();
        m.hasher.expect_hash().times(1).returning(move |p| {
            assert_eq!(p.expose(), "correct horse");
            Ok(new_hash.clone())
        });
        m.lockout
            .expect_upgrade_password_hash()
            .withf(move |id, current, new| *id == admin_id && *current == hash() && *new == upgraded)
            .times(1)
            .returning(|_, _, _| Ok(true));
        let found = org.clone();
        m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        m.sessions.expect_create_session().returning(|_| Ok(()));
        m.tokens.expect_issue().returning(|_, _, _, _| Ok(access_token()));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        m.service(CollectionNaming::Key).login(request, &ctx()).await.expect("login");
    }

    #[tokio::test]
    async fn a_reused_refresh_token_is_refused_and_audited() {
        let org = org("Acme");
        let session = Session {
            id: SessionId::new(),
            admin_id: org.admin_id,
            org_id: org.id,
            created_at: FixedClock.now(),
            expires_at: FixedClock.now(),
        };
        let mut m = Mocks::new();
        let reused = session.clone();
        m.sessions.expect_rotate().returning(move |_, _, _, _| Ok(Rotation::Reused(reused.clone())));
        m.tokens.expect_issue().never();
        let org_id = org.id;
        m.audit
            .expect_record()
            .withf(move |e| {
                e.action == AuditAction::SessionRefreshReused
                    && e.organization_id == Some(org_id)
                    && e.request_id.as_deref() == Some("req-1")
            })
            .times(1)
            .returning(|_| Ok(()));
        let result = m.service(CollectionNaming::Key).refresh("stolen".to_owned().into(), &ctx()).await;
        assert!(matches!(result, Err(RefreshError::Reused)), "{result:?}");
    }

    #[tokio::test]
    async fn a_refresh_rotates_and_issues_tokens_for_the_session() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let session = Session {
            id: SessionId::new(),
            admin_id: org.admin_id,
            org_id: org.id,
            created_at: FixedClock.now(),
            expires_at: FixedClock.now(),
        };
        let mut m = Mocks::auditing_anything();
        let presented = RefreshToken::presented("old".to_owned().into()).hash();
        let rotated = session.clone();
        m.sessions
            .expect_rotate()
            .withf(move |p, r, grace, _| *p == presented && *r != presented && *grace == Duration::from_secs(10))
            .times(1)
            .returning(move |_, _, _, _| Ok(Rotation::Rotated(rotated.clone())));
        m.admins.expect_find_by_id().returning(move |_| Ok(Some(admin.clone())));
        let found = org.clone();
        m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        m.tokens
            .expect_issue()
            .with(eq(org.admin_id), eq(org.id), eq(session.id), always())
            .times(1)
            .returning(|_, _, _, _| Ok(access_token()));
        let tokens = m.service(CollectionNaming::Key).refresh("old".to_owned().into(), &ctx()).await.expect("refresh");
        assert_eq!(tokens.refresh_token.expose_secret().len(), 64);
    }

    #[test]
    fn an_update_must_change_something() {
        assert!(UpdateOrganizationRequest::new(None, None, None).is_none());
    }
}
