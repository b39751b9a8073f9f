//! The link to the Redis that replicas share: L2, invalidation broadcast,
//! fill leases, the shared rate-limit buckets (and, later, event dedupe and
//! dead letters) all go through it.
//!
//! Redis is an accelerator, not a dependency: the connection is made lazily
//! (Moat starts with Redis down), every call has a short timeout and goes
//! through a breaker of its own, and a failed call is an `Unavailable` the
//! caller answers by going on without Redis.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use std::sync::LazyLock;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::resilience::breaker::{self, Breaker, Report};
use crate::resilience::ratelimit::SharedBuckets;

/// Redis could not be used for this call; carry on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable;

/// Settings from `[redis]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    /// Prefix of every key and channel, so environments can share a server.
    pub namespace: String,
    /// Longest one Redis call may take.
    pub timeout: Duration,
}

/// Bump when the layout or encoding of anything stored changes, so a new
/// build never reads an old shape.
pub const LAYOUT_VERSION: &str = "v1";

pub struct RedisLink {
    client: redis::Client,
    conn: ConnectionManager,
    breaker: Arc<Breaker>,
    timeout: Duration,
    prefix: String,
}

impl RedisLink {
    /// Prepares the link; fails only for a URL that cannot be right.
    pub fn connect(settings: &Settings) -> Result<Arc<RedisLink>, Error> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| Error::internal(format!("redis.url is not usable: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| Error::internal(format!("cannot set up the Redis connection: {e}")))?;
        let breaker = Breaker::new(
            "redis",
            breaker::Settings {
                failure_rate: 0.5,
                window: Duration::from_secs(10),
                min_calls: 20,
                consecutive_failures: 3,
                cooldown: Duration::from_secs(1),
                probes: 1,
            },
        );
        Ok(Arc::new(RedisLink {
            client,
            conn,
            breaker,
            timeout: settings.timeout,
            prefix: format!("{}:{LAYOUT_VERSION}", settings.namespace),
        }))
    }

    /// A namespaced key or channel: `moat:v1:<parts joined by ':'>`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Runs one command or pipeline with the timeout and the breaker.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Ok(permit) = self.breaker.try_acquire() else {
            return Err(Unavailable);
        };
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(value)) => {
                permit.success();
                Ok(value)
            }
            Ok(Err(e)) => {
                permit.failure();
                tracing::debug!(op, error = %e, "redis call failed");
                Err(Unavailable)
            }
            Err(_) => {
                permit.failure();
                tracing::debug!(op, "redis call timed out");
                Err(Unavailable)
            }
        }
    }

    /// For the pub/sub listener, which needs a connection of its own.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn report(&self) -> Report {
        self.breaker.report()
    }
}

/// GCRA over a theoretical arrival time kept in Redis: the same algorithm
/// governor runs locally, so a replica sees the same limit either way.
/// KEYS[1] the bucket; ARGV[1] ms per permit; ARGV[2] burst.
/// Returns 0 when a permit was taken, else ms until one is due.
/// Hashed once: `Script::new` computes the SHA every time it is called.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
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
",
    )
});

/// The rate limiter's shared buckets, one Redis key each.
impl SharedBuckets for RedisLink {
    fn take<'a>(
        &'a self,
        system: &'a str,
        bucket: &'a str,
        interval_ms: f64,
        burst: u32,
    ) -> BoxFuture<'a, Option<u64>> {
        let key = self.key(&["ratelimit", system, bucket]);
        async move {
            self.run("ratelimit", |mut c| async move {
                GCRA.key(key)
                    .arg(interval_ms)
                    .arg(burst)
                    .invoke_async::<u64>(&mut c)
                    .await
            })
            .await
            .ok()
        }
        .boxed()
    }
}
