//! Sessions, failed-login counters and the audit trail on MongoDB.
//!
//! Every decision that must hold under concurrency is applied by one conditional
//! single-document update, atomic on any deployment (standalone, replica set, sharded): a
//! rotation is written only if the session still answers to the hash it was decided on; a
//! login throttle only if its version is still the one read. The decisions themselves are
//! the domain's; nothing here compares times or hashes to decide anything.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    AdminId, ApiKeyId, AuditAction, AuditEvent, AuditOutcome, CheckId, EventId, LoginThrottle, OrgId, PasswordHash,
    PendingCheck, RefreshState, Session, SessionId, StoreError,
};
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use ports::{
    AccountLockout, AuditLog, AuditQuery, NewSession, REMEMBERED_ROTATIONS, RefreshHash, SessionRepository,
    StoredSession, StoredThrottle, ThrottleKey,
};
use serde::{Deserialize, Serialize};

use crate::MongoStore;
use crate::documents::{from_bson_time, to_bson_time};
use crate::errors::{db, is_duplicate_key, store_error, unknown};

/// Stored data that does not parse.
fn corrupt(error: impl Into<anyhow::Error>) -> StoreError {
    unknown(error)
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionDoc {
    #[serde(rename = "_id")]
    id: String,
    admin_id: String,
    org_id: String,
    created_at: bson::DateTime,
    expires_at: bson::DateTime,
    current: String,
    #[serde(default)]
    previous: Option<String>,
    #[serde(default)]
    rotated_at: Option<bson::DateTime>,
    #[serde(default)]
    retired: Vec<String>,
    #[serde(default)]
    revoked_at: Option<bson::DateTime>,
    /// Its `session.revoked` event until relayed (see `webhooks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outbox: Vec<crate::webhooks::EventDoc>,
}

impl SessionDoc {
    fn to_domain(&self) -> Result<Session, StoreError> {
        Ok(Session {
            id: SessionId::parse(&self.id).map_err(corrupt)?,
            admin_id: AdminId::parse(&self.admin_id).map_err(corrupt)?,
            org_id: OrgId::parse(&self.org_id).map_err(corrupt)?,
            created_at: from_bson_time(self.created_at).map_err(corrupt)?,
            expires_at: from_bson_time(self.expires_at).map_err(corrupt)?,
        })
    }

    fn to_stored(&self) -> Result<StoredSession, StoreError> {
        let previous = match (&self.previous, self.rotated_at) {
            (Some(hash), Some(at)) => Some((RefreshHash::from_hex(hash.clone()), from_bson_time(at).map_err(corrupt)?)),
            _ => None,
        };
        let state = RefreshState {
            current: RefreshHash::from_hex(self.current.clone()),
            previous,
            revoked: self.revoked_at.is_some(),
        };
        Ok(StoredSession { session: self.to_domain()?, state })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct EventDoc {
    #[serde(rename = "_id")]
    id: String,
    at: bson::DateTime,
    action: String,
    org_id: Option<String>,
    actor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key_id: Option<String>,
    ip: Option<String>,
    request_id: Option<String>,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<bson::DateTime>,
}

impl EventDoc {
    fn from_domain(e: &AuditEvent) -> Self {
        Self {
            id: e.id.to_string(),
            at: to_bson_time(e.at),
            action: e.action.as_str().to_owned(),
            org_id: e.organization_id.map(|id| id.to_string()),
            actor_id: e.actor_id.map(|id| id.to_string()),
            api_key_id: e.api_key_id.map(|id| id.to_string()),
            ip: e.ip.clone(),
            request_id: e.request_id.clone(),
            outcome: e.outcome.as_str().to_owned(),
            expires_at: None,
        }
    }

    fn to_domain(&self) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            id: EventId::parse(&self.id).map_err(corrupt)?,
            at: from_bson_time(self.at).map_err(corrupt)?,
            action: self.action.parse::<AuditAction>().map_err(corrupt)?,
            organization_id: self.org_id.as_deref().map(OrgId::parse).transpose().map_err(corrupt)?,
            actor_id: self.actor_id.as_deref().map(AdminId::parse).transpose().map_err(corrupt)?,
            api_key_id: self.api_key_id.as_deref().map(ApiKeyId::parse).transpose().map_err(corrupt)?,
            ip: self.ip.clone(),
            request_id: self.request_id.clone(),
            outcome: self.outcome.parse::<AuditOutcome>().map_err(corrupt)?,
        })
    }
}

