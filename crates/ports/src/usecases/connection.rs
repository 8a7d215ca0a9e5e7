//! Telling an organization's own admin where its data lives and how to reach it, and giving
//! it database credentials of its own where its placement isolates them.

use domain::{
    AuditAction, CredentialsError, DatabaseCredentials, DatabasePassword, GetOrgError, Permission, TenantLocation,
};

use super::{OrgService, Principal, RequestContext};

impl OrgService {
    pub(super) async fn connection_details(&self, caller: &Principal) -> Result<TenantLocation, GetOrgError> {
        caller.credential.allow(Permission::ReadOrganization)?;
        let organization = self.organizations.find_by_id(caller.org_id).await?.ok_or(GetOrgError::NotFound)?;
        Ok(self.organizations.location(&organization))
    }

    pub(super) async fn rotate_database_credentials(
        &self,
        caller: &Principal,
        context: &RequestContext,
    ) -> Result<DatabaseCredentials, CredentialsError> {
        caller.credential.allow(Permission::RotateDatabaseCredentials)?;
        if !self.tenant_credentials {
            return Err(CredentialsError::Disabled);
        }
        let organization = self.organizations.find_by_id(caller.org_id).await?.ok_or(CredentialsError::NotFound)?;
        if !organization.placement.isolates_database_users() {
            return Err(CredentialsError::NotIsolated { placement: organization.placement.kind });
        }
        // 256 random bits, hex-encoded like refresh tokens: nothing a connection string
        // would need to escape.
        let bytes: [u8; 32] = rand::random();
        let password = DatabasePassword::from_generated(hex::encode(bytes))
            .map_err(|e| CredentialsError::Unknown(anyhow::anyhow!(e)))?;
        let user = self.organizations.set_database_user(&organization, &password).await?;
        self.audit_caller(AuditAction::DatabaseCredentialsRotated, caller, context).await;
        Ok(DatabaseCredentials { user, password })
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

    fn placed(kind: domain::PlacementKind) -> Organization {
        let mut org = org("Acme");
        org.placement.kind = kind;
        org
    }

    #[tokio::test]
    async fn credentials_are_set_for_the_database_placement_with_a_fresh_password_each_time() {
        let org = placed(domain::PlacementKind::Database);
        let mut m = Mocks::new();
        let found = org.clone();
        m.orgs.expect_find_by_id().with(eq(org.id)).returning(move |_| Ok(Some(found.clone())));
        let passwords = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&passwords);
        m.orgs.expect_set_database_user().times(2).returning(move |o, password| {
            seen.lock().expect("lock").push(password.expose().to_owned());
            Ok(domain::DatabaseUser::of(o.id))
        });
        m.audit
            .expect_record()
            .withf(|e| e.action == AuditAction::DatabaseCredentialsRotated && e.outcome == AuditOutcome::Success)
            .times(2)
            .returning(|_| Ok(()));
        let service = m.service_with(CollectionNaming::Key, true);
        let first = service.rotate_credentials(&principal(&org), &RequestContext::default()).await.expect("first");
        let second = service.rotate_credentials(&principal(&org), &RequestContext::default()).await.expect("second");
        assert_eq!(first.user, domain::DatabaseUser::of(org.id));
        assert_eq!(first.user, second.user);
        assert_ne!(first.password.expose(), second.password.expose());
        assert!(first.password.expose().len() >= domain::MIN_DATABASE_PASSWORD_CHARS);
        assert_eq!(*passwords.lock().expect("lock"), [first.password.expose(), second.password.expose()]);
    }

    #[tokio::test]
    async fn other_placements_and_a_disabled_setting_get_no_credentials() {
        for kind in [domain::PlacementKind::Collection, domain::PlacementKind::Shared] {
            let org = placed(kind);
            let mut m = Mocks::new();
            let found = org.clone();
            m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
            m.orgs.expect_set_database_user().never();
            let result = m
                .service_with(CollectionNaming::Key, true)
                .rotate_credentials(&principal(&org), &Default::default())
                .await;
            assert!(
                matches!(result, Err(CredentialsError::NotIsolated { placement }) if placement == kind),
                "{result:?}"
            );
        }
        let org = placed(domain::PlacementKind::Database);
        let mut m = Mocks::new();
        m.orgs.expect_find_by_id().never();
        m.orgs.expect_set_database_user().never();
        let result = m.service(CollectionNaming::Key).rotate_credentials(&principal(&org), &Default::default()).await;
        assert!(matches!(result, Err(CredentialsError::Disabled)), "{result:?}");
    }
}
