//! The organization cache on MongoDB: two instances on one master database, each with its
//! cache, see each other's renames, deletes, logouts and password changes through the
//! change stream (their TTL is an hour here, so nothing else could explain it); a stalled
//! stream stops the cache from being trusted, and a killed or cut connection resumes the
//! stream where it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{
    CollectionNaming, OrgKey, Organization, OrganizationChanges, OrganizationName, PasswordHash, Rename, Session,
    SessionId,
};
use mongo_adapter::cache::STREAM_SILENCE_LIMIT;
use mongo_adapter::test_support::proxy::CuttableProxy;
use mongo_adapter::test_support::{URI_VARIABLE, fresh_settings, new_organization};
use mongo_adapter::{CacheSettings, CachedStore, MongoSettings, MongoStore};
use ports::{
    AdminRepository, Clock, ManualClock, NewSession, OrganizationRepository, RefreshHash, SessionRepository,
    SystemClock,
};

/// Long enough that only the change stream can explain an eviction.
fn an_hour() -> CacheSettings {
    CacheSettings { ttl: Duration::from_secs(3600), ..CacheSettings::default() }
}

async fn instance(settings: &MongoSettings, clock: Arc<dyn Clock>) -> CachedStore {
    let store = Arc::new(MongoStore::open(settings).await.expect("open"));
    let cached = CachedStore::start(store, &an_hour(), clock).await;
    assert!(cached.follows_changes(), "the replica-set test server has change streams");
    wait_until("the stream answers", || async { cached.stats().following }).await;
    cached
}

