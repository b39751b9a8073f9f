//! Fleet-wide tuning. An operator's rate limit or breaker change, made on
//! any replica, is kept in one Redis hash (`moat:v1:fleet:settings`) that
//! every replica reads twice a second and applies, replicas started later
//! included; `reset` hands a limit or breaker back to config everywhere.
//! (Purges are fleet-wide through the invalidation stream.) Without Redis,
//! or while it is away, a change stays on the replica that took it, and
//! the answer says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::background::Background;
use crate::config::SystemLimit;
use crate::redis_link::RedisLink;
use crate::resilience::breaker::Forced;
use crate::telemetry;
use crate::upstream::Protection;

/// How often each replica reads the shared settings (and says it lives).
const EVERY: Duration = Duration::from_millis(500);
/// A replica not heard from for this long is not counted as live.
const LIVE: Duration = Duration::from_secs(5);
/// A replica not heard from for this long is taken off the list.
const GONE: Duration = Duration::from_secs(60);

/// One stored change.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    value: Value,
    /// The replica that took the request, and who sent it.
    from: String,
    by: String,
}

/// A field of the hash: `limit:erp`, `breaker:erp`.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Limit,
    Breaker,
}

impl Setting {
    fn field(self, system: &str) -> String {
        match self {
            Setting::Limit => format!("limit:{system}"),
            Setting::Breaker => format!("breaker:{system}"),
        }
    }

    fn parse(field: &str) -> Option<(Setting, &str)> {
        match field.split_once(':')? {
            ("limit", system) => Some((Setting::Limit, system)),
            ("breaker", system) => Some((Setting::Breaker, system)),
            _ => None,
        }
    }
}

pub struct Fleet {
    replica: String,
    redis: Option<Arc<RedisLink>>,
    protection: Vec<Arc<Protection>>,
    /// What this replica last applied, by field (the stored value's JSON).
    applied: Mutex<HashMap<String, String>>,
}

impl Fleet {
    pub fn new(
        replica: String,
        redis: Option<Arc<RedisLink>>,
        protection: Vec<Arc<Protection>>,
    ) -> Arc<Fleet> {
        Arc::new(Fleet {
            replica,
            redis,
            protection,
            applied: Mutex::new(HashMap::new()),
        })
    }

    /// The replica's name in audit lines.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Sets `system`'s limit here and, through Redis, everywhere; true
    /// when the fleet has it.
    pub async fn set_limit(&self, system: &Protection, limit: SystemLimit, by: &str) -> bool {
        system.set_limit(limit);
        self.share(Setting::Limit, system, Some(serde_json::json!(limit)), by)
            .await
    }

    /// Hands `system`'s limit back to config, everywhere.
    pub async fn reset_limit(&self, system: &Protection, by: &str) -> bool {
        system.reset_limit();
        self.share(Setting::Limit, system, None, by).await
    }

    /// Forces `system`'s breaker (or hands it back, with `None`), everywhere.
    pub async fn force_breaker(
        &self,
        system: &Protection,
        forced: Option<Forced>,
        by: &str,
    ) -> bool {
        system.force_breaker(forced);
        let value = forced.map(|f| serde_json::json!(f));
        self.share(Setting::Breaker, system, value, by).await
    }

    /// After a config reload: the fleet's changes go back on top of it.
    pub fn reapply(&self) {
        self.lock().clear();
    }

