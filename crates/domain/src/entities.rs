//! Organizations and admins, and the requests that create or change them.
//!
//! Fields of stored values are public because every field type is already valid by
//! construction: an `Organization` can only hold a parsed name, a tenant collection name
//! and real ids. The requests that create or rename keep their fields private, because
//! their name and collection must belong together.

use chrono::{DateTime, Utc};

use crate::{AdminId, CollectionName, CollectionNaming, Email, OrgId, OrganizationName, PasswordHash, Placement};

/// An organization (tenant) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Immutable id.
    pub id: OrgId,
    /// Current display name; its key is unique among organizations.
    pub name: OrganizationName,
    /// The organization's own collection (under the `shared` placement, the name it would
    /// have, kept so that the API's `collection_name` stays stable).
    pub collection: CollectionName,
    /// Where its data lives.
    pub placement: Placement,
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

/// Everything a store needs to create an organization with its admin and collection. Its
/// collection is derived from its id and name when it is built, so the two cannot
/// disagree.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    id: OrgId,
    name: OrganizationName,
    collection: CollectionName,
    placement: Placement,
    admin: NewAdmin,
    created_at: DateTime<Utc>,
}

impl NewOrganization {
    /// A new organization named `name`, its tenant collection named as `naming` says.
    pub fn new(
        id: OrgId,
        name: OrganizationName,
        naming: CollectionNaming,
        admin: NewAdmin,
        created_at: DateTime<Utc>,
    ) -> Self {
        let collection = CollectionName::for_organization(naming, id, name.key());
        Self { id, name, collection, placement: Placement::default(), admin, created_at }
    }

    /// The same organization placed elsewhere than the default (a collection on the main
    /// cluster).
    pub fn placed(self, placement: Placement) -> Self {
        Self { placement, ..self }
    }

    /// Where its data is to live.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The id chosen for the organization.
    pub fn id(&self) -> OrgId {
        self.id
    }

    /// Its name.
    pub fn name(&self) -> &OrganizationName {
        &self.name
    }

    /// Its tenant collection, to be created.
    pub fn collection(&self) -> &CollectionName {
        &self.collection
    }

    /// Its first admin.
    pub fn admin(&self) -> &NewAdmin {
        &self.admin
    }

    /// Creation time, also the first `updated_at`.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// The organization and its admin as they are once stored.
    pub fn into_stored(self) -> (Organization, Admin) {
        let organization = Organization {
            id: self.id,
            name: self.name,
            collection: self.collection,
            placement: self.placement,
            admin_id: self.admin.id,
            created_at: self.created_at,
            updated_at: self.created_at,
        };
        let admin = Admin {
            id: self.admin.id,
            organization_id: self.id,
            email: self.admin.email,
            password_hash: self.admin.password_hash,
            created_at: self.created_at,
            updated_at: self.created_at,
        };
        (organization, admin)
    }
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

/// A new name for an organization and the collection that goes with it, derived from the
/// organization's id and the name when it is built.
#[derive(Debug, Clone)]
pub struct Rename {
    name: OrganizationName,
    collection: CollectionName,
}

impl Rename {
    /// Renames organization `id` to `name`, its collection named as `naming` says (the same
    /// collection as before under id naming).
    pub fn new(id: OrgId, name: OrganizationName, naming: CollectionNaming) -> Self {
        let collection = CollectionName::for_organization(naming, id, name.key());
        Self { name, collection }
    }

    /// The new name.
    pub fn name(&self) -> &OrganizationName {
        &self.name
    }

    /// The collection the tenant data moves to.
    pub fn collection(&self) -> &CollectionName {
        &self.collection
    }

    /// The new name and collection, taken apart.
    pub fn into_parts(self) -> (OrganizationName, CollectionName) {
        (self.name, self.collection)
    }
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
