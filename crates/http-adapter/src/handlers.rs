//! The endpoints. Each handler parses its input into domain values, calls one use case
//! and maps the outcome; the mapping of domain errors onto statuses lives here only.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use domain::{
    ApiKeyId, CreateApiKeyError, CreateOrgError, CreateWebhookError, CredentialsError, DeleteOrgError, GetOrgError,
    ListApiKeysError, ListWebhooksError, RevokeApiKeyError, UpdateOrgError, WebhookEndpointError, WebhookId,
};
use ports::{AuditError, AuthError, LoginError, LogoutError, RefreshError};

use crate::auth::{Authenticated, MaybeAuthenticated};
use crate::dto::{
    ApiKeyListResponse, ApiKeyResponse, AuditPageResponse, AuditQueryParams, ConnectionResponse, CreateApiKeyBody,
    CreateOrganizationBody, CreateWebhookBody, CreatedApiKeyResponse, CreatedOrganizationResponse,
    CreatedWebhookResponse, DatabaseCredentialsResponse, DeleteOrganizationBody, DeliveryListResponse,
    DeliveryResponse, HealthResponse, LoginBody, OrganizationNameQuery, OrganizationResponse, RefreshBody,
    TokenResponse, UpdateOrganizationBody, WebhookListResponse, WebhookResponse, WebhookSecretResponse,
    parse_delete_target, parse_organization_name,
};
use crate::extract::{JsonBody, OptionalJsonBody};
use crate::problem::{ApiError, ProblemField};
use crate::{AppState, Limited};
use secrecy::ExposeSecret;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/org/create", "POST").post(create_organization))
        .service(resource("/org/get", "GET").get(get_organization))
        .service(resource("/org/update", "PUT").put(update_organization))
        .service(resource("/org/delete", "DELETE").delete(delete_organization))
        .service(resource("/org/audit", "GET").get(audit))
        .service(resource("/org/connection", "GET").get(connection))
        .service(resource("/org/connection/credentials", "POST").post(rotate_credentials))
        .service(resource("/org/api-keys", "GET, POST").get(list_api_keys).post(create_api_key))
        .service(resource("/org/api-keys/{id}", "DELETE").delete(revoke_api_key))
        .service(resource("/org/webhooks", "GET, POST").get(list_webhooks).post(create_webhook))
        .service(resource("/org/webhooks/{id}", "DELETE").delete(delete_webhook))
        .service(resource("/org/webhooks/{id}/rotate-secret", "POST").post(rotate_webhook_secret))
        .service(resource("/org/webhooks/{id}/deliveries", "GET").get(webhook_deliveries))
        .service(resource("/admin/login", "POST").post(login))
        .service(resource("/admin/refresh", "POST").post(refresh))
        .service(resource("/admin/logout", "POST").post(logout))
        .service(resource("/health/live", "GET").get(live))
        .service(resource("/health/ready", "GET").get(ready));
}

/// `GET /metrics`, on the API's listener or one of its own.
pub(crate) fn metrics_route(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics", "GET").get(metrics));
}

/// A resource that answers other methods with a 405 problem whose `Allow` header lists
/// `allow`, the methods it has.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path)
        .default_service(web::to(move || async move { ApiError::MethodNotAllowed { allow }.error_response() }))
}

