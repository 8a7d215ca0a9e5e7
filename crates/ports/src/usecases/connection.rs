//! Telling an organization's own admin where its data lives and how to reach it.

use domain::{GetOrgError, TenantLocation};

use super::{OrgService, Principal};

impl OrgService {
    pub(super) async fn connection_details(&self, caller: &Principal) -> Result<TenantLocation, GetOrgError> {
        let organization = self.organizations.find_by_id(caller.org_id).await?.ok_or(GetOrgError::NotFound)?;
        Ok(self.organizations.location(&organization))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn the_caller_gets_the_location_of_its_own_organization() {
        let org = org("Acme");
        let mut m = Mocks::auditing_anything();
        let found = org.clone();
        m.orgs.expect_find_by_id().with(eq(org.id)).returning(move |_| Ok(Some(found.clone())));
        let expected = TenantLocation {
            placement: org.placement.clone(),
            uri: "mongodb://db.example/".to_owned(),
            database: "tenants".to_owned(),
            collection: org.collection.to_string(),
            tenant_filter: None,
        };
        let location = expected.clone();
        m.orgs.expect_location().withf(move |o| o.id == org.id).returning(move |_| location.clone());
        let details = m.service(CollectionNaming::Key).connection(&principal(&org)).await.expect("connection");
        assert_eq!(details, expected);
    }
}
