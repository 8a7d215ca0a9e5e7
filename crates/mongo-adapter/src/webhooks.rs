//! Events and webhooks on MongoDB.
//!
//! **Publishing.** An operation's events ride on the organization document: the write that
//! commits the operation (a create's activation, an update's commit, a delete's mark) pushes
//! them onto its `outbox` array and adds their number to its `event_seq` in the same
//! single-document update, so an event exists if and only if its change committed, on a
//! standalone server as on a replica set. A relay then copies them into the `outbox`
//! collection, numbered, and pulls them off the document: the pending events are always the
//! last `outbox.len()` numbers of `event_seq`, so every relay (the operation's own, the
//! reconciler's, a delete's before it removes the document) numbers an event alike, and an
//! upsert by event id makes relaying twice harmless.
//!
//! **Delivering.** Each endpoint (`webhooks`) has a cursor (the last number it is done with)
//! and a head (the latest number relayed for its organization); `due_at` is set while it has
//! work, to now or to a retry's time. A worker leases a due endpoint with one conditional
//! update, sends the event after its cursor, and finishes conditionally on its lease.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    AttemptResult, Endpoint, EndpointPolicy, Event, EventFilter, EventType, MessageId, NextStep, OrgId, StoreError,
    WebhookId, WebhookSecret, WebhookUrl,
};
use mongodb::bson::{self, Document, doc};
use mongodb::options::ReturnDocument;
use ports::{DeliveryRecord, DeliveryTask, WebhookRepository};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::MongoStore;
use crate::documents::{OrgDoc, from_bson_time, to_bson_time};
use crate::errors::{db, unknown};

/// The relayed events, numbered per organization.
pub(crate) const OUTBOX: &str = "outbox";
/// The endpoints.
pub(crate) const WEBHOOKS: &str = "webhooks";
/// The delivery log.
pub(crate) const DELIVERIES: &str = "webhook_deliveries";
/// The sessions, which carry their `session.revoked` events until relayed.
pub(crate) const SESSIONS: &str = "sessions";
/// The documents that carry events of their own until relayed into their organization's
/// sequence: a session's revocation, an API key's creation or revocation.
const CARRIERS: [&str; 2] = [SESSIONS, crate::api_keys::API_KEYS];

/// How long relayed events are kept: longer than any endpoint retries one (about a day),
/// with room for an outage of the workers.
const EVENT_RETENTION: chrono::Duration = chrono::Duration::days(7);
/// How long the delivery log keeps an attempt.
const DELIVERY_RETENTION: chrono::Duration = chrono::Duration::days(30);

/// An event waiting on its organization document to be relayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    at: bson::DateTime,
    body: String,
}

impl EventDoc {
    pub(crate) fn from_domain(event: &Event) -> Self {
        Self {
            id: event.id().to_string(),
            event_type: event.event_type().as_str().to_owned(),
            at: to_bson_time(event.occurred_at()),
            body: event.body().to_owned(),
        }
    }
}

/// The update that publishes `events` with the write it is part of.
pub(crate) fn publishing(events: &[EventDoc]) -> Result<Document, StoreError> {
    let count = i64::try_from(events.len()).map_err(unknown)?;
    Ok(doc! {
        "$push": {"outbox": {"$each": bson::to_bson(events).map_err(unknown)?}},
        "$inc": {"event_seq": count},
    })
}

/// The update that makes a session or an API key carry `events` with the write it is part
/// of; [`MongoStore::relay_carried`] numbers them in their organization's sequence.
pub(crate) fn publishing_carried(events: &[EventDoc]) -> Result<Document, StoreError> {
    Ok(doc! {"$push": {"outbox": {"$each": bson::to_bson(events).map_err(unknown)?}}})
}

/// Adds `extra`'s operators to `update` (both are update documents with distinct operators).
pub(crate) fn merged(mut update: Document, extra: Document) -> Document {
    for (operator, fields) in extra {
        match (update.get_document_mut(&operator), fields) {
            (Ok(existing), bson::Bson::Document(more)) => existing.extend(more),
            (_, fields) => {
                update.insert(operator, fields);
            }
        }
    }
    update
}

