//! The storage ports in memory, for tests and zero-setup runs.
//!
//! All state sits behind one mutex and every operation runs in one critical section with no
//! `.await` inside, so each multi-step operation is atomic and uniqueness checks cannot race.
//! Nothing survives the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Admin, AdminId, ApiKey, ApiKeyHash, ApiKeyId, AuditEvent, CollectionName, CreateOrgError, DatabasePassword,
    DatabaseUser, DeleteOrgError, Email, Endpoint, Event, EventId, LoginThrottle, MessageId, NewOrganization, NextStep,
    OrgId, OrgKey, Organization, OrganizationChanges, PasswordHash, Placement, PlacementKind, RefreshState, Session,
    SessionId, Skeleton, StoreError, TenantLocation, UpdateOrgError, WebhookId, WebhookSecret,
};
use ports::{
    AccountLockout, AdminRepository, ApiKeyRepository, AuditLog, AuditQuery, DeliveryRecord, DeliveryTask, NewSession,
    OrganizationRepository, REMEMBERED_ROTATIONS, RefreshHash, SessionRepository, StoredSession, StoredThrottle,
    TenantStore, ThrottleKey, WebhookRepository,
};
use secrecy::ExposeSecret;

/// Throttles kept before forgotten ones are swept out.
const MAX_THROTTLES_BEFORE_SWEEP: usize = 10_000;

/// The name the memory store gives its shared tenant database in locations.
const MEMORY_TENANT_DATABASE: &str = "tenants";

/// An in-memory store of organizations, admins and tenant collections.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
    /// A placement every new organization gets whatever it asked for, so that suites
    /// written for the default placement run on every placement.
    forced_placement: Option<Placement>,
}

#[derive(Debug, Default)]
struct State {
    organizations: HashMap<OrgId, Organization>,
    keys: HashMap<OrgKey, OrgId>,
    /// The look-alike skeletons of every key, which are unique like the keys.
    skeletons: HashMap<Skeleton, OrgId>,
    admins: HashMap<AdminId, Admin>,
    emails: HashMap<Email, AdminId>,
    collections: BTreeMap<CollectionName, Vec<serde_json::Value>>,
    /// The documents of organizations placed `shared`, by organization: no collection of
    /// their own, as in the shared collection on MongoDB.
    shared: HashMap<OrgId, Vec<serde_json::Value>>,
    /// The organizations that have a database user: its name only, since the memory store
    /// has no database to authenticate against and keeps no password.
    database_users: HashMap<OrgId, DatabaseUser>,
    throttles: HashMap<ThrottleKey, StoredThrottleEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    refresh_hashes: HashMap<RefreshHash, SessionId>,
    events: BTreeMap<EventId, StoredEvent>,
    api_keys: HashMap<ApiKeyId, ApiKey>,
    api_key_hashes: HashMap<ApiKeyHash, ApiKeyId>,
    /// Each organization's published events, in commit order.
    published: HashMap<OrgId, Published>,
    webhooks: HashMap<WebhookId, WebhookEntry>,
}

/// An organization's events: the sequence numbers run on from `first`, and events every
/// endpoint is done with are dropped.
#[derive(Debug)]
struct Published {
    /// The sequence number of `events[0]` (numbers start at 1).
    first: u64,
    events: VecDeque<Event>,
}

impl Published {
    /// The sequence number of the latest event (0 before any).
    fn head(&self) -> u64 {
        self.first + self.events.len() as u64 - 1
    }

    fn get(&self, seq: u64) -> Option<&Event> {
        seq.checked_sub(self.first).and_then(|i| self.events.get(usize::try_from(i).ok()?))
    }
}

#[derive(Debug)]
struct WebhookEntry {
    endpoint: Endpoint,
    secret: String,
    /// The sequence number of the last event this endpoint is done with.
    cursor: u64,
    attempts: u32,
    first_attempt_at: Option<DateTime<Utc>>,
    retry_at: Option<DateTime<Utc>>,
    lease: Option<(String, DateTime<Utc>)>,
    log: VecDeque<DeliveryRecord>,
}

#[derive(Debug)]
struct StoredThrottleEntry {
    stored: StoredThrottle,
    forget_after: DateTime<Utc>,
}

#[derive(Debug)]
struct SessionEntry {
    session: Session,
    refresh: RefreshState,
    /// The hashes rotated away, oldest first, at most [`REMEMBERED_ROTATIONS`].
    retired: VecDeque<RefreshHash>,
}

#[derive(Debug)]
struct StoredEvent {
    event: AuditEvent,
    expires_at: Option<DateTime<Utc>>,
}

