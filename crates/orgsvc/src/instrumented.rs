//! A decorator over any store that measures every operation's latency by operation name
//! and outcome, and counts security events by action (failed logins, lockouts, reuse), so
//! the metrics are the same whichever adapter is wired in.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Admin, AdminId, ApiKey, ApiKeyHash, ApiKeyId, AuditEvent, CreateOrgError, DeleteOrgError, Email, LoginThrottle,
    NewOrganization, OrgId, OrgKey, Organization, OrganizationChanges, PasswordHash, SecurityPolicy, Session,
    SessionId, StoreError, UpdateOrgError,
};
use ports::{
    AccountLockout, AdminRepository, ApiKeyRepository, AuditLog, AuditQuery, NewSession, OrganizationRepository,
    RefreshHash, Rotation, SessionRepository, StoredSession, StoredThrottle, ThrottleKey,
};
use prometheus::{HistogramVec, IntCounterVec, Opts, Registry};
use tracing::Instrument;

/// A store whose operations are measured.
pub struct Instrumented<S> {
    inner: Arc<S>,
    latency: HistogramVec,
    security_events: IntCounterVec,
}

impl<S> Instrumented<S> {
    /// Wraps a store, registering its metrics.
    pub fn new(inner: Arc<S>, registry: &Registry) -> prometheus::Result<Self> {
        let latency = http_adapter::store_latency(registry)?;
        let security_events = IntCounterVec::new(
            Opts::new("orgsvc_security_events_total", "Audited security events by action and outcome."),
            &["action", "outcome"],
        )?;
        registry.register(Box::new(security_events.clone()))?;
        Ok(Self { inner, latency, security_events })
    }

