//! `orgsvc-hello`: the floor `make bench` compares the service's request path with. An
//! actix-web server, with as many workers as the service, that answers `GET /org/get` with
//! the same JSON the service returns for an organization, serialized per request as the
//! service does, and nothing else: no store, no middleware, no log line, no metrics.

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};

/// The body of `GET /org/get`, field for field.
#[derive(Serialize)]
struct Organization {
    organization_id: &'static str,
    organization_name: String,
    collection_name: &'static str,
    created_at: &'static str,
    updated_at: &'static str,
}

/// The query of `GET /org/get`.
#[derive(Deserialize)]
struct Query {
    organization_name: String,
}

async fn get(query: web::Query<Query>) -> HttpResponse {
    HttpResponse::Ok().json(Organization {
        organization_id: "019ac3f2-6a5e-7c41-9d2b-3e8f1a7b5c60",
        organization_name: query.into_inner().organization_name,
        collection_name: "org_warm_org",
        created_at: "2026-11-27T04:30:00.000Z",
        updated_at: "2026-11-27T04:30:00.000Z",
    })
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::var("ORGSVC_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    HttpServer::new(|| App::new().route("/org/get", web::get().to(get)).route("/health/ready", web::get().to(ready)))
        .workers(std::thread::available_parallelism().map_or(1, usize::from))
        .bind(address)?
        .run()
        .await
}
