//! The webhook cases of the contract: committed changes publish events, and endpoints are
//! leased one event at a time, in order.

use std::sync::Arc;
use std::time::Duration;

use domain::{
    AttemptResult, Endpoint, EndpointPolicy, EventFilter, EventType, NextStep, Organization, WebhookId, WebhookSecret,
    WebhookUrl,
};

use super::{Store, changes, create, email, now, rename};
use crate::{DeliveryRecord, DeliveryTask};

const LEASE: Duration = Duration::from_secs(30);

async fn endpoint<S: Store>(store: &S, org: &Organization, filter: EventFilter) -> Endpoint {
    let endpoint = Endpoint {
        id: WebhookId::new(),
        organization_id: org.id,
        url: WebhookUrl::parse("https://hooks.example.com/in", EndpointPolicy::default()).expect("url"),
        events: filter,
        created_at: now(),
    };
    let secret = WebhookSecret::from_entropy(rand::random());
    store.create_endpoint(&endpoint, &secret).await.expect("create endpoint");
    endpoint
}

fn record(task: &DeliveryTask, result: AttemptResult, next: NextStep) -> DeliveryRecord {
    DeliveryRecord {
        event_id: task.event.id(),
        event_type: task.event.event_type(),
        attempt: task.attempts_before + 1,
        at: now(),
        result,
        next,
        duration_ms: 3,
    }
}

async fn due<S: Store>(store: &S, at: chrono::DateTime<chrono::Utc>) -> Option<DeliveryTask> {
    store.next_delivery(at, LEASE).await.expect("next delivery")
}

/// An endpoint gets the events committed after it was registered, one at a time in commit
/// order; a retry holds back the events after it; the organization's last event removes it.
pub async fn committed_changes_are_delivered_in_order<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let hook = endpoint(&*store, &org, EventFilter::All).await;
    assert!(due(&*store, now()).await.is_none(), "the create came before the endpoint");

    let renamed =
        store.update(org.id, domain::OrganizationChanges { rename: Some(rename(&org, "Acme Two")), ..changes() });
    let renamed = renamed.await.expect("rename");
    let email_changed = domain::OrganizationChanges { email: Some(email("new@acme.test")), ..changes() };
    store.update(org.id, email_changed).await.expect("email");

    let first = due(&*store, now()).await.expect("the rename is due");
    assert_eq!(first.endpoint.id, hook.id);
    assert_eq!(first.event.event_type(), EventType::OrganizationRenamed);
    assert_eq!((first.attempts_before, first.first_attempt_at), (0, None));
    assert!(due(&*store, now()).await.is_none(), "leased: no second worker gets the endpoint");
    assert!(
        store
            .finish_delivery(&first, Some(record(&first, AttemptResult::Status(204), NextStep::Delivered)), now())
            .await
            .expect("finish")
    );

    let second = due(&*store, now()).await.expect("the email change is due");
    assert_eq!(second.event.event_type(), EventType::AdminEmailChanged);
    let retry_at = now() + chrono::Duration::seconds(60);
    let failed = record(&second, AttemptResult::Status(503), NextStep::RetryAt(retry_at));
    assert!(store.finish_delivery(&second, Some(failed), now()).await.expect("finish"));
    assert!(due(&*store, now()).await.is_none(), "not before its retry time");
    store.delete(renamed.id).await.expect("delete");
    assert!(due(&*store, now()).await.is_none(), "later events wait for the retry");

    let again = due(&*store, retry_at + chrono::Duration::seconds(1)).await.expect("the retry is due");
    assert_eq!(again.event.id(), second.event.id(), "the same event, the same webhook-id");
    assert_eq!(again.attempts_before, 1);
    assert!(again.first_attempt_at.is_some());
    let delivered = record(&again, AttemptResult::Status(200), NextStep::Delivered);
    assert!(store.finish_delivery(&again, Some(delivered), now()).await.expect("finish"));

    let last = due(&*store, retry_at + chrono::Duration::seconds(1)).await.expect("the delete is due");
    assert_eq!(last.event.event_type(), EventType::OrganizationDeleted);
    assert!(store.finish_delivery(&last, None, now()).await.expect("finish"));
    assert!(store.list_endpoints(org.id).await.expect("list").is_empty(), "removed after the last event");
    assert!(due(&*store, retry_at + chrono::Duration::seconds(2)).await.is_none());
}

