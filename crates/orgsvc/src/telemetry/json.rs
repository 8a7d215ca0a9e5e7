//! JSON log lines, written straight from the fields: a span's fields are encoded once, when
//! the span is created, as a JSON fragment that every line inside it copies as it is.
//! (tracing-subscriber's own JSON format parses each enclosing span's fields back from
//! text for every line, which cost about a tenth of the service's CPU per request.)
//!
//! A line: `{"timestamp":"...","level":"INFO","message":"...",<event fields>,"target":"...",
//! "span":{"name":"request",<span fields>}}`, the span being the innermost one.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Encodes fields as `,"name":value` fragments.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Fragments { writer, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }

    /// Fields recorded later are appended: fragments concatenate without a separator.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        self.format_fields(current.as_writer(), fields)
    }
}

/// The line format.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        write!(writer, "{{\"timestamp\":\"{now}\",\"level\":\"{}\"", metadata.level())?;
        let mut fields = Fragments { writer: writer.by_ref(), result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, metadata.target())?;
        if let Some(span) = ctx.lookup_current() {
            writer.write_str(",\"span\":{\"name\":")?;
            string(&mut writer, span.name())?;
            let extensions = span.extensions();
            if let Some(stored) = extensions.get::<FormattedFields<N>>() {
                writer.write_str(&stored.fields)?;
            }
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes each field it visits as a `,"name":value` fragment.
struct Fragments<'a> {
    writer: Writer<'a>,
    result: fmt::Result,
}

impl Fragments<'_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        // `otel.` fields are for the trace exporter (a span's name and kind), not the log.
        if self.result.is_err() || field.name().starts_with("otel.") {
            return;
        }
        self.result = (|| {
            self.writer.write_char(',')?;
            string(&mut self.writer, field.name())?;
            self.writer.write_char(':')?;
            value(&mut self.writer)
        })();
    }
}

impl Visit for Fragments<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| string(w, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.field(field, |w| if value.is_finite() { write!(w, "{value}") } else { w.write_str("null") });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// A JSON string.
fn string(writer: &mut Writer<'_>, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(writer).write_str(value)?;
    writer.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, c) in text.char_indices() {
            let escape = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if c < ' ' => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{:04x}", u32::from(c))?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + c.len_utf8();
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn lines_are_json_with_the_event_and_the_innermost_spans_fields() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", ignored = 1);
            let _outer = outer.enter();
            let span = tracing::info_span!(
                "request",
                route = "/org/get",
                request_id = %"id \"42\"",
                n = 7u64,
                otel.name = "GET /org/get"
            );
            span.in_scope(|| {
                tracing::info!(status = 404u16, latency_ms = 1.5, ok = false, weird = f64::NAN, "request\tserved\u{1}");
            });
            tracing::warn!(error = %"a\\b\nc", "outside");
        });
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let served = &lines[0];
        assert_eq!(served["message"], "request\tserved\u{1}");
        assert_eq!(served["level"], "INFO");
        assert_eq!(served["status"], 404);
        assert_eq!(served["latency_ms"], 1.5);
        assert_eq!(served["ok"], false);
        assert!(served["weird"].is_null());
        assert!(served["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(served["span"]["name"], "request");
        assert_eq!(served["span"]["route"], "/org/get");
        assert_eq!(served["span"]["request_id"], "id \"42\"");
        assert_eq!(served["span"]["n"], 7);
        assert!(served["span"].get("otel.name").is_none(), "for the exporter only: {served}");
        assert!(served["target"].as_str().is_some_and(|t| t.contains("json")));
        assert_eq!(lines[1]["error"], "a\\b\nc");
        assert_eq!(lines[1]["span"]["name"], "outer");
    }
}
