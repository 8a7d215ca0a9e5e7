//! OpenAPI, Swagger UI, health checks and what every response shares.

use api_tests::{TestApp, problem};
use reqwest::Method;
use serde_json::Value;

pub async fn openapi_documents_every_endpoint_and_the_bearer_scheme(app: TestApp) {
    let doc: Value =
        app.request(Method::GET, "/openapi.json").send().await.expect("request").json().await.expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for (path, method) in [
        ("/org/create", "post"),
        ("/org/get", "get"),
        ("/org/update", "put"),
        ("/org/delete", "delete"),
        ("/admin/login", "post"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let responses = operation["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} has no success response");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, method, status) in
        [("/org/update", "put", "401"), ("/org/delete", "delete", "403"), ("/org/create", "post", "409")]
    {
        let response = &doc["paths"][path][method]["responses"][status];
        assert!(response["content"]["application/problem+json"].is_object(), "{method} {path} {status}");
    }
    assert!(doc["paths"]["/org/update"]["put"]["security"].to_string().contains("bearer"));
    for schema in ["Problem", "CreateOrganizationBody", "OrganizationResponse", "TokenResponse"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // The constraints the service enforces are in the schema, so that contract testers and
    // client generators see them.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["LoginBody"]["properties"]["password"]["minLength"], 8);
    assert_eq!(schemas["RefreshBody"]["properties"]["refresh_token"]["maxLength"], 256);
    assert_eq!(schemas["UpdateOrganizationBody"]["minProperties"], 1);
    assert!(schemas["UpdateOrganizationBody"].get("maxProperties").is_none(), "every field may be given at once");
    assert!(schemas["UpdateOrganizationBody"]["properties"]["email"]["type"] == "string", "not nullable");
    for body in ["CreateOrganizationBody", "UpdateOrganizationBody", "DeleteOrganizationBody"] {
        assert!(schemas[body]["properties"]["organization_name"]["pattern"].is_string(), "{body}");
        // The limits are the domain's own, not copies.
        let name = &schemas[body]["properties"]["organization_name"];
        assert_eq!((&name["minLength"], &name["maxLength"]), (&1.into(), &domain::MAX_NAME_CHARS.into()), "{body}");
    }
    for body in ["CreateOrganizationBody", "UpdateOrganizationBody", "LoginBody"] {
        let password = &schemas[body]["properties"]["password"];
        assert_eq!(password["minLength"], domain::MIN_PASSWORD_CHARS, "{body}");
        assert_eq!(password["maxLength"], domain::MAX_PASSWORD_CHARS, "{body}");
    }
    let get_parameter = &doc["paths"]["/org/get"]["get"]["parameters"][0]["schema"];
    assert_eq!(get_parameter["minLength"], 1);
    assert!(get_parameter["pattern"].is_string());
    // Public routes show no padlock in Swagger UI; protected ones do.
    for (path, method) in [("/org/create", "post"), ("/admin/login", "post"), ("/admin/refresh", "post")] {
        assert!(doc["paths"][path][method].get("security").is_none(), "{method} {path}");
    }
}

pub async fn swagger_ui_is_served(app: TestApp) {
    let response = app.request(Method::GET, "/docs/").send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("text").to_lowercase().contains("swagger"));
    // Without the slash the client is sent there (reqwest follows redirects).
    let response = app.request(Method::GET, "/docs").send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/docs/");
    assert!(response.text().await.expect("text").to_lowercase().contains("swagger"));
}

pub async fn health_endpoints_answer(app: TestApp) {
    for path in ["/health/live", "/health/ready"] {
        let body: Value = app
            .request(Method::GET, path)
            .send()
            .await
            .expect("request")
            .error_for_status()
            .expect(path)
            .json()
            .await
            .expect("json");
        assert_eq!(body["status"], "ok");
    }
}

pub async fn unknown_routes_and_methods_are_problems(app: TestApp) {
    problem(app.request(Method::GET, "/nowhere").send().await.expect("request"), 404).await;
    for (method, path, allow) in [
        (Method::GET, "/org/create", "POST"),
        (Method::POST, "/org/get", "GET"),
        (Method::PATCH, "/org/update", "PUT"),
        (Method::GET, "/org/delete", "DELETE"),
        (Method::DELETE, "/metrics", "GET"),
    ] {
        let response = app.request(method, path).send().await.expect("request");
        assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{path}");
        problem(response, 405).await;
    }
}

pub async fn security_headers_are_set(app: TestApp) {
    for path in ["/health/live", "/nowhere"] {
        let response = app.request(Method::GET, path).send().await.expect("request");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    }
}
