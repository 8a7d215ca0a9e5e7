//! The composition root of the Organization Management Service: it reads [`Settings`],
//! builds the adapters, wires them to the use cases and serves the HTTP API. Nothing else
//! knows which adapters are in use.

pub mod settings;
pub mod telemetry;

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use crypto_adapter::{Argon2Hasher, HashingLimits, JwtIssuer, SigningKey};
use http_adapter::AppState;
use memory_adapter::InMemoryStore;
use ports::{OrgService, SystemClock, TenantStore};
use secrecy::ExposeSecret;

pub use settings::{Settings, Storage};

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
        let key = match &settings.jwt_secret {
            Some(secret) => SigningKey::new(settings.jwt_kid.clone(), secret.expose_secret().as_bytes().to_vec()),
            None => {
                tracing::warn!(
                    "ORGSVC_JWT_SECRET is not set: using a random signing key, so tokens die with this process"
                );
                SigningKey::random(settings.jwt_kid.clone())
            }
        };
        let tokens = JwtIssuer::new(vec![key], settings.jwt_issuer.clone(), settings.token_ttl_seconds)?;

        let (api, tenants): (Arc<dyn ports::OrganizationApi>, Arc<dyn TenantStore>) = match settings.storage {
            Storage::Memory => {
                let store = Arc::new(InMemoryStore::new());
                let service = OrgService::new(
                    store.clone(),
                    store.clone(),
                    hasher,
                    tokens,
                    SystemClock,
                    settings.collection_naming,
                );
                (Arc::new(service), store)
            }
        };

        let listener =
            TcpListener::bind(settings.http_addr).with_context(|| format!("binding {}", settings.http_addr))?;
        let port = listener.local_addr()?.port();
        let server = http_adapter::serve(listener, AppState::new(api), settings.http_workers)?;
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
