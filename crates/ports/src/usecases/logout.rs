//! Logging out: the caller's session ends.

use domain::{AuditAction, Permission};

use super::{OrgService, Principal, RequestContext};

domain::operation_error!(
    /// Why a logout failed: the caller has no session to end (an API key), or a dependency
    /// failed.
    LogoutError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: domain::Forbidden,
        } => "{reason}",
    }
);

domain::forbidden_from!(LogoutError);

impl OrgService {
    pub(super) async fn log_out(&self, caller: &Principal, context: &RequestContext) -> Result<(), LogoutError> {
        caller.credential.allow(Permission::LogOut)?;
        if let Some(session) = caller.credential.session() {
            self.sessions.revoke_session(session, self.now()).await?;
        }
        self.audit_caller(AuditAction::SessionLoggedOut, caller, context).await;
        Ok(())
    }
}
