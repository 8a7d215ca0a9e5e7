//! Request and response bodies. Request fields are all optional strings so that a missing
//! or mistyped field is reported by name; the handlers parse them into domain values.
//! Bodies that hold passwords do not implement `Debug`, so they cannot be logged.

use chrono::{DateTime, Utc};
use domain::{
    ApiKey, ApiKeyName, AuditAction, Email, Endpoint, EventFilter, EventId, OrganizationName, Password, Scopes,
};
use ports::{
    AuditPage, AuditQuery, CreateApiKeyRequest, CreateOrganizationRequest, CreateWebhookRequest, CreatedApiKey,
    CreatedOrganization, CreatedWebhook, DeliveryRecord, LoginRequest, OrganizationView, SessionTokens,
    UpdateOrganizationRequest,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::extract::FieldErrors;
use crate::problem::{ApiError, ProblemField};

/// What the schema says of an organization name: no control or invisible formatting
/// characters, and at least one letter or digit (`[^\W_]` in the Unicode sense). The
/// domain's rule (`OrganizationName::parse`) is the reference; this is its description
/// for clients and contract testers.
pub(crate) const NAME_PATTERN: &str = concat!("^", name_char!(), "*[^\\W_]", name_char!(), "*$");

/// A character an organization name may hold (the domain's `is_forbidden`, negated).
macro_rules! name_char {
    () => {
        "[^\\x00-\\x1F\\x7F-\\x9F\\u00AD\\u061C\\u180E\\u200B-\\u200F\\u2028-\\u202E\\u2060-\\u206F\\uFEFF\\uFFF9-\\uFFFB]"
    };
}
use name_char;

/// `POST /org/create` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"organization_name": "Acme Corp", "email": "admin@acme.example", "password": "correct horse battery"}))]
pub struct CreateOrganizationBody {
    /// The organization's name: 1 to 64 characters with at least one letter or digit.
    #[schema(required = true, nullable = false)]
    pub organization_name: Option<String>,
    /// The admin's email, case-insensitive.
    #[schema(required = true, nullable = false, format = Email)]
    pub email: Option<String>,
    /// The admin's password: 8 to 128 characters.
    #[schema(required = true, nullable = false, format = Password)]
    pub password: Option<String>,
}

impl CreateOrganizationBody {
    pub(crate) fn parse(self) -> Result<CreateOrganizationRequest, ApiError> {
        let mut errors = FieldErrors::default();
        let name = errors.required("organization_name", self.organization_name, |s| OrganizationName::parse(&s));
        let email = errors.required("email", self.email, |s| Email::parse(&s));
        let password = errors.required("password", self.password, Password::parse);
        errors.finish(name.zip(email).zip(password).map(|((name, email), password)| CreateOrganizationRequest {
            name,
            email,
            password,
        }))
    }
}

/// `POST /admin/login` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "admin@acme.example", "password": "correct horse battery"}))]
pub struct LoginBody {
    /// The admin's email, case-insensitive.
    #[schema(required = true, nullable = false, format = Email)]
    pub email: Option<String>,
    /// The admin's password: 8 to 128 characters.
    #[schema(required = true, nullable = false, format = Password)]
    pub password: Option<String>,
}

impl LoginBody {
    pub(crate) fn parse(self) -> Result<LoginRequest, ApiError> {
        let mut errors = FieldErrors::default();
        let email = errors.required("email", self.email, |s| Email::parse(&s));
        let password = errors.required("password", self.password, Password::parse);
        errors.finish(email.zip(password).map(|(email, password)| LoginRequest { email, password }))
    }
}

/// `PUT /org/update` body: at least one field. A field may be absent but not `null`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"organization_name": "Acme Industries"}))]
pub struct UpdateOrganizationBody {
    /// The organization's new name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, nullable = false)]
    pub organization_name: Option<Option<String>>,
    /// The admin's new email.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, nullable = false, format = Email)]
    pub email: Option<Option<String>>,
    /// The admin's new password: 8 to 128 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, nullable = false, format = Password)]
    pub password: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl UpdateOrganizationBody {
    pub(crate) fn parse(self) -> Result<UpdateOrganizationRequest, ApiError> {
        let mut errors = FieldErrors::default();
        let name = errors.not_null("organization_name", self.organization_name, |s| OrganizationName::parse(&s));
        let email = errors.not_null("email", self.email, |s| Email::parse(&s));
        let password = errors.not_null("password", self.password, Password::parse);
        // The rule that an update changes something is the request's own; this only names
        // it when nothing else was wrong.
        let request = UpdateOrganizationRequest::new(name, email, password);
        if request.is_none() && errors.is_empty() {
            errors.push("body", "must contain at least one of organization_name, email, password");
        }
        errors.finish(request)
    }
}

/// The organization named in a query string.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrganizationNameQuery {
    /// The organization's name; any spelling with the same key matches.
    #[param(required = true, nullable = false)]
    pub organization_name: Option<String>,
}

/// `DELETE /org/delete` body, an alternative to the query parameter.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteOrganizationBody {
    /// The name of the organization to delete.
    #[schema(required = true, nullable = false)]
    pub organization_name: Option<String>,
}

