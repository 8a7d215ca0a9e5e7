//! Mocks, a fixed clock and fixtures shared by the use cases' tests.

#![allow(dead_code)]

pub(super) use std::sync::Arc;
pub(super) use std::time::Duration;

pub(super) use chrono::{TimeZone, Utc};
pub(super) use domain::{
    Admin, AdminId, CollectionName, CollectionNaming, Email, LoginThrottle, OrgId, Organization, OrganizationName,
    Password, PasswordHash, SessionId,
};
pub(super) use mockall::predicate::{always, eq};
pub(super) use secrecy::ExposeSecret;

pub(super) use super::*;
pub(super) use crate::hasher::MockPasswordHasher;
pub(super) use crate::repository::{
    MockAccountLockout, MockAdminRepository, MockApiKeyRepository, MockAuditLog, MockOrganizationRepository,
    MockSessionRepository,
};
pub(super) use crate::token::MockTokenIssuer;
pub(super) use crate::webhooks::MockWebhookRepository;
pub(super) use crate::{AccessToken, StoredThrottle, TokenClaims};

pub(super) struct FixedClock;
#[async_trait]
impl Clock for FixedClock {
    fn now(&self) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("time")
    }

    async fn pause(&self, _: std::time::Duration) {}
}

pub(super) struct Mocks {
    pub(super) orgs: MockOrganizationRepository,
    pub(super) admins: MockAdminRepository,
    pub(super) hasher: MockPasswordHasher,
    pub(super) tokens: MockTokenIssuer,
    pub(super) sessions: MockSessionRepository,
    pub(super) lockout: MockAccountLockout,
    pub(super) audit: MockAuditLog,
    pub(super) api_keys: MockApiKeyRepository,
    pub(super) webhooks: MockWebhookRepository,
}

impl Mocks {
    pub(super) fn new() -> Self {
        Self {
            orgs: MockOrganizationRepository::new(),
            admins: MockAdminRepository::new(),
            hasher: MockPasswordHasher::new(),
            tokens: MockTokenIssuer::new(),
            sessions: MockSessionRepository::new(),
            lockout: MockAccountLockout::new(),
            audit: MockAuditLog::new(),
            api_keys: MockApiKeyRepository::new(),
            webhooks: MockWebhookRepository::new(),
        }
    }

    /// Mocks that accept any audit event, for tests about something else.
    pub(super) fn auditing_anything() -> Self {
        let mut m = Self::new();
        m.audit.expect_record().returning(|_| Ok(()));
        m.hasher.expect_needs_rehash().returning(|_| false);
        m
    }

    pub(super) fn service(self, naming: CollectionNaming) -> impl OrganizationApi {
        self.service_with(naming, false)
    }

    /// The service, with per-tenant database credentials switched on or off.
    pub(super) fn service_with(self, naming: CollectionNaming, tenant_credentials: bool) -> impl OrganizationApi {
        let ports = Ports {
            organizations: Arc::new(self.orgs),
            admins: Arc::new(self.admins),
            hasher: Arc::new(self.hasher),
            tokens: Arc::new(self.tokens),
            clock: Arc::new(FixedClock),
            sessions: Arc::new(self.sessions),
            lockout: Arc::new(self.lockout),
            audit: Arc::new(self.audit),
            api_keys: Arc::new(self.api_keys),
            webhooks: Arc::new(self.webhooks),
        };
        let settings = ServiceSettings {
            naming,
            throttle_keyer: ThrottleKeyer::new(b"test"),
            policy: SecurityPolicy::default(),
            placement: domain::Placement::default(),
            tenant_credentials,
            webhook_policy: domain::EndpointPolicy::default(),
        };
        OrgService::new(ports, settings)
    }
}

/// Makes the lockout mock behave like a store holding one throttle, with real
/// compare-and-set semantics; returns the throttle for the test to inspect.
pub(super) fn throttle_store(lockout: &mut MockAccountLockout) -> Arc<std::sync::Mutex<Option<StoredThrottle>>> {
    throttle_store_holding(lockout, None)
}

pub(super) fn throttle_store_holding(
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

pub(super) fn ctx() -> RequestContext {
    RequestContext { ip: Some("192.0.2.1".to_owned()), request_id: Some("req-1".to_owned()) }
}

pub(super) fn principal(org: &Organization) -> Principal {
    Principal::of_session(org.admin_id, org.id, SessionId::new())
}

pub(super) fn hash() -> PasswordHash {
    PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()).expect("phc")
}

pub(super) fn org(name: &str) -> Organization {
    let name = OrganizationName::parse(name).expect("name");
    let id = OrgId::new();
    Organization {
        id,
        collection: CollectionName::for_organization(CollectionNaming::Key, id, name.key()),
        name,
        placement: domain::Placement::default(),
        admin_id: AdminId::new(),
        created_at: FixedClock.now(),
        updated_at: FixedClock.now(),
    }
}

pub(super) fn admin_of(org: &Organization) -> Admin {
    Admin {
        id: org.admin_id,
        organization_id: org.id,
        email: Email::parse("a@acme.test").expect("email"),
        password_hash: hash(),
        created_at: org.created_at,
        updated_at: org.updated_at,
    }
}

pub(super) fn password() -> Password {
    Password::parse("correct horse".to_owned()).expect("password")
}

pub(super) fn create_request(name: &str) -> CreateOrganizationRequest {
    CreateOrganizationRequest {
        name: OrganizationName::parse(name).expect("name"),
        email: Email::parse("a@acme.test").expect("email"),
        password: password(),
    }
}

pub(super) fn access_token() -> AccessToken {
    AccessToken { token: "signed".to_owned().into(), expires_in: 900 }
}

pub(super) fn claims(org: &Organization) -> TokenClaims {
    TokenClaims {
        admin_id: org.admin_id,
        org_id: org.id,
        session_id: SessionId::parse("00000000-0000-4000-8000-000000000001").expect("sid"),
        token_id: "jti".to_owned(),
        expires_at: FixedClock.now(),
    }
}
