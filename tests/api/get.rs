//! `GET /org/get`.

use api_tests::{TestApp, error_fields, problem};
use reqwest::Method;
use serde_json::Value;

pub async fn anonymous_callers_see_no_admin_email(app: TestApp) {
    let created = app.create_ok("Acme Corp", "a@acme.test", "correct horse").await;
    for spelling in ["Acme Corp", "acme-corp", "ACME   CORP"] {
        let response = app.get(spelling, None).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["organization_id"], created["organization_id"]);
        assert_eq!(body["organization_name"], "Acme Corp");
        assert_eq!(body["collection_name"], "org_acme_corp");
        assert_eq!(body["created_at"], created["created_at"]);
        assert_eq!(body["updated_at"], created["created_at"]);
        api_tests::assert_api_time(&body["updated_at"]);
        assert!(body.get("admin_email").is_none(), "{body}");
    }
    // An invalid token is treated as no token, not as an error.
    let body: Value = app.get("Acme Corp", Some("not-a-token")).await.json().await.expect("json");
    assert!(body.get("admin_email").is_none(), "{body}");
}

pub async fn the_organizations_own_admin_sees_its_email(app: TestApp) {
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    app.create_ok("Globex", "g@globex.test", "correct horse").await;
    let acme = app.token("a@acme.test", "correct horse").await;
    let globex = app.token("g@globex.test", "correct horse").await;
    let body: Value = app.get("Acme", Some(&acme)).await.json().await.expect("json");
    assert_eq!(body["admin_email"], "a@acme.test");
    // Another organization's admin is as anonymous as anyone.
    let body: Value = app.get("Acme", Some(&globex)).await.json().await.expect("json");
    assert!(body.get("admin_email").is_none(), "{body}");
}

pub async fn unknown_organization_is_404(app: TestApp) {
    problem(app.get("Nobody", None).await, 404).await;
    app.create_ok("Acme", "a@acme.test", "correct horse").await;
    problem(app.get("Acme Corp", None).await, 404).await;
}

pub async fn missing_or_invalid_parameter_is_422(app: TestApp) {
    let response = app.request(Method::GET, "/org/get").send().await.expect("request");
    assert_eq!(error_fields(&problem(response, 422).await), vec!["organization_name"]);
    let response = app.get("!!!", None).await;
    assert_eq!(error_fields(&problem(response, 422).await), vec!["organization_name"]);
}