/// Parses the `organization_name` given in a query string or body.
pub(crate) fn parse_organization_name(value: Option<String>) -> Result<OrganizationName, ApiError> {
    let mut errors = FieldErrors::default();
    let name = errors.required("organization_name", value, |s| OrganizationName::parse(&s));
    errors.finish(name)
}

/// The organization a delete names, in the query string or the body. Naming two different
/// organizations (different keys) is refused rather than resolved by a precedence rule that
/// a client could get wrong: a delete must never hit the other one.
pub(crate) fn parse_delete_target(query: Option<String>, body: Option<String>) -> Result<OrganizationName, ApiError> {
    let (query, body) = match (query, body) {
        (Some(query), Some(body)) => (parse_organization_name(Some(query))?, parse_organization_name(Some(body))?),
        (query, body) => return parse_organization_name(query.or(body)),
    };
    if query.key() != body.key() {
        let rule = "the query string and the body name different organizations; name one";
        return Err(ApiError::ConflictingFields(vec![
            ProblemField::new("query.organization_name", rule),
            ProblemField::new("body.organization_name", rule),
        ]));
    }
    Ok(query)
}

/// An admin as shown on creation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminSummary {
    /// The admin's immutable id.
    pub id: Uuid,
    /// The admin's email, lowercase.
    pub email: String,
}

/// `POST /org/create` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedOrganizationResponse {
    /// The organization's immutable id.
    pub organization_id: Uuid,
    /// Its display name.
    pub organization_name: String,
    /// Its tenant collection.
    #[schema(example = "org_acme_corp")]
    pub collection_name: String,
    /// Its admin.
    pub admin: AdminSummary,
    /// When it was created.
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

impl From<CreatedOrganization> for CreatedOrganizationResponse {
    fn from(created: CreatedOrganization) -> Self {
        let org = created.organization;
        Self {
            organization_id: org.id.as_uuid(),
            organization_name: org.name.as_str().to_owned(),
            collection_name: org.collection.as_str().to_owned(),
            admin: AdminSummary { id: org.admin_id.as_uuid(), email: created.admin_email.as_str().to_owned() },
            created_at: org.created_at,
        }
    }
}

/// An organization, as `GET /org/get` and `PUT /org/update` return it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrganizationResponse {
    /// The organization's immutable id.
    pub organization_id: Uuid,
    /// Its display name.
    pub organization_name: String,
    /// Its tenant collection.
    pub collection_name: String,
    /// When it was created.
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    #[serde(with = "timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Its admin's email: only present for a request authenticated as that admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    /// Where its data lives: only present for a request authenticated as its admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSummary>,
}

/// An organization's placement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlacementSummary {
    /// `collection`, `database` or `shared`.
    #[schema(example = "collection")]
    pub kind: String,
    /// The cluster holding the data.
    #[schema(example = "main")]
    pub cluster: String,
}

