//! Immutable identifiers of organizations and admins. Tokens and references between
//! records use these ids, never names, so that a rename cannot redirect them.

use std::fmt;

use chrono::{DateTime, Utc};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The text given is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid identifier (expected a UUID)")]
pub struct IdError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Generates a new random (version 4) identifier.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing UUID, for adapters that read ids back from storage.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the hyphenated text form.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                Uuid::parse_str(text).map(Self).map_err(|_| IdError)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

id_type!(
    /// The immutable id of an organization.
    ///
    /// ```
    /// use domain::OrgId;
    /// let id = OrgId::new();
    /// assert_eq!(OrgId::parse(&id.to_string()), Ok(id));
    /// assert!(OrgId::parse("acme").is_err());
    /// ```
    OrgId
);

id_type!(
    /// The immutable id of an admin.
    ///
    /// ```
    /// use domain::AdminId;
    /// let id = AdminId::new();
    /// assert_eq!(id.to_string().parse::<AdminId>(), Ok(id));
    /// ```
    AdminId
);

id_type!(
    /// The immutable id of a login session: the `sid` claim of its access tokens.
    ///
    /// ```
    /// use domain::SessionId;
    /// let id = SessionId::new();
    /// assert_eq!(SessionId::parse(&id.to_string()), Ok(id));
    /// ```
    SessionId
);

id_type!(
    /// The id of one password check, which holds a slot of its address's login throttle
    /// until its outcome is reported.
    ///
    /// ```
    /// use domain::CheckId;
    /// assert_ne!(CheckId::new(), CheckId::new());
    /// ```
    CheckId
);

id_type!(
    /// The id of an audit event. New ids are time-ordered (UUID version 7), so that
    /// sorting by id sorts by time and an id can serve as a pagination cursor.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use domain::EventId;
    /// let now = Utc::now();
    /// let first = EventId::at(now);
    /// assert!(EventId::at(now) > first, "ids made in order at one time still increase");
    /// assert!(EventId::at(now + Duration::milliseconds(1)) > first);
    /// ```
    EventId
);

/// The version 7 counter shared by every event id of this process, which keeps ids made
/// within one millisecond in the order they were made.
static EVENT_ID_CONTEXT: std::sync::Mutex<uuid::ContextV7> = std::sync::Mutex::new(uuid::ContextV7::new());

impl EventId {
    /// A new time-ordered (version 7) id for an event that happened at `at`: the time
    /// comes from the caller (the clock port), so ids follow the clock the use cases run
    /// on, a test clock included. Ids made one after the other in this process increase
    /// even within one millisecond, or if the clock steps back.
    pub fn at(at: DateTime<Utc>) -> Self {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let context = EVENT_ID_CONTEXT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let timestamp = uuid::Timestamp::from_unix(&*context, millis / 1000, (millis % 1000) as u32 * 1_000_000);
        Self(Uuid::new_v7(timestamp))
    }
}

id_type!(
    /// The id of a background job (a tenant move, say).
    ///
    /// ```
    /// use domain::JobId;
    /// let id = JobId::new();
    /// assert_eq!(JobId::parse(&id.to_string()), Ok(id));
    /// ```
    JobId
);

id_type!(
    /// The immutable id of an API key: what lists show, what revoking names, and what the
    /// audit trail records as the key that acted.
    ///
    /// ```
    /// use domain::ApiKeyId;
    /// let id = ApiKeyId::new();
    /// assert_eq!(ApiKeyId::parse(&id.to_string()), Ok(id));
    /// ```
    ApiKeyId
);

id_type!(
    /// The id of a webhook endpoint.
    ///
    /// ```
    /// use domain::WebhookId;
    /// let id = WebhookId::new();
    /// assert_eq!(WebhookId::parse(&id.to_string()), Ok(id));
    /// ```
    WebhookId
);

id_type!(
    /// The id of an event sent to webhooks: the `webhook-id` of every delivery of it, the
    /// same on every retry so receivers can drop duplicates. Time-ordered like [`EventId`].
    ///
    /// ```
    /// use chrono::Utc;
    /// use domain::MessageId;
    /// let now = Utc::now();
    /// assert!(MessageId::at(now) < MessageId::at(now));
    /// ```
    MessageId
);

impl MessageId {
    /// A new time-ordered id for an event that happened at `at` (see [`EventId::at`]).
    pub fn at(at: DateTime<Utc>) -> Self {
        Self(EventId::at(at).as_uuid())
    }
}

impl WebhookId {
    /// What this endpoint's sealed signing secret is bound to: it opens for no other one.
    pub fn sealing_context(&self) -> String {
        format!("webhook {self}")
    }
}
