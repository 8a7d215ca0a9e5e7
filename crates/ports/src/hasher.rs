//! The password hashing port. Hashing is deliberately slow, so implementations must run it
//! off the async executor threads and bound how many run at once.

use async_trait::async_trait;
use domain::{Password, PasswordHash};

/// Why hashing or verifying could not be done (a wrong password is not an error).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are queued; the caller should retry later.
    #[error("password hashing is saturated")]
    Busy,
    /// The hasher failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Hashes and verifies passwords.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + 'static {
    /// Hashes a password with a fresh salt.
    async fn hash(&self, password: Password) -> Result<PasswordHash, HashError>;

    /// Checks a password against a hash. Given no hash, it verifies against a dummy hash
    /// and answers `false`, taking as long as a real check so that timing does not tell
    /// whether an account exists.
    async fn verify(&self, password: Password, hash: Option<PasswordHash>) -> Result<bool, HashError>;

    /// Whether a hash is weaker than the current parameters would make it and should be
    /// replaced at the next successful login.
    fn needs_rehash(&self, hash: &PasswordHash) -> bool;
}