    /// Reads and applies the shared settings twice a second.
    pub fn follow(self: Arc<Self>, background: &Background) {
        if self.redis.is_none() {
            return;
        }
        background.spawn_loop(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.catch_up().await;
            }
        });
    }

    async fn share(
        &self,
        setting: Setting,
        system: &Protection,
        value: Option<Value>,
        by: &str,
    ) -> bool {
        let Some(redis) = &self.redis else {
            return false;
        };
        let key = redis.key(&["fleet", "settings"]);
        let field = setting.field(system.system.name());
        let stored = value.map(|value| Stored {
            value,
            from: self.replica.clone(),
            by: by.to_string(),
        });
        let text = stored
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_default());
        let written = {
            let (key, field, text) = (key.clone(), field.clone(), text.clone());
            redis
                .run("fleet.write", |mut c| async move {
                    match text {
                        Some(text) => c.hset::<_, _, _, ()>(&key, &field, &text).await,
                        None => c.hdel::<_, _, ()>(&key, &field).await,
                    }
                })
                .await
        };
        if written.is_err() {
            tracing::warn!(field, "Redis is away: this change stays on this replica");
            return false;
        }
        let mut applied = self.lock();
        match stored {
            Some(s) => applied.insert(field, value_key(&s)),
            None => applied.remove(&field),
        };
        true
    }

    /// Says this replica lives, in one hash of heartbeats
    /// (`moat:v1:fleet:replicas`, replica → ms), and counts the live ones:
    /// each system's limit is shared among them when Redis is away.
    async fn heartbeat(&self) {
        let Some(redis) = &self.redis else {
            return;
        };
        let key = redis.key(&["fleet", "replicas"]);
        let (me, now) = (
            self.replica.clone(),
            crate::domain::Timestamp::now().millis(),
        );
        let Ok(beats) = redis
            .run("fleet.heartbeat", |mut c| async move {
                let (beats,): (HashMap<String, i64>,) = redis::pipe()
                    .hset(&key, &me, now)
                    .ignore()
                    .hgetall(&key)
                    .query_async(&mut c)
                    .await?;
                let gone: Vec<&String> = beats
                    .iter()
                    .filter(|(_, at)| now - **at > GONE.as_millis() as i64)
                    .map(|(r, _)| r)
                    .collect();
                if !gone.is_empty() {
                    c.hdel::<_, _, ()>(&key, gone).await?;
                }
                Ok(beats)
            })
            .await
        else {
            return;
        };
        let live = beats
            .values()
            .filter(|at| (now - **at).abs() <= LIVE.as_millis() as i64)
            .count()
            .max(1);
        for system in &self.protection {
            system.set_replicas(u32::try_from(live).unwrap_or(u32::MAX));
        }
    }

    /// Applies what changed in the shared settings since the last read.
    async fn catch_up(&self) {
        self.heartbeat().await;
        let Some(redis) = &self.redis else {
            return;
        };
        let key = redis.key(&["fleet", "settings"]);
        let Ok(shared) = redis
            .run("fleet.read", |mut c| async move {
                c.hgetall::<_, HashMap<String, String>>(&key).await
            })
            .await
        else {
            return;
        };
        let shared: HashMap<String, Stored> = shared
            .into_iter()
            .filter_map(|(field, text)| Some((field, serde_json::from_str(&text).ok()?)))
            .collect();
        let changes: Vec<(String, Option<Stored>)> = {
            let applied = self.lock();
            let mut changes: Vec<_> = shared
                .iter()
                .filter(|(field, s)| applied.get(*field) != Some(&value_key(s)))
                .map(|(field, s)| (field.clone(), Some(s.clone())))
                .collect();
            changes.extend(
                applied
                    .keys()
                    .filter(|field| !shared.contains_key(*field))
                    .map(|field| (field.clone(), None)),
            );
            changes
        };
        for (field, stored) in changes {
            self.apply(&field, stored.as_ref());
            let mut applied = self.lock();
            match stored {
                Some(s) => applied.insert(field, value_key(&s)),
                None => applied.remove(&field),
            };
        }
    }

    fn apply(&self, field: &str, stored: Option<&Stored>) {
        let Some((setting, name)) = Setting::parse(field) else {
            return;
        };
        let Some(system) = self.protection.iter().find(|p| p.system.name() == name) else {
            return;
        };
        let applied = match (setting, stored) {
            (Setting::Limit, Some(s)) => serde_json::from_value::<SystemLimit>(s.value.clone())
                .ok()
                .filter(|l| l.problem().is_none())
                .map(|l| system.set_limit(l))
                .is_some(),
            (Setting::Limit, None) => {
                system.reset_limit();
                true
            }
            (Setting::Breaker, Some(s)) => serde_json::from_value::<Forced>(s.value.clone())
                .map(|f| system.force_breaker(Some(f)))
                .is_ok(),
            (Setting::Breaker, None) => {
                system.force_breaker(None);
                true
            }
        };
        if applied {
            let (from, by) = stored.map_or(("-", "-"), |s| (s.from.as_str(), s.by.as_str()));
            telemetry::audit(telemetry::Audit {
                at: telemetry::unix_now(),
                who: format!("{by} (from replica {from})"),
                via: None,
                action: "fleet.apply".into(),
                target: field.to_string(),
                replica: self.replica.clone(),
                old: Value::Null,
                new: stored.map_or(Value::Null, |s| s.value.clone()),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What identifies a stored change: its value and who made it, so the same
/// value set again elsewhere is applied (and audited) again.
fn value_key(stored: &Stored) -> String {
    format!("{}|{}|{}", stored.value, stored.from, stored.by)
}
