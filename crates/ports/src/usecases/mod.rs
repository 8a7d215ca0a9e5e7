//! The use cases: create, read, log in, refresh, log out, authenticate, update and delete
//! organizations, and read the audit trail; one module each, holding its request, its
//! error and its tests.
//!
//! [`OrgService`] holds every port it needs as a shared trait object ([`Ports`]): one way of
//! injecting dependencies, which keeps each use case module free of type parameters and
//! lets tests hand in mockall mocks. The HTTP adapter sees the use cases only through the
//! [`OrganizationApi`] trait so that they are wired once at the composition root.

mod api_keys;
mod audit;
mod authenticate;
mod connection;
mod create;
mod delete;
mod get;
mod login;
mod logout;
mod refresh;
#[cfg(test)]
mod test_support;
mod update;
mod webhooks;

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    AdminId, ApiKey, ApiKeyId, AuditAction, AuditEvent, AuditOutcome, CollectionNaming, CreateApiKeyError,
    CreateOrgError, CreateWebhookError, Credential, CredentialsError, DatabaseCredentials, DeleteOrgError, Email,
    Endpoint, EndpointPolicy, EventId, GetOrgError, ListApiKeysError, ListWebhooksError, OrgId, OrganizationName,
    Placement, RevokeApiKeyError, SessionId, StoreError, TenantLocation, UpdateOrgError, WebhookEndpointError,
    WebhookId, WebhookSecret,
};
use secrecy::SecretString;

pub use api_keys::{CreateApiKeyRequest, CreatedApiKey};
pub use audit::{AuditError, AuditPage};
pub use authenticate::AuthError;
pub use create::{CreateOrganizationRequest, CreatedOrganization};
pub use get::OrganizationView;
pub use login::{LoginError, LoginRequest, SessionTokens};
pub use logout::LogoutError;
pub use refresh::RefreshError;
pub use update::UpdateOrganizationRequest;
pub use webhooks::{CreateWebhookRequest, CreatedWebhook, DELIVERY_LOG_LENGTH, MAX_WEBHOOKS_PER_ORGANIZATION};

use crate::SecurityPolicy;
use crate::{
    AccountLockout, AdminRepository, ApiKeyRepository, AuditLog, AuditQuery, Clock, DeliveryRecord, HashError,
    LoginThrottles, OrganizationRepository, PasswordHasher, SessionRepository, ThrottleKeyer, TokenError, TokenIssuer,
    WebhookRepository,
};

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The client's address, as the HTTP adapter determined it.
    pub ip: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
}

/// The authenticated caller of a protected use case: an admin's access token whose session,
/// admin and organization were live when the request was authenticated, or one of the
/// organization's API keys that was live then, acting for its admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The admin (for an API key, the organization's admin, for whom the key acts).
    pub admin_id: AdminId,
    /// The admin's organization.
    pub org_id: OrgId,
    /// The session or the API key the request was authenticated with.
    pub credential: Credential,
}