impl From<CreateOrgError> for ApiError {
    fn from(error: CreateOrgError) -> Self {
        match error {
            CreateOrgError::NameTaken => Self::Conflict {
                slug: "organization-name-taken",
                detail: "an organization with this name, or one that normalizes to or looks like the same name, already exists"
                    .to_owned(),
            },
            CreateOrgError::EmailTaken => {
                Self::Conflict { slug: "email-taken", detail: "an admin with this email already exists".to_owned() }
            }
            CreateOrgError::Unavailable(e) => Self::Unavailable(e),
            CreateOrgError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<UpdateOrgError> for ApiError {
    fn from(error: UpdateOrgError) -> Self {
        match error {
            UpdateOrgError::NotFound => Self::NotFound("organization not found".to_owned()),
            UpdateOrgError::NameTaken => Self::Conflict {
                slug: "organization-name-taken",
                detail: "another organization with this name, or one that normalizes to or looks like the same name, already exists"
                    .to_owned(),
            },
            UpdateOrgError::EmailTaken => {
                Self::Conflict { slug: "email-taken", detail: "another admin already uses this email".to_owned() }
            }
            UpdateOrgError::Moving => Self::Conflict {
                slug: "organization-moving",
                detail: "the organization's data is being moved to another placement; rename it once the move has ended"
                    .to_owned(),
            },
            UpdateOrgError::Forbidden { reason } => Self::InsufficientScope(reason),
            UpdateOrgError::Unavailable(e) => Self::Unavailable(e),
            UpdateOrgError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<GetOrgError> for ApiError {
    fn from(error: GetOrgError) -> Self {
        match error {
            GetOrgError::NotFound => Self::NotFound("no organization has this name".to_owned()),
            GetOrgError::Forbidden { reason } => Self::InsufficientScope(reason),
            GetOrgError::Unavailable(e) => Self::Unavailable(e),
            GetOrgError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<CredentialsError> for ApiError {
    fn from(error: CredentialsError) -> Self {
        match error {
            CredentialsError::Disabled => Self::Conflict { slug: "credentials-disabled", detail: error.to_string() },
            CredentialsError::NotIsolated { .. } => {
                Self::Conflict { slug: "placement-shares-a-database", detail: error.to_string() }
            }
            CredentialsError::NotFound => Self::NotFound("the organization is gone".to_owned()),
            CredentialsError::Forbidden { reason } => Self::InsufficientScope(reason),
            CredentialsError::Unavailable(e) => Self::Unavailable(e),
            CredentialsError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<DeleteOrgError> for ApiError {
    fn from(error: DeleteOrgError) -> Self {
        match error {
            DeleteOrgError::NotFound => Self::NotFound("no organization has this name".to_owned()),
            DeleteOrgError::NotOwner => Self::Forbidden("the organization is not the one this token belongs to"),
            DeleteOrgError::Forbidden { reason } => Self::InsufficientScope(reason),
            DeleteOrgError::Unavailable(e) => Self::Unavailable(e),
            DeleteOrgError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => {
                Self::Unauthorized { detail: "invalid email or password", invalid_token: false }
            }
            LoginError::Locked { retry_after, .. } => Self::Locked { retry_after },
            LoginError::Unavailable(e) => Self::Unavailable(e),
            LoginError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::Invalid => {
                Self::Unauthorized { detail: "the refresh token is invalid or expired", invalid_token: true }
            }
            RefreshError::Reused => Self::Unauthorized {
                detail: "the refresh token was already used; its session is revoked, log in again",
                invalid_token: true,
            },
            RefreshError::Unavailable(e) => Self::Unavailable(e),
            RefreshError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::InvalidToken => {
                Self::Unauthorized { detail: "the token is invalid or expired", invalid_token: true }
            }
            AuthError::Unavailable(e) => Self::Unavailable(e),
            AuthError::Unknown(e) => Self::Internal(e),
        }
    }
}

/// The errors of use cases that can fail only because the caller's API key may not do
/// them, or because a dependency failed.
macro_rules! from_scope_and_dependency_errors {
    ($($error:ident),*) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                match error {
                    $error::Forbidden { reason } => Self::InsufficientScope(reason),
                    $error::Unavailable(e) => Self::Unavailable(e),
                    $error::Unknown(e) => Self::Internal(e),
                }
            }
        }
    )*};
}
from_scope_and_dependency_errors!(LogoutError, AuditError, ListApiKeysError, ListWebhooksError);

impl From<CreateWebhookError> for ApiError {
    fn from(error: CreateWebhookError) -> Self {
        match error {
            CreateWebhookError::Forbidden { reason } => Self::InsufficientScope(reason),
            CreateWebhookError::Url { reason } => Self::Validation(vec![ProblemField::new("url", reason.to_string())]),
            CreateWebhookError::TooMany { limit } => Self::Conflict {
                slug: "too-many-webhooks",
                detail: format!("an organization may have at most {limit} webhook endpoints; remove one first"),
            },
            CreateWebhookError::Unavailable(e) => Self::Unavailable(e),
            CreateWebhookError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<WebhookEndpointError> for ApiError {
    fn from(error: WebhookEndpointError) -> Self {
        match error {
            WebhookEndpointError::Forbidden { reason } => Self::InsufficientScope(reason),
            WebhookEndpointError::NotFound => {
                Self::NotFound("the organization has no webhook endpoint with this id".to_owned())
            }
            WebhookEndpointError::Unavailable(e) => Self::Unavailable(e),
            WebhookEndpointError::Unknown(e) => Self::Internal(e),
        }
    }
}

fn webhook_id(id: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(id).map_err(|e| ApiError::Validation(vec![ProblemField::new("path.id", e.to_string())]))
}

impl From<CreateApiKeyError> for ApiError {
    fn from(error: CreateApiKeyError) -> Self {
        match error {
            CreateApiKeyError::Forbidden { reason } => Self::InsufficientScope(reason),
            CreateApiKeyError::ExpiryInThePast => {
                Self::Validation(vec![ProblemField::new("expires_at", "must be in the future")])
            }
            CreateApiKeyError::Unavailable(e) => Self::Unavailable(e),
            CreateApiKeyError::Unknown(e) => Self::Internal(e),
        }
    }
}

impl From<RevokeApiKeyError> for ApiError {
    fn from(error: RevokeApiKeyError) -> Self {
        match error {
            RevokeApiKeyError::Forbidden { reason } => Self::InsufficientScope(reason),
            RevokeApiKeyError::NotFound => Self::NotFound("the organization has no API key with this id".to_owned()),
            RevokeApiKeyError::Unavailable(e) => Self::Unavailable(e),
            RevokeApiKeyError::Unknown(e) => Self::Internal(e),
        }
    }
}

/// Create an organization with its admin and tenant collection.
#[utoipa::path(
    post, path = "/org/create", tag = "organizations",
    request_body = CreateOrganizationBody,
    responses(
        (status = 201, description = "Created", body = CreatedOrganizationResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 409, description = "The name's key or the email is taken"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "Body is not JSON"),
        (status = 422, description = "Invalid or missing fields"),
        (status = 429, description = "Too many creates from this address (see Retry-After)"),
        (status = 503, description = "Store or hashing unavailable"),
    )
)]
pub(crate) async fn create_organization(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<CreateOrganizationBody>,
) -> Result<HttpResponse, ApiError> {
    state.limit(Limited::Create, &req)?;
    let created = state.api.create(body.parse()?, &state.context(&req)).await?;
    Ok(HttpResponse::Created().json(CreatedOrganizationResponse::from(created)))
}

/// Read an organization by name. The admin's email is included only for that admin.
#[utoipa::path(
    get, path = "/org/get", tag = "organizations",
    params(OrganizationNameQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The organization", body = OrganizationResponse),
        (status = 404, description = "No organization has this name"),
        (status = 422, description = "Missing or invalid organization_name"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn get_organization(
    state: web::Data<AppState>,
    query: web::Query<OrganizationNameQuery>,
    viewer: MaybeAuthenticated,
) -> Result<HttpResponse, ApiError> {
    let name = parse_organization_name(query.into_inner().organization_name)?;
    let view = state.api.get(&name, viewer.0.as_ref()).await?;
    Ok(HttpResponse::Ok().json(OrganizationResponse::from(view)))
}

/// Log in as an organization's admin: opens a session and returns an access token and a
/// refresh token.
#[utoipa::path(
    post, path = "/admin/login", tag = "admin",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Access and refresh tokens", body = TokenResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "Invalid email or password"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "Body is not JSON"),
        (status = 422, description = "Invalid or missing fields"),
        (status = 429, description = "Account locked after failed logins, or too many logins from this address (see Retry-After)"),
        (status = 503, description = "Store or hashing unavailable"),
    )
)]
pub(crate) async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    state.limit(Limited::Login, &req)?;
    let tokens = state.api.login(body.parse()?, &state.context(&req)).await?;
    Ok(token_response(tokens))
}

fn token_response(tokens: ports::SessionTokens) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::PRAGMA, "no-cache")).json(TokenResponse::from(tokens))
}

/// Exchange a refresh token for a new access token and a new refresh token. The old
/// refresh token stops working; presenting it again revokes the session.
#[utoipa::path(
    post, path = "/admin/refresh", tag = "admin",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "New access and refresh tokens", body = TokenResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "Body is not JSON"),
        (status = 422, description = "Missing refresh_token"),
        (status = 429, description = "Too many refreshes from this address (see Retry-After)"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBody(body): JsonBody<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    state.limit(Limited::Refresh, &req)?;
    let tokens = state.api.refresh(body.parse()?, &state.context(&req)).await?;
    Ok(token_response(tokens))
}

/// End the caller's session: its access token and refresh token stop working.
#[utoipa::path(
    post, path = "/admin/logout", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    state.api.logout(&caller.0, &state.context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's organization's security events, newest first, a page at a time.
#[utoipa::path(
    get, path = "/org/audit", tag = "organizations",
    params(AuditQueryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = AuditPageResponse),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 422, description = "Invalid limit, cursor or action"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn audit(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<AuditQueryParams>,
) -> Result<HttpResponse, ApiError> {
    let page = state.api.audit(&caller.0, query.into_inner().parse()?).await?;
    Ok(HttpResponse::Ok().json(AuditPageResponse::from(page)))
}

/// Create an API key for another service: it authenticates like an access token
/// (`Authorization: Bearer osk_...`) on the routes its scopes allow (`org:read`: the
/// organization with its admin's view and its connection details; `org:write`: renames;
/// `audit:read`: the audit trail). No key may delete the organization, manage keys, rotate
/// database credentials or change the admin's email or password. The key is in this answer
/// only; the service keeps its SHA-256.
#[utoipa::path(
    post, path = "/org/api-keys", tag = "api-keys",
    request_body = CreateApiKeyBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The key, shown this once", body = CreatedApiKeyResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages keys"),
        (status = 415, description = "Body is not JSON"),
        (status = 422, description = "Invalid name, scopes or expiry"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn create_api_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    JsonBody(body): JsonBody<CreateApiKeyBody>,
) -> Result<HttpResponse, ApiError> {
    let created = state.api.create_api_key(&caller.0, body.parse()?, &state.context(&req)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedApiKeyResponse::from(created)))
}

/// The caller's organization's API keys, oldest first: names, scopes, the first characters
/// of each key, and when each was created, expires and was last used (to within a
/// minute). Never the keys themselves.
#[utoipa::path(
    get, path = "/org/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = ApiKeyListResponse),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages keys"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn list_api_keys(state: web::Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let keys = state.api.list_api_keys(&caller.0).await?;
    Ok(HttpResponse::Ok().json(ApiKeyListResponse { keys: keys.into_iter().map(ApiKeyResponse::from).collect() }))
}

/// Revoke an API key: it is refused from now on, on every instance.
#[utoipa::path(
    delete, path = "/org/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages keys"),
        (status = 404, description = "The organization has no API key with this id"),
        (status = 422, description = "The id is not a UUID"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn revoke_api_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id =
        ApiKeyId::parse(&id).map_err(|e| ApiError::Validation(vec![ProblemField::new("path.id", e.to_string())]))?;
    state.api.revoke_api_key(&caller.0, id, &state.context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Register a webhook endpoint: the organization's events (`organization.created`,
/// `organization.renamed`, `organization.deleted`, `admin.email_changed`,
/// `admin.password_changed`, ...) are POSTed to it as they commit, in order, at least once,
/// signed as the Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`). A failed delivery is retried with exponential backoff for about a
/// day; later events wait for it. The signing secret is in this answer only.
#[utoipa::path(
    post, path = "/org/webhooks", tag = "webhooks",
    request_body = CreateWebhookBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The endpoint and its signing secret, shown this once", body = CreatedWebhookResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages webhooks"),
        (status = 409, description = "The organization has 10 endpoints already"),
        (status = 415, description = "Body is not JSON"),
        (status = 422, description = "Invalid URL (not https, internal address, credentials, fragment) or event types"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn create_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    JsonBody(body): JsonBody<CreateWebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let created = state.api.create_webhook(&caller.0, body.parse()?, &state.context(&req)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedWebhookResponse::from(created)))
}

/// The caller's organization's webhook endpoints, oldest first, without their secrets.
#[utoipa::path(
    get, path = "/org/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints", body = WebhookListResponse),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages webhooks"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn list_webhooks(state: web::Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let endpoints = state.api.list_webhooks(&caller.0).await?;
    Ok(HttpResponse::Ok()
        .json(WebhookListResponse { webhooks: endpoints.into_iter().map(WebhookResponse::from).collect() }))
}

