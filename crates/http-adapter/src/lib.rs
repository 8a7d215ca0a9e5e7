//! The REST API of the Organization Management Service on actix-web.
//!
//! Handlers turn DTOs into domain values (so every rule lives in the domain), call the
//! [`OrganizationApi`] use cases and map their errors onto RFC 9457 problem+json
//! responses. The OpenAPI document is generated from the handlers and DTOs with utoipa and
//! served with Swagger UI.

mod auth;
mod client;
mod dto;
mod extract;
mod handlers;
mod observe;
mod openapi;
mod problem;
mod ratelimit;
#[cfg(feature = "test-support")]
pub mod receiver;
mod sender;
mod trace;

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::dev::{Server, Service, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Condition, DefaultHeaders};
use actix_web::{App, HttpServer, web};
use ports::OrganizationApi;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

pub use client::{REQUEST_ID_HEADER, RequestId, TrustedNetwork};
pub use observe::{HttpMetrics, store_latency};
pub use openapi::ApiDoc;
pub use problem::{Problem, ProblemField};
pub use ratelimit::{Limited, RateLimiter, RateLimits};
pub use sender::{DELIVERY_TIMEOUT, HttpWebhookSender};
pub use trace::{ServedRequest, TraceHeaders, TracePropagation};

/// The largest request body accepted, in bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the HTTP layer treats clients.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Per-address request limits.
    pub rate_limits: RateLimits,
    /// Proxies whose `X-Forwarded-For` is believed; none by default.
    pub trusted_proxies: Vec<TrustedNetwork>,
    /// Origins allowed to call the API from a browser; CORS is off when empty.
    pub cors_allowed_origins: Vec<String>,
    /// The longest a client may take to send a request body once its headers are in; a
    /// slower one gets 408 and its connection is closed, so stalled uploads cannot pile up.
    pub body_timeout: std::time::Duration,
    /// Connections served at once by the whole server; more wait in the listen backlog.
    pub max_connections: usize,
    /// Who may read `GET /metrics`, and where.
    pub metrics: MetricsAccess,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            rate_limits: RateLimits::default(),
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
            body_timeout: std::time::Duration::from_secs(10),
            max_connections: 10_000,
            metrics: MetricsAccess::default(),
        }
    }
}

/// Access to `GET /metrics`, which shows tenant counts and security-event counters.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>`.
    pub token: Option<secrecy::SecretString>,
    /// Whether the API's listener serves `/metrics`; `false` when it has a listener of its
    /// own ([`serve_metrics`]).
    pub on_api_listener: bool,
}

impl Default for MetricsAccess {
    fn default() -> Self {
        Self { token: None, on_api_listener: true }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    api: Arc<dyn OrganizationApi>,
    limiter: Arc<RateLimiter>,
    policy: Arc<HttpPolicy>,
    pub(crate) registry: prometheus::Registry,
    pub(crate) metrics: HttpMetrics,
    /// Continues callers' traces, when tracing is on.
    pub(crate) trace: Option<Arc<dyn TracePropagation>>,
}

impl AppState {
    /// State around the use cases, with the default policy.
    pub fn new(api: Arc<dyn OrganizationApi>) -> Self {
        Self::with_policy(api, HttpPolicy::default())
    }

    /// State around the use cases, with this policy, and the HTTP metrics in a registry of
    /// their own.
    pub fn with_policy(api: Arc<dyn OrganizationApi>, policy: HttpPolicy) -> Self {
        Self::with_metrics(api, policy, prometheus::Registry::new())
            .unwrap_or_else(|_| unreachable!("a fresh registry has no name conflicts"))
    }

    /// State whose HTTP metrics are registered in `registry`, which `GET /metrics` exposes
    /// with everything else registered there.
    pub fn with_metrics(
        api: Arc<dyn OrganizationApi>,
        policy: HttpPolicy,
        registry: prometheus::Registry,
    ) -> prometheus::Result<Self> {
        let metrics = HttpMetrics::register(&registry)?;
        Ok(Self {
            api,
            limiter: Arc::new(RateLimiter::new(policy.rate_limits)),
            policy: Arc::new(policy),
            registry,
            metrics,
            trace: None,
        })
    }

