//! The contract of the security stores: login throttles, sessions and the audit trail.

use super::*;

fn ms(t: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    t + chrono::Duration::seconds(seconds)
}

fn throttle_key(tag: &str) -> ThrottleKey {
    ThrottleKey::from_hex(format!("{tag:0>64}"))
}

/// Throttle writes are compare-and-set on the version read, and `None` means "absent".
pub async fn throttle_writes_are_compare_and_set<S: Store>(store: Arc<S>) {
    let key = throttle_key("a1");
    let at = now();
    let later = ms(at, 24 * 3600);
    assert_eq!(store.load_throttle(&key).await.expect("load"), None);
    let first = LoginThrottle { failures: 1, locked_until: None, checks: Vec::new() };
    assert!(store.save_throttle(&key, &first, None, later).await.expect("insert"));
    assert!(!store.save_throttle(&key, &first, None, later).await.expect("insert again"), "already stored");
    let loaded = store.load_throttle(&key).await.expect("load").expect("stored");
    assert_eq!(loaded.throttle, first);
    let second = LoginThrottle {
        failures: 5,
        locked_until: Some(ms(at, 60)),
        checks: vec![PendingCheck { id: CheckId::new(), expires_at: ms(at, 30) }],
    };
    assert!(store.save_throttle(&key, &second, Some(loaded.version), later).await.expect("update"));
    assert!(!store.save_throttle(&key, &first, Some(loaded.version), later).await.expect("stale"), "stale version");
    let reloaded = store.load_throttle(&key).await.expect("load").expect("stored");
    assert_eq!(reloaded.throttle, second);
    assert_ne!(reloaded.version, loaded.version);
    assert_eq!(store.load_throttle(&throttle_key("b2")).await.expect("load"), None, "keys are separate");
}

fn throttles<S: Store>(store: &Arc<S>) -> LoginThrottles {
    LoginThrottles::new(store.clone(), LockoutPolicy::default(), ThrottleKeyer::new(b"contract"))
}

/// Fifty parallel wrong passwords for one address get exactly the threshold's number of
/// checks; the rest are told the address is locked.
pub async fn parallel_wrong_passwords_get_at_most_the_threshold_checks<S: Store>(store: Arc<S>) {
    let throttles = Arc::new(throttles(&store));
    let clock = Arc::new(SystemClock);
    let attempts: Vec<_> = (0..50)
        .map(|_| {
            let (throttles, clock) = (throttles.clone(), clock.clone());
            tokio::spawn(async move {
                let address = email("a@acme.test");
                let check = CheckId::new();
                match throttles.start(&address, check, &*clock).await.expect("start") {
                    CheckPermit::Granted => {
                        throttles.failed(&address, check, &*clock).await.expect("failed");
                        true
                    }
                    CheckPermit::Locked { .. } => false,
                }
            })
        })
        .collect();
    let mut checked = 0;
    for attempt in attempts {
        checked += usize::from(attempt.await.expect("join"));
    }
    assert_eq!(checked, 5, "password checks");
}

/// Sixteen parallel right passwords for one address, which has failures already, are all
/// checked: a check waits for a slot rather than being told the address is locked.
pub async fn parallel_right_passwords_are_never_locked_out<S: Store>(store: Arc<S>) {
    let throttles = Arc::new(throttles(&store));
    let clock = Arc::new(SystemClock);
    let address = email("a@acme.test");
    for _ in 0..3 {
        let check = CheckId::new();
        assert_eq!(throttles.start(&address, check, &*clock).await.expect("start"), CheckPermit::Granted);
        throttles.failed(&address, check, &*clock).await.expect("failed");
    }
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let (throttles, clock, address) = (throttles.clone(), clock.clone(), address.clone());
            tokio::spawn(async move {
                let check = CheckId::new();
                let permit = throttles.start(&address, check, &*clock).await.expect("start");
                if permit == CheckPermit::Granted {
                    throttles.succeeded(&address, check, &*clock).await.expect("succeeded");
                }
                permit
            })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.await.expect("join"), CheckPermit::Granted);
    }
}

/// After a lock expires one more check is allowed, and failing it locks for twice as long;
/// a success resets everything; addresses are counted apart.
pub async fn lockout_backs_off_and_resets_on_success<S: Store>(store: Arc<S>) {
    let throttles = throttles(&store);
    let t0 = now();
    let clock = crate::ManualClock::starting_at(t0);
    let address = email("a@acme.test");
    let attempt = |succeed: bool| {
        let (throttles, clock, address) = (&throttles, &clock, &address);
        async move {
            let check = CheckId::new();
            let permit = throttles.start(address, check, clock).await.expect("start");
            if permit == CheckPermit::Granted {
                if succeed {
                    throttles.succeeded(address, check, clock).await.expect("succeeded");
                } else {
                    throttles.failed(address, check, clock).await.expect("failed");
                }
            }
            permit
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt(false).await, CheckPermit::Granted);
    }
    clock.set(ms(t0, 59));
    assert_eq!(attempt(true).await, CheckPermit::Locked { until: ms(t0, 60) });
    assert_eq!(
        throttles.start(&email("b@acme.test"), CheckId::new(), &clock).await.expect("start"),
        CheckPermit::Granted,
        "another address is not locked"
    );
    let t1 = ms(t0, 61);
    clock.set(t1);
    assert_eq!(attempt(false).await, CheckPermit::Granted);
    clock.set(ms(t1, 1));
    assert_eq!(attempt(true).await, CheckPermit::Locked { until: ms(t1, 120) });
    clock.set(ms(t1, 121));
    assert_eq!(attempt(true).await, CheckPermit::Granted);
    for _ in 0..4 {
        assert_eq!(attempt(false).await, CheckPermit::Granted);
    }
    assert_eq!(attempt(true).await, CheckPermit::Granted, "the success reset the count");
}

