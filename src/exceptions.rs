//! The mismatch path: every difference Moat finds between what it held and
//! what a system of record says (reconciliation drift, a checkout
//! mismatch, a payload that broke the contract) is recorded as an
//! exception, with both values, who found it and when, so the team that
//! owns the system can see exactly what went wrong. Kept in a bounded
//! Redis stream shared by the fleet (in memory while Redis is away), and
//! listed by `GET /admin/exceptions` and `moat admin exceptions`.
//!
//! Recording never waits: it queues, and a background flush appends to
//! the stream, so a contract check on the request path costs nothing more.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use redis::streams::StreamRangeReply;
use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;
use crate::redis_link::RedisLink;
use crate::telemetry;

/// Who found a mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    Reconcile,
    Checkout,
    Contract,
}

impl FoundBy {
    pub fn name(self) -> &'static str {
        match self {
            FoundBy::Reconcile => "reconcile",
            FoundBy::Checkout => "checkout",
            FoundBy::Contract => "contract",
        }
    }
}

/// One mismatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exception {
    /// When it was found (RFC 3339).
    pub at: String,
    /// The system of record that owns the entity.
    pub system: String,
    pub entity: String,
    /// Which one (a sku, an id, a cache key).
    pub key: String,
    /// What Moat held (or was shown to the shopper), when there was one.
    pub held: Option<String>,
    /// What the owner says now (or why its payload was refused).
    pub owner_says: Option<String>,
    pub found_by: FoundBy,
}

impl Exception {
    pub fn new(
        system: &str,
        entity: &str,
        key: &str,
        held: Option<String>,
        owner_says: Option<String>,
        found_by: FoundBy,
    ) -> Exception {
        Exception {
            at: Timestamp::now().to_string(),
            system: system.to_string(),
            entity: entity.to_string(),
            key: key.to_string(),
            held,
            owner_says,
            found_by,
        }
    }
}

/// How many exceptions are kept (in the stream, and in memory).
const KEEP: usize = 10_000;

pub struct Exceptions {
    redis: Option<Arc<RedisLink>>,
    /// Recorded, not yet in the stream.
    pending: Mutex<VecDeque<Exception>>,
    /// The newest ones, for listing while Redis is away (or absent).
    recent: Mutex<VecDeque<Exception>>,
}

impl Exceptions {
    pub fn new(redis: Option<Arc<RedisLink>>) -> Arc<Exceptions> {
        Arc::new(Exceptions {
            redis,
            pending: Mutex::new(VecDeque::new()),
            recent: Mutex::new(VecDeque::new()),
        })
    }

    /// Records one (and counts it in `moat_exceptions_total`).
    pub fn record(&self, exception: Exception) {
        metrics::counter!(
            telemetry::EXCEPTIONS,
            "system" => exception.system.clone(),
            "entity" => exception.entity.clone(),
            "found_by" => exception.found_by.name(),
        )
        .increment(1);
        push_bounded(&self.recent, exception.clone());
        if self.redis.is_some() {
            push_bounded(&self.pending, exception);
        }
    }

    /// Appends what is queued to the shared stream; what Redis does not
    /// take waits for the next flush.
    pub async fn flush(&self) {
        let Some(redis) = &self.redis else {
            return;
        };
        let queued: Vec<Exception> = lock(&self.pending).drain(..).collect();
        if queued.is_empty() {
            return;
        }
        let key = redis.key(&["exceptions"]);
        let payloads: Vec<String> = queued
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect();
        let written = redis
            .run("exceptions", |mut c| async move {
                let mut pipe = redis::pipe();
                for payload in &payloads {
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(KEEP)
                        .arg("*")
                        .arg("e")
                        .arg(payload)
                        .ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        if written.is_err() {
            let mut pending = lock(&self.pending);
            for e in queued.into_iter().rev() {
                pending.push_front(e);
            }
            pending.truncate(KEEP);
        }
    }

    /// The newest exceptions first, up to `limit`, of `system` and
    /// `entity` when given: the fleet's (from Redis), else this replica's.
    pub async fn list(
        &self,
        system: Option<&str>,
        entity: Option<&str>,
        limit: usize,
    ) -> Vec<Exception> {
        let wanted = |e: &Exception| {
            system.is_none_or(|s| e.system == s) && entity.is_none_or(|n| e.entity == n)
        };
        if let Some(redis) = &self.redis {
            self.flush().await;
            let key = redis.key(&["exceptions"]);
            let shared: Result<StreamRangeReply, _> = redis
                .run("exceptions", |mut c| async move {
                    redis::cmd("XREVRANGE")
                        .arg(&key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(KEEP)
                        .query_async(&mut c)
                        .await
                })
                .await;
            if let Ok(shared) = shared {
                return shared
                    .ids
                    .iter()
                    .filter_map(|entry| entry.get::<String>("e"))
                    .filter_map(|text| serde_json::from_str::<Exception>(&text).ok())
                    .filter(|e| wanted(e))
                    .take(limit)
                    .collect();
            }
        }
        lock(&self.recent)
            .iter()
            .rev()
            .filter(|e| wanted(e))
            .take(limit)
            .cloned()
            .collect()
    }
}

fn lock(queue: &Mutex<VecDeque<Exception>>) -> std::sync::MutexGuard<'_, VecDeque<Exception>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

fn push_bounded(queue: &Mutex<VecDeque<Exception>>, exception: Exception) {
    let mut queue = lock(queue);
    if queue.len() >= KEEP {
        queue.pop_front();
    }
    queue.push_back(exception);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recorded_exceptions_are_listed_newest_first_and_filtered() {
        let exceptions = Exceptions::new(None);
        for (system, entity, key) in [
            ("erp", "price", "a"),
            ("pim", "product", "b"),
            ("erp", "inventory", "c"),
        ] {
            exceptions.record(Exception::new(
                system,
                entity,
                key,
                Some("held".into()),
                Some("owner".into()),
                FoundBy::Reconcile,
            ));
        }
        let all = exceptions.list(None, None, 10).await;
        assert_eq!(
            all.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        let erp = exceptions.list(Some("erp"), None, 10).await;
        assert_eq!(erp.len(), 2);
        let prices = exceptions.list(Some("erp"), Some("price"), 10).await;
        assert_eq!(prices.len(), 1);
        assert_eq!(prices[0].owner_says.as_deref(), Some("owner"));
    }
}