    /// The same state, with every request continuing its caller's trace (`traceparent`)
    /// and logging the trace's id beside the request's.
    pub fn with_tracing(mut self, trace: Arc<dyn TracePropagation>) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The audit context of a request.
    pub(crate) fn context(&self, req: &actix_web::HttpRequest) -> ports::RequestContext {
        client::context(req, &self.policy.trusted_proxies)
    }

    /// Applies the endpoint's rate limit to the request's client.
    pub(crate) fn limit(&self, endpoint: Limited, req: &actix_web::HttpRequest) -> Result<(), problem::ApiError> {
        let Some(ip) = client::client_ip(req, &self.policy.trusted_proxies) else { return Ok(()) };
        self.limiter
            .check(endpoint, ip, std::time::Instant::now())
            .map_err(|wait| problem::ApiError::RateLimited { retry_after: wait })
    }
}

/// Registers every route, the OpenAPI document and Swagger UI on an actix app.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let metrics_here = state.policy.metrics.on_api_listener;
        // The API's routes come first: routes are tried in order, and Swagger UI's is a
        // pattern (a regular expression) that every API request would otherwise be matched
        // against.
        cfg.app_data(web::Data::new(state))
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(web::QueryConfig::default().error_handler(|e, _| problem::ApiError::from(e).into()))
            .configure(handlers::routes)
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
            // Swagger UI lives under `/docs/`; people type `/docs`.
            .service(web::redirect("/docs", "/docs/").permanent());
        if metrics_here {
            cfg.configure(handlers::metrics_route);
        }
    }
}

/// Starts serving on a bound listener with `workers` worker threads (0: one per core). The
/// server does not listen for signals; stop it through its handle.
pub fn serve(
    listener: TcpListener,
    state: AppState,
    workers: usize,
    shutdown_grace: std::time::Duration,
) -> std::io::Result<Server> {
    let max_connections = state.policy.max_connections;
    let mut server = HttpServer::new(move || {
        let cors = cors(&state.policy.cors_allowed_origins);
        App::new()
            .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
            .wrap_fn(no_store)
            .wrap(security_headers())
            .wrap_fn(observe::observe)
            .configure(configure(state.clone()))
            .default_service(web::to(handlers::not_found))
    });
    let workers = if workers > 0 { workers } else { std::thread::available_parallelism().map_or(1, |n| n.get()) };
    // actix-web bounds connections per worker; the setting bounds the whole server.
    let per_worker = max_connections.div_ceil(workers).max(1);
    server = server.workers(workers).max_connections(per_worker);
    // When stopped, the server stops accepting and gives in-flight requests this long to
    // finish. Signals are left to the caller: actix-web's own handler stops at once,
    // dropping in-flight requests, on SIGINT.
    server = server.shutdown_timeout(shutdown_grace.as_secs()).disable_signals();
    Ok(server.listen(listener)?.run())
}

/// Serves `GET /metrics` alone on a listener of its own (an address that only the
/// monitoring network reaches), with the same token rule as on the API's listener. One
/// worker is plenty for a scraper.
pub fn serve_metrics(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .wrap_fn(no_store)
            .wrap(security_headers())
            .app_data(web::Data::new(state.clone()))
            .configure(handlers::metrics_route)
            .default_service(web::to(handlers::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    Ok(server.listen(listener)?.run())
}

/// CORS for the allowed origins, or none: browsers then refuse cross-origin calls.
fn cors(origins: &[String]) -> Option<Cors> {
    if origins.is_empty() {
        return None;
    }
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::HeaderName::from_static("x-request-id")])
        .expose_headers([
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    Some(cors)
}

/// Middleware: API responses carry tokens, emails and audit data, so no cache may keep
/// them; only the static Swagger UI may be cached.
fn no_store<S, B>(
    req: actix_web::dev::ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<actix_web::dev::ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let cacheable = req.path().starts_with("/docs/");
    let call = service.call(req);
    async move {
        let mut response = call.await?;
        if !cacheable {
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Ok(response)
    }
}

/// Headers every response carries: no MIME sniffing, no framing, no referrer.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
}
