//! Creating an organization with its admin and tenant collection.

use domain::{
    AdminId, AuditAction, AuditOutcome, CreateOrgError, Email, NewAdmin, NewOrganization, OrgId, Organization,
    OrganizationName, Password,
};

use super::{OrgService, RequestContext};

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

/// A newly created organization and its admin.
#[derive(Debug, Clone)]
pub struct CreatedOrganization {
    /// The organization.
    pub organization: Organization,
    /// Its admin's email.
    pub admin_email: Email,
}

impl OrgService {
    pub(super) async fn create_organization(
        &self,
        request: CreateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<CreatedOrganization, CreateOrgError> {
        let password_hash = self.hasher.hash(request.password).await?;
        let admin = NewAdmin { id: AdminId::new(), email: request.email.clone(), password_hash };
        let new = NewOrganization::new(OrgId::new(), request.name, self.naming, admin, self.now())
            .placed(self.placement.clone());
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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
                    CollectionNaming::Id => format!("org_{}", new.id().as_uuid().simple()),
                };
                assert_eq!(new.collection().as_str(), expected);
                assert_eq!(new.admin().password_hash, hash());
                assert_eq!(new.created_at(), FixedClock.now());
                Ok(new.into_stored().0)
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
}
