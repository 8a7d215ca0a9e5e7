//! An organization's API keys: created, listed and revoked by its admin's session only, and
//! authenticating other services' requests within their scopes.

use chrono::{DateTime, Utc};
use domain::{
    ApiKey, ApiKeyId, ApiKeyName, ApiKeySecret, AuditAction, CreateApiKeyError, Credential, ListApiKeysError,
    Permission, RevokeApiKeyError, Scopes,
};

use super::{AuthError, OrgService, Principal, RequestContext};

/// A key an admin asks for.
#[derive(Debug, Clone)]
pub struct CreateApiKeyRequest {
    /// What the admin calls it.
    pub name: ApiKeyName,
    /// What it may do.
    pub scopes: Scopes,
    /// When it stops working, if ever; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new key and its secret, which is shown this once.
#[derive(Debug)]
pub struct CreatedApiKey {
    /// The key as stored.
    pub key: ApiKey,
    /// The key itself.
    pub secret: ApiKeySecret,
}

impl OrgService {
    pub(super) async fn issue_api_key(
        &self,
        caller: &Principal,
        request: CreateApiKeyRequest,
        context: &RequestContext,
    ) -> Result<CreatedApiKey, CreateApiKeyError> {
        caller.credential.allow(Permission::ManageApiKeys)?;
        let now = self.now();
        let expires_at = request.expires_at.map(domain::truncate_to_millis);
        ApiKey::check_expiry(expires_at, now).map_err(|_| CreateApiKeyError::ExpiryInThePast)?;
        let secret = ApiKeySecret::from_entropy(rand::random());
        let key = ApiKey {
            id: ApiKeyId::new(),
            org_id: caller.org_id,
            created_by: caller.admin_id,
            name: request.name,
            scopes: request.scopes,
            prefix: secret.shown_prefix(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        self.api_keys.create_api_key(key.clone(), secret.hash()).await?;
        tracing::info!(organization_id = %key.org_id, api_key_id = %key.id, scopes = ?key.scopes, "API key created");
        self.audit_caller(AuditAction::ApiKeyCreated, caller, context).await;
        Ok(CreatedApiKey { key, secret })
    }

    pub(super) async fn api_keys_of(&self, caller: &Principal) -> Result<Vec<ApiKey>, ListApiKeysError> {
        caller.credential.allow(Permission::ManageApiKeys)?;
        Ok(self.api_keys.list_api_keys(caller.org_id).await?)
    }

    pub(super) async fn revoke_key(
        &self,
        caller: &Principal,
        id: ApiKeyId,
        context: &RequestContext,
    ) -> Result<(), RevokeApiKeyError> {
        caller.credential.allow(Permission::ManageApiKeys)?;
        if !self.api_keys.revoke_api_key(caller.org_id, id).await? {
            return Err(RevokeApiKeyError::NotFound);
        }
        tracing::info!(organization_id = %caller.org_id, api_key_id = %id, "API key revoked");
        self.audit_caller(AuditAction::ApiKeyRevoked, caller, context).await;
        Ok(())
    }

    /// Authenticates a bearer credential with the key prefix. A malformed key is refused
    /// before any read; a known key works while it has not expired and its organization
    /// exists, and acts for the organization's admin.
    pub(super) async fn authenticate_api_key(&self, presented: &str) -> Result<Principal, AuthError> {
        let secret = ApiKeySecret::presented(presented).ok_or(AuthError::InvalidToken)?;
        let key = self.api_keys.find_api_key(&secret.hash()).await?.ok_or(AuthError::InvalidToken)?;
        let now = self.now();
        if !key.usable_at(now) {
            return Err(AuthError::InvalidToken);
        }
        let organization = self.organizations.find_by_id(key.org_id).await?.ok_or(AuthError::InvalidToken)?;
        if key.use_worth_recording(now)
            && let Err(error) = self.api_keys.record_api_key_use(key.id, now).await
        {
            // The request is authenticated either way; "last used" is a hint.
            tracing::warn!(api_key_id = %key.id, error = %error, "could not record an API key's use");
        }
        Ok(Principal {
            admin_id: organization.admin_id,
            org_id: organization.id,
            credential: Credential::ApiKey { id: key.id, scopes: key.scopes },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use domain::{ApiKeyHash, AuditEvent, CreateApiKeyError, UpdateOrgError};

    use super::super::test_support::*;
    use super::*;

    fn key_of(org: &Organization, scopes: &[&str]) -> ApiKey {
        ApiKey {
            id: ApiKeyId::new(),
            org_id: org.id,
            created_by: org.admin_id,
            name: ApiKeyName::parse("billing").expect("name"),
            scopes: Scopes::parse(scopes.iter().copied()).expect("scopes"),
            prefix: "osk_abcdef".into(),
            created_at: FixedClock.now() - chrono::Duration::days(1),
            expires_at: None,
            last_used_at: None,
        }
    }

    fn as_key(org: &Organization, scopes: &[&str]) -> Principal {
        let key = key_of(org, scopes);
        Principal {
            admin_id: org.admin_id,
            org_id: org.id,
            credential: Credential::ApiKey { id: key.id, scopes: key.scopes },
        }
    }

    fn secret() -> ApiKeySecret {
        ApiKeySecret::from_entropy([9; 32])
    }

    #[tokio::test]
    async fn a_key_authenticates_for_its_organizations_admin_and_records_its_use_sparingly() {
        let org = org("Acme");
        for (last_used, expires_in, org_exists, accepted, recorded) in [
            (None, None, true, true, true),
            (Some(30), None, true, true, false),
            (Some(61), Some(10), true, true, true),
            (None, Some(0), true, false, false),
            (None, None, false, false, false),
        ] {
            let mut m = Mocks::auditing_anything();
            let mut key = key_of(&org, &["org:read"]);
            let now = FixedClock.now();
            key.last_used_at = last_used.map(|s| now - chrono::Duration::seconds(s));
            key.expires_at = expires_in.map(|s| now + chrono::Duration::seconds(s));
            let hash = secret().hash();
            let stored = key.clone();
            m.api_keys.expect_find_api_key().with(eq(hash)).returning(move |_| Ok(Some(stored.clone())));
            let found = org.clone();
            m.orgs.expect_find_by_id().returning(move |_| Ok(org_exists.then(|| found.clone())));
            m.api_keys.expect_record_api_key_use().times(usize::from(recorded)).returning(|_, _| Ok(()));
            let result = m.service(CollectionNaming::Key).authenticate(secret().expose().expose_secret()).await;
            match result {
                Ok(principal) => {
                    assert!(accepted);
                    assert_eq!(principal.admin_id, org.admin_id);
                    assert_eq!(principal.credential, Credential::ApiKey { id: key.id, scopes: key.scopes });
                }
                Err(AuthError::InvalidToken) => assert!(!accepted, "{last_used:?} {expires_in:?} {org_exists}"),
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_malformed_key_is_refused_without_a_read_and_never_tried_as_a_token() {
        let mut m = Mocks::auditing_anything();
        m.api_keys.expect_find_api_key().never();
        m.tokens.expect_verify().never();
        let mut typo = secret().expose().expose_secret().to_owned();
        typo.pop();
        typo.push('x');
        let result = m.service(CollectionNaming::Key).authenticate(&typo).await;
        assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn only_the_admins_session_manages_keys_deletes_or_changes_credentials() {
        let org = org("Acme");
        let key = as_key(&org, &["org:read", "org:write", "audit:read"]);
        let mut m = Mocks::auditing_anything();
        m.api_keys.expect_create_api_key().never();
        m.api_keys.expect_list_api_keys().never();
        m.api_keys.expect_revoke_api_key().never();
        m.orgs.expect_delete().never();
        m.orgs.expect_update().never();
        m.sessions.expect_revoke_session().never();
        let service = m.service_with(CollectionNaming::Key, true);
        let request = CreateApiKeyRequest {
            name: ApiKeyName::parse("k").expect("name"),
            scopes: Scopes::parse(["org:read"]).expect("scopes"),
            expires_at: None,
        };
        assert!(matches!(
            service.create_api_key(&key, request, &ctx()).await,
            Err(CreateApiKeyError::Forbidden { .. })
        ));
        assert!(service.list_api_keys(&key).await.is_err());
        assert!(service.revoke_api_key(&key, ApiKeyId::new(), &ctx()).await.is_err());
        assert!(service.delete(&key, &org.name, &ctx()).await.is_err());
        assert!(service.logout(&key, &ctx()).await.is_err());
        assert!(service.rotate_credentials(&key, &ctx()).await.is_err());
        let password = UpdateOrganizationRequest::new(None, None, Some(password()));
        let result = service.update(&key, password.expect("request"), &ctx()).await;
        assert!(matches!(result, Err(UpdateOrgError::Forbidden { .. })), "{result:?}");
    }

    #[tokio::test]
    async fn a_key_does_what_its_scopes_allow_and_the_audit_trail_names_it() {
        let org = org("Acme");
        let read_only = as_key(&org, &["org:read"]);
        let writer = as_key(&org, &["org:write"]);
        let mut m = Mocks::new();
        let recorded: Arc<Mutex<Vec<AuditEvent>>> = Arc::default();
        let sink = Arc::clone(&recorded);
        m.audit.expect_record().returning(move |event| {
            sink.lock().expect("lock").push(event);
            Ok(())
        });
        m.audit.expect_events().never();
        let found = org.clone();
        m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        let admin = admin_of(&org);
        m.admins.expect_find_by_id().returning(move |_| Ok(Some(admin.clone())));
        let before = org.clone();
        m.orgs.expect_update().times(1).returning(move |_, changes| {
            let mut renamed = before.clone();
            renamed.name = changes.rename.expect("a rename").name().clone();
            Ok(renamed)
        });
        let service = m.service(CollectionNaming::Key);
        let rename =
            || UpdateOrganizationRequest::new(Some(OrganizationName::parse("Acme Two").expect("n")), None, None);
        let refused = service.update(&read_only, rename().expect("request"), &ctx()).await;
        assert!(matches!(refused, Err(UpdateOrgError::Forbidden { .. })), "{refused:?}");
        assert!(service.audit(&writer, AuditQuery { action: None, before: None, limit: 10 }).await.is_err());
        service.update(&writer, rename().expect("request"), &ctx()).await.expect("renamed");
        let events = recorded.lock().expect("lock");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].api_key_id, writer.credential.api_key());
        assert_eq!(events[0].actor_id, Some(org.admin_id));
    }

    #[tokio::test]
    async fn a_created_key_is_stored_by_its_hash_and_an_expiry_in_the_past_is_refused() {
        let org = org("Acme");
        let caller = principal(&org);
        let mut m = Mocks::auditing_anything();
        let stored: Arc<Mutex<Option<(ApiKey, ApiKeyHash)>>> = Arc::default();
        let sink = Arc::clone(&stored);
        m.api_keys.expect_create_api_key().times(1).returning(move |key, hash| {
            *sink.lock().expect("lock") = Some((key, hash));
            Ok(())
        });
        let service = m.service(CollectionNaming::Key);
        let request = |expires_at| CreateApiKeyRequest {
            name: ApiKeyName::parse("billing").expect("name"),
            scopes: Scopes::parse(["audit:read"]).expect("scopes"),
            expires_at,
        };
        let past = Some(FixedClock.now());
        let refused = service.create_api_key(&caller, request(past), &ctx()).await;
        assert!(matches!(refused, Err(CreateApiKeyError::ExpiryInThePast)), "{refused:?}");
        let created = service.create_api_key(&caller, request(None), &ctx()).await.expect("created");
        let (key, hash) = stored.lock().expect("lock").clone().expect("stored");
        assert_eq!(key, created.key);
        assert_eq!(hash, created.secret.hash());
        assert_eq!(key.org_id, org.id);
        assert!(created.secret.expose().expose_secret().starts_with(&key.prefix));
    }
}
