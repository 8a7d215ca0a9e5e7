//! Updating an organization and its admin, all or nothing.

use domain::{AuditAction, Email, OrganizationChanges, OrganizationName, Password, Permission, Rename, UpdateOrgError};

use super::{OrgService, OrganizationView, Principal, RequestContext};

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

impl OrgService {
    pub(super) async fn update_organization(
        &self,
        caller: &Principal,
        request: UpdateOrganizationRequest,
        context: &RequestContext,
    ) -> Result<OrganizationView, UpdateOrgError> {
        if request.name.is_some() {
            caller.credential.allow(Permission::RenameOrganization)?;
        }
        if request.email.is_some() || request.password.is_some() {
            caller.credential.allow(Permission::ChangeAdminCredentials)?;
        }
        let current = self.organizations.find_by_id(caller.org_id).await?.ok_or(UpdateOrgError::NotFound)?;
        let before = self.admins.find_by_id(current.admin_id).await?.ok_or(UpdateOrgError::NotFound)?;
        let rename = request.name.map(|name| Rename::new(current.id, name, self.naming));
        let password_hash = match request.password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        // An email equal to the current one is no change (no session ends, nothing is
        // audited, the store is not asked to write it).
        let email = request.email.filter(|e| *e != before.email);
        let email_changes = email.is_some();
        let credentials_change = email_changes || password_hash.is_some();
        if credentials_change {
            // Other sessions end before the change rather than after it: if the change then
            // fails, they were ended for nothing, but never does a changed credential leave
            // another session alive.
            self.sessions.revoke_admin_sessions(caller.admin_id, caller.credential.session(), self.now()).await?;
        }
        let changes_password = password_hash.is_some();
        let changes = OrganizationChanges { rename, email, password_hash, at: self.now() };
        let organization = self.organizations.update(current.id, changes).await?;
        if organization.name.key() != current.name.key() {
            tracing::info!(organization_id = %organization.id, from = %current.name.key(), to = %organization.name.key(), "organization renamed");
        }
        if organization.name != current.name {
            self.audit_caller(AuditAction::OrganizationRenamed, caller, context).await;
        }
        if email_changes {
            self.audit_caller(AuditAction::AdminEmailChanged, caller, context).await;
        }
        if changes_password {
            self.audit_caller(AuditAction::AdminPasswordChanged, caller, context).await;
        }
        let admin_email = self.admin_email(organization.admin_id).await?;
        Ok(OrganizationView { organization, admin_email: Some(admin_email) })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
            .with(eq(caller.admin_id), eq(caller.credential.session()), always())
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(()));
        let current = org.clone();
        m.orgs.expect_update().times(1).in_sequence(&mut order).returning(move |id, changes| {
            assert_eq!(id, current.id);
            let rename = changes.rename.expect("rename");
            assert_eq!(rename.collection().as_str(), "org_acme_two");
            assert_eq!(changes.password_hash, Some(hash()));
            assert_eq!(changes.email, None);
            assert_eq!(changes.at, FixedClock.now());
            let (name, collection) = rename.into_parts();
            Ok(Organization { name, collection, ..current.clone() })
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

    #[test]
    fn an_update_must_change_something() {
        assert!(UpdateOrganizationRequest::new(None, None, None).is_none());
    }
}
