//! Reading an organization by name.

use domain::{Email, GetOrgError, Organization, OrganizationName};

use super::{OrgService, Principal};

/// An organization as a caller may see it.
#[derive(Debug, Clone)]
pub struct OrganizationView {
    /// The organization.
    pub organization: Organization,
    /// Its admin's email: present only for the organization's own admin.
    pub admin_email: Option<Email>,
}

impl OrgService {
    pub(super) async fn get_organization(
        &self,
        name: &OrganizationName,
        viewer: Option<&Principal>,
    ) -> Result<OrganizationView, GetOrgError> {
        let organization = self.organizations.find_by_key(name.key()).await?.ok_or(GetOrgError::NotFound)?;
        let admin_email = match viewer {
            // The admin's view, for the admin or for a key allowed to read the organization.
            Some(viewer)
                if viewer.org_id == organization.id
                    && viewer.credential.allow(domain::Permission::ReadOrganization).is_ok() =>
            {
                Some(self.admin_email(organization.admin_id).await?)
            }
            _ => None,
        };
        Ok(OrganizationView { organization, admin_email })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[tokio::test]
    async fn get_shows_the_admin_email_only_to_the_organizations_own_admin() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let own = principal(&org);
        let other = Principal::of_session(AdminId::new(), OrgId::new(), SessionId::new());
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
}
