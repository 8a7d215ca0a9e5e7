//! The vault port: seals the secrets the service must read back itself (a tenant database
//! user's password, so that a move can recreate the user with the same password on another
//! cluster; a webhook's signing secret, needed to sign) under a key only the service holds.

use domain::SealedSecret;
use secrecy::SecretString;

/// Seals and opens secrets, each bound to what it belongs to.
pub trait CredentialVault: Send + Sync {
    /// Seals `secret`, bound to `context` (what it belongs to, such as
    /// [`DatabaseUser::sealing_context`](domain::DatabaseUser::sealing_context)): it opens
    /// only with the same context, so a sealed secret copied onto another record opens
    /// nowhere.
    fn seal(&self, context: &str, secret: &str) -> SealedSecret;

    /// Opens what [`seal`](Self::seal) sealed with `context`; `None` when it was sealed
    /// with another context or under another key, or altered.
    fn open(&self, context: &str, sealed: &SealedSecret) -> Option<SecretString>;
}
