//! The OpenAPI 3 document, generated from the handlers and DTOs.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::{
    AdminSummary, AuditEventResponse, AuditPageResponse, CreateOrganizationBody, CreatedOrganizationResponse,
    DeleteOrganizationBody, HealthResponse, LoginBody, OrganizationResponse, RefreshBody, TokenResponse,
    UpdateOrganizationBody,
};
use crate::handlers;
use crate::problem::{Problem, ProblemField};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Organization Management Service",
        description = "Multi-tenant organizations, each with its own admin and its own MongoDB collection. \
            Errors are RFC 9457 problem details (`application/problem+json`).",
    ),
    paths(
        handlers::create_organization,
        handlers::get_organization,
        handlers::update_organization,
        handlers::delete_organization,
        handlers::audit,
        handlers::login,
        handlers::refresh,
        handlers::logout,
        handlers::live,
        handlers::ready,
        handlers::metrics,
    ),
    components(schemas(
        CreateOrganizationBody, CreatedOrganizationResponse, AdminSummary, OrganizationResponse, UpdateOrganizationBody,
        DeleteOrganizationBody, LoginBody, TokenResponse, RefreshBody, AuditPageResponse, AuditEventResponse,
        HealthResponse, Problem, ProblemField,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "organizations", description = "Create, read, update and delete organizations"),
        (name = "admin", description = "Admin authentication"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("ORGSVC_METRICS_TOKEN, when the operator set one"))
                    .build(),
            ),
        );
    }
}
