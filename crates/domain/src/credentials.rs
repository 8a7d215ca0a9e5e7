//! Per-tenant database credentials: a database user whose only role is read-write on one
//! organization's own database, with a generated password shown once.
//!
//! MongoDB limits a user's privileges per database (a test server here even enforces them
//! only per database), so credentials exist only for organizations placed `database`: a
//! user of the shared tenant database could read every tenant in it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::{OrgId, Placement, PlacementKind};

/// The fewest characters a generated database password has.
pub const MIN_DATABASE_PASSWORD_CHARS: usize = 32;

/// A generated database password. It is shown once, to the organization's admin, never
/// logged, and never stored in clear (only sealed, when the service has a sealing key,
/// so that a move can recreate the user elsewhere); `Debug` does not show it.
#[derive(Clone)]
pub struct DatabasePassword(SecretString);

/// Why a text cannot be a generated database password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be at least {MIN_DATABASE_PASSWORD_CHARS} characters of A-Z, a-z, 0-9, - and _ (nothing a connection \
     string would need to escape)"
)]
pub struct DatabasePasswordError;

impl DatabasePassword {
    /// Wraps a generated password: long, and made only of characters that need no escaping
    /// in a connection string, so that tenants can paste it into one.
    ///
    /// ```
    /// use domain::DatabasePassword;
    /// assert!(DatabasePassword::from_generated("a".repeat(43)).is_ok());
    /// assert!(DatabasePassword::from_generated("short".to_owned()).is_err());
    /// assert!(DatabasePassword::from_generated(format!("{}@", "a".repeat(40))).is_err());
    /// assert_eq!(format!("{:?}", DatabasePassword::from_generated("a".repeat(43)).unwrap()), "DatabasePassword(..)");
    /// ```
    pub fn from_generated(text: String) -> Result<Self, DatabasePasswordError> {
        let ok = text.chars().count() >= MIN_DATABASE_PASSWORD_CHARS
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok { Ok(Self(SecretString::from(text))) } else { Err(DatabasePasswordError) }
    }

    /// The password, for the database command that sets it and the one answer that shows it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DatabasePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabasePassword(..)")
    }
}

/// A secret the service must read back itself, sealed under its sealing key (authenticated
/// encryption bound to what the secret belongs to): a tenant user's password, kept so that
/// a move can recreate the user with it on another cluster; a webhook's signing secret.
/// Only the key opens it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(Vec<u8>);

impl SealedSecret {
    /// Sealed bytes, as a vault made them or a store kept them.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The sealed bytes, for storing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

/// An organization's database user: its name and the database it authenticates against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUser {
    /// The user name.
    pub username: String,
    /// The database the user is defined in (the `authSource` of a connection string).
    pub auth_source: String,
}

impl DatabaseUser {
    /// The user of organization `id`: defined in its own database, so that it is scoped to
    /// it and goes with it, and named by the immutable id.
    ///
    /// ```
    /// use domain::{DatabaseUser, OrgId};
    /// let id = OrgId::parse("0190c5a4-7c5e-7b6a-9d2e-3f4a5b6c7d8e").unwrap();
    /// let user = DatabaseUser::of(id);
    /// assert_eq!(user.username, "orgsvc_u_0190c5a47c5e7b6a9d2e3f4a5b6c7d8e");
    /// assert_eq!(user.auth_source, "orgsvc_t_0190c5a47c5e7b6a9d2e3f4a5b6c7d8e");
    /// ```
    pub fn of(id: OrgId) -> Self {
        Self { username: format!("orgsvc_u_{}", id.as_uuid().simple()), auth_source: Placement::database_of(id) }
    }

    /// What this user's sealed password is bound to: it opens for no other user.
    pub fn sealing_context(&self) -> String {
        format!("tenant user {}", self.username)
    }
}

/// A database user with the password just set for it.
#[derive(Debug, Clone)]
pub struct DatabaseCredentials {
    /// The user.
    pub user: DatabaseUser,
    /// Its new password, shown this once.
    pub password: DatabasePassword,
}

impl Placement {
    /// Whether an organization so placed can have database credentials of its own: only in
    /// a database of its own, the boundary at which MongoDB limits a user.
    pub fn isolates_database_users(&self) -> bool {
        self.kind == PlacementKind::Database
    }
}

crate::operation_error!(
    /// Why database credentials could not be created or rotated.
    CredentialsError {
        /// The caller's API key may not do this.
        Forbidden {
            /// What it asked and what would allow it.
            reason: crate::Forbidden,
        } => "{reason}",
        /// Per-tenant credentials are switched off on this deployment.
        Disabled => "per-tenant database credentials are not enabled on this deployment",
        /// The organization's placement shares its database with other tenants.
        NotIsolated {
            /// The organization's placement kind.
            placement: PlacementKind,
        } => "the organization's data is in a `{placement}` placement, which shares a database with other \
               organizations; MongoDB isolates users per database, so credentials exist only for organizations \
               placed in a database of their own",
        /// The organization is gone.
        NotFound => "organization not found",
    }
);

crate::forbidden_from!(CredentialsError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_database_placement_isolates_users() {
        for kind in PlacementKind::ALL {
            let placement = Placement { kind, cluster: crate::ClusterName::main() };
            assert_eq!(placement.isolates_database_users(), kind == PlacementKind::Database, "{kind}");
        }
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let password = DatabasePassword::from_generated("s3cr3t-".repeat(6)).expect("password");
        assert!(!format!("{password:?}").contains("s3cr3t"));
        let credentials = DatabaseCredentials { user: DatabaseUser::of(OrgId::new()), password };
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
    }
}
