//! `POST /org/create`.

use api_tests::{TestApp, error_fields, problem};
use reqwest::Method;
use serde_json::{Value, json};

pub async fn returns_201_with_the_organization_and_creates_its_collection(app: TestApp) {
    let response = app.create("  Acme   Corp ", "Admin@Acme.TEST", "correct horse").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    assert!(uuid::Uuid::parse_str(body["organization_id"].as_str().expect("id")).is_ok());
    assert_eq!(body["organization_name"], "Acme Corp");
    assert_eq!(body["collection_name"], "org_acme_corp");
    assert!(uuid::Uuid::parse_str(body["admin"]["id"].as_str().expect("admin id")).is_ok());
    assert_eq!(body["admin"]["email"], "admin@acme.test");
    api_tests::assert_api_time(&body["created_at"]);
    let collections = app.tenants.tenant_collections().await.expect("collections");
    assert_eq!(collections, app.own_collections(&["Acme Corp"]).await);
}

pub async fn same_key_in_any_spelling_is_409(app: TestApp) {
    app.create_ok("Acme Corp", "a@acme.test", "correct horse").await;
    for spelling in ["Acme Corp", "acme-corp", "ACME  corp", "acme_corp!"] {
        let body = problem(app.create(spelling, "other@acme.test", "correct horse").await, 409).await;
        assert!(body["detail"].as_str().expect("detail").contains("name"), "{body}");
    }
}

pub async fn look_alike_names_are_409(app: TestApp) {
    app.create_ok("PayPal", "a@paypal.test", "correct horse").await;
    // A Cyrillic "а", a digit one for an "l", and both; then a Greek "ο" for an "o".
    for look_alike in ["P\u{430}yPal", "PayPa1", "P\u{430}yP\u{430}l"] {
        let body = problem(app.create(look_alike, "other@paypal.test", "correct horse").await, 409).await;
        assert!(body["detail"].as_str().expect("detail").contains("looks like"), "{body}");
    }
    app.create_ok("G\u{3bf}ogle", "a@google.test", "correct horse").await;
    problem(app.create("Google", "b@google.test", "correct horse").await, 409).await;
}

pub async fn taken_email_is_409_and_leaves_nothing(app: TestApp) {
    app.create_ok("Acme", "admin@acme.test", "correct horse").await;
    let body = problem(app.create("Globex", "ADMIN@acme.test", "correct horse").await, 409).await;
    assert!(body["detail"].as_str().expect("detail").contains("email"), "{body}");
    problem(app.get("Globex", None).await, 404).await;
    assert_eq!(app.tenants.tenant_collections().await.expect("collections"), app.own_collections(&["Acme"]).await);
    app.create_ok("Globex", "admin@globex.test", "correct horse").await;
}

pub async fn invalid_fields_are_422_naming_each_field(app: TestApp) {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["organization_name", "email", "password"]),
        (json!({"email": "a@acme.test", "password": "correct horse"}), vec!["organization_name"]),
        (
            json!({"organization_name": "", "email": "a@acme.test", "password": "correct horse"}),
            vec!["organization_name"],
        ),
        (
            json!({"organization_name": "---", "email": "a@acme.test", "password": "correct horse"}),
            vec!["organization_name"],
        ),
        (
            json!({"organization_name": "a".repeat(65), "email": "a@acme.test", "password": "correct horse"}),
            vec!["organization_name"],
        ),
        (
            json!({"organization_name": "Ac\u{0007}me", "email": "a@acme.test", "password": "correct horse"}),
            vec!["organization_name"],
        ),
        (json!({"organization_name": "Acme", "email": "not-an-email", "password": "correct horse"}), vec!["email"]),
        (json!({"organization_name": "Acme", "email": "a@acme.test", "password": "short"}), vec!["password"]),
        (json!({"organization_name": "Acme", "email": "a@acme.test", "password": "x".repeat(129)}), vec!["password"]),
        (
            json!({"organization_name": "", "email": "nope", "password": "short"}),
            vec!["organization_name", "email", "password"],
        ),
    ];
    for (body, fields) in cases {
        let response = app.request(Method::POST, "/org/create").json(&body).send().await.expect("request");
        let problem = problem(response, 422).await;
        assert_eq!(error_fields(&problem), fields, "{body}");
        assert!(
            problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .all(|e| e["message"].as_str().is_some_and(|m| !m.is_empty()))
        );
    }
    assert!(app.tenants.tenant_collections().await.expect("collections").is_empty());
}