impl State {
    /// Publishes events with the change that commits them (the caller holds the lock), and
    /// drops what no endpoint of their organizations will be sent.
    fn publish(&mut self, events: Vec<Event>) {
        let mut orgs = Vec::new();
        for event in events {
            let org = event.organization_id();
            let published =
                self.published.entry(org).or_insert_with(|| Published { first: 1, events: VecDeque::new() });
            published.events.push_back(event);
            if !orgs.contains(&org) {
                orgs.push(org);
            }
        }
        for org in orgs {
            self.trim_published(org);
        }
    }

    /// Drops the events of `org` that every endpoint of it is done with: an endpoint
    /// registered later starts after the latest one anyway.
    fn trim_published(&mut self, org: OrgId) {
        let Some(published) = self.published.get_mut(&org) else { return };
        let done = self
            .webhooks
            .values()
            .filter(|w| w.endpoint.organization_id == org)
            .map(|w| w.cursor)
            .min()
            .unwrap_or_else(|| published.head());
        while published.first <= done && published.events.pop_front().is_some() {
            published.first += 1;
        }
    }

    /// Whether an organization other than `except` holds the key or one of its skeletons.
    fn name_taken(&self, key: &OrgKey, except: Option<OrgId>) -> bool {
        let other = |holder: &OrgId| Some(*holder) != except;
        self.keys.get(key).is_some_and(other)
            || key.skeletons().iter().any(|s| self.skeletons.get(s).is_some_and(other))
    }

    fn hold_name(&mut self, key: &OrgKey, id: OrgId) {
        self.keys.insert(key.clone(), id);
        self.skeletons.extend(key.skeletons().into_iter().map(|s| (s, id)));
    }

