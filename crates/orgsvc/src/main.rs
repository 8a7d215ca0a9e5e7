//! The `orgsvc` binary: load settings, set up telemetry, build the application, run it.

use orgsvc::{Application, Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::from_env()?;
    Application::build(settings).await?.run_until_stopped().await
}