/// A login throttle, stored under its key (a keyed hash of the email address).
#[derive(Debug, Serialize, Deserialize)]
struct ThrottleDoc {
    #[serde(rename = "_id")]
    key: String,
    /// The version a compare-and-set names; incremented by every write.
    v: i64,
    failures: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_until: Option<bson::DateTime>,
    #[serde(default)]
    checks: Vec<CheckDoc>,
    /// The TTL index removes the document after this.
    forget_after: bson::DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckDoc {
    id: String,
    expires_at: bson::DateTime,
}

impl ThrottleDoc {
    fn new(key: &ThrottleKey, throttle: &LoginThrottle, version: u64, forget_after: DateTime<Utc>) -> Self {
        Self {
            key: key.as_hex().to_owned(),
            v: i64::try_from(version).unwrap_or(i64::MAX),
            failures: i64::from(throttle.failures),
            locked_until: throttle.locked_until.map(to_bson_time),
            checks: throttle
                .checks
                .iter()
                .map(|c| CheckDoc { id: c.id.to_string(), expires_at: to_bson_time(c.expires_at) })
                .collect(),
            forget_after: to_bson_time(forget_after),
        }
    }

    fn into_stored(self) -> Result<StoredThrottle, StoreError> {
        let checks = self
            .checks
            .into_iter()
            .map(|c| {
                Ok(PendingCheck {
                    id: CheckId::parse(&c.id).map_err(corrupt)?,
                    expires_at: from_bson_time(c.expires_at).map_err(corrupt)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let throttle = LoginThrottle {
            failures: u32::try_from(self.failures).map_err(corrupt)?,
            locked_until: self.locked_until.map(from_bson_time).transpose().map_err(corrupt)?,
            checks,
        };
        Ok(StoredThrottle { throttle, version: u64::try_from(self.v).map_err(corrupt)? })
    }
}

impl MongoStore {
    fn throttles(&self) -> mongodb::Collection<ThrottleDoc> {
        self.master.collection("login_throttles")
    }

    /// Revokes a live session and publishes `session.revoked` in the same write.
    async fn revoke_one(&self, session: &SessionDoc, now: DateTime<Utc>) -> Result<(), StoreError> {
        let event = domain::Event::session_revoked(domain::MessageId::at(now), &session.to_domain()?, now);
        let events = [crate::webhooks::EventDoc::from_domain(&event)];
        let update = crate::webhooks::merged(
            doc! {"$set": {"revoked_at": to_bson_time(now)}},
            crate::webhooks::publishing_carried(&events)?,
        );
        let revoked = db(self.sessions().update_one(doc! {"_id": &session.id, "revoked_at": null}, update).await)?;
        if revoked.matched_count == 1 {
            self.relay_after_carrying(crate::webhooks::SESSIONS, &session.id).await;
        }
        Ok(())
    }

    fn sessions(&self) -> mongodb::Collection<SessionDoc> {
        self.master.collection("sessions")
    }

    fn events_collection(&self) -> mongodb::Collection<EventDoc> {
        self.master.collection("audit_events")
    }

    fn push_retired(hash: &str) -> Document {
        doc! {"retired": {"$each": [hash], "$slice": -i64::try_from(REMEMBERED_ROTATIONS).unwrap_or(i64::MAX)}}
    }
}

#[async_trait]
impl AccountLockout for MongoStore {
    async fn load_throttle(&self, key: &ThrottleKey) -> Result<Option<StoredThrottle>, StoreError> {
        let found = db(self.throttles().find_one(doc! {"_id": key.as_hex()}).await)?;
        found.map(ThrottleDoc::into_stored).transpose()
    }

    async fn save_throttle(
        &self,
        key: &ThrottleKey,
        next: &LoginThrottle,
        expected: Option<u64>,
        forget_after: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One single-document write either way, atomic on every deployment: an insert that
        // the `_id` makes unique, or a replace conditional on the version read.
        let Some(expected) = expected else {
            return match self.throttles().insert_one(ThrottleDoc::new(key, next, 1, forget_after)).await {
                Ok(_) => Ok(true),
                Err(e) if is_duplicate_key(&e) => Ok(false),
                Err(e) => Err(store_error(e)),
            };
        };
        let version = i64::try_from(expected).map_err(corrupt)?;
        let replacement = ThrottleDoc::new(key, next, expected.saturating_add(1), forget_after);
        let replaced = db(self.throttles().replace_one(doc! {"_id": key.as_hex(), "v": version}, replacement).await)?;
        Ok(replaced.matched_count == 1)
    }

    async fn upgrade_password_hash(
        &self,
        admin: AdminId,
        current: &PasswordHash,
        upgraded: PasswordHash,
    ) -> Result<bool, StoreError> {
        let result = db(self
            .master
            .collection::<Document>("admins")
            .update_one(
                doc! {"_id": admin.to_string(), "password_hash": current.as_phc()},
                doc! {"$set": {"password_hash": upgraded.as_phc()}},
            )
            .await)?;
        Ok(result.matched_count == 1)
    }
}

#[async_trait]
impl SessionRepository for MongoStore {
    async fn create_session(&self, new: NewSession) -> Result<(), StoreError> {
        let s = &new.session;
        let document = SessionDoc {
            id: s.id.to_string(),
            admin_id: s.admin_id.to_string(),
            org_id: s.org_id.to_string(),
            created_at: to_bson_time(s.created_at),
            expires_at: to_bson_time(s.expires_at),
            current: new.refresh_hash.as_hex().to_owned(),
            previous: None,
            rotated_at: None,
            retired: Vec::new(),
            revoked_at: None,
            outbox: Vec::new(),
        };
        db(self.sessions().insert_one(document).await)?;
        Ok(())
    }

    async fn find_by_refresh(&self, presented: &RefreshHash) -> Result<Option<StoredSession>, StoreError> {
        let presented = presented.as_hex();
        let filter = doc! {"$or": [{"current": presented}, {"retired": presented}]};
        db(self.sessions().find_one(filter).await)?.map(|found| found.to_stored()).transpose()
    }

    async fn find_session(&self, id: SessionId) -> Result<Option<(Session, bool)>, StoreError> {
        let found = db(self.sessions().find_one(doc! {"_id": id.to_string()}).await)?;
        found.map(|found| Ok((found.to_domain()?, found.revoked_at.is_some()))).transpose()
    }

    async fn save_rotation(
        &self,
        id: SessionId,
        expected_current: &RefreshHash,
        replacement: &RefreshHash,
        previous: Option<(RefreshHash, DateTime<Utc>)>,
    ) -> Result<bool, StoreError> {
        let (previous, rotated_at) = match previous {
            Some((hash, at)) => (bson::Bson::String(hash.as_hex().to_owned()), bson::Bson::DateTime(to_bson_time(at))),
            None => (bson::Bson::Null, bson::Bson::Null),
        };
        let saved = db(self
            .sessions()
            .update_one(
                doc! {"_id": id.to_string(), "current": expected_current.as_hex(), "revoked_at": null},
                doc! {
                    "$set": {"current": replacement.as_hex(), "previous": previous, "rotated_at": rotated_at},
                    "$push": Self::push_retired(expected_current.as_hex()),
                },
            )
            .await)?;
        Ok(saved.matched_count == 1)
    }

    async fn revoke_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(session) = db(self.sessions().find_one(doc! {"_id": id.to_string(), "revoked_at": null}).await)? {
            self.revoke_one(&session, now).await?;
        }
        Ok(())
    }

    async fn revoke_admin_sessions(
        &self,
        admin: AdminId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut filter = doc! {"admin_id": admin.to_string(), "revoked_at": null};
        if let Some(except) = except {
            filter.insert("_id", doc! {"$ne": except.to_string()});
        }
        // One write per session, each with its own event: an admin has few live sessions.
        let sessions: Vec<SessionDoc> = db(db(self.sessions().find(filter).await)?.try_collect().await)?;
        for session in sessions {
            self.revoke_one(&session, now).await?;
        }
        Ok(())
    }

    async fn revoke_organization_sessions(&self, org: OrgId, now: DateTime<Utc>) -> Result<(), StoreError> {
        db(self
            .sessions()
            .update_many(
                doc! {"org_id": org.to_string(), "revoked_at": null},
                doc! {"$set": {"revoked_at": to_bson_time(now)}},
            )
            .await)?;
        Ok(())
    }
}

#[async_trait]
impl AuditLog for MongoStore {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        db(self.events_collection().insert_one(EventDoc::from_domain(&event)).await)?;
        Ok(())
    }

    async fn events(&self, org: OrgId, query: AuditQuery, now: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError> {
        // Expired events may outlive their time until the TTL monitor runs; they are
        // filtered out here so that retention is exact.
        let mut filter = doc! {
            "org_id": org.to_string(),
            "$or": [{"expires_at": {"$exists": false}}, {"expires_at": {"$gt": to_bson_time(now)}}],
        };
        if let Some(action) = query.action {
            filter.insert("action", action.as_str());
        }
        if let Some(before) = query.before {
            // Hyphenated UUIDs of one width sort as their bytes, and version 7 ids sort by time.
            filter.insert("_id", doc! {"$lt": before.to_string()});
        }
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut cursor = db(self.events_collection().find(filter).sort(doc! {"_id": -1}).limit(limit).await)?;
        let mut events = Vec::new();
        while db(cursor.advance().await)? {
            events.push(db(cursor.deserialize_current())?.to_domain()?);
        }
        Ok(events)
    }

    async fn expire_events(&self, org: OrgId, at: DateTime<Utc>) -> Result<(), StoreError> {
        db(self
            .events_collection()
            .update_many(doc! {"org_id": org.to_string()}, doc! {"$set": {"expires_at": to_bson_time(at)}})
            .await)?;
        Ok(())
    }
}
