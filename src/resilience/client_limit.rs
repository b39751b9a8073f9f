//! Inbound per-client limits: a client is its API key (the configured
//! header) when it sends one, else its IP. Requests and `verifyCheckout`
//! calls (each one an ERP quote from checkout's reserved capacity) are
//! limited separately. The public listener applies them
//! (`http::client_limit`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use crate::config::ClientLimit;

/// Who a request counts against. API keys are kept as a digest: bounded in
/// size, and never held in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Ip(IpAddr),
    ApiKey([u8; 16]),
}

struct Active {
    header: HeaderName,
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
            header: HeaderName::from_bytes(config.api_key_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-api-key")),
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

    /// Whether any client is limited at all.
    pub fn enabled(&self) -> bool {
        self.active.load().is_some()
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

    /// Who a request from `addr` (the client's address: `http::client_addr`)
    /// with `headers` is, when limits are on.
    pub fn identify(&self, headers: &HeaderMap, addr: IpAddr) -> Option<Client> {
        let active = self.active.load();
        let active = active.as_ref().as_ref()?;
        Some(match headers.get(&active.header) {
            Some(key) => {
                let digest = Sha256::digest(key.as_bytes());
                let mut short = [0u8; 16];
                short.copy_from_slice(&digest[..16]);
                Client::ApiKey(short)
            }
            None => Client::Ip(addr),
        })
    }

    /// Takes a request permit for `client`, or says how long until one is
    /// there.
    pub fn request(&self, client: &Client) -> Result<(), Duration> {
        let active = self.active.load();
        let Some(active) = active.as_ref() else {
            return Ok(());
        };
        active
            .limiter
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}
