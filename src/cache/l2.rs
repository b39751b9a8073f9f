//! L2: the tier shared by replicas, in Redis. Values are stored compactly
//! (postcard) with the time they were fetched from the source of truth, so
//! a replica reading another's value knows its true age, and whether its
//! source has announced a change since. Keys are `moat:v1:<entity>:<key>`;
//! a layout change bumps `v1`.
//!
//! Composite keys (a sku's prices, an order as each customer asked for it)
//! are also listed per id, in a set `moat:v1:ids:<entity>:<id>` that lives
//! as long as its longest-kept key: an event or purge naming only the id
//! finds its keys there, never by walking the key space.
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

/// Marks each key whose value is in this layout as changed at its source
/// (the byte after the layout's), keeping its value and its TTL.
static MARK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"for i, k in ipairs(KEYS) do
            if redis.call('GETRANGE', k, 0, 0) == ARGV[1] then
              redis.call('SETRANGE', k, 1, ARGV[2])
            end
          end
          return 0",
    )
});

/// Lists each key under its id's set, and keeps the set as long as its
/// longest-kept key. KEYS: the sets; ARGV: per set, the key and its ms.
static LIST: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"for i, set in ipairs(KEYS) do
            redis.call('SADD', set, ARGV[2 * i - 1])
            local ms = tonumber(ARGV[2 * i])
            if redis.call('PTTL', set) < ms then redis.call('PEXPIRE', set, ms) end
          end
          return 0",
    )
});

/// The first byte of every stored value. The layout before it began with
/// the fetch time (a varint of 0x80 or more), so values written by an
/// older build read as misses, never as garbage.
const LAYOUT: u8 = 2;

/// What is stored per key.
#[derive(Serialize, Deserialize)]
struct Stored<V> {
    layout: u8,
    /// Its source announced a change not yet fetched (`MARK` sets it).
    changed: bool,
    fetched_at: i64,
    value: Option<V>,
}

/// One entry to write: its encoded key, the escaped id it is listed under
/// (composite keys only), the entry and how long to keep it.
pub struct Put<'a, V> {
    pub key: String,
    pub id: Option<String>,
    pub entry: &'a Cached<V>,
    pub keep: Duration,
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

    /// The set listing an id's keys; `id` is escaped.
    fn ids_key(&self, entity: &str, id: &str) -> String {
        self.redis.key(&["ids", entity, id])
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
                if bytes.first() != Some(&LAYOUT) {
                    return None;
                }
                let stored: Stored<V> = postcard::from_bytes(&bytes).ok()?;
                let cached = Cached::new(stored.value, Timestamp(stored.fetched_at), bytes.len());
                if stored.changed {
                    cached.mark_changed();
                }
                Some(cached)
            })
            .collect())
    }

    /// Writes entries, each kept for its own time, and lists composite keys
    /// under their ids.
    pub async fn put<V: Serialize>(
        &self,
        entity: &str,
        entries: &[Put<'_, V>],
    ) -> Result<(), Unavailable> {
        let mut pipe = redis::pipe();
        let mut listed = LIST.prepare_invoke();
        let (mut any, mut any_listed) = (false, false);
        for put in entries {
            let Ok(bytes) = postcard::to_allocvec(&Stored {
                layout: LAYOUT,
                changed: put.entry.changed(),
                fetched_at: put.entry.fetched_at.millis(),
                value: put.entry.value.as_ref(),
            }) else {
                continue;
            };
            let ms = put.keep.as_millis().max(1) as u64;
            pipe.cmd("SET")
                .arg(self.data_key(entity, &put.key))
                .arg(bytes)
                .arg("PX")
                .arg(ms)
                .ignore();
            any = true;
            if let Some(id) = &put.id {
                listed.key(self.ids_key(entity, id)).arg(&put.key).arg(ms);
                any_listed = true;
            }
        }
        if !any {
            return Ok(());
        }
        self.redis
            .run("set", |mut c| async move {
                pipe.query_async::<()>(&mut c).await?;
                if any_listed {
                    listed.invoke_async::<i64>(&mut c).await?;
                }
                Ok(())
            })
            .await
    }

    /// The encoded keys listed under each of `ids` (escaped), in order.
    pub async fn listed(
        &self,
        entity: &str,
        ids: &[String],
    ) -> Result<Vec<Vec<String>>, Unavailable> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("SMEMBERS").arg(self.ids_key(entity, id));
        }
        self.redis
            .run(
                "smembers",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await
    }

    /// Marks encoded keys as changed at their source: every replica then
    /// serves them as stale until the new value is written.
    pub async fn mark_changed(&self, entity: &str, keys: &[String]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        let redis_keys: Vec<String> = keys.iter().map(|k| self.data_key(entity, k)).collect();
        self.redis
            .run("mark", |mut c| async move {
                let mut invocation = MARK.prepare_invoke();
                for k in &redis_keys {
                    invocation.key(k);
                }
                invocation
                    .arg([LAYOUT].as_slice())
                    .arg([1u8].as_slice())
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(drop)
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
    /// key of the entity). Composite keys are found in their ids' sets; only
    /// an operator's purge of a whole entity walks the key space (with
    /// SCAN, so Redis serves everyone else between the steps).
    pub async fn delete_matching(
        &self,
        entity: &str,
        ids: Option<&[String]>,
        composite: bool,
    ) -> Result<(), Unavailable> {
        let patterns: Vec<String> = match ids {
            None => vec![self.data_key(entity, "*"), self.ids_key(entity, "*")],
            Some(ids) if composite => {
                let ids: Vec<String> = ids.iter().map(|id| escape(id)).collect();
                let listed = self.listed(entity, &ids).await?;
                return self.delete_listed(entity, &ids, listed).await;
            }
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

    /// Deletes the keys `listed` under `ids` and unlists them (only them: a
    /// key listed meanwhile stays listed, with its value).
    async fn delete_listed(
        &self,
        entity: &str,
        ids: &[String],
        listed: Vec<Vec<String>>,
    ) -> Result<(), Unavailable> {
        let mut pipe = redis::pipe();
        let mut any = false;
        for (id, keys) in ids.iter().zip(listed) {
            if keys.is_empty() {
                continue;
            }
            let data: Vec<String> = keys.iter().map(|k| self.data_key(entity, k)).collect();
            pipe.cmd("UNLINK").arg(data).ignore();
            pipe.cmd("SREM")
                .arg(self.ids_key(entity, id))
                .arg(keys)
                .ignore();
            any = true;
        }
        if !any {
            return Ok(());
        }
        self.redis
            .run("del", |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await
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
