//! Authenticating a request's access token against live sessions, admins and organizations.

use super::{OrgService, Principal};
use crate::TokenError;

domain::operation_error!(
    /// Why a request could not be authenticated.
    AuthError {
        /// The token is invalid, or its session, admin or organization is no longer live.
        InvalidToken => "invalid or expired token",
    }
);

impl OrgService {
    pub(super) async fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        if domain::ApiKeySecret::is_meant(token) {
            return self.authenticate_api_key(token).await;
        }
        let claims = match self.tokens.verify(token, self.clock.now()) {
            Ok(claims) => claims,
            Err(TokenError::Invalid) => return Err(AuthError::InvalidToken),
            Err(TokenError::Failed(e)) => return Err(AuthError::Unknown(e)),
        };
        let now = self.now();
        if !self.sessions.session_active(claims.session_id, now).await? {
            return Err(AuthError::InvalidToken);
        }
        // A token outlives nothing it names: a deleted admin or organization ends it.
        let admin = self.admins.find_by_id(claims.admin_id).await?;
        if admin.is_none_or(|a| a.organization_id != claims.org_id) {
            return Err(AuthError::InvalidToken);
        }
        if self.organizations.find_by_id(claims.org_id).await?.is_none() {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal::of_session(claims.admin_id, claims.org_id, claims.session_id))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn authenticate_checks_that_the_admin_and_organization_still_exist() {
        let org = org("Acme");
        // Each case: does the admin exist, does it belong to the token's organization, does
        // the organization exist, and is the token then accepted.
        for (admin_exists, same_org, org_exists, accepted) in [
            (true, true, true, true),
            (false, true, true, false),
            (true, false, true, false),
            (true, true, false, false),
        ] {
            let mut m = Mocks::auditing_anything();
            let token_claims = claims(&org);
            let sid = token_claims.session_id;
            m.tokens.expect_verify().returning(move |_, _| Ok(token_claims.clone()));
            m.sessions.expect_session_active().with(eq(sid), always()).returning(|_, _| Ok(true));
            let mut admin = admin_of(&org);
            if !same_org {
                admin.organization_id = OrgId::new();
            }
            m.admins.expect_find_by_id().returning(move |_| Ok(admin_exists.then(|| admin.clone())));
            let found = org.clone();
            m.orgs.expect_find_by_id().returning(move |_| Ok(org_exists.then(|| found.clone())));
            let result = m.service(CollectionNaming::Key).authenticate("token").await;
            match result {
                Ok(principal) => {
                    assert!(accepted);
                    assert_eq!(principal, Principal::of_session(org.admin_id, org.id, sid));
                }
                Err(AuthError::InvalidToken) => assert!(!accepted),
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[tokio::test]
    async fn authenticate_refuses_a_bad_token_without_touching_the_store() {
        let mut m = Mocks::auditing_anything();
        m.tokens.expect_verify().returning(|_, _| Err(TokenError::Invalid));
        m.admins.expect_find_by_id().never();
        m.orgs.expect_find_by_id().never();
        let result = m.service(CollectionNaming::Key).authenticate("token").await;
        assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
    }
}
