//! Names of tenant collections. Invariant: always `org_` followed by a non-empty suffix of
//! letters, digits, combining marks and `_`, at most 120 bytes: a valid MongoDB
//! collection name that can never be a system collection.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::{OrgId, OrgKey};

/// The first `bytes` bytes of a digest in lowercase hex.
fn hex_prefix(digest: &[u8], bytes: usize) -> String {
    digest.iter().take(bytes).map(|b| format!("{b:02x}")).collect()
}

/// The longest collection name, in bytes.
pub const MAX_COLLECTION_BYTES: usize = 120;

/// How tenant collections are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CollectionNaming {
    /// `org_<key>`: readable, and moved by a rename.
    #[default]
    Key,
    /// `org_<id>` (the id's 32 hex digits): never moves, so a rename touches metadata only.
    Id,
}

/// Why a text is not a tenant collection name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tenant collection name")]
pub struct CollectionNameError;

/// The name of an organization's tenant collection.
///
/// ```
/// use domain::{CollectionName, CollectionNaming, OrgId, OrganizationName};
///
/// let key = OrganizationName::parse("Acme").unwrap().key().clone();
/// let id = OrgId::parse("6f1c1c5e-8a7e-4a53-9d67-3f9c5a8e2b10").unwrap();
/// assert_eq!(CollectionName::for_organization(CollectionNaming::Key, id, &key).as_str(), "org_acme");
/// assert_eq!(
///     CollectionName::for_organization(CollectionNaming::Id, id, &key).as_str(),
///     "org_6f1c1c5e8a7e4a539d673f9c5a8e2b10"
/// );
/// assert!(CollectionName::parse("system.users").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionName(String);

impl CollectionName {
    /// The prefix every tenant collection name starts with.
    pub const PREFIX: &'static str = "org_";

    /// The collection an organization with this id and key gets under a naming scheme.
    pub fn for_organization(naming: CollectionNaming, id: OrgId, key: &OrgKey) -> Self {
        match naming {
            CollectionNaming::Key => Self(format!("{}{}", Self::PREFIX, Self::key_suffix(key.as_str()))),
            CollectionNaming::Id => Self(format!("{}{}", Self::PREFIX, id.as_uuid().simple())),
        }
    }

    /// The key itself when `org_<key>` fits in a collection name; else as much of the key
    /// as fits before `_` and 16 hex digits of the key's SHA-256, so that long keys (64
    /// characters of a multi-byte script) still name distinct, valid collections. Keys that
    /// fit, which are all keys of ASCII names, are unchanged.
    fn key_suffix(key: &str) -> String {
        let room = MAX_COLLECTION_BYTES - Self::PREFIX.len();
        if key.len() <= room {
            return key.to_owned();
        }
        let digest = hex_prefix(&Sha256::digest(key.as_bytes()), 8);
        let mut cut = room - 1 - digest.len();
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        // A cut right after a letter's base character would leave its combining marks on
        // the other side, which is harmless: the result only has to be unique and valid.
        format!("{}_{digest}", &key[..cut])
    }

    /// Parses a stored collection name, refusing anything that is not a tenant collection.
    pub fn parse(text: &str) -> Result<Self, CollectionNameError> {
        let suffix = text.strip_prefix(Self::PREFIX).ok_or(CollectionNameError)?;
        let valid = !suffix.is_empty()
            && text.len() <= MAX_COLLECTION_BYTES
            && suffix
                .chars()
                .all(|c| c == '_' || c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c));
        if valid { Ok(Self(text.to_owned())) } else { Err(CollectionNameError) }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CollectionName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_tenant_collection_names() {
        for ok in ["org_acme", "org_a_b", "org_東京", "org_6f1c1c5e8a7e4a539d673f9c5a8e2b10"] {
            assert!(CollectionName::parse(ok).is_ok(), "{ok}");
        }
        let too_long = format!("org_{}", "a".repeat(117));
        for bad in ["acme", "org_", "org_a.b", "org_a$b", "system.users", "org_a b", too_long.as_str()] {
            assert!(CollectionName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_keys_get_shortened_distinct_names_and_short_keys_keep_theirs() {
        let id = OrgId::new();
        let collection = |name: &str| {
            let key = crate::OrganizationName::parse(name).expect("valid name").key().clone();
            CollectionName::for_organization(CollectionNaming::Key, id, &key).as_str().to_owned()
        };
        assert_eq!(collection(&"a".repeat(64)), format!("org_{}", "a".repeat(64)));
        assert_eq!(collection(&"é".repeat(58)), format!("org_{}", "é".repeat(58)));
        let (a, b) = (collection(&format!("{}a", "東".repeat(63))), collection(&format!("{}b", "東".repeat(63))));
        assert_ne!(a, b, "keys that differ only after the cut");
        assert!(a.len() <= MAX_COLLECTION_BYTES && b.len() <= MAX_COLLECTION_BYTES);
        assert!(a.starts_with("org_東東東"), "{a}");
    }

    #[test]
    fn every_generated_name_parses_back() {
        let id = OrgId::new();
        for name in ["Acme", "東京 Tech", &"é".repeat(58), &"東".repeat(64), &"é".repeat(64)] {
            let key = crate::OrganizationName::parse(name).expect("valid name").key().clone();
            for naming in [CollectionNaming::Key, CollectionNaming::Id] {
                let c = CollectionName::for_organization(naming, id, &key);
                assert_eq!(CollectionName::parse(c.as_str()), Ok(c.clone()));
            }
        }
    }
}
