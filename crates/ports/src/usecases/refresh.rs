//! Exchanging a refresh token: rotation with a grace window and reuse detection.

use domain::AuditAction;
use domain::AuditOutcome;
use secrecy::SecretString;

use super::{OrgService, RequestContext, SessionTokens};
use crate::Rotation;
use crate::sessions::RefreshToken;

domain::operation_error!(
    /// Why a refresh failed.
    RefreshError {
        /// Unknown, expired or revoked refresh token.
        Invalid => "invalid or expired refresh token",
        /// An already-rotated refresh token: its session is now revoked.
        Reused => "refresh token reused; the session is revoked",
    }
);

impl OrgService {
    pub(super) async fn refresh_session(
        &self,
        token: SecretString,
        context: &RequestContext,
    ) -> Result<SessionTokens, RefreshError> {
        let presented = RefreshToken::presented(token).hash();
        let replacement = RefreshToken::generate();
        match self.sessions.rotate(&presented, &replacement.hash(), &self.policy, self.now()).await? {
            Rotation::Rotated(session) => {
                // The admin or organization may be gone even though the session is not.
                let admin = self.admins.find_by_id(session.admin_id).await?;
                let org = self.organizations.find_by_id(session.org_id).await?;
                if admin.is_none_or(|a| a.organization_id != session.org_id) || org.is_none() {
                    self.sessions.revoke_session(session.id, self.now()).await?;
                    return Err(RefreshError::Invalid);
                }
                let access = self.tokens.issue(session.admin_id, session.org_id, session.id, self.clock.now())?;
                Ok(SessionTokens { access, refresh_token: replacement.into_secret() })
            }
            Rotation::Reused(session) => {
                tracing::warn!(session_id = %session.id, "refresh token reuse detected; session revoked");
                self.audit_event(
                    AuditAction::SessionRefreshReused,
                    AuditOutcome::Failure,
                    Some(session.org_id),
                    Some(session.admin_id),
                    context,
                )
                .await;
                Err(RefreshError::Reused)
            }
            Rotation::Invalid => Err(RefreshError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use domain::Session;

    /// A session of the organization's admin, opened now.
    fn session_of(org: &Organization) -> Session {
        let now = FixedClock.now();
        Session { id: SessionId::new(), admin_id: org.admin_id, org_id: org.id, created_at: now, expires_at: now }
    }

    #[tokio::test]
    async fn a_reused_refresh_token_is_refused_and_audited() {
        let org = org("Acme");
        let session = session_of(&org);
        let mut m = Mocks::new();
        let reused = session.clone();
        m.sessions.expect_rotate().returning(move |_, _, _, _| Ok(Rotation::Reused(reused.clone())));
        m.tokens.expect_issue().never();
        let org_id = org.id;
        m.audit
            .expect_record()
            .withf(move |e| {
                e.action == AuditAction::SessionRefreshReused
                    && e.organization_id == Some(org_id)
                    && e.request_id.as_deref() == Some("req-1")
            })
            .times(1)
            .returning(|_| Ok(()));
        let result = m.service(CollectionNaming::Key).refresh("stolen".to_owned().into(), &ctx()).await;
        assert!(matches!(result, Err(RefreshError::Reused)), "{result:?}");
    }

    #[tokio::test]
    async fn a_refresh_rotates_and_issues_tokens_for_the_session() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let session = session_of(&org);
        let mut m = Mocks::auditing_anything();
        let presented = RefreshToken::presented("old".to_owned().into()).hash();
        let rotated = session.clone();
        m.sessions
            .expect_rotate()
            .withf(move |p, r, policy, _| {
                *p == presented && *r != presented && policy.refresh_grace == Duration::from_secs(10)
            })
            .times(1)
            .returning(move |_, _, _, _| Ok(Rotation::Rotated(rotated.clone())));
        m.admins.expect_find_by_id().returning(move |_| Ok(Some(admin.clone())));
        let found = org.clone();
        m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        m.tokens
            .expect_issue()
            .with(eq(org.admin_id), eq(org.id), eq(session.id), always())
            .times(1)
            .returning(|_, _, _, _| Ok(access_token()));
        let tokens = m.service(CollectionNaming::Key).refresh("old".to_owned().into(), &ctx()).await.expect("refresh");
        assert_eq!(tokens.refresh_token.expose_secret().len(), 64);
    }
}
