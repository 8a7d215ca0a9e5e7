//! Webhooks: the rules of where events may be sent, how deliveries are signed (the Standard
//! Webhooks specification), which events an endpoint receives, and when a failed delivery
//! is tried again. The sending itself is an adapter's; every decision is made here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// What every signing secret starts with, as the Standard Webhooks specification says.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// How many random bytes a signing secret holds (the specification asks for 24 to 64).
pub const WEBHOOK_SECRET_BYTES: usize = 32;

/// The most characters an endpoint's URL has.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;

/// How far a delivery's timestamp may be from the receiver's clock before a verifier
/// refuses it (a replayed delivery): the specification's suggestion.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Something that happened to an organization, as endpoints subscribe to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `organization.created`
    OrganizationCreated,
    /// `organization.renamed`
    OrganizationRenamed,
    /// `organization.deleted`
    OrganizationDeleted,
    /// `organization.moved`: its data moved to another placement or cluster.
    OrganizationMoved,
    /// `admin.email_changed`
    AdminEmailChanged,
    /// `admin.password_changed`
    AdminPasswordChanged,
    /// `session.revoked`: a logout, a reused refresh token, or a credential change ended a
    /// session.
    SessionRevoked,
    /// `api_key.created`
    ApiKeyCreated,
    /// `api_key.revoked`
    ApiKeyRevoked,
}

impl EventType {
    /// Every event type, in a stable order.
    pub const ALL: [EventType; 9] = [
        Self::OrganizationCreated,
        Self::OrganizationRenamed,
        Self::OrganizationDeleted,
        Self::OrganizationMoved,
        Self::AdminEmailChanged,
        Self::AdminPasswordChanged,
        Self::SessionRevoked,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
    ];

    /// The dotted name used in the API, in deliveries and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganizationCreated => "organization.created",
            Self::OrganizationRenamed => "organization.renamed",
            Self::OrganizationDeleted => "organization.deleted",
            Self::OrganizationMoved => "organization.moved",
            Self::AdminEmailChanged => "admin.email_changed",
            Self::AdminPasswordChanged => "admin.password_changed",
            Self::SessionRevoked => "session.revoked",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRevoked => "api_key.revoked",
        }
    }

    fn bit(self) -> u16 {
        1 << Self::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a list of event types was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventFilterError {
    /// No event type was given.
    #[error("must name at least one event type, or \"*\" for all")]
    Empty,
    /// A name is not an event type.
    #[error("unknown event type {0:?}")]
    Unknown(String),
}

impl FromStr for EventType {
    type Err = EventFilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| EventFilterError::Unknown(s.to_owned()))
    }
}

/// The event types an endpoint receives: all of them (`["*"]`, including types added
/// later), or a non-empty set.
///
/// ```
/// use domain::{EventFilter, EventType};
/// let some = EventFilter::parse(["organization.renamed", "organization.deleted"]).unwrap();
/// assert!(some.matches(EventType::OrganizationRenamed) && !some.matches(EventType::SessionRevoked));
/// assert!(EventFilter::parse(["*"]).unwrap().matches(EventType::SessionRevoked));
/// assert!(EventFilter::parse(Vec::<&str>::new()).is_err());
/// assert!(EventFilter::parse(["organization.exploded"]).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event type.
    All,
    /// These event types (a bit set).
    Only(u16),
}

impl EventFilter {
    /// Parses event type names; `*` means all of them.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, EventFilterError> {
        let mut bits = 0;
        for name in names {
            if name == "*" {
                return Ok(Self::All);
            }
            bits |= name.parse::<EventType>()?.bit();
        }
        if bits == 0 {
            return Err(EventFilterError::Empty);
        }
        Ok(Self::Only(bits))
    }

    /// Whether an event of this type is sent to the endpoint.
    pub fn matches(self, event: EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(bits) => bits & event.bit() != 0,
        }
    }

    /// The names, as the API shows them: `["*"]` or the types in [`EventType::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            Self::All => vec!["*"],
            Self::Only(_) => EventType::ALL.into_iter().filter(|t| self.matches(*t)).map(EventType::as_str).collect(),
        }
    }
}

