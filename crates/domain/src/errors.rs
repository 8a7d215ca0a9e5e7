//! The errors each operation can end in, one enum per operation. Store adapters map their
//! driver's errors (a duplicate key, an unreachable server) onto these; the HTTP adapter
//! maps these onto status codes.
//!
//! Every enum has an `Unavailable` arm (a dependency is down or saturated: retrying later
//! may succeed) and an `Unknown` arm (a bug, corrupt data, a broken invariant) besides the
//! outcomes a caller can act on.

/// A failure of the store that is not about the request itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now; retrying later may succeed.
    #[error("the store is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Declares the error enum of one operation: the outcomes a caller can act on, each with
/// its message (unit variants, or variants with named fields), followed by the
/// `Unavailable` and `Unknown` arms every operation has, and the conversion from
/// [`StoreError`]. Every crate declares its operation errors with it, so that all of them
/// read and convert alike.
///
/// ```
/// domain::operation_error!(
///     /// Why a thing could not be frobbed.
///     FrobError {
///         /// It is already frobbed.
///         AlreadyFrobbed => "already frobbed",
///         /// It is locked.
///         Locked {
///             /// Until when.
///             until: u32,
///         } => "locked until {until}",
///     }
/// );
/// let error: FrobError = domain::StoreError::Unknown(anyhow::anyhow!("boom")).into();
/// assert!(matches!(error, FrobError::Unknown(_)));
/// assert_eq!(FrobError::Locked { until: 3 }.to_string(), "locked until 3");
/// ```
#[macro_export]
macro_rules! operation_error {
    (
        $(#[$doc:meta])*
        $name:ident {
            $(
                $(#[$vdoc:meta])*
                $variant:ident $({ $($(#[$fdoc:meta])* $field:ident : $fty:ty),* $(,)? })? => $message:literal,
            )*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, ::thiserror::Error)]
        pub enum $name {
            $(
                $(#[$vdoc])*
                #[error($message)]
                $variant $({ $($(#[$fdoc])* $field: $fty),* })?,
            )*
            /// A dependency is down or saturated; retrying later may succeed.
            #[error("service temporarily unavailable")]
            Unavailable(#[source] ::anyhow::Error),
            /// An unexpected failure.
            #[error(transparent)]
            Unknown(::anyhow::Error),
        }

        impl ::core::convert::From<$crate::StoreError> for $name {
            fn from(error: $crate::StoreError) -> Self {
                match error {
                    $crate::StoreError::Unavailable(e) => Self::Unavailable(e),
                    $crate::StoreError::Unknown(e) => Self::Unknown(e),
                }
            }
        }
    };
}

operation_error!(
    /// Why an organization could not be created.
    CreateOrgError {
        /// Another organization already has this name's key.
        NameTaken => "an organization with this name already exists",
        /// Another admin already uses this email.
        EmailTaken => "an admin with this email already exists",
    }
);

operation_error!(
    /// Why an organization could not be read.
    GetOrgError {
        /// No active organization has this key.
        NotFound => "organization not found",
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
    }
);

operation_error!(
    /// Why an organization could not be updated.
    UpdateOrgError {
        /// The organization (or its admin) does not exist (any more).
        NotFound => "organization not found",
        /// Another organization already has the new name's key.
        NameTaken => "an organization with this name already exists",
        /// Another admin already uses the new email.
        EmailTaken => "an admin with this email already exists",
        /// The organization's data is being moved to another placement: a rename, which
        /// moves its collection too, waits until the move has ended.
        Moving => "the organization's data is being moved; rename it once the move has ended",
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
    }
);

operation_error!(
    /// Why an organization could not be deleted.
    DeleteOrgError {
        /// No active organization has this name.
        NotFound => "organization not found",
        /// The organization is not the caller's.
        NotOwner => "the organization belongs to another admin",
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
    }
);

operation_error!(
    /// Why an API key could not be created.
    CreateApiKeyError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
        /// The expiry time asked for has passed.
        ExpiryInThePast => "expires_at must be in the future",
    }
);

operation_error!(
    /// Why the API keys could not be listed.
    ListApiKeysError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
    }
);

operation_error!(
    /// Why an API key could not be revoked.
    RevokeApiKeyError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
        /// The organization has no such key.
        NotFound => "API key not found",
    }
);

operation_error!(
    /// Why a webhook endpoint could not be registered.
    CreateWebhookError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
        /// The URL is not one deliveries may go to.
        Url {
            /// Which rule it breaks.
            reason: crate::WebhookUrlError,
        } => "url {reason}",
        /// The organization has as many endpoints as it may.
        TooMany {
            /// The limit.
            limit: usize,
        } => "an organization may have at most {limit} webhook endpoints",
    }
);

operation_error!(
    /// Why the webhook endpoints could not be listed.
    ListWebhooksError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
    }
);

operation_error!(
    /// Why an operation on one webhook endpoint (removing it, rotating its secret, reading
    /// its deliveries) failed: they fail in the same ways.
    WebhookEndpointError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
        /// The organization has no such endpoint.
        NotFound => "webhook endpoint not found",
    }
);

/// Makes an operation error with a `Forbidden { reason }` variant buildable from
/// [`Forbidden`](crate::Forbidden) with `?`: the use cases that an API key's missing scope
/// can end.
#[macro_export]
macro_rules! forbidden_from {
    ($($error:ty),*) => {$(
        impl ::core::convert::From<$crate::Forbidden> for $error {
            fn from(reason: $crate::Forbidden) -> Self {
                Self::Forbidden { reason }
            }
        }
    )*};
}
crate::forbidden_from!(
    GetOrgError,
    UpdateOrgError,
    DeleteOrgError,
    CreateApiKeyError,
    ListApiKeysError,
    RevokeApiKeyError,
    CreateWebhookError,
    ListWebhooksError,
    WebhookEndpointError
);
