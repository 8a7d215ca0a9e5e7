//! The storage ports. Each multi-step operation (create, update with a rename, delete) is
//! one method, so that an adapter can make it atomic, race-safe and crash-safe in whatever
//! way its store allows; callers never sequence the steps themselves.

use async_trait::async_trait;
use domain::{
    Admin, AdminId, CollectionName, CreateOrgError, DeleteOrgError, Email, NewOrganization, OrgId, OrgKey,
    Organization, OrganizationChanges, StoreError, UpdateOrgError,
};

/// Organizations, with their admins and tenant collections as far as their lifecycle goes.
///
/// Only committed, active organizations are visible to the finders: one being created,
/// renamed (under its new name) or deleted is not.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait OrganizationRepository: Send + Sync + 'static {
    /// Stores the organization and its admin and creates its tenant collection, all of them
    /// or none. Fails with `NameTaken` if any organization holds the name's key, and with
    /// `EmailTaken` if any admin holds the email.
    async fn create(&self, new: NewOrganization) -> Result<Organization, CreateOrgError>;

    /// The active organization with this key.
    async fn find_by_key(&self, key: &OrgKey) -> Result<Option<Organization>, StoreError>;

    /// The active organization with this id.
    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, StoreError>;

    /// Applies every change to the organization and its admin, or none of them. A rename
    /// moves the tenant collection with all its documents; it never overwrites another
    /// collection, and a name whose key another organization holds is `NameTaken`.
    async fn update(&self, id: OrgId, changes: OrganizationChanges) -> Result<Organization, UpdateOrgError>;

    /// Drops the tenant collection and removes the admins and the organization. From the
    /// moment it starts, the organization is invisible to the finders.
    async fn delete(&self, id: OrgId) -> Result<(), DeleteOrgError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Admins, looked up for logins and for every authenticated request.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait AdminRepository: Send + Sync + 'static {
    /// The admin with this email.
    async fn find_by_email(&self, email: &Email) -> Result<Option<Admin>, StoreError>;

    /// The admin with this id.
    async fn find_by_id(&self, id: AdminId) -> Result<Option<Admin>, StoreError>;
}

/// Direct access to tenant collections, for operators and tests: the service itself never
/// reads tenant data.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Every tenant collection (`org_*`) that exists, sorted.
    async fn tenant_collections(&self) -> Result<Vec<CollectionName>, StoreError>;

    /// Inserts documents into a tenant collection.
    async fn insert_documents(
        &self,
        collection: &CollectionName,
        documents: Vec<serde_json::Value>,
    ) -> Result<(), StoreError>;

    /// Every document of a tenant collection, in insertion order, without store-generated
    /// fields other than those inserted.
    async fn documents(&self, collection: &CollectionName) -> Result<Vec<serde_json::Value>, StoreError>;
}
