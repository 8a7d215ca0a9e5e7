//! The documents of the master database and their conversion to domain values. Stored
//! values are parsed back through the domain constructors, so corrupt data surfaces as an
//! error instead of an invalid value.

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use domain::{
    Admin, AdminId, ClusterName, CollectionName, Email, OrgId, Organization, OrganizationName, PasswordHash, Placement,
    PlacementKind,
};
use mongodb::bson;
use serde::{Deserialize, Serialize};

/// Where an organization is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// Being created: invisible until active.
    Creating,
    /// Visible and usable.
    Active,
    /// Being deleted: invisible, its tokens refused.
    Deleting,
}

/// Which operation an intent record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OpKind {
    Create,
    Update,
    Delete,
}

/// The intent record of an operation in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpDoc {
    pub kind: OpKind,
    /// Whoever holds this token owns the operation; the reconciler takes it over by
    /// replacing the token with a conditional update.
    pub token: String,
    pub started_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_collection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<bson::DateTime>,
    /// The events the operation publishes when it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::webhooks::EventDoc>,
}

impl OpDoc {
    pub(crate) fn new(kind: OpKind, token: &str) -> Self {
        Self {
            kind,
            token: token.to_owned(),
            started_at: bson::DateTime::now(),
            to_name: None,
            to_key: None,
            to_collection: None,
            new_email: None,
            new_password_hash: None,
            at: None,
            events: Vec::new(),
        }
    }

    pub(crate) fn has_admin_changes(&self) -> bool {
        self.new_email.is_some() || self.new_password_hash.is_some()
    }

    /// Whether the admin document already holds this update's admin changes (trivially so
    /// when there are none): from then on the update can only be finished.
    pub(crate) fn admin_changes_applied(&self, admin: Option<&AdminDoc>) -> bool {
        !self.has_admin_changes()
            || admin.is_some_and(|a| {
                self.new_email.as_ref().is_none_or(|e| *e == a.email)
                    && self.new_password_hash.as_ref().is_none_or(|h| *h == a.password_hash)
            })
    }

    /// The `$set` of the admin document that applies this update's admin changes.
    pub(crate) fn admin_changes(&self) -> bson::Document {
        let mut set = bson::doc! {"updated_at": self.at.unwrap_or_else(bson::DateTime::now)};
        if let Some(email) = &self.new_email {
            set.insert("email", email);
        }
        if let Some(hash) = &self.new_password_hash {
            set.insert("password_hash", hash);
        }
        set
    }
}

/// An organization in the master database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OrgDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    /// The committed key, which lookups use.
    pub key: String,
    /// The committed key and its look-alike skeletons (see [`name_reservations`]), plus
    /// those of a rename in progress; the unique index on this array is what makes names
    /// unique.
    pub keys: Vec<String>,
    pub collection: String,
    /// The database that holds the tenant collection.
    pub database: String,
    /// The placement kind (`collection`, `database`, `shared`); absent on organizations
    /// stored before placements existed, which are collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// The cluster holding the tenant's data; absent means `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub admin_id: String,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<OpDoc>,
    /// The move of its data in progress, if any (see `moves`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<crate::moves::MovingDoc>,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    /// How many events the organization has published; the latest one's number.
    #[serde(default)]
    pub event_seq: i64,
    /// Published events not relayed to the `outbox` collection yet (see `webhooks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<crate::webhooks::EventDoc>,
    /// The organization's database user's password, sealed (see `credentials`): kept only
    /// when the service has a sealing key, so that a move can recreate the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_user: Option<crate::credentials::TenantUserDoc>,
}

/// An admin in the master database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AdminDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub organization_id: String,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
}

/// The entries of the `keys` array that reserve a name: its key and the key's look-alike
/// skeletons, which start with a character no key holds, so the unique index keeps keys and
/// skeletons unique together.
pub(crate) fn name_reservations(key: &str) -> Vec<String> {
    let skeletons = domain::OrgKey::from_stored(key.to_owned()).skeletons();
    std::iter::once(key.to_owned()).chain(skeletons.iter().map(|s| s.as_str().to_owned())).collect()
}

