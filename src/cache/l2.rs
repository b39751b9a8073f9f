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
//!
//! Personal entities (customers, orders) are sealed (`crate::data_key`):
//! their key names, lease names and id sets are HMACs under the data key,
//! their values AES-256-GCM bound to their key name, and the members of
//! their id sets sealed too. A read that misses under the current key
//! looks under the previous key's name and rewrites what it finds under
//! the current one. Without a data key they never reach this tier.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::freshness::Cached;
use super::key::escape;
use crate::data_key::{DataKeys, Subkeys};
use crate::domain::Timestamp;
use crate::hex;
use crate::redis_link::{RedisLink, Unavailable};
use crate::vocab::Entity;

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

/// The first byte of a sealed value. The second says whether its source
/// announced a change (outside the seal, so `MARK` can set it); then the
/// nonce and the ciphertext of the value as `LAYOUT` writes it.
const SEALED: u8 = 3;

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
    /// Seals personal entities; without it they are not stored here.
    data: Option<Arc<DataKeys>>,
}

impl L2 {
    pub fn new(
        redis: Arc<RedisLink>,
        replica: String,
        lease_ttl: Duration,
        data: Option<Arc<DataKeys>>,
    ) -> L2 {
        L2 {
            redis,
            replica,
            lease_ttl,
            data,
        }
    }

    /// Whether `entity` may be stored here: personal ones only sealed.
    pub fn holds(&self, entity: Entity) -> bool {
        !entity.personal() || self.data.is_some()
    }

    /// A message about `entity` sealed for the stream `stream`, when the
    /// entity's records are sealed (`None`: it goes as it is). While a key
    /// is rotated out, messages are sealed with it: replicas not yet given
    /// the new key read them too, and those given it read both.
    pub fn seal_message(&self, entity: &str, stream: &str, message: &[u8]) -> Option<Vec<u8>> {
        let keys = self.sealing(entity)?;
        let shared = keys.previous().unwrap_or(keys.current());
        Some(shared.seal(stream.as_bytes(), message))
    }

    /// A sealed stream message, opened with the current data key or the
    /// previous one.
    pub fn open_message(&self, stream: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let keys = self.data.as_deref()?;
        std::iter::once(keys.current())
            .chain(keys.previous())
            .find_map(|k| k.open(stream.as_bytes(), sealed))
    }

