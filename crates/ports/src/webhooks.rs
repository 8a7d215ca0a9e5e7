//! Webhooks: the store of endpoints, events and deliveries, the sender that makes the HTTP
//! requests, and the delivery worker that drives them.
//!
//! Events reach the store with the change they describe: an organization store writes an
//! operation's events in the same atomic write that commits it, so an event exists if and
//! only if its change committed. Each organization's events are numbered in the order they
//! committed; every endpoint has a cursor in that sequence and is sent one event at a time,
//! in order, each until it is delivered or given up.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    AttemptResult, Endpoint, Event, EventType, MessageId, NextStep, OrgId, RetryPolicy, StoreError, WebhookId,
    WebhookSecret, WebhookUrl,
};
use tracing::Instrument;

use crate::Clock;

/// One attempt to deliver an event to an endpoint, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The event (the `webhook-id` sent).
    pub event_id: MessageId,
    /// Its type.
    pub event_type: EventType,
    /// Which attempt at this event it was, from 1.
    pub attempt: u32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// What came back.
    pub result: AttemptResult,
    /// What happens next: delivered, retrying, or failed for good.
    pub next: NextStep,
    /// How long the request took, in milliseconds.
    pub duration_ms: u64,
}

/// An endpoint's next event, leased to one worker until `lease_until`.
#[derive(Debug)]
pub struct DeliveryTask {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its signing secret.
    pub secret: WebhookSecret,
    /// The event it is due to be sent.
    pub event: Event,
    /// How many attempts at this event were made before (0 for the first).
    pub attempts_before: u32,
    /// When this event was first tried, if it was.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// The lease's fencing token: finishing the task only works while it holds.
    pub lease: String,
}

