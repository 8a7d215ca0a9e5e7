//! The credential vault port: seals the secrets the service must read back itself (a tenant
//! database user's password, so that a move can recreate the user with the same password
//! on another cluster) under a key only the service holds.

use domain::{DatabasePassword, DatabaseUser, SealedPassword};

/// Seals and opens tenant users' passwords.
pub trait CredentialVault: Send + Sync {
    /// Seals `password`, bound to `user`: it opens only for the same user, so a sealed
    /// password copied onto another organization's record opens nowhere.
    fn seal(&self, user: &DatabaseUser, password: &DatabasePassword) -> SealedPassword;

    /// Opens what [`seal`](Self::seal) sealed for `user`; `None` when it was sealed for
    /// another user or under another key, or altered.
    fn open(&self, user: &DatabaseUser, sealed: &SealedPassword) -> Option<DatabasePassword>;
}
