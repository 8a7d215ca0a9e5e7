//! API keys on MongoDB: one document per key in the master database's `api_keys`
//! collection, found by the unique index on the hash of its secret.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{AdminId, ApiKey, ApiKeyHash, ApiKeyId, ApiKeyName, Event, MessageId, OrgId, Scopes, StoreError};
use mongodb::bson::{self, doc};
use ports::ApiKeyRepository;
use serde::{Deserialize, Serialize};

use crate::MongoStore;
use crate::documents::{from_bson_time, to_bson_time};
use crate::errors::{db, unknown};
use crate::webhooks::{EventDoc, merged, publishing_carried};

/// The collection of API keys in the master database.
pub(crate) const API_KEYS: &str = "api_keys";

#[derive(Debug, Serialize, Deserialize)]
struct ApiKeyDoc {
    #[serde(rename = "_id")]
    id: String,
    org_id: String,
    created_by: String,
    name: String,
    scopes: Vec<String>,
    prefix: String,
    /// The SHA-256 of the secret, hex; unique.
    hash: String,
    created_at: bson::DateTime,
    #[serde(default)]
    expires_at: Option<bson::DateTime>,
    #[serde(default)]
    last_used_at: Option<bson::DateTime>,
    /// Set when revoked: the document stays until its `api_key.revoked` event is relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<bson::DateTime>,
    /// Its events until relayed (see `webhooks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outbox: Vec<crate::webhooks::EventDoc>,
}

impl ApiKeyDoc {
    fn from_domain(key: &ApiKey, hash: &ApiKeyHash) -> Self {
        Self {
            id: key.id.to_string(),
            org_id: key.org_id.to_string(),
            created_by: key.created_by.to_string(),
            name: key.name.as_str().to_owned(),
            scopes: key.scopes.names().into_iter().map(str::to_owned).collect(),
            prefix: key.prefix.clone(),
            hash: hash.as_hex().to_owned(),
            created_at: to_bson_time(key.created_at),
            expires_at: key.expires_at.map(to_bson_time),
            last_used_at: key.last_used_at.map(to_bson_time),
            revoked_at: None,
            outbox: Vec::new(),
        }
    }

    fn to_domain(&self) -> Result<ApiKey, StoreError> {
        Ok(ApiKey {
            id: ApiKeyId::parse(&self.id).map_err(unknown)?,
            org_id: OrgId::parse(&self.org_id).map_err(unknown)?,
            created_by: AdminId::parse(&self.created_by).map_err(unknown)?,
            name: ApiKeyName::parse(&self.name).map_err(unknown)?,
            scopes: Scopes::parse(self.scopes.iter().map(String::as_str)).map_err(unknown)?,
            prefix: self.prefix.clone(),
            created_at: from_bson_time(self.created_at).map_err(unknown)?,
            expires_at: self.expires_at.map(from_bson_time).transpose().map_err(unknown)?,
            last_used_at: self.last_used_at.map(from_bson_time).transpose().map_err(unknown)?,
        })
    }
}

impl MongoStore {
    fn api_keys(&self) -> mongodb::Collection<ApiKeyDoc> {
        self.master.collection(API_KEYS)
    }
}

#[async_trait]
impl ApiKeyRepository for MongoStore {
    async fn create_api_key(&self, key: ApiKey, hash: ApiKeyHash) -> Result<(), StoreError> {
        // The key and its `api_key.created` event, in one insert.
        let mut stored = ApiKeyDoc::from_domain(&key, &hash);
        stored.outbox = vec![EventDoc::from_domain(&Event::api_key_created(MessageId::at(key.created_at), &key))];
        db(self.api_keys().insert_one(&stored).await)?;
        self.relay_after_carrying(API_KEYS, &stored.id).await;
        Ok(())
    }

    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError> {
        db(self.api_keys().find_one(doc! {"hash": hash.as_hex(), "revoked_at": null}).await)?
            .map(|found| found.to_domain())
            .transpose()
    }

    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKey>, StoreError> {
        let mut cursor = db(self
            .api_keys()
            .find(doc! {"org_id": org.to_string(), "revoked_at": null})
            .sort(doc! {"created_at": 1, "_id": 1})
            .await)?;
        let mut keys = Vec::new();
        while db(cursor.advance().await)? {
            keys.push(db(cursor.deserialize_current())?.to_domain()?);
        }
        Ok(keys)
    }

    async fn revoke_api_key(&self, org: OrgId, id: ApiKeyId) -> Result<bool, StoreError> {
        // Marked revoked with its `api_key.revoked` event in one write; the relay removes the
        // document once the event is in its organization's sequence.
        let now = Utc::now();
        let event = EventDoc::from_domain(&Event::api_key_revoked(MessageId::at(now), org, id, now));
        let update = merged(doc! {"$set": {"revoked_at": to_bson_time(now)}}, publishing_carried(&[event])?);
        let filter = doc! {"_id": id.to_string(), "org_id": org.to_string(), "revoked_at": null};
        let revoked = db(self.api_keys().update_one(filter, update).await)?;
        if revoked.matched_count == 1 {
            self.relay_after_carrying(API_KEYS, &id.to_string()).await;
        }
        Ok(revoked.matched_count == 1)
    }

    async fn revoke_organization_api_keys(&self, org: OrgId) -> Result<(), StoreError> {
        db(self.api_keys().delete_many(doc! {"org_id": org.to_string()}).await)?;
        Ok(())
    }

    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        // Never moves the time back: of two instances recording at once, the later wins.
        db(self
            .api_keys()
            .update_one(doc! {"_id": id.to_string()}, doc! {"$max": {"last_used_at": to_bson_time(at)}})
            .await)?;
        Ok(())
    }
}
