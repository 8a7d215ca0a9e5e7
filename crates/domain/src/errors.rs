//! The errors each store operation can end in. The store adapters map their driver's
//! errors (a duplicate key, an unreachable server) onto these; the HTTP adapter maps these
//! onto status codes.

/// A failure of the store that is not about the request itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now; retrying later may succeed.
    #[error("the store is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug, corrupt data, a broken invariant.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Why an organization could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateOrgError {
    /// Another organization already has this name's key.
    #[error("an organization with this name already exists")]
    NameTaken,
    /// Another admin already uses this email.
    #[error("an admin with this email already exists")]
    EmailTaken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an organization could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum UpdateOrgError {
    /// The organization (or its admin) does not exist (any more).
    #[error("organization not found")]
    NotFound,
    /// Another organization already has the new name's key.
    #[error("an organization with this name already exists")]
    NameTaken,
    /// Another admin already uses the new email.
    #[error("an admin with this email already exists")]
    EmailTaken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an organization could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteOrgError {
    /// The organization does not exist (any more).
    #[error("organization not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
