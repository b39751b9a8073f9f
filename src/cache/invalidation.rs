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
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::key::Key;
use super::l2::L2;
use super::tier::{Tier, Value};
use crate::error::Error;
use crate::shared::Redis;

/// What to drop from one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Exact keys, encoded (`Key::encode`).
    Keys(Vec<String>),
    /// Everything under these ids (a sku covers all its prices).
    Ids(Vec<String>),
    /// The whole entity.
    All,
}

/// One broadcast.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The replica that sent it (which has already applied it).
    from: String,
    entity: String,
    target: Target,
}

/// A tier as the invalidator sees it: names in, entries out.
pub trait Invalidate: Send + Sync {
    fn entity(&self) -> &'static str;
    /// Whether purging by id must match key prefixes.
    fn composite(&self) -> bool;
    fn drop_local(&self, target: &Target);
}

impl<K: Key, V: Value> Invalidate for Tier<K, V> {
    fn entity(&self) -> &'static str {
        Tier::entity(self)
    }

    fn composite(&self) -> bool {
        K::COMPOSITE
    }

    fn drop_local(&self, target: &Target) {
        match target {
            Target::Keys(keys) => {
                let keys: Vec<K> = keys.iter().filter_map(|k| K::decode(k)).collect();
                self.invalidate(&keys);
            }
            Target::Ids(ids) => self.invalidate_where(|k| ids.iter().any(|id| id == k.id())),
            Target::All => self.invalidate_all(),
        }
    }
}

pub struct Invalidator {
    replica: String,
    tiers: HashMap<&'static str, Arc<dyn Invalidate>>,
    shared: Option<(Arc<Redis>, Arc<L2>)>,
    /// A second L2 delete this long after the first catches a value another
    /// replica fetched before the change and wrote after the first delete.
    redelete_after: Duration,
}

impl Invalidator {
    pub fn new(
        replica: String,
        tiers: Vec<Arc<dyn Invalidate>>,
        shared: Option<(Arc<Redis>, Arc<L2>)>,
        redelete_after: Duration,
    ) -> Arc<Invalidator> {
        Arc::new(Invalidator {
            replica,
            tiers: tiers.into_iter().map(|t| (t.entity(), t)).collect(),
            shared,
            redelete_after,
        })
    }

    /// The entity names that can be invalidated.
    pub fn entities(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.tiers.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Drops `target` here, in L2, and (by broadcast) on every replica.
    /// Redis being down limits it to this replica and is not an error: the
    /// others' copies age out by their TTLs.
    pub async fn invalidate(&self, entity: &str, target: Target) -> Result<(), Error> {
        let Some(tier) = self.tiers.get(entity) else {
            return Err(Error::bad_input(
                "entity",
                format!("{entity:?} is not one of {}", self.entities().join(", ")),
            ));
        };
        tier.drop_local(&target);
        let Some((redis, l2)) = &self.shared else {
            return Ok(());
        };
        delete_shared(l2, tier.entity(), tier.composite(), &target).await;
        self.broadcast(redis, tier.entity(), &target).await;
        let (l2, entity, composite, delay) = (
            l2.clone(),
            tier.entity(),
            tier.composite(),
            self.redelete_after,
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            delete_shared(&l2, entity, composite, &target).await;
        });
        Ok(())
    }

    /// Tells the other replicas to drop their L1 copies of `target`, after
    /// this replica wrote authoritative values for it into its L1 and L2:
    /// they read the new values from L2 at their next miss. Deleting L2 as
    /// `invalidate` does would throw the repair away.
    pub async fn refreshed(&self, entity: &str, target: Target) -> Result<(), Error> {
        let Some(tier) = self.tiers.get(entity) else {
            return Err(Error::internal(format!("no cache named {entity:?}")));
        };
        if let Some((redis, _)) = &self.shared {
            self.broadcast(redis, tier.entity(), &target).await;
        }
        Ok(())
    }

    /// Publishes `target` to every other replica's listener.
    async fn broadcast(&self, redis: &Redis, entity: &'static str, target: &Target) {
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
    /// until `stopped`. Reconnects by itself when Redis comes back.
    pub fn listen(self: Arc<Self>, mut stopped: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        let (redis, _) = self.shared.clone()?;
        Some(tokio::spawn(async move {
            let channel = channel(&redis);
            let mut backoff = Duration::from_millis(100);
            while !*stopped.borrow() {
                let subscribed = async {
                    let mut pubsub = redis.client().get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                let pubsub = tokio::select! {
                    r = tokio::time::timeout(Duration::from_secs(2), subscribed) => r,
                    _ = stopped.changed() => return,
                };
                let mut pubsub = match pubsub {
                    Ok(Ok(p)) => p,
                    _ => {
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stopped.changed() => return,
                        }
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
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(m) => self.apply(m.get_payload_bytes()),
                            None => break,
                        },
                        _ = stopped.changed() => return,
                    }
                }
                tracing::warn!("lost the invalidation subscription; resubscribing");
            }
        }))
    }

    fn apply(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Message>(payload) else {
            tracing::warn!("ignoring an invalidation message this build cannot read");
            return;
        };
        if message.from == self.replica {
            return;
        }
        if let Some(tier) = self.tiers.get(message.entity.as_str()) {
            tier.drop_local(&message.target);
        }
    }
}

fn channel(redis: &Redis) -> String {
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
