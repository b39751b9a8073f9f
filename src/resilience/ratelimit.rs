//! Upstream rate limits with priorities.
//!
//! Each system has one limit (`rps`, `burst`) split in two buckets: a
//! share reserved for checkout, which nothing else may take, and the
//! general bucket everyone (checkout included) draws from. Priorities
//! differ in how long they may wait for a permit: checkout longest, then
//! event refreshes, then browse misses (briefly: a browse miss that cannot
//! get a permit is served stale or fails fast with `RATE_LIMITED`), and
//! reconciliation not at all. Nothing queues without bound.
//!
//! With Redis, the buckets live there ([`SharedBuckets`], which the Redis
//! link implements with GCRA in a Lua script), so all replicas together
//! stay within one limit; when Redis is unreachable each
//! replica falls back to its local share, the limit divided by the
//! configured replica count.
//!
//! governor cannot change a quota in place, so a limiter is rebuilt when an
//! operator changes the limit and swapped in whole (see `Limits`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter as Governor};

use crate::config::SystemLimit;
use crate::vocab::Priority;

/// A bucket's rate and burst.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate {
    per_second: f64,
    burst: u32,
}

/// One bucket, local and (with Redis) shared.
struct Bucket {
    name: &'static str,
    rate: Rate,
    /// The whole bucket, used without Redis.
    local: DefaultDirectRateLimiter,
    /// This replica's share, used when Redis is configured but unreachable.
    fallback: DefaultDirectRateLimiter,
}

impl Bucket {
    fn new(name: &'static str, rate: Rate, replicas: u32) -> Bucket {
        let share = Rate {
            per_second: rate.per_second / f64::from(replicas.max(1)),
            burst: rate.burst.div_ceil(replicas.max(1)).max(1),
        };
        Bucket {
            name,
            rate,
            local: governor_for(rate),
            fallback: governor_for(share),
        }
    }
}

fn governor_for(rate: Rate) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate.per_second.max(0.001));
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    Governor::direct(quota)
}

/// Where buckets every replica shares live (the Redis link provides them),
/// so all replicas together stay within one limit.
pub trait SharedBuckets: Send + Sync {
    /// Takes a permit from `system`'s bucket `bucket` (GCRA: one permit per
    /// `interval_ms`, up to `burst` at once). `Some(0)`: taken; `Some(ms)`:
    /// one is due in `ms`; `None`: the store cannot be used now.
    fn take<'a>(
        &'a self,
        system: &'a str,
        bucket: &'a str,
        interval_ms: f64,
        burst: u32,
    ) -> BoxFuture<'a, Option<u64>>;
}

/// Refused: no permit within the wait this priority allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// When a permit is expected.
    pub retry_in: Duration,
}

/// One system's limiter.
pub struct Limiter {
    system: &'static str,
    settings: SystemLimit,
    reserved: Option<Bucket>,
    general: Bucket,
    shared: Option<Arc<dyn SharedBuckets>>,
}

impl Limiter {
    pub fn new(
        system: &'static str,
        settings: SystemLimit,
        shared: Option<Arc<dyn SharedBuckets>>,
        replicas: u32,
    ) -> Limiter {
        let rps = f64::from(settings.rps);
        let reserve = settings.checkout_reserve;
        let reserved_burst = (f64::from(settings.burst) * reserve).ceil() as u32;
        let reserved = (reserve > 0.0).then(|| {
            Bucket::new(
                "checkout",
                Rate {
                    per_second: rps * reserve,
                    burst: reserved_burst.max(1),
                },
                replicas,
            )
        });
        let general = Bucket::new(
            "general",
            Rate {
                per_second: rps * (1.0 - reserve),
                burst: settings.burst.saturating_sub(reserved_burst).max(1),
            },
            replicas,
        );
        Limiter {
            system,
            settings,
            reserved,
            general,
            shared,
        }
    }

    pub fn settings(&self) -> SystemLimit {
        self.settings
    }

    /// Waits for a permit as long as `priority` may; `Limited` when none.
    pub async fn acquire(&self, priority: Priority) -> Result<(), Limited> {
        let max_wait = match priority {
            Priority::Checkout => Duration::from_secs(1),
            Priority::EventRefresh => Duration::from_millis(500),
            Priority::Browse => self.settings.browse_wait,
            Priority::Reconcile => Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let mut soonest = Duration::MAX;
            for bucket in self.buckets(priority) {
                match self.take(bucket).await {
                    None => return Ok(()),
                    Some(wait) => soonest = soonest.min(wait),
                }
            }
            let now = tokio::time::Instant::now();
            if now + soonest > deadline {
                metrics::counter!(crate::telemetry::RATELIMIT_REJECTED, "upstream" => self.system, "priority" => priority.name())
                    .increment(1);
                return Err(Limited { retry_in: soonest });
            }
            tokio::time::sleep(soonest).await;
        }
    }

    /// Checkout first spends its reserve, then joins everyone else.
    fn buckets(&self, priority: Priority) -> impl Iterator<Item = &Bucket> {
        let reserved = match priority {
            Priority::Checkout => self.reserved.as_ref(),
            _ => None,
        };
        reserved.into_iter().chain(std::iter::once(&self.general))
    }

    /// `None` when a permit was taken, else how long until one is due.
    async fn take(&self, bucket: &Bucket) -> Option<Duration> {
        if let Some(shared) = &self.shared {
            let interval_ms = 1000.0 / bucket.rate.per_second.max(0.001);
            return match shared
                .take(self.system, bucket.name, interval_ms, bucket.rate.burst)
                .await
            {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                // The store is away: this replica's share, locally.
                None => local(&bucket.fallback),
            };
        }
        local(&bucket.local)
    }
}

fn local(limiter: &DefaultDirectRateLimiter) -> Option<Duration> {
    match limiter.check() {
        Ok(()) => None,
        Err(not_until) => Some(not_until.wait_time_from(DefaultClock::default().now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rps: u32, burst: u32, reserve: f64) -> SystemLimit {
        SystemLimit {
            rps,
            burst,
            checkout_reserve: reserve,
            browse_wait: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn browse_cannot_use_the_checkout_reserve() {
        let limiter = Limiter::new("erp", settings(1, 10, 0.5), None, 1);
        let mut browse = 0;
        while limiter.acquire(Priority::Browse).await.is_ok() {
            browse += 1;
        }
        assert_eq!(browse, 5, "browse gets the general burst only");
        for _ in 0..5 {
            assert!(
                limiter.acquire(Priority::Checkout).await.is_ok(),
                "checkout still gets through"
            );
        }
        let refused = limiter.acquire(Priority::Reconcile).await.unwrap_err();
        assert!(refused.retry_in > Duration::ZERO);
    }
}
