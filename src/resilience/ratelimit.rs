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
//! With Redis, the buckets live there (GCRA in a Lua script), so all
//! replicas together stay within one limit; when Redis is unreachable each
//! replica falls back to its local share, the limit divided by the
//! configured replica count.
//!
//! governor cannot change a quota in place, so a limiter is rebuilt when an
//! operator changes the limit and swapped in whole (see `Limits`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter as Governor};
use serde::{Deserialize, Serialize};

use crate::shared::Redis;
use crate::upstream::Priority;

/// One system's limit as operators set it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LimitSettings {
    /// Calls per second to the system, all priorities together.
    pub rps: u32,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Fraction (0 to 0.9) of `rps` and `burst` only checkout may use.
    pub checkout_reserve: f64,
    /// Longest a browse miss waits for a permit.
    #[serde(with = "humantime_serde")]
    pub browse_wait: Duration,
}

impl LimitSettings {
    /// What is wrong with these settings, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.rps == 0 {
            Some("rps must be at least 1".into())
        } else if self.burst == 0 {
            Some("burst must be at least 1".into())
        } else if !(0.0..=0.9).contains(&self.checkout_reserve) {
            Some("checkout_reserve must be between 0.0 and 0.9".into())
        } else if self.browse_wait > Duration::from_secs(10) {
            Some("browse_wait must be at most 10s".into())
        } else {
            None
        }
    }
}

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

/// Refused: no permit within the wait this priority allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// When a permit is expected.
    pub retry_in: Duration,
}

/// One system's limiter.
pub struct Limiter {
    system: &'static str,
    settings: LimitSettings,
    reserved: Option<Bucket>,
    general: Bucket,
    shared: Option<Arc<Redis>>,
}

/// GCRA over a theoretical arrival time kept in Redis: the same algorithm
/// governor runs locally, so a replica sees the same limit either way.
/// KEYS[1] the bucket; ARGV[1] ms per permit; ARGV[2] burst.
/// Returns 0 when a permit was taken, else ms until one is due.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat + interval - now
local allowed = interval * burst
if ahead > allowed then
  return math.ceil(ahead - allowed)
end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(ahead) + 1000)
return 0
";

impl Limiter {
    pub fn new(
        system: &'static str,
        settings: LimitSettings,
        shared: Option<Arc<Redis>>,
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

    pub fn settings(&self) -> LimitSettings {
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
        if let Some(redis) = &self.shared {
            let key = redis.key(&["ratelimit", self.system, bucket.name]);
            let interval_ms = 1000.0 / bucket.rate.per_second.max(0.001);
            let burst = bucket.rate.burst;
            let shared = redis
                .run("ratelimit", |mut c| async move {
                    redis::Script::new(GCRA)
                        .key(key)
                        .arg(interval_ms)
                        .arg(burst)
                        .invoke_async::<u64>(&mut c)
                        .await
                })
                .await;
            return match shared {
                Ok(0) => None,
                Ok(ms) => Some(Duration::from_millis(ms)),
                // Redis is away: this replica's share, locally.
                Err(_) => local(&bucket.fallback),
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

    fn settings(rps: u32, burst: u32, reserve: f64) -> LimitSettings {
        LimitSettings {
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

    #[test]
    fn settings_are_checked() {
        assert!(settings(0, 1, 0.1).problem().is_some());
        assert!(settings(1, 1, 0.95).problem().is_some());
        assert!(settings(10, 20, 0.2).problem().is_none());
    }
}
