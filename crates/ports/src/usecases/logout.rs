//! Logging out: the caller's session ends.

use domain::{AuditAction, AuditOutcome};

use super::{OrgService, Principal, RequestContext};

domain::operation_error!(
    /// Why a logout failed: only because a dependency did (the caller was authenticated).
    LogoutError {}
);

impl OrgService {
    pub(super) async fn log_out(&self, caller: &Principal, context: &RequestContext) -> Result<(), LogoutError> {
        self.sessions.revoke_session(caller.session_id, self.now()).await?;
        self.audit_event(
            AuditAction::SessionLoggedOut,
            AuditOutcome::Success,
            Some(caller.org_id),
            Some(caller.admin_id),
            context,
        )
        .await;
        Ok(())
    }
}