/// Why an endpoint's URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    /// Not an absolute URL.
    #[error("must be an absolute http or https URL")]
    Malformed,
    /// Longer than [`MAX_WEBHOOK_URL_CHARS`].
    #[error("must be at most 2048 characters")]
    TooLong,
    /// `http` where `https` is required, or another scheme.
    #[error("must use https")]
    NotHttps,
    /// A user name or password in the URL: credentials belong in the signature.
    #[error("must not contain a user name or password")]
    Credentials,
    /// A fragment, which is never sent.
    #[error("must not contain a fragment")]
    Fragment,
    /// A loopback, link-local, private or otherwise internal address or name.
    #[error("must not point at a loopback, link-local, private or internal address")]
    InternalAddress,
}

/// Where deliveries may go, as the deployment allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Whether plain `http` is refused (in production).
    pub require_https: bool,
    /// Whether loopback, link-local and private addresses are allowed
    /// (`ORGSVC_WEBHOOKS_ALLOW_PRIVATE`; off by default, against server-side request forgery).
    pub allow_private: bool,
}

impl Default for EndpointPolicy {
    /// The production policy: https only, public addresses only.
    fn default() -> Self {
        Self { require_https: true, allow_private: false }
    }
}

impl EndpointPolicy {
    /// Whether a delivery may connect to `ip`: any public address, and internal ones only
    /// where the policy allows them. Applied to the URL's literal address when the endpoint
    /// is registered, and to every address its name resolves to when a delivery is made
    /// (a name may be made to resolve to an internal address later: DNS rebinding).
    ///
    /// ```
    /// use domain::EndpointPolicy;
    /// let strict = EndpointPolicy { require_https: true, allow_private: false };
    /// assert!(strict.allows_address("93.184.216.34".parse().unwrap()));
    /// for internal in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1", "::ffff:192.168.0.1"] {
    ///     assert!(!strict.allows_address(internal.parse().unwrap()), "{internal}");
    /// }
    /// ```
    pub fn allows_address(self, ip: IpAddr) -> bool {
        self.allow_private || !is_internal(ip)
    }
}

/// Whether an address is one a server-side request must never reach unless allowed:
/// unspecified, loopback, private (RFC 1918, unique local), link-local (cloud metadata
/// services live there), shared (CGNAT), benchmarking, documentation, reserved, broadcast
/// and multicast ranges, in IPv4 and IPv6, IPv4-mapped and NAT64 forms included.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) embeds an IPv4 address in the last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_internal_v4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d (deprecated)
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // shared address space (CGNAT) 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved
}

/// An endpoint's URL: absolute, `https` where the policy requires it, without credentials
/// or fragment, and not naming an internal address (a literal one, or `localhost`).
/// Names are checked again at each delivery, where they are resolved.
///
/// ```
/// use domain::{EndpointPolicy, WebhookUrl};
/// let production = EndpointPolicy { require_https: true, allow_private: false };
/// assert!(WebhookUrl::parse("https://hooks.example.com/orgsvc", production).is_ok());
/// assert!(WebhookUrl::parse("http://hooks.example.com/", production).is_err());
/// assert!(WebhookUrl::parse("https://127.0.0.1/", production).is_err());
/// assert!(WebhookUrl::parse("https://localhost./", production).is_err());
/// assert!(WebhookUrl::parse("https://user:pw@hooks.example.com/", production).is_err());
/// let tests = EndpointPolicy { require_https: false, allow_private: true };
/// assert!(WebhookUrl::parse("http://127.0.0.1:8081/hook", tests).is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// Parses a URL under `policy`.
    pub fn parse(text: &str, policy: EndpointPolicy) -> Result<Self, WebhookUrlError> {
        if text.chars().count() > MAX_WEBHOOK_URL_CHARS {
            return Err(WebhookUrlError::TooLong);
        }
        let url = url::Url::parse(text.trim()).map_err(|_| WebhookUrlError::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if !policy.require_https => {}
            "http" => return Err(WebhookUrlError::NotHttps),
            _ => return Err(WebhookUrlError::Malformed),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookUrlError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(WebhookUrlError::Fragment);
        }
        let internal = match url.host() {
            None => return Err(WebhookUrlError::Malformed),
            Some(url::Host::Ipv4(ip)) => !policy.allows_address(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => !policy.allows_address(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                !policy.allow_private && (name == "localhost" || name.ends_with(".localhost"))
            }
        };
        if internal {
            return Err(WebhookUrlError::InternalAddress);
        }
        Ok(Self(url))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The address written in the URL, if its host is an address rather than a name:
    /// such a host is never resolved, so it is checked on its own at delivery time.
    pub fn ip_address(&self) -> Option<IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        }
    }

    /// The host name, if the URL names one rather than an address: what a delivery
    /// resolves and checks with [`EndpointPolicy::allows_address`].
    pub fn domain(&self) -> Option<&str> {
        self.0.domain()
    }
}

