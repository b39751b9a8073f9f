//! The dead-letter queue: events that could not be applied after their
//! retries, parked in a Redis stream with why and how often they failed,
//! until an operator replays or discards them. Each entry keeps the event
//! in Moat's envelope, so a replay applies exactly what was sent.
//!
//! The stream is capped (`[events] dlq_max_len`): a long outage must not
//! fill Redis, which also holds the shared cache. Past the cap the oldest
//! entries go, each counted in `moat_dlq_trimmed_total` (an alert), and
//! reconciliation repairs what their events would have changed.

use std::sync::Arc;

use redis::streams::StreamRangeReply;
use serde::Serialize;

use crate::domain::Timestamp;
use crate::redis_link::{RedisLink, Unavailable};
use crate::telemetry;

/// One parked event, as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The queue's id of the entry (what replay and discard take).
    pub id: String,
    pub event_id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
    pub attempts: u32,
    pub parked_at: String,
    /// The event in Moat's envelope.
    #[serde(skip)]
    pub envelope: String,
}

pub struct DeadLetters {
    redis: Option<Arc<RedisLink>>,
}

/// An event to park, and why.
pub struct Letter<'a> {
    pub event_id: &'a str,
    pub source: &'a str,
    pub kind: &'a str,
    /// The event in Moat's envelope.
    pub envelope: &'a str,
    pub reason: &'a str,
    pub attempts: u32,
}

impl DeadLetters {
    pub fn new(redis: Option<Arc<RedisLink>>) -> DeadLetters {
        DeadLetters { redis }
    }

    fn link(&self) -> Result<&Arc<RedisLink>, Unavailable> {
        self.redis.as_ref().ok_or(Unavailable)
    }

    fn key(redis: &RedisLink) -> String {
        redis.key(&["dlq"])
    }

    /// Parks an event, then trims the queue to its newest `max_len`
    /// entries; its queue id.
    pub async fn park(&self, letter: Letter<'_>, max_len: u64) -> Result<String, Unavailable> {
        let redis = self.link()?;
        let key = Self::key(redis);
        let fields = [
            ("event_id", letter.event_id.to_string()),
            ("source", letter.source.to_string()),
            ("type", letter.kind.to_string()),
            ("envelope", letter.envelope.to_string()),
            ("reason", letter.reason.to_string()),
            ("attempts", letter.attempts.to_string()),
            ("parked_at", Timestamp::now().to_string()),
        ];
        let (id, trimmed) = redis
            .run("dlq.park", |mut c| async move {
                let mut pipe = redis::pipe();
                let add = pipe.cmd("XADD").arg(&key).arg("*");
                for (name, value) in &fields {
                    add.arg(*name).arg(value);
                }
                // Trimmed apart from the XADD, exactly (`=`), for its
                // count: what is dropped is known and counted.
                pipe.cmd("XTRIM")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("=")
                    .arg(max_len);
                pipe.query_async::<(String, u64)>(&mut c).await
            })
            .await?;
        if trimmed > 0 {
            metrics::counter!(telemetry::DLQ_TRIMMED).increment(trimmed);
            tracing::warn!(
                trimmed,
                max_len,
                "the dead-letter queue is full: its oldest entries were dropped"
            );
        }
        self.publish_depth().await;
        Ok(id)
    }

    /// Up to `limit` entries after queue id `after` (from the start without
    /// it), oldest first, and the id to continue after when there are more.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, Option<String>), Unavailable> {
        let redis = self.link()?;
        let key = Self::key(redis);
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let count = limit + 1;
        let reply: StreamRangeReply = redis
            .run("dlq.list", |mut c| async move {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut letters: Vec<DeadLetter> = reply.ids.into_iter().filter_map(letter).collect();
        let next = (letters.len() > limit).then(|| {
            letters.truncate(limit);
            letters.last().map(|l| l.id.clone())
        });
        Ok((letters, next.flatten()))
    }

    /// The entries with these queue ids (those that exist).
    pub async fn get(&self, ids: &[String]) -> Result<Vec<DeadLetter>, Unavailable> {
        let redis = self.link()?;
        let key = Self::key(redis);
        let ids = ids.to_vec();
        let replies: Vec<StreamRangeReply> = redis
            .run("dlq.get", |mut c| async move {
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("XRANGE").arg(&key).arg(id).arg(id);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        Ok(replies
            .into_iter()
            .flat_map(|r| r.ids)
            .filter_map(letter)
            .collect())
    }

    /// Every entry, oldest first.
    pub async fn all(&self) -> Result<Vec<DeadLetter>, Unavailable> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self.list(after.as_deref(), 500).await?;
            all.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// Removes an entry; false when there was none.
    pub async fn remove(&self, id: &str) -> Result<bool, Unavailable> {
        let redis = self.link()?;
        let (key, id) = (Self::key(redis), id.to_string());
        let removed: i64 = redis
            .run("dlq.remove", |mut c| async move {
                redis::cmd("XDEL")
                    .arg(&key)
                    .arg(&id)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        self.publish_depth().await;
        Ok(removed > 0)
    }

    /// Entries waiting; also sets `moat_dlq_depth`.
    pub async fn depth(&self) -> Result<u64, Unavailable> {
        let redis = self.link()?;
        let key = Self::key(redis);
        let depth: u64 = redis
            .run("dlq.depth", |mut c| async move {
                redis::cmd("XLEN").arg(&key).query_async(&mut c).await
            })
            .await?;
        metrics::gauge!(telemetry::DLQ_DEPTH).set(depth as f64);
        Ok(depth)
    }

    async fn publish_depth(&self) {
        let _ = self.depth().await;
    }
}

fn letter(entry: redis::streams::StreamId) -> Option<DeadLetter> {
    let field = |name: &str| -> Option<String> { entry.get(name) };
    Some(DeadLetter {
        event_id: field("event_id")?,
        source: field("source")?,
        kind: field("type")?,
        envelope: field("envelope")?,
        reason: field("reason").unwrap_or_default(),
        attempts: field("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
        parked_at: field("parked_at").unwrap_or_default(),
        id: entry.id,
    })
}
