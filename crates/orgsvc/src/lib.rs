//! The composition root of the Organization Management Service: it reads [`Settings`],
//! builds the adapters, wires them to the use cases and serves the HTTP API. Nothing else
//! knows which adapters are in use.

pub mod cache_metrics;
pub mod cli;
pub mod instrumented;
pub mod pool_metrics;
pub mod progress;
pub mod settings;
pub mod telemetry;

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use crypto_adapter::{Argon2Hasher, HashingLimits, JwtIssuer, SigningKey};
use http_adapter::AppState;
use instrumented::Instrumented;
use memory_adapter::InMemoryStore;
use mongo_adapter::{CachedStore, MongoStore};
use ports::{
    AccountLockout, AuditLog, OrgService, OrganizationRepository, SecurityPolicy, SessionRepository, SystemClock,
    TenantStore, ThrottleKeyer,
};
use secrecy::ExposeSecret;

pub use settings::{Environment, Settings, Storage};

/// A built application: bound to its port, not yet serving.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    /// The metrics listener's port and server, when it has its own.
    metrics: Option<(u16, actix_web::dev::Server)>,
    tenants: Arc<dyn TenantStore>,
    organizations: Arc<dyn OrganizationRepository>,
    /// The MongoDB store and its background reconciler, closed after the server stops.
    mongo: Option<(Arc<MongoStore>, Option<tokio::task::JoinHandle<()>>)>,
    /// The webhook delivery workers, stopped with the server.
    deliveries: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Builds the adapters and the use cases and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`build`](Self::build), with the use cases on the given clock (a
    /// [`ports::ManualClock`] in tests that need time to pass without sleeping).
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn ports::Clock>) -> anyhow::Result<Self> {
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
        // Every instance sharing the signing keys counts an address under the same key.
        let throttle_keyer = ThrottleKeyer::derived_from(keys[0].secret.expose_secret());
        let tokens = JwtIssuer::new(keys, settings.jwt_issuer.clone(), settings.token_ttl_seconds)?;

        let registry = prometheus::Registry::new();
        hasher.register_metrics(&registry)?;
        // Traces continue callers' (`traceparent`) and reach webhook receivers only when
        // they are exported at all.
        let trace = settings
            .tracing
            .otlp_endpoint
            .as_ref()
            .map(|_| Arc::new(telemetry::OtelPropagation::new()) as Arc<dyn http_adapter::TracePropagation>);
        let parts = Parts {
            hasher,
            tokens,
            clock: Arc::clone(&clock),
            throttle_keyer,
            naming: settings.collection_naming,
            policy: settings.security,
            placement: settings.placement.clone(),
            tenant_credentials: settings.tenant_credentials,
            endpoint_policy: settings.endpoint_policy(),
            webhooks: settings.webhooks,
            trace: trace.clone(),
        };
        let ((api, deliveries), tenants, organizations, mongo) = match settings.storage {
            Storage::Memory => {
                let store = Arc::new(InMemoryStore::new());
                (
                    parts.service(store.clone(), &registry)?,
                    store.clone() as Arc<dyn TenantStore>,
                    store as Arc<dyn OrganizationRepository>,
                    None,
                )
            }
            Storage::MongoDb => {
                let mut store = MongoStore::open(&settings.mongodb).await.context("opening the MongoDB store")?;
                match settings.vault()? {
                    Some(vault) => store = store.with_vault(vault),
                    None if settings.environment == Environment::Production => tracing::warn!(
                        "ORGSVC_SEALING_KEY is not set: webhook signing secrets are stored in clear, and tenant \
                         database users stay behind when their tenant moves to another cluster"
                    ),
                    None => {}
                }
                let store = Arc::new(store);
                let reconciler = reconcile_now_and_then(Arc::clone(&store), settings.reconcile_interval).await?;
                sweep_now_and_then(Arc::clone(&store), settings.orphan_sweep_interval);
                run_jobs_now_and_then(Arc::clone(&store), settings.jobs_interval, &registry)?;
                tier_now_and_then(Arc::clone(&store), settings.tiering, settings.tiering_interval);
                pool_metrics::PoolMetrics::register(Arc::clone(&store), &registry)?;
                let cache = &settings.mongodb.cache;
                if cache.enabled {
                    let cached = Arc::new(CachedStore::start(Arc::clone(&store), cache, clock).await);
                    cache_metrics::CacheMetrics::register(Arc::clone(&cached), &registry)?;
                    (
                        parts.service(cached.clone(), &registry)?,
                        cached.clone() as Arc<dyn TenantStore>,
                        cached as Arc<dyn OrganizationRepository>,
                        Some((store, reconciler)),
                    )
                } else {
                    (
                        parts.service(store.clone(), &registry)?,
                        store.clone() as Arc<dyn TenantStore>,
                        store.clone() as Arc<dyn OrganizationRepository>,
                        Some((store, reconciler)),
                    )
                }
            }
        };

        let listener =
            TcpListener::bind(settings.http_addr).with_context(|| format!("binding {}", settings.http_addr))?;
        let port = listener.local_addr()?.port();
        let mut http = settings.http.clone();
        http.metrics.on_api_listener = settings.metrics_addr.is_none();
        let mut state = AppState::with_metrics(api, http, registry)?;
        if let Some(trace) = trace {
            state = state.with_tracing(trace);
        }
        let metrics = match settings.metrics_addr {
            Some(addr) => {
                let listener =
                    TcpListener::bind(addr).with_context(|| format!("binding {addr} (ORGSVC_METRICS_ADDR)"))?;
                let port = listener.local_addr()?.port();
                tracing::info!("metrics on http://{}:{port}/metrics", addr.ip());
                Some((port, http_adapter::serve_metrics(listener, state.clone())?))
            }
            None => None,
        };
        let server = http_adapter::serve(listener, state, settings.http_workers, settings.shutdown_grace)?;
        tracing::info!(
            storage = ?settings.storage,
            "listening on http://{host}:{port}, Swagger UI at http://{host}:{port}/docs/",
            host = settings.http_addr.ip(),
        );
        Ok(Self { port, server, metrics, tenants, organizations, mongo, deliveries })
    }

    /// The port of the metrics listener, when `ORGSVC_METRICS_ADDR` gives it one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    /// The port the application listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Direct access to tenant collections, for operators and tests.
    pub fn tenants(&self) -> Arc<dyn TenantStore> {
        Arc::clone(&self.tenants)
    }

    /// The organizations, for operators and tests that address tenant data by organization.
    pub fn organizations(&self) -> Arc<dyn OrganizationRepository> {
        Arc::clone(&self.organizations)
    }

    /// A handle that stops the server gracefully, as SIGTERM does.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT (Ctrl-C) arrives, then stops as
    /// [`run_until_stopped`](Self::run_until_stopped) does: both signals drain in-flight
    /// requests.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let handle = self.handle();
        let watcher = tokio::spawn(async move {
            match stop_signal().await {
                Ok(name) => tracing::info!(signal = name, "stopping: draining in-flight requests"),
                Err(error) => tracing::warn!(error = %error, "cannot listen for stop signals; stopping"),
            }
            handle.stop(true).await;
        });
        let served = self.run_until_stopped().await;
        watcher.abort();
        served
    }

    /// Serves until the server is stopped through a [`handle`](Self::handle): it stops
    /// accepting, lets in-flight requests finish within the grace period, then closes the
    /// database client.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let served = self.server.await.context("HTTP server failed");
        for worker in self.deliveries {
            // A delivery cut short is made again by the next worker to lease its endpoint.
            worker.abort();
        }
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        if let Some((store, reconciler)) = self.mongo {
            if let Some(reconciler) = reconciler {
                reconciler.abort();
            }
            store.client().clone().shutdown().immediate(true).await;
            tracing::info!("MongoDB client closed");
        }
        tracing::info!("stopped");
        served
    }
}

