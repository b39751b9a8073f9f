//! Inbound per-client limits on `/graphql`: a client is its API key (the
//! configured header) when it sends one, else its IP. Over the limit it
//! gets HTTP 429 with `Retry-After` and a GraphQL `RATE_LIMITED` error,
//! and other clients are served as before.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::ClientLimit;
use crate::error::Kind;

/// Who a request counts against. API keys are kept as a digest: bounded in
/// size, and never held in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Ip(IpAddr),
    ApiKey([u8; 16]),
}

struct Active {
    header: axum::http::HeaderName,
    limiter: DefaultKeyedRateLimiter<Client>,
}

/// The limits, swappable on reload.
pub struct ClientLimits {
    active: ArcSwap<Option<Active>>,
}

impl ClientLimits {
    pub fn new(config: &ClientLimit) -> Arc<ClientLimits> {
        let limits = Arc::new(ClientLimits {
            active: ArcSwap::from_pointee(None),
        });
        limits.apply(config);
        limits
    }

    /// Applies (new) settings. Counting starts afresh.
    pub fn apply(&self, config: &ClientLimit) {
        let active = config.enabled.then(|| {
            let rps = NonZeroU32::new(config.rps).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
            Active {
                header: axum::http::HeaderName::from_bytes(config.api_key_header.as_bytes())
                    .unwrap_or(axum::http::HeaderName::from_static("x-api-key")),
                limiter: RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst)),
            }
        });
        self.active.store(Arc::new(active));
    }

    /// Forgets clients that have not been seen for a while, so the table
    /// does not grow with every IP that ever called.
    pub fn forget_idle(&self) {
        if let Some(active) = self.active.load().as_ref() {
            active.limiter.retain_recent();
            active.limiter.shrink_to_fit();
        }
    }
}

/// The middleware.
pub async fn limit(
    State(limits): State<Arc<ClientLimits>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let active = limits.active.load();
    let Some(active) = active.as_ref() else {
        return next.run(request).await;
    };
    let client = match request.headers().get(&active.header) {
        Some(key) => {
            let digest = Sha256::digest(key.as_bytes());
            let mut short = [0u8; 16];
            short.copy_from_slice(&digest[..16]);
            Client::ApiKey(short)
        }
        None => Client::Ip(peer.ip()),
    };
    match active.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => too_many(not_until.wait_time_from(DefaultClock::default().now())),
    }
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let body = json!({ "errors": [{
        "message": format!("this client is over its request limit; retry in {seconds} s"),
        "extensions": { "code": Kind::RateLimited.code() },
    }]});
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}