/// The documents of a new organization and its admin as they are once it is active, with
/// its tenant data in the cluster whose shared tenant database is `tenant_database`. Create
/// stores them marked `creating`, with its intent record, until its last step.
pub(crate) fn stored(new: &domain::NewOrganization, tenant_database: &str) -> (OrgDoc, AdminDoc) {
    let (placement, cluster) = OrgDoc::placement_fields(new.placement());
    let created_at = to_bson_time(new.created_at());
    let key = new.name().key().as_str().to_owned();
    let org = OrgDoc {
        id: new.id().to_string(),
        name: new.name().as_str().to_owned(),
        keys: name_reservations(&key),
        key,
        collection: new.collection().as_str().to_owned(),
        database: new.placement().database_for(new.id(), tenant_database),
        placement,
        cluster,
        admin_id: new.admin().id.to_string(),
        state: State::Active,
        op: None,
        moving: None,
        created_at,
        updated_at: created_at,
        event_seq: 0,
        outbox: Vec::new(),
        tenant_user: None,
    };
    let admin = AdminDoc {
        id: new.admin().id.to_string(),
        email: new.admin().email.as_str().to_owned(),
        password_hash: new.admin().password_hash.as_phc().to_owned(),
        organization_id: org.id.clone(),
        created_at,
        updated_at: created_at,
    };
    (org, admin)
}

pub(crate) fn to_bson_time(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

pub(crate) fn from_bson_time(t: bson::DateTime) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).ok_or_else(|| anyhow!("timestamp out of range"))
}

impl OrgDoc {
    /// The stored placement, absent fields meaning a collection on the main cluster.
    pub(crate) fn placement(&self) -> anyhow::Result<Placement> {
        let kind = self.placement.as_deref().map(str::parse).transpose().context("placement")?.unwrap_or_default();
        let cluster =
            self.cluster.as_deref().map(ClusterName::parse).transpose().context("cluster")?.unwrap_or_default();
        Ok(Placement { kind, cluster })
    }

    /// The fields that record a placement: none for the default, so that documents of
    /// organizations placed as before placements existed stay as they were.
    pub(crate) fn placement_fields(placement: &Placement) -> (Option<String>, Option<String>) {
        let kind = (placement.kind != PlacementKind::default()).then(|| placement.kind.as_str().to_owned());
        let cluster = (!placement.cluster.is_main()).then(|| placement.cluster.as_str().to_owned());
        (kind, cluster)
    }

    pub(crate) fn to_domain(&self) -> anyhow::Result<Organization> {
        Ok::<_, anyhow::Error>(Organization {
            id: OrgId::parse(&self.id).context("organization id")?,
            name: OrganizationName::from_stored(self.name.clone(), self.key.clone()).context("organization name")?,
            collection: CollectionName::parse(&self.collection).context("collection name")?,
            placement: self.placement()?,
            admin_id: AdminId::parse(&self.admin_id).context("admin id")?,
            created_at: from_bson_time(self.created_at)?,
            updated_at: from_bson_time(self.updated_at)?,
        })
        .with_context(|| format!("corrupt organization document {}", self.id))
    }
}

impl AdminDoc {
    pub(crate) fn to_domain(&self) -> anyhow::Result<Admin> {
        Ok::<_, anyhow::Error>(Admin {
            id: AdminId::parse(&self.id).context("admin id")?,
            organization_id: OrgId::parse(&self.organization_id).context("organization id")?,
            email: Email::parse(&self.email).context("email")?,
            password_hash: PasswordHash::from_phc(self.password_hash.clone()).context("password hash")?,
            created_at: from_bson_time(self.created_at)?,
            updated_at: from_bson_time(self.updated_at)?,
        })
        .with_context(|| format!("corrupt admin document {}", self.id))
    }
}
