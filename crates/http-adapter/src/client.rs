//! Who is calling: the client's address (behind trusted proxies, from `X-Forwarded-For`),
//! and the request id that ties a response, its log lines and its audit events together.

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::http::header::HeaderValue;
use actix_web::{HttpMessage, HttpRequest};
use ports::RequestContext;

/// The header that carries request ids in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest request id accepted from a client; a longer or odd one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A network of proxies whose `X-Forwarded-For` is believed: an address with a prefix
/// length, such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNetwork {
    address: IpAddr,
    prefix: u8,
}

impl FromStr for TrustedNetwork {
    type Err = String;

    /// Parses `ADDRESS` or `ADDRESS/PREFIX`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (address, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?} has a bad prefix"))?,
            None => max,
        };
        Ok(Self { address, prefix })
    }
}

impl std::fmt::Display for TrustedNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl TrustedNetwork {
    /// Whether the address is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 { 0 } else { bits >> (width - prefix) }
        }
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32) == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128) == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_ip(req: &HttpRequest, trusted: &[TrustedNetwork]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    // Walk from the nearest hop outwards; the first untrusted address is the client, as far
    // as anyone we trust can tell. Entries further out could be forged by the client.
    Some(forwarded.into_iter().rev().find(|ip| !is_trusted(*ip)).unwrap_or(peer))
}

pub(crate) fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= MAX_REQUEST_ID_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| text.to_owned())
}

/// The audit context of a request.
pub(crate) fn context(req: &HttpRequest, trusted: &[TrustedNetwork]) -> RequestContext {
    RequestContext {
        ip: client_ip(req, trusted).map(|ip| ip.to_string()),
        request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn networks_parse_and_match() {
        let net: TrustedNetwork = "10.0.0.0/8".parse().expect("network");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        let one: TrustedNetwork = "::1".parse().expect("address");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(!one.contains("::2".parse().expect("ip")));
        let all: TrustedNetwork = "0.0.0.0/0".parse().expect("network");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<TrustedNetwork>().is_err());
        assert!("proxy".parse::<TrustedNetwork>().is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<TrustedNetwork> = vec!["10.0.0.0/8".parse().expect("network")];
        let untrusted_peer = TestRequest::default()
            .peer_addr("192.0.2.9:1234".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "203.0.113.5"))
            .to_http_request();
        assert_eq!(client_ip(&untrusted_peer, &trusted), Some("192.0.2.9".parse().expect("ip")));
        let via_proxies = TestRequest::default()
            .peer_addr("10.0.0.2:1234".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "198.51.100.1, 203.0.113.5, 10.0.0.7"))
            .to_http_request();
        // The client may have forged 198.51.100.1; 203.0.113.5 is what our proxy saw.
        assert_eq!(client_ip(&via_proxies, &trusted), Some("203.0.113.5".parse().expect("ip")));
        assert_eq!(client_ip(&via_proxies, &[]), Some("10.0.0.2".parse().expect("ip")));
    }

    #[test]
    fn request_ids_are_bounded_and_plain() {
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("abc-123")), Some("abc-123".to_owned()));
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("has space")), None);
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        assert_eq!(acceptable_request_id(&HeaderValue::from_str(&long).expect("header")), None);
    }
}
