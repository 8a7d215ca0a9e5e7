//! Logging and tracing setup: `tracing` with an `RUST_LOG` filter (default `info`),
//! human-readable or JSON lines, and, when `ORGSVC_OTLP_ENDPOINT` is set, OpenTelemetry
//! traces exported over OTLP/HTTP.
//!
//! The spans of use cases, store operations, password hashing and webhook deliveries are at
//! debug level: with tracing off (and `RUST_LOG` at its default) they are never created, so
//! they cost nothing; with tracing on, they go to the exporter and not to the log lines.

mod json;
mod otel;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use otel::OtelPropagation;

use crate::settings::{LogFormat, TracingSettings};

/// What [`init`] set up, to be shut down before the process exits.
#[must_use = "traces still buffered are lost unless the telemetry is shut down"]
pub struct Telemetry {
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the traces still buffered and stops the exporter. It blocks (for at most the
    /// exporter's timeout), so async callers run it on a blocking thread.
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(error) = tracer.shutdown()
        {
            tracing::warn!(error = %error, "could not send the last traces");
        }
    }
}

/// Installs the global subscriber, and the trace exporter when the settings name a
/// collector. Safe to call more than once (later calls install nothing), which tests rely
/// on.
pub fn init(format: LogFormat, tracing: &TracingSettings) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal: in a file or a log collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let lines = match format {
        // The request's span (its id, trace id, method and route) is in every line.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(json::JsonFields)
            .event_format(json::JsonLines)
            .with_ansi(false)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).boxed(),
    }
    .with_filter(filter);
    let provider = match &tracing.otlp_endpoint {
        Some(endpoint) => Some(otel::provider(endpoint, tracing.sample_ratio)?),
        None => None,
    };
    let traces = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("orgsvc"))
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(traced))
    });
    let _ = tracing_subscriber::registry().with(lines).with(traces).try_init();
    Ok(Telemetry { tracer: provider })
}

/// The crates whose debug-level spans are the trace's detail.
const OWN_CRATES: [&str; 7] =
    ["orgsvc", "ports", "http_adapter", "crypto_adapter", "mongo_adapter", "memory_adapter", "domain"];

/// What the trace exporter records: the service's own spans down to debug level, and
/// everything else (other crates' spans, and every event, which become span events) from
/// info up, so that turning tracing on does not turn debug log events on.
fn traced(metadata: &Metadata<'_>) -> bool {
    let own = OWN_CRATES
        .iter()
        .any(|name| metadata.target().strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")));
    let floor = if metadata.is_span() && own { Level::DEBUG } else { Level::INFO };
    *metadata.level() <= floor
}