/// Remove a webhook endpoint: nothing more is sent to it.
#[utoipa::path(
    delete, path = "/org/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages webhooks"),
        (status = 404, description = "The organization has no endpoint with this id"),
        (status = 422, description = "The id is not a UUID"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn delete_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.api.delete_webhook(&caller.0, webhook_id(&id)?, &state.context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Give a webhook endpoint a new signing secret, shown in this answer only; the next
/// delivery is signed with it and the old one signs nothing more.
#[utoipa::path(
    post, path = "/org/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, shown this once", body = WebhookSecretResponse),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages webhooks"),
        (status = 404, description = "The organization has no endpoint with this id"),
        (status = 422, description = "The id is not a UUID"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn rotate_webhook_secret(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let secret = state.api.rotate_webhook_secret(&caller.0, webhook_id(&id)?, &state.context(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WebhookSecretResponse { secret: secret.expose().expose_secret().to_owned() }))
}

/// A webhook endpoint's latest delivery attempts (at most 100), newest first: the event,
/// the attempt number, the status the endpoint answered or why it did not, and whether the
/// event was delivered, will be retried (and when) or failed for good.
#[utoipa::path(
    get, path = "/org/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The attempts", body = DeliveryListResponse),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Called with an API key: only the admin's session manages webhooks"),
        (status = 404, description = "The organization has no endpoint with this id"),
        (status = 422, description = "The id is not a UUID"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn webhook_deliveries(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let records = state.api.webhook_deliveries(&caller.0, webhook_id(&id)?).await?;
    Ok(HttpResponse::Ok()
        .json(DeliveryListResponse { deliveries: records.into_iter().map(DeliveryResponse::from).collect() }))
}

/// Where the caller's organization's data lives and how its applications reach it: the
/// placement, the cluster's connection string without the service's credentials, the
/// database and collection, and for `shared` placements the tenant field and value.
#[utoipa::path(
    get, path = "/org/connection", tag = "organizations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Connection details", body = ConnectionResponse),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 404, description = "The organization is gone"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn connection(state: web::Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let location = state.api.connection(&caller.0).await?;
    Ok(HttpResponse::Ok().json(ConnectionResponse::from(location)))
}

/// Create the caller's organization's database user, or give it a new password: a user
/// whose only role is read-write on the organization's own database. The password is
/// shown in this answer only; the previous one is refused from now on (connections that
/// authenticated with it before stay open, as MongoDB keeps them). Only for organizations
/// placed in a database of their own, where the deployment enables it.
#[utoipa::path(
    post, path = "/org/connection/credentials", tag = "organizations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The database user and its new password, shown this once",
            body = DatabaseCredentialsResponse),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 409, description = "Credentials are not enabled, or the organization's placement shares its \
            database with other organizations (MongoDB isolates users per database)"),
        (status = 503, description = "Store or the organization's cluster unavailable"),
    )
)]
pub(crate) async fn rotate_credentials(
    state: web::Data<AppState>,
    caller: Authenticated,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let credentials = state.api.rotate_credentials(&caller.0, &state.context(&request)).await?;
    Ok(HttpResponse::Ok().json(DatabaseCredentialsResponse::from(credentials)))
}

