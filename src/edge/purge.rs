//! Purges reach the edge through a durable outbox. Every change this
//! replica applies (an event, a refetch, a reconciliation or checkout
//! repair, an operator's purge) is told here by the invalidator, and its
//! keys are appended, per target, to a Redis stream; one consumer group per
//! stream hands each entry to one replica, which sends it (with whatever
//! else waits, in batches of the target's size) and acknowledges it only
//! once the edge took it. An entry whose sender failed, or died, is claimed
//! again after `[edge] purge_retry`, by any replica.
//!
//! Nothing here ever holds up an answer or an event's acknowledgement:
//! appending is one short Redis call (the link's own timeout and breaker),
//! and when Redis cannot take it the keys wait in memory and are appended
//! once it is back. Without Redis the memory queue is the outbox.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use serde::Serialize;
use tokio::sync::Notify;

use super::keys;
use super::targets::{Failed, Target};
use crate::background::Background;
use crate::cache::invalidation::Changes;
use crate::config::{self, Secrets};
use crate::domain::Timestamp;
use crate::error::Error;
use crate::redis_link::RedisLink;
use crate::telemetry;
use crate::vocab::Entity;

/// The consumer group every replica reads a target's stream in.
const GROUP: &str = "edge";
/// Entries taken at once (their keys are then sent in the target's batches).
const TAKE: usize = 200;
/// How often an idle sender looks for entries other replicas appended.
const POLL: Duration = Duration::from_millis(200);

/// Keys waiting in memory (no Redis, or Redis away).
struct Waiting {
    keys: Vec<String>,
}

/// What the console and `moat doctor` show of one target.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub target: String,
    pub kind: &'static str,
    pub url: String,
    /// Purge requests the edge took, and those it did not (retried).
    pub sent: u64,
    pub failed: u64,
    /// Changes waiting to be sent (this replica's count of its memory queue,
    /// plus the stream's length with Redis).
    pub backlog: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<u64>,
}

struct Lane {
    target: Target,
    /// In memory: appended when Redis is back, or sent from here without it.
    waiting: Mutex<VecDeque<Waiting>>,
    status: Mutex<TargetStatus>,
    wake: Notify,
}

pub struct Purges {
    lanes: Vec<Arc<Lane>>,
    redis: Option<Arc<RedisLink>>,
    replica: String,
    backlog_max: usize,
    /// `[edge]` as in force (retry timing is live).
    settings: ArcSwap<config::Edge>,
    /// Where the senders and second purges run (set by `start`).
    background: std::sync::OnceLock<Background>,
    /// Itself, for the second purges spawned from `&self`.
    me: std::sync::OnceLock<std::sync::Weak<Purges>>,
}

impl Purges {
    /// The targets of `[[edge.purge]]`, with their `MOAT_EDGE_{KIND}_TOKEN`.
    /// A target whose vendor needs a token and has none stops the start.
    pub fn new(
        edge: &config::Edge,
        secrets: &Secrets,
        redis: Option<Arc<RedisLink>>,
        replica: String,
    ) -> Result<Arc<Purges>, Error> {
        let mut lanes = Vec::new();
        for (target, label) in edge.purge.iter().zip(edge.purge_labels()) {
            let token = secrets.edge_tokens.get(target.kind.name()).cloned();
            if target.kind.needs_token() && token.is_none() {
                return Err(Error::internal(format!(
                    "[[edge.purge]] {label}: {} is not set",
                    target.kind.token_variable()
                )));
            }
            let target = Target::new(label.clone(), target, token);
            let status = TargetStatus {
                target: label,
                kind: target.kind.name(),
                url: target.url().to_string(),
                ..TargetStatus::default()
            };
            lanes.push(Arc::new(Lane {
                target,
                waiting: Mutex::new(VecDeque::new()),
                status: Mutex::new(status),
                wake: Notify::new(),
            }));
        }
        Ok(Arc::new(Purges {
            lanes,
            redis,
            replica,
            backlog_max: edge.purge_backlog_max,
            settings: ArcSwap::from_pointee(edge.clone()),
            background: std::sync::OnceLock::new(),
            me: std::sync::OnceLock::new(),
        }))
    }

    /// Takes a reloaded `[edge]` (retry timing).
    pub fn reload(&self, edge: &config::Edge) {
        self.settings.store(Arc::new(edge.clone()));
    }

