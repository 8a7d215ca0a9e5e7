//! Request and response bodies. Request fields are all optional strings so that a missing
//! or mistyped field is reported by name; the handlers parse them into domain values.
//! Bodies that hold passwords do not implement `Debug`, so they cannot be logged.

use chrono::{DateTime, Utc};
use domain::{Email, OrganizationName, Password};
use ports::{
    CreateOrganizationRequest, CreatedOrganization, LoginRequest, OrganizationView, UpdateOrganizationRequest,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::extract::FieldErrors;
use crate::problem::ApiError;

/// `POST /org/create` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"organization_name": "Acme Corp", "email": "admin@acme.example", "password": "correct horse battery"}))]
pub struct CreateOrganizationBody {
    /// The organization's name: 1 to 64 characters with at least one letter or digit.
    #[schema(required = true, nullable = false, min_length = 1, max_length = 64)]
    pub organization_name: Option<String>,
    /// The admin's email, case-insensitive.
    #[schema(required = true, nullable = false, format = Email)]
    pub email: Option<String>,
    /// The admin's password: 8 to 128 characters.
    #[schema(required = true, nullable = false, min_length = 8, max_length = 128, format = Password)]
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
    /// The admin's password.
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

/// `PUT /org/update` body: at least one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"organization_name": "Acme Industries"}))]
pub struct UpdateOrganizationBody {
    /// The organization's new name.
    #[schema(nullable = false, min_length = 1, max_length = 64)]
    pub organization_name: Option<String>,
    /// The admin's new email.
    #[schema(nullable = false, format = Email)]
    pub email: Option<String>,
    /// The admin's new password: 8 to 128 characters.
    #[schema(nullable = false, min_length = 8, max_length = 128, format = Password)]
    pub password: Option<String>,
}

impl UpdateOrganizationBody {
    pub(crate) fn parse(self) -> Result<UpdateOrganizationRequest, ApiError> {
        let mut errors = FieldErrors::default();
        if self.organization_name.is_none() && self.email.is_none() && self.password.is_none() {
            errors.push("body", "must contain at least one of organization_name, email, password");
        }
        let name = errors.optional("organization_name", self.organization_name, |s| OrganizationName::parse(&s));
        let email = errors.optional("email", self.email, |s| Email::parse(&s));
        let password = errors.optional("password", self.password, Password::parse);
        errors.finish(UpdateOrganizationRequest::new(name, email, password))
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
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// Its admin's email: only present for a request authenticated as that admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
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
            admin_email: view.admin_email.map(|e| e.as_str().to_owned()),
        }
    }
}

/// `POST /admin/login` response.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (a JWT), for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Health check response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` when healthy.
    #[schema(example = "ok")]
    pub status: String,
}
