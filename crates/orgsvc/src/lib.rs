//! The composition root of the Organization Management Service: it reads [`Settings`],
//! builds the adapters, wires them to the use cases and serves the HTTP API. Nothing else
//! knows which adapters are in use.

pub mod cli;
pub mod progress;
pub mod settings;
pub mod telemetry;

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use crypto_adapter::{Argon2Hasher, HashingLimits, JwtIssuer, SigningKey};
use http_adapter::AppState;
use memory_adapter::InMemoryStore;
use mongo_adapter::MongoStore;
use ports::{
    AccountLockout, AuditLog, OrgService, SecurityPolicy, SecurityStores, SessionRepository, SystemClock, TenantStore,
};
use secrecy::ExposeSecret;

pub use settings::{Environment, Settings, Storage};

/// A built application: bound to its port, not yet serving.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    tenants: Arc<dyn TenantStore>,
}

impl Application {
    /// Builds the adapters and the use cases and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let limits = HashingLimits {
            concurrency: match settings.hash_concurrency {
                0 => HashingLimits::default().concurrency,
                n => n,
            },
            queue: settings.hash_queue,
        };
        let hasher = Argon2Hasher::new(settings.argon2_params()?, limits)?;
        settings.validate()?;
        let keys: Vec<SigningKey> = if settings.jwt_keys.is_empty() {
            tracing::warn!("ORGSVC_JWT_SECRET is not set: using a random signing key, so tokens die with this process");
            vec![SigningKey::random("dev")]
        } else {
            settings
                .jwt_keys
                .iter()
                .map(|(kid, secret)| SigningKey::new(kid.clone(), secret.expose_secret().as_bytes().to_vec()))
                .collect()
        };
        let tokens = JwtIssuer::new(keys, settings.jwt_issuer.clone(), settings.token_ttl_seconds)?;

        let naming = settings.collection_naming;
        let policy = settings.security;
        let (api, tenants): (Arc<dyn ports::OrganizationApi>, Arc<dyn TenantStore>) = match settings.storage {
            Storage::Memory => {
                let store = Arc::new(InMemoryStore::new());
                let security = security_stores(&store, policy);
                let service =
                    OrgService::new(store.clone(), store.clone(), hasher, tokens, SystemClock, naming, security);
                (Arc::new(service), store)
            }
            Storage::MongoDb => {
                let store = Arc::new(MongoStore::open(&settings.mongodb).await.context("opening the MongoDB store")?);
                reconcile_now_and_then(Arc::clone(&store), settings.reconcile_interval).await?;
                let security = security_stores(&store, policy);
                let service =
                    OrgService::new(store.clone(), store.clone(), hasher, tokens, SystemClock, naming, security);
                (Arc::new(service), store)
            }
        };

        let listener =
            TcpListener::bind(settings.http_addr).with_context(|| format!("binding {}", settings.http_addr))?;
        let port = listener.local_addr()?.port();
        let state = AppState::with_policy(api, settings.http.clone());
        let server = http_adapter::serve(listener, state, settings.http_workers)?;
        tracing::info!(
            storage = ?settings.storage,
            "listening on http://{host}:{port}, Swagger UI at http://{host}:{port}/docs/",
            host = settings.http_addr.ip(),
        );
        Ok(Self { port, server, tenants })
    }

    /// The port the application listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Direct access to tenant collections, for operators and tests.
    pub fn tenants(&self) -> Arc<dyn TenantStore> {
        Arc::clone(&self.tenants)
    }

    /// Serves until the server is stopped (SIGINT or SIGTERM).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("HTTP server failed")
    }
}

/// One store serves as the session, lockout and audit store too.
fn security_stores<S>(store: &Arc<S>, policy: SecurityPolicy) -> SecurityStores
where
    S: SessionRepository + AccountLockout + AuditLog,
{
    SecurityStores { sessions: store.clone(), lockout: store.clone(), audit: store.clone(), policy }
}

/// Repairs operations that a previous process left unfinished, then keeps doing so in the
/// background: an operation interrupted while this instance runs (another instance died)
/// is picked up once its lease expires.
async fn reconcile_now_and_then(store: Arc<MongoStore>, interval: std::time::Duration) -> anyhow::Result<()> {
    let report = store.reconcile().await.context("reconciling interrupted operations")?;
    if !report.is_clean() {
        tracing::warn!(%report, "reconciled interrupted operations at startup");
    }
    if !interval.is_zero() {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match store.reconcile().await {
                    Ok(report) if !report.is_clean() => tracing::warn!(%report, "reconciled interrupted operations"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "reconciliation failed; will retry"),
                }
            }
        });
    }
    Ok(())
}
