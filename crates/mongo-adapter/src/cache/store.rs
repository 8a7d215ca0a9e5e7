//! The MongoDB store behind the cache: the same ports, with the hot lookups answered from
//! memory and every write evicting what it changed before it answers.

use std::sync::Arc;
#[cfg(feature = "test-support")]
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Admin, AdminId, ApiKey, ApiKeyHash, ApiKeyId, AuditEvent, CollectionName, CreateOrgError, DatabasePassword,
    DatabaseUser, DeleteOrgError, Email, LoginThrottle, NewOrganization, OrgId, OrgKey, Organization,
    OrganizationChanges, PasswordHash, Session, SessionId, StoreError, TenantLocation, UpdateOrgError,
};
use ports::{
    AccountLockout, AdminRepository, ApiKeyRepository, AuditLog, AuditQuery, Clock, NewSession, OrganizationRepository,
    RefreshHash, SessionRepository, StoredSession, StoredThrottle, TenantStore, ThrottleKey,
};

use super::watch::{self, Opened};
use super::{CacheSettings, CacheSnapshot, Key, MasterCache, Value};
use crate::MongoStore;

/// The MongoDB store with the organization cache in front of it (see the [module
/// documentation](crate::cache)). Dropping it stops following the change stream.
pub struct CachedStore {
    inner: Arc<MongoStore>,
    cache: Arc<MasterCache>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Drop for CachedStore {
    fn drop(&mut self) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
    }
}

impl CachedStore {
    /// Puts the cache in front of `store`, with entries timed by `clock`, and starts
    /// following the master database's change stream where the server has one.
    pub async fn start(store: Arc<MongoStore>, settings: &CacheSettings, clock: Arc<dyn Clock>) -> Self {
        let cache = Arc::new(MasterCache::new(settings, clock));
        let follower = match watch::start(store.master()).await {
            Opened::Unsupported => {
                tracing::info!(ttl = ?settings.ttl, "no change streams: cached entries are trusted for the TTL only");
                None
            }
            Opened::Stream(stream) => {
                cache.follow_stream();
                Some(tokio::spawn(watch::follow(Arc::clone(&cache), store.master().clone(), stream)))
            }
        };
        Self { inner: store, cache, follower }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &Arc<MongoStore> {
        &self.inner
    }

    /// How the cache has done so far.
    pub fn stats(&self) -> CacheSnapshot {
        self.cache.snapshot()
    }

    /// Whether a change stream keeps the cache coherent (on a replica set or sharded
    /// cluster), rather than the TTL alone.
    pub fn follows_changes(&self) -> bool {
        self.follower.is_some()
    }

    /// Stops following the change stream as a hung connection would, without telling the
    /// cache: for the tests that check a silent stream is not trusted.
    #[cfg(feature = "test-support")]
    pub fn stall_change_stream(&mut self) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
    }

    /// Makes the stream's next reopening resume from a token the server never issued, as if
    /// its position had fallen off the oplog while it was away: for the test of the reset.
    #[cfg(feature = "test-support")]
    pub fn forget_stream_position(&self) {
        self.cache.forget_position.store(true, Ordering::Release);
    }

    /// The organization cached under `id`, if it may be used.
    fn cached_org(&self, id: OrgId) -> Option<Arc<Organization>> {
        match self.cache.get(&Key::Org(id)) {
            Some(Value::Org(org)) => Some(org),
            _ => None,
        }
    }

    /// A lookup through the cache: `cached` when the cache had a usable answer, otherwise
    /// the database's answer to `read`, stored under the keys `answers` gives unless
    /// something was evicted while it was read (the ticket is taken before the read starts).
    async fn read_through<T, Read>(
        &self,
        cached: Option<T>,
        read: impl FnOnce() -> Read,
        answers: impl FnOnce(&T) -> Vec<(Key, Value)>,
    ) -> Result<Option<T>, StoreError>
    where
        Read: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        if let Some(found) = cached {
            self.cache.hit();
            return Ok(Some(found));
        }
        self.cache.miss();
        let ticket = self.cache.ticket();
        let found = read().await?;
        if let Some(found) = &found {
            self.cache.fill(ticket, answers(found));
        }
        Ok(found)
    }

    /// Forgets an organization, its admin and its sessions.
    fn evict_organization(&self, id: OrgId) {
        self.cache.evict([Key::Org(id)]);
        self.cache.evict_where(move |value| match value {
            Value::Admin(admin) => admin.organization_id == id,
            Value::Session(session) => session.0.org_id == id,
            Value::ApiKey(key) => key.org_id == id,
            _ => false,
        });
    }
}

#[async_trait]
impl OrganizationRepository for CachedStore {
    async fn create(&self, new: NewOrganization) -> Result<Organization, CreateOrgError> {
        // A new organization was never cached: misses are not.
        self.inner.create(new).await
    }

