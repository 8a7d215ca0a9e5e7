//! What every request leaves behind: a request id (the client's `X-Request-Id` if it is
//! plain and short, else a new one) echoed on the response and in problem bodies, one
//! tracing span with method, route template, status, latency, request id and (when tracing
//! is on) the trace id, which continues the caller's `traceparent`, and the
//! Prometheus metrics of the HTTP layer. Metric labels are route templates (never raw
//! paths or names), methods and status classes, so their number is bounded.

use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, web};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use tracing::Instrument;

use crate::AppState;
use crate::client::{REQUEST_ID_HEADER, RequestId, acceptable_request_id};
use crate::trace::{ServedRequest, TraceHeaders};

tokio::task_local! {
    /// The id of the request this task is serving, for problem bodies.
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being served by this task, if any.
pub(crate) fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// The HTTP layer's metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGauge,
    pub(crate) organizations: IntGauge,
}

impl HttpMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("orgsvc_http_requests_total", "HTTP requests by route template, method and status class."),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("orgsvc_http_request_duration_seconds", "HTTP request latency by route template.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route", "method"],
        )?;
        let in_flight = IntGauge::new("orgsvc_http_requests_in_flight", "HTTP requests being served.")?;
        let organizations = IntGauge::new("orgsvc_organizations", "Active organizations (read at each scrape).")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(organizations.clone()))?;
        Ok(Self { requests, latency, in_flight, organizations })
    }
}

/// A histogram of store operation latency, for the composition root's store decorator.
pub fn store_latency(registry: &Registry) -> prometheus::Result<HistogramVec> {
    let histogram = HistogramVec::new(
        HistogramOpts::new("orgsvc_store_operation_duration_seconds", "Store operation latency by operation.")
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        &["operation", "outcome"],
    )?;
    registry.register(Box::new(histogram.clone()))?;
    Ok(histogram)
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A new request id: a random (version 4) UUID from the thread's generator, which, unlike
/// the operating system's, costs no system call per request.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

/// Middleware: request id, span, access log line and metrics.
pub(crate) fn observe<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let id = req.headers().get(REQUEST_ID_HEADER).and_then(acceptable_request_id).unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // The route template, never the raw path: bounded label values, and no names in logs.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    // The span names the request; its outcome is in the "request served" line, not
    // recorded on the span (each record re-encodes the span's fields).
    let trace = state.as_ref().and_then(|state| state.trace.clone());
    let span = match &trace {
        // Traced, the span is named as OpenTelemetry's HTTP conventions say ("GET /org/get"):
        // the `otel.` fields name and kind the exported span and stay out of log lines.
        Some(trace) => {
            let span = tracing::info_span!(
                "request",
                method = %method,
                route = %route,
                request_id = %id,
                trace_id = tracing::field::Empty,
                otel.name = %format_args!("{method} {route}"),
                otel.kind = "server",
            );
            let header = |name: &str| req.headers().get(name).and_then(|value| value.to_str().ok());
            let headers = TraceHeaders { traceparent: header("traceparent"), tracestate: header("tracestate") };
            let served = ServedRequest { method: &method, route: &route };
            if let Some(trace_id) = trace.continue_trace(&span, headers, served) {
                span.record("trace_id", trace_id);
            }
            span
        }
        None => tracing::info_span!("request", method = %method, route = %route, request_id = %id),
    };
    if let Some(state) = &state {
        state.metrics.in_flight.inc();
    }
    let started = Instant::now();
    let call = CURRENT_REQUEST_ID.sync_scope(id.clone(), || service.call(req));
    async move {
        let result = CURRENT_REQUEST_ID.scope(id.clone(), call.instrument(span.clone())).await;
        let elapsed = started.elapsed();
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        if let Some(state) = &state {
            let m = &state.metrics;
            m.in_flight.dec();
            m.requests.with_label_values(&[route.as_str(), method.as_str(), status_class(status)]).inc();
            m.latency.with_label_values(&[route.as_str(), method.as_str()]).observe(elapsed.as_secs_f64());
        }
        if let Some(trace) = &trace {
            trace.answered(&span, status);
        }
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        span.in_scope(|| tracing::info!(status, latency_ms, "request served"));
        let mut response = result?;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
        }
        Ok(response)
    }
}
