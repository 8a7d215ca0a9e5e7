//! The REST API of the Organization Management Service on actix-web.
//!
//! Handlers turn DTOs into domain values (so every rule lives in the domain), call the
//! [`OrganizationApi`] use cases and map their errors onto RFC 9457 problem+json
//! responses. The OpenAPI document is generated from the handlers and DTOs with utoipa and
//! served with Swagger UI.

mod auth;
mod dto;
mod extract;
mod handlers;
mod openapi;
mod problem;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};
use ports::OrganizationApi;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

pub use openapi::ApiDoc;
pub use problem::{Problem, ProblemField};

/// The largest request body accepted, in bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    api: Arc<dyn OrganizationApi>,
}

impl AppState {
    /// State around the use cases.
    pub fn new(api: Arc<dyn OrganizationApi>) -> Self {
        Self { api }
    }
}

/// Registers every route, the OpenAPI document and Swagger UI on an actix app.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(web::QueryConfig::default().error_handler(|e, _| problem::ApiError::from(e).into()))
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
            .configure(handlers::routes);
    }
}

/// Starts serving on a bound listener with `workers` worker threads (0: one per core).
pub fn serve(listener: TcpListener, state: AppState, workers: usize) -> std::io::Result<Server> {
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(security_headers())
            .wrap(TracingLogger::default())
            .configure(configure(state.clone()))
            .default_service(web::to(handlers::not_found))
    });
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}

/// Headers every response carries: no MIME sniffing, no framing, no referrer.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
}
