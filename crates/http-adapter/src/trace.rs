//! W3C Trace Context at the edges of this adapter: a request's `traceparent` (and
//! `tracestate`) continue the caller's trace, and webhook deliveries carry theirs to the
//! receiver. How traces are recorded is not this adapter's business: the composition root
//! supplies a [`TracePropagation`] (OpenTelemetry) when tracing is on, and nothing otherwise.

/// The trace context headers of an incoming request, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceHeaders<'a> {
    /// `traceparent`: version, trace id, parent span id and flags.
    pub traceparent: Option<&'a str>,
    /// `tracestate`: vendors' entries, passed along.
    pub tracestate: Option<&'a str>,
}

/// Carries traces in and out of the service.
pub trait TracePropagation: Send + Sync {
    /// Makes `span` (a request's span, not yet entered) continue the trace the headers
    /// name, or start one when they name none or an invalid one, and answers the id of the
    /// trace `span` is in, for the logs.
    fn continue_trace(&self, span: &tracing::Span, headers: TraceHeaders<'_>) -> Option<String>;

    /// The headers (`traceparent`, and `tracestate` when there is one) that make the
    /// receiver of an outgoing request continue `span`'s trace.
    fn outgoing_headers(&self, span: &tracing::Span) -> Vec<(String, String)>;
}
