//! Organizations and admins, and the requests that create or change them.
//!
//! Fields are public because every field type is already valid by construction: an
//! `Organization` can only hold a parsed name, a tenant collection name and real ids.

use chrono::{DateTime, Utc};

use crate::{AdminId, CollectionName, Email, OrgId, OrganizationName, PasswordHash};

/// An organization (tenant) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Immutable id.
    pub id: OrgId,
    /// Current display name; its key is unique among organizations.
    pub name: OrganizationName,
    /// The organization's own collection.
    pub collection: CollectionName,
    /// The organization's admin.
    pub admin_id: AdminId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// An organization's admin as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Immutable id.
    pub id: AdminId,
    /// The organization the admin administers.
    pub organization_id: OrgId,
    /// Login email, unique across all admins.
    pub email: Email,
    /// Argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// Everything a store needs to create an organization with its admin and collection.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    /// Id chosen for the organization.
    pub id: OrgId,
    /// Its name.
    pub name: OrganizationName,
    /// Its tenant collection, to be created.
    pub collection: CollectionName,
    /// Its first admin.
    pub admin: NewAdmin,
    /// Creation time, also the first `updated_at`.
    pub created_at: DateTime<Utc>,
}

/// The admin created with an organization.
#[derive(Debug, Clone)]
pub struct NewAdmin {
    /// Id chosen for the admin.
    pub id: AdminId,
    /// Login email.
    pub email: Email,
    /// Hash of the chosen password.
    pub password_hash: PasswordHash,
}

/// A new name for an organization and the collection that goes with it.
#[derive(Debug, Clone)]
pub struct Rename {
    /// The new name.
    pub name: OrganizationName,
    /// The collection the tenant data moves to (the same one under id naming).
    pub collection: CollectionName,
}

/// Changes to an organization and its admin, applied all together or not at all.
#[derive(Debug, Clone)]
pub struct OrganizationChanges {
    /// A new name, if any.
    pub rename: Option<Rename>,
    /// A new admin email, if any.
    pub email: Option<Email>,
    /// A new admin password hash, if any.
    pub password_hash: Option<PasswordHash>,
    /// When the change happens.
    pub at: DateTime<Utc>,
}

impl OrganizationChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.rename.is_none() && self.email.is_none() && self.password_hash.is_none()
    }
}
