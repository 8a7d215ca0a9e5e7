//! HS256 access tokens. Verification pins the algorithm (a token claiming `none` or RS256
//! is refused), requires every claim this service sets, checks the issuer, and picks the
//! key by `kid` so that keys can be rotated: the first key signs, all of them verify.

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use domain::{AdminId, OrgId, SessionId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ports::{AccessToken, TokenClaims, TokenError, TokenIssuer};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

/// The shortest accepted HMAC key, in bytes (the size of the SHA-256 output).
pub const MIN_KEY_BYTES: usize = 32;

/// How far in the future a token's `iat` or `nbf` may lie, in seconds: the clock skew
/// tolerated between instances. A token issued later than that was not issued by a
/// well-behaved instance of this service.
pub const CLOCK_SKEW_LEEWAY_SECONDS: i64 = 30;

/// An HMAC key and the id that names it in token headers.
pub struct SigningKey {
    /// The key id, written in the `kid` header.
    pub kid: String,
    /// The secret.
    pub secret: SecretBox<[u8]>,
}

impl SigningKey {
    /// A key with this id and secret.
    pub fn new(kid: impl Into<String>, secret: Vec<u8>) -> Self {
        Self { kid: kid.into(), secret: SecretBox::new(secret.into_boxed_slice()) }
    }

    /// A random 256-bit key, for development runs without a configured key.
    pub fn random(kid: impl Into<String>) -> Self {
        let secret: [u8; 32] = rand::random();
        Self::new(kid, secret.to_vec())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    org_id: String,
    sid: String,
    iat: i64,
    /// Not set by this service, but honoured when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    exp: i64,
    jti: String,
    iss: String,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Issues and verifies HS256 JWTs.
pub struct JwtIssuer {
    keys: Vec<Key>,
    issuer: String,
    ttl_seconds: u64,
    validation: Validation,
}

impl std::fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("JwtIssuer")
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish()
    }
}

impl JwtIssuer {
    /// An issuer whose first key signs and whose every key verifies. Refuses an empty key
    /// list, duplicate key ids and keys shorter than [`MIN_KEY_BYTES`].
    pub fn new(keys: Vec<SigningKey>, issuer: impl Into<String>, ttl_seconds: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(!keys.is_empty(), "at least one signing key is required");
        anyhow::ensure!(ttl_seconds > 0, "the token lifetime must be positive");
        let mut built = Vec::with_capacity(keys.len());
        for key in keys {
            let secret = key.secret.expose_secret();
            anyhow::ensure!(
                secret.len() >= MIN_KEY_BYTES,
                "signing key {:?} is shorter than {MIN_KEY_BYTES} bytes",
                key.kid
            );
            anyhow::ensure!(
                !built.iter().any(|k: &Key| k.kid == key.kid),
                "signing key id {:?} is used twice",
                key.kid
            );
            built.push(Key {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                kid: key.kid,
            });
        }
        let issuer = issuer.into();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        // Expiry, `iat` and `nbf` are checked against the service's clock below, not the
        // library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Self { keys: built, issuer, ttl_seconds, validation })
    }
}

impl TokenIssuer for JwtIssuer {
    fn issue(
        &self,
        admin_id: AdminId,
        org_id: OrgId,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, TokenError> {
        let signing = &self.keys[0];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(signing.kid.clone());
        let ttl = i64::try_from(self.ttl_seconds).context("token lifetime too large")?;
        let claims = Claims {
            sub: admin_id.to_string(),
            org_id: org_id.to_string(),
            sid: session_id.to_string(),
            iat: now.timestamp(),
            nbf: None,
            exp: now.timestamp() + ttl,
            jti: uuid::Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
        };
        let token =
            jsonwebtoken::encode(&header, &claims, &signing.encoding).map_err(|e| anyhow!("signing a token: {e}"))?;
        Ok(AccessToken { token: SecretString::from(token), expires_in: self.ttl_seconds })
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<TokenClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = match header.kid {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid).ok_or(TokenError::Invalid)?,
            None => return Err(TokenError::Invalid),
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation).map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let latest_start = now.timestamp().saturating_add(CLOCK_SKEW_LEEWAY_SECONDS);
        if claims.exp <= now.timestamp()
            || claims.iat > latest_start
            || claims.nbf.is_some_and(|nbf| nbf > latest_start)
        {
            return Err(TokenError::Invalid);
        }
        Ok(TokenClaims {
            admin_id: AdminId::parse(&claims.sub).map_err(|_| TokenError::Invalid)?,
            org_id: OrgId::parse(&claims.org_id).map_err(|_| TokenError::Invalid)?,
            session_id: SessionId::parse(&claims.sid).map_err(|_| TokenError::Invalid)?,
            token_id: claims.jti,
            expires_at: DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Invalid)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn unb64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("base64url")
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn issuer(keys: &[(&str, &[u8])]) -> JwtIssuer {
        let keys = keys.iter().map(|(kid, secret)| SigningKey::new(*kid, secret.to_vec())).collect();
        JwtIssuer::new(keys, "orgsvc", 900).expect("issuer")
    }

    fn payload(token: &str) -> serde_json::Value {
        let part = token.split('.').nth(1).expect("payload");
        serde_json::from_slice(&unb64(part)).expect("json")
    }

    #[test]
    fn issued_tokens_carry_every_claim_and_verify() {
        let jwt = issuer(&[("k1", SECRET)]);
        let (admin, org, now) = (AdminId::new(), OrgId::new(), Utc::now());
        let sid = SessionId::new();
        let token = jwt.issue(admin, org, sid, now).expect("issue");
        assert_eq!(token.expires_in, 900);
        let body = payload(token.token.expose_secret());
        assert_eq!(body["sub"], admin.to_string());
        assert_eq!(body["org_id"], org.to_string());
        assert_eq!(body["sid"], sid.to_string());
        assert_eq!(body["iss"], "orgsvc");
        assert_eq!(body["iat"], now.timestamp());
        assert_eq!(body["exp"], now.timestamp() + 900);
        assert!(body["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let claims = jwt.verify(token.token.expose_secret(), now).expect("verify");
        assert_eq!((claims.admin_id, claims.org_id, claims.session_id), (admin, org, sid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let jwt = issuer(&[("k1", SECRET)]);
        let now = Utc::now();
        let token = jwt.issue(AdminId::new(), OrgId::new(), SessionId::new(), now).expect("issue");
        let later = now + chrono::Duration::seconds(900);
        assert!(matches!(jwt.verify(token.token.expose_secret(), later), Err(TokenError::Invalid)));
    }

    #[test]
    fn tokens_issued_or_valid_only_in_the_future_are_refused() {
        let jwt = issuer(&[("k1", SECRET)]);
        let now = Utc::now();
        let at = |seconds: i64| now + chrono::Duration::seconds(seconds);
        let issued_at = |seconds: i64| {
            let token = jwt.issue(AdminId::new(), OrgId::new(), SessionId::new(), at(seconds)).expect("issue");
            jwt.verify(token.token.expose_secret(), now)
        };
        assert!(issued_at(CLOCK_SKEW_LEEWAY_SECONDS).is_ok(), "within the leeway");
        assert!(matches!(issued_at(CLOCK_SKEW_LEEWAY_SECONDS + 1), Err(TokenError::Invalid)));
        assert!(matches!(issued_at(3600), Err(TokenError::Invalid)));

        let with_nbf = |nbf: i64| {
            let claims = Claims {
                sub: AdminId::new().to_string(),
                org_id: OrgId::new().to_string(),
                sid: SessionId::new().to_string(),
                iat: now.timestamp(),
                nbf: Some(at(nbf).timestamp()),
                exp: at(900).timestamp(),
                jti: "j".to_owned(),
                iss: "orgsvc".to_owned(),
            };
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("k1".to_owned());
            let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).expect("encode");
            jwt.verify(&token, now)
        };
        assert!(with_nbf(-10).is_ok());
        assert!(with_nbf(CLOCK_SKEW_LEEWAY_SECONDS).is_ok());
        assert!(matches!(with_nbf(CLOCK_SKEW_LEEWAY_SECONDS + 1), Err(TokenError::Invalid)));
    }

    #[test]
    fn other_keys_issuers_and_algorithms_are_refused() {
        let jwt = issuer(&[("k1", SECRET)]);
        let now = Utc::now();
        let other_key = issuer(&[("k1", b"another key that is 32 bytes long")]);
        let token = other_key.issue(AdminId::new(), OrgId::new(), SessionId::new(), now).expect("issue");
        assert!(jwt.verify(token.token.expose_secret(), now).is_err());

        let other_issuer = JwtIssuer::new(vec![SigningKey::new("k1", SECRET.to_vec())], "evil", 900).expect("issuer");
        let token = other_issuer.issue(AdminId::new(), OrgId::new(), SessionId::new(), now).expect("issue");
        assert!(jwt.verify(token.token.expose_secret(), now).is_err());

        // The same claims with `alg: none` and no signature.
        let good = jwt.issue(AdminId::new(), OrgId::new(), SessionId::new(), now).expect("issue");
        let payload_part = good.token.expose_secret().split('.').nth(1).expect("payload").to_owned();
        let none = format!("{}.{payload_part}.", b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#));
        assert!(jwt.verify(&none, now).is_err());
        // A tampered payload.
        let parts: Vec<&str> = good.token.expose_secret().split('.').collect();
        let mut body = payload(good.token.expose_secret());
        body["org_id"] = serde_json::json!(OrgId::new().to_string());
        let forged = format!("{}.{}.{}", parts[0], b64(body.to_string().as_bytes()), parts[2]);
        assert!(jwt.verify(&forged, now).is_err());
        assert!(jwt.verify("not a token", now).is_err());
    }

    #[test]
    fn rotated_keys_verify_by_kid_and_the_first_one_signs() {
        let now = Utc::now();
        let old = issuer(&[("old", SECRET)]);
        let old_token = old.issue(AdminId::new(), OrgId::new(), SessionId::new(), now).expect("issue");
        let rotated = issuer(&[("new", b"a brand new key of 32 bytes long"), ("old", SECRET)]);
        assert!(rotated.verify(old_token.token.expose_secret(), now).is_ok());
        let new_token = rotated.issue(AdminId::new(), OrgId::new(), SessionId::new(), now).expect("issue");
        let header: serde_json::Value =
            serde_json::from_slice(&unb64(new_token.token.expose_secret().split('.').next().expect("header")))
                .expect("json");
        assert_eq!(header["kid"], "new");
        assert_eq!(header["alg"], "HS256");
        assert!(old.verify(new_token.token.expose_secret(), now).is_err());
    }

    #[test]
    fn weak_or_missing_keys_are_refused() {
        assert!(JwtIssuer::new(vec![], "orgsvc", 900).is_err());
        assert!(JwtIssuer::new(vec![SigningKey::new("k", b"short".to_vec())], "orgsvc", 900).is_err());
        let dup = vec![SigningKey::new("k", SECRET.to_vec()), SigningKey::new("k", SECRET.to_vec())];
        assert!(JwtIssuer::new(dup, "orgsvc", 900).is_err());
    }
}