/// `GET /org/connection` response: where the organization's data lives and how its
/// applications reach it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionResponse {
    /// `collection`, `database` or `shared`.
    #[schema(example = "collection")]
    pub placement: String,
    /// The cluster's name.
    #[schema(example = "main")]
    pub cluster: String,
    /// The cluster's connection string, without any credentials of the service.
    #[schema(example = "mongodb://db-0,db-1,db-2/?replicaSet=rs0")]
    pub uri: String,
    /// The database holding the data.
    pub database: String,
    /// The collection holding the data.
    pub collection: String,
    /// For `shared`: the field each of the organization's documents carries (null otherwise).
    pub tenant_field: Option<String>,
    /// For `shared`: that field's value, the organization's id (null otherwise).
    pub tenant_id: Option<String>,
}

/// `POST /org/connection/credentials` response: the organization's database user and its
/// new password, shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DatabaseCredentialsResponse {
    /// The user name.
    #[schema(example = "orgsvc_u_0190c5a47c5e7b6a9d2e3f4a5b6c7d8e")]
    pub username: String,
    /// The new password. It is not stored by the service and cannot be shown again.
    pub password: String,
    /// The database the user authenticates against (`authSource`).
    #[schema(example = "orgsvc_t_0190c5a47c5e7b6a9d2e3f4a5b6c7d8e")]
    pub auth_source: String,
}

impl std::fmt::Debug for DatabaseCredentialsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCredentialsResponse")
            .field("username", &self.username)
            .field("auth_source", &self.auth_source)
            .finish_non_exhaustive()
    }
}

impl From<domain::DatabaseCredentials> for DatabaseCredentialsResponse {
    fn from(credentials: domain::DatabaseCredentials) -> Self {
        Self {
            password: credentials.password.expose().to_owned(),
            username: credentials.user.username,
            auth_source: credentials.user.auth_source,
        }
    }
}

impl From<domain::TenantLocation> for ConnectionResponse {
    fn from(location: domain::TenantLocation) -> Self {
        let (tenant_field, tenant_id) = location.tenant_filter.unzip();
        Self {
            placement: location.placement.kind.as_str().to_owned(),
            cluster: location.placement.cluster.to_string(),
            uri: location.uri,
            database: location.database,
            collection: location.collection,
            tenant_field,
            tenant_id,
        }
    }
}

impl From<OrganizationView> for OrganizationResponse {
    fn from(view: OrganizationView) -> Self {
        let org = view.organization;
        Self {
            organization_id: org.id.as_uuid(),
            organization_name: org.name.as_str().to_owned(),
            collection_name: org.collection.as_str().to_owned(),
            created_at: org.created_at,
            updated_at: org.updated_at,
            placement: view.admin_email.is_some().then(|| PlacementSummary {
                kind: org.placement.kind.as_str().to_owned(),
                cluster: org.placement.cluster.to_string(),
            }),
            admin_email: view.admin_email.map(|e| e.as_str().to_owned()),
        }
    }
}

/// `POST /admin/login` and `POST /admin/refresh` response.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (a JWT), for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token: opaque, single use, exchanged at `POST /admin/refresh`.
    pub refresh_token: String,
}

impl From<SessionTokens> for TokenResponse {
    fn from(tokens: SessionTokens) -> Self {
        Self {
            access_token: tokens.access.token.expose_secret().to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: tokens.access.expires_in,
            refresh_token: tokens.refresh_token.expose_secret().to_owned(),
        }
    }
}

/// `POST /admin/refresh` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token from the last login or refresh.
    #[schema(required = true, nullable = false, min_length = 1, max_length = 256)]
    pub refresh_token: Option<String>,
}

/// The longest refresh token accepted; ours are 64 characters.
const MAX_REFRESH_TOKEN_LEN: usize = 256;

impl RefreshBody {
    pub(crate) fn parse(self) -> Result<SecretString, ApiError> {
        let mut errors = FieldErrors::default();
        let token = errors.required("refresh_token", self.refresh_token, |s| {
            if s.is_empty() || s.len() > MAX_REFRESH_TOKEN_LEN {
                Err(format!("must be 1 to {MAX_REFRESH_TOKEN_LEN} characters"))
            } else {
                Ok(SecretString::from(s))
            }
        });
        errors.finish(token)
    }
}

