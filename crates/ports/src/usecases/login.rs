//! Logging in: the lockout, the password check and a new session.

use chrono::{DateTime, Utc};
use domain::{AdminId, AuditAction, AuditOutcome, CheckId, Email, OrgId, Password, Session, SessionId};
use secrecy::SecretString;

use super::{OrgService, RequestContext};
use crate::sessions::RefreshToken;
use crate::{AccessToken, CheckPermit, NewSession};

/// A login attempt.
#[derive(Debug)]
pub struct LoginRequest {
    /// The admin's email.
    pub email: Email,
    /// The password to check.
    pub password: Password,
}

/// What a login or a refresh hands out.
#[derive(Debug)]
pub struct SessionTokens {
    /// The short-lived access token.
    pub access: AccessToken,
    /// The new refresh token, in clear, shown once.
    pub refresh_token: SecretString,
}

domain::operation_error!(
    /// Why a login failed.
    LoginError {
        /// Unknown email or wrong password; deliberately not told apart.
        InvalidCredentials => "invalid email or password",
        /// Too many failed attempts: the account is locked until then.
        Locked {
            /// When the lock ends.
            until: DateTime<Utc>,
            /// How long that is from now, by the use cases' clock.
            retry_after: std::time::Duration,
        } => "the account is locked after too many failed logins",
    }
);

impl OrgService {
    pub(super) async fn log_in(
        &self,
        request: LoginRequest,
        context: &RequestContext,
    ) -> Result<SessionTokens, LoginError> {
        let admin = self.admins.find_by_email(&request.email).await?;
        let (org_id, actor_id) = (admin.as_ref().map(|a| a.organization_id), admin.as_ref().map(|a| a.id));
        // Every address, an admin's or not, takes a slot of its throttle before its password
        // is checked, so parallel guesses cannot outrun the lockout, and known and unknown
        // addresses get the same answers after the same store work.
        let check = CheckId::new();
        if let CheckPermit::Locked { until } = self.throttles.start(&request.email, check, &*self.clock).await? {
            self.audit_event(AuditAction::LoginLocked, AuditOutcome::Denied, org_id, actor_id, context).await;
            let retry_after = (until - self.clock.now()).to_std().unwrap_or_default();
            return Err(LoginError::Locked { until, retry_after });
        }
        // The hasher verifies against a dummy hash when there is no admin, so an unknown
        // email costs as much time as a wrong password.
        let hash = admin.as_ref().map(|a| a.password_hash.clone());
        let rehash =
            admin.as_ref().filter(|a| self.hasher.needs_rehash(&a.password_hash)).map(|_| request.password.clone());
        let matches = match self.hasher.verify(request.password, hash).await {
            Ok(matches) => matches,
            Err(error) => {
                // Nothing was checked: the slot is given back without counting a failure.
                self.throttles.abandoned(&request.email, check, &*self.clock).await?;
                return Err(error.into());
            }
        };
        let Some(admin) = admin.filter(|_| matches) else {
            let locked = self.throttles.failed(&request.email, check, &*self.clock).await?;
            self.audit_event(AuditAction::LoginFailed, AuditOutcome::Failure, org_id, actor_id, context).await;
            if locked.is_some() {
                self.audit_event(AuditAction::LoginLocked, AuditOutcome::Failure, org_id, actor_id, context).await;
            }
            return Err(LoginError::InvalidCredentials);
        };
        self.throttles.succeeded(&request.email, check, &*self.clock).await?;
        // An admin whose organization is being created or deleted cannot log in.
        if self.organizations.find_by_id(admin.organization_id).await?.is_none() {
            return Err(LoginError::InvalidCredentials);
        }
        if let Some(password) = rehash {
            self.upgrade_hash(&admin, password).await;
        }
        let tokens = self.open_session(admin.id, admin.organization_id).await?;
        self.audit_event(AuditAction::LoginSucceeded, AuditOutcome::Success, org_id, actor_id, context).await;
        Ok(tokens)
    }

    /// Opens a session for an admin and issues its first tokens.
    async fn open_session(&self, admin_id: AdminId, org_id: OrgId) -> Result<SessionTokens, LoginError> {
        let now = self.now();
        let expires_at = self.policy.session_expiry(now);
        let session = Session { id: SessionId::new(), admin_id, org_id, created_at: now, expires_at };
        let refresh = RefreshToken::generate();
        self.sessions.create_session(NewSession { session: session.clone(), refresh_hash: refresh.hash() }).await?;
        let access = self.tokens.issue(admin_id, org_id, session.id, self.clock.now())?;
        Ok(SessionTokens { access, refresh_token: refresh.into_secret() })
    }

    /// Replaces a hash made with outdated parameters after a successful login. Failing to
    /// upgrade costs nothing but a later retry, so failures are only logged.
    async fn upgrade_hash(&self, admin: &domain::Admin, password: Password) {
        let upgraded = match self.hasher.hash(password).await {
            Ok(hash) => hash,
            Err(error) => return tracing::warn!(error = %error, "could not rehash an outdated password hash"),
        };
        match self.lockout.upgrade_password_hash(admin.id, &admin.password_hash, upgraded).await {
            Ok(true) => tracing::info!(admin_id = %admin.id, "password hash upgraded to the current parameters"),
            Ok(false) => {}
            Err(error) => tracing::warn!(error = %error, "could not store an upgraded password hash"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn a_login_the_hasher_could_not_check_counts_no_failure() {
        let admin = admin_of(&org("Acme"));
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let throttle = throttle_store(&mut m.lockout);
        m.hasher.expect_verify().returning(|_, _| Err(HashError::Busy));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::Unavailable(_))), "{result:?}");
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!(stored.throttle, LoginThrottle::default(), "the slot is given back, nothing counted");
    }

