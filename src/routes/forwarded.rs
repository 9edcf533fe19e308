//! Which address is the client's. Behind a reverse proxy the socket's peer is
//! the proxy; only when that peer is in `TRUSTED_PROXIES` is the one header
//! `TRUSTED_PROXY_HEADER` names believed (README, "Several instances behind a
//! reverse proxy"), and then read from the right, skipping trusted hops:
//! everything left of the first untrusted hop could have been written by the
//! client itself. The other forwarding headers are never read: a proxy that
//! does not set one passes the client's own copy on untouched.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::ProxyHeader;

pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ProxyHeader,
) -> IpAddr {
    // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = match header {
        ProxyHeader::Forwarded => hops(headers, header.name(), forwarded_for),
        ProxyHeader::XForwardedFor | ProxyHeader::XRealIp => {
            hops(headers, header.name(), |s| Some(s.trim()))
        }
    };
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        // An unreadable hop ("unknown", an obfuscated name) ends the trail:
        // the nearest address we could read is the best we know.
        let Some(ip) = hop.as_deref().and_then(parse_node) else {
            return nearest;
        };
        if !is_trusted(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// Every hop of every instance of `name`, in order, as raw node strings.
fn hops(headers: &HeaderMap, name: &str, node: fn(&str) -> Option<&str>) -> Vec<Option<String>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s.split(',').map(|h| node(h).map(str::to_owned)).collect(),
            Err(_) => vec![None],
        })
        .collect()
}

/// The `for=` node of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
    })
}

/// `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| node.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const XFF: ProxyHeader = ProxyHeader::XForwardedFor;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|n| n.parse().unwrap_or_else(|_| panic!("{n}")))
            .collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &nets(&["10.0.0.0/8"]), XFF),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &[], XFF), ip("10.0.0.2"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.7")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &h, &trusted, XFF),
            ip("198.51.100.4")
        );
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.4"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &h, &trusted, XFF),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn the_forwarded_header_is_read_with_ports_quotes_and_ipv6() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8::17]:4711";proto=https"#,
        )]);
        let forwarded = ProxyHeader::Forwarded;
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted, forwarded),
            ip("2001:db8::17")
        );
        let h = headers(&[("forwarded", "for=198.51.100.4:8080;by=10.0.0.1")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted, forwarded),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn unreadable_or_missing_hops_leave_the_nearest_known_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.4, unknown, 10.0.0.7")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted, XFF), ip("10.0.0.7"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted, XFF),
            ip("10.0.0.2")
        );
    }

    /// What nginx forwards with the README's recipe but without clearing
    /// `Forwarded`: the client's own `Forwarded` beside the proxy's
    /// `X-Forwarded-For`. Only the configured header counts.
    #[test]
    fn only_the_configured_header_is_read() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=198.51.100.9"),
            ("x-real-ip", "192.0.2.1"),
        ]);
        let peer = ip("127.0.0.1");
        assert_eq!(client_ip(peer, &h, &trusted, XFF), ip("203.0.113.7"));
        assert_eq!(
            client_ip(peer, &h, &trusted, ProxyHeader::Forwarded),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_ip(peer, &h, &trusted, ProxyHeader::XRealIp),
            ip("192.0.2.1")
        );
        // The configured header missing: the proxy itself is the client.
        let h = headers(&[("forwarded", "for=198.51.100.9")]);
        assert_eq!(client_ip(peer, &h, &trusted, XFF), peer);
    }
}