/// `GET /org/audit` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQueryParams {
    /// Events per page, 1 to 100 (default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only events of this action, such as `login.failed`.
    pub action: Option<String>,
}

/// The most events per page.
pub(crate) const MAX_AUDIT_PAGE: usize = 100;

impl AuditQueryParams {
    pub(crate) fn parse(self) -> Result<AuditQuery, ApiError> {
        let mut errors = FieldErrors::default();
        let limit = errors
            .optional("limit", self.limit, |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
                    .ok_or_else(|| format!("must be an integer from 1 to {MAX_AUDIT_PAGE}"))
            })
            .unwrap_or(50);
        let before = errors.optional("cursor", self.cursor, |s| {
            EventId::parse(&s).map_err(|_| "must be a next_cursor returned by this endpoint".to_owned())
        });
        let action = errors.optional("action", self.action, |s| {
            s.parse::<AuditAction>().map_err(|_| {
                let all: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                format!("must be one of {}", all.join(", "))
            })
        });
        errors.finish(Some(AuditQuery { action, before, limit }))
    }
}

/// One audit event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventResponse {
    /// The event's id.
    pub id: Uuid,
    /// When it happened.
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
    /// What happened, such as `login.failed`.
    #[schema(example = "login.failed")]
    pub action: String,
    /// The organization.
    pub organization_id: Option<Uuid>,
    /// The admin who acted or was concerned, when known.
    pub actor_id: Option<Uuid>,
    /// The API key that acted for the admin, when one did.
    pub api_key_id: Option<Uuid>,
    /// The client's address.
    pub ip: Option<String>,
    /// The request's id (the `X-Request-Id` of its response).
    pub request_id: Option<String>,
    /// `success`, `failure` or `denied`.
    #[schema(example = "success")]
    pub outcome: String,
}

/// `GET /org/audit` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPageResponse {
    /// Events, newest first.
    pub events: Vec<AuditEventResponse>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<AuditPage> for AuditPageResponse {
    fn from(page: AuditPage) -> Self {
        Self {
            events: page
                .events
                .into_iter()
                .map(|e| AuditEventResponse {
                    id: e.id.as_uuid(),
                    at: e.at,
                    action: e.action.as_str().to_owned(),
                    organization_id: e.organization_id.map(|id| id.as_uuid()),
                    actor_id: e.actor_id.map(|id| id.as_uuid()),
                    api_key_id: e.api_key_id.map(|id| id.as_uuid()),
                    ip: e.ip,
                    request_id: e.request_id,
                    outcome: e.outcome.as_str().to_owned(),
                })
                .collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }
    }
}

/// `POST /org/api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "billing service", "scopes": ["org:read", "audit:read"], "expires_at": "2027-01-01T00:00:00Z"}))]
pub struct CreateApiKeyBody {
    /// What the admin calls the key: 1 to 100 characters, no control characters.
    #[schema(required = true, nullable = false)]
    pub name: Option<String>,
    /// What the key may do: one or more of `org:read`, `org:write`, `audit:read`.
    #[schema(required = true, nullable = false, min_items = 1)]
    pub scopes: Option<Vec<String>>,
    /// When the key stops working (RFC 3339, in the future); never, if absent.
    #[schema(format = DateTime, nullable = false)]
    pub expires_at: Option<String>,
}