/// A hash upgrade applies only over the hash it was computed from.
pub async fn hash_upgrade_is_conditional<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    assert!(!store.upgrade_password_hash(org.admin_id, &phc("b3RoZXI"), phc("bmV3")).await.expect("upgrade"));
    assert!(store.upgrade_password_hash(org.admin_id, &phc("aGFzaA"), phc("bmV3")).await.expect("upgrade"));
    let admin = AdminRepository::find_by_id(&*store, org.admin_id).await.expect("find").expect("admin");
    assert_eq!(admin.password_hash, phc("bmV3"));
}

pub(super) async fn open_session<S: Store>(
    store: &S,
    org: &Organization,
    at: DateTime<Utc>,
) -> (Session, RefreshToken) {
    let session = Session {
        id: SessionId::new(),
        admin_id: org.admin_id,
        org_id: org.id,
        created_at: at,
        expires_at: ms(at, 30 * 24 * 3600),
    };
    let token = RefreshToken::generate();
    store.create_session(NewSession { session: session.clone(), refresh_hash: token.hash() }).await.expect("session");
    (session, token)
}

const GRACE: Duration = Duration::from_secs(10);

/// The default policy with this grace window for refresh retries.
fn grace(window: Duration) -> SecurityPolicy {
    SecurityPolicy { refresh_grace: window, ..SecurityPolicy::default() }
}

/// The current token rotates; a rotated one presented later revokes the session.
pub async fn refresh_rotates_and_detects_reuse<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let t0 = now();
    let (session, first) = open_session(&*store, &org, t0).await;
    let (second, third) = (RefreshToken::generate(), RefreshToken::generate());
    assert_eq!(
        store.rotate(&first.hash(), &second.hash(), &grace(GRACE), t0).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    assert_eq!(
        store.rotate(&second.hash(), &third.hash(), &grace(GRACE), ms(t0, 60)).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    assert!(store.session_active(session.id, ms(t0, 61)).await.expect("active"));
    // The first token again, long after: reuse.
    let reused = store
        .rotate(&first.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 120))
        .await
        .expect("rotate");
    assert_eq!(reused, Rotation::Reused(session.clone()));
    assert!(!store.session_active(session.id, ms(t0, 121)).await.expect("active"));
    // Even the current token is dead now.
    let after = store
        .rotate(&third.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 122))
        .await
        .expect("rotate");
    assert_eq!(after, Rotation::Invalid);
    let unknown =
        store.rotate(&RefreshToken::generate().hash(), &RefreshToken::generate().hash(), &grace(GRACE), t0).await;
    assert_eq!(unknown.expect("rotate"), Rotation::Invalid);
    // An expired session neither rotates nor is active.
    let (expiring, token) = open_session(&*store, &org, t0).await;
    let late = ms(t0, 30 * 24 * 3600 + 1);
    assert!(!store.session_active(expiring.id, late).await.expect("active"));
    assert_eq!(
        store.rotate(&token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), late).await.expect("rotate"),
        Rotation::Invalid
    );
}

/// Within the grace window the token just rotated away may be presented once more (a lost
/// answer, retried); the answer that was lost then becomes a rotated token itself.
pub async fn refresh_grace_allows_one_retry<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let t0 = now();
    let (session, first) = open_session(&*store, &org, t0).await;
    let (lost, retried, next) = (RefreshToken::generate(), RefreshToken::generate(), RefreshToken::generate());
    assert_eq!(
        store.rotate(&first.hash(), &lost.hash(), &grace(GRACE), t0).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    assert_eq!(
        store.rotate(&first.hash(), &retried.hash(), &grace(GRACE), ms(t0, 5)).await.expect("retry"),
        Rotation::Rotated(session.clone())
    );
    assert_eq!(
        store.rotate(&retried.hash(), &next.hash(), &grace(GRACE), ms(t0, 6)).await.expect("rotate"),
        Rotation::Rotated(session.clone())
    );
    // The lost answer's token surfaces: reuse.
    let reused =
        store.rotate(&lost.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 7)).await.expect("rotate");
    assert_eq!(reused, Rotation::Reused(session.clone()));
    // Outside the window, the rotated token is reuse too.
    let (other, token) = open_session(&*store, &org, t0).await;
    store.rotate(&token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), t0).await.expect("rotate");
    let late =
        store.rotate(&token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), ms(t0, 11)).await.expect("rotate");
    assert_eq!(late, Rotation::Reused(other));
}

