//! Scenario 8: two instances on one MongoDB database, each with its organization cache.
//! Each round makes a rename, a password change, a logout and a delete on instance A and
//! measures how long until instance B answers accordingly, asking B as fast as it answers.
//! The cached entries live an hour here, so only the change stream explains what B sees.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::load::Stats;
use crate::report::Report;
use crate::service::{Hashing, Service, Storage};

const KEY: &str = "the-bench-signing-key-of-32-bytes!!";
const PASSWORD: &str = "benchmark password";
const NEW_PASSWORD: &str = "a new benchmark password";

/// The longest a change may take to be seen before the run reports it as never seen.
const GIVE_UP: Duration = Duration::from_secs(10);

/// Asks `seen` until it holds; how long that took.
async fn delay<F, Fut>(what: &str, seen: F) -> anyhow::Result<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !seen().await {
        anyhow::ensure!(started.elapsed() < GIVE_UP, "instance B never saw the {what}");
    }
    Ok(started.elapsed())
}

async fn send(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.map_or(0, |r| r.status().as_u16())
}

async fn tokens(service: &Service, email: &str, password: &str) -> anyhow::Result<(String, String)> {
    let response = service
        .client
        .post(service.url("/admin/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "login {email}: {}", response.status());
    let body: Value = response.json().await?;
    let access = body["access_token"].as_str().context("access_token")?.to_owned();
    Ok((access, body["refresh_token"].as_str().context("refresh_token")?.to_owned()))
}

fn get(service: &Service, name: &str) -> reqwest::RequestBuilder {
    service.client.get(service.url("/org/get")).query(&[("organization_name", name)])
}

fn audit(service: &Service, token: &str) -> reqwest::RequestBuilder {
    service.client.get(service.url("/org/audit")).bearer_auth(token)
}

/// Runs `rounds` rounds and reports the delays' median and 99th percentile per change.
pub(crate) async fn delays(uri: &str, rounds: usize, report: &mut Report) -> anyhow::Result<()> {
    let storage = Storage::mongodb(uri);
    let settings = [("ORGSVC_JWT_SECRET", KEY), ("ORGSVC_CACHE_TTL_SECONDS", "3600")];
    let a = Service::start_with(&storage, Hashing::Cheap, &settings).await?;
    let b = Service::start_with(&storage, Hashing::Cheap, &settings).await?;
    let changes = ["rename", "password change", "logout", "delete"];
    let mut seen: Vec<Stats> = changes.iter().map(|_| Stats::default()).collect();
    let started = Instant::now();
    for round in 0..rounds {
        let (name, email) = (format!("Coherent {round}"), format!("c{round}@bench.test"));
        let created = send(
            a.client
                .post(a.url("/org/create"))
                .json(&json!({"organization_name": name, "email": email, "password": PASSWORD})),
        )
        .await;
        anyhow::ensure!(created == 201, "create {name}: {created}");
        let (access, _) = tokens(&a, &email, PASSWORD).await?;
        // B reads the organization, its admin and the session: its cache holds them.
        for _ in 0..2 {
            anyhow::ensure!(send(get(&b, &name).bearer_auth(&access)).await == 200, "b reads {name}");
        }

        let renamed = format!("Coherent {round} renamed");
        let update = a.client.put(a.url("/org/update")).bearer_auth(&access);
        anyhow::ensure!(send(update.json(&json!({"organization_name": renamed}))).await == 200, "rename");
        seen[0].record(delay("rename", || async { send(get(&b, &name)).await == 404 }).await?, true);

        let (other, _) = tokens(&a, &email, PASSWORD).await?;
        anyhow::ensure!(send(audit(&b, &other)).await == 200, "b trusts the other session");
        let update = a.client.put(a.url("/org/update")).bearer_auth(&access);
        anyhow::ensure!(send(update.json(&json!({"password": NEW_PASSWORD}))).await == 200, "password change");
        seen[1].record(delay("password change", || async { send(audit(&b, &other)).await == 401 }).await?, true);

        anyhow::ensure!(send(audit(&b, &access)).await == 200, "b trusts the session");
        anyhow::ensure!(send(a.client.post(a.url("/admin/logout")).bearer_auth(&access)).await == 204, "logout");
        seen[2].record(delay("logout", || async { send(audit(&b, &access)).await == 401 }).await?, true);

        let (last, _) = tokens(&a, &email, NEW_PASSWORD).await?;
        anyhow::ensure!(send(get(&b, &renamed).bearer_auth(&last)).await == 200, "b reads {renamed}");
        let delete = a.client.delete(a.url("/org/delete")).query(&[("organization_name", renamed.as_str())]);
        anyhow::ensure!(send(delete.bearer_auth(&last)).await == 204, "delete");
        seen[3].record(delay("delete", || async { send(get(&b, &renamed)).await == 404 }).await?, true);
    }
    let elapsed = started.elapsed();
    a.stop().await;
    b.stop().await;
    let mut worst_p99: f64 = 0.0;
    for (change, mut stats) in changes.into_iter().zip(seen) {
        stats.elapsed = elapsed;
        let (p50, p99) = (stats.percentile_ms(50.0), stats.percentile_ms(99.0));
        worst_p99 = worst_p99.max(p99);
        report.notes.push(format!(
            "8 {change} on instance A seen by instance B after p50 {p50:.1} ms, p99 {p99:.1} ms, most {:.1} ms ({rounds} rounds)",
            stats.percentile_ms(100.0)
        ));
    }
    report.verdict(
        "8 another instance's change seen within p99 < 100 ms (change stream)",
        format!("worst p99 {worst_p99:.1} ms over {rounds} rounds of each change"),
        worst_p99 < 100.0,
    );
    Ok(())
}
