//! Bearer authentication. A protected handler takes [`Authenticated`]: the token (an access
//! token or an API key) is verified and its admin and organization are checked to still
//! exist on every request, so a deleted organization's tokens stop working at once. A wrong,
//! revoked or expired API key gets the same 401 as a bad token, and is counted against the
//! client's address like a failed login: once its login allowance is spent, it gets 429.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use ports::{AuthError, Principal};

use crate::problem::ApiError;
use crate::{AppState, Limited};

/// The caller of a protected endpoint.
pub(crate) struct Authenticated(pub Principal);

/// The caller of a public endpoint that shows more to an authenticated admin: anonymous
/// when there is no token or an unusable one.
pub(crate) struct MaybeAuthenticated(pub Option<Principal>);

/// The token of an `Authorization: Bearer` header, if there is one.
pub(crate) fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Authenticates `token`; a refused API key takes one request from the client's login
/// allowance, and is answered 429 once that is spent.
async fn authenticate(state: &AppState, req: &HttpRequest, token: &str) -> Result<Principal, ApiError> {
    match state.api.authenticate(token).await {
        Err(AuthError::InvalidToken) if domain::ApiKeySecret::is_meant(token) => {
            state.limit(Limited::Login, req)?;
            Err(AuthError::InvalidToken.into())
        }
        other => Ok(other?),
    }
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("app state missing")))
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = state(req);
        let req = req.clone();
        Box::pin(async move {
            let Some(token) = token else {
                return Err(ApiError::Unauthorized { detail: "a bearer token is required", invalid_token: false });
            };
            let state = state?;
            Ok(Authenticated(authenticate(&state, &req, &token).await?))
        })
    }
}

impl FromRequest for MaybeAuthenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = state(req);
        let req = req.clone();
        Box::pin(async move {
            let Some(token) = token else { return Ok(MaybeAuthenticated(None)) };
            let state = state?;
            match authenticate(&state, &req, &token).await {
                Ok(principal) => Ok(MaybeAuthenticated(Some(principal))),
                // An invalid token on a public route makes the caller anonymous.
                Err(ApiError::Unauthorized { .. }) => Ok(MaybeAuthenticated(None)),
                Err(error) => Err(error),
            }
        })
    }
}
