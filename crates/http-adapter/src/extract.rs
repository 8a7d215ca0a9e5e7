//! Request extractors that fail with problem+json: JSON bodies whose errors name the field
//! at fault, and the 64 KiB body limit as a 413.

use std::future::Future;
use std::pin::Pin;

use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::problem::{ApiError, ProblemField};

/// A JSON request body. Unlike `web::Json`, a wrong type or an unknown field is a 422 that
/// names the field, and malformed JSON is a 400; both are problem+json.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = is_json(req);
        let body = read_body(req, payload);
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType);
            }
            let bytes = body.await?;
            parse_json(&bytes).map(JsonBody)
        })
    }
}

/// An optional JSON body: absent (empty) or `null` is `None`, anything else must parse.
pub(crate) struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = is_json(req);
        let body = read_body(req, payload);
        Box::pin(async move {
            let bytes = body.await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJsonBody(None));
            }
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType);
            }
            // The documented body is optional (nullable): a JSON `null` is no body.
            if bytes.trim_ascii() == b"null" {
                return Ok(OptionalJsonBody(None));
            }
            parse_json(&bytes).map(|v| OptionalJsonBody(Some(v)))
        })
    }
}

/// A body must say it is JSON (`application/json` or a `+json` type). A body without a
/// content type is refused rather than guessed at: a proxy, a cache or a browser (a form
/// posted cross-site is sent without preflight) may read such a body differently.
fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else { return false };
    let Ok(value) = value.to_str() else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the whole body within the policy's body timeout: a client that sends its headers
/// and then stalls gets 408 and loses the connection instead of holding it and its buffers.
fn read_body(req: &HttpRequest, payload: &mut Payload) -> impl Future<Output = Result<web::Bytes, ApiError>> + use<> {
    let timeout = req
        .app_data::<web::Data<crate::AppState>>()
        .map_or_else(|| crate::HttpPolicy::default().body_timeout, |state| state.policy.body_timeout);
    let body = web::Bytes::from_request(req, payload);
    async move {
        match tokio::time::timeout(timeout, body).await {
            Ok(read) => read.map_err(body_error),
            Err(_) => Err(ApiError::BodyTimeout),
        }
    }
}

fn body_error(error: actix_web::Error) -> ApiError {
    match error.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::PayloadTooLarge,
        _ => ApiError::MalformedJson(error.to_string()),
    }
}

/// Parses a JSON object, keeping the path of the field at fault.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde accepts a struct written as an array of its fields; the API only takes objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(_) => ApiError::Validation(vec![ProblemField::new("body", "must be a JSON object")]),
            Err(e) => ApiError::MalformedJson(e.to_string()),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            Category::Data => {
                let field = if path == "." || path.is_empty() { "body".to_owned() } else { path };
                ApiError::Validation(vec![ProblemField::new(field, without_position(&inner))])
            }
            Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    deserializer.end().map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// serde_json's message without its " at line L column C" suffix.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// Collects every invalid field of a request so that one response lists them all.
#[derive(Default)]
pub(crate) struct FieldErrors(Vec<ProblemField>);

impl FieldErrors {
    /// Parses a required field, recording why it is missing or invalid.
    pub(crate) fn required<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        value: Option<String>,
        parse: impl FnOnce(String) -> Result<T, E>,
    ) -> Option<T> {
        match value {
            None => {
                self.0.push(ProblemField::new(field, "is required"));
                None
            }
            some => self.optional(field, some, parse),
        }
    }

    /// Parses an optional field, recording why it is invalid.
    pub(crate) fn optional<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        value: Option<String>,
        parse: impl FnOnce(String) -> Result<T, E>,
    ) -> Option<T> {
        match parse(value?) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.0.push(ProblemField::new(field, error.to_string()));
                None
            }
        }
    }

    /// Parses a field that may be absent (`None`) but not `null` (`Some(None)`).
    pub(crate) fn not_null<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        value: Option<Option<String>>,
        parse: impl FnOnce(String) -> Result<T, E>,
    ) -> Option<T> {
        match value {
            Some(None) => {
                self.0.push(ProblemField::new(field, "must not be null; leave it out to keep the current value"));
                None
            }
            other => self.optional(field, other.flatten(), parse),
        }
    }

    /// Records a rule that involves the request as a whole, or a field parsed by hand.
    pub(crate) fn push(&mut self, field: &str, message: &str) {
        self.0.push(ProblemField::new(field, message));
    }

    /// Whether no field was rejected so far.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parsed request, or every recorded error. A missing value with no recorded error
    /// would be a bug in the caller, reported as such rather than as the client's fault.
    pub(crate) fn finish<T>(self, parsed: Option<T>) -> Result<T, ApiError> {
        match parsed {
            _ if !self.0.is_empty() => Err(ApiError::Validation(self.0)),
            Some(parsed) => Ok(parsed),
            None => Err(ApiError::Internal(anyhow::anyhow!("a field was rejected without a reason"))),
        }
    }
}
