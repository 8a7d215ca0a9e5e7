//! Per-tenant database users on MongoDB: one user per organization placed `database`,
//! defined in the organization's own database with the single role `readWrite` on it, so
//! that it is scoped to that database and goes with it.
//!
//! The commands carry a password, so their errors are reported by code only: a server's
//! message could quote the command.

use anyhow::anyhow;
use domain::{DatabasePassword, DatabaseUser, Organization, SealedSecret, StoreError};
use mongodb::bson::{self, Document, doc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::MongoStore;
use crate::clusters::Cluster;
use crate::documents::OrgDoc;
use crate::errors::{code, db, is_unreachable};

/// The organization's database user, as its record keeps it: the password sealed by the
/// store's vault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TenantUserDoc {
    pub username: String,
    pub sealed: bson::Binary,
}

/// The role of an organization's user: read and write its own database, nothing else.
fn tenant_role(user: &DatabaseUser) -> Document {
    doc! {"role": "readWrite", "db": &user.auth_source}
}

/// The user does not exist.
const USER_NOT_FOUND: i32 = 11;
/// The user exists already (a parallel rotation created it first).
const USER_EXISTS: i32 = 51003;
/// The service's own user may not run the command.
const UNAUTHORIZED: i32 = 13;

/// A failed user command, without anything the command carried.
fn user_command_error(action: &str, error: &mongodb::error::Error) -> StoreError {
    if is_unreachable(error) {
        return StoreError::Unavailable(anyhow!("{action}: the cluster cannot be reached"));
    }
    match code(error) {
        Some(UNAUTHORIZED) => StoreError::Unknown(anyhow!(
            "{action}: the service's MongoDB user lacks user administration rights (see docs/mongodb.md)"
        )),
        Some(code) => StoreError::Unknown(anyhow!("{action}: the server refused it with code {code}")),
        None => StoreError::Unknown(anyhow!("{action}: the command failed")),
    }
}

impl Cluster {
    /// Sets the password of an organization's user, creating the user if it does not exist.
    async fn upsert_user(
        &self,
        user: &DatabaseUser,
        password: &DatabasePassword,
        roles: Document,
    ) -> Result<(), StoreError> {
        let update = || {
            let command = doc! {"updateUser": &user.username, "pwd": password.expose(), "roles": [roles.clone()]};
            self.command(&user.auth_source, command)
        };
        match update().await {
            Ok(_) => return Ok(()),
            Err(e) if code(&e) == Some(USER_NOT_FOUND) => {}
            Err(e) => return Err(user_command_error("setting the database user's password", &e)),
        }
        let create = doc! {"createUser": &user.username, "pwd": password.expose(), "roles": [roles.clone()]};
        match self.command(&user.auth_source, create).await {
            Ok(_) => Ok(()),
            // Created by a parallel rotation meanwhile: this one's password wins.
            Err(e) if code(&e) == Some(USER_EXISTS) => {
                update().await.map(drop).map_err(|e| user_command_error("setting the database user's password", &e))
            }
            Err(e) => Err(user_command_error("creating the database user", &e)),
        }
    }

    /// Drops every user defined in a database (an organization's own): idempotent. A
    /// service without user administration rights cannot have created any, so a refusal
    /// is not an error there.
    pub(crate) async fn drop_database_users(&self, database: &str) -> Result<(), StoreError> {
        match self.command(database, doc! {"dropAllUsersFromDatabase": 1}).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(UNAUTHORIZED) => {
                tracing::warn!(database, "could not drop the database's users: no user administration rights");
                Ok(())
            }
            Err(e) => Err(user_command_error("dropping the database's users", &e)),
        }
    }
}