/// An endpoint's signing secret: `whsec_` and the base64 of [`WEBHOOK_SECRET_BYTES`] random
/// bytes. Shown once when the endpoint is created or its secret rotated; the service keeps
/// it (it must sign with it) but never shows or logs it again.
pub struct WebhookSecret(SecretString);

/// The text is not a signing secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a webhook signing secret (whsec_ and base64)")]
pub struct WebhookSecretError;

impl WebhookSecret {
    /// The secret made of these random bytes (from the caller's random source).
    pub fn from_entropy(bytes: [u8; WEBHOOK_SECRET_BYTES]) -> Self {
        Self(SecretString::from(format!("{WEBHOOK_SECRET_PREFIX}{}", STANDARD.encode(bytes))))
    }

    /// A stored secret, read back.
    pub fn parse(text: &str) -> Result<Self, WebhookSecretError> {
        let key = text.strip_prefix(WEBHOOK_SECRET_PREFIX).ok_or(WebhookSecretError)?;
        let bytes = STANDARD.decode(key).map_err(|_| WebhookSecretError)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(WebhookSecretError);
        }
        Ok(Self(SecretString::from(text.to_owned())))
    }

    /// The secret, to show once or to store.
    pub fn expose(&self) -> &SecretString {
        &self.0
    }

    fn key(&self) -> Vec<u8> {
        let encoded = self.0.expose_secret().trim_start_matches(WEBHOOK_SECRET_PREFIX);
        // Built by `from_entropy` or checked by `parse`: always valid base64.
        STANDARD.decode(encoded).unwrap_or_default()
    }

    /// The `webhook-signature` header of a delivery: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    ///
    /// ```
    /// use domain::WebhookSecret;
    /// // The example of the Standard Webhooks specification.
    /// let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// let body = br#"{"test": 2432232314}"#;
    /// assert_eq!(
    ///     secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
    ///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    /// );
    /// ```
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes()))
    }

    /// Whether a `webhook-signature` header (space-separated `v1,` signatures) holds a
    /// valid signature of this delivery, made within [`SIGNATURE_TOLERANCE`] of `now`: what
    /// a receiver checks, compared in constant time.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str, now: DateTime<Utc>) -> bool {
        let tolerance = i64::try_from(SIGNATURE_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
        if (now.timestamp() - timestamp).abs() > tolerance {
            return false;
        }
        header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|signature| {
            STANDARD.decode(signature).is_ok_and(|bytes| self.mac(id, timestamp, body).verify_slice(&bytes).is_ok())
        })
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key()).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// When failed deliveries are tried again: exponential backoff from `base` (doubling each
/// attempt, at most `max_delay`), each delay drawn with jitter between half and all of it,
/// until `give_up_after` has passed since the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay (`ORGSVC_WEBHOOKS_RETRY_BASE_MS`).
    pub base: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// How long after the first attempt a delivery is given up as failed.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    /// About a day of attempts: 5 s, 10 s, 20 s, ... up to 2 hours apart.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(2 * 3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// When to try again after failed attempt number `attempt` (1 for the first), made at
    /// `now`, of a delivery first attempted at `first`; `None` when it is given up.
    /// `jitter` is a random number in `[0, 1)` from the caller, so that receivers that come
    /// back are not hit by every delivery at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chrono::Utc;
    /// use domain::RetryPolicy;
    /// let policy = RetryPolicy { base: Duration::from_millis(100), ..RetryPolicy::default() };
    /// let now = Utc::now();
    /// let next = policy.next_attempt(3, now, now, 0.0).unwrap();
    /// assert_eq!(next - now, chrono::Duration::milliseconds(200), "half of 100 ms doubled twice");
    /// ```
    pub fn next_attempt(
        &self,
        attempt: u32,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let doubled = self.base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(31)));
        let delay = doubled.min(self.max_delay);
        let jittered = delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        let next = now + chrono::Duration::from_std(jittered).ok()?;
        let deadline = first + chrono::Duration::from_std(self.give_up_after).ok()?;
        (next <= deadline).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().expect("ip")), "{internal} is internal");
        }
        for public in
            ["8.8.8.8", "93.184.216.34", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
        {
            assert!(!is_internal(public.parse().expect("ip")), "{public} is public");
        }
    }

    #[test]
    fn urls_follow_the_policy() {
        let strict = EndpointPolicy { require_https: true, allow_private: false };
        for (url, error) in [
            ("not a url", WebhookUrlError::Malformed),
            ("ftp://hooks.example.com/", WebhookUrlError::Malformed),
            ("http://hooks.example.com/", WebhookUrlError::NotHttps),
            ("https://a:b@hooks.example.com/", WebhookUrlError::Credentials),
            ("https://hooks.example.com/#x", WebhookUrlError::Fragment),
            ("https://[::1]/", WebhookUrlError::InternalAddress),
            ("https://169.254.169.254/latest/meta-data", WebhookUrlError::InternalAddress),
            ("https://0x7f.1/", WebhookUrlError::InternalAddress),
            ("https://api.localhost/", WebhookUrlError::InternalAddress),
        ] {
            assert_eq!(WebhookUrl::parse(url, strict), Err(error), "{url}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_WEBHOOK_URL_CHARS));
        assert_eq!(WebhookUrl::parse(&long, strict), Err(WebhookUrlError::TooLong));
        let url = WebhookUrl::parse("https://Hooks.Example.com/in", strict).expect("a public name");
        assert_eq!(url.domain(), Some("hooks.example.com"));
    }

    #[test]
    fn signatures_verify_only_unchanged_and_recent_deliveries() {
        let secret = WebhookSecret::from_entropy([3; WEBHOOK_SECRET_BYTES]);
        assert!(WebhookSecret::parse(secret.expose().expose_secret()).is_ok());
        let now = Utc::now();
        let signature = secret.sign("msg_1", now.timestamp(), b"{}");
        assert!(secret.verify("msg_1", now.timestamp(), b"{}", &signature, now));
        assert!(secret.verify("msg_1", now.timestamp(), b"{}", &format!("v1,bm90 {signature}"), now), "one of several");
        assert!(!secret.verify("msg_2", now.timestamp(), b"{}", &signature, now));
        assert!(!secret.verify("msg_1", now.timestamp(), b"{ }", &signature, now));
        let late = now + chrono::Duration::minutes(6);
        assert!(!secret.verify("msg_1", now.timestamp(), b"{}", &signature, late), "a replay");
        let other = WebhookSecret::from_entropy([4; WEBHOOK_SECRET_BYTES]);
        assert!(!other.verify("msg_1", now.timestamp(), b"{}", &signature, now));
        assert!(format!("{secret:?}").contains("REDACTED"));
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(WebhookSecret::parse("sk_AAAA").is_err());
    }

    #[test]
    fn retries_back_off_with_jitter_for_about_a_day() {
        let policy = RetryPolicy::default();
        let first = Utc::now();
        let (mut now, mut attempt) = (first, 1);
        while let Some(next) = policy.next_attempt(attempt, first, now, 0.999) {
            let delay = next - now;
            assert!(delay <= chrono::Duration::hours(2), "{delay}");
            now = next;
            attempt += 1;
        }
        assert!(now - first > chrono::Duration::hours(21), "tried for about a day: {}", now - first);
        assert!((15..=25).contains(&attempt), "{attempt} attempts");
        // Jitter spreads one attempt's delay over half to all of it.
        let low = policy.next_attempt(2, first, first, 0.0).expect("next") - first;
        let high = policy.next_attempt(2, first, first, 0.999_999).expect("next") - first;
        assert_eq!(low, chrono::Duration::seconds(5));
        assert!(high > chrono::Duration::milliseconds(9_990) && high <= chrono::Duration::seconds(10));
    }
}
