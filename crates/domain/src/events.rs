//! Events: what changed in an organization, as webhooks deliver it, and the rules of one
//! endpoint's deliveries. Which events an operation publishes is decided here; stores only
//! write the events an operation hands them, atomically with the change they describe.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::{
    AdminId, ApiKey, ApiKeyId, EventFilter, EventType, MessageId, OrgId, Organization, OrganizationChanges,
    OrganizationName, Placement, RetryPolicy, Session, WebhookId, WebhookUrl,
};

/// Something that happened to an organization, with the payload every delivery of it sends.
///
/// The body is fixed when the event is made, so every retry of every delivery signs and
/// sends the same bytes.
///
/// ```
/// use chrono::Utc;
/// use domain::{Event, EventType, MessageId, OrgId, OrganizationName};
/// let name = OrganizationName::parse("Acme").unwrap();
/// let event = Event::organization_deleted(MessageId::at(Utc::now()), OrgId::new(), &name, Utc::now());
/// assert_eq!(event.event_type(), EventType::OrganizationDeleted);
/// assert!(event.body().contains(r#""type":"organization.deleted""#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: MessageId,
    organization_id: OrgId,
    event_type: EventType,
    occurred_at: DateTime<Utc>,
    body: String,
}

impl Event {
    fn new(
        id: MessageId,
        organization_id: OrgId,
        event_type: EventType,
        occurred_at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Self {
        let mut data = data;
        if let Some(fields) = data.as_object_mut() {
            fields.insert("organization_id".into(), json!(organization_id.to_string()));
        }
        // The envelope the Standard Webhooks specification recommends.
        let body = json!({
            "type": event_type.as_str(),
            "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        Self { id, organization_id, event_type, occurred_at, body }
    }

    /// An event read back from storage, as it was made.
    pub fn from_stored(
        id: MessageId,
        organization_id: OrgId,
        event_type: EventType,
        occurred_at: DateTime<Utc>,
        body: String,
    ) -> Self {
        Self { id, organization_id, event_type, occurred_at, body }
    }

    /// `organization.created`, published when the create commits.
    pub fn organization_created(id: MessageId, organization: &Organization) -> Self {
        Self::new(
            id,
            organization.id,
            EventType::OrganizationCreated,
            organization.created_at,
            json!({"name": organization.name.as_str()}),
        )
    }

    /// `organization.deleted`, published when the delete starts (from then on it happens,
    /// whatever crashes).
    pub fn organization_deleted(
        id: MessageId,
        organization_id: OrgId,
        name: &OrganizationName,
        at: DateTime<Utc>,
    ) -> Self {
        Self::new(id, organization_id, EventType::OrganizationDeleted, at, json!({"name": name.as_str()}))
    }

    /// `organization.moved`, published by the write that switches the organization's data to
    /// its new placement.
    pub fn organization_moved(
        id: MessageId,
        organization_id: OrgId,
        from: &Placement,
        to: &Placement,
        at: DateTime<Utc>,
    ) -> Self {
        let side = |p: &Placement| json!({"placement": p.kind.as_str(), "cluster": p.cluster.to_string()});
        Self::new(id, organization_id, EventType::OrganizationMoved, at, json!({"from": side(from), "to": side(to)}))
    }

    /// `api_key.created`, published with the key.
    pub fn api_key_created(id: MessageId, key: &ApiKey) -> Self {
        let data = json!({"api_key_id": key.id.to_string(), "name": key.name.as_str(), "scopes": key.scopes.names()});
        Self::new(id, key.org_id, EventType::ApiKeyCreated, key.created_at, data)
    }

    /// `api_key.revoked`, published when the key stops working (not when its organization
    /// is deleted: `organization.deleted` is the last event).
    pub fn api_key_revoked(id: MessageId, organization_id: OrgId, key: ApiKeyId, at: DateTime<Utc>) -> Self {
        Self::new(id, organization_id, EventType::ApiKeyRevoked, at, json!({"api_key_id": key.to_string()}))
    }

    /// `session.revoked`: a logout, a reused refresh token, or a credential change ended the
    /// session (not its organization's deletion, whose event is the last).
    pub fn session_revoked(id: MessageId, session: &Session, at: DateTime<Utc>) -> Self {
        let data = json!({"session_id": session.id.to_string(), "admin_id": session.admin_id.to_string()});
        Self::new(id, session.org_id, EventType::SessionRevoked, at, data)
    }

    /// The events an update publishes when it commits, in this order: the rename, the
    /// admin's new email, the admin's new password. `ids` makes one id per event.
    pub fn of_changes(
        before: &Organization,
        changes: &OrganizationChanges,
        mut ids: impl FnMut() -> MessageId,
    ) -> Vec<Self> {
        let mut events = Vec::new();
        if let Some(rename) = &changes.rename {
            events.push(Self::new(
                ids(),
                before.id,
                EventType::OrganizationRenamed,
                changes.at,
                json!({"name": rename.name().as_str(), "previous_name": before.name.as_str()}),
            ));
        }
        if let Some(email) = &changes.email {
            events.push(Self::admin_event(
                ids(),
                before,
                EventType::AdminEmailChanged,
                changes.at,
                Some(email.as_str()),
            ));
        }
        if changes.password_hash.is_some() {
            events.push(Self::admin_event(ids(), before, EventType::AdminPasswordChanged, changes.at, None));
        }
        events
    }

    fn admin_event(
        id: MessageId,
        org: &Organization,
        event_type: EventType,
        at: DateTime<Utc>,
        email: Option<&str>,
    ) -> Self {
        let admin: AdminId = org.admin_id;
        let mut data = json!({"admin_id": admin.to_string()});
        if let (Some(email), Some(fields)) = (email, data.as_object_mut()) {
            fields.insert("email".into(), json!(email));
        }
        Self::new(id, org.id, event_type, at, data)
    }

    /// The event's id: the `webhook-id` of its deliveries.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The organization it happened to.
    pub fn organization_id(&self) -> OrgId {
        self.organization_id
    }

    /// What happened.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// When it happened.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }

    /// The JSON body every delivery sends: `{"type", "timestamp", "data"}`.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Whether this is the last event the organization publishes: after it, its endpoints
    /// are removed.
    pub fn is_final(&self) -> bool {
        self.event_type == EventType::OrganizationDeleted
    }
}

/// A webhook endpoint registered by an organization's admin (its signing secret is kept
/// apart, see [`crate::WebhookSecret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: WebhookId,
    /// The organization whose events it receives.
    pub organization_id: OrgId,
    /// Where deliveries go.
    pub url: WebhookUrl,
    /// Which events it receives.
    pub events: EventFilter,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// What one delivery attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The endpoint answered with this HTTP status.
    Status(u16),
    /// No answer: the reason, without anything secret (refused address, timeout, connection
    /// refused, ...).
    Failed(String),
}

impl AttemptResult {
    /// Whether the receiver accepted the event: any 2xx status.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Status(status) if (200..300).contains(status))
    }

    /// The status the endpoint answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status(status) => Some(*status),
            Self::Failed(_) => None,
        }
    }

    /// Why there was no answer, if there was none.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Status(_) => None,
            Self::Failed(reason) => Some(reason),
        }
    }
}