    pub fn configured(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// Each target's counts and last error.
    pub fn status(&self) -> Vec<TargetStatus> {
        self.lanes
            .iter()
            .map(|lane| lock(&lane.status).clone())
            .collect()
    }

    /// Queues a purge of `keys` at every target. Never waits on an edge.
    pub async fn enqueue(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        for lane in &self.lanes {
            let appended = match &self.redis {
                Some(redis) => self.append(redis, lane, &keys).await,
                None => false,
            };
            if !appended {
                self.hold(lane, keys.clone());
            }
            lane.wake.notify_one();
        }
    }

    fn hold(&self, lane: &Lane, keys: Vec<String>) {
        let mut waiting = lock(&lane.waiting);
        if waiting.len() >= self.backlog_max {
            waiting.pop_front();
            telemetry::edge_purge(&lane.target.label, "dropped");
        }
        waiting.push_back(Waiting { keys });
        telemetry::edge_purge_backlog(&lane.target.label, waiting.len());
    }

    fn stream(&self, redis: &RedisLink, lane: &Lane) -> String {
        redis.key(&["edge", "purge", &lane.target.label])
    }

    async fn append(&self, redis: &RedisLink, lane: &Lane, keys: &[String]) -> bool {
        let (stream, keys, max) = (self.stream(redis, lane), keys.join(" "), self.backlog_max);
        let at = Timestamp::now().millis();
        redis
            .run("edge_purge_append", |mut c| async move {
                redis::cmd("XADD")
                    .arg(&stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(max)
                    .arg("*")
                    .arg("keys")
                    .arg(keys)
                    .arg("at")
                    .arg(at)
                    .query_async::<String>(&mut c)
                    .await
            })
            .await
            .is_ok()
    }

    /// Starts one sender per target, as background work.
    pub fn start(self: &Arc<Self>, background: &Background) {
        let _ = self.background.set(background.clone());
        let _ = self.me.set(Arc::downgrade(self));
        for lane in &self.lanes {
            let (purges, lane) = (self.clone(), lane.clone());
            background.spawn_loop(async move { purges.send_forever(&lane).await });
        }
    }

    async fn send_forever(&self, lane: &Lane) {
        let mut backoff: Option<Duration> = None;
        let mut group_ready = false;
        loop {
            let taken = self.take(lane, &mut group_ready).await;
            if taken.is_empty() {
                let _ = tokio::time::timeout(POLL, lane.wake.notified()).await;
                continue;
            }
            let mut keys: Vec<String> = taken.iter().flat_map(|t| t.keys.iter().cloned()).collect();
            keys.sort_unstable();
            keys.dedup();
            let mut outcome = Ok(());
            for batch in keys.chunks(lane.target.max_keys.max(1)) {
                outcome = lane.target.purge(batch).await;
                let mut status = lock(&lane.status);
                match &outcome {
                    Ok(()) => {
                        status.sent += 1;
                        status.last_sent_at = Some(telemetry::unix_now());
                        telemetry::edge_purge(&lane.target.label, "sent");
                    }
                    Err(failed) => {
                        status.failed += 1;
                        status.last_error = Some(failed.reason.clone());
                        status.last_error_at = Some(telemetry::unix_now());
                        telemetry::edge_purge(&lane.target.label, "failed");
                    }
                }
                if outcome.is_err() {
                    break;
                }
            }
            match outcome {
                Ok(()) => {
                    backoff = None;
                    self.done(lane, taken).await;
                }
                Err(Failed {
                    reason,
                    retry_after,
                }) => {
                    tracing::warn!(target = %lane.target.label, %reason, "edge purge failed; it is retried");
                    self.retry_later(lane, taken);
                    let settings = self.settings.load();
                    let wait = backoff
                        .map_or(settings.purge_retry, |b| b * 2)
                        .min(settings.purge_retry_max);
                    backoff = Some(wait);
                    tokio::time::sleep(retry_after.unwrap_or(wait).max(wait)).await;
                }
            }
        }
    }

    /// The next entries to send: those in memory first (appended to Redis
    /// if it is back, else sent from here), then the stream's.
    async fn take(&self, lane: &Lane, group_ready: &mut bool) -> Vec<Taken> {
        let Some(redis) = &self.redis else {
            return self.take_memory(lane);
        };
        // Move what waited in memory into the stream, oldest first.
        loop {
            let Some(next) = lock(&lane.waiting).pop_front() else {
                break;
            };
            if !self.append(redis, lane, &next.keys).await {
                lock(&lane.waiting).push_front(next);
                // Redis is away: send from memory meanwhile.
                return self.take_memory(lane);
            }
        }
        let stream = self.stream(redis, lane);
        if !*group_ready {
            *group_ready = create_group(redis, &stream).await;
            if !*group_ready {
                return Vec::new();
            }
        }
        let idle = self.settings.load().purge_retry;
        let consumer = self.replica.clone();
        let claimed = {
            let (stream, consumer) = (stream.clone(), consumer.clone());
            redis
                .run("edge_purge_claim", |mut c| async move {
                    redis::cmd("XAUTOCLAIM")
                        .arg(&stream)
                        .arg(GROUP)
                        .arg(&consumer)
                        .arg(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX))
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(TAKE)
                        .query_async::<StreamAutoClaimReply>(&mut c)
                        .await
                })
                .await
        };
        let mut taken: Vec<Taken> = match claimed {
            Ok(reply) => reply.claimed.iter().filter_map(Taken::from_entry).collect(),
            Err(_) => {
                // The group may be gone with the stream (Redis restarted).
                *group_ready = false;
                return Vec::new();
            }
        };
        if taken.is_empty() {
            let read = redis
                .run("edge_purge_read", |mut c| async move {
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(&consumer)
                        .arg("COUNT")
                        .arg(TAKE)
                        .arg("STREAMS")
                        .arg(&stream)
                        .arg(">")
                        .query_async::<Option<StreamReadReply>>(&mut c)
                        .await
                })
                .await;
            match read {
                Ok(reply) => {
                    let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                    taken = entries.filter_map(|e| Taken::from_entry(&e)).collect();
                }
                Err(_) => *group_ready = false,
            }
        }
        self.count_backlog(redis, lane).await;
        taken
    }

    fn take_memory(&self, lane: &Lane) -> Vec<Taken> {
        let mut waiting = lock(&lane.waiting);
        let n = waiting.len().min(TAKE);
        let taken = waiting
            .drain(..n)
            .map(|w| Taken {
                id: None,
                keys: w.keys,
            })
            .collect();
        telemetry::edge_purge_backlog(&lane.target.label, waiting.len());
        lock(&lane.status).backlog = waiting.len();
        taken
    }

    async fn count_backlog(&self, redis: &RedisLink, lane: &Lane) {
        let stream = self.stream(redis, lane);
        let length = redis
            .run("edge_purge_len", |mut c| async move {
                redis::cmd("XLEN")
                    .arg(&stream)
                    .query_async::<usize>(&mut c)
                    .await
            })
            .await;
        if let Ok(length) = length {
            let waiting = length + lock(&lane.waiting).len();
            telemetry::edge_purge_backlog(&lane.target.label, waiting);
            lock(&lane.status).backlog = waiting;
        }
    }

    /// The edge took them: acknowledged and deleted from the stream.
    async fn done(&self, lane: &Lane, taken: Vec<Taken>) {
        let ids: Vec<String> = taken.into_iter().filter_map(|t| t.id).collect();
        let Some(redis) = self.redis.as_ref().filter(|_| !ids.is_empty()) else {
            return;
        };
        let stream = self.stream(redis, lane);
        // If this fails the entries are claimed and sent again: a purge
        // twice is harmless, a purge lost is not.
        let _ = redis
            .run("edge_purge_ack", |mut c| async move {
                redis::pipe()
                    .cmd("XACK")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&ids)
                    .ignore()
                    .cmd("XDEL")
                    .arg(&stream)
                    .arg(&ids)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    /// The edge did not take them: stream entries stay pending and are
    /// claimed again after `purge_retry`; memory entries go back in front.
    fn retry_later(&self, lane: &Lane, taken: Vec<Taken>) {
        let mut waiting = lock(&lane.waiting);
        for t in taken.into_iter().rev().filter(|t| t.id.is_none()) {
            waiting.push_front(Waiting { keys: t.keys });
        }
    }
}

/// One change taken to send.
struct Taken {
    /// Its stream entry (`None`: from memory).
    id: Option<String>,
    keys: Vec<String>,
}

impl Taken {
    fn from_entry(entry: &StreamId) -> Option<Taken> {
        let keys: String = entry.get("keys")?;
        Some(Taken {
            id: Some(entry.id.clone()),
            keys: keys
                .split(' ')
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// Creates the consumer group (and the stream), from the stream's start so
/// entries appended before any replica read are sent too.
async fn create_group(redis: &RedisLink, stream: &str) -> bool {
    let stream = stream.to_string();
    let created = redis
        .run("edge_purge_group", |mut c| async move {
            match redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async::<()>(&mut c)
                .await
            {
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                other => other,
            }
        })
        .await;
    created.is_ok()
}

/// What the invalidator tells: the change's keys go to every target, now
/// and once more after `[edge] purge_again_after`. The second purge is for
/// an edge that refetched in between from a replica that had not heard of
/// the change yet (the invalidation stream takes up to a second), and so
/// cached the old value again.
impl Changes for Purges {
    fn changed(&self, entity: Entity, ids: Option<Vec<String>>) -> BoxFuture<'_, ()> {
        async move {
            if !self.configured() || !edge_entity(entity) {
                return;
            }
            let keys = keys::purge_keys(entity, ids.as_deref());
            self.enqueue(keys.clone()).await;
            let again = self.settings.load().purge_again_after;
            if let (false, Some(background), Some(me)) =
                (again.is_zero(), self.background.get(), self.me.get())
            {
                let me = me.clone();
                background.spawn(async move {
                    tokio::time::sleep(again).await;
                    if let Some(purges) = me.upgrade() {
                        purges.enqueue(keys).await;
                    }
                });
            }
        }
        .boxed()
    }
}

/// Whether answers holding `entity` can be at the edge at all.
fn edge_entity(entity: Entity) -> bool {
    !entity.personal()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