    fn release_name(&mut self, key: &OrgKey) {
        self.keys.remove(key);
        for skeleton in key.skeletons() {
            self.skeletons.remove(&skeleton);
        }
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// This store with every new organization placed as `placement`, for running the suites
    /// written for the default placement on another one.
    pub fn placing_every_organization(self, placement: Placement) -> Self {
        Self { forced_placement: Some(placement), ..self }
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
        let new = match &self.forced_placement {
            Some(placement) => new.placed(placement.clone()),
            None => new,
        };
        let mut state = self.state();
        if state.name_taken(new.name().key(), None) {
            return Err(CreateOrgError::NameTaken);
        }
        if state.emails.contains_key(&new.admin().email) {
            return Err(CreateOrgError::EmailTaken);
        }
        if state.collections.contains_key(new.collection()) {
            return Err(
                StoreError::Unknown(anyhow!("collection {} exists without an organization", new.collection())).into()
            );
        }
        let (organization, admin) = new.into_stored();
        state.hold_name(organization.name.key(), organization.id);
        state.emails.insert(admin.email.clone(), admin.id);
        if organization.placement.kind != PlacementKind::Shared {
            state.collections.insert(organization.collection.clone(), Vec::new());
        }
        state.admins.insert(admin.id, admin);
        state.organizations.insert(organization.id, organization.clone());
        state.publish(vec![Event::organization_created(MessageId::at(organization.created_at), &organization)]);
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
            if state.name_taken(rename.name().key(), Some(id)) {
                return Err(UpdateOrgError::NameTaken);
            }
            if current.placement.kind != PlacementKind::Shared
                && *rename.collection() != current.collection
                && state.collections.contains_key(rename.collection())
            {
                return Err(StoreError::Unknown(anyhow!(
                    "collection {} exists without an organization",
                    rename.collection()
                ))
                .into());
            }
        }
        if let Some(email) = &changes.email
            && state.emails.get(email).is_some_and(|holder| *holder != admin.id)
        {
            return Err(UpdateOrgError::EmailTaken);
        }

        let events = Event::of_changes(&current, &changes, || MessageId::at(changes.at));
        let mut organization = current.clone();
        if let Some(rename) = changes.rename {
            let (name, collection) = rename.into_parts();
            state.release_name(current.name.key());
            state.hold_name(name.key(), id);
            if collection != current.collection && current.placement.kind != PlacementKind::Shared {
                let documents = state.collections.remove(&current.collection).unwrap_or_default();
                state.collections.insert(collection.clone(), documents);
            }
            organization.name = name;
            organization.collection = collection;
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
        state.publish(events);
        Ok(organization)
    }

    async fn delete(&self, id: OrgId) -> Result<(), DeleteOrgError> {
        let mut state = self.state();
        let organization = state.organizations.remove(&id).ok_or(DeleteOrgError::NotFound)?;
        let now = Utc::now();
        state.publish(vec![Event::organization_deleted(MessageId::at(now), id, &organization.name, now)]);
        state.release_name(organization.name.key());
        state.collections.remove(&organization.collection);
        state.shared.remove(&organization.id);
        state.database_users.remove(&organization.id);
        let admins: Vec<AdminId> = state.admins.values().filter(|a| a.organization_id == id).map(|a| a.id).collect();
        for admin_id in admins {
            if let Some(admin) = state.admins.remove(&admin_id) {
                state.emails.remove(&admin.email);
            }
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Organization>, StoreError> {
        let mut all: Vec<Organization> = self.state().organizations.values().cloned().collect();
        all.sort_by(|a, b| a.name.key().as_str().cmp(b.name.key().as_str()));
        Ok(all)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.state().organizations.len() as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Placements are metadata here: the location is what MongoDB would hold, on a
    /// `memory://` cluster.
    fn location(&self, org: &Organization) -> TenantLocation {
        TenantLocation::of(org, format!("memory://{}", org.placement.cluster), MEMORY_TENANT_DATABASE)
    }

    async fn set_database_user(
        &self,
        org: &Organization,
        _password: &DatabasePassword,
    ) -> Result<DatabaseUser, StoreError> {
        let mut state = self.state();
        if !state.organizations.contains_key(&org.id) {
            return Err(StoreError::Unavailable(anyhow!("the organization is being deleted")));
        }
        let user = DatabaseUser::of(org.id);
        state.database_users.insert(org.id, user.clone());
        Ok(user)
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

    async fn insert_documents(&self, org: &Organization, documents: Vec<serde_json::Value>) -> Result<(), StoreError> {
        let mut state = self.state();
        if org.placement.kind == PlacementKind::Shared {
            state.shared.entry(org.id).or_default().extend(documents);
        } else {
            // Like MongoDB, inserting into a missing collection creates it.
            state.collections.entry(org.collection.clone()).or_default().extend(documents);
        }
        Ok(())
    }

    async fn documents(&self, org: &Organization) -> Result<Vec<serde_json::Value>, StoreError> {
        let state = self.state();
        let documents = if org.placement.kind == PlacementKind::Shared {
            state.shared.get(&org.id)
        } else {
            state.collections.get(&org.collection)
        };
        Ok(documents.cloned().unwrap_or_default())
    }
}

#[async_trait]
impl AccountLockout for InMemoryStore {
    async fn load_throttle(&self, key: &ThrottleKey) -> Result<Option<StoredThrottle>, StoreError> {
        Ok(self.state().throttles.get(key).map(|entry| entry.stored.clone()))
    }

    async fn save_throttle(
        &self,
        key: &ThrottleKey,
        next: &LoginThrottle,
        expected: Option<u64>,
        forget_after: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.throttles.get(key).map(|entry| entry.stored.version) != expected {
            return Ok(false);
        }
        // Unknown addresses get throttles too, so the map is swept of forgotten ones (as a
        // TTL index would) whenever it has grown large.
        if expected.is_none() && state.throttles.len() >= MAX_THROTTLES_BEFORE_SWEEP {
            let now = Utc::now();
            state.throttles.retain(|_, entry| entry.forget_after > now);
        }
        let stored = StoredThrottle { throttle: next.clone(), version: expected.map_or(1, |v| v + 1) };
        state.throttles.insert(key.clone(), StoredThrottleEntry { stored, forget_after });
        Ok(true)
    }

    async fn upgrade_password_hash(
        &self,
        admin: AdminId,
        current: &PasswordHash,
        upgraded: PasswordHash,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.admins.get_mut(&admin) {
            Some(stored) if stored.password_hash == *current => {
                stored.password_hash = upgraded;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl SessionRepository for InMemoryStore {
    async fn create_session(&self, new: NewSession) -> Result<(), StoreError> {
        let mut state = self.state();
        state.refresh_hashes.insert(new.refresh_hash.clone(), new.session.id);
        let stored = SessionEntry {
            session: new.session,
            refresh: RefreshState { current: new.refresh_hash, previous: None, revoked: false },
            retired: VecDeque::new(),
        };
        state.sessions.insert(stored.session.id, stored);
        Ok(())
    }

    async fn find_by_refresh(&self, presented: &RefreshHash) -> Result<Option<StoredSession>, StoreError> {
        let state = self.state();
        let found = state.refresh_hashes.get(presented).and_then(|id| state.sessions.get(id));
        Ok(found.map(|stored| StoredSession { session: stored.session.clone(), state: stored.refresh.clone() }))
    }

    async fn find_session(&self, id: SessionId) -> Result<Option<(Session, bool)>, StoreError> {
        Ok(self.state().sessions.get(&id).map(|stored| (stored.session.clone(), stored.refresh.revoked)))
    }

    async fn save_rotation(
        &self,
        id: SessionId,
        expected_current: &RefreshHash,
        replacement: &RefreshHash,
        previous: Option<(RefreshHash, DateTime<Utc>)>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(stored) = state.sessions.get_mut(&id) else { return Ok(false) };
        if stored.refresh.current != *expected_current || stored.refresh.revoked {
            return Ok(false);
        }
        let rotated = std::mem::replace(&mut stored.refresh.current, replacement.clone());
        stored.refresh.previous = previous;
        stored.retired.push_back(rotated);
        let forgotten = (stored.retired.len() > REMEMBERED_ROTATIONS).then(|| stored.retired.pop_front()).flatten();
        if let Some(old) = forgotten {
            state.refresh_hashes.remove(&old);
        }
        state.refresh_hashes.insert(replacement.clone(), id);
        Ok(true)
    }

    async fn revoke_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.state();
        let revoked = match state.sessions.get_mut(&id) {
            Some(stored) if !stored.refresh.revoked => {
                stored.refresh.revoked = true;
                Some(Event::session_revoked(MessageId::at(now), &stored.session, now))
            }
            _ => None,
        };
        state.publish(revoked.into_iter().collect());
        Ok(())
    }

    async fn revoke_admin_sessions(
        &self,
        admin: AdminId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let mut events = Vec::new();
        for stored in state.sessions.values_mut() {
            if stored.session.admin_id == admin && Some(stored.session.id) != except && !stored.refresh.revoked {
                stored.refresh.revoked = true;
                events.push(Event::session_revoked(MessageId::at(now), &stored.session, now));
            }
        }
        state.publish(events);
        Ok(())
    }

    async fn revoke_organization_sessions(&self, org: OrgId, _now: DateTime<Utc>) -> Result<(), StoreError> {
        for stored in self.state().sessions.values_mut() {
            if stored.session.org_id == org {
                stored.refresh.revoked = true;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl AuditLog for InMemoryStore {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.state().events.insert(event.id, StoredEvent { event, expires_at: None });
        Ok(())
    }

    async fn events(&self, org: OrgId, query: AuditQuery, now: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError> {
        let mut state = self.state();
        state.events.retain(|_, e| e.expires_at.is_none_or(|at| at > now));
        let upper = query.before.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(state
            .events
            .range((std::ops::Bound::Unbounded, upper))
            .rev()
            .map(|(_, stored)| &stored.event)
            .filter(|e| e.organization_id == Some(org) && query.action.is_none_or(|a| a == e.action))
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn expire_events(&self, org: OrgId, at: DateTime<Utc>) -> Result<(), StoreError> {
        for stored in self.state().events.values_mut() {
            if stored.event.organization_id == Some(org) {
                stored.expires_at = Some(at);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ApiKeyRepository for InMemoryStore {
    async fn create_api_key(&self, key: ApiKey, hash: ApiKeyHash) -> Result<(), StoreError> {
        let mut state = self.state();
        state.api_key_hashes.insert(hash, key.id);
        state.publish(vec![Event::api_key_created(MessageId::at(key.created_at), &key)]);
        state.api_keys.insert(key.id, key);
        Ok(())
    }

    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError> {
        let state = self.state();
        Ok(state.api_key_hashes.get(hash).and_then(|id| state.api_keys.get(id)).cloned())
    }

    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys: Vec<ApiKey> = self.state().api_keys.values().filter(|k| k.org_id == org).cloned().collect();
        keys.sort_by_key(|k| (k.created_at, k.id));
        Ok(keys)
    }

    async fn revoke_api_key(&self, org: OrgId, id: ApiKeyId) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.api_keys.get(&id).is_none_or(|k| k.org_id != org) {
            return Ok(false);
        }
        state.api_keys.remove(&id);
        state.api_key_hashes.retain(|_, held| *held != id);
        let now = Utc::now();
        state.publish(vec![Event::api_key_revoked(MessageId::at(now), org, id, now)]);
        Ok(true)
    }

    async fn revoke_organization_api_keys(&self, org: OrgId) -> Result<(), StoreError> {
        let mut state = self.state();
        state.api_keys.retain(|_, k| k.org_id != org);
        let State { api_keys, api_key_hashes, .. } = &mut *state;
        api_key_hashes.retain(|_, id| api_keys.contains_key(id));
        Ok(())
    }

    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(key) = self.state().api_keys.get_mut(&id) {
            key.last_used_at = Some(at);
        }
        Ok(())
    }
}

#[async_trait]
impl WebhookRepository for InMemoryStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, secret: &WebhookSecret) -> Result<(), StoreError> {
        let mut state = self.state();
        let cursor = state.published.get(&endpoint.organization_id).map_or(0, Published::head);
        let entry = WebhookEntry {
            endpoint: endpoint.clone(),
            secret: secret.expose().expose_secret().to_owned(),
            cursor,
            attempts: 0,
            first_attempt_at: None,
            retry_at: None,
            lease: None,
            log: VecDeque::new(),
        };
        state.webhooks.insert(endpoint.id, entry);
        Ok(())
    }

    async fn list_endpoints(&self, org: OrgId) -> Result<Vec<Endpoint>, StoreError> {
        let state = self.state();
        let mut endpoints: Vec<Endpoint> =
            state.webhooks.values().filter(|w| w.endpoint.organization_id == org).map(|w| w.endpoint.clone()).collect();
        endpoints.sort_by_key(|e| (e.created_at, e.id));
        Ok(endpoints)
    }

    async fn delete_endpoint(&self, org: OrgId, id: WebhookId) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.webhooks.get(&id).is_none_or(|w| w.endpoint.organization_id != org) {
            return Ok(false);
        }
        state.webhooks.remove(&id);
        state.trim_published(org);
        Ok(true)
    }

    async fn rotate_endpoint_secret(
        &self,
        org: OrgId,
        id: WebhookId,
        secret: &WebhookSecret,
    ) -> Result<bool, StoreError> {
        match self.state().webhooks.get_mut(&id) {
            Some(entry) if entry.endpoint.organization_id == org => {
                entry.secret = secret.expose().expose_secret().to_owned();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delivery_log(
        &self,
        org: OrgId,
        id: WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryRecord>>, StoreError> {
        Ok(self
            .state()
            .webhooks
            .get(&id)
            .filter(|w| w.endpoint.organization_id == org)
            .map(|w| w.log.iter().take(limit).cloned().collect()))
    }

    async fn next_delivery(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<DeliveryTask>, StoreError> {
        let mut guard = self.state();
        let State { webhooks, published, .. } = &mut *guard;
        let due = webhooks.values_mut().find_map(|entry| {
            let free = entry.lease.as_ref().is_none_or(|(_, until)| *until <= now);
            let ready = entry.retry_at.is_none_or(|at| at <= now);
            let event = published.get(&entry.endpoint.organization_id)?.get(entry.cursor + 1)?;
            (free && ready).then(|| (entry, event.clone()))
        });
        let Some((entry, event)) = due else { return Ok(None) };
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + chrono::Duration::from_std(lease).map_err(|e| StoreError::Unknown(e.into()))?;
        entry.lease = Some((token.clone(), until));
        let secret = WebhookSecret::parse(&entry.secret).map_err(|e| StoreError::Unknown(e.into()))?;
        Ok(Some(DeliveryTask {
            endpoint: entry.endpoint.clone(),
            secret,
            event,
            attempts_before: entry.attempts,
            first_attempt_at: entry.first_attempt_at,
            lease: token,
        }))
    }

    async fn finish_delivery(
        &self,
        task: &DeliveryTask,
        record: Option<DeliveryRecord>,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(entry) = state.webhooks.get_mut(&task.endpoint.id) else { return Ok(false) };
        if entry.lease.as_ref().is_none_or(|(token, _)| *token != task.lease) {
            return Ok(false);
        }
        entry.lease = None;
        let next = record.as_ref().map_or(NextStep::Delivered, |r| r.next);
        let attempted_at = record.as_ref().map(|r| r.at);
        if let Some(record) = record {
            entry.log.push_front(record);
            entry.log.truncate(ports::DELIVERY_LOG_LENGTH);
        }
        match next {
            NextStep::RetryAt(at) => {
                entry.attempts += 1;
                entry.first_attempt_at = entry.first_attempt_at.or(attempted_at);
                entry.retry_at = Some(at);
            }
            NextStep::Delivered | NextStep::GaveUp => {
                entry.cursor += 1;
                entry.attempts = 0;
                entry.first_attempt_at = None;
                entry.retry_at = None;
                if task.event.is_final() {
                    state.webhooks.remove(&task.endpoint.id);
                }
            }
        }
        state.trim_published(task.endpoint.organization_id);
        Ok(true)
    }
}
