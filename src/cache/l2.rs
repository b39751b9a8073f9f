//! L2: the tier shared by replicas, in Redis. Values are stored compactly
//! (postcard) with the time they were fetched from the source of truth, so
//! a replica reading another's value knows its true age. Keys are
//! `moat:v1:<entity>:<key>`; a layout change bumps `v1`.
//!
//! Fill leases let one replica fetch a hot key while the others wait
//! briefly for it to appear here.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::freshness::Cached;
use super::key::escape;
use crate::domain::Timestamp;
use crate::redis_link::{RedisLink, Unavailable};

/// Deletes each lease key still held by ARGV[1]. Hashed once.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"for i, k in ipairs(KEYS) do
            if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
          end
          return 0",
    )
});

/// What is stored per key.
#[derive(Serialize, Deserialize)]
struct Stored<V> {
    fetched_at: i64,
    value: Option<V>,
}

/// The shared tier, for all entities.
pub struct L2 {
    redis: Arc<RedisLink>,
    /// Names this replica in lease values.
    replica: String,
    /// How long a fill lease lasts; a follower waits at most this long.
    lease_ttl: Duration,
}

impl L2 {
    pub fn new(redis: Arc<RedisLink>, replica: String, lease_ttl: Duration) -> L2 {
        L2 {
            redis,
            replica,
            lease_ttl,
        }
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    fn data_key(&self, entity: &str, key: &str) -> String {
        self.redis.key(&[entity, key])
    }

    fn lease_key(&self, entity: &str, key: &str) -> String {
        self.redis.key(&["lease", entity, key])
    }

    /// Reads encoded keys; `None` in a slot is a miss (or a value this
    /// build cannot read). `Err` when Redis is unavailable.
    pub async fn get<V: DeserializeOwned>(
        &self,
        entity: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Cached<V>>>, Unavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let redis_keys: Vec<String> = keys.iter().map(|k| self.data_key(entity, k)).collect();
        let raw: Vec<Option<Vec<u8>>> = self
            .redis
            .run("mget", |mut c| async move {
                redis::cmd("MGET")
                    .arg(&redis_keys)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(raw
            .into_iter()
            .map(|bytes| {
                let bytes = bytes?;
                let stored: Stored<V> = postcard::from_bytes(&bytes).ok()?;
                Some(Cached::new(
                    stored.value,
                    Timestamp(stored.fetched_at),
                    bytes.len(),
                ))
            })
            .collect())
    }

    /// Writes entries, each kept for its own time.
    pub async fn put<V: Serialize>(
        &self,
        entity: &str,
        entries: &[(String, &Cached<V>, Duration)],
    ) -> Result<(), Unavailable> {
        let mut pipe = redis::pipe();
        let mut any = false;
        for (key, cached, keep) in entries {
            let Ok(bytes) = postcard::to_allocvec(&Stored {
                fetched_at: cached.fetched_at.millis(),
                value: cached.value.as_ref(),
            }) else {
                continue;
            };
            let ms = keep.as_millis().max(1) as u64;
            pipe.cmd("SET")
                .arg(self.data_key(entity, key))
                .arg(bytes)
                .arg("PX")
                .arg(ms)
                .ignore();
            any = true;
        }
        if !any {
            return Ok(());
        }
        self.redis
            .run("set", |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await
    }

    /// Deletes encoded keys.
    pub async fn delete(&self, entity: &str, keys: &[String]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        let redis_keys: Vec<String> = keys.iter().map(|k| self.data_key(entity, k)).collect();
        self.redis
            .run("del", |mut c| async move {
                redis::cmd("DEL")
                    .arg(&redis_keys)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// Deletes every key of an entity whose id is one of `ids` (`None`: every
    /// key of the entity). Composite keys are found with SCAN: an operator's
    /// purge is rare, and an index kept for it would cost every write.
    pub async fn delete_matching(
        &self,
        entity: &str,
        ids: Option<&[String]>,
        composite: bool,
    ) -> Result<(), Unavailable> {
        let patterns: Vec<String> = match ids {
            None => vec![self.data_key(entity, "*")],
            Some(ids) if composite => ids
                .iter()
                .map(|id| self.data_key(entity, &format!("{}:*", escape(id))))
                .collect(),
            Some(ids) => {
                let keys: Vec<String> = ids.iter().map(|id| escape(id)).collect();
                return self.delete(entity, &keys).await;
            }
        };
        for pattern in patterns {
            let mut cursor: u64 = 0;
            loop {
                let pattern = pattern.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .redis
                    .run("scan", |mut c| async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                if !keys.is_empty() {
                    self.redis
                        .run("del", |mut c| async move {
                            redis::cmd("UNLINK")
                                .arg(&keys)
                                .query_async::<()>(&mut c)
                                .await
                        })
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Every encoded key of `entity`, found with SCAN (never KEYS: Redis
    /// serves everyone else between the steps).
    pub async fn keys(&self, entity: &str) -> Result<Vec<String>, Unavailable> {
        let prefix = self.data_key(entity, "");
        let pattern = format!("{prefix}*");
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let pattern = pattern.clone();
            let (next, keys): (u64, Vec<String>) = self
                .redis
                .run("scan", |mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            found.extend(
                keys.iter()
                    .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)),
            );
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Tries to take the fill lease of each key. `true`: this replica
    /// fetches it. When Redis is unavailable every key is ours: fetching
    /// twice beats not fetching.
    pub async fn lease(&self, entity: &str, keys: &[String]) -> Vec<bool> {
        let mut pipe = redis::pipe();
        let ms = self.lease_ttl.as_millis().max(1) as u64;
        for key in keys {
            pipe.cmd("SET")
                .arg(self.lease_key(entity, key))
                .arg(&self.replica)
                .arg("NX")
                .arg("PX")
                .arg(ms);
        }
        let got: Result<Vec<Option<String>>, _> = self
            .redis
            .run(
                "lease",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await;
        match got {
            Ok(got) if got.len() == keys.len() => got.into_iter().map(|r| r.is_some()).collect(),
            _ => vec![true; keys.len()],
        }
    }

    /// Gives leases back, only those this replica still holds.
    pub async fn release(&self, entity: &str, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let lease_keys: Vec<String> = keys.iter().map(|k| self.lease_key(entity, k)).collect();
        let replica = self.replica.clone();
        let _ = self
            .redis
            .run("release", |mut c| async move {
                let mut invocation = RELEASE.prepare_invoke();
                for k in &lease_keys {
                    invocation.key(k);
                }
                invocation.arg(&replica).invoke_async::<i64>(&mut c).await
            })
            .await;
    }

    /// Which of `keys` still have a lease held by someone.
    pub async fn leased(&self, entity: &str, keys: &[String]) -> Result<Vec<bool>, Unavailable> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("EXISTS").arg(self.lease_key(entity, key));
        }
        let held: Vec<i64> = self
            .redis
            .run(
                "leased",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        Ok(held.into_iter().map(|n| n > 0).collect())
    }
}
