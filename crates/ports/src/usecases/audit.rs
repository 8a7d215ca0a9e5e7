//! Reading the caller's organization's audit trail.

use domain::{AuditEvent, EventId};

use super::{OrgService, Principal};
use crate::AuditQuery;

/// One page of the audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<EventId>,
}

domain::operation_error!(
    /// Why the audit trail could not be read: the caller's API key lacks the scope, or a
    /// dependency failed.
    AuditError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: domain::Forbidden,
        } => "{reason}",
    }
);

domain::forbidden_from!(AuditError);

impl OrgService {
    pub(super) async fn read_audit(&self, caller: &Principal, query: AuditQuery) -> Result<AuditPage, AuditError> {
        caller.credential.allow(domain::Permission::ReadAudit)?;
        let limit = query.limit;
        let mut events =
            self.audit_log.events(caller.org_id, AuditQuery { limit: limit + 1, ..query }, self.now()).await?;
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage { events, next_cursor })
    }
}