impl Principal {
    /// A caller authenticated by an access token of `session`.
    pub fn of_session(admin_id: AdminId, org_id: OrgId, session: SessionId) -> Self {
        Self { admin_id, org_id, credential: Credential::Session(session) }
    }
}

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
    async fn logout(&self, caller: &Principal, context: &RequestContext) -> Result<(), LogoutError>;

    /// Verifies an access token and that its session, admin and organization are still
    /// live, or an API key (a bearer credential with the key prefix) and that it and its
    /// organization are.
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
    async fn audit(&self, caller: &Principal, query: AuditQuery) -> Result<AuditPage, AuditError>;

    /// Where the caller's organization's data lives and how its applications reach it.
    async fn connection(&self, caller: &Principal) -> Result<TenantLocation, GetOrgError>;

    /// Creates or rotates the caller's organization's database user and returns it with its
    /// new password, shown this once.
    async fn rotate_credentials(
        &self,
        caller: &Principal,
        context: &RequestContext,
    ) -> Result<DatabaseCredentials, CredentialsError>;

    /// Creates an API key for the caller's organization; its secret is shown this once.
    async fn create_api_key(
        &self,
        caller: &Principal,
        request: CreateApiKeyRequest,
        context: &RequestContext,
    ) -> Result<CreatedApiKey, CreateApiKeyError>;

    /// The caller's organization's API keys, oldest first, without their secrets.
    async fn list_api_keys(&self, caller: &Principal) -> Result<Vec<ApiKey>, ListApiKeysError>;

    /// Revokes one of the caller's organization's API keys.
    async fn revoke_api_key(
        &self,
        caller: &Principal,
        id: ApiKeyId,
        context: &RequestContext,
    ) -> Result<(), RevokeApiKeyError>;

    /// Registers a webhook endpoint for the caller's organization; its signing secret is
    /// shown this once.
    async fn create_webhook(
        &self,
        caller: &Principal,
        request: CreateWebhookRequest,
        context: &RequestContext,
    ) -> Result<CreatedWebhook, CreateWebhookError>;

    /// The caller's organization's webhook endpoints, oldest first, without their secrets.
    async fn list_webhooks(&self, caller: &Principal) -> Result<Vec<Endpoint>, ListWebhooksError>;

    /// Removes one of the caller's organization's webhook endpoints.
    async fn delete_webhook(
        &self,
        caller: &Principal,
        id: WebhookId,
        context: &RequestContext,
    ) -> Result<(), WebhookEndpointError>;

    /// Gives one of the caller's organization's endpoints a new signing secret, shown this
    /// once; the old one stops signing at once.
    async fn rotate_webhook_secret(
        &self,
        caller: &Principal,
        id: WebhookId,
        context: &RequestContext,
    ) -> Result<WebhookSecret, WebhookEndpointError>;

    /// An endpoint's latest delivery attempts, newest first.
    async fn webhook_deliveries(
        &self,
        caller: &Principal,
        id: WebhookId,
    ) -> Result<Vec<DeliveryRecord>, WebhookEndpointError>;

    /// How many organizations are active, for metrics.
    async fn organization_count(&self) -> Result<u64, StoreError>;

    /// Checks that the store answers.
    async fn ready(&self) -> Result<(), StoreError>;
}

/// Every port the use cases are wired to.
#[derive(Clone)]
pub struct Ports {
    /// Organizations and their tenant collections.
    pub organizations: Arc<dyn OrganizationRepository>,
    /// Admins.
    pub admins: Arc<dyn AdminRepository>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access tokens.
    pub tokens: Arc<dyn TokenIssuer>,
    /// Time, and waiting.
    pub clock: Arc<dyn Clock>,
    /// Sessions and refresh tokens.
    pub sessions: Arc<dyn SessionRepository>,
    /// Login throttles (failed-login counters per email address).
    pub lockout: Arc<dyn AccountLockout>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// API keys.
    pub api_keys: Arc<dyn ApiKeyRepository>,
    /// Webhook endpoints and their delivery logs.
    pub webhooks: Arc<dyn WebhookRepository>,
}

/// What the use cases decide with, besides their ports.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How new tenant collections are named.
    pub naming: CollectionNaming,
    /// The secret under which throttles are keyed; the same on every instance.
    pub throttle_keyer: ThrottleKeyer,
    /// Session, lockout and audit policy.
    pub policy: SecurityPolicy,
    /// Where new organizations go.
    pub placement: Placement,
    /// Whether organizations placed in a database of their own may get database users of
    /// their own (`ORGSVC_TENANT_CREDENTIALS`).
    pub tenant_credentials: bool,
    /// Where webhook deliveries may go.
    pub webhook_policy: EndpointPolicy,
}

/// The use cases, written against the ports.
pub struct OrgService {
    organizations: Arc<dyn OrganizationRepository>,
    admins: Arc<dyn AdminRepository>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenIssuer>,
    clock: Arc<dyn Clock>,
    sessions: Arc<dyn SessionRepository>,
    lockout: Arc<dyn AccountLockout>,
    audit_log: Arc<dyn AuditLog>,
    api_keys: Arc<dyn ApiKeyRepository>,
    webhooks: Arc<dyn WebhookRepository>,
    webhook_policy: EndpointPolicy,
    naming: CollectionNaming,
    placement: Placement,
    tenant_credentials: bool,
    policy: SecurityPolicy,
    throttles: LoginThrottles,
}

