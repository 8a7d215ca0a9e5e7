//! Webhook deliveries over HTTP: the outbound side of this adapter.
//!
//! The server-side request forgery rule is applied where connections are made: every
//! address a name resolves to is checked against the deployment's [`EndpointPolicy`] at
//! delivery time, so a name registered while it pointed at a public address cannot later
//! reach an internal one. Redirects are not followed (a redirect could lead anywhere) and
//! no proxy from the environment is used (it would resolve names where we cannot check).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::{AttemptResult, EndpointPolicy, WebhookUrl};
use ports::WebhookSender;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::trace::TracePropagation;

/// How long a delivery may take by default, connection included, before it counts as
/// failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends deliveries with one pooled HTTP client.
#[derive(Clone)]
pub struct HttpWebhookSender {
    client: reqwest::Client,
    policy: EndpointPolicy,
    /// Sends the delivery's trace along, when tracing is on.
    trace: Option<Arc<dyn TracePropagation>>,
}

impl std::fmt::Debug for HttpWebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWebhookSender").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// Resolves names and keeps only the addresses the policy allows.
struct CheckedResolver {
    policy: EndpointPolicy,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| policy.allows_address(a.ip())).collect();
            if allowed.is_empty() {
                return Err(if found.is_empty() {
                    "the name does not resolve".into()
                } else {
                    "the name resolves only to internal addresses, which deliveries may not reach".into()
                });
            }
            let addresses: Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

impl HttpWebhookSender {
    /// A sender that connects only where `policy` allows and gives up on a request after
    /// `timeout`.
    pub fn new(policy: EndpointPolicy, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver { policy }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .user_agent(concat!("orgsvc-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, policy, trace: None })
    }

    /// The same sender, with every delivery carrying the trace it is made in
    /// (`traceparent`), so the receiver's work joins the delivery's trace.
    pub fn with_tracing(mut self, trace: Arc<dyn TracePropagation>) -> Self {
        self.trace = Some(trace);
        self
    }
}

/// The reason of a failed request, without anything from the URL (which may hold a
/// token in its query).
fn failure(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_request() {
        "could not send the request"
    } else {
        "failed"
    };
    // The innermost cause says why (refused address, connection refused, ...); the URL
    // is never in it because it is taken from the source chain, not from the error itself.
    let mut cause = std::error::Error::source(error);
    let mut reason = None;
    while let Some(inner) = cause {
        reason = Some(inner.to_string());
        cause = inner.source();
    }
    match reason {
        Some(reason) => format!("{kind}: {reason}"),
        None => kind.to_owned(),
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, url: &WebhookUrl, headers: Vec<(&'static str, String)>, body: String) -> AttemptResult {
        // Addresses written in the URL are not resolved, so the resolver never sees them.
        if let Some(host) = url.ip_address()
            && !self.policy.allows_address(host)
        {
            return AttemptResult::Failed("the address is internal, which deliveries may not reach".to_owned());
        }
        let mut request = self.client.post(url.as_str()).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(trace) = &self.trace {
            for (name, value) in trace.outgoing_headers(&tracing::Span::current()) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(response) => AttemptResult::Status(response.status().as_u16()),
            Err(error) => AttemptResult::Failed(failure(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permissive() -> EndpointPolicy {
        EndpointPolicy { require_https: false, allow_private: true }
    }

    #[tokio::test]
    async fn names_that_resolve_to_internal_addresses_are_not_connected_to() {
        // Registered under a permissive policy, delivered under the strict one: the check
        // at delivery time is what refuses it.
        let url = WebhookUrl::parse("http://localhost:9/hook", permissive()).expect("url");
        let strict =
            HttpWebhookSender::new(EndpointPolicy { require_https: false, allow_private: false }, DELIVERY_TIMEOUT)
                .expect("client");
        match strict.send(&url, Vec::new(), "{}".to_owned()).await {
            AttemptResult::Failed(reason) => assert!(reason.contains("internal addresses"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let literal = WebhookUrl::parse("http://127.0.0.1:9/hook", permissive()).expect("url");
        match strict.send(&literal, Vec::new(), "{}".to_owned()).await {
            AttemptResult::Failed(reason) => assert!(reason.contains("internal"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
