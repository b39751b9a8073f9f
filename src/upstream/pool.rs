//! The connections to one system of record: hyper's pooled client over
//! rustls, with the system's connect timeout, extra CA and client
//! certificate. Every exchange with the system goes through here, the
//! stack's (`client`), the OAuth2 token fetch's (`auth`) and the probe's,
//! so each reaches the system the same way.
//!
//! It sends each request once, as given: no redirect followed and no
//! retry, since every attempt must pass the system's limit, breaker and
//! retry budget (`client`), and a hop elsewhere would not. A system the
//! environment's `HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY` names a proxy
//! for (and `NO_PROXY` does not exempt) is reached through that proxy, by
//! a `CONNECT` tunnel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::SystemSettings;
use crate::error::Error;

/// A request to a system: its body is sent as one piece.
pub type Outgoing = Request<Full<Bytes>>;

/// One system's pooled connections. Cloning shares them.
#[derive(Clone)]
pub struct Pool {
    client: Client<HttpsConnector<Connect>, Full<Bytes>>,
}

/// What the system answered, read in full.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why an exchange produced no answer. The text is for the logs (it may
/// name addresses and certificates), not for clients.
#[derive(Debug)]
pub enum Failed {
    /// No answer, body included, within the timeout.
    TimedOut,
    /// No connection, or the request could not be sent.
    Unreachable(String),
    /// The answer's body broke off.
    BrokeOff(String),
}

impl Pool {
    /// The system's pool, with its TLS settings (read now, so a missing
    /// file stops the start).
    pub fn new(settings: &SystemSettings) -> Result<Pool, Error> {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let connect = Connect {
            direct: connector,
            proxies: Arc::new(Matcher::from_env()),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls(settings)?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connect);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Pool { client })
    }

    /// Sends `request` and reads the whole answer, both within `timeout`.
    pub async fn exchange(
        &self,
        mut request: Outgoing,
        timeout: Duration,
    ) -> Result<Answer, Failed> {
        request
            .headers_mut()
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failed::Unreachable(root_cause(&e)))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| Failed::BrokeOff(root_cause(&e)))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(Failed::TimedOut))
    }
}

/// How a new connection to a system is made: straight to it, or through
/// the proxy the environment names for it, by a `CONNECT` tunnel (TLS to
/// the system then runs inside it). Only new connections pay for the
/// choice; pooled ones are reused.
#[derive(Clone)]
struct Connect {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
}

type Connecting<T> =
    Pin<Box<dyn Future<Output = Result<T, Box<dyn std::error::Error + Send + Sync>>> + Send>>;

impl tower::Service<Uri> for Connect {
    type Response = <HttpConnector as tower::Service<Uri>>::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, system: Uri) -> Self::Future {
        let mut direct = self.direct.clone();
        let Some(proxy) = self.proxies.intercept(&system) else {
            return Box::pin(async move { Ok(direct.call(system).await?) });
        };
        if proxy.uri().scheme_str() != Some("http") {
            let why = format!(
                "the proxy {} is not an http:// one; only those are supported",
                crate::config::redact(&proxy.uri().to_string())
            );
            return Box::pin(async move { Err(why.into()) });
        }
        let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        // The tunnel's port: the URL's, or its scheme's (the tunnel itself
        // would take 443 for both).
        let port = system
            .port_u16()
            .unwrap_or(if system.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let target = format!(
            "{}://{}:{port}/",
            system.scheme_str().unwrap_or("https"),
            system.host().unwrap_or("")
        );
        Box::pin(async move {
            let target: Uri = target.parse()?;
            Ok(tunnel.call(target).await?)
        })
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::TimedOut => f.write_str("no answer in time"),
            Failed::Unreachable(why) => write!(f, "no answer: {why}"),
            Failed::BrokeOff(why) => write!(f, "answer broken off: {why}"),
        }
    }
}

/// Longest URL sent upstream; common HTTP servers refuse longer request
/// lines (and http's own limit is 64 KiB).
const MAX_URL: usize = 16 * 1024;

/// A request to `url` (already percent-encoded), or why there cannot be
/// one: a URL too long to send, or one that does not parse.
pub fn request(method: Method, url: &str, body: Bytes) -> Result<Outgoing, String> {
    if url.len() > MAX_URL {
        return Err(format!("a URL of {} bytes is too long to send", url.len()));
    }
    let uri = http::Uri::try_from(url).map_err(|e| format!("{e}: {url}"))?;
    let mut request = Outgoing::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    Ok(request)
}

/// `url` with `query` form-encoded after it (after its own query, if it
/// has one).
pub fn with_query<K: AsRef<str>, V: AsRef<str>>(mut url: String, query: &[(K, V)]) -> String {
    if query.is_empty() {
        return url;
    }
    url.push(if url.contains('?') { '&' } else { '?' });
    let start = url.len();
    let mut encoded = form_urlencoded::Serializer::for_suffix(url, start);
    for (k, v) in query {
        encoded.append_pair(k.as_ref(), v.as_ref());
    }
    encoded.finish()
}

/// The system's TLS: the platform's roots plus its `ca_file`, and its
/// `client_identity` when set.
fn tls(settings: &SystemSettings) -> Result<rustls::ClientConfig, Error> {
    let system = &settings.name;
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::internal(format!(
                "systems.{system}.tls.{key}: cannot read {}: {e}",
                path.display()
            ))
        })
    };
    let bad =
        |key: &str, why: String| Error::internal(format!("systems.{system}.tls.{key}: {why}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = Vec::new();
    if let Some(path) = &settings.tls.ca_file {
        let pem = read("ca_file", path)?;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            roots.push(certificate.map_err(|e| bad("ca_file", e.to_string()))?);
        }
        if roots.is_empty() {
            return Err(bad("ca_file", "holds no PEM certificate".into()));
        }
    }
    let verifier = if roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
    }
    .map_err(|e| Error::internal(format!("the TLS roots of {system}: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("the TLS of {system}: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &settings.tls.client_identity {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read("client_identity", path)?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("client_identity", e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| bad("client_identity", format!("no private key: {e}")))?;
            if chain.is_empty() {
                return Err(bad("client_identity", "holds no certificate".into()));
            }
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client_identity", e.to_string()))?
        }
    };
    // ALPN (h2, then HTTP/1.1) is the connector's to set.
    Ok(config)
}

/// The innermost cause: what actually went wrong (a refused connection,
/// an unknown certificate), not the layers that passed it on.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::with_query;

    #[test]
    fn a_query_is_form_encoded_after_the_url_s_own() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(with_query("http://h/p".into(), &none), "http://h/p");
        assert_eq!(
            with_query("http://h/p".into(), &[("skus", "a,b c"), ("q", "é&=")]),
            "http://h/p?skus=a%2Cb+c&q=%C3%A9%26%3D"
        );
        assert_eq!(
            with_query("http://h/p?page=2".into(), &[("limit", "50")]),
            "http://h/p?page=2&limit=50"
        );
    }
}