impl OrgService {
    /// Wires the use cases to their ports.
    pub fn new(ports: Ports, settings: ServiceSettings) -> Self {
        let throttles =
            LoginThrottles::new(Arc::clone(&ports.lockout), settings.policy.lockout, settings.throttle_keyer);
        Self {
            organizations: ports.organizations,
            admins: ports.admins,
            hasher: ports.hasher,
            tokens: ports.tokens,
            clock: ports.clock,
            sessions: ports.sessions,
            lockout: ports.lockout,
            audit_log: ports.audit,
            api_keys: ports.api_keys,
            webhooks: ports.webhooks,
            webhook_policy: settings.webhook_policy,
            naming: settings.naming,
            placement: settings.placement,
            tenant_credentials: settings.tenant_credentials,
            policy: settings.policy,
            throttles,
        }
    }

    /// The clock's time at the millisecond precision the stores keep.
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
        self.record_audit_event(action, outcome, organization_id, actor_id, None, context).await;
    }

    /// Records that an authenticated caller did `action` to its organization, naming the
    /// API key if one acted.
    async fn audit_caller(&self, action: AuditAction, caller: &Principal, context: &RequestContext) {
        let (org, actor, key) = (Some(caller.org_id), Some(caller.admin_id), caller.credential.api_key());
        self.record_audit_event(action, AuditOutcome::Success, org, actor, key, context).await;
    }

    async fn record_audit_event(
        &self,
        action: AuditAction,
        outcome: AuditOutcome,
        organization_id: Option<OrgId>,
        actor_id: Option<AdminId>,
        api_key_id: Option<ApiKeyId>,
        context: &RequestContext,
    ) {
        let event = AuditEvent {
            id: EventId::at(self.now()),
            at: self.now(),
            action,
            organization_id,
            actor_id,
            api_key_id,
            ip: context.ip.clone(),
            request_id: context.request_id.clone(),
            outcome,
        };
        if let Err(error) = self.audit_log.record(event).await {
            tracing::error!(%action, error = %error, "could not record an audit event");
        }
    }
}

#[async_trait]
impl OrganizationApi for OrgService {
    #[tracing::instrument(name = "use_case.create", level = "debug", skip_all)]
    async fn create(
        &self,
        request: CreateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<CreatedOrganization, CreateOrgError> {
        self.create_organization(request, context).await
    }

    #[tracing::instrument(name = "use_case.get", level = "debug", skip_all)]
    async fn get(&self, name: &OrganizationName, viewer: Option<&Principal>) -> Result<OrganizationView, GetOrgError> {
        self.get_organization(name, viewer).await
    }

    #[tracing::instrument(name = "use_case.login", level = "debug", skip_all)]
    async fn login(&self, request: LoginRequest, context: &RequestContext) -> Result<SessionTokens, LoginError> {
        self.log_in(request, context).await
    }

    #[tracing::instrument(name = "use_case.refresh", level = "debug", skip_all)]
    async fn refresh(&self, token: SecretString, context: &RequestContext) -> Result<SessionTokens, RefreshError> {
        self.refresh_session(token, context).await
    }

    #[tracing::instrument(name = "use_case.logout", level = "debug", skip_all)]
    async fn logout(&self, caller: &Principal, context: &RequestContext) -> Result<(), LogoutError> {
        self.log_out(caller, context).await
    }

    #[tracing::instrument(name = "use_case.authenticate", level = "debug", skip_all)]
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.authenticate_token(token).await
    }

