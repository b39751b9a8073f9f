//! Inbound per-client limits on `/graphql`: a client is its API key (the
//! configured header) when it sends one, else its IP. Over the limit it
//! gets HTTP 429 with `Retry-After` and a GraphQL `RATE_LIMITED` error,
//! and other clients are served as before. `verifyCheckout` has a limit
//! of its own per client, since each one spends an ERP quote from
//! checkout's reserved capacity.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use super::reply::{Media, problem};
use crate::config::ClientLimit;
use crate::error::{Error, Kind};

/// Who a request counts against. API keys are kept as a digest: bounded in
/// size, and never held in the clear. Set as a request extension for the
/// handler when limits are on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Ip(IpAddr),
    ApiKey([u8; 16]),
}

struct Active {
    header: axum::http::HeaderName,
    limiter: DefaultKeyedRateLimiter<Client>,
    verifications: DefaultKeyedRateLimiter<Client>,
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
        let quota = |rps: u32, burst: u32| {
            let rps = NonZeroU32::new(rps).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Quota::per_second(rps).allow_burst(burst)
        };
        let active = config.enabled.then(|| Active {
            header: axum::http::HeaderName::from_bytes(config.api_key_header.as_bytes())
                .unwrap_or(axum::http::HeaderName::from_static("x-api-key")),
            limiter: RateLimiter::keyed(quota(config.rps, config.burst)),
            verifications: RateLimiter::keyed(quota(config.checkout_rps, config.checkout_burst)),
        });
        self.active.store(Arc::new(active));
    }

    /// Forgets clients that have not been seen for a while, so the table
    /// does not grow with every IP that ever called.
    pub fn forget_idle(&self) {
        if let Some(active) = self.active.load().as_ref() {
            for limiter in [&active.limiter, &active.verifications] {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }

    /// Takes `n` `verifyCheckout` permits for `client`, or says how long
    /// until they would be there.
    pub fn verifications(&self, client: &Client, n: usize) -> Result<(), Duration> {
        let active = self.active.load();
        let Some(active) = active.as_ref() else {
            return Ok(());
        };
        let n = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        match active.verifications.check_key_n(client, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // More at once than the burst: never possible.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }
}

/// The middleware.
pub async fn limit(
    State(limits): State<Arc<ClientLimits>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
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
        Ok(()) => {
            request.extensions_mut().insert(client);
            next.run(request).await
        }
        Err(not_until) => too_many(
            not_until.wait_time_from(DefaultClock::default().now()),
            "this client is over its request limit",
        ),
    }
}

/// 429 with `Retry-After`, as a GraphQL `RATE_LIMITED` request error.
pub(super) fn too_many(wait: Duration, why: &str) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let error = Error::new(Kind::RateLimited, format!("{why}; retry in {seconds} s"));
    let mut response = problem(Media::Json, &error);
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}
