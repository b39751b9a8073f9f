//! Invalidation across replicas. An invalidation (an operator's purge, a
//! change event) drops the keys from this replica's L1, deletes them from
//! L2, and is broadcast on Redis pub/sub so every other replica drops its L1
//! copy too, within a second.
//!
//! A repair (checkout found the cache wrong and wrote the authoritative
//! value into L1 and L2 itself) needs only the broadcast: the other
//! replicas drop their L1 copy and read the repaired value from L2.
//!
//! A replica that loses its subscription cannot know what it missed while
//! it was gone, so when it subscribes again it drops its whole L1: it can no
//! longer vouch for any of it. (L2 is not affected: the publisher deleted
//! there.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::l2::L2;
use super::tier::{AnyTier, Target};
use crate::background::Background;
use crate::error::Error;
use crate::redis_link::RedisLink;
use crate::vocab::Entity;

/// One broadcast.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The replica that sent it (which has already applied it).
    from: String,
    entity: String,
    target: Target,
}

pub struct Invalidator {
    replica: String,
    tiers: HashMap<Entity, Arc<dyn AnyTier>>,
    shared: Option<(Arc<RedisLink>, Arc<L2>)>,
    /// A second L2 delete this long after the first catches a value another
    /// replica fetched before the change and wrote after the first delete.
    redelete_after: Duration,
    background: Background,
}

impl Invalidator {
    pub fn new(
        replica: String,
        tiers: Vec<Arc<dyn AnyTier>>,
        shared: Option<(Arc<RedisLink>, Arc<L2>)>,
        redelete_after: Duration,
        background: Background,
    ) -> Arc<Invalidator> {
        Arc::new(Invalidator {
            replica,
            tiers: tiers.into_iter().map(|t| (t.entity(), t)).collect(),
            shared,
            redelete_after,
            background,
        })
    }

    /// The entity names that can be invalidated.
    pub fn entities(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.tiers.keys().map(|e| e.name()).collect();
        names.sort_unstable();
        names
    }

    /// Drops `target` here, in L2, and (by broadcast) on every replica.
    /// Redis being down limits it to this replica and is not an error: the
    /// others' copies age out by their TTLs.
    pub async fn invalidate(&self, entity: Entity, target: Target) -> Result<(), Error> {
        let Some(tier) = self.tiers.get(&entity) else {
            return Err(Error::internal(format!("no cache for {entity}")));
        };
        tier.drop_local(&target);
        let Some((redis, l2)) = &self.shared else {
            return Ok(());
        };
        let entity = tier.entity().name();
        delete_shared(l2, entity, tier.composite(), &target).await;
        self.broadcast(redis, entity, &target).await;
        let (l2, composite, delay) = (l2.clone(), tier.composite(), self.redelete_after);
        self.background.spawn(async move {
            tokio::time::sleep(delay).await;
            delete_shared(&l2, entity, composite, &target).await;
        });
        Ok(())
    }

    /// Tells the other replicas to drop their L1 copies of `target`, after
    /// this replica wrote authoritative values for it into its L1 and L2:
    /// they read the new values from L2 at their next miss. Deleting L2 as
    /// `invalidate` does would throw the repair away.
    pub async fn refreshed(&self, entity: Entity, target: Target) -> Result<(), Error> {
        let Some(tier) = self.tiers.get(&entity) else {
            return Err(Error::internal(format!("no cache for {entity}")));
        };
        if let Some((redis, _)) = &self.shared {
            self.broadcast(redis, tier.entity().name(), &target).await;
        }
        Ok(())
    }

    /// Publishes `target` to every other replica's listener.
    async fn broadcast(&self, redis: &RedisLink, entity: &'static str, target: &Target) {
        let message = Message {
            from: self.replica.clone(),
            entity: entity.to_string(),
            target: target.clone(),
        };
        let channel = channel(redis);
        let Ok(payload) = serde_json::to_string(&message) else {
            return;
        };
        let published = redis
            .run("publish", |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
        if published.is_err() {
            tracing::warn!(
                entity,
                "Redis unavailable: invalidation applied on this replica only"
            );
        }
    }

    /// Subscribes to the broadcast and applies what other replicas send,
    /// as background work until it is stopped. Reconnects by itself when
    /// Redis comes back.
    pub fn listen(self: Arc<Self>) {
        let Some((redis, _)) = self.shared.clone() else {
            return;
        };
        let background = self.background.clone();
        background.spawn_loop(async move {
            let channel = channel(&redis);
            let mut backoff = Duration::from_millis(100);
            loop {
                let subscribed = async {
                    let mut pubsub = redis.client().get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                let pubsub = tokio::time::timeout(Duration::from_secs(2), subscribed).await;
                let mut pubsub = match pubsub {
                    Ok(Ok(p)) => p,
                    _ => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                };
                backoff = Duration::from_millis(100);
                // Whatever was broadcast while we were not listening is lost.
                for tier in self.tiers.values() {
                    tier.drop_local(&Target::All);
                }
                tracing::info!("subscribed to cache invalidations; L1 dropped as unvouched");
                let mut messages = pubsub.on_message();
                while let Some(m) = messages.next().await {
                    self.apply(m.get_payload_bytes());
                }
                tracing::warn!("lost the invalidation subscription; resubscribing");
            }
        });
    }

    fn apply(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Message>(payload) else {
            tracing::warn!("ignoring an invalidation message this build cannot read");
            return;
        };
        if message.from == self.replica {
            return;
        }
        if let Some(tier) = Entity::from_name(&message.entity).and_then(|e| self.tiers.get(&e)) {
            tier.drop_local(&message.target);
        }
    }
}

fn channel(redis: &RedisLink) -> String {
    redis.key(&["invalidate"])
}

async fn delete_shared(l2: &L2, entity: &str, composite: bool, target: &Target) {
    let result = match target {
        Target::Keys(keys) => l2.delete(entity, keys).await,
        Target::Ids(ids) => l2.delete_matching(entity, Some(ids), composite).await,
        Target::All => l2.delete_matching(entity, None, composite).await,
    };
    if result.is_err() {
        tracing::warn!(entity, "Redis unavailable: could not delete from L2");
    }
}
