//! Where an organization's data lives: its placement kind and the cluster that holds it.
//!
//! The master database records an organization's placement when it is created and nothing
//! else decides it; operators change it with moves. New organizations get the placement the
//! operator's policy names.

use std::fmt;
use std::str::FromStr;

use crate::{OrgId, Organization};

/// How an organization's documents are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PlacementKind {
    /// A collection of its own in the shared tenant database (the default).
    #[default]
    Collection,
    /// A database of its own, named by the organization's immutable id, holding its
    /// collection: the boundary at which MongoDB can limit a user to one tenant.
    Database,
    /// One collection shared by many organizations, each document carrying the
    /// organization's id in a tenant field: no DDL per organization.
    Shared,
}

impl PlacementKind {
    /// Every kind, in a stable order.
    pub const ALL: [PlacementKind; 3] = [Self::Collection, Self::Database, Self::Shared];

    /// The name used in settings, the API and storage.
    ///
    /// ```
    /// use domain::PlacementKind;
    /// assert_eq!(PlacementKind::Shared.as_str(), "shared");
    /// assert_eq!("database".parse(), Ok(PlacementKind::Database));
    /// assert!("cluster".parse::<PlacementKind>().is_err());
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collection => "collection",
            Self::Database => "database",
            Self::Shared => "shared",
        }
    }
}

impl fmt::Display for PlacementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a placement kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of collection, database, shared")]
pub struct PlacementKindError;

impl FromStr for PlacementKind {
    type Err = PlacementKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s.trim().to_ascii_lowercase()).ok_or(PlacementKindError)
    }
}

/// The longest cluster name.
pub const MAX_CLUSTER_NAME_CHARS: usize = 32;

/// The name of a MongoDB deployment the operator configured; `main` is the one that also
/// holds the master database.
///
/// ```
/// use domain::ClusterName;
/// assert_eq!(ClusterName::main().as_str(), "main");
/// assert!(ClusterName::parse("eu-west_2").is_ok());
/// assert!(ClusterName::parse("EU West").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(String);

/// Why a text is not a cluster name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_CLUSTER_NAME_CHARS} characters of a-z, 0-9, - and _, starting with a letter")]
pub struct ClusterNameError;

impl ClusterName {
    /// The main deployment's name.
    pub fn main() -> Self {
        Self("main".to_owned())
    }

    /// Parses an operator's cluster name: lowercase letters, digits, `-` and `_`, starting
    /// with a letter, so that it is safe in settings keys, logs and metric labels.
    pub fn parse(text: &str) -> Result<Self, ClusterNameError> {
        let ok = (1..=MAX_CLUSTER_NAME_CHARS).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok { Ok(Self(text.to_owned())) } else { Err(ClusterNameError) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the main deployment.
    pub fn is_main(&self) -> bool {
        self.0 == "main"
    }
}

impl Default for ClusterName {
    fn default() -> Self {
        Self::main()
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterName({:?})", self.0)
    }
}

/// Where an organization's data lives: a kind on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Placement {
    /// How its documents are stored.
    pub kind: PlacementKind,
    /// The deployment that holds them.
    pub cluster: ClusterName,
}

impl Placement {
    /// The collection holding the documents of every `shared` organization of a cluster.
    /// Tenant collections are named `org_...`, so it can never be one of them.
    pub const SHARED_COLLECTION: &'static str = "shared_tenants";

    /// The field that carries the organization's id on each of its documents in the shared
    /// collection.
    pub const TENANT_FIELD: &'static str = "tenant_id";

    /// The database of a `database` organization. MongoDB cannot rename a database, so it
    /// is named by the organization's immutable id; a rename moves only the collection
    /// inside it.
    ///
    /// ```
    /// use domain::{OrgId, Placement};
    /// let id = OrgId::parse("0190c5a4-7c5e-7b6a-9d2e-3f4a5b6c7d8e").unwrap();
    /// assert_eq!(Placement::database_of(id), "orgsvc_t_0190c5a47c5e7b6a9d2e3f4a5b6c7d8e");
    /// ```
    pub fn database_of(id: OrgId) -> String {
        format!("orgsvc_t_{}", id.as_uuid().simple())
    }

    /// The database organization `id` so placed keeps its data in, on a cluster whose
    /// shared tenant database is `tenant_database`.
    pub fn database_for(&self, id: OrgId, tenant_database: &str) -> String {
        match self.kind {
            PlacementKind::Database => Self::database_of(id),
            PlacementKind::Collection | PlacementKind::Shared => tenant_database.to_owned(),
        }
    }
}

/// Where an organization's documents are, as its own applications reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLocation {
    /// The placement.
    pub placement: Placement,
    /// The cluster's connection string, without any credentials of the service.
    pub uri: String,
    /// The database.
    pub database: String,
    /// The collection.
    pub collection: String,
    /// For `shared`: the field each of the tenant's documents carries, and its value.
    pub tenant_filter: Option<(String, String)>,
}

impl TenantLocation {
    /// Where `org` lives on its cluster, reached at `uri` (without credentials), whose
    /// shared tenant database is `tenant_database`: the one rule for every store.
    pub fn of(org: &Organization, uri: String, tenant_database: &str) -> Self {
        let shared = org.placement.kind == PlacementKind::Shared;
        Self {
            placement: org.placement.clone(),
            uri,
            database: org.placement.database_for(org.id, tenant_database),
            collection: if shared { Placement::SHARED_COLLECTION.to_owned() } else { org.collection.to_string() },
            tenant_filter: shared.then(|| (Placement::TENANT_FIELD.to_owned(), org.id.to_string())),
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.kind, self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_in_any_case_and_print_back() {
        for kind in PlacementKind::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
            assert_eq!(kind.as_str().to_uppercase().parse(), Ok(kind));
        }
        assert_eq!(PlacementKind::default(), PlacementKind::Collection);
        assert_eq!("".parse::<PlacementKind>(), Err(PlacementKindError));
    }

    #[test]
    fn cluster_names() {
        for good in ["main", "eu", "eu-west-2", "a_1", &"a".repeat(32)] {
            assert_eq!(ClusterName::parse(good).map(|c| c.as_str().to_owned()), Ok(good.to_owned()));
        }
        for bad in ["", "1eu", "Eu", "eu west", "eu.west", "-eu", &"a".repeat(33), "ëu"] {
            assert_eq!(ClusterName::parse(bad), Err(ClusterNameError), "{bad:?}");
        }
        assert!(ClusterName::main().is_main() && !ClusterName::parse("eu").expect("name").is_main());
        assert_eq!(Placement::default().to_string(), "collection on main");
    }

    #[test]
    fn each_placement_has_one_location_rule() {
        let name = crate::OrganizationName::parse("Acme").expect("name");
        let id = OrgId::new();
        let mut org = crate::Organization {
            id,
            collection: crate::CollectionName::for_organization(crate::CollectionNaming::Key, id, name.key()),
            name,
            placement: Placement::default(),
            admin_id: crate::AdminId::new(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        for (kind, database, collection, filter) in [
            (PlacementKind::Collection, "t".to_owned(), "org_acme", None),
            (PlacementKind::Database, Placement::database_of(id), "org_acme", None),
            (PlacementKind::Shared, "t".to_owned(), "shared_tenants", Some(("tenant_id".to_owned(), id.to_string()))),
        ] {
            org.placement.kind = kind;
            let location = TenantLocation::of(&org, "mongodb://db/".to_owned(), "t");
            assert_eq!(
                (location.database, location.collection.as_str(), location.tenant_filter),
                (database, collection, filter)
            );
        }
    }
}