/// Waits for SIGTERM or SIGINT and names the one that came.
async fn stop_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = terminate.recv() => Ok("SIGTERM"),
            _ = interrupt.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}

/// What every store is wired with.
struct Parts {
    hasher: Argon2Hasher,
    tokens: JwtIssuer,
    clock: Arc<dyn ports::Clock>,
    throttle_keyer: ThrottleKeyer,
    naming: domain::CollectionNaming,
    policy: SecurityPolicy,
    placement: domain::Placement,
    tenant_credentials: bool,
    endpoint_policy: domain::EndpointPolicy,
    webhooks: settings::WebhookSettings,
    trace: Option<Arc<dyn http_adapter::TracePropagation>>,
}

/// The use cases, and the webhook delivery workers running beside them.
type Service = (Arc<dyn ports::OrganizationApi>, Vec<tokio::task::JoinHandle<()>>);

impl Parts {
    /// The use cases on one store (which also keeps sessions, lockout counters, the audit
    /// trail and webhooks), measured, and the webhook delivery workers.
    fn service<S>(self, store: Arc<S>, registry: &prometheus::Registry) -> anyhow::Result<Service>
    where
        S: ports::OrganizationRepository
            + ports::AdminRepository
            + SessionRepository
            + AccountLockout
            + AuditLog
            + ports::ApiKeyRepository
            + ports::WebhookRepository,
    {
        let store = Arc::new(Instrumented::new(store, registry)?);
        let ports = ports::Ports {
            organizations: store.clone(),
            admins: store.clone(),
            hasher: Arc::new(self.hasher),
            tokens: Arc::new(self.tokens),
            clock: Arc::clone(&self.clock),
            sessions: store.clone(),
            lockout: store.clone(),
            audit: store.clone(),
            api_keys: store.clone(),
            webhooks: store.clone(),
        };
        let mut sender = http_adapter::HttpWebhookSender::new(self.endpoint_policy, self.webhooks.timeout)?;
        if let Some(trace) = self.trace {
            sender = sender.with_tracing(trace);
        }
        let delivery = ports::DeliverySettings {
            retry: domain::RetryPolicy { base: self.webhooks.retry_base, ..domain::RetryPolicy::default() },
            // Longer than any request may take, so a live worker never loses its lease.
            lease: self.webhooks.timeout * 3,
        };
        let sender = instrumented::InstrumentedSender::new(sender, registry)?;
        let worker = Arc::new(ports::WebhookDelivery::new(store, Arc::new(sender), Arc::clone(&self.clock), delivery));
        let deliveries = deliver_webhooks(worker, self.webhooks);
        let settings = ports::ServiceSettings {
            naming: self.naming,
            throttle_keyer: self.throttle_keyer,
            policy: self.policy,
            placement: self.placement,
            tenant_credentials: self.tenant_credentials,
            webhook_policy: self.endpoint_policy,
        };
        Ok((Arc::new(OrgService::new(ports, settings)), deliveries))
    }
}