    /// The data keys, when `entity`'s records are sealed.
    fn sealing(&self, entity: &str) -> Option<&DataKeys> {
        self.data
            .as_deref()
            .filter(|_| Entity::from_name(entity).is_some_and(Entity::personal))
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    fn data_key(&self, entity: &str, key: &str) -> String {
        match self.sealing(entity) {
            Some(keys) => self.sealed_key(keys.current(), entity, key),
            None => self.redis.key(&[entity, key]),
        }
    }

    /// A sealed record's name under one data key.
    fn sealed_key(&self, keys: &Subkeys, entity: &str, key: &str) -> String {
        self.redis
            .key(&[entity, &keys.name(&format!("{entity}:{key}"))])
    }

    /// Every name `key` may be stored under: for sealed entities, under
    /// the current data key and the previous one.
    fn data_keys(&self, entity: &str, key: &str) -> Vec<String> {
        match self.sealing(entity) {
            Some(keys) => std::iter::once(keys.current())
                .chain(keys.previous())
                .map(|k| self.sealed_key(k, entity, key))
                .collect(),
            None => vec![self.redis.key(&[entity, key])],
        }
    }

    fn lease_key(&self, entity: &str, key: &str) -> String {
        match self.sealing(entity) {
            Some(keys) => {
                let name = keys.current().name(&format!("lease:{entity}:{key}"));
                self.redis.key(&["lease", entity, &name])
            }
            None => self.redis.key(&["lease", entity, key]),
        }
    }

    /// The set listing an id's keys; `id` is escaped.
    fn ids_key(&self, entity: &str, id: &str) -> String {
        match self.sealing(entity) {
            Some(keys) => self.sealed_ids_key(keys.current(), entity, id),
            None => self.redis.key(&["ids", entity, id]),
        }
    }

    fn sealed_ids_key(&self, keys: &Subkeys, entity: &str, id: &str) -> String {
        let name = keys.name(&format!("ids:{entity}:{id}"));
        self.redis.key(&["ids", entity, &name])
    }

    /// A key as a member of its id's set `set`: sealed the same way each
    /// time (so one key is one member), hex for Redis.
    fn member(keys: Option<&Subkeys>, set: &str, key: &str) -> String {
        match keys {
            Some(keys) => hex::encode(&keys.seal_fixed(set.as_bytes(), key.as_bytes())),
            None => key.to_string(),
        }
    }

    /// A stored value in this build's layout, sealed under `keys` and
    /// bound to its `name` when the entity is sealed.
    fn encode<V: Serialize>(
        keys: Option<&Subkeys>,
        name: &str,
        entry: &Cached<V>,
    ) -> Option<Vec<u8>> {
        let plain = postcard::to_allocvec(&Stored {
            layout: LAYOUT,
            changed: entry.changed(),
            fetched_at: entry.fetched_at.millis(),
            value: entry.value.as_ref(),
        })
        .ok()?;
        Some(match keys {
            Some(keys) => Self::reseal(keys, name, &plain, entry.changed()),
            None => plain,
        })
    }

    fn reseal(keys: &Subkeys, name: &str, plain: &[u8], changed: bool) -> Vec<u8> {
        let mut out = vec![SEALED, u8::from(changed)];
        out.extend(keys.seal(name.as_bytes(), plain));
        out
    }

    /// A stored value's plain bytes and whether it was marked changed
    /// outside its seal; `None` when it does not open under `keys`.
    fn open(keys: Option<&Subkeys>, name: &str, bytes: Vec<u8>) -> Option<(Vec<u8>, bool)> {
        match keys {
            None => Some((bytes, false)),
            Some(keys) => match bytes.as_slice() {
                [SEALED, changed, sealed @ ..] => {
                    Some((keys.open(name.as_bytes(), sealed)?, *changed != 0))
                }
                _ => None,
            },
        }
    }

    /// What `open` gave, read back; `None` for a layout this build cannot
    /// read.
    fn decode<V: DeserializeOwned>((plain, changed): (Vec<u8>, bool)) -> Option<Cached<V>> {
        if plain.first() != Some(&LAYOUT) {
            return None;
        }
        let stored: Stored<V> = postcard::from_bytes(&plain).ok()?;
        let cached = Cached::new(stored.value, Timestamp(stored.fetched_at), plain.len());
        if stored.changed || changed {
            cached.mark_changed();
        }
        Some(cached)
    }

    /// Reads encoded keys; `None` in a slot is a miss (or a value this
    /// build cannot read). `previous`: each key's text under the previous
    /// data key (`Key::encode_previous`), where a sealed record written
    /// before a rotation is looked for. `Err` when Redis is unavailable.
    pub async fn get<V: DeserializeOwned>(
        &self,
        entity: &str,
        keys: &[String],
        previous: &[String],
    ) -> Result<Vec<Option<Cached<V>>>, Unavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let redis_keys: Vec<String> = keys.iter().map(|k| self.data_key(entity, k)).collect();
        let names = redis_keys.clone();
        let raw: Vec<Option<Vec<u8>>> = self
            .redis
            .run("mget", |mut c| async move {
                redis::cmd("MGET")
                    .arg(&redis_keys)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let sealing = self.sealing(entity);
        let current = sealing.map(DataKeys::current);
        let mut found: Vec<Option<Cached<V>>> = raw
            .into_iter()
            .zip(&names)
            .map(|(bytes, name)| Self::decode(Self::open(current, name, bytes?)?))
            .collect();
        if let Some((keys, old)) = sealing.and_then(|k| Some((k, k.previous()?))) {
            let missing: Vec<usize> = (0..found.len())
                .filter(|&i| found[i].is_none() && i < previous.len())
                .collect();
            if !missing.is_empty() {
                let old_names: Vec<String> = missing
                    .iter()
                    .map(|&i| self.sealed_key(old, entity, &previous[i]))
                    .collect();
                let moved = self
                    .migrate(keys, old, &old_names, &missing, &names)
                    .await?;
                for (i, plain) in moved {
                    found[i] = Self::decode(plain);
                }
            }
        }
        Ok(found)
    }

    /// Reads records sealed under the previous data key at `old_names`,
    /// and rewrites each one found under the current key at its new name
    /// (`names[slot]`), with the time it had left. Returns, by slot, what
    /// opened.
    async fn migrate(
        &self,
        keys: &DataKeys,
        old: &Subkeys,
        old_names: &[String],
        slots: &[usize],
        names: &[String],
    ) -> Result<Vec<(usize, (Vec<u8>, bool))>, Unavailable> {
        let mut pipe = redis::pipe();
        for name in old_names {
            pipe.cmd("GET").arg(name).cmd("PTTL").arg(name);
        }
        let raw: Vec<(Option<Vec<u8>>, i64)> = self
            .redis
            .run(
                "mget",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        let mut rewrite = redis::pipe();
        let mut opened = Vec::new();
        for ((old_name, &slot), (bytes, ttl)) in old_names.iter().zip(slots).zip(raw) {
            let Some(plain) = bytes.and_then(|b| Self::open(Some(old), old_name, b)) else {
                continue;
            };
            if ttl > 0 {
                let name = &names[slot];
                let value = Self::reseal(keys.current(), name, &plain.0, plain.1);
                rewrite
                    .cmd("SET")
                    .arg(name)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl)
                    .ignore();
                rewrite.cmd("UNLINK").arg(old_name).ignore();
            }
            opened.push((slot, plain));
        }
        if !opened.is_empty() {
            // Best effort: the value read is served either way.
            let _ = self
                .redis
                .run("set", |mut c| async move {
                    rewrite.query_async::<()>(&mut c).await
                })
                .await;
        }
        Ok(opened)
    }

    /// Writes entries, each kept for its own time, and lists composite keys
    /// under their ids.
    pub async fn put<V: Serialize>(
        &self,
        entity: &str,
        entries: &[Put<'_, V>],
    ) -> Result<(), Unavailable> {
        let mut pipe = redis::pipe();
        let mut listed: Vec<(String, String, u64)> = Vec::new();
        let mut any = false;
        let current = self.sealing(entity).map(DataKeys::current);
        for put in entries {
            let name = self.data_key(entity, &put.key);
            let Some(bytes) = Self::encode(current, &name, put.entry) else {
                continue;
            };
            let ms = put.keep.as_millis().max(1) as u64;
            pipe.cmd("SET")
                .arg(name)
                .arg(bytes)
                .arg("PX")
                .arg(ms)
                .ignore();
            any = true;
            if let Some(id) = &put.id {
                let set = self.ids_key(entity, id);
                let member = Self::member(current, &set, &put.key);
                listed.push((set, member, ms));
            }
        }
        if !any {
            return Ok(());
        }
        // One script call per cluster slot of the sets.
        let sets: Vec<&str> = listed.iter().map(|(set, _, _)| set.as_str()).collect();
        let calls: Vec<redis::ScriptInvocation<'static>> = self
            .redis
            .by_slot(&sets)
            .into_iter()
            .map(|group| {
                let mut call = LIST.prepare_invoke();
                for i in group {
                    let (set, member, ms) = &listed[i];
                    call.key(set).arg(member).arg(*ms);
                }
                call
            })
            .collect();
        self.redis
            .run("set", |mut c| async move {
                pipe.query_async::<()>(&mut c).await?;
                for call in &calls {
                    call.invoke_async::<i64>(&mut c).await?;
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
        let Some(keys) = self.sealing(entity) else {
            let mut pipe = redis::pipe();
            for id in ids {
                pipe.cmd("SMEMBERS").arg(self.ids_key(entity, id));
            }
            return self
                .redis
                .run(
                    "smembers",
                    |mut c| async move { pipe.query_async(&mut c).await },
                )
                .await;
        };
        // Each id's set under the current key and the previous one.
        let generations: Vec<&Subkeys> = std::iter::once(keys.current())
            .chain(keys.previous())
            .collect();
        let mut sets = Vec::new();
        let mut pipe = redis::pipe();
        for id in ids {
            for k in &generations {
                let set = self.sealed_ids_key(k, entity, id);
                pipe.cmd("SMEMBERS").arg(&set);
                sets.push((*k, set));
            }
        }
        let members: Vec<Vec<String>> = self
            .redis
            .run(
                "smembers",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        let mut out: Vec<Vec<String>> = vec![Vec::new(); ids.len()];
        for (i, ((k, set), members)) in sets.iter().zip(members).enumerate() {
            let keys = &mut out[i / generations.len()];
            for member in members {
                let opened = hex::decode(&member).and_then(|b| k.open(set.as_bytes(), &b));
                if let Some(key) = opened.and_then(|b| String::from_utf8(b).ok())
                    && !keys.contains(&key)
                {
                    keys.push(key);
                }
            }
        }
        Ok(out)
    }

    /// Marks encoded keys as changed at their source: every replica then
    /// serves them as stale until the new value is written.
    pub async fn mark_changed(&self, entity: &str, keys: &[String]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        let redis_keys: Vec<String> = keys
            .iter()
            .flat_map(|k| self.data_keys(entity, k))
            .collect();
        let layout = if self.sealing(entity).is_some() {
            SEALED
        } else {
            LAYOUT
        };
        let groups = self.redis.by_slot(&redis_keys);
        self.redis
            .run("mark", |c| async move {
                let calls = groups.iter().map(|group| {
                    let mut c = c.clone();
                    let mut invocation = MARK.prepare_invoke();
                    for &i in group {
                        invocation.key(&redis_keys[i]);
                    }
                    invocation.arg([layout].as_slice()).arg([1u8].as_slice());
                    async move { invocation.invoke_async::<i64>(&mut c).await }
                });
                futures_util::future::try_join_all(calls).await
            })
            .await
            .map(drop)
    }

    /// Deletes encoded keys.
    pub async fn delete(&self, entity: &str, keys: &[String]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        let redis_keys: Vec<String> = keys
            .iter()
            .flat_map(|k| self.data_keys(entity, k))
            .collect();
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
            None => vec![
                self.redis.key(&[entity, "*"]),
                self.redis.key(&["ids", entity, "*"]),
            ],
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
            let keys = self.redis.scan(&pattern).await?;
            for chunk in keys.chunks(1000) {
                let chunk = chunk.to_vec();
                self.redis
                    .run("del", |mut c| async move {
                        redis::cmd("UNLINK")
                            .arg(&chunk)
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await?;
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
        let sealing = self.sealing(entity);
        for (id, keys) in ids.iter().zip(listed) {
            if keys.is_empty() {
                continue;
            }
            let data: Vec<String> = keys
                .iter()
                .flat_map(|k| self.data_keys(entity, k))
                .collect();
            pipe.cmd("UNLINK").arg(data).ignore();
            match sealing {
                None => {
                    pipe.cmd("SREM")
                        .arg(self.ids_key(entity, id))
                        .arg(keys)
                        .ignore();
                }
                Some(sealed) => {
                    for k in std::iter::once(sealed.current()).chain(sealed.previous()) {
                        let set = self.sealed_ids_key(k, entity, id);
                        let members: Vec<String> = keys
                            .iter()
                            .map(|key| Self::member(Some(k), &set, key))
                            .collect();
                        pipe.cmd("SREM").arg(set).arg(members).ignore();
                    }
                }
            }
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
        if let Some(keys) = self.sealing(entity) {
            return self.sealed_keys(keys, entity).await;
        }
        let prefix = self.data_key(entity, "");
        let found = self.scan(&prefix).await?;
        Ok(found
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    /// The keys of a sealed entity: its names cannot be read back, by
    /// design, but a composite entity's keys are all listed, sealed, in
    /// its id sets (a plain one has none to find).
    async fn sealed_keys(&self, keys: &DataKeys, entity: &str) -> Result<Vec<String>, Unavailable> {
        let sets = self.scan(&self.redis.key(&["ids", entity, ""])).await?;
        let mut found = std::collections::BTreeSet::new();
        for set in sets {
            let key = set.clone();
            let members: Vec<String> = self
                .redis
                .run("smembers", |mut c| async move {
                    redis::cmd("SMEMBERS").arg(&key).query_async(&mut c).await
                })
                .await?;
            for member in members {
                let opened = hex::decode(&member).and_then(|b| {
                    std::iter::once(keys.current())
                        .chain(keys.previous())
                        .find_map(|k| k.open(set.as_bytes(), &b))
                });
                found.extend(opened.and_then(|b| String::from_utf8(b).ok()));
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Every Redis key that starts with `prefix`, found with SCAN.
    async fn scan(&self, prefix: &str) -> Result<Vec<String>, Unavailable> {
        self.redis.scan(&format!("{prefix}*")).await
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
        let groups = self.redis.by_slot(&lease_keys);
        let _ = self
            .redis
            .run("release", |c| async move {
                let calls = groups.iter().map(|group| {
                    let mut c = c.clone();
                    let mut invocation = RELEASE.prepare_invoke();
                    for &i in group {
                        invocation.key(&lease_keys[i]);
                    }
                    invocation.arg(&replica);
                    async move { invocation.invoke_async::<i64>(&mut c).await }
                });
                futures_util::future::try_join_all(calls).await
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
