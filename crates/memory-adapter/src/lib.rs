//! The storage ports in memory, for tests and zero-setup runs.
//!
//! All state sits behind one mutex and every operation runs in one critical section with no
//! `.await` inside, so each multi-step operation is atomic and uniqueness checks cannot race.
//! Nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use anyhow::anyhow;
use async_trait::async_trait;
use domain::{
    Admin, AdminId, CollectionName, CreateOrgError, DeleteOrgError, Email, NewOrganization, OrgId, OrgKey,
    Organization, OrganizationChanges, StoreError, UpdateOrgError,
};
use ports::{AdminRepository, OrganizationRepository, TenantStore};

/// An in-memory store of organizations, admins and tenant collections.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    organizations: HashMap<OrgId, Organization>,
    keys: HashMap<OrgKey, OrgId>,
    admins: HashMap<AdminId, Admin>,
    emails: HashMap<Email, AdminId>,
    collections: BTreeMap<CollectionName, Vec<serde_json::Value>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed, because every
        // operation checks before it writes; so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl OrganizationRepository for InMemoryStore {
    async fn create(&self, new: NewOrganization) -> Result<Organization, CreateOrgError> {
        let mut state = self.state();
        if state.keys.contains_key(new.name.key()) {
            return Err(CreateOrgError::NameTaken);
        }
        if state.emails.contains_key(&new.admin.email) {
            return Err(CreateOrgError::EmailTaken);
        }
        if state.collections.contains_key(&new.collection) {
            return Err(
                StoreError::Unknown(anyhow!("collection {} exists without an organization", new.collection)).into()
            );
        }
        let organization = Organization {
            id: new.id,
            name: new.name,
            collection: new.collection,
            admin_id: new.admin.id,
            created_at: new.created_at,
            updated_at: new.created_at,
        };
        let admin = Admin {
            id: new.admin.id,
            organization_id: new.id,
            email: new.admin.email,
            password_hash: new.admin.password_hash,
            created_at: new.created_at,
            updated_at: new.created_at,
        };
        state.keys.insert(organization.name.key().clone(), organization.id);
        state.emails.insert(admin.email.clone(), admin.id);
        state.collections.insert(organization.collection.clone(), Vec::new());
        state.admins.insert(admin.id, admin);
        state.organizations.insert(organization.id, organization.clone());
        Ok(organization)
    }

    async fn find_by_key(&self, key: &OrgKey) -> Result<Option<Organization>, StoreError> {
        let state = self.state();
        Ok(state.keys.get(key).and_then(|id| state.organizations.get(id)).cloned())
    }

    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, StoreError> {
        Ok(self.state().organizations.get(&id).cloned())
    }

    async fn update(&self, id: OrgId, changes: OrganizationChanges) -> Result<Organization, UpdateOrgError> {
        let mut state = self.state();
        let current = state.organizations.get(&id).cloned().ok_or(UpdateOrgError::NotFound)?;
        let admin = state.admins.get(&current.admin_id).cloned().ok_or(UpdateOrgError::NotFound)?;

        // Every check comes before the first write, so a refused change leaves no trace.
        if let Some(rename) = &changes.rename {
            if state.keys.get(rename.name.key()).is_some_and(|holder| *holder != id) {
                return Err(UpdateOrgError::NameTaken);
            }
            if rename.collection != current.collection && state.collections.contains_key(&rename.collection) {
                return Err(StoreError::Unknown(anyhow!(
                    "collection {} exists without an organization",
                    rename.collection
                ))
                .into());
            }
        }
        if let Some(email) = &changes.email
            && state.emails.get(email).is_some_and(|holder| *holder != admin.id)
        {
            return Err(UpdateOrgError::EmailTaken);
        }

        let mut organization = current.clone();
        if let Some(rename) = changes.rename {
            state.keys.remove(current.name.key());
            state.keys.insert(rename.name.key().clone(), id);
            if rename.collection != current.collection {
                let documents = state.collections.remove(&current.collection).unwrap_or_default();
                state.collections.insert(rename.collection.clone(), documents);
            }
            organization.name = rename.name;
            organization.collection = rename.collection;
        }
        organization.updated_at = changes.at;
        if changes.email.is_some() || changes.password_hash.is_some() {
            let mut admin = admin;
            if let Some(email) = changes.email {
                state.emails.remove(&admin.email);
                state.emails.insert(email.clone(), admin.id);
                admin.email = email;
            }
            if let Some(hash) = changes.password_hash {
                admin.password_hash = hash;
            }
            admin.updated_at = changes.at;
            state.admins.insert(admin.id, admin);
        }
        state.organizations.insert(id, organization.clone());
        Ok(organization)
    }

    async fn delete(&self, id: OrgId) -> Result<(), DeleteOrgError> {
        let mut state = self.state();
        let organization = state.organizations.remove(&id).ok_or(DeleteOrgError::NotFound)?;
        state.keys.remove(organization.name.key());
        state.collections.remove(&organization.collection);
        let admins: Vec<AdminId> = state.admins.values().filter(|a| a.organization_id == id).map(|a| a.id).collect();
        for admin_id in admins {
            if let Some(admin) = state.admins.remove(&admin_id) {
                state.emails.remove(&admin.email);
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl AdminRepository for InMemoryStore {
    async fn find_by_email(&self, email: &Email) -> Result<Option<Admin>, StoreError> {
        let state = self.state();
        Ok(state.emails.get(email).and_then(|id| state.admins.get(id)).cloned())
    }

    async fn find_by_id(&self, id: AdminId) -> Result<Option<Admin>, StoreError> {
        Ok(self.state().admins.get(&id).cloned())
    }
}

#[async_trait]
impl TenantStore for InMemoryStore {
    async fn tenant_collections(&self) -> Result<Vec<CollectionName>, StoreError> {
        Ok(self.state().collections.keys().cloned().collect())
    }

    async fn insert_documents(
        &self,
        collection: &CollectionName,
        documents: Vec<serde_json::Value>,
    ) -> Result<(), StoreError> {
        // Like MongoDB, inserting into a missing collection creates it.
        self.state().collections.entry(collection.clone()).or_default().extend(documents);
        Ok(())
    }

    async fn documents(&self, collection: &CollectionName) -> Result<Vec<serde_json::Value>, StoreError> {
        Ok(self.state().collections.get(collection).cloned().unwrap_or_default())
    }
}
