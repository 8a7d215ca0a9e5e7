//! Immutable identifiers of organizations and admins. Tokens and references between
//! records use these ids, never names, so that a rename cannot redirect them.

use std::fmt;
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
    /// use domain::EventId;
    /// let first = EventId::new_ordered();
    /// std::thread::sleep(std::time::Duration::from_millis(2));
    /// assert!(EventId::new_ordered() > first);
    /// ```
    EventId
);

impl EventId {
    /// A new time-ordered (version 7) id.
    pub fn new_ordered() -> Self {
        Self(Uuid::now_v7())
    }
}
