//! RFC 9457 problem details. Every error the API returns is one of these, as
//! `application/problem+json`; 5xx details never carry internals, which are logged instead.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A problem details body (RFC 9457).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:orgsvc:problem:validation",
    "title": "Invalid request",
    "status": 422,
    "detail": "the request has 1 invalid field",
    "errors": [{"field": "email", "message": "must be a valid email address"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem; stable, for clients to branch on.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The invalid fields, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// The request's id (also its `X-Request-Id` header): quote it when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemField {
    /// The field's name (a dotted path for nested fields).
    pub field: String,
    /// The rule it breaks.
    pub message: String,
}

impl ProblemField {
    /// A field and the rule it breaks.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Every way a request can fail, as the HTTP layer sees it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("the request has invalid fields")]
    Validation(Vec<ProblemField>),
    #[error("the request names conflicting values")]
    ConflictingFields(Vec<ProblemField>),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("the request body was not received in time")]
    BodyTimeout,
    #[error("{detail}")]
    Unauthorized { detail: &'static str, invalid_token: bool },
    #[error("{0}")]
    Forbidden(&'static str),
    /// An API key asked for something its scopes do not allow.
    #[error("{0}")]
    InsufficientScope(domain::Forbidden),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("{detail}")]
    Conflict { slug: &'static str, detail: String },
    #[error("too many requests from this address; retry later")]
    RateLimited { retry_after: std::time::Duration },
    #[error("the account is locked after too many failed logins; retry later")]
    Locked { retry_after: std::time::Duration },
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::Validation(_) => ("validation", "Invalid request"),
            Self::ConflictingFields(_) => ("conflicting-fields", "Conflicting fields"),
            Self::MalformedJson(_) => ("malformed-json", "Malformed JSON"),
            Self::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            Self::PayloadTooLarge => ("payload-too-large", "Request body too large"),
            Self::BodyTimeout => ("request-timeout", "Request timeout"),
            Self::Unauthorized { .. } => ("unauthorized", "Unauthorized"),
            Self::Forbidden(_) => ("forbidden", "Forbidden"),
            Self::InsufficientScope(_) => ("insufficient-scope", "Forbidden"),
            Self::NotFound(_) => ("not-found", "Not found"),
            Self::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            Self::Conflict { slug, .. } => (slug, "Conflict"),
            Self::RateLimited { .. } => ("rate-limited", "Too many requests"),
            Self::Locked { .. } => ("account-locked", "Account locked"),
            Self::Unavailable(_) => ("unavailable", "Service unavailable"),
            Self::Internal(_) => ("internal", "Internal server error"),
        }
    }

    pub(crate) fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let detail = match self {
            Self::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                many => format!("the request has {} invalid fields", many.len()),
            },
            Self::ConflictingFields(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("{} contradict each other", fields.join(" and "))
            }
            Self::PayloadTooLarge => format!("the request body must be at most {} bytes", crate::MAX_BODY_BYTES),
            Self::UnsupportedMediaType => "the request body must be application/json".to_owned(),
            Self::Unavailable(_) => "the service is temporarily unavailable; retry later".to_owned(),
            Self::Internal(_) => "an unexpected error occurred".to_owned(),
            other => other.to_string(),
        };
        let errors = match self {
            Self::Validation(errors) | Self::ConflictingFields(errors) => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            problem_type: format!("urn:orgsvc:problem:{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail,
            errors,
            request_id: crate::observe::current_request_id(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) | Self::ConflictingFields(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } | Self::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "request failed"),
            Self::Unavailable(cause) => tracing::warn!(error = format!("{cause:#}"), "dependency unavailable"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        match self {
            Self::Unauthorized { invalid_token: true, .. } => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
            }
            Self::Unauthorized { invalid_token: false, .. } => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::InsufficientScope(reason) => {
                // RFC 6750: the scope that would allow the request, where one would.
                let challenge = match reason.needed {
                    Some(scope) => format!(r#"Bearer error="insufficient_scope", scope="{scope}""#),
                    None => r#"Bearer error="insufficient_scope""#.to_owned(),
                };
                response.insert_header((header::WWW_AUTHENTICATE, challenge));
            }
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            Self::BodyTimeout => {
                // The rest of the body may still come; the connection cannot be reused.
                response.force_close();
            }
            Self::RateLimited { retry_after } | Self::Locked { retry_after } => {
                // Whole seconds, rounded up, at least one.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                response.insert_header((header::RETRY_AFTER, seconds.max(1).to_string()));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

impl From<actix_web::error::QueryPayloadError> for ApiError {
    fn from(error: actix_web::error::QueryPayloadError) -> Self {
        Self::Validation(vec![ProblemField::new("query", error.to_string())])
    }
}
