//! The use cases: create, read, log in, authenticate, update and delete organizations.
//!
//! [`OrgService`] is generic over its ports; the HTTP adapter sees it only through the
//! [`OrganizationApi`] trait so that it can be wired once at the composition root.

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use domain::{
    AdminId, CollectionName, CollectionNaming, CreateOrgError, DeleteOrgError, Email, GetOrgError, NewAdmin,
    NewOrganization, OrgId, Organization, OrganizationChanges, OrganizationName, Password, Rename, StoreError,
    UpdateOrgError,
};

use crate::{
    AccessToken, AdminRepository, Clock, HashError, OrganizationRepository, PasswordHasher, TokenError, TokenIssuer,
};

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

/// A login attempt.
#[derive(Debug)]
pub struct LoginRequest {
    /// The admin's email.
    pub email: Email,
    /// The password to check.
    pub password: Password,
}

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

/// The authenticated caller of a protected use case: an admin whose token verified and who,
/// with their organization, still existed when the request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The admin.
    pub admin_id: AdminId,
    /// The admin's organization.
    pub org_id: OrgId,
}

/// A newly created organization and its admin.
#[derive(Debug, Clone)]
pub struct CreatedOrganization {
    /// The organization.
    pub organization: Organization,
    /// Its admin's email.
    pub admin_email: Email,
}

/// An organization as a caller may see it.
#[derive(Debug, Clone)]
pub struct OrganizationView {
    /// The organization.
    pub organization: Organization,
    /// Its admin's email: present only for the organization's own admin.
    pub admin_email: Option<Email>,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown email or wrong password; deliberately not told apart.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A dependency is down or saturated.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// An unexpected failure.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is invalid, or its admin or organization no longer exists.
    #[error("invalid or expired token")]
    InvalidToken,
    /// A dependency is down.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// An unexpected failure.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

macro_rules! from_infrastructure_errors {
    ($($error:ident),*) => {$(
        impl From<HashError> for $error {
            fn from(error: HashError) -> Self {
                match error {
                    HashError::Busy => Self::Unavailable(anyhow!(HashError::Busy)),
                    HashError::Failed(e) => Self::Unknown(e),
                }
            }
        }

        impl From<TokenError> for $error {
            fn from(error: TokenError) -> Self {
                Self::Unknown(anyhow!(error))
            }
        }
    )*};
}
from_infrastructure_errors!(CreateOrgError, UpdateOrgError, LoginError);

macro_rules! from_store_error {
    ($($error:ident),*) => {$(
        impl From<StoreError> for $error {
            fn from(error: StoreError) -> Self {
                match error {
                    StoreError::Unavailable(e) => Self::Unavailable(e),
                    StoreError::Unknown(e) => Self::Unknown(e),
                }
            }
        }
    )*};
}
from_store_error!(LoginError, AuthError);

/// The use cases the driving adapters (HTTP, CLI) call.
#[async_trait]
pub trait OrganizationApi: Send + Sync + 'static {
    /// Creates an organization, its admin and its tenant collection.
    async fn create(&self, request: CreateOrganizationRequest) -> Result<CreatedOrganization, CreateOrgError>;

    /// Reads an organization by name; its admin's email is shown only to its own admin.
    async fn get(&self, name: &OrganizationName, viewer: Option<&Principal>) -> Result<OrganizationView, GetOrgError>;

    /// Checks an admin's credentials and issues an access token.
    async fn login(&self, request: LoginRequest) -> Result<AccessToken, LoginError>;

    /// Verifies a token and that its admin and organization still exist.
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError>;

    /// Applies the caller's changes to their organization and admin, all or none.
    async fn update(
        &self,
        caller: &Principal,
        request: UpdateOrganizationRequest,
    ) -> Result<OrganizationView, UpdateOrgError>;

    /// Deletes the caller's organization, named to guard against deleting the wrong one.
    async fn delete(&self, caller: &Principal, name: &OrganizationName) -> Result<(), DeleteOrgError>;

    /// Checks that the store answers.
    async fn ready(&self) -> Result<(), StoreError>;
}

