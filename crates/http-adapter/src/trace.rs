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

/// What a request's span says of the request, as OpenTelemetry's HTTP conventions name it.
#[derive(Debug, Clone, Copy)]
pub struct ServedRequest<'a> {
    /// `http.request.method`.
    pub method: &'a str,
    /// `http.route`: the route template, never the raw path.
    pub route: &'a str,
}

/// Carries traces in and out of the service.
pub trait TracePropagation: Send + Sync {
    /// Makes `span` (a request's span, not yet entered) continue the trace the headers
    /// name, or start one when they name none or an invalid one, describes the request on
    /// it, and answers the id of the trace `span` is in, for the logs.
    fn continue_trace(
        &self,
        span: &tracing::Span,
        headers: TraceHeaders<'_>,
        request: ServedRequest<'_>,
    ) -> Option<String>;

    /// Records how the request was answered on its span (`http.response.status_code`; an
    /// error status for a 5xx).
    fn answered(&self, span: &tracing::Span, status: u16);

    /// The headers (`traceparent`, and `tracestate` when there is one) that make the
    /// receiver of an outgoing request continue `span`'s trace.
    fn outgoing_headers(&self, span: &tracing::Span) -> Vec<(String, String)>;
}
