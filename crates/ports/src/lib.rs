//! The ports of the Organization Management Service, and the use cases written against
//! them.
//!
//! A port is a trait in the language of the domain: no BSON, no HTTP, no driver types.
//! Adapters implement the secondary ports ([`OrganizationRepository`], [`AdminRepository`],
//! [`TenantStore`], [`PasswordHasher`], [`TokenIssuer`], [`Clock`]); the HTTP adapter
//! drives the primary port, [`OrganizationApi`], which [`OrgService`] implements.

mod clock;
#[cfg(feature = "contract")]
pub mod contract;
mod hasher;
mod repository;
mod sessions;
mod throttle;
mod token;
mod usecases;
mod vault;
mod webhooks;

pub use clock::{Clock, ManualClock, SystemClock};
pub use domain::{RefreshHash, SecurityPolicy};
pub use hasher::{HashError, PasswordHasher};
pub use repository::{
    AccountLockout, AdminRepository, ApiKeyRepository, AuditLog, AuditQuery, NewSession, OrganizationRepository,
    REMEMBERED_ROTATIONS, Rotation, SessionRepository, StoredSession, TenantStore,
};
pub use sessions::RefreshToken;
pub use throttle::{CheckPermit, LoginThrottles, StoredThrottle, ThrottleKey, ThrottleKeyer};
pub use token::{AccessToken, TokenClaims, TokenError, TokenIssuer};
pub use usecases::{
    AuditError, AuditPage, AuthError, CreateApiKeyRequest, CreateOrganizationRequest, CreateWebhookRequest,
    CreatedApiKey, CreatedOrganization, CreatedWebhook, DELIVERY_LOG_LENGTH, LoginError, LoginRequest, LogoutError,
    MAX_WEBHOOKS_PER_ORGANIZATION, OrgService, OrganizationApi, OrganizationView, Ports, Principal, RefreshError,
    RequestContext, ServiceSettings, SessionTokens, UpdateOrganizationRequest,
};
pub use vault::CredentialVault;
pub use webhooks::{DeliveryRecord, DeliverySettings, DeliveryTask, WebhookDelivery, WebhookRepository, WebhookSender};
