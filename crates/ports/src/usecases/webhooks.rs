//! An organization's webhook endpoints: registered, listed, removed and given new signing
//! secrets by its admin's session only (an endpoint receives the organization's events, so
//! registering one is as sensitive as reading them all), and their delivery logs.

use domain::{
    AuditAction, CreateWebhookError, Endpoint, EventFilter, ListWebhooksError, Permission, WebhookEndpointError,
    WebhookId, WebhookSecret, WebhookUrl,
};

use super::{OrgService, Principal, RequestContext};
use crate::DeliveryRecord;

/// The most endpoints one organization may register.
pub const MAX_WEBHOOKS_PER_ORGANIZATION: usize = 10;

/// How many delivery attempts the delivery log shows.
pub const DELIVERY_LOG_LENGTH: usize = 100;

/// An endpoint an admin asks for.
#[derive(Debug, Clone)]
pub struct CreateWebhookRequest {
    /// Where deliveries go, as given (checked against the deployment's endpoint policy).
    pub url: String,
    /// Which events it receives.
    pub events: EventFilter,
}

/// A new endpoint and its signing secret, which is shown this once.
#[derive(Debug)]
pub struct CreatedWebhook {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its signing secret.
    pub secret: WebhookSecret,
}

impl OrgService {
    pub(super) async fn register_webhook(
        &self,
        caller: &Principal,
        request: CreateWebhookRequest,
        context: &RequestContext,
    ) -> Result<CreatedWebhook, CreateWebhookError> {
        caller.credential.allow(Permission::ManageWebhooks)?;
        let url = WebhookUrl::parse(&request.url, self.webhook_policy)
            .map_err(|reason| CreateWebhookError::Url { reason })?;
        if self.webhooks.list_endpoints(caller.org_id).await?.len() >= MAX_WEBHOOKS_PER_ORGANIZATION {
            return Err(CreateWebhookError::TooMany { limit: MAX_WEBHOOKS_PER_ORGANIZATION });
        }
        let endpoint = Endpoint {
            id: WebhookId::new(),
            organization_id: caller.org_id,
            url,
            events: request.events,
            created_at: self.now(),
        };
        let secret = WebhookSecret::from_entropy(rand::random());
        self.webhooks.create_endpoint(&endpoint, &secret).await?;
        tracing::info!(organization_id = %caller.org_id, webhook_id = %endpoint.id, "webhook endpoint registered");
        self.audit_caller(AuditAction::WebhookCreated, caller, context).await;
        Ok(CreatedWebhook { endpoint, secret })
    }

    pub(super) async fn webhooks_of(&self, caller: &Principal) -> Result<Vec<Endpoint>, ListWebhooksError> {
        caller.credential.allow(Permission::ManageWebhooks)?;
        Ok(self.webhooks.list_endpoints(caller.org_id).await?)
    }

    pub(super) async fn remove_webhook(
        &self,
        caller: &Principal,
        id: WebhookId,
        context: &RequestContext,
    ) -> Result<(), WebhookEndpointError> {
        caller.credential.allow(Permission::ManageWebhooks)?;
        if !self.webhooks.delete_endpoint(caller.org_id, id).await? {
            return Err(WebhookEndpointError::NotFound);
        }
        tracing::info!(organization_id = %caller.org_id, webhook_id = %id, "webhook endpoint removed");
        self.audit_caller(AuditAction::WebhookDeleted, caller, context).await;
        Ok(())
    }

    pub(super) async fn rotate_webhook(
        &self,
        caller: &Principal,
        id: WebhookId,
        context: &RequestContext,
    ) -> Result<WebhookSecret, WebhookEndpointError> {
        caller.credential.allow(Permission::ManageWebhooks)?;
        let secret = WebhookSecret::from_entropy(rand::random());
        if !self.webhooks.rotate_endpoint_secret(caller.org_id, id, &secret).await? {
            return Err(WebhookEndpointError::NotFound);
        }
        tracing::info!(organization_id = %caller.org_id, webhook_id = %id, "webhook signing secret rotated");
        self.audit_caller(AuditAction::WebhookSecretRotated, caller, context).await;
        Ok(secret)
    }

    pub(super) async fn deliveries_of(
        &self,
        caller: &Principal,
        id: WebhookId,
    ) -> Result<Vec<DeliveryRecord>, WebhookEndpointError> {
        caller.credential.allow(Permission::ManageWebhooks)?;
        self.webhooks.delivery_log(caller.org_id, id, DELIVERY_LOG_LENGTH).await?.ok_or(WebhookEndpointError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use domain::{ApiKeyId, Credential, OrgId, Scopes};

    use super::super::test_support::Mocks;
    use super::*;
    use crate::OrganizationApi;

    fn session() -> Principal {
        Principal::of_session(domain::AdminId::new(), OrgId::new(), domain::SessionId::new())
    }

    fn request(url: &str) -> CreateWebhookRequest {
        CreateWebhookRequest { url: url.to_owned(), events: EventFilter::All }
    }

    #[tokio::test]
    async fn an_endpoint_is_registered_with_a_fresh_secret() {
        let mut mocks = Mocks::auditing_anything();
        mocks.webhooks.expect_list_endpoints().returning(|_| Ok(Vec::new()));
        mocks.webhooks.expect_create_endpoint().times(1).returning(|_, _| Ok(()));
        let service = mocks.service(domain::CollectionNaming::Id);
        let created = service
            .create_webhook(&session(), request("https://hooks.example.com/in"), &RequestContext::default())
            .await
            .expect("registered");
        assert_eq!(created.endpoint.url.as_str(), "https://hooks.example.com/in");
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_before_anything_is_stored() {
        let service = Mocks::auditing_anything().service(domain::CollectionNaming::Id);
        let refused = service
            .create_webhook(&session(), request("https://169.254.169.254/latest"), &RequestContext::default())
            .await;
        assert!(matches!(refused, Err(CreateWebhookError::Url { reason: domain::WebhookUrlError::InternalAddress })));
    }

    #[tokio::test]
    async fn an_api_key_cannot_manage_webhooks() {
        let service = Mocks::auditing_anything().service(domain::CollectionNaming::Id);
        let key = Principal {
            admin_id: domain::AdminId::new(),
            org_id: OrgId::new(),
            credential: Credential::ApiKey {
                id: ApiKeyId::new(),
                scopes: Scopes::parse(["org:read", "org:write", "audit:read"]).expect("scopes"),
            },
        };
        let refused =
            service.create_webhook(&key, request("https://hooks.example.com/in"), &RequestContext::default()).await;
        assert!(matches!(refused, Err(CreateWebhookError::Forbidden { .. })));
        assert!(matches!(service.list_webhooks(&key).await, Err(ListWebhooksError::Forbidden { .. })));
    }

    #[tokio::test]
    async fn an_organization_has_at_most_ten_endpoints() {
        let mut mocks = Mocks::auditing_anything();
        mocks.webhooks.expect_list_endpoints().returning(|org| {
            let endpoint = Endpoint {
                id: WebhookId::new(),
                organization_id: org,
                url: WebhookUrl::parse("https://hooks.example.com/in", domain::EndpointPolicy::default()).expect("url"),
                events: EventFilter::All,
                created_at: chrono::Utc::now(),
            };
            Ok(vec![endpoint; MAX_WEBHOOKS_PER_ORGANIZATION])
        });
        let service = mocks.service(domain::CollectionNaming::Id);
        let refused = service
            .create_webhook(&session(), request("https://hooks.example.com/in"), &RequestContext::default())
            .await;
        assert!(matches!(refused, Err(CreateWebhookError::TooMany { limit: 10 })));
    }
}