    async fn find_by_key(&self, key: &OrgKey) -> Result<Option<Organization>, StoreError> {
        // The key may have moved to another organization since it was cached: the
        // organization's own name says.
        let cached = match self.cache.get(&Key::OrgKey(key.clone())) {
            Some(Value::OrgIdOf(id)) => self.cached_org(id).filter(|org| org.name.key() == key),
            _ => None,
        };
        self.read_through(
            cached.map(|org| (*org).clone()),
            || self.inner.find_by_key(key),
            |org| {
                vec![
                    (Key::OrgKey(key.clone()), Value::OrgIdOf(org.id)),
                    (Key::Org(org.id), Value::Org(Arc::new(org.clone()))),
                ]
            },
        )
        .await
    }

    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, StoreError> {
        let cached = self.cached_org(id).map(|org| (*org).clone());
        self.read_through(
            cached,
            || OrganizationRepository::find_by_id(&*self.inner, id),
            |org| vec![(Key::Org(id), Value::Org(Arc::new(org.clone())))],
        )
        .await
    }

    async fn update(&self, id: OrgId, changes: OrganizationChanges) -> Result<Organization, UpdateOrgError> {
        let updated = self.inner.update(id, changes).await;
        // The admin's email or password may have changed with it.
        self.cache.evict([Key::Org(id)]);
        if let Ok(org) = &updated {
            self.cache.evict([Key::Admin(org.admin_id)]);
        }
        updated
    }

    async fn delete(&self, id: OrgId) -> Result<(), DeleteOrgError> {
        // Invisible from the moment the delete starts, on this instance at once.
        self.evict_organization(id);
        let deleted = self.inner.delete(id).await;
        self.evict_organization(id);
        deleted
    }

    async fn list(&self) -> Result<Vec<Organization>, StoreError> {
        self.inner.list().await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn location(&self, org: &Organization) -> TenantLocation {
        self.inner.location(org)
    }

    async fn set_database_user(
        &self,
        org: &Organization,
        password: &DatabasePassword,
    ) -> Result<DatabaseUser, StoreError> {
        self.inner.set_database_user(org, password).await
    }
}

#[async_trait]
impl AdminRepository for CachedStore {
    async fn find_by_email(&self, email: &Email) -> Result<Option<Admin>, StoreError> {
        // Only logins look admins up by email, and they hash a password anyway.
        self.inner.find_by_email(email).await
    }

    async fn find_by_id(&self, id: AdminId) -> Result<Option<Admin>, StoreError> {
        let cached = match self.cache.get(&Key::Admin(id)) {
            Some(Value::Admin(admin)) => Some((*admin).clone()),
            _ => None,
        };
        self.read_through(
            cached,
            || AdminRepository::find_by_id(&*self.inner, id),
            |admin| vec![(Key::Admin(id), Value::Admin(Arc::new(admin.clone())))],
        )
        .await
    }
}

#[async_trait]
impl SessionRepository for CachedStore {
    async fn create_session(&self, new: NewSession) -> Result<(), StoreError> {
        self.inner.create_session(new).await
    }

    async fn find_by_refresh(&self, presented: &RefreshHash) -> Result<Option<StoredSession>, StoreError> {
        self.inner.find_by_refresh(presented).await
    }

    async fn find_session(&self, id: SessionId) -> Result<Option<(Session, bool)>, StoreError> {
        let cached = match self.cache.get(&Key::Session(id)) {
            Some(Value::Session(session)) => Some((*session).clone()),
            _ => None,
        };
        self.read_through(
            cached,
            || self.inner.find_session(id),
            |session| vec![(Key::Session(id), Value::Session(Arc::new(session.clone())))],
        )
        .await
    }

    async fn save_rotation(
        &self,
        id: SessionId,
        expected_current: &RefreshHash,
        replacement: &RefreshHash,
        previous: Option<(RefreshHash, DateTime<Utc>)>,
    ) -> Result<bool, StoreError> {
        // A rotation changes the refresh hashes, which the cache does not hold.
        self.inner.save_rotation(id, expected_current, replacement, previous).await
    }

    async fn revoke_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let revoked = self.inner.revoke_session(id, now).await;
        self.cache.evict([Key::Session(id)]);
        revoked
    }

    async fn revoke_admin_sessions(
        &self,
        admin: AdminId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let revoked = self.inner.revoke_admin_sessions(admin, except, now).await;
        self.cache.evict_where(move |value| matches!(value, Value::Session(s) if s.0.admin_id == admin));
        revoked
    }

    async fn revoke_organization_sessions(&self, org: OrgId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let revoked = self.inner.revoke_organization_sessions(org, now).await;
        self.cache.evict_where(move |value| matches!(value, Value::Session(s) if s.0.org_id == org));
        revoked
    }
}

