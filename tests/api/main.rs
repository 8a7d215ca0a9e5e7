//! Black-box tests of the HTTP contract. Every test starts the real application on port 0
//! with a fresh store and talks to it over HTTP; the [`api_tests!`] list runs each of them
//! on every storage.

mod abuse;
mod api_keys;
mod audit;
mod connection;
mod create;
mod delete;
mod docs;
mod get;
mod instances;
mod login;
mod operability;
mod outage;
mod sessions;
mod update;
mod webhooks;

/// The suites of organizations' HTTP contract (create, get, login, update, delete, docs)
/// against the application `$spawn` starts, so that they also run on every placement.
macro_rules! organization_suites {
    ($spawn:path) => {
            api_tests!(@module $spawn; create: returns_201_with_the_organization_and_creates_its_collection, same_key_in_any_spelling_is_409, look_alike_names_are_409, taken_email_is_409_and_leaves_nothing, invalid_fields_are_422_naming_each_field, wrong_json_types_and_unknown_fields_are_422, malformed_json_is_400, oversized_body_is_413, non_json_content_type_is_415, sixteen_simultaneous_creates_have_one_winner, responses_never_contain_the_password_or_hash);
            api_tests!(@module $spawn; get: anonymous_callers_see_no_admin_email, the_organizations_own_admin_sees_its_email, unknown_organization_is_404, missing_or_invalid_parameter_is_422);
            api_tests!(@module $spawn; login: returns_a_bearer_jwt_with_every_claim, email_is_case_insensitive, unknown_email_and_wrong_password_get_the_same_401, invalid_fields_are_422);
            api_tests!(@module $spawn; update: requires_a_valid_bearer_token, empty_update_is_422, rename_moves_the_collection_with_every_document, rename_onto_a_taken_name_is_409_and_touches_nothing, tokens_survive_a_rename, email_and_password_changes_apply, taken_email_is_409_and_nothing_applies);
            api_tests!(@module $spawn; delete: requires_a_valid_bearer_token, unknown_organization_is_404, another_organization_is_403_and_survives, removes_everything_and_refuses_its_tokens, accepts_the_name_in_a_json_body, missing_name_is_422, naming_two_organizations_is_400_and_deletes_nothing);
            api_tests!(@module $spawn; docs: openapi_documents_every_endpoint_and_the_bearer_scheme, swagger_ui_is_served, health_endpoints_answer, unknown_routes_and_methods_are_problems, security_headers_are_set);
    };
}

/// Runs every test (an `async fn(TestApp)`) against the storage that `$spawn` starts the
/// application on, in a module named after the storage.
macro_rules! api_tests {
    ($storage:ident, $spawn:path, $backend:expr) => {
        mod $storage {
            api_tests!(@configured $backend; sessions: login_returns_a_refresh_token_bound_to_a_session, refresh_rotates_and_reuse_revokes_the_session, a_retry_within_the_grace_window_is_not_reuse, logout_ends_access_and_refresh, credential_changes_end_every_other_session, deletion_ends_every_session, invalid_refresh_requests_are_rejected);
            api_tests!(@configured $backend; abuse: parallel_wrong_passwords_get_five_checks_then_429, a_success_resets_the_failure_count, rate_limits_answer_429_with_retry_after, forwarded_for_counts_only_behind_trusted_proxies, hashing_beyond_its_bound_is_503_with_retry_after, cors_is_off_unless_origins_are_allowed, responses_are_never_cached, stalled_bodies_get_408_and_lose_the_connection, parallel_right_passwords_are_never_locked_out, unknown_emails_get_the_same_lockout_answers);
            api_tests!(@configured $backend; operability: request_ids_are_echoed_or_generated_and_named_in_problems, metrics_expose_requests_hashing_store_and_security_events, metrics_can_need_a_token_or_a_listener_of_their_own);
            api_tests!(@configured $backend; connection: the_admin_gets_its_own_connection_details, new_organizations_go_where_the_policy_says, an_unreachable_cluster_answers_503_for_its_tenants_only, database_credentials_are_for_own_databases_only);
            api_tests!(@configured $backend; audit: every_action_is_recorded_with_its_context, pages_follow_the_cursor_newest_first, the_action_filter_and_bad_parameters, events_are_the_organizations_own_and_survive_a_rename);
            api_tests!(@configured $backend; api_keys: a_key_is_shown_once_and_works_within_its_scopes, a_write_key_renames_and_the_audit_trail_names_it, revoked_expired_and_wrong_keys_get_the_401_of_a_bad_token, refused_keys_count_like_failed_logins, invalid_requests_are_4xx_naming_the_field, a_deleted_organizations_keys_stop_working);
            api_tests!(@configured $backend; webhooks: events_arrive_signed_in_order_despite_failures, endpoints_receive_only_their_event_types, endpoints_are_the_sessions_to_manage, keys_and_sessions_publish_their_events);
            organization_suites!($spawn);
        }
    };
    (@configured $backend:expr; $module:ident: $($test:ident),* $(,)?) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::$module::$test($backend).await;
                }
            )*
        }
    };
    (@module $spawn:path; $module:ident: $($test:ident),* $(,)?) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::$module::$test($spawn().await).await;
                }
            )*
        }
    };
}

api_tests!(memory, api_tests::TestApp::spawn, api_tests::Backend::Memory);
api_tests!(mongodb, api_tests::TestApp::spawn_mongodb, api_tests::Backend::MongoDb);

/// The organization suites again with every organization in each other placement, on the
/// memory store and on MongoDB, where the other cluster is the second test server.
mod placements {
    mod memory_database {
        organization_suites!(api_tests::spawn_placed::memory_database);
    }
    mod memory_shared {
        organization_suites!(api_tests::spawn_placed::memory_shared);
    }
    mod mongodb_database {
        organization_suites!(api_tests::spawn_placed::mongodb_database);
    }
    mod mongodb_shared {
        organization_suites!(api_tests::spawn_placed::mongodb_shared);
    }
    mod mongodb_second_cluster {
        organization_suites!(api_tests::spawn_placed::mongodb_second_cluster);
    }
}