/// Parallel refreshes with one token and no grace: one rotates, the others are reuse.
pub async fn parallel_refreshes_of_one_token_rotate_once<S: Store>(store: Arc<S>) {
    let org = create(&*store, "Acme", "a@acme.test").await;
    let t0 = now();
    let (_, token) = open_session(&*store, &org, t0).await;
    let presented = token.hash();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let (store, presented) = (store.clone(), presented.clone());
            tokio::spawn(async move {
                store
                    .rotate(&presented, &RefreshToken::generate().hash(), &grace(Duration::ZERO), ms(t0, 1))
                    .await
                    .expect("rotate")
            })
        })
        .collect();
    let mut rotated = 0;
    for call in calls {
        match call.await.expect("join") {
            Rotation::Rotated(_) => rotated += 1,
            Rotation::Reused(_) | Rotation::Invalid => {}
        }
    }
    assert_eq!(rotated, 1);
}

/// Revoking by admin spares the named session; revoking by organization spares none.
pub async fn sessions_are_revoked_by_admin_and_organization<S: Store>(store: Arc<S>) {
    let acme = create(&*store, "Acme", "a@acme.test").await;
    let globex = create(&*store, "Globex", "g@globex.test").await;
    let t0 = now();
    let (kept, _) = open_session(&*store, &acme, t0).await;
    let (ended, ended_token) = open_session(&*store, &acme, t0).await;
    let (other, _) = open_session(&*store, &globex, t0).await;
    store.revoke_admin_sessions(acme.admin_id, Some(kept.id), t0).await.expect("revoke");
    assert!(store.session_active(kept.id, t0).await.expect("active"));
    assert!(!store.session_active(ended.id, t0).await.expect("active"));
    assert_eq!(
        store.rotate(&ended_token.hash(), &RefreshToken::generate().hash(), &grace(GRACE), t0).await.expect("rotate"),
        Rotation::Invalid
    );
    store.revoke_organization_sessions(acme.id, t0).await.expect("revoke");
    assert!(!store.session_active(kept.id, t0).await.expect("active"));
    assert!(store.session_active(other.id, t0).await.expect("active"), "another organization's session");
    store.revoke_session(other.id, t0).await.expect("revoke");
    assert!(!store.session_active(other.id, t0).await.expect("active"));
}

fn event(org: Option<OrgId>, action: AuditAction, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        id: EventId::at(at),
        at,
        action,
        organization_id: org,
        actor_id: Some(AdminId::new()),
        // Some events name the API key that acted, so that both forms round-trip.
        api_key_id: (action == AuditAction::OrganizationRenamed).then(domain::ApiKeyId::new),
        ip: Some("192.0.2.7".to_owned()),
        request_id: Some("req".to_owned()),
        outcome: AuditOutcome::Success,
    }
}

/// Events come back newest first, only the organization's own, filtered and paged by
/// cursor without gaps or repeats.
pub async fn audit_events_page_newest_first_per_organization<S: Store>(store: Arc<S>) {
    let (acme, globex) = (OrgId::new(), OrgId::new());
    let t0 = now();
    let mut recorded = Vec::new();
    for i in 0..25 {
        let action = if i % 5 == 0 { AuditAction::LoginFailed } else { AuditAction::LoginSucceeded };
        let e = event(Some(acme), action, ms(t0, i));
        store.record(e.clone()).await.expect("record");
        recorded.push(e);
        store.record(event(Some(globex), action, ms(t0, i))).await.expect("record");
    }
    store.record(event(None, AuditAction::LoginFailed, t0)).await.expect("record");
    recorded.reverse();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.events(acme, AuditQuery { action: None, before, limit: 10 }, t0).await.expect("events");
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        seen.extend(page);
    }
    assert_eq!(seen, recorded);
    let failed = store
        .events(acme, AuditQuery { action: Some(AuditAction::LoginFailed), before: None, limit: 100 }, t0)
        .await
        .expect("events");
    assert_eq!(failed.len(), 5);
    assert!(failed.iter().all(|e| e.action == AuditAction::LoginFailed && e.organization_id == Some(acme)));
}

/// A deleted organization's events stay until their expiry, then are gone.
pub async fn deleted_organizations_events_expire<S: Store>(store: Arc<S>) {
    let org = OrgId::new();
    let t0 = now();
    store.record(event(Some(org), AuditAction::OrganizationDeleted, t0)).await.expect("record");
    store.expire_events(org, ms(t0, 60)).await.expect("expire");
    let query = AuditQuery { action: None, before: None, limit: 10 };
    assert_eq!(store.events(org, query.clone(), ms(t0, 30)).await.expect("events").len(), 1);
    assert!(store.events(org, query, ms(t0, 61)).await.expect("events").is_empty());
}
