//! The `orgsvc` binary: set up telemetry, then run the command line (by default: load the
//! settings, build the application and serve).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    orgsvc::telemetry::init();
    orgsvc::cli::run(std::env::args().skip(1).collect()).await
}