/// Endpoints, the events the organization stores published, and the delivery log.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait WebhookRepository: Send + Sync + 'static {
    /// Registers an endpoint; it is sent the events its organization publishes from now on.
    async fn create_endpoint(&self, endpoint: &Endpoint, secret: &WebhookSecret) -> Result<(), StoreError>;

    /// An organization's endpoints, oldest first.
    async fn list_endpoints(&self, org: OrgId) -> Result<Vec<Endpoint>, StoreError>;

    /// Removes one of an organization's endpoints; returns whether it had it.
    async fn delete_endpoint(&self, org: OrgId, id: WebhookId) -> Result<bool, StoreError>;

    /// Gives one of an organization's endpoints a new signing secret (the next delivery is
    /// signed with it); returns whether it had the endpoint.
    async fn rotate_endpoint_secret(
        &self,
        org: OrgId,
        id: WebhookId,
        secret: &WebhookSecret,
    ) -> Result<bool, StoreError>;

    /// An endpoint's latest delivery attempts, newest first; `None` if the organization has
    /// no such endpoint.
    async fn delivery_log(
        &self,
        org: OrgId,
        id: WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryRecord>>, StoreError>;

    /// Leases an endpoint whose next event is due at `now` to the caller until
    /// `now + lease`, and returns it with that event; `None` when nothing is due.
    async fn next_delivery(&self, now: DateTime<Utc>, lease: Duration) -> Result<Option<DeliveryTask>, StoreError>;

    /// Ends a task: writes the attempt to the log (none when the endpoint does not receive
    /// this event type) and moves the endpoint on (`Delivered`, `GaveUp`) or schedules the
    /// retry (`RetryAt`). A final event ([`Event::is_final`]) done with removes the endpoint.
    /// Returns false, writing nothing, if the lease was lost to another worker.
    async fn finish_delivery(
        &self,
        task: &DeliveryTask,
        record: Option<DeliveryRecord>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Makes the HTTP requests of deliveries.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// POSTs `body` to `url` with these headers and reports what came back. A sender
    /// connects only to the addresses its deployment's [`domain::EndpointPolicy`] allows, checked
    /// on every address the name resolves to at delivery time (a name registered as public
    /// may later resolve to an internal address).
    async fn send(&self, url: &WebhookUrl, headers: Vec<(&'static str, String)>, body: String) -> AttemptResult;
}

/// How deliveries are made.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    /// The retry schedule.
    pub retry: RetryPolicy,
    /// How long a worker holds an endpoint; longer than any request may take.
    pub lease: Duration,
}

/// The delivery worker's use case: sends due events one at a time. Any number of
/// instances may run it; the store's leases keep each endpoint with one worker at a time.
pub struct WebhookDelivery {
    store: Arc<dyn WebhookRepository>,
    sender: Arc<dyn WebhookSender>,
    clock: Arc<dyn Clock>,
    settings: DeliverySettings,
}

impl WebhookDelivery {
    /// Wires the worker.
    pub fn new(
        store: Arc<dyn WebhookRepository>,
        sender: Arc<dyn WebhookSender>,
        clock: Arc<dyn Clock>,
        settings: DeliverySettings,
    ) -> Self {
        Self { store, sender, clock, settings }
    }

    /// Makes the next due delivery, if any; returns whether there was one (so a worker
    /// loops while there is work and sleeps when there is none).
    pub async fn deliver_next(&self) -> Result<bool, StoreError> {
        let now = domain::truncate_to_millis(self.clock.now());
        let Some(task) = self.store.next_delivery(now, self.settings.lease).await? else { return Ok(false) };
        if !task.endpoint.wants(&task.event) {
            self.store.finish_delivery(&task, None, now).await?;
            return Ok(true);
        }
        // Each attempt is a trace of its own (the worker's loop is not a request), which the
        // sender passes to the receiver.
        let span = tracing::debug_span!(
            parent: None,
            "webhook.delivery",
            webhook_id = %task.endpoint.id,
            event_id = %task.event.id(),
            event_type = %task.event.event_type(),
        );
        self.attempt(task, now).instrument(span).await
    }

    /// Sends a leased task's event once and records the outcome.
    async fn attempt(&self, task: DeliveryTask, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let event = &task.event;
        let timestamp = now.timestamp();
        let id = event.id().to_string();
        let headers = vec![
            ("content-type", "application/json".to_owned()),
            ("webhook-id", id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", task.secret.sign(&id, timestamp, event.body().as_bytes())),
        ];
        let started = std::time::Instant::now();
        let result = self.sender.send(&task.endpoint.url, headers, event.body().to_owned()).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let attempt = task.attempts_before + 1;
        let finished = domain::truncate_to_millis(self.clock.now());
        let first = task.first_attempt_at.unwrap_or(now);
        let next = self.settings.retry.after_attempt(&result, attempt, first, finished, rand::random());
        match &next {
            NextStep::Delivered => {}
            NextStep::RetryAt(at) => tracing::warn!(
                webhook_id = %task.endpoint.id, event_id = %event.id(), attempt, result = ?result, retry_at = %at,
                "webhook delivery failed; will retry"
            ),
            NextStep::GaveUp => tracing::error!(
                webhook_id = %task.endpoint.id, event_id = %event.id(), attempt, result = ?result,
                "webhook delivery failed for good"
            ),
        }
        let record = DeliveryRecord {
            event_id: event.id(),
            event_type: event.event_type(),
            attempt,
            at: now,
            result,
            next,
            duration_ms,
        };
        if !self.store.finish_delivery(&task, Some(record), finished).await? {
            tracing::warn!(webhook_id = %task.endpoint.id, event_id = %event.id(), "webhook lease lost mid-delivery");
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use domain::{EndpointPolicy, EventFilter};

    fn task(filter: EventFilter) -> DeliveryTask {
        let org = OrgId::new();
        let name = domain::OrganizationName::parse("Acme").expect("name");
        DeliveryTask {
            endpoint: Endpoint {
                id: WebhookId::new(),
                organization_id: org,
                url: WebhookUrl::parse("https://hooks.example.com/in", EndpointPolicy::default()).expect("url"),
                events: filter,
                created_at: Utc::now(),
            },
            secret: WebhookSecret::from_entropy([7; domain::WEBHOOK_SECRET_BYTES]),
            event: Event::organization_deleted(MessageId::at(Utc::now()), org, &name, Utc::now()),
            attempts_before: 0,
            first_attempt_at: None,
            lease: "lease".into(),
        }
    }

    fn worker(store: MockWebhookRepository, sender: MockWebhookSender) -> WebhookDelivery {
        let settings = DeliverySettings { retry: RetryPolicy::default(), lease: Duration::from_secs(30) };
        WebhookDelivery::new(
            Arc::new(store),
            Arc::new(sender),
            Arc::new(ManualClock::starting_at(Utc::now())),
            settings,
        )
    }

    #[tokio::test]
    async fn a_due_event_is_sent_signed_and_its_attempt_recorded() {
        let mut store = MockWebhookRepository::new();
        store.expect_next_delivery().times(1).returning(|_, _| Ok(Some(task(EventFilter::All))));
        store
            .expect_finish_delivery()
            .withf(|_, record, _| {
                record.as_ref().is_some_and(|r| {
                    r.attempt == 1 && r.next == NextStep::Delivered && r.result == AttemptResult::Status(204)
                })
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        let mut sender = MockWebhookSender::new();
        sender
            .expect_send()
            .withf(|_, headers, body| {
                let get = |name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default();
                let secret = WebhookSecret::from_entropy([7; domain::WEBHOOK_SECRET_BYTES]);
                let timestamp: i64 = get("webhook-timestamp").parse().unwrap_or(0);
                secret.verify(&get("webhook-id"), timestamp, body.as_bytes(), &get("webhook-signature"), Utc::now())
            })
            .times(1)
            .returning(|_, _, _| AttemptResult::Status(204));
        assert!(worker(store, sender).deliver_next().await.expect("delivered"));
    }

    #[tokio::test]
    async fn an_event_the_endpoint_does_not_receive_is_skipped_without_a_request() {
        let mut store = MockWebhookRepository::new();
        let only_renames = EventFilter::parse(["organization.renamed"]).expect("filter");
        store.expect_next_delivery().times(1).returning(move |_, _| Ok(Some(task(only_renames))));
        store.expect_finish_delivery().withf(|_, record, _| record.is_none()).times(1).returning(|_, _, _| Ok(true));
        let sender = MockWebhookSender::new();
        assert!(worker(store, sender).deliver_next().await.expect("skipped"));
    }

    #[tokio::test]
    async fn a_failed_attempt_is_retried_later() {
        let mut store = MockWebhookRepository::new();
        store.expect_next_delivery().times(1).returning(|_, _| Ok(Some(task(EventFilter::All))));
        store
            .expect_finish_delivery()
            .withf(|_, record, _| record.as_ref().is_some_and(|r| matches!(r.next, NextStep::RetryAt(_))))
            .times(1)
            .returning(|_, _, _| Ok(true));
        let mut sender = MockWebhookSender::new();
        sender.expect_send().times(1).returning(|_, _, _| AttemptResult::Status(503));
        assert!(worker(store, sender).deliver_next().await.expect("attempted"));
    }

    #[tokio::test]
    async fn nothing_due_means_no_work() {
        let mut store = MockWebhookRepository::new();
        store.expect_next_delivery().times(1).returning(|_, _| Ok(None));
        assert!(!worker(store, MockWebhookSender::new()).deliver_next().await.expect("idle"));
    }
}