impl MongoStore {
    /// `secret` sealed for `context` by the store's vault, as documents keep it; `None`
    /// without a vault.
    pub(crate) fn sealed(&self, context: &str, secret: &str) -> Option<bson::Binary> {
        let sealed = self.vault.as_ref()?.seal(context, secret);
        Some(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: sealed.as_bytes().to_vec() })
    }

    /// What a document's sealed secret holds, opened for `context`; `None` without a vault,
    /// or when it was sealed for another context or under another key.
    pub(crate) fn opened(&self, context: &str, sealed: &bson::Binary) -> Option<SecretString> {
        self.vault.as_ref()?.open(context, &SealedSecret::from_bytes(sealed.bytes.clone()))
    }

    /// Creates or rotates the organization's database user (see the port).
    pub(crate) async fn set_user(
        &self,
        org: &Organization,
        password: &DatabasePassword,
    ) -> Result<DatabaseUser, StoreError> {
        let cluster = self.cluster(&org.placement.cluster)?;
        let user = DatabaseUser::of(org.id);
        cluster.upsert_user(&user, password, tenant_role(&user)).await?;
        let id = org.id.to_string();
        let recorded = match self.sealed(&user.sealing_context(), password.expose()) {
            // The sealed password is recorded only where the user was set: a move that
            // switched the organization to another cluster meanwhile must not carry a
            // password its user there does not have.
            Some(sealed) => {
                let (placement, cluster_field) = OrgDoc::placement_fields(&org.placement);
                let kept = TenantUserDoc { username: user.username.clone(), sealed };
                let filter = doc! {
                    "_id": &id,
                    "state": "active",
                    "placement": placement.map_or(bson::Bson::Null, bson::Bson::from),
                    "cluster": cluster_field.map_or(bson::Bson::Null, bson::Bson::from),
                };
                let update =
                    doc! {"$set": {"tenant_user": bson::to_bson(&kept).map_err(|e| StoreError::Unknown(e.into()))?}};
                db(self.organizations.update_one(filter, update).await)?.matched_count == 1
            }
            None => db(self.organizations.count_documents(doc! {"_id": &id, "state": "active"}).await)? == 1,
        };
        if !recorded {
            // A delete that began meanwhile may have dropped the organization's users before
            // this one was set: then drop it again, so that no user outlives its organization.
            let active = db(self.organizations.count_documents(doc! {"_id": &id, "state": "active"}).await)?;
            if active == 0 {
                cluster.drop_database_users(&user.auth_source).await?;
                return Err(StoreError::Unavailable(anyhow!("the organization is being deleted")));
            }
            return Err(StoreError::Unavailable(anyhow!("the organization moved meanwhile; rotate again")));
        }
        Ok(user)
    }

    /// Recreates the organization's database user on a move's target cluster, with the
    /// password its record keeps sealed, when the target is a database of its own. Answers
    /// the sealed password carried (the switch is conditional on it, so that a rotation made
    /// meanwhile is not lost), or `None` when no user goes along: no vault, no user, a
    /// target that shares its database, or a password sealed under another key.
    pub(crate) async fn carry_tenant_user(
        &self,
        org: &OrgDoc,
        target: &Cluster,
        own_database: bool,
    ) -> anyhow::Result<Option<bson::Binary>> {
        let Some(kept) = org.tenant_user.as_ref().filter(|_| own_database && self.vault.is_some()) else {
            return Ok(None);
        };
        let id = domain::OrgId::parse(&org.id).map_err(|e| anyhow!("organization id: {e}"))?;
        let user = DatabaseUser::of(id);
        let opened = self.opened(&user.sealing_context(), &kept.sealed);
        let Some(password) = opened.and_then(|p| DatabasePassword::from_generated(p.expose_secret().to_owned()).ok())
        else {
            tracing::warn!(
                organization_id = %org.id,
                "the database user's password cannot be opened (another sealing key?): the user stays behind"
            );
            return Ok(None);
        };
        target.upsert_user(&user, &password, tenant_role(&user)).await.map_err(|e| anyhow!("{e}"))?;
        Ok(Some(kept.sealed.clone()))
    }
}