/// The use cases, written against the ports.
pub struct OrgService<O, A, H, T, C> {
    organizations: Arc<O>,
    admins: Arc<A>,
    hasher: H,
    tokens: T,
    clock: C,
    naming: CollectionNaming,
}

impl<O, A, H, T, C> OrgService<O, A, H, T, C>
where
    O: OrganizationRepository,
    A: AdminRepository,
    H: PasswordHasher,
    T: TokenIssuer,
    C: Clock,
{
    /// Wires the use cases to their ports.
    pub fn new(
        organizations: Arc<O>,
        admins: Arc<A>,
        hasher: H,
        tokens: T,
        clock: C,
        naming: CollectionNaming,
    ) -> Self {
        Self { organizations, admins, hasher, tokens, clock, naming }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        domain::truncate_to_millis(self.clock.now())
    }

    async fn admin_email(&self, id: AdminId) -> Result<Email, StoreError> {
        match self.admins.find_by_id(id).await? {
            Some(admin) => Ok(admin.email),
            None => Err(StoreError::Unknown(anyhow!("organization's admin {id} is missing"))),
        }
    }
}

#[async_trait]
impl<O, A, H, T, C> OrganizationApi for OrgService<O, A, H, T, C>
where
    O: OrganizationRepository,
    A: AdminRepository,
    H: PasswordHasher,
    T: TokenIssuer,
    C: Clock,
{
    async fn create(&self, request: CreateOrganizationRequest) -> Result<CreatedOrganization, CreateOrgError> {
        let id = OrgId::new();
        let collection = CollectionName::for_organization(self.naming, id, request.name.key());
        let password_hash = self.hasher.hash(request.password).await?;
        let new = NewOrganization {
            id,
            name: request.name,
            collection,
            admin: NewAdmin { id: AdminId::new(), email: request.email.clone(), password_hash },
            created_at: self.now(),
        };
        let organization = self.organizations.create(new).await?;
        tracing::info!(organization_id = %organization.id, key = %organization.name.key(), "organization created");
        Ok(CreatedOrganization { organization, admin_email: request.email })
    }

    async fn get(&self, name: &OrganizationName, viewer: Option<&Principal>) -> Result<OrganizationView, GetOrgError> {
        let organization = self.organizations.find_by_key(name.key()).await?.ok_or(GetOrgError::NotFound)?;
        let admin_email = match viewer {
            Some(viewer) if viewer.org_id == organization.id => Some(self.admin_email(organization.admin_id).await?),
            _ => None,
        };
        Ok(OrganizationView { organization, admin_email })
    }

    async fn login(&self, request: LoginRequest) -> Result<AccessToken, LoginError> {
        let admin = self.admins.find_by_email(&request.email).await?;
        // The hasher verifies against a dummy hash when there is no admin, so an unknown
        // email costs as much time as a wrong password.
        let hash = admin.as_ref().map(|a| a.password_hash.clone());
        let matches = self.hasher.verify(request.password, hash).await?;
        let Some(admin) = admin.filter(|_| matches) else {
            return Err(LoginError::InvalidCredentials);
        };
        // An admin whose organization is being created or deleted cannot log in.
        if self.organizations.find_by_id(admin.organization_id).await?.is_none() {
            return Err(LoginError::InvalidCredentials);
        }
        Ok(self.tokens.issue(admin.id, admin.organization_id, self.clock.now())?)
    }

    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = match self.tokens.verify(token, self.clock.now()) {
            Ok(claims) => claims,
            Err(TokenError::Invalid) => return Err(AuthError::InvalidToken),
            Err(TokenError::Failed(e)) => return Err(AuthError::Unknown(e)),
        };
        // A token outlives nothing it names: a deleted admin or organization ends it.
        let admin = self.admins.find_by_id(claims.admin_id).await?;
        if admin.is_none_or(|a| a.organization_id != claims.org_id) {
            return Err(AuthError::InvalidToken);
        }
        if self.organizations.find_by_id(claims.org_id).await?.is_none() {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal { admin_id: claims.admin_id, org_id: claims.org_id })
    }

    async fn update(
        &self,
        caller: &Principal,
        request: UpdateOrganizationRequest,
    ) -> Result<OrganizationView, UpdateOrgError> {
        let current = self.organizations.find_by_id(caller.org_id).await?.ok_or(UpdateOrgError::NotFound)?;
        let rename = request.name.map(|name| Rename {
            collection: CollectionName::for_organization(self.naming, current.id, name.key()),
            name,
        });
        let password_hash = match request.password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let changes = OrganizationChanges { rename, email: request.email, password_hash, at: self.now() };
        let organization = self.organizations.update(current.id, changes).await?;
        if organization.name.key() != current.name.key() {
            tracing::info!(organization_id = %organization.id, from = %current.name.key(), to = %organization.name.key(), "organization renamed");
        }
        let admin_email = self.admin_email(organization.admin_id).await?;
        Ok(OrganizationView { organization, admin_email: Some(admin_email) })
    }

    async fn delete(&self, caller: &Principal, name: &OrganizationName) -> Result<(), DeleteOrgError> {
        let organization = self.organizations.find_by_key(name.key()).await?.ok_or(DeleteOrgError::NotFound)?;
        if organization.id != caller.org_id {
            return Err(DeleteOrgError::NotOwner);
        }
        self.organizations.delete(organization.id).await?;
        tracing::info!(organization_id = %organization.id, "organization deleted");
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.organizations.ping().await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use domain::{Admin, PasswordHash};
    use mockall::predicate::{always, eq};

    use super::*;
    use crate::hasher::MockPasswordHasher;
    use crate::repository::{MockAdminRepository, MockOrganizationRepository};
    use crate::token::MockTokenIssuer;
    use crate::{AccessToken, TokenClaims};

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> chrono::DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("time")
        }
    }

    struct Mocks {
        orgs: MockOrganizationRepository,
        admins: MockAdminRepository,
        hasher: MockPasswordHasher,
        tokens: MockTokenIssuer,
    }

    impl Mocks {
        fn new() -> Self {
            Self {
                orgs: MockOrganizationRepository::new(),
                admins: MockAdminRepository::new(),
                hasher: MockPasswordHasher::new(),
                tokens: MockTokenIssuer::new(),
            }
        }

        fn service(self, naming: CollectionNaming) -> impl OrganizationApi {
            OrgService::new(Arc::new(self.orgs), Arc::new(self.admins), self.hasher, self.tokens, FixedClock, naming)
        }
    }

    fn hash() -> PasswordHash {
        PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()).expect("phc")
    }

    fn org(name: &str) -> Organization {
        let name = OrganizationName::parse(name).expect("name");
        let id = OrgId::new();
        Organization {
            id,
            collection: CollectionName::for_organization(CollectionNaming::Key, id, name.key()),
            name,
            admin_id: AdminId::new(),
            created_at: FixedClock.now(),
            updated_at: FixedClock.now(),
        }
    }

    fn admin_of(org: &Organization) -> Admin {
        Admin {
            id: org.admin_id,
            organization_id: org.id,
            email: Email::parse("a@acme.test").expect("email"),
            password_hash: hash(),
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }

    fn password() -> Password {
        Password::parse("correct horse".to_owned()).expect("password")
    }

    fn create_request(name: &str) -> CreateOrganizationRequest {
        CreateOrganizationRequest {
            name: OrganizationName::parse(name).expect("name"),
            email: Email::parse("a@acme.test").expect("email"),
            password: password(),
        }
    }

    fn access_token() -> AccessToken {
        AccessToken { token: "signed".to_owned().into(), expires_in: 900 }
    }

    #[tokio::test]
    async fn create_hashes_the_password_and_names_the_collection_by_key_or_id() {
        for naming in [CollectionNaming::Key, CollectionNaming::Id] {
            let mut m = Mocks::new();
            m.hasher.expect_hash().times(1).returning(|p| {
                assert_eq!(p.expose(), "correct horse");
                Ok(hash())
            });
            m.orgs.expect_create().times(1).returning(move |new| {
                let expected = match naming {
                    CollectionNaming::Key => "org_acme_corp".to_owned(),
                    CollectionNaming::Id => format!("org_{}", new.id.as_uuid().simple()),
                };
                assert_eq!(new.collection.as_str(), expected);
                assert_eq!(new.admin.password_hash, hash());
                assert_eq!(new.created_at, FixedClock.now());
                Ok(Organization {
                    id: new.id,
                    name: new.name,
                    collection: new.collection,
                    admin_id: new.admin.id,
                    created_at: new.created_at,
                    updated_at: new.created_at,
                })
            });
            let created = m.service(naming).create(create_request("Acme Corp")).await.expect("create");
            assert_eq!(created.admin_email.as_str(), "a@acme.test");
        }
    }

    #[tokio::test]
    async fn create_passes_the_stores_conflicts_through() {
        let mut m = Mocks::new();
        m.hasher.expect_hash().returning(|_| Ok(hash()));
        m.orgs.expect_create().returning(|_| Err(CreateOrgError::NameTaken));
        let result = m.service(CollectionNaming::Key).create(create_request("Acme")).await;
        assert!(matches!(result, Err(CreateOrgError::NameTaken)), "{result:?}");
    }

    #[tokio::test]
    async fn create_is_unavailable_when_hashing_is_saturated_and_stores_nothing() {
        let mut m = Mocks::new();
        m.hasher.expect_hash().returning(|_| Err(HashError::Busy));
        m.orgs.expect_create().never();
        let result = m.service(CollectionNaming::Key).create(create_request("Acme")).await;
        assert!(matches!(result, Err(CreateOrgError::Unavailable(_))), "{result:?}");
    }

    #[tokio::test]
    async fn login_with_an_unknown_email_still_verifies_against_a_dummy_hash() {
        let mut m = Mocks::new();
        m.admins.expect_find_by_email().returning(|_| Ok(None));
        m.hasher.expect_verify().withf(|_, hash| hash.is_none()).times(1).returning(|_, _| Ok(false));
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("nobody@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn login_with_a_wrong_password_is_refused() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let mut m = Mocks::new();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        m.hasher.expect_verify().withf(|_, hash| hash.as_ref() == Some(&self::hash())).returning(|_, _| Ok(false));
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn login_issues_a_token_naming_the_admin_and_organization_ids() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let (admin_id, org_id) = (admin.id, org.id);
        let mut m = Mocks::new();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        m.orgs.expect_find_by_id().with(eq(org_id)).returning(move |_| Ok(Some(org.clone())));
        m.tokens
            .expect_issue()
            .with(eq(admin_id), eq(org_id), always())
            .times(1)
            .returning(|_, _, _| Ok(access_token()));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let token = m.service(CollectionNaming::Key).login(request).await.expect("login");
        assert_eq!(token.expires_in, 900);
    }

    #[tokio::test]
    async fn login_to_an_organization_that_is_gone_is_refused() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let mut m = Mocks::new();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        m.orgs.expect_find_by_id().returning(|_| Ok(None));
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    fn claims(org: &Organization) -> TokenClaims {
        TokenClaims { admin_id: org.admin_id, org_id: org.id, token_id: "jti".to_owned(), expires_at: FixedClock.now() }
    }

    #[tokio::test]
    async fn authenticate_checks_that_the_admin_and_organization_still_exist() {
        let org = org("Acme");
        // Each case: does the admin exist, does it belong to the token's organization, does
        // the organization exist, and is the token then accepted.
        for (admin_exists, same_org, org_exists, accepted) in [
            (true, true, true, true),
            (false, true, true, false),
            (true, false, true, false),
            (true, true, false, false),
        ] {
            let mut m = Mocks::new();
            let token_claims = claims(&org);
            m.tokens.expect_verify().returning(move |_, _| Ok(token_claims.clone()));
            let mut admin = admin_of(&org);
            if !same_org {
                admin.organization_id = OrgId::new();
            }
            m.admins.expect_find_by_id().returning(move |_| Ok(admin_exists.then(|| admin.clone())));
            let found = org.clone();
            m.orgs.expect_find_by_id().returning(move |_| Ok(org_exists.then(|| found.clone())));
            let result = m.service(CollectionNaming::Key).authenticate("token").await;
            match result {
                Ok(principal) => {
                    assert!(accepted);
                    assert_eq!(principal, Principal { admin_id: org.admin_id, org_id: org.id });
                }
                Err(AuthError::InvalidToken) => assert!(!accepted),
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[tokio::test]
    async fn authenticate_refuses_a_bad_token_without_touching_the_store() {
        let mut m = Mocks::new();
        m.tokens.expect_verify().returning(|_, _| Err(TokenError::Invalid));
        m.admins.expect_find_by_id().never();
        m.orgs.expect_find_by_id().never();
        let result = m.service(CollectionNaming::Key).authenticate("token").await;
        assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn get_shows_the_admin_email_only_to_the_organizations_own_admin() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let own = Principal { admin_id: org.admin_id, org_id: org.id };
        let other = Principal { admin_id: AdminId::new(), org_id: OrgId::new() };
        for (viewer, shown) in [(None, false), (Some(other), false), (Some(own), true)] {
            let mut m = Mocks::new();
            let found = org.clone();
            m.orgs.expect_find_by_key().returning(move |_| Ok(Some(found.clone())));
            let admin = admin.clone();
            m.admins.expect_find_by_id().times(usize::from(shown)).returning(move |_| Ok(Some(admin.clone())));
            let view = m.service(CollectionNaming::Key).get(&org.name, viewer.as_ref()).await.expect("get");
            assert_eq!(view.admin_email.is_some(), shown);
        }
    }

    #[tokio::test]
    async fn delete_refuses_another_organization_without_deleting_anything() {
        let org = org("Acme");
        let mut m = Mocks::new();
        let found = org.clone();
        m.orgs.expect_find_by_key().returning(move |_| Ok(Some(found.clone())));
        m.orgs.expect_delete().never();
        let caller = Principal { admin_id: AdminId::new(), org_id: OrgId::new() };
        let result = m.service(CollectionNaming::Key).delete(&caller, &org.name).await;
        assert!(matches!(result, Err(DeleteOrgError::NotOwner)), "{result:?}");
    }

    #[tokio::test]
    async fn delete_of_an_unknown_name_is_not_found() {
        let mut m = Mocks::new();
        m.orgs.expect_find_by_key().returning(|_| Ok(None));
        m.orgs.expect_delete().never();
        let caller = Principal { admin_id: AdminId::new(), org_id: OrgId::new() };
        let name = OrganizationName::parse("Nobody").expect("name");
        let result = m.service(CollectionNaming::Key).delete(&caller, &name).await;
        assert!(matches!(result, Err(DeleteOrgError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn update_hashes_a_new_password_and_targets_the_new_collection() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let caller = Principal { admin_id: org.admin_id, org_id: org.id };
        let mut m = Mocks::new();
        let found = org.clone();
        m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        m.hasher.expect_hash().times(1).returning(|_| Ok(hash()));
        let current = org.clone();
        m.orgs.expect_update().times(1).returning(move |id, changes| {
            assert_eq!(id, current.id);
            let rename = changes.rename.expect("rename");
            assert_eq!(rename.collection.as_str(), "org_acme_two");
            assert_eq!(changes.password_hash, Some(hash()));
            assert_eq!(changes.email, None);
            assert_eq!(changes.at, FixedClock.now());
            Ok(Organization { name: rename.name, collection: rename.collection, ..current.clone() })
        });
        m.admins.expect_find_by_id().returning(move |_| Ok(Some(admin.clone())));
        let request = UpdateOrganizationRequest::new(
            Some(OrganizationName::parse("Acme Two").expect("name")),
            None,
            Some(password()),
        )
        .expect("request");
        let view = m.service(CollectionNaming::Key).update(&caller, request).await.expect("update");
        assert_eq!(view.organization.name.as_str(), "Acme Two");
        assert_eq!(view.admin_email.expect("email").as_str(), "a@acme.test");
    }

    #[test]
    fn an_update_must_change_something() {
        assert!(UpdateOrganizationRequest::new(None, None, None).is_none());
    }
}