impl CreateApiKeyBody {
    pub(crate) fn parse(self) -> Result<CreateApiKeyRequest, ApiError> {
        let mut errors = FieldErrors::default();
        let name = errors.required("name", self.name, |s| ApiKeyName::parse(&s));
        let scopes = match self.scopes {
            None => {
                errors.push("scopes", "is required");
                None
            }
            Some(names) => match Scopes::parse(names.iter().map(String::as_str)) {
                Ok(scopes) => Some(scopes),
                Err(error) => {
                    errors.push("scopes", &error.to_string());
                    None
                }
            },
        };
        let expires_at = errors.optional("expires_at", self.expires_at.clone(), |s| {
            DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|_| "must be an RFC 3339 date-time")
        });
        let expiry_ok = self.expires_at.is_none() || expires_at.is_some();
        errors.finish(name.zip(scopes).filter(|_| expiry_ok).map(|(name, scopes)| CreateApiKeyRequest {
            name,
            scopes,
            expires_at,
        }))
    }
}

/// An API key, without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyResponse {
    /// The key's id, to revoke it.
    pub id: Uuid,
    /// What the admin calls it.
    pub name: String,
    /// What it may do.
    #[schema(example = json!(["org:read"]))]
    pub scopes: Vec<String>,
    /// The key's first characters, to tell it apart.
    #[schema(example = "osk_3fK9aZ")]
    pub prefix: String,
    /// When it was created.
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it stops working; never, if null.
    #[serde(with = "optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used, to within a minute; never, if null.
    #[serde(with = "optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyResponse {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id.as_uuid(),
            name: key.name.as_str().to_owned(),
            scopes: key.scopes.names().into_iter().map(str::to_owned).collect(),
            prefix: key.prefix,
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// `GET /org/api-keys` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyListResponse {
    /// The keys, oldest first.
    pub keys: Vec<ApiKeyResponse>,
}

/// `POST /org/api-keys` response: the key itself, shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    /// The key, to send as `Authorization: Bearer <key>`. It cannot be shown again.
    #[schema(example = "osk_3fK9aZ...")]
    pub key: String,
    /// The key as lists show it.
    #[serde(flatten)]
    pub details: ApiKeyResponse,
}

impl std::fmt::Debug for CreatedApiKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKeyResponse").field("details", &self.details).finish_non_exhaustive()
    }
}

impl From<CreatedApiKey> for CreatedApiKeyResponse {
    fn from(created: CreatedApiKey) -> Self {
        Self { key: created.secret.expose().expose_secret().to_owned(), details: ApiKeyResponse::from(created.key) }
    }
}

/// Health check response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` when healthy.
    #[schema(example = "ok")]
    pub status: String,
}

/// The one format of every time the API returns: RFC 3339 in UTC with exactly three
/// fractional digits (`2026-11-26T12:00:34.000Z`). chrono's default drops the fraction
/// when it is zero, so two instants of the same second would not compare as strings do.
/// An optional timestamp, formatted as [`timestamp`] does, or null.
pub(crate) mod optional_timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_str(&super::timestamp::format(at)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(deserializer)
    }
}

pub(crate) mod timestamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats `at` as RFC 3339 UTC with milliseconds; finer digits are dropped.
    pub(crate) fn format(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub(crate) fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(at))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(deserializer)
    }

    #[cfg(test)]
    mod tests {
        use chrono::TimeZone;

        use super::*;

        #[test]
        fn always_three_fractional_digits_in_utc() {
            let second = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 34).single().expect("valid");
            let check = |nanos: i64, expected: &str| {
                assert_eq!(format(&(second + chrono::Duration::nanoseconds(nanos))), expected);
            };
            check(0, "2026-11-26T12:00:34.000Z");
            check(4_000_000, "2026-11-26T12:00:34.004Z");
            check(120_000_000, "2026-11-26T12:00:34.120Z");
            check(999_999_999, "2026-11-26T12:00:34.999Z");
        }
    }
}

/// `POST /org/webhooks` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/orgsvc", "events": ["organization.renamed", "organization.deleted"]}))]
pub struct CreateWebhookBody {
    /// Where deliveries go: an https URL (http only where the deployment allows private
    /// addresses) on a public address, without credentials or a fragment; at most 2048
    /// characters.
    #[schema(required = true, nullable = false)]
    pub url: Option<String>,
    /// The event types it receives (dotted names such as `organization.renamed`), or
    /// `["*"]` for all, including types added later.
    #[schema(required = true, nullable = false, min_items = 1)]
    pub events: Option<Vec<String>>,
}

