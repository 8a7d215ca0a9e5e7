//! The API key cases of the contract.

use domain::{ApiKey, ApiKeyId, ApiKeyName, ApiKeySecret, Organization, Scopes};

use super::{Store, create, now};

fn key(org: &Organization, name: &str, offset_ms: i64) -> (ApiKey, ApiKeySecret) {
    let secret = ApiKeySecret::from_entropy(rand::random());
    let key = ApiKey {
        id: ApiKeyId::new(),
        org_id: org.id,
        created_by: org.admin_id,
        name: ApiKeyName::parse(name).expect("name"),
        scopes: Scopes::parse(["org:read", "audit:read"]).expect("scopes"),
        prefix: secret.shown_prefix(),
        created_at: now() + chrono::Duration::milliseconds(offset_ms),
        expires_at: Some(now() + chrono::Duration::days(30)),
        last_used_at: None,
    };
    (key, secret)
}

/// Keys are found by the hash of their secret, listed per organization oldest first, and
/// revoked only by their own organization.
pub async fn api_keys_are_found_by_hash_listed_and_revoked<S: Store>(store: std::sync::Arc<S>) {
    let a = create(&*store, "Acme", "a@acme.test").await;
    let b = create(&*store, "Beta", "b@beta.test").await;
    let (second, second_secret) = key(&a, "second", 5);
    let (first, first_secret) = key(&a, "first", 0);
    let (theirs, theirs_secret) = key(&b, "theirs", 0);
    for (k, s) in [(&second, &second_secret), (&first, &first_secret), (&theirs, &theirs_secret)] {
        store.create_api_key(k.clone(), s.hash()).await.expect("create key");
    }
    assert_eq!(store.find_api_key(&first_secret.hash()).await.expect("find"), Some(first.clone()));
    assert_eq!(store.find_api_key(&ApiKeySecret::from_entropy([1; 32]).hash()).await.expect("find"), None);
    assert_eq!(store.list_api_keys(a.id).await.expect("list"), vec![first.clone(), second.clone()]);
    assert_eq!(store.list_api_keys(b.id).await.expect("list"), vec![theirs.clone()]);

    assert!(!store.revoke_api_key(b.id, first.id).await.expect("revoke"), "another organization's key");
    assert!(store.find_api_key(&first_secret.hash()).await.expect("find").is_some());
    assert!(store.revoke_api_key(a.id, first.id).await.expect("revoke"));
    assert_eq!(store.find_api_key(&first_secret.hash()).await.expect("find"), None);
    assert!(!store.revoke_api_key(a.id, first.id).await.expect("revoke"), "already revoked");
    assert_eq!(store.list_api_keys(a.id).await.expect("list"), vec![second]);
}

/// A recorded use shows in the next lookup, and an organization's keys can be revoked
/// together without touching another's.
pub async fn api_key_uses_are_recorded_and_keys_revoked_per_organization<S: Store>(store: std::sync::Arc<S>) {
    let a = create(&*store, "Acme", "a@acme.test").await;
    let b = create(&*store, "Beta", "b@beta.test").await;
    let (mine, mine_secret) = key(&a, "mine", 0);
    let (other, other_secret) = key(&a, "other", 1);
    let (theirs, theirs_secret) = key(&b, "theirs", 0);
    for (k, s) in [(&mine, &mine_secret), (&other, &other_secret), (&theirs, &theirs_secret)] {
        store.create_api_key(k.clone(), s.hash()).await.expect("create key");
    }
    // Read first, as a request would, so that a cache in front of the store holds it.
    assert_eq!(store.find_api_key(&mine_secret.hash()).await.expect("find").and_then(|k| k.last_used_at), None);
    let used = now();
    store.record_api_key_use(mine.id, used).await.expect("record use");
    let found = store.find_api_key(&mine_secret.hash()).await.expect("find").expect("the key");
    assert_eq!(found.last_used_at, Some(used));

    assert!(store.find_api_key(&other_secret.hash()).await.expect("find").is_some());
    store.revoke_organization_api_keys(a.id).await.expect("revoke all");
    assert_eq!(store.find_api_key(&mine_secret.hash()).await.expect("find"), None);
    assert_eq!(store.find_api_key(&other_secret.hash()).await.expect("find"), None);
    assert!(store.list_api_keys(a.id).await.expect("list").is_empty());
    assert_eq!(store.find_api_key(&theirs_secret.hash()).await.expect("find"), Some(theirs));
}