#[async_trait]
impl AccountLockout for CachedStore {
    async fn load_throttle(&self, key: &ThrottleKey) -> Result<Option<StoredThrottle>, StoreError> {
        self.inner.load_throttle(key).await
    }

    async fn save_throttle(
        &self,
        key: &ThrottleKey,
        next: &LoginThrottle,
        expected: Option<u64>,
        forget_after: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.save_throttle(key, next, expected, forget_after).await
    }

    async fn upgrade_password_hash(
        &self,
        admin: AdminId,
        current: &PasswordHash,
        upgraded: PasswordHash,
    ) -> Result<bool, StoreError> {
        let upgraded = self.inner.upgrade_password_hash(admin, current, upgraded).await;
        self.cache.evict([Key::Admin(admin)]);
        upgraded
    }
}

#[async_trait]
impl ApiKeyRepository for CachedStore {
    async fn create_api_key(&self, key: ApiKey, hash: ApiKeyHash) -> Result<(), StoreError> {
        // A new key was never cached: misses are not.
        self.inner.create_api_key(key, hash).await
    }

    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError> {
        let cached = match self.cache.get(&Key::ApiKeyByHash(hash.clone())) {
            Some(Value::ApiKeyIdOf(id)) => match self.cache.get(&Key::ApiKeyById(id)) {
                Some(Value::ApiKey(key)) => Some((*key).clone()),
                _ => None,
            },
            _ => None,
        };
        self.read_through(
            cached,
            || self.inner.find_api_key(hash),
            |key| {
                vec![
                    (Key::ApiKeyByHash(hash.clone()), Value::ApiKeyIdOf(key.id)),
                    (Key::ApiKeyById(key.id), Value::ApiKey(Arc::new(key.clone()))),
                ]
            },
        )
        .await
    }

    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.list_api_keys(org).await
    }

    async fn revoke_api_key(&self, org: OrgId, id: ApiKeyId) -> Result<bool, StoreError> {
        let revoked = self.inner.revoke_api_key(org, id).await;
        self.cache.evict([Key::ApiKeyById(id)]);
        revoked
    }

    async fn revoke_organization_api_keys(&self, org: OrgId) -> Result<(), StoreError> {
        let revoked = self.inner.revoke_organization_api_keys(org).await;
        self.cache.evict_where(move |value| matches!(value, Value::ApiKey(key) if key.org_id == org));
        revoked
    }

    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let recorded = self.inner.record_api_key_use(id, at).await;
        // The next lookup reads the new time, so the use is not recorded again at once.
        self.cache.evict([Key::ApiKeyById(id)]);
        recorded
    }
}

// Webhooks are read by the delivery workers only, never on a request's hot path: nothing
// of them is cached.
#[async_trait]
impl ports::WebhookRepository for CachedStore {
    async fn create_endpoint(
        &self,
        endpoint: &domain::Endpoint,
        secret: &domain::WebhookSecret,
    ) -> Result<(), StoreError> {
        self.inner.create_endpoint(endpoint, secret).await
    }

    async fn list_endpoints(&self, org: OrgId) -> Result<Vec<domain::Endpoint>, StoreError> {
        self.inner.list_endpoints(org).await
    }

    async fn delete_endpoint(&self, org: OrgId, id: domain::WebhookId) -> Result<bool, StoreError> {
        self.inner.delete_endpoint(org, id).await
    }

    async fn rotate_endpoint_secret(
        &self,
        org: OrgId,
        id: domain::WebhookId,
        secret: &domain::WebhookSecret,
    ) -> Result<bool, StoreError> {
        self.inner.rotate_endpoint_secret(org, id, secret).await
    }

    async fn delivery_log(
        &self,
        org: OrgId,
        id: domain::WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<ports::DeliveryRecord>>, StoreError> {
        self.inner.delivery_log(org, id, limit).await
    }

    async fn next_delivery(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<ports::DeliveryTask>, StoreError> {
        self.inner.next_delivery(now, lease).await
    }

    async fn finish_delivery(
        &self,
        task: &ports::DeliveryTask,
        record: Option<ports::DeliveryRecord>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.finish_delivery(task, record, now).await
    }
}

#[async_trait]
impl AuditLog for CachedStore {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.inner.record(event).await
    }

    async fn events(&self, org: OrgId, query: AuditQuery, now: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.events(org, query, now).await
    }

    async fn expire_events(&self, org: OrgId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.expire_events(org, at).await
    }
}

#[async_trait]
impl TenantStore for CachedStore {
    async fn tenant_collections(&self) -> Result<Vec<CollectionName>, StoreError> {
        self.inner.tenant_collections().await
    }

    async fn insert_documents(&self, org: &Organization, documents: Vec<serde_json::Value>) -> Result<(), StoreError> {
        self.inner.insert_documents(org, documents).await
    }

    async fn documents(&self, org: &Organization) -> Result<Vec<serde_json::Value>, StoreError> {
        self.inner.documents(org).await
    }
}