impl CreateWebhookBody {
    pub(crate) fn parse(self) -> Result<CreateWebhookRequest, ApiError> {
        let mut errors = FieldErrors::default();
        let url = errors.required("url", self.url, Ok::<_, std::convert::Infallible>);
        let events = match self.events {
            None => {
                errors.push("events", "is required");
                None
            }
            Some(names) => match EventFilter::parse(names.iter().map(String::as_str)) {
                Ok(filter) => Some(filter),
                Err(error) => {
                    errors.push("events", &error.to_string());
                    None
                }
            },
        };
        errors.finish(url.zip(events).map(|(url, events)| CreateWebhookRequest { url, events }))
    }
}

/// A webhook endpoint, without its signing secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookResponse {
    /// The endpoint's id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The event types it receives, or `["*"]`.
    #[schema(example = json!(["organization.renamed"]))]
    pub events: Vec<String>,
    /// When it was registered.
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

impl From<Endpoint> for WebhookResponse {
    fn from(endpoint: Endpoint) -> Self {
        Self {
            id: endpoint.id.as_uuid(),
            url: endpoint.url.as_str().to_owned(),
            events: endpoint.events.names().into_iter().map(str::to_owned).collect(),
            created_at: endpoint.created_at,
        }
    }
}

/// `GET /org/webhooks` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookListResponse {
    /// The endpoints, oldest first.
    pub webhooks: Vec<WebhookResponse>,
}

/// `POST /org/webhooks` response: the endpoint and its signing secret, shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhookResponse {
    /// The Standard Webhooks signing secret (`whsec_` and base64), to verify the
    /// `webhook-signature` header of every delivery. It cannot be shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
    /// The endpoint as lists show it.
    #[serde(flatten)]
    pub details: WebhookResponse,
}

impl std::fmt::Debug for CreatedWebhookResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhookResponse").field("details", &self.details).finish_non_exhaustive()
    }
}

impl From<CreatedWebhook> for CreatedWebhookResponse {
    fn from(created: CreatedWebhook) -> Self {
        Self {
            secret: created.secret.expose().expose_secret().to_owned(),
            details: WebhookResponse::from(created.endpoint),
        }
    }
}

/// `POST /org/webhooks/{id}/rotate-secret` response.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WebhookSecretResponse {
    /// The new signing secret, shown this once; the next delivery is signed with it.
    pub secret: String,
}

impl std::fmt::Debug for WebhookSecretResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecretResponse").finish_non_exhaustive()
    }
}

/// One delivery attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryResponse {
    /// The event's id: the `webhook-id` header sent.
    pub event_id: Uuid,
    /// The event's type.
    pub event_type: String,
    /// Which attempt at this event it was, from 1.
    pub attempt: u32,
    /// When it was made.
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
    /// The HTTP status the endpoint answered, if it answered.
    pub status: Option<u16>,
    /// Why there was no answer (refused address, timeout, connection refused), if there
    /// was none.
    pub error: Option<String>,
    /// `delivered`, `retrying` or `failed` (given up after about a day of retries).
    #[schema(example = "delivered")]
    pub outcome: String,
    /// When the next attempt is due, while retrying.
    #[serde(with = "optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// How long the request took, in milliseconds.
    pub duration_ms: u64,
}

impl From<DeliveryRecord> for DeliveryResponse {
    fn from(record: DeliveryRecord) -> Self {
        Self {
            event_id: record.event_id.as_uuid(),
            event_type: record.event_type.as_str().to_owned(),
            attempt: record.attempt,
            at: record.at,
            status: record.result.status(),
            error: record.result.error().map(str::to_owned),
            outcome: record.next.as_str().to_owned(),
            next_attempt_at: record.next.retry_at(),
            duration_ms: record.duration_ms,
        }
    }
}

/// `GET /org/webhooks/{id}/deliveries` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryListResponse {
    /// The latest attempts (at most 100), newest first.
    pub deliveries: Vec<DeliveryResponse>,
}
