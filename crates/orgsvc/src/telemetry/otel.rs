//! OpenTelemetry: the trace exporter (OTLP/HTTP with protobuf bodies, batched on the SDK's
//! own thread) and the W3C Trace Context propagation the HTTP adapter uses.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use http_adapter::{ServedRequest, TraceHeaders, TracePropagation};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest collector answer read: it is only a status and, at most, partial successes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// A tracer provider exporting to the collector's traces address, sampling new traces at
/// `ratio` and following the caller's decision for traces that arrive with a request.
pub(super) fn provider(endpoint: &str, ratio: f64) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(BlockingHttp::new()?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("ORGSVC_OTLP_ENDPOINT: building the trace exporter")?;
    let mut resource = Resource::builder();
    // OTEL_SERVICE_NAME, where set, names the service (as in every OpenTelemetry SDK).
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("orgsvc");
    }
    let resource = resource.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
        .with_resource(resource.build())
        .build())
}

/// The exporter's HTTP client: the workspace's reqwest, blocking, because the SDK exports
/// from a thread of its own, outside the async runtime.
#[derive(Debug)]
struct BlockingHttp(reqwest::blocking::Client);

impl BlockingHttp {
    fn new() -> anyhow::Result<Self> {
        // A blocking client may be neither built nor dropped on an async runtime's thread:
        // it is built on a thread of its own, and dropped with the exporter on the SDK's.
        let client = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("building the trace exporter's HTTP client panicked"))?
        .context("building the trace exporter's HTTP client")?;
        Ok(Self(client))
    }
}

#[async_trait]
impl HttpClient for BlockingHttp {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, HttpError> {
        use std::io::Read;
        let mut response = self.0.execute(request.try_into()?)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        response.take(MAX_ANSWER_BYTES).read_to_end(&mut body)?;
        let mut answer = http::Response::builder().status(status).body(bytes::Bytes::from(body))?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

/// W3C Trace Context (`traceparent`, `tracestate`) through the OpenTelemetry layer of the
/// global subscriber.
#[derive(Debug, Default)]
pub struct OtelPropagation {
    propagator: TraceContextPropagator,
}

impl OtelPropagation {
    /// The propagation of W3C Trace Context headers.
    pub fn new() -> Self {
        Self::default()
    }
}

/// An incoming request's trace headers, as the propagator reads them.
struct Incoming<'a>(TraceHeaders<'a>);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.0.traceparent,
            "tracestate" => self.0.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

impl TracePropagation for OtelPropagation {
    fn continue_trace(
        &self,
        span: &tracing::Span,
        headers: TraceHeaders<'_>,
        request: ServedRequest<'_>,
    ) -> Option<String> {
        if headers.traceparent.is_some() {
            // An invalid traceparent gives an empty context, and the span starts a trace.
            let _ = span.set_parent(self.propagator.extract(&Incoming(headers)));
        }
        span.set_attribute("http.request.method", request.method.to_owned());
        span.set_attribute("http.route", request.route.to_owned());
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| span_context.trace_id().to_string())
    }

    fn answered(&self, span: &tracing::Span, status: u16) {
        span.set_attribute("http.response.status_code", i64::from(status));
        // A server span is in error for a 5xx only: a 4xx is the client's (the conventions).
        if status >= 500 {
            span.set_status(Status::error(""));
        }
    }

    fn outgoing_headers(&self, span: &tracing::Span) -> Vec<(String, String)> {
        let mut headers = HashMap::new();
        self.propagator.inject_context(&span.context(), &mut headers);
        headers.into_iter().collect()
    }
}