/// What happens to an endpoint's current event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Done with it (delivered, or not one the endpoint receives): on to the next event.
    Delivered,
    /// Try it again at this time; later events wait, so that they arrive in order.
    RetryAt(DateTime<Utc>),
    /// Tried for as long as the policy allows: recorded as failed, on to the next event.
    GaveUp,
}

impl NextStep {
    /// The delivery log's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetryAt(_) => "retrying",
            Self::GaveUp => "failed",
        }
    }

    /// When the event is tried again, if it is.
    pub fn retry_at(self) -> Option<DateTime<Utc>> {
        match self {
            Self::RetryAt(at) => Some(at),
            Self::Delivered | Self::GaveUp => None,
        }
    }
}

impl RetryPolicy {
    /// What follows attempt number `attempt` (from 1) of an event first tried at `first`:
    /// a 2xx is delivered; anything else is tried again on the backoff schedule
    /// ([`RetryPolicy::next_attempt`]) until the policy gives up.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use domain::{AttemptResult, NextStep, RetryPolicy};
    /// let policy = RetryPolicy::default();
    /// let now = Utc::now();
    /// assert_eq!(policy.after_attempt(&AttemptResult::Status(204), 1, now, now, 0.5), NextStep::Delivered);
    /// assert!(matches!(policy.after_attempt(&AttemptResult::Status(500), 1, now, now, 0.5), NextStep::RetryAt(_)));
    /// let day_later = now + Duration::hours(25);
    /// assert_eq!(policy.after_attempt(&AttemptResult::Status(500), 20, now, day_later, 0.5), NextStep::GaveUp);
    /// ```
    pub fn after_attempt(
        &self,
        result: &AttemptResult,
        attempt: u32,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> NextStep {
        if result.is_success() {
            return NextStep::Delivered;
        }
        match self.next_attempt(attempt, first, now, jitter) {
            Some(at) => NextStep::RetryAt(at),
            None => NextStep::GaveUp,
        }
    }
}

impl Endpoint {
    /// Whether this endpoint is sent the event (its filter), the decision the delivery
    /// worker applies before any request.
    pub fn wants(&self, event: &Event) -> bool {
        self.events.matches(event.event_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CollectionName, Email, Rename};

    fn organization() -> Organization {
        let id = OrgId::new();
        let name = OrganizationName::parse("Acme").expect("name");
        Organization {
            id,
            collection: CollectionName::for_organization(crate::CollectionNaming::Id, id, name.key()),
            name,
            placement: Placement::default(),
            admin_id: AdminId::new(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn an_update_publishes_one_event_per_change_in_a_fixed_order() {
        let org = organization();
        let changes = OrganizationChanges {
            rename: Some(Rename::new(
                org.id,
                OrganizationName::parse("Globex").expect("name"),
                crate::CollectionNaming::Id,
            )),
            email: Some(Email::parse("new@example.com").expect("email")),
            password_hash: None,
            at: Utc::now(),
        };
        let events = Event::of_changes(&org, &changes, || MessageId::at(Utc::now()));
        let types: Vec<_> = events.iter().map(Event::event_type).collect();
        assert_eq!(types, [EventType::OrganizationRenamed, EventType::AdminEmailChanged]);
        let renamed: serde_json::Value = serde_json::from_str(events[0].body()).expect("json");
        assert_eq!(renamed["data"]["name"], "Globex");
        assert_eq!(renamed["data"]["previous_name"], "Acme");
        assert_eq!(renamed["data"]["organization_id"], org.id.to_string());
        let nothing = OrganizationChanges { rename: None, email: None, password_hash: None, at: Utc::now() };
        assert!(Event::of_changes(&org, &nothing, || MessageId::at(Utc::now())).is_empty());
    }
}
