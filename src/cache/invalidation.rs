//! Invalidation across replicas, on one path for every cause: an
//! operator's purge, a change event, a checkout repair. An invalidation
//! drops the keys from this replica's L1, deletes them from L2, and is
//! appended to a Redis stream that every replica reads from its last
//! position, so each drops its L1 copy too, within a second. A repair (the
//! authoritative value was written into L1 and L2 already) only needs the
//! stream entry: the others drop their L1 copy and read L2. A change
//! announced without its value (a thin event) marks the keys instead, here,
//! in L2 and on every replica: they keep serving the held value, as stale,
//! until the refetch lands.
//!
//! Nothing is lost when a connection drops:
//! - a replica that cannot reach Redis keeps what it changed in an outbox
//!   and appends it, in order, once Redis is back;
//! - a replica whose reading was cut resumes from its last position and
//!   replays what it missed; only when that position has been trimmed
//!   from the stream (it was away too long) does it drop its whole L1,
//!   since it can no longer vouch for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::streams::{StreamRangeReply, StreamReadReply};

use serde::{Deserialize, Serialize};

use super::key::escape;
use super::l2::L2;
use super::tier::{AnyTier, Target};
use crate::background::Background;
use crate::domain::Timestamp;
use crate::error::Error;
use crate::redis_link::{Conn, RedisLink};
use crate::telemetry;
use crate::vocab::Entity;

/// Told of every change this replica makes (each replica tells of its
/// own, never of those it hears from others), after its cache took it:
/// what sits in front of Moat (`edge`) purges what the change names.
pub trait Changes: Send + Sync {
    /// `ids`: what `Key::id` names (a price's sku); `None`: all of `entity`.
    fn changed(&self, entity: Entity, ids: Option<Vec<String>>) -> BoxFuture<'_, ()>;
}

/// One stream entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Message {
    /// The replica that sent it (which has already applied it).
    from: String,
    entity: String,
    target: Target,
    /// When the change it announces happened at its source (an event's
    /// time), for the event-to-visible delay on every replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<i64>,
    /// Mark the keys as changed at their source rather than drop them
    /// (a replica built before this field drops them, which is safe).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    mark: bool,
}

/// What a change does to L2 besides the stream entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InL2 {
    /// Nothing: the sender wrote the new values there (a repair).
    Keep,
    /// Delete the keys (an invalidation).
    Delete,
    /// Mark the keys as changed at their source (a thin event).
    Mark,
}

/// A change this replica made that Redis has not taken yet.
struct Pending {
    message: Message,
    l2: InL2,
}

/// The outbox: pending changes, in order, up to a bound.
#[derive(Default)]
struct Outbox {
    pending: VecDeque<Pending>,
    /// More changes came than the outbox holds: on flush, whole entities
    /// are announced instead.
    overflowed: Vec<Entity>,
}

/// How many unpublished changes a replica keeps while Redis is away.
const OUTBOX: usize = 100_000;
/// How long one stream read waits for entries before looking again.
const BLOCK: Duration = Duration::from_millis(500);
/// Entries read at once.
const BATCH: usize = 512;
/// After a failover lost the stream's newest entries, how far before its
/// position a replica replays what the new primary holds: more than any
/// replication lag or clock skew between primaries.
const REPLAY: Duration = Duration::from_secs(10);

/// The shared side, with Redis.
struct Shared {
    redis: Arc<RedisLink>,
    l2: Arc<L2>,
    /// Most entries the stream keeps (approximately).
    stream_len: usize,
}

pub struct Invalidator {
    replica: String,
    tiers: HashMap<Entity, Arc<dyn AnyTier>>,
    shared: Option<Shared>,
    /// A second L2 delete this long after the first catches a value another
    /// replica fetched before the change and wrote after the first delete.
    redelete_after: Duration,
    background: Background,
    outbox: Mutex<Outbox>,
    /// Told of each change made here (set once, at wiring).
    observer: std::sync::OnceLock<Arc<dyn Changes>>,
}

