//! The `orgsvc` binary: parse the command line, load the settings, start telemetry, run.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    orgsvc::cli::main().await
}
