//! What a proxy changes in the heads it passes on: hop-by-hop fields out
//! (RFC 9110, section 7.6.1), the `X-Forwarded-*` fields in.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};
use pipehttp::{PeerInfo, Transport};

/// Fields that describe one connection, never the message: removed in both
/// directions, with every field the `Connection` header names. RFC 9110
/// lists Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding
/// and Upgrade; the Proxy-Authenticate/-Authorization pair is meant for a
/// proxy that authenticates, which this one does not, so credentials for
/// it never travel on to the target.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether an HTTP/1.1 request asks to switch protocols (WebSocket,
/// Docker's `Upgrade: tcp`): an `Upgrade` field and the `upgrade` option
/// in `Connection`. HTTP/2 has no such switch.
pub(crate) fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_options(req.headers()).any(|o| o.eq_ignore_ascii_case("upgrade"))
}

/// The options a `Connection` header lists, over all its lines.
pub(crate) fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
}

/// Removes the hop-by-hop fields. With `upgrade`, the switch itself is
/// kept (`Upgrade`, and `Connection: upgrade` alone), since it has to reach
/// the other side for the switch to happen there too. A `TE` that accepts
/// trailers is passed on as `TE: trailers`, which gRPC needs end to end.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most heads hold none of them (nor `Connection`, which names the
    // others): one pass over the names tells, where removing each would
    // hash it. This runs twice for every request.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = connection_options(headers)
        .filter_map(|o| HeaderName::from_bytes(o.as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().unwrap_or("").trim() == "trailers");
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(value) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, value);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// How `X-Forwarded-For` names a client: by its IP address over TCP.
/// Pipes and Unix sockets have no address: their clients are `pipe:` and
/// `unix:`, as nginx names a Unix socket client `unix:`.
pub(crate) fn forwarded_client(peer: Option<&PeerInfo>) -> Cow<'static, str> {
    match peer.map(|p| (p.transport, p.addr)) {
        Some((Transport::Tcp, Some(addr))) => Cow::Owned(addr.ip().to_string()),
        Some((Transport::Unix, _)) => Cow::Borrowed("unix:"),
        Some((Transport::Pipe, _)) => Cow::Borrowed("pipe:"),
        _ => Cow::Borrowed("unknown"),
    }
}

/// Adds `X-Forwarded-For` (appended to any the client sent, as a chain of
/// proxies does), and sets `X-Forwarded-Proto` and `X-Forwarded-Host`,
/// replacing what the client claimed.
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: Cow<'static, str>,
    proto: Option<&'static str>,
    host: Option<HeaderValue>,
) {
    let earlier: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    // Made without a copy where possible: this runs for every request.
    let value = match (earlier.is_empty(), client) {
        (true, Cow::Borrowed(name)) => Ok(HeaderValue::from_static(name)),
        (true, Cow::Owned(ip)) => HeaderValue::from_maybe_shared(Bytes::from(ip)),
        (false, client) => HeaderValue::from_str(&format!("{}, {client}", earlier.join(", "))),
    };
    if let Ok(value) = value {
        headers.insert(X_FORWARDED_FOR, value);
    }
    match proto {
        Some(proto) => {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        None => {
            headers.remove(X_FORWARDED_PROTO);
        }
    }
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eDp5"),
            ("transfer-encoding", "chunked"),
            ("te", "deflate"),
            ("upgrade", "websocket"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn an_upgrade_keeps_the_switch_and_te_trailers_stays() {
        let mut h = headers(&[
            ("connection", "Upgrade, x-secret"),
            ("upgrade", "tcp"),
            ("x-secret", "1"),
            ("te", "trailers;q=1, deflate"),
        ]);
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "tcp");
        assert_eq!(h["te"], "trailers");
        assert!(!h.contains_key("x-secret"));
    }

    #[test]
    fn forwarded_for_appends_to_the_chain_and_proto_and_host_are_replaced() {
        let mut h = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "gopher"),
        ]);
        add_forwarded(&mut h, Cow::Borrowed("pipe:"), Some("http"), None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, pipe:");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("x-forwarded-host"));
        let mut h = HeaderMap::new();
        let host = Some(HeaderValue::from_static("example.com"));
        add_forwarded(&mut h, Cow::Owned("::1".to_owned()), None, host);
        assert_eq!(h["x-forwarded-for"], "::1");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert!(!h.contains_key("x-forwarded-proto"));
    }

    #[test]
    fn only_http1_requests_with_both_fields_upgrade() {
        let req = |version, connection: &'static str| {
            Request::builder()
                .version(version)
                .header("connection", connection)
                .header("upgrade", "websocket")
                .body(())
                .unwrap()
        };
        assert!(wants_upgrade(&req(Version::HTTP_11, "keep-alive, Upgrade")));
        assert!(!wants_upgrade(&req(Version::HTTP_11, "keep-alive")));
        assert!(!wants_upgrade(&req(Version::HTTP_2, "upgrade")));
    }
}