    async fn timed<T, E>(&self, operation: &'static str, call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let started = Instant::now();
        // Each store operation is a span of the trace it is part of, named after the
        // operation (`otel.name`); off, unless tracing is.
        let span = tracing::debug_span!(
            "store",
            otel.name = operation,
            db.operation = operation,
            otel.status_code = tracing::field::Empty,
        );
        let result = call.instrument(span.clone()).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        self.latency.with_label_values(&[operation, outcome]).observe(started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait]
impl<S: OrganizationRepository> OrganizationRepository for Instrumented<S> {
    async fn create(&self, new: NewOrganization) -> Result<Organization, CreateOrgError> {
        self.timed("organization.create", self.inner.create(new)).await
    }
    async fn find_by_key(&self, key: &OrgKey) -> Result<Option<Organization>, StoreError> {
        self.timed("organization.find_by_key", self.inner.find_by_key(key)).await
    }
    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, StoreError> {
        self.timed("organization.find_by_id", OrganizationRepository::find_by_id(&*self.inner, id)).await
    }
    async fn update(&self, id: OrgId, changes: OrganizationChanges) -> Result<Organization, UpdateOrgError> {
        self.timed("organization.update", self.inner.update(id, changes)).await
    }
    async fn delete(&self, id: OrgId) -> Result<(), DeleteOrgError> {
        self.timed("organization.delete", self.inner.delete(id)).await
    }
    async fn list(&self) -> Result<Vec<Organization>, StoreError> {
        self.timed("organization.list", self.inner.list()).await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.timed("organization.count", self.inner.count()).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }
    fn location(&self, org: &Organization) -> domain::TenantLocation {
        self.inner.location(org)
    }
    async fn set_database_user(
        &self,
        org: &Organization,
        password: &domain::DatabasePassword,
    ) -> Result<domain::DatabaseUser, StoreError> {
        self.timed("organization.set_database_user", self.inner.set_database_user(org, password)).await
    }
}

#[async_trait]
impl<S: AdminRepository> AdminRepository for Instrumented<S> {
    async fn find_by_email(&self, email: &Email) -> Result<Option<Admin>, StoreError> {
        self.timed("admin.find_by_email", self.inner.find_by_email(email)).await
    }
    async fn find_by_id(&self, id: AdminId) -> Result<Option<Admin>, StoreError> {
        self.timed("admin.find_by_id", AdminRepository::find_by_id(&*self.inner, id)).await
    }
}

#[async_trait]
impl<S: AccountLockout> AccountLockout for Instrumented<S> {
    async fn load_throttle(&self, key: &ThrottleKey) -> Result<Option<StoredThrottle>, StoreError> {
        self.timed("lockout.load", self.inner.load_throttle(key)).await
    }
    async fn save_throttle(
        &self,
        key: &ThrottleKey,
        next: &LoginThrottle,
        expected: Option<u64>,
        forget_after: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.timed("lockout.save", self.inner.save_throttle(key, next, expected, forget_after)).await
    }
    async fn upgrade_password_hash(
        &self,
        admin: AdminId,
        current: &PasswordHash,
        upgraded: PasswordHash,
    ) -> Result<bool, StoreError> {
        self.timed("admin.upgrade_hash", self.inner.upgrade_password_hash(admin, current, upgraded)).await
    }
}

#[async_trait]
impl<S: SessionRepository> SessionRepository for Instrumented<S> {
    async fn create_session(&self, new: NewSession) -> Result<(), StoreError> {
        self.timed("session.create", self.inner.create_session(new)).await
    }
    async fn find_by_refresh(&self, presented: &RefreshHash) -> Result<Option<StoredSession>, StoreError> {
        self.timed("session.find_by_refresh", self.inner.find_by_refresh(presented)).await
    }
    async fn find_session(&self, id: SessionId) -> Result<Option<(Session, bool)>, StoreError> {
        self.timed("session.find", self.inner.find_session(id)).await
    }
    async fn save_rotation(
        &self,
        id: SessionId,
        expected_current: &RefreshHash,
        replacement: &RefreshHash,
        previous: Option<(RefreshHash, DateTime<Utc>)>,
    ) -> Result<bool, StoreError> {
        self.timed("session.save_rotation", self.inner.save_rotation(id, expected_current, replacement, previous)).await
    }
    // The whole exchange and the liveness check are timed as one operation each, as the
    // use cases see them (the inner store runs the domain's decisions over its own reads).
    async fn rotate(
        &self,
        presented: &RefreshHash,
        replacement: &RefreshHash,
        policy: &SecurityPolicy,
        now: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        self.timed("session.rotate", self.inner.rotate(presented, replacement, policy, now)).await
    }
    async fn session_active(&self, id: SessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.timed("session.active", self.inner.session_active(id, now)).await
    }
    async fn revoke_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.timed("session.revoke", self.inner.revoke_session(id, now)).await
    }
    async fn revoke_admin_sessions(
        &self,
        admin: AdminId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.timed("session.revoke_admin", self.inner.revoke_admin_sessions(admin, except, now)).await
    }
    async fn revoke_organization_sessions(&self, org: OrgId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.timed("session.revoke_organization", self.inner.revoke_organization_sessions(org, now)).await
    }
}

#[async_trait]
impl<S: AuditLog> AuditLog for Instrumented<S> {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.security_events.with_label_values(&[event.action.as_str(), event.outcome.as_str()]).inc();
        self.timed("audit.record", self.inner.record(event)).await
    }
    async fn events(&self, org: OrgId, query: AuditQuery, now: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError> {
        self.timed("audit.events", self.inner.events(org, query, now)).await
    }
    async fn expire_events(&self, org: OrgId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.timed("audit.expire", self.inner.expire_events(org, at)).await
    }
}

#[async_trait]
impl<S: ApiKeyRepository> ApiKeyRepository for Instrumented<S> {
    async fn create_api_key(&self, key: ApiKey, hash: ApiKeyHash) -> Result<(), StoreError> {
        self.timed("api_key.create", self.inner.create_api_key(key, hash)).await
    }
    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError> {
        self.timed("api_key.find", self.inner.find_api_key(hash)).await
    }
    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKey>, StoreError> {
        self.timed("api_key.list", self.inner.list_api_keys(org)).await
    }
    async fn revoke_api_key(&self, org: OrgId, id: ApiKeyId) -> Result<bool, StoreError> {
        self.timed("api_key.revoke", self.inner.revoke_api_key(org, id)).await
    }
    async fn revoke_organization_api_keys(&self, org: OrgId) -> Result<(), StoreError> {
        self.timed("api_key.revoke_organization", self.inner.revoke_organization_api_keys(org)).await
    }
    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.timed("api_key.record_use", self.inner.record_api_key_use(id, at)).await
    }
}