pub async fn wrong_json_types_and_unknown_fields_are_422(app: TestApp) {
    for (body, field) in [
        (json!({"organization_name": 5, "email": "a@acme.test", "password": "correct horse"}), "organization_name"),
        (json!({"organization_name": "Acme", "email": ["a@acme.test"], "password": "correct horse"}), "email"),
        (json!({"organization_name": "Acme", "email": "a@acme.test", "password": true}), "password"),
        (json!([1, 2, 3]), "body"),
        (json!("Acme"), "body"),
    ] {
        let response = app.request(Method::POST, "/org/create").json(&body).send().await.expect("request");
        let problem = problem(response, 422).await;
        assert_eq!(error_fields(&problem), vec![field], "{body}");
    }
    let response = app
        .request(Method::POST, "/org/create")
        .json(
            &json!({"organization_name": "Acme", "email": "a@acme.test", "password": "correct horse", "role": "root"}),
        )
        .send()
        .await
        .expect("request");
    let problem = problem(response, 422).await;
    assert!(problem["errors"][0]["message"].as_str().expect("message").contains("role"), "{problem}");
}

pub async fn malformed_json_is_400(app: TestApp) {
    for body in ["{", "{\"organization_name\": ", "not json", "", "{} trailing"] {
        let response = app
            .request(Method::POST, "/org/create")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        problem(response, 400).await;
    }
}

pub async fn oversized_body_is_413(app: TestApp) {
    let padding = "x".repeat(70 * 1024);
    let body =
        json!({"organization_name": "Acme", "email": "a@acme.test", "password": "correct horse", "padding": padding});
    let response = app.request(Method::POST, "/org/create").json(&body).send().await.expect("request");
    problem(response, 413).await;
}

pub async fn non_json_content_type_is_415(app: TestApp) {
    let response = app
        .request(Method::POST, "/org/create")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("organization_name=Acme&email=a@acme.test&password=correct+horse")
        .send()
        .await
        .expect("request");
    problem(response, 415).await;
    // A JSON body without a content type is not guessed at either.
    let body = r#"{"organization_name": "Acme", "email": "a@acme.test", "password": "correct horse"}"#;
    let response = app.request(Method::POST, "/org/create").body(body).send().await.expect("request");
    problem(response, 415).await;
    problem(app.get("Acme", None).await, 404).await;
    let response = app
        .request(Method::POST, "/org/create")
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
}

pub async fn sixteen_simultaneous_creates_have_one_winner(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                app.create(if i % 2 == 0 { "Race" } else { "RACE!" }, &format!("admin{i}@race.test"), "correct horse")
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.expect("task"));
    }
    statuses.sort_unstable();
    let mut expected = vec![201];
    expected.extend([409; 15]);
    assert_eq!(statuses, expected);
    assert_eq!(app.tenants.tenant_collections().await.expect("collections"), app.own_collections(&["Race"]).await);
}

pub async fn responses_never_contain_the_password_or_hash(app: TestApp) {
    let password = "a very secret passphrase";
    let created = app.create("Acme", "a@acme.test", password).await.text().await.expect("text");
    let token = app.token("a@acme.test", password).await;
    let got = app.get("Acme", Some(&token)).await.text().await.expect("text");
    let updated =
        app.update(&token, json!({"password": "another secret passphrase"})).await.text().await.expect("text");
    for body in [created, got, updated] {
        assert!(!body.contains("secret passphrase"), "{body}");
        assert!(!body.contains("argon2"), "{body}");
        assert!(!body.contains("password"), "{body}");
    }
}
