//! The use cases: create, read, log in, authenticate, update and delete organizations.
//!
//! [`OrgService`] is generic over its ports; the HTTP adapter sees it only through the
//! [`OrganizationApi`] trait so that it can be wired once at the composition root.

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use domain::{
    AdminId, CollectionName, CollectionNaming, CreateOrgError, DeleteOrgError, Email, GetOrgError,
    NewAdmin, NewOrganization, OrgId, Organization, OrganizationChanges, OrganizationName, Password,
    Rename, StoreError, UpdateOrgError,
};

use crate::{AccessToken, AdminRepository, Clock, HashError, OrganizationRepository, PasswordHasher, TokenError, TokenIssuer};

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
    async fn update(&self, caller: &Principal, request: UpdateOrganizationRequest) -> Result<OrganizationView, UpdateOrgError>;

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
    pub fn new(organizations: Arc<O>, admins: Arc<A>, hasher: H, tokens: T, clock: C, naming: CollectionNaming) -> Self {
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

    async fn update(&self, caller: &Principal, request: UpdateOrganizationRequest) -> Result<OrganizationView, UpdateOrgError> {
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
