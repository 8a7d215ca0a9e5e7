//! Logging setup: `tracing` with an `RUST_LOG` filter (default `info`), human-readable or
//! JSON lines.

mod json;

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing),
/// which tests rely on.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal: in a file or a log collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    let _ = match format {
        // The innermost span (the request's id, method and route) is in every line.
        LogFormat::Json => builder.fmt_fields(json::JsonFields).event_format(json::JsonLines).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
