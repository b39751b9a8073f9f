//! The client's address, as the rest of `/graphql` counts it: the peer
//! address, or, when the peer is one of `[server] trusted_proxies`, the
//! address that proxy names in `client_ip_header`. A client that is not a
//! trusted proxy cannot choose its address by sending the header.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::config::Server;
use crate::state::AppState;

/// The request's client address (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Most hops of the header read, from the right: a longer chain is not
/// a path through proxies anyone runs.
const MAX_HOPS: usize = 16;

pub async fn resolve(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let addr = client_ip(peer.ip(), request.headers(), &app.config().server);
    request.extensions_mut().insert(ClientAddr(addr));
    next.run(request).await
}

/// Who `peer` is sending for. From a trusted proxy, the header's list is
/// read from the right (each proxy appends the address it saw), past every
/// trusted proxy: the first address that is not one is the client. The
/// addresses a client wrote into the header itself sit left of that and
/// are never reached. No header, or one that cannot be read: the peer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, server: &Server) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: IpAddr| server.trusted_proxies.iter().any(|r| r.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all(server.client_ip_header.as_str()) {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        hops.extend(text.split(','));
    }
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Some(ip) = address(hop) else {
            break;
        };
        client = ip;
        if !trusted(ip) {
            break;
        }
    }
    client
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(trusted: &[&str]) -> Server {
        Server {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..Server::default()
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let s = server(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.7"]);
        assert_eq!(client_ip(ip("10.1.2.3"), &h, &s), ip("203.0.113.7"));
        // Anyone else sending the header is its peer address.
        assert_eq!(client_ip(ip("198.51.100.1"), &h, &s), ip("198.51.100.1"));
        // No proxies trusted: never read.
        assert_eq!(
            client_ip(ip("10.1.2.3"), &h, &Server::default()),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn a_chain_is_read_from_the_right_past_trusted_proxies() {
        let s = server(&["10.0.0.0/8", "192.168.0.1"]);
        // The client forged the first entry; the edge proxy appended the
        // address it saw, the inner one its own.
        let h = headers(&["1.2.3.4, 203.0.113.7, 10.0.0.5"]);
        assert_eq!(client_ip(ip("192.168.0.1"), &h, &s), ip("203.0.113.7"));
        // The same chain over two header lines.
        let h = headers(&["1.2.3.4", "203.0.113.7:4711", "10.0.0.5"]);
        assert_eq!(client_ip(ip("192.168.0.1"), &h, &s), ip("203.0.113.7"));
        // Garbage stops the walk at the last address read.
        let h = headers(&["203.0.113.7, unknown, 10.0.0.5"]);
        assert_eq!(client_ip(ip("192.168.0.1"), &h, &s), ip("10.0.0.5"));
        // IPv6, bracketed with a port.
        let h = headers(&["[2001:db8::7]:443"]);
        assert_eq!(client_ip(ip("10.0.0.9"), &h, &s), ip("2001:db8::7"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.9"), &HeaderMap::new(), &s),
            ip("10.0.0.9")
        );
    }
}
