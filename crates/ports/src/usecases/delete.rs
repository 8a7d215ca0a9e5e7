//! Deleting the caller's organization.

use domain::{AuditAction, DeleteOrgError, OrganizationName, Permission};

use super::{OrgService, Principal, RequestContext};

impl OrgService {
    pub(super) async fn delete_organization(
        &self,
        caller: &Principal,
        name: &OrganizationName,
        context: &RequestContext,
    ) -> Result<(), DeleteOrgError> {
        caller.credential.allow(Permission::DeleteOrganization)?;
        let organization = self.organizations.find_by_key(name.key()).await?.ok_or(DeleteOrgError::NotFound)?;
        if organization.id != caller.org_id {
            return Err(DeleteOrgError::NotOwner);
        }
        self.organizations.delete(organization.id).await?;
        tracing::info!(organization_id = %organization.id, "organization deleted");
        // The organization's tokens are refused already (its existence is checked on every
        // request); revoking its sessions also ends them for good.
        self.sessions.revoke_organization_sessions(organization.id, self.now()).await?;
        self.api_keys.revoke_organization_api_keys(organization.id).await?;
        self.audit_caller(AuditAction::OrganizationDeleted, caller, context).await;
        self.audit_log.expire_events(organization.id, self.policy.audit_expiry(self.now())).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn delete_refuses_another_organization_without_deleting_anything() {
        let org = org("Acme");
        let mut m = Mocks::auditing_anything();
        let found = org.clone();
        m.orgs.expect_find_by_key().returning(move |_| Ok(Some(found.clone())));
        m.orgs.expect_delete().never();
        let caller = Principal::of_session(AdminId::new(), OrgId::new(), SessionId::new());
        let result = m.service(CollectionNaming::Key).delete(&caller, &org.name, &ctx()).await;
        assert!(matches!(result, Err(DeleteOrgError::NotOwner)), "{result:?}");
    }

    #[tokio::test]
    async fn delete_of_an_unknown_name_is_not_found() {
        let mut m = Mocks::auditing_anything();
        m.orgs.expect_find_by_key().returning(|_| Ok(None));
        m.orgs.expect_delete().never();
        let caller = Principal::of_session(AdminId::new(), OrgId::new(), SessionId::new());
        let name = OrganizationName::parse("Nobody").expect("name");
        let result = m.service(CollectionNaming::Key).delete(&caller, &name, &ctx()).await;
        assert!(matches!(result, Err(DeleteOrgError::NotFound)), "{result:?}");
    }
}
