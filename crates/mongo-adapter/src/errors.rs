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
/// The server has no change streams (a standalone mongod).
pub(crate) const CHANGE_STREAMS_UNSUPPORTED: i32 = 40573;

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

/// Whether a unique index refused the write, whichever index it was.
pub(crate) fn is_duplicate_key(error: &Error) -> bool {
    code(error) == Some(DUPLICATE_KEY)
}

/// The unique index on organization keys (and their look-alike skeletons).
pub(crate) const KEYS_INDEX: &str = "keys_unique";
/// The unique index on admin emails.
pub(crate) const EMAIL_INDEX: &str = "email_unique";

/// Whether the unique index named `index` refused the write. The server names the index
/// in the message of E11000 ("... index: keys_unique dup key: { ... }"), which is how a
/// conflict becomes the domain's conflict it means (a name or an email taken), while a
/// duplicate in any other index (an `_id`, say) stays an unexpected error.
pub(crate) fn is_duplicate_in(error: &Error, index: &str) -> bool {
    is_duplicate_key(error) && message(error).and_then(duplicate_index) == Some(index)
}

fn message(error: &Error) -> Option<&str> {
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some(&e.message),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(&e.message),
        ErrorKind::InsertMany(e) => e.write_errors.as_ref().and_then(|w| w.first()).map(|w| w.message.as_str()),
        _ => None,
    }
}

/// The index name in an E11000 message.
fn duplicate_index(message: &str) -> Option<&str> {
    let rest = &message[message.find("index: ")? + "index: ".len()..];
    rest.split_whitespace().next()
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

/// A driver result with its error mapped onto the domain's store error.
pub(crate) fn db<T>(result: mongodb::error::Result<T>) -> Result<T, StoreError> {
    result.map_err(store_error)
}

/// An unexpected failure: a bug, corrupt data, a broken invariant.
pub(crate) fn unknown(error: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Unknown(error.into())
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_index_is_read_from_the_duplicate_key_message() {
        let message =
            r#"E11000 duplicate key error collection: m.organizations index: keys_unique dup key: { keys: "acme" }"#;
        assert_eq!(super::duplicate_index(message), Some("keys_unique"));
        assert_eq!(super::duplicate_index("E11000 duplicate key error index: email_unique"), Some("email_unique"));
        assert_eq!(super::duplicate_index("E11000 duplicate key error"), None);
    }
}