#[async_trait]
impl<S: ports::WebhookRepository> ports::WebhookRepository for Instrumented<S> {
    async fn create_endpoint(
        &self,
        endpoint: &domain::Endpoint,
        secret: &domain::WebhookSecret,
    ) -> Result<(), StoreError> {
        self.timed("webhook.create", self.inner.create_endpoint(endpoint, secret)).await
    }

    async fn list_endpoints(&self, org: OrgId) -> Result<Vec<domain::Endpoint>, StoreError> {
        self.timed("webhook.list", self.inner.list_endpoints(org)).await
    }

    async fn delete_endpoint(&self, org: OrgId, id: domain::WebhookId) -> Result<bool, StoreError> {
        self.timed("webhook.delete", self.inner.delete_endpoint(org, id)).await
    }

    async fn rotate_endpoint_secret(
        &self,
        org: OrgId,
        id: domain::WebhookId,
        secret: &domain::WebhookSecret,
    ) -> Result<bool, StoreError> {
        self.timed("webhook.rotate_secret", self.inner.rotate_endpoint_secret(org, id, secret)).await
    }

    async fn delivery_log(
        &self,
        org: OrgId,
        id: domain::WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<ports::DeliveryRecord>>, StoreError> {
        self.timed("webhook.deliveries", self.inner.delivery_log(org, id, limit)).await
    }

    async fn next_delivery(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<ports::DeliveryTask>, StoreError> {
        self.timed("webhook.next_delivery", self.inner.next_delivery(now, lease)).await
    }

    async fn finish_delivery(
        &self,
        task: &ports::DeliveryTask,
        record: Option<ports::DeliveryRecord>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.timed("webhook.finish_delivery", self.inner.finish_delivery(task, record, now)).await
    }
}

/// A webhook sender whose attempts are counted by result class (`2xx`, `3xx`, `4xx`, `5xx`,
/// `failed` for no answer) and timed, so operators see failing endpoints on `/metrics`.
pub struct InstrumentedSender<S> {
    inner: S,
    attempts: IntCounterVec,
    latency: prometheus::Histogram,
}

impl<S> InstrumentedSender<S> {
    /// Wraps a sender, registering its metrics.
    pub fn new(inner: S, registry: &Registry) -> prometheus::Result<Self> {
        let attempts = IntCounterVec::new(
            Opts::new("orgsvc_webhook_attempts_total", "Webhook delivery attempts by result."),
            &["result"],
        )?;
        let latency = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("orgsvc_webhook_attempt_seconds", "Time of webhook delivery attempts.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self { inner, attempts, latency })
    }
}

#[async_trait]
impl<S: ports::WebhookSender> ports::WebhookSender for InstrumentedSender<S> {
    async fn send(
        &self,
        url: &domain::WebhookUrl,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> domain::AttemptResult {
        let started = Instant::now();
        let result = self.inner.send(url, headers, body).await;
        self.latency.observe(started.elapsed().as_secs_f64());
        let class = match &result {
            domain::AttemptResult::Status(status) => match status / 100 {
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                _ => "5xx",
            },
            domain::AttemptResult::Failed(_) => "failed",
        };
        self.attempts.with_label_values(&[class]).inc();
        result
    }
}
