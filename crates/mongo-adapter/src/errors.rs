//! Reading MongoDB errors: duplicate keys become the domain's conflicts, an unreachable
//! server becomes `Unavailable`, the rest is unexpected.

use domain::StoreError;
use mongodb::error::{Error, ErrorKind, WriteFailure};

/// E11000, a unique index refused a write.
pub(crate) const DUPLICATE_KEY: i32 = 11000;
/// The namespace (collection) does not exist.
pub(crate) const NAMESPACE_NOT_FOUND: i32 = 26;
/// The namespace (collection) already exists.
pub(crate) const NAMESPACE_EXISTS: i32 = 48;

/// The server's error code, if the error carries one.
pub(crate) fn code(error: &Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        ErrorKind::InsertMany(e) => e.write_errors.as_ref().and_then(|w| w.first()).map(|w| w.code),
        _ => None,
    }
}

pub(crate) fn is_duplicate_key(error: &Error) -> bool {
    code(error) == Some(DUPLICATE_KEY)
}

/// Whether the error says the server could not be reached at all (no server selected, the
/// connection broke, the pool was cleared), as opposed to a server that answered.
pub(crate) fn is_unreachable(error: &Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
    )
}

/// Whether a transaction that failed with this error is worth running again: a write
/// conflict with a concurrent transaction is, an unreachable server is not. The driver
/// labels both `TransientTransactionError`, but retrying the second only repeats the
/// server selection timeout, turning a quick 503 into a wait of many timeouts.
pub(crate) fn is_retryable_transaction_error(error: &Error) -> bool {
    error.contains_label("TransientTransactionError") && !is_unreachable(error)
}

/// Maps a driver error onto the domain's store error.
pub(crate) fn store_error(error: Error) -> StoreError {
    let unavailable = is_unreachable(&error)
        || error.contains_label("RetryableWriteError")
        || error.contains_label("TransientTransactionError");
    if unavailable {
        StoreError::Unavailable(anyhow::Error::new(error).context("MongoDB is unreachable"))
    } else {
        StoreError::Unknown(anyhow::Error::new(error))
    }
}