/// Starts the webhook delivery workers: each makes one delivery at a time, back to back
/// while deliveries are due, and looks again every poll interval when none is.
fn deliver_webhooks(
    worker: Arc<ports::WebhookDelivery>,
    settings: settings::WebhookSettings,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..settings.workers)
        .map(|_| {
            let worker = Arc::clone(&worker);
            tokio::spawn(async move {
                loop {
                    match worker.deliver_next().await {
                        Ok(true) => {}
                        Ok(false) => tokio::time::sleep(settings.poll).await,
                        Err(error) => {
                            tracing::warn!(error = %error, "webhook delivery worker failed; will retry");
                            tokio::time::sleep(settings.poll).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Runs the full orphan sweep in the background, right after startup and then every
/// `interval` (never when zero): it reads every organization, so it runs far less often
/// than the reconciliation pass. Failures are logged and retried at the next interval.
fn sweep_now_and_then(store: Arc<MongoStore>, interval: std::time::Duration) {
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        loop {
            match store.sweep_orphans().await {
                Ok(report) if !report.is_clean() => tracing::warn!(%report, "removed orphaned tenant data"),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = format!("{error:#}"), "the orphan sweep failed; will retry"),
            }
            tokio::time::sleep(interval).await;
        }
    });
}

/// Runs background jobs (tenant moves) in the background: every `interval`, each job that is
/// new or whose runner died is claimed and run to its end (never when zero). Job counts are
/// published on `/metrics` at the same pace.
fn run_jobs_now_and_then(
    store: Arc<MongoStore>,
    interval: std::time::Duration,
    registry: &prometheus::Registry,
) -> anyhow::Result<()> {
    let jobs = prometheus::IntGaugeVec::new(
        prometheus::Opts::new("orgsvc_jobs", "Background jobs by state (running counts pending ones too)."),
        &["state"],
    )?;
    let items = prometheus::IntGauge::new(
        "orgsvc_job_items_done",
        "Work done so far by the background jobs that have not ended: documents copied by moves, organizations migrated by tenant migrations.",
    )?;
    registry.register(Box::new(jobs.clone()))?;
    registry.register(Box::new(items.clone()))?;
    if interval.is_zero() {
        return Ok(());
    }
    let counter = Arc::clone(&store);
    tokio::spawn(async move {
        loop {
            match counter.job_counts().await {
                Ok(counts) => {
                    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    jobs.with_label_values(&["running"]).set(gauge(counts.running));
                    jobs.with_label_values(&["completed"]).set(gauge(counts.completed));
                    jobs.with_label_values(&["rolled_back"]).set(gauge(counts.rolled_back));
                    jobs.with_label_values(&["failed"]).set(gauge(counts.failed));
                    items.set(gauge(counts.items_done));
                }
                Err(error) => tracing::warn!(error = format!("{error:#}"), "could not count jobs"),
            }
            tokio::time::sleep(interval).await;
        }
    });
    let owner = cli::runner_name();
    tokio::spawn(async move {
        loop {
            match store.run_due_jobs(&owner).await {
                Ok(ran) => {
                    for job in ran {
                        tracing::info!(job = %job.id, kind = job.kind.as_str(), state = %job.state, "job run");
                    }
                }
                Err(error) => tracing::warn!(error = format!("{error:#}"), "the job runner failed; will retry"),
            }
            tokio::time::sleep(interval).await;
        }
    });
    Ok(())
}

/// Runs the automatic tiering pass every `interval` (never when zero): on the instance
/// that holds the pass's lease, it starts moves for organizations that crossed a threshold
/// of `policy`, which the job runners then carry out.
fn tier_now_and_then(store: Arc<MongoStore>, policy: domain::TieringPolicy, interval: std::time::Duration) {
    if interval.is_zero() {
        return;
    }
    let owner = cli::runner_name();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            // The lease outlasts the pass, so no other instance starts one meanwhile.
            match store.tiering_pass(&policy, &owner, interval.max(TIERING_LEASE), TIERING_MOVES_PER_PASS).await {
                Ok(report) if !report.started.is_empty() || !report.skipped.is_empty() => {
                    tracing::info!(%report, "tiering pass");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = format!("{error:#}"), "the tiering pass failed; will retry"),
            }
        }
    });
}

/// The shortest lease of a tiering pass.
const TIERING_LEASE: std::time::Duration = std::time::Duration::from_secs(60);
/// The most moves one tiering pass starts: the job runners carry them out one at a time.
const TIERING_MOVES_PER_PASS: usize = 10;

/// Repairs operations that a previous process left unfinished, then keeps doing so in the
/// background: an operation interrupted while this instance runs (another instance died)
/// is picked up once its lease expires.
async fn reconcile_now_and_then(
    store: Arc<MongoStore>,
    interval: std::time::Duration,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let report = store.reconcile().await.context("reconciling interrupted operations")?;
    if !report.is_clean() {
        tracing::warn!(%report, "reconciled interrupted operations at startup");
    }
    if interval.is_zero() {
        return Ok(None);
    }
    Ok(Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match store.reconcile().await {
                Ok(report) if !report.is_clean() => tracing::warn!(%report, "reconciled interrupted operations"),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = format!("{error:#}"), "reconciliation failed; will retry"),
            }
        }
    })))
}