#[derive(Debug, Serialize, Deserialize)]
struct OutboxDoc {
    #[serde(rename = "_id")]
    id: String,
    org_id: String,
    seq: i64,
    #[serde(rename = "type")]
    event_type: String,
    at: bson::DateTime,
    body: String,
    expires_at: bson::DateTime,
}

impl OutboxDoc {
    fn to_domain(&self) -> Result<Event, StoreError> {
        Ok(Event::from_stored(
            MessageId::parse(&self.id).map_err(unknown)?,
            OrgId::parse(&self.org_id).map_err(unknown)?,
            self.event_type.parse::<EventType>().map_err(unknown)?,
            from_bson_time(self.at).map_err(unknown)?,
            self.body.clone(),
        ))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct WebhookDoc {
    #[serde(rename = "_id")]
    id: String,
    org_id: String,
    url: String,
    events: Vec<String>,
    /// The signing secret, in clear: kept so (it is needed to sign) only where the store
    /// has no vault (see docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// The signing secret sealed by the store's vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_secret: Option<bson::Binary>,
    created_at: bson::DateTime,
    cursor: i64,
    head: i64,
    #[serde(default)]
    due_at: Option<bson::DateTime>,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    first_attempt_at: Option<bson::DateTime>,
    #[serde(default)]
    lease_token: Option<String>,
    #[serde(default)]
    lease_until: Option<bson::DateTime>,
}

impl WebhookDoc {
    fn to_domain(&self) -> Result<Endpoint, StoreError> {
        // Checked when registered; read back whatever the policy is now (deliveries check
        // every address they connect to).
        let any = EndpointPolicy { require_https: false, allow_private: true };
        Ok(Endpoint {
            id: WebhookId::parse(&self.id).map_err(unknown)?,
            organization_id: OrgId::parse(&self.org_id).map_err(unknown)?,
            url: WebhookUrl::parse(&self.url, any).map_err(unknown)?,
            events: EventFilter::parse(self.events.iter().map(String::as_str)).map_err(unknown)?,
            created_at: from_bson_time(self.created_at).map_err(unknown)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DeliveryDoc {
    #[serde(rename = "_id")]
    id: String,
    webhook_id: String,
    event_id: String,
    event_type: String,
    attempt: u32,
    at: bson::DateTime,
    #[serde(default)]
    status: Option<u32>,
    #[serde(default)]
    error: Option<String>,
    outcome: String,
    #[serde(default)]
    next_attempt_at: Option<bson::DateTime>,
    duration_ms: i64,
    expires_at: bson::DateTime,
}

impl DeliveryDoc {
    fn to_domain(&self) -> Result<DeliveryRecord, StoreError> {
        let result = match (self.status, &self.error) {
            (Some(status), _) => AttemptResult::Status(u16::try_from(status).map_err(unknown)?),
            (None, error) => AttemptResult::Failed(error.clone().unwrap_or_default()),
        };
        let next = match (self.outcome.as_str(), self.next_attempt_at) {
            ("delivered", _) => NextStep::Delivered,
            ("retrying", Some(at)) => NextStep::RetryAt(from_bson_time(at).map_err(unknown)?),
            _ => NextStep::GaveUp,
        };
        Ok(DeliveryRecord {
            event_id: MessageId::parse(&self.event_id).map_err(unknown)?,
            event_type: self.event_type.parse().map_err(unknown)?,
            attempt: self.attempt,
            at: from_bson_time(self.at).map_err(unknown)?,
            result,
            next,
            duration_ms: u64::try_from(self.duration_ms).unwrap_or(0),
        })
    }
}

impl MongoStore {
    /// How an endpoint's signing secret is kept: sealed by the vault if the store has one,
    /// else in clear (as `(clear, sealed)`).
    fn kept_secret(&self, id: WebhookId, secret: &WebhookSecret) -> (Option<String>, Option<bson::Binary>) {
        let clear = secret.expose().expose_secret();
        match self.sealed(&id.sealing_context(), clear) {
            Some(sealed) => (None, Some(sealed)),
            None => (Some(clear.to_owned()), None),
        }
    }

    /// An endpoint's signing secret, opened if sealed. A sealed one the vault cannot open
    /// (no vault, or another key) fails the delivery loudly rather than sign with nothing.
    fn signing_secret(&self, endpoint: &WebhookDoc) -> Result<WebhookSecret, StoreError> {
        let clear = match (&endpoint.secret, &endpoint.sealed_secret) {
            (Some(clear), _) => clear.clone(),
            (None, Some(sealed)) => {
                let id = WebhookId::parse(&endpoint.id).map_err(unknown)?;
                let opened = self.opened(&id.sealing_context(), sealed).ok_or_else(|| {
                    StoreError::Unknown(anyhow::anyhow!(
                        "webhook {id}: its signing secret is sealed under a key this instance does not have \
                         (ORGSVC_SEALING_KEY)"
                    ))
                })?;
                opened.expose_secret().to_owned()
            }
            (None, None) => {
                return Err(StoreError::Unknown(anyhow::anyhow!("webhook {}: no signing secret", endpoint.id)));
            }
        };
        WebhookSecret::parse(&clear).map_err(unknown)
    }

    fn outbox(&self) -> mongodb::Collection<OutboxDoc> {
        self.master.collection(OUTBOX)
    }

    fn webhooks(&self) -> mongodb::Collection<WebhookDoc> {
        self.master.collection(WEBHOOKS)
    }

    fn deliveries(&self) -> mongodb::Collection<DeliveryDoc> {
        self.master.collection(DELIVERIES)
    }

    /// Relays the events waiting on an organization document; idempotent. Returns how many
    /// it relayed.
    pub(crate) async fn relay_events(&self, org: &OrgDoc) -> Result<usize, StoreError> {
        if org.outbox.is_empty() {
            return Ok(0);
        }
        let pending = i64::try_from(org.outbox.len()).map_err(unknown)?;
        let first = org.event_seq - pending + 1;
        let expires_at = to_bson_time(Utc::now() + EVENT_RETENTION);
        for (seq, event) in (first..).zip(&org.outbox) {
            let stored = OutboxDoc {
                id: event.id.clone(),
                org_id: org.id.clone(),
                seq,
                event_type: event.event_type.clone(),
                at: event.at,
                body: event.body.clone(),
                expires_at,
            };
            let fields = bson::to_document(&stored).map_err(unknown)?;
            db(self.outbox().update_one(doc! {"_id": &event.id}, doc! {"$setOnInsert": fields}).upsert(true).await)?;
        }
        // Endpoints learn of the new head, and the idle ones become due; one that waits for
        // a retry keeps its time.
        let head = org.event_seq;
        db(self.webhooks().update_many(doc! {"org_id": &org.id}, doc! {"$max": {"head": head}}).await)?;
        db(self
            .webhooks()
            .update_many(
                doc! {"org_id": &org.id, "due_at": null, "cursor": {"$lt": head}},
                doc! {"$set": {"due_at": bson::DateTime::now()}},
            )
            .await)?;
        let ids: Vec<&String> = org.outbox.iter().map(|e| &e.id).collect();
        db(self
            .organizations
            .update_one(doc! {"_id": &org.id}, doc! {"$pull": {"outbox": {"_id": {"$in": ids}}}})
            .await)?;
        Ok(org.outbox.len())
    }

    /// Relays an organization's waiting events after the operation that published them
    /// committed. A failure is logged, not returned: the operation happened, and the
    /// reconciler relays what is left.
    pub(crate) async fn relay_after_commit(&self, id: &str) {
        let relayed = async {
            match db(self.organizations.find_one(doc! {"_id": id}).await)? {
                Some(org) => self.relay_events(&org).await,
                None => Ok(0),
            }
        }
        .await;
        if let Err(error) = relayed {
            tracing::warn!(organization_id = %id, error = %error, "events not relayed yet; the reconciler will");
        }
    }

    /// Moves the events a session or an API key carries onto its organization's document,
    /// which numbers them, then relays them from there. Idempotent, but for one case: an
    /// event relayed all the way whose carrier kept it (a crash before the pull) is found in
    /// the `outbox` collection and not pushed again. A revoked API key's document is removed
    /// once its event is safe. An event whose organization is gone is dropped: the
    /// organization's deletion was its last event.
    pub(crate) async fn relay_carried(&self, collection: &str, id: &str) -> Result<(), StoreError> {
        let carriers = self.master.collection::<Document>(collection);
        let Some(carrier) = db(carriers.find_one(doc! {"_id": id}).await)? else { return Ok(()) };
        let org_id = carrier.get_str("org_id").map_err(unknown)?.to_owned();
        let events: Vec<EventDoc> = match carrier.get_array("outbox") {
            Ok(events) => bson::from_bson(bson::Bson::Array(events.clone())).map_err(unknown)?,
            Err(_) => Vec::new(),
        };
        for event in &events {
            if db(self.outbox().count_documents(doc! {"_id": &event.id}).await)? > 0 {
                continue;
            }
            db(self
                .organizations
                .update_one(
                    doc! {"_id": &org_id, "outbox._id": {"$ne": &event.id}},
                    publishing(std::slice::from_ref(event))?,
                )
                .await)?;
        }
        if !events.is_empty() {
            let ids: Vec<&String> = events.iter().map(|e| &e.id).collect();
            db(carriers.update_one(doc! {"_id": id}, doc! {"$pull": {"outbox": {"_id": {"$in": ids}}}}).await)?;
        }
        if collection == crate::api_keys::API_KEYS {
            db(carriers
                .delete_one(doc! {"_id": id, "revoked_at": {"$ne": null}, "outbox.0": {"$exists": false}})
                .await)?;
        }
        self.relay_after_commit(&org_id).await;
        Ok(())
    }

    /// Relays what a session or an API key carries after the write that gave it the events.
    /// A failure is logged, not returned: the change happened, and the reconciler relays
    /// what is left.
    pub(crate) async fn relay_after_carrying(&self, collection: &str, id: &str) {
        if let Err(error) = self.relay_carried(collection, id).await {
            tracing::warn!(collection, id, error = %error, "events not relayed yet; the reconciler will");
        }
    }

    /// Relays the events of every organization document, session and API key that still
    /// holds some (the relay after their change was cut short). Returns the ids of the
    /// organizations relayed for.
    pub(crate) async fn relay_waiting_events(&self) -> Result<Vec<String>, StoreError> {
        for collection in CARRIERS {
            let carriers = self.master.collection::<Document>(collection);
            let mut cursor =
                db(carriers.find(doc! {"outbox._id": {"$exists": true}}).projection(doc! {"_id": 1}).await)?;
            while db(cursor.advance().await)? {
                let carrier = db(cursor.deserialize_current())?;
                self.relay_carried(collection, carrier.get_str("_id").map_err(unknown)?).await?;
            }
        }
        let mut cursor = db(self.organizations.find(doc! {"outbox._id": {"$exists": true}}).await)?;
        let mut relayed = Vec::new();
        while db(cursor.advance().await)? {
            let org = db(cursor.deserialize_current())?;
            if self.relay_events(&org).await? > 0 {
                relayed.push(org.id.clone());
            }
        }
        Ok(relayed)
    }

    /// Moves a leased endpoint on past `cursor`, due again at once if more events wait and
    /// idle otherwise, releasing the lease. Returns false if the lease was lost.
    async fn advance(&self, id: &str, lease: &str, cursor: i64) -> Result<bool, StoreError> {
        let moved_on = doc! {"cursor": cursor, "attempts": 0};
        let release = doc! {"first_attempt_at": "", "lease_token": "", "lease_until": ""};
        // Two conditional writes, so that an event relayed between them (which raises the
        // head) is never missed: the idle write applies only while the head is the cursor.
        for _ in 0..8 {
            let mut busy = moved_on.clone();
            busy.insert("due_at", bson::DateTime::now());
            let more = db(self
                .webhooks()
                .update_one(
                    doc! {"_id": id, "lease_token": lease, "head": {"$gt": cursor}},
                    doc! {"$set": busy, "$unset": release.clone()},
                )
                .await)?;
            if more.matched_count == 1 {
                return Ok(true);
            }
            let mut idle = release.clone();
            idle.insert("due_at", "");
            let done = db(self
                .webhooks()
                .update_one(
                    doc! {"_id": id, "lease_token": lease, "head": {"$lte": cursor}},
                    doc! {"$set": moved_on.clone(), "$unset": idle},
                )
                .await)?;
            if done.matched_count == 1 {
                return Ok(true);
            }
            if db(self.webhooks().count_documents(doc! {"_id": id, "lease_token": lease}).await)? == 0 {
                return Ok(false);
            }
        }
        Err(unknown(anyhow::anyhow!("endpoint {id} kept changing while being moved on")))
    }
}

#[async_trait]
impl WebhookRepository for MongoStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, secret: &WebhookSecret) -> Result<(), StoreError> {
        let org = endpoint.organization_id.to_string();
        // From now on: the endpoint starts after the latest event published so far.
        let head = db(self.organizations.find_one(doc! {"_id": &org}).await)?.map_or(0, |o| o.event_seq);
        let (secret, sealed_secret) = self.kept_secret(endpoint.id, secret);
        let stored = WebhookDoc {
            id: endpoint.id.to_string(),
            org_id: org,
            url: endpoint.url.as_str().to_owned(),
            events: endpoint.events.names().into_iter().map(str::to_owned).collect(),
            secret,
            sealed_secret,
            created_at: to_bson_time(endpoint.created_at),
            cursor: head,
            head,
            due_at: None,
            attempts: 0,
            first_attempt_at: None,
            lease_token: None,
            lease_until: None,
        };
        db(self.webhooks().insert_one(stored).await)?;
        Ok(())
    }

    async fn list_endpoints(&self, org: OrgId) -> Result<Vec<Endpoint>, StoreError> {
        let mut cursor =
            db(self.webhooks().find(doc! {"org_id": org.to_string()}).sort(doc! {"created_at": 1, "_id": 1}).await)?;
        let mut endpoints = Vec::new();
        while db(cursor.advance().await)? {
            endpoints.push(db(cursor.deserialize_current())?.to_domain()?);
        }
        Ok(endpoints)
    }

    async fn delete_endpoint(&self, org: OrgId, id: WebhookId) -> Result<bool, StoreError> {
        let deleted = db(self.webhooks().delete_one(doc! {"_id": id.to_string(), "org_id": org.to_string()}).await)?;
        Ok(deleted.deleted_count == 1)
    }

    async fn rotate_endpoint_secret(
        &self,
        org: OrgId,
        id: WebhookId,
        secret: &WebhookSecret,
    ) -> Result<bool, StoreError> {
        let updated = db(self
            .webhooks()
            .update_one(
                doc! {"_id": id.to_string(), "org_id": org.to_string()},
                match self.kept_secret(id, secret) {
                    (Some(clear), _) => doc! {"$set": {"secret": clear}, "$unset": {"sealed_secret": ""}},
                    (None, sealed) => doc! {"$set": {"sealed_secret": sealed}, "$unset": {"secret": ""}},
                },
            )
            .await)?;
        Ok(updated.matched_count == 1)
    }

    async fn delivery_log(
        &self,
        org: OrgId,
        id: WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryRecord>>, StoreError> {
        let id = id.to_string();
        if db(self.webhooks().count_documents(doc! {"_id": &id, "org_id": org.to_string()}).await)? == 0 {
            return Ok(None);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut cursor =
            db(self.deliveries().find(doc! {"webhook_id": &id}).sort(doc! {"at": -1, "_id": -1}).limit(limit).await)?;
        let mut records = Vec::new();
        while db(cursor.advance().await)? {
            records.push(db(cursor.deserialize_current())?.to_domain()?);
        }
        Ok(Some(records))
    }

    async fn next_delivery(&self, now: DateTime<Utc>, lease: Duration) -> Result<Option<DeliveryTask>, StoreError> {
        let now_bson = to_bson_time(now);
        let until = to_bson_time(now + chrono::Duration::from_std(lease).map_err(unknown)?);
        // A few rounds: an endpoint found idle or past an expired event is moved on and the
        // next one tried.
        for _ in 0..8 {
            let token = uuid::Uuid::new_v4().to_string();
            let claimed = db(self
                .webhooks()
                .find_one_and_update(
                    doc! {
                        "due_at": {"$lte": now_bson},
                        "$or": [{"lease_until": null}, {"lease_until": {"$lte": now_bson}}],
                    },
                    doc! {"$set": {"lease_token": &token, "lease_until": until}},
                )
                .sort(doc! {"due_at": 1})
                .return_document(ReturnDocument::After)
                .await)?;
            let Some(endpoint) = claimed else { return Ok(None) };
            let next = endpoint.cursor + 1;
            match db(self.outbox().find_one(doc! {"org_id": &endpoint.org_id, "seq": next}).await)? {
                Some(event) => {
                    return Ok(Some(DeliveryTask {
                        endpoint: endpoint.to_domain()?,
                        secret: self.signing_secret(&endpoint)?,
                        event: event.to_domain()?,
                        attempts_before: endpoint.attempts,
                        first_attempt_at: endpoint.first_attempt_at.map(from_bson_time).transpose().map_err(unknown)?,
                        lease: token,
                    }));
                }
                // Nothing after the cursor: idle (the advance below leaves it idle).
                None if endpoint.head <= endpoint.cursor => {
                    self.advance(&endpoint.id, &token, endpoint.cursor).await?;
                }
                // Relayed events are numbered without gaps, so a missing one expired
                // (the endpoint was behind for longer than events are kept): skip it.
                None => {
                    tracing::warn!(webhook_id = %endpoint.id, seq = next, "event expired before delivery; skipped");
                    self.advance(&endpoint.id, &token, next).await?;
                }
            }
        }
        Ok(None)
    }

    async fn finish_delivery(
        &self,
        task: &DeliveryTask,
        record: Option<DeliveryRecord>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = task.endpoint.id.to_string();
        let Some(current) = db(self.webhooks().find_one(doc! {"_id": &id, "lease_token": &task.lease}).await)? else {
            return Ok(false);
        };
        let next = record.as_ref().map_or(NextStep::Delivered, |r| r.next);
        let kept = match next {
            NextStep::RetryAt(at) => {
                let first = task.first_attempt_at.or(record.as_ref().map(|r| r.at)).unwrap_or(now);
                let updated = db(self
                    .webhooks()
                    .update_one(
                        doc! {"_id": &id, "lease_token": &task.lease},
                        doc! {
                            "$set": {"due_at": to_bson_time(at), "first_attempt_at": to_bson_time(first)},
                            "$inc": {"attempts": 1},
                            "$unset": {"lease_token": "", "lease_until": ""},
                        },
                    )
                    .await)?;
                updated.matched_count == 1
            }
            NextStep::Delivered | NextStep::GaveUp if task.event.is_final() => {
                // The organization is gone and this was its last event.
                db(self.webhooks().delete_one(doc! {"_id": &id, "lease_token": &task.lease}).await)?.deleted_count == 1
            }
            NextStep::Delivered | NextStep::GaveUp => self.advance(&id, &task.lease, current.cursor + 1).await?,
        };
        if kept && let Some(record) = record {
            let logged = DeliveryDoc {
                id: uuid::Uuid::new_v4().to_string(),
                webhook_id: id,
                event_id: record.event_id.to_string(),
                event_type: record.event_type.as_str().to_owned(),
                attempt: record.attempt,
                at: to_bson_time(record.at),
                status: record.result.status().map(u32::from),
                error: record.result.error().map(str::to_owned),
                outcome: record.next.as_str().to_owned(),
                next_attempt_at: record.next.retry_at().map(to_bson_time),
                duration_ms: i64::try_from(record.duration_ms).unwrap_or(i64::MAX),
                expires_at: to_bson_time(record.at + DELIVERY_RETENTION),
            };
            db(self.deliveries().insert_one(logged).await)?;
        }
        Ok(kept)
    }
}