impl Invalidator {
    pub fn new(
        replica: String,
        tiers: Vec<Arc<dyn AnyTier>>,
        shared: Option<(Arc<RedisLink>, Arc<L2>)>,
        stream_len: usize,
        redelete_after: Duration,
        background: Background,
    ) -> Arc<Invalidator> {
        Arc::new(Invalidator {
            replica,
            tiers: tiers.into_iter().map(|t| (t.entity(), t)).collect(),
            shared: shared.map(|(redis, l2)| Shared {
                redis,
                l2,
                stream_len,
            }),
            redelete_after,
            background,
            outbox: Mutex::new(Outbox::default()),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// Has `observer` told of every change this replica makes from now on.
    pub fn observe(&self, observer: Arc<dyn Changes>) {
        let _ = self.observer.set(observer);
    }

    /// Tells the observer of a change to `target` of `entity`.
    async fn tell(&self, entity: Entity, target: &Target) {
        let Some(observer) = self.observer.get() else {
            return;
        };
        let ids = match target {
            Target::All => None,
            Target::Ids(ids) => Some(ids.clone()),
            Target::Keys(keys) => match self.tiers.get(&entity) {
                Some(tier) => Some(tier.ids_of(keys)),
                None => return,
            },
        };
        observer.changed(entity, ids).await;
    }

    /// The entity names that can be invalidated.
    pub fn entities(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.tiers.keys().map(|e| e.name()).collect();
        names.sort_unstable();
        names
    }

    /// Drops `target` here, in L2, and on every replica. Redis being down
    /// is not an error: the change waits in the outbox.
    pub async fn invalidate(
        &self,
        entity: Entity,
        target: Target,
        origin: Option<Timestamp>,
    ) -> Result<(), Error> {
        let tier = self.tier(entity)?;
        tier.drop_local(&target);
        // Told once L2 no longer holds the old value: what sits in front
        // then refetches the new one.
        let told = target.clone();
        if let Some(shared) = &self.shared {
            let message = self.message(entity, target, origin);
            if self.publish(shared, &message, InL2::Delete).await {
                let (l2, composite, delay) =
                    (shared.l2.clone(), tier.composite(), self.redelete_after);
                let target = message.target;
                self.background.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = delete_shared(&l2, entity.name(), composite, &target).await;
                });
            } else {
                self.hold(message, InL2::Delete);
            }
        }
        self.tell(entity, &told).await;
        Ok(())
    }

    /// Marks `target` as changed at its source, here, in L2 and on every
    /// replica: each keeps serving what it holds, as stale, until the new
    /// value is written (`refreshed`). Redis being down is not an error.
    pub async fn changed(
        &self,
        entity: Entity,
        target: Target,
        origin: Option<Timestamp>,
    ) -> Result<(), Error> {
        self.tier(entity)?.mark_local(&target);
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let message = Message {
            mark: true,
            ..self.message(entity, target, origin)
        };
        if !self.publish(shared, &message, InL2::Mark).await {
            self.hold(message, InL2::Mark);
        }
        Ok(())
    }

    /// Tells the other replicas to drop their L1 copies of `target`, after
    /// this replica wrote authoritative values for it into its L1 and L2:
    /// they read the new values from L2 at their next miss. Deleting L2 as
    /// `invalidate` does would throw the repair away.
    pub async fn refreshed(
        &self,
        entity: Entity,
        target: Target,
        origin: Option<Timestamp>,
    ) -> Result<(), Error> {
        self.tier(entity)?;
        let told = target.clone();
        if let Some(shared) = &self.shared {
            let message = self.message(entity, target, origin);
            if !self.publish(shared, &message, InL2::Keep).await {
                self.hold(message, InL2::Keep);
            }
        }
        self.tell(entity, &told).await;
        Ok(())
    }

    /// Changes still waiting for Redis.
    pub fn unpublished(&self) -> usize {
        self.lock_outbox().pending.len()
    }

    fn tier(&self, entity: Entity) -> Result<&Arc<dyn AnyTier>, Error> {
        self.tiers
            .get(&entity)
            .ok_or_else(|| Error::internal(format!("no cache for {entity}")))
    }

    fn message(&self, entity: Entity, target: Target, origin: Option<Timestamp>) -> Message {
        Message {
            from: self.replica.clone(),
            entity: entity.name().to_string(),
            target,
            origin: origin.map(Timestamp::millis),
            mark: false,
        }
    }

    /// Changes L2 as `l2` says and appends to the stream; false when Redis
    /// did not take it.
    async fn publish(&self, shared: &Shared, message: &Message, l2: InL2) -> bool {
        if l2 != InL2::Keep {
            let Some(tier) = Entity::from_name(&message.entity).and_then(|e| self.tiers.get(&e))
            else {
                return true;
            };
            let (entity, composite) = (&message.entity, tier.composite());
            let changed = match l2 {
                InL2::Delete => delete_shared(&shared.l2, entity, composite, &message.target).await,
                _ => mark_shared(&shared.l2, entity, composite, &message.target).await,
            };
            if changed.is_err() {
                return false;
            }
        }
        let Ok(payload) = serde_json::to_vec(message) else {
            return true;
        };
        let key = stream_key(&shared.redis);
        // What changed of a personal entity names its keys (order and
        // customer ids, token digests): sealed like its records.
        let (field, payload) = match shared.l2.seal_message(&message.entity, &key, &payload) {
            Some(sealed) => ("s", sealed),
            None => ("m", payload),
        };
        let len = shared.stream_len;
        shared
            .redis
            .run("xadd", |mut c| async move {
                redis::cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(len)
                    .arg("*")
                    .arg(field)
                    .arg(payload)
                    .query_async::<String>(&mut c)
                    .await
            })
            .await
            .is_ok()
    }

    fn hold(&self, message: Message, l2: InL2) {
        let mut outbox = self.lock_outbox();
        if outbox.pending.len() >= OUTBOX {
            if let Some(entity) = Entity::from_name(&message.entity)
                && !outbox.overflowed.contains(&entity)
            {
                outbox.overflowed.push(entity);
            }
            return;
        }
        if outbox.pending.is_empty() {
            tracing::warn!(
                entity = %message.entity,
                "Redis unavailable: invalidations wait in this replica's outbox"
            );
        }
        outbox.pending.push_back(Pending { message, l2 });
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes what waits in the outbox, oldest first; stops at the first
    /// failure (Redis went away again) and keeps the rest.
    async fn flush(&self, shared: &Shared) {
        let overflowed = std::mem::take(&mut self.lock_outbox().overflowed);
        for entity in overflowed {
            let message = self.message(entity, Target::All, None);
            if !self.publish(shared, &message, InL2::Delete).await {
                self.lock_outbox().overflowed.push(entity);
                return;
            }
        }
        loop {
            let Some(next) = self.lock_outbox().pending.pop_front() else {
                return;
            };
            if !self.publish(shared, &next.message, next.l2).await {
                self.lock_outbox().pending.push_front(next);
                return;
            }
        }
    }

    /// Reads the stream and applies what other replicas appended, as
    /// background work until it is stopped; flushes the outbox whenever
    /// Redis is reachable. Reconnects by itself.
    pub fn listen(self: Arc<Self>) {
        if self.shared.is_none() {
            return;
        }
        let background = self.background.clone();
        background.spawn_loop(async move {
            let Some(shared) = &self.shared else {
                return;
            };
            let mut position: Option<String> = None;
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.follow(shared, &mut position).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        tracing::debug!(error = %e, "invalidation stream unavailable; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }

    /// One connection's worth of reading: from `position` (the last entry
    /// applied), or from the end of the stream at first start.
    async fn follow(
        &self,
        shared: &Shared,
        position: &mut Option<String>,
    ) -> Result<(), redis::RedisError> {
        // Blocking reads need a connection of their own: on the shared one
        // they would hold up every other command.
        let mut conn = shared
            .redis
            .dedicated(BLOCK + Duration::from_secs(2))
            .await?;
        let key = stream_key(&shared.redis);
        match position.clone() {
            None => *position = Some(tail(&mut conn, &key).await?),
            Some(last) => {
                if !still_there(&mut conn, &key, &last).await? {
                    tracing::warn!(
                        "missed invalidations were trimmed from the stream; L1 dropped as unvouched"
                    );
                    for tier in self.tiers.values() {
                        tier.drop_local(&Target::All);
                    }
                    *position = Some(tail(&mut conn, &key).await?);
                } else {
                    tracing::info!("invalidation stream reconnected; replaying what was missed");
                    self.behind_failover(&mut conn, &key, position).await?;
                }
            }
        }
        loop {
            self.flush(shared).await;
            let from = position.clone().unwrap_or_else(|| "0-0".into());
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&key)
                .arg(&from)
                .query_async(&mut conn)
                .await?;
            if reply.as_ref().is_none_or(|r| r.keys.is_empty()) {
                // Quiet: a failover the client rode through may have left
                // this position ahead of what the new primary holds.
                self.behind_failover(&mut conn, &key, position).await?;
                continue;
            }
            for stream in reply.map(|r| r.keys).unwrap_or_default() {
                for entry in stream.ids {
                    if let Some(redis::Value::BulkString(bytes)) = entry.map.get("m") {
                        self.apply(bytes);
                    } else if let Some(redis::Value::BulkString(sealed)) = entry.map.get("s") {
                        match shared.l2.open_message(&key, sealed) {
                            Some(bytes) => self.apply(&bytes),
                            None => tracing::warn!(
                                "ignoring a sealed invalidation this replica's data key cannot open"
                            ),
                        }
                    }
                    *position = Some(entry.id);
                }
            }
        }
    }

    /// When the stream ends before `position`, a failover lost its newest
    /// entries (the new primary never had them), and what the new primary
    /// appends may carry ids below the lost ones (its clock): reading on
    /// from `position` would skip them. So this replica replays what the
    /// new primary holds from `REPLAY` before its position (replaying an
    /// entry again only drops keys again). Nothing it saw is lost, so its
    /// L1 stays.
    async fn behind_failover(
        &self,
        conn: &mut Conn,
        key: &str,
        position: &mut Option<String>,
    ) -> Result<(), redis::RedisError> {
        let Some(last) = position.as_deref().and_then(stream_id) else {
            return Ok(());
        };
        let end = tail(conn, key).await?;
        if stream_id(&end).is_some_and(|end| end < last) {
            let from = format!("{}-0", last.0.saturating_sub(REPLAY.as_millis() as u64));
            tracing::warn!(
                position = position.as_deref().unwrap_or_default(),
                stream_end = %end,
                replay_from = %from,
                "the invalidation stream ends before this replica's position (a failover lost its newest entries); replaying what the new primary holds"
            );
            *position = Some(from);
        }
        Ok(())
    }

    fn apply(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Message>(payload) else {
            tracing::warn!("ignoring an invalidation this build cannot read");
            return;
        };
        if message.from == self.replica {
            return;
        }
        if let Some(tier) = Entity::from_name(&message.entity).and_then(|e| self.tiers.get(&e)) {
            if message.mark {
                tier.mark_local(&message.target);
            } else {
                tier.drop_local(&message.target);
            }
        }
        if let Some(origin) = message.origin {
            telemetry::event_visible("peer", Timestamp(origin).age(Timestamp::now()));
        }
    }
}

fn stream_key(redis: &RedisLink) -> String {
    redis.key(&["invalidations"])
}

/// The id of the stream's last entry (`0-0` when it is empty): where a
/// replica that has nothing to replay starts.
async fn tail(conn: &mut Conn, key: &str) -> Result<String, redis::RedisError> {
    let last: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(last
        .ids
        .into_iter()
        .next()
        .map_or_else(|| "0-0".into(), |e| e.id))
}

/// Whether every entry after `last` is still in the stream: none was
/// trimmed past it (Redis 7 keeps the highest id it ever trimmed).
async fn still_there(conn: &mut Conn, key: &str, last: &str) -> Result<bool, redis::RedisError> {
    let info: redis::Value = match redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(conn)
        .await
    {
        Ok(info) => info,
        // No stream yet: nothing was trimmed.
        Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => return Ok(true),
        Err(e) => return Err(e),
    };
    let trimmed = field(&info, "max-deleted-entry-id").and_then(stream_id);
    Ok(match (trimmed, stream_id(last)) {
        (Some(trimmed), Some(last)) => trimmed <= last,
        _ => true,
    })
}

/// One field of an `XINFO` reply (a map in RESP3, pairs in RESP2).
fn field(info: &redis::Value, name: &str) -> Option<String> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match info {
        redis::Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        redis::Value::Array(items) => items
            .chunks(2)
            .find(|pair| text(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| pair.get(1).and_then(text)),
        _ => None,
    }
}

/// A stream id `ms-seq` as a pair that orders like the stream.
fn stream_id(id: impl AsRef<str>) -> Option<(u64, u64)> {
    let (ms, seq) = id.as_ref().split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

async fn delete_shared(
    l2: &L2,
    entity: &str,
    composite: bool,
    target: &Target,
) -> Result<(), crate::redis_link::Unavailable> {
    match target {
        Target::Keys(keys) => l2.delete(entity, keys).await,
        Target::Ids(ids) => l2.delete_matching(entity, Some(ids), composite).await,
        Target::All => l2.delete_matching(entity, None, composite).await,
    }
}

/// Marks what L2 holds of `target` as changed at its source (by id: the
/// keys listed under it).
async fn mark_shared(
    l2: &L2,
    entity: &str,
    composite: bool,
    target: &Target,
) -> Result<(), crate::redis_link::Unavailable> {
    match target {
        Target::Keys(keys) => l2.mark_changed(entity, keys).await,
        Target::Ids(ids) if composite => {
            let ids: Vec<String> = ids.iter().map(|id| escape(id)).collect();
            let listed = l2.listed(entity, &ids).await?;
            l2.mark_changed(entity, &listed.concat()).await
        }
        Target::Ids(ids) => {
            let keys: Vec<String> = ids.iter().map(|id| escape(id)).collect();
            l2.mark_changed(entity, &keys).await
        }
        // A change is always announced for what it names.
        Target::All => Ok(()),
    }
}
