//! The repository contract suite: the behaviour every storage adapter must have, written
//! once and run against each adapter with [`repository_contract_tests!`](crate::repository_contract_tests).
//!
//! Each case takes a fresh, empty store. The cases check outcomes through the ports only,
//! so that the same assertions hold for every adapter.

mod api_keys;
mod organizations;
mod security;
mod webhooks;

pub use api_keys::*;
pub use organizations::*;
pub use security::*;
pub use webhooks::*;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use std::time::Duration;

use domain::{
    AdminId, AuditAction, AuditEvent, AuditOutcome, CheckId, CollectionNaming, CreateOrgError, DeleteOrgError, Email,
    EventId, LockoutPolicy, LoginThrottle, NewAdmin, NewOrganization, OrgId, Organization, OrganizationChanges,
    OrganizationName, PasswordHash, PendingCheck, PlacementKind, Rename, SecurityPolicy, Session, SessionId,
    UpdateOrgError,
};
use serde_json::json;

use crate::{
    AccountLockout, AdminRepository, ApiKeyRepository, AuditLog, AuditQuery, CheckPermit, LoginThrottles, NewSession,
    OrganizationRepository, RefreshToken, Rotation, SessionRepository, SystemClock, TenantStore, ThrottleKey,
    ThrottleKeyer, WebhookRepository,
};

/// Everything a store under contract implements.
pub trait Store:
    OrganizationRepository
    + AdminRepository
    + TenantStore
    + AccountLockout
    + SessionRepository
    + AuditLog
    + ApiKeyRepository
    + WebhookRepository
{
}
impl<S> Store for S where
    S: OrganizationRepository
        + AdminRepository
        + TenantStore
        + AccountLockout
        + SessionRepository
        + AuditLog
        + ApiKeyRepository
        + WebhookRepository
{
}

/// Generates one `#[tokio::test]` per contract case. The argument is an expression that
/// evaluates to an async factory of fresh stores: `|| async { Arc<S> }`.
#[macro_export]
macro_rules! repository_contract_tests {
    ($factory:expr) => {
        $crate::repository_contract_tests!(@cases $factory;
            create_then_find, create_creates_the_tenant_collection, taken_key_is_name_taken,
            look_alike_names_are_taken_until_freed,
            taken_email_is_email_taken_and_leaves_nothing, concurrent_creates_have_one_winner,
            rename_moves_every_document, rename_onto_taken_key_touches_nothing,
            rename_keeping_the_key_changes_only_the_display_name, update_email_and_password,
            update_is_all_or_nothing, update_of_missing_organization_is_not_found,
            concurrent_renames_to_one_key_have_one_winner, delete_removes_everything_and_frees_the_names,
            delete_of_missing_organization_is_not_found, id_naming_never_moves_the_collection,
            throttle_writes_are_compare_and_set, parallel_wrong_passwords_get_at_most_the_threshold_checks,
            parallel_right_passwords_are_never_locked_out, lockout_backs_off_and_resets_on_success,
            hash_upgrade_is_conditional, refresh_rotates_and_detects_reuse, refresh_grace_allows_one_retry,
            parallel_refreshes_of_one_token_rotate_once, sessions_are_revoked_by_admin_and_organization,
            audit_events_page_newest_first_per_organization, deleted_organizations_events_expire,
            list_and_count_show_active_organizations, api_keys_are_found_by_hash_listed_and_revoked,
            api_key_uses_are_recorded_and_keys_revoked_per_organization, committed_changes_are_delivered_in_order,
            an_expired_lease_is_taken_over_and_logged, endpoints_belong_to_their_organization,
            keys_and_sessions_publish_their_events);
    };
    (@cases $factory:expr; $($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let store = ($factory)().await;
            $crate::contract::$case(store).await;
        }
    )*};
}

fn phc(tag: &str) -> PasswordHash {
    // A well-formed PHC string; the contract never verifies passwords.
    PasswordHash::from_phc(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${tag}")).expect("valid phc")
}

fn now() -> DateTime<Utc> {
    domain::truncate_to_millis(Utc::now())
}

fn name(text: &str) -> OrganizationName {
    OrganizationName::parse(text).expect("valid name")
}

fn email(text: &str) -> Email {
    Email::parse(text).expect("valid email")
}

fn new_org(org_name: &str, admin_email: &str) -> NewOrganization {
    new_org_named(org_name, admin_email, CollectionNaming::Key)
}

fn new_org_named(org_name: &str, admin_email: &str, naming: CollectionNaming) -> NewOrganization {
    let admin = NewAdmin { id: AdminId::new(), email: email(admin_email), password_hash: phc("aGFzaA") };
    NewOrganization::new(OrgId::new(), name(org_name), naming, admin, now())
}

fn rename(org: &Organization, to: &str) -> Rename {
    Rename::new(org.id, name(to), CollectionNaming::Key)
}

fn changes() -> OrganizationChanges {
    OrganizationChanges { rename: None, email: None, password_hash: None, at: now() }
}

async fn collections<S: Store>(store: &S) -> Vec<String> {
    store.tenant_collections().await.expect("list collections").iter().map(|c| c.as_str().to_owned()).collect()
}

/// The tenant collections `orgs` should have: one each, except under the `shared`
/// placement, whose documents are in the shared collection instead.
fn own_collections(orgs: &[&Organization]) -> Vec<String> {
    let mut names: Vec<String> = orgs
        .iter()
        .filter(|org| org.placement.kind != PlacementKind::Shared)
        .map(|org| org.collection.as_str().to_owned())
        .collect();
    names.sort();
    names
}

async fn seed<S: Store>(store: &S, org: &Organization, count: usize, tag: &str) -> Vec<serde_json::Value> {
    let docs: Vec<_> = (0..count).map(|i| json!({"seq": i, "tag": tag, "payload": format!("{tag}-{i}")})).collect();
    store.insert_documents(org, docs.clone()).await.expect("insert documents");
    docs
}

async fn create<S: Store>(store: &S, org_name: &str, admin_email: &str) -> Organization {
    store.create(new_org(org_name, admin_email)).await.expect("create")
}