    #[tracing::instrument(name = "use_case.update", level = "debug", skip_all)]
    async fn update(
        &self,
        caller: &Principal,
        request: UpdateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<OrganizationView, UpdateOrgError> {
        self.update_organization(caller, request, context).await
    }

    #[tracing::instrument(name = "use_case.delete", level = "debug", skip_all)]
    async fn delete(
        &self,
        caller: &Principal,
        name: &OrganizationName,
        context: &RequestContext,
    ) -> Result<(), DeleteOrgError> {
        self.delete_organization(caller, name, context).await
    }

    #[tracing::instrument(name = "use_case.audit", level = "debug", skip_all)]
    async fn audit(&self, caller: &Principal, query: AuditQuery) -> Result<AuditPage, AuditError> {
        self.read_audit(caller, query).await
    }

    #[tracing::instrument(name = "use_case.connection", level = "debug", skip_all)]
    async fn connection(&self, caller: &Principal) -> Result<TenantLocation, GetOrgError> {
        self.connection_details(caller).await
    }

    #[tracing::instrument(name = "use_case.rotate_credentials", level = "debug", skip_all)]
    async fn rotate_credentials(
        &self,
        caller: &Principal,
        context: &RequestContext,
    ) -> Result<DatabaseCredentials, CredentialsError> {
        self.rotate_database_credentials(caller, context).await
    }

    #[tracing::instrument(name = "use_case.create_api_key", level = "debug", skip_all)]
    async fn create_api_key(
        &self,
        caller: &Principal,
        request: CreateApiKeyRequest,
        context: &RequestContext,
    ) -> Result<CreatedApiKey, CreateApiKeyError> {
        self.issue_api_key(caller, request, context).await
    }

    #[tracing::instrument(name = "use_case.list_api_keys", level = "debug", skip_all)]
    async fn list_api_keys(&self, caller: &Principal) -> Result<Vec<ApiKey>, ListApiKeysError> {
        self.api_keys_of(caller).await
    }

    #[tracing::instrument(name = "use_case.revoke_api_key", level = "debug", skip_all)]
    async fn revoke_api_key(
        &self,
        caller: &Principal,
        id: ApiKeyId,
        context: &RequestContext,
    ) -> Result<(), RevokeApiKeyError> {
        self.revoke_key(caller, id, context).await
    }

    #[tracing::instrument(name = "use_case.create_webhook", level = "debug", skip_all)]
    async fn create_webhook(
        &self,
        caller: &Principal,
        request: CreateWebhookRequest,
        context: &RequestContext,
    ) -> Result<CreatedWebhook, CreateWebhookError> {
        self.register_webhook(caller, request, context).await
    }

    #[tracing::instrument(name = "use_case.list_webhooks", level = "debug", skip_all)]
    async fn list_webhooks(&self, caller: &Principal) -> Result<Vec<Endpoint>, ListWebhooksError> {
        self.webhooks_of(caller).await
    }

    #[tracing::instrument(name = "use_case.delete_webhook", level = "debug", skip_all)]
    async fn delete_webhook(
        &self,
        caller: &Principal,
        id: WebhookId,
        context: &RequestContext,
    ) -> Result<(), WebhookEndpointError> {
        self.remove_webhook(caller, id, context).await
    }

    #[tracing::instrument(name = "use_case.rotate_webhook_secret", level = "debug", skip_all)]
    async fn rotate_webhook_secret(
        &self,
        caller: &Principal,
        id: WebhookId,
        context: &RequestContext,
    ) -> Result<WebhookSecret, WebhookEndpointError> {
        self.rotate_webhook(caller, id, context).await
    }

    #[tracing::instrument(name = "use_case.webhook_deliveries", level = "debug", skip_all)]
    async fn webhook_deliveries(
        &self,
        caller: &Principal,
        id: WebhookId,
    ) -> Result<Vec<DeliveryRecord>, WebhookEndpointError> {
        self.deliveries_of(caller, id).await
    }

    #[tracing::instrument(name = "use_case.organization_count", level = "debug", skip_all)]
    async fn organization_count(&self) -> Result<u64, StoreError> {
        self.organizations.count().await
    }

    #[tracing::instrument(name = "use_case.ready", level = "debug", skip_all)]
    async fn ready(&self) -> Result<(), StoreError> {
        self.organizations.ping().await
    }
}

/// Hashing and token failures of the use cases that hash or issue: a saturated hasher is
/// a retryable unavailability, anything else a bug.
macro_rules! from_infrastructure_errors {
    ($($error:ty),*) => {$(
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
