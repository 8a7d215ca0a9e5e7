//! The OpenAPI 3 document, generated from the handlers and DTOs.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::dto::NAME_PATTERN;
use crate::dto::{
    AdminSummary, ApiKeyListResponse, ApiKeyResponse, AuditEventResponse, AuditPageResponse, ConnectionResponse,
    CreateApiKeyBody, CreateOrganizationBody, CreateWebhookBody, CreatedApiKeyResponse, CreatedOrganizationResponse,
    CreatedWebhookResponse, DatabaseCredentialsResponse, DeleteOrganizationBody, DeliveryListResponse,
    DeliveryResponse, HealthResponse, LoginBody, OrganizationResponse, PlacementSummary, RefreshBody, TokenResponse,
    UpdateOrganizationBody, WebhookListResponse, WebhookResponse, WebhookSecretResponse,
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
        handlers::connection,
        handlers::rotate_credentials,
        handlers::create_api_key,
        handlers::list_api_keys,
        handlers::revoke_api_key,
        handlers::create_webhook,
        handlers::list_webhooks,
        handlers::delete_webhook,
        handlers::rotate_webhook_secret,
        handlers::webhook_deliveries,
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
        HealthResponse, Problem, ProblemField, ConnectionResponse, DatabaseCredentialsResponse, PlacementSummary,
        CreateApiKeyBody, CreatedApiKeyResponse, ApiKeyResponse, ApiKeyListResponse, CreateWebhookBody,
        CreatedWebhookResponse, WebhookResponse, WebhookListResponse, WebhookSecretResponse, DeliveryResponse,
        DeliveryListResponse,
    )),
    modifiers(&BearerScheme, &Constraints, &ProblemBodies),
    tags(
        (name = "organizations", description = "Create, read, update and delete organizations"),
        (name = "admin", description = "Admin authentication"),
        (name = "api-keys", description = "API keys for service-to-service calls, managed by the admin's session"),
        (name = "webhooks", description = "Signed deliveries of the organization's events, managed by the admin's session"),
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
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An admin's access token (a JWT), or an API key (`osk_...`) on the routes its scopes allow",
                    ))
                    .build(),
            ),
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

/// Every 4xx and 5xx answer is an RFC 9457 problem: said once here, rather than as a body
/// and content type on each error response of each route.
struct ProblemBodies;

impl Modify for ProblemBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                for (status, response) in &mut operation.responses.responses {
                    if let RefOr::T(response) = response
                        && (status.starts_with('4') || status.starts_with('5'))
                        && response.content.is_empty()
                    {
                        let problem = Content::new(Some(Ref::from_schema_name("Problem")));
                        response.content.insert("application/problem+json".to_owned(), problem);
                    }
                }
            }
        }
    }
}

/// The constraints utoipa's attributes cannot express (they take only literals), taken
/// from the domain's constants so that the document and the rules cannot drift: every
/// `organization_name` (in bodies and query strings) gets the length limits and the pattern
/// of the name rule, every `password` the password length limits; and an update needs at
/// least one field (utoipa 5 writes `min_properties` as `maxProperties`).
struct Constraints;

/// Sets the limits of one string schema by the name of the field or parameter it describes.
fn constrain(field: &str, schema: Option<&mut RefOr<Schema>>) {
    let Some(RefOr::T(Schema::Object(object))) = schema else { return };
    match field {
        "organization_name" => {
            object.min_length = Some(1);
            object.max_length = Some(domain::MAX_NAME_CHARS);
            object.pattern = Some(NAME_PATTERN.to_owned());
        }
        "password" => {
            object.min_length = Some(domain::MIN_PASSWORD_CHARS);
            object.max_length = Some(domain::MAX_PASSWORD_CHARS);
        }
        _ => {}
    }
}

impl Modify for Constraints {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            for schema in components.schemas.values_mut() {
                if let RefOr::T(Schema::Object(object)) = schema {
                    for (field, property) in object.properties.iter_mut() {
                        constrain(field, Some(property));
                    }
                }
            }
            if let Some(RefOr::T(Schema::Object(update))) = components.schemas.get_mut("UpdateOrganizationBody") {
                update.min_properties = Some(1);
            }
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.delete].into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    constrain(&parameter.name, parameter.schema.as_mut());
                }
            }
        }
    }
}