/// Waits until `done` holds; a deadline far beyond any expected delay only stops a broken
/// run from hanging.
async fn wait_until<F, Fut>(what: &str, done: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(30), "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

fn rename(org: &Organization, name: &str) -> OrganizationChanges {
    let name = OrganizationName::parse(name).expect("name");
    OrganizationChanges {
        rename: Some(Rename::new(org.id, name, CollectionNaming::Key)),
        email: None,
        password_hash: None,
        at: domain::truncate_to_millis(Utc::now()),
    }
}

async fn session_of(store: &CachedStore, org: &Organization) -> SessionId {
    let now = domain::truncate_to_millis(Utc::now());
    let session = Session {
        id: SessionId::new(),
        admin_id: org.admin_id,
        org_id: org.id,
        created_at: now,
        expires_at: now + chrono::Duration::hours(1),
    };
    let hash = RefreshHash::from_hex("ab".repeat(32));
    store.create_session(NewSession { session: session.clone(), refresh_hash: hash }).await.expect("session");
    session.id
}

async fn found(store: &CachedStore, key: &OrgKey) -> Option<Organization> {
    store.find_by_key(key).await.expect("find")
}

/// Waits until `store` answers a lookup of `key` from its cache (an answer read while
/// something was evicted, as the create's own changes arriving, is not kept).
async fn cached_by(store: &CachedStore, key: &OrgKey) {
    wait_until("the organization is cached", || async {
        let hits = store.stats().hits;
        assert!(found(store, key).await.is_some());
        store.stats().hits > hits
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_changes_are_seen_through_the_change_stream() {
    let settings = fresh_settings(URI_VARIABLE);
    let a = instance(&settings, Arc::new(SystemClock)).await;
    let b = instance(&settings, Arc::new(SystemClock)).await;
    let org = a.create(new_organization("Acme", "a@acme.test")).await.expect("create");
    let key = org.name.key().clone();

    // b caches what it reads (once the create's own changes have reached it: an answer read
    // while something is evicted is not kept).
    let sid = session_of(&a, &org).await;
    let admin = AdminRepository::find_by_id(&b, org.admin_id).await.expect("admin").expect("exists");
    wait_until("b answers from its cache", || async {
        let hits = b.stats().hits;
        assert_eq!(found(&b, &key).await, Some(org.clone()));
        assert!(b.session_active(sid, Utc::now()).await.expect("active"));
        AdminRepository::find_by_id(&b, org.admin_id).await.expect("admin");
        OrganizationRepository::find_by_id(&b, org.id).await.expect("org");
        b.stats().hits == hits + 4
    })
    .await;

    // A rename on a: b stops finding the old name and finds the new one.
    let renamed = a.update(org.id, rename(&org, "Acme Two")).await.expect("rename");
    wait_until("b sees the rename", || async { found(&b, &key).await.is_none() }).await;
    assert_eq!(found(&b, renamed.name.key()).await, Some(renamed.clone()));
    assert_eq!(OrganizationRepository::find_by_id(&b, org.id).await.expect("org"), Some(renamed.clone()));

    // A password change on a: b reads the new hash.
    let hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".to_owned()).expect("phc");
    let change = OrganizationChanges {
        rename: None,
        email: None,
        password_hash: Some(hash.clone()),
        at: domain::truncate_to_millis(Utc::now()),
    };
    a.update(org.id, change).await.expect("password");
    assert_ne!(admin.password_hash, hash);
    wait_until("b sees the new password", || async {
        AdminRepository::find_by_id(&b, org.admin_id).await.expect("admin").expect("exists").password_hash == hash
    })
    .await;

    // A logout on a: b refuses the session.
    a.revoke_session(sid, Utc::now()).await.expect("revoke");
    wait_until("b sees the logout", || async { !b.session_active(sid, Utc::now()).await.expect("active") }).await;

    // A delete on a: b finds nothing, by name or id, nor the admin.
    a.delete(org.id).await.expect("delete");
    wait_until("b sees the delete", || async {
        OrganizationRepository::find_by_id(&b, org.id).await.expect("org").is_none()
    })
    .await;
    assert_eq!(found(&b, renamed.name.key()).await, None);
    assert_eq!(AdminRepository::find_by_id(&b, org.admin_id).await.expect("admin"), None);
    assert!(b.stats().evictions > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reads_its_own_writes_at_once() {
    let settings = fresh_settings(URI_VARIABLE);
    // Its stream stalled, only its own evictions can keep it right.
    let mut a = instance(&settings, Arc::new(SystemClock)).await;
    a.stall_change_stream();
    let org = a.create(new_organization("Acme", "a@acme.test")).await.expect("create");
    let key = org.name.key().clone();
    assert!(found(&a, &key).await.is_some());
    let sid = session_of(&a, &org).await;
    assert!(a.session_active(sid, Utc::now()).await.expect("active"));
    let renamed = a.update(org.id, rename(&org, "Acme Two")).await.expect("rename");
    assert_eq!(found(&a, &key).await, None);
    assert_eq!(found(&a, renamed.name.key()).await, Some(renamed));
    a.revoke_session(sid, Utc::now()).await.expect("revoke");
    assert!(!a.session_active(sid, Utc::now()).await.expect("active"));
    a.delete(org.id).await.expect("delete");
    assert_eq!(OrganizationRepository::find_by_id(&a, org.id).await.expect("org"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_change_stream_is_not_trusted_beyond_its_limit() {
    let settings = fresh_settings(URI_VARIABLE);
    let a = instance(&settings, Arc::new(SystemClock)).await;
    // b's clock moves only when the test says: time passes without sleeping.
    let clock = Arc::new(ManualClock::starting_at(Utc::now()));
    let mut b = instance(&settings, clock.clone()).await;
    let org = a.create(new_organization("Acme", "a@acme.test")).await.expect("create");
    let key = org.name.key().clone();
    cached_by(&b, &key).await;
    // The stream hangs, as on a dead connection nobody noticed yet: b keeps its entry for
    // now, and stops trusting it once the stream has been silent for the limit.
    b.stall_change_stream();
    a.update(org.id, rename(&org, "Acme Two")).await.expect("rename");
    assert!(found(&b, &key).await.is_some(), "within the limit, the cached answer stands");
    clock.advance(STREAM_SILENCE_LIMIT);
    assert_eq!(found(&b, &key).await, None, "beyond it, the database answers");
}

/// Two instances on one database, b reaching it through a proxy the test can cut, and an
/// organization a created that b has cached.
async fn a_and_b_behind_a_proxy() -> (CachedStore, CachedStore, CuttableProxy, Organization) {
    let settings = fresh_settings(URI_VARIABLE);
    let a = instance(&settings, Arc::new(SystemClock)).await;
    let proxy = CuttableProxy::start(&std::env::var(URI_VARIABLE).expect("test server")).await;
    let mut through_proxy = settings.clone();
    through_proxy.uri = proxy.uri().into();
    through_proxy.server_selection_timeout = Duration::from_millis(500);
    let b = instance(&through_proxy, Arc::new(SystemClock)).await;
    let org = a.create(new_organization("Acme", "a@acme.test")).await.expect("create");
    cached_by(&b, org.name.key()).await;
    (a, b, proxy, org)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_cut_stream_connection_resumes_and_misses_nothing() {
    let (a, b, proxy, org) = a_and_b_behind_a_proxy().await;

    // Every connection of b killed: the stream resumes where it was and delivers what
    // changed meanwhile.
    proxy.kill_connections();
    let renamed = a.update(org.id, rename(&org, "Acme Two")).await.expect("rename");
    wait_until("b sees the rename", || async {
        b.find_by_key(org.name.key()).await.is_ok_and(|found| found.is_none())
    })
    .await;

    // Cut off for longer: b answers from the database or fails, never stale once the
    // stream has been silent for the limit; once back, it sees what changed meanwhile.
    proxy.cut();
    let cut_at = Instant::now();
    let again = a.update(org.id, rename(&renamed, "Acme Three")).await.expect("rename");
    while cut_at.elapsed() < STREAM_SILENCE_LIMIT * 2 {
        let started = Instant::now();
        let answer = b.find_by_key(renamed.name.key()).await;
        if started.duration_since(cut_at) >= STREAM_SILENCE_LIMIT {
            assert!(!matches!(answer, Ok(Some(_))), "a stale answer beyond the limit: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!b.stats().following);
    proxy.restore();
    wait_until("the stream resumes", || async { b.stats().following }).await;
    wait_until("b sees the second rename", || async {
        b.find_by_key(again.name.key()).await.is_ok_and(|found| found.is_some())
    })
    .await;
    assert_eq!(found(&b, renamed.name.key()).await, None);
    assert!(b.stats().reconnects >= 1, "{:?}", b.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_resume_drops_the_whole_cache_and_starts_over() {
    let (a, b, proxy, org) = a_and_b_behind_a_proxy().await;

    // b is cut off while a renames, and its stream's position is gone when it comes back:
    // the event of the rename can never be delivered.
    b.forget_stream_position();
    proxy.cut();
    wait_until("b's stream fails", || async { !b.stats().following }).await;
    let renamed = a.update(org.id, rename(&org, "Acme Two")).await.expect("rename");
    proxy.restore();
    wait_until("a new stream answers", || async { b.stats().following }).await;

    assert_eq!(b.stats().resets, 1, "{:?}", b.stats());
    assert_eq!(found(&b, org.name.key()).await, None, "the stale entry went with the whole cache");
    assert_eq!(found(&b, renamed.name.key()).await.map(|o| o.id), Some(org.id));
    // The new stream is followed: a's next change reaches b's cache.
    cached_by(&b, renamed.name.key()).await;
    let again = a.update(org.id, rename(&renamed, "Acme Three")).await.expect("rename");
    wait_until("b sees the next rename", || async {
        b.find_by_key(renamed.name.key()).await.is_ok_and(|found| found.is_none())
    })
    .await;
    assert!(found(&b, again.name.key()).await.is_some());
}