/// A worker whose lease expired finishes nothing; the one that took the endpoint over does,
/// and the log shows what each attempt got.
pub async fn an_expired_lease_is_taken_over_and_logged<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let hook = endpoint(&*store, &org, EventFilter::All).await;
    store
        .update(org.id, domain::OrganizationChanges { rename: Some(rename(&org, "Acme Two")), ..changes() })
        .await
        .expect("rename");
    let stalled = due(&*store, now()).await.expect("due");
    let later = now() + chrono::Duration::from_std(LEASE * 2).expect("duration");
    let taken = due(&*store, later).await.expect("taken over once the lease expired");
    assert_eq!(taken.event.id(), stalled.event.id());
    let lost = record(&stalled, AttemptResult::Failed("timed out".into()), NextStep::GaveUp);
    assert!(!store.finish_delivery(&stalled, Some(lost), now()).await.expect("finish"), "its lease is gone");
    let done = record(&taken, AttemptResult::Status(202), NextStep::Delivered);
    assert!(store.finish_delivery(&taken, Some(done.clone()), now()).await.expect("finish"));
    let log = store.delivery_log(org.id, hook.id, 100).await.expect("log").expect("the endpoint");
    assert_eq!(log, vec![done], "only the finished attempt is logged");
    assert!(due(&*store, later).await.is_none());
}

/// Endpoints are listed, given new secrets and removed by their own organization only.
pub async fn endpoints_belong_to_their_organization<S: Store>(store: Arc<S>) {
    let a = create(&*store, "Acme", "a@acme.test").await;
    let b = create(&*store, "Beta", "b@beta.test").await;
    let only_renames = EventFilter::parse(["organization.renamed"]).expect("filter");
    let first = endpoint(&*store, &a, only_renames).await;
    let theirs = endpoint(&*store, &b, EventFilter::All).await;
    assert_eq!(store.list_endpoints(a.id).await.expect("list"), vec![first.clone()]);
    let secret = WebhookSecret::from_entropy(rand::random());
    assert!(!store.rotate_endpoint_secret(a.id, theirs.id, &secret).await.expect("rotate"));
    assert!(store.rotate_endpoint_secret(a.id, first.id, &secret).await.expect("rotate"));
    assert_eq!(store.delivery_log(a.id, theirs.id, 10).await.expect("log"), None);
    assert_eq!(store.delivery_log(a.id, first.id, 10).await.expect("log"), Some(Vec::new()));
    assert!(!store.delete_endpoint(a.id, theirs.id).await.expect("delete"));
    assert!(store.delete_endpoint(a.id, first.id).await.expect("delete"));
    assert!(!store.delete_endpoint(a.id, first.id).await.expect("delete"), "already removed");
    assert!(store.list_endpoints(a.id).await.expect("list").is_empty());
    assert_eq!(store.list_endpoints(b.id).await.expect("list"), vec![theirs]);
}

/// Creating and revoking an API key and revoking sessions publish their events, in order,
/// each revocation once.
pub async fn keys_and_sessions_publish_their_events<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    endpoint(&*store, &org, EventFilter::All).await;
    let secret = domain::ApiKeySecret::from_entropy(rand::random());
    let key = domain::ApiKey {
        id: domain::ApiKeyId::new(),
        org_id: org.id,
        created_by: org.admin_id,
        name: domain::ApiKeyName::parse("billing").expect("name"),
        scopes: domain::Scopes::parse(["org:read"]).expect("scopes"),
        prefix: secret.shown_prefix(),
        created_at: now(),
        expires_at: None,
        last_used_at: None,
    };
    store.create_api_key(key.clone(), secret.hash()).await.expect("create key");
    assert!(store.revoke_api_key(org.id, key.id).await.expect("revoke key"));
    assert_eq!(store.find_api_key(&secret.hash()).await.expect("find"), None, "revoked at once");
    assert!(store.list_api_keys(org.id).await.expect("list").is_empty());
    let t0 = now();
    let (kept, _) = super::security::open_session(&*store, &org, t0).await;
    let (ended, _) = super::security::open_session(&*store, &org, t0).await;
    store.revoke_admin_sessions(org.admin_id, Some(kept.id), t0).await.expect("revoke others");
    store.revoke_session(kept.id, t0).await.expect("log out");
    store.revoke_session(kept.id, t0).await.expect("log out twice");

    let mut seen = Vec::new();
    while let Some(task) = due(&*store, now()).await {
        let body: serde_json::Value = serde_json::from_str(task.event.body()).expect("json");
        seen.push((task.event.event_type(), body["data"].clone()));
        assert!(store.finish_delivery(&task, None, now()).await.expect("finish"));
    }
    let types: Vec<EventType> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        types,
        [EventType::ApiKeyCreated, EventType::ApiKeyRevoked, EventType::SessionRevoked, EventType::SessionRevoked]
    );
    assert_eq!(seen[0].1["api_key_id"], key.id.to_string());
    assert_eq!(seen[0].1["scopes"], serde_json::json!(["org:read"]));
    assert_eq!(seen[2].1["session_id"], ended.id.to_string());
    assert_eq!(seen[3].1["session_id"], kept.id.to_string());
}