/// Rename the caller's organization and/or change its admin's email or password, all or none.
#[utoipa::path(
    put, path = "/org/update", tag = "organizations",
    request_body = UpdateOrganizationBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated organization", body = OrganizationResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 409, description = "The new name's key or the new email is taken"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "Body is not JSON"),
        (status = 422, description = "Invalid fields, or none given"),
        (status = 503, description = "Store or hashing unavailable"),
    )
)]
pub(crate) async fn update_organization(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    JsonBody(body): JsonBody<UpdateOrganizationBody>,
) -> Result<HttpResponse, ApiError> {
    let view = state.api.update(&caller.0, body.parse()?, &state.context(&req)).await?;
    Ok(HttpResponse::Ok().json(OrganizationResponse::from(view)))
}

/// Delete the caller's organization, its admin and its tenant collection.
#[utoipa::path(
    delete, path = "/org/delete", tag = "organizations",
    params(OrganizationNameQuery),
    request_body(content = Option<DeleteOrganizationBody>, description = "Alternative to the query parameter"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed JSON body, or the query string and the body name different organizations"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Not the token's organization"),
        (status = 404, description = "No organization has this name"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "Body is not JSON"),
        (status = 422, description = "Missing or invalid organization_name"),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn delete_organization(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    query: web::Query<OrganizationNameQuery>,
    OptionalJsonBody(body): OptionalJsonBody<DeleteOrganizationBody>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_delete_target(query.into_inner().organization_name, body.and_then(|b| b.organization_name))?;
    state.api.delete(&caller.0, &name, &state.context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = HealthResponse)))]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok".to_owned() })
}