    #[tokio::test]
    async fn login_with_an_unknown_email_still_verifies_against_a_dummy_hash() {
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(|_| Ok(None));
        let throttle = throttle_store(&mut m.lockout);
        m.hasher.expect_verify().withf(|_, hash| hash.is_none()).times(1).returning(|_, _| Ok(false));
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("nobody@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
        // The unknown address counts a failure exactly as an admin's would.
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!(stored.throttle, LoginThrottle { failures: 1, locked_until: None, checks: Vec::new() });
    }

    #[tokio::test]
    async fn login_with_a_wrong_password_is_refused() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let throttle = throttle_store(&mut m.lockout);
        m.hasher.expect_verify().withf(|_, hash| hash.as_ref() == Some(&self::hash())).returning(|_, _| Ok(false));
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!((stored.throttle.failures, stored.throttle.checks.len()), (1, 0), "one failure, no check left");
    }

    #[tokio::test]
    async fn login_issues_a_token_naming_the_admin_and_organization_ids() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let (admin_id, org_id) = (admin.id, org.id);
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let throttle = throttle_store_holding(
            &mut m.lockout,
            Some(StoredThrottle {
                throttle: LoginThrottle { failures: 3, locked_until: None, checks: Vec::new() },
                version: 7,
            }),
        );
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        m.orgs.expect_find_by_id().with(eq(org_id)).returning(move |_| Ok(Some(org.clone())));
        let created = Arc::new(std::sync::Mutex::new(None));
        let stored = created.clone();
        m.sessions.expect_create_session().times(1).returning(move |new| {
            assert_eq!((new.session.admin_id, new.session.org_id), (admin_id, org_id));
            assert_eq!(new.session.expires_at - new.session.created_at, chrono::Duration::days(30));
            *stored.lock().expect("lock") = Some(new);
            Ok(())
        });
        m.tokens
            .expect_issue()
            .with(eq(admin_id), eq(org_id), always(), always())
            .times(1)
            .returning(|_, _, _, _| Ok(access_token()));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let tokens = m.service(CollectionNaming::Key).login(request, &ctx()).await.expect("login");
        assert_eq!(tokens.access.expires_in, 900);
        // Only the refresh token's hash is stored.
        let new = created.lock().expect("lock").take().expect("session stored");
        assert_eq!(RefreshToken::presented(tokens.refresh_token).hash(), new.refresh_hash);
        // The success cleared the address's failures.
        let stored = throttle.lock().expect("lock").clone().expect("throttle");
        assert_eq!(stored.throttle, LoginThrottle::default());
    }

    #[tokio::test]
    async fn login_to_an_organization_that_is_gone_is_refused() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let mut m = Mocks::auditing_anything();
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        throttle_store(&mut m.lockout);
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        m.orgs.expect_find_by_id().returning(|_| Ok(None));
        m.sessions.expect_create_session().never();
        m.tokens.expect_issue().never();
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn a_locked_account_is_refused_without_checking_the_password() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let until = FixedClock.now() + chrono::Duration::minutes(1);
        let mut m = Mocks::new();
        m.hasher.expect_needs_rehash().returning(|_| false);
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        let locked = LoginThrottle { failures: 5, locked_until: Some(until), checks: Vec::new() };
        m.lockout
            .expect_load_throttle()
            .returning(move |_| Ok(Some(StoredThrottle { throttle: locked.clone(), version: 3 })));
        m.lockout.expect_save_throttle().never();
        m.hasher.expect_verify().never();
        m.audit
            .expect_record()
            .withf(|e| e.action == AuditAction::LoginLocked && e.outcome == AuditOutcome::Denied)
            .times(1)
            .returning(|_| Ok(()));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        let result = m.service(CollectionNaming::Key).login(request, &ctx()).await;
        assert!(
            matches!(result, Err(LoginError::Locked { until: u, retry_after })
                if u == until && retry_after == std::time::Duration::from_secs(60)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn an_outdated_hash_is_upgraded_after_a_successful_login() {
        let org = org("Acme");
        let admin = admin_of(&org);
        let admin_id = admin.id;
        let mut m = Mocks::new();
        m.audit.expect_record().returning(|_| Ok(()));
        m.admins.expect_find_by_email().returning(move |_| Ok(Some(admin.clone())));
        throttle_store(&mut m.lockout);
        m.hasher.expect_needs_rehash().returning(|_| true);
        m.hasher.expect_verify().returning(|_, _| Ok(true));
        let upgraded = PasswordHash::from_phc("$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$bmV3".to_owned()).expect("phc");
        let new_hash = upgraded.clone();
        m.hasher.expect_hash().times(1).returning(move |p| {
            assert_eq!(p.expose(), "correct horse");
            Ok(new_hash.clone())
        });
        m.lockout
            .expect_upgrade_password_hash()
            .withf(move |id, current, new| *id == admin_id && *current == hash() && *new == upgraded)
            .times(1)
            .returning(|_, _, _| Ok(true));
        let found = org.clone();
        m.orgs.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        m.sessions.expect_create_session().returning(|_| Ok(()));
        m.tokens.expect_issue().returning(|_, _, _, _| Ok(access_token()));
        let request = LoginRequest { email: Email::parse("a@acme.test").expect("email"), password: password() };
        m.service(CollectionNaming::Key).login(request, &ctx()).await.expect("login");
    }
}