/// Readiness: the store answers.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, body = HealthResponse),
        (status = 503, description = "Store unavailable"),
    )
)]
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.api.ready().await.map_err(|e| match e {
        domain::StoreError::Unavailable(e) | domain::StoreError::Unknown(e) => ApiError::Unavailable(e),
    })?;
    Ok(HttpResponse::Ok().json(HealthResponse { status: "ok".to_owned() }))
}

/// Prometheus metrics, text format: HTTP requests and latency by route template, in-flight
/// requests, password hashing queue, store latency by operation, organizations, security
/// events (failed logins, lockouts).
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, description = "A metrics token is configured and the request does not carry it"),
    )
)]
pub(crate) async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(token) = &state.policy.metrics.token {
        let presented = crate::auth::bearer_token(&req).unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
            return ApiError::Unauthorized { detail: "the metrics token is missing or wrong", invalid_token: false }
                .error_response();
        }
    }
    // A store outage must not hide the other metrics: the count is simply not refreshed.
    match state.api.organization_count().await {
        Ok(count) => state.metrics.organizations.set(i64::try_from(count).unwrap_or(i64::MAX)),
        Err(error) => tracing::warn!(error = %error, "could not count organizations for /metrics"),
    }
    let mut text = String::new();
    if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&state.registry.gather(), &mut text) {
        return ApiError::Internal(anyhow::anyhow!("encoding metrics: {error}")).error_response();
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text)
}

/// Compares two secrets in time that depends on their lengths only, not on where they
/// differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn not_found() -> HttpResponse {
    ApiError::NotFound("no such endpoint".to_owned()).error_response()
}
