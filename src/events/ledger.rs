//! What the fleet has seen: which event ids were handled (so a redelivery
//! is a duplicate, on any replica) and the newest version applied per
//! entity (so an older version arriving late is stale). Both live in Redis,
//! with a retention window; while Redis is away each replica keeps its own
//! in process. A claim made there while Redis is configured but away says
//! so ([`Claim::Unavailable`]): a fat event is then refused (503), since a
//! redelivery reaching another replica would be applied twice and the
//! others would not hear of it. Versions are
//! compared exactly, in Redis as here; reconciliation lowers one that ran
//! ahead of its owner ([`SeenVersions`]), so a forged or buggy version
//! cannot make the record's later events stale.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::envelope::MAX_VERSION;
use crate::cache::Key;
use crate::redis_link::RedisLink;
use crate::vocab::Entity;

/// What claiming an event id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody has it: this replica handles it.
    New,
    /// Handled before.
    Done,
    /// Another delivery of it is being handled right now.
    Busy,
    /// Nobody here has it, but Redis, where replicas share which events
    /// they have handled, does not answer: handled here, the event could
    /// be applied again by a replica its redelivery reaches, and the others
    /// would not hear of it.
    Unavailable,
}

/// How long a claim lasts if its holder dies before settling it.
const CLAIM: Duration = Duration::from_secs(30);

/// How long a delivery waits for another delivery of the same event to
/// finish, and how often it looks: long enough for a refetch, well under
/// the 5 s Akeneo allows for a reply.
const PATIENCE: Duration = Duration::from_secs(2);
const LOOK_AGAIN: Duration = Duration::from_millis(25);

/// Lua that compares versions exactly. Redis scripts read numbers as
/// doubles, which stop being exact past 2^53 (there `2^53+1 > 2^53` is
/// false), so versions are compared as the decimal text Moat writes: by
/// length, then as two halves of at most ten digits, each exact. A held
/// value that is not such a number, or is past `MAX_VERSION` (left by a
/// build that took any u64), is not trusted: it counts as none.
const EXACT: &str = r"
local function above(a, b)
  if #a ~= #b then return #a > #b end
  if #a <= 15 then return tonumber(a) > tonumber(b) end
  local ha, hb = tonumber(string.sub(a, 1, -11)), tonumber(string.sub(b, 1, -11))
  if ha ~= hb then return ha > hb end
  return tonumber(string.sub(a, -10)) > tonumber(string.sub(b, -10))
end
local function trusted(held, max)
  if not held then return false end
  if held ~= '0' and not string.match(held, '^[1-9]%d*$') then return false end
  if above(held, max) then return false end
  return held
end
";

/// Sets the version if it is newer than the one held. KEYS[1] the entity;
/// ARGV[1] the version; ARGV[2] ms to keep it; ARGV[3] `MAX_VERSION`. The
/// version held before (`none` for none) when newer, `stale` when not.
static ADVANCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{EXACT}
          local held = trusted(redis.call('GET', KEYS[1]), ARGV[3])
          if held and not above(ARGV[1], held) then return 'stale' end
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return held or 'none'"
    ))
});

/// Puts back the version held before, if ours is still the newest.
/// KEYS[1] the entity; ARGV[1] ours; ARGV[2] the one before (empty: none);
/// ARGV[3] ms to keep it.
static RETREAT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
          if ARGV[2] == '' then redis.call('DEL', KEYS[1])
          else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
          return 1",
    )
});

/// Lowers each entity's version to its owner's where it is ahead (or is
/// not a version at all). KEYS the entities; ARGV[1] ms to keep them;
/// ARGV[2] `MAX_VERSION`; ARGV[2 + i] the owner's version of KEYS[i]. Per
/// key, the version held before when it was lowered, else an empty string.
static LOWER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{EXACT}
          local lowered = {{}}
          for i, key in ipairs(KEYS) do
            local owner = ARGV[i + 2]
            local held = redis.call('GET', key)
            lowered[i] = ''
            if held and (not trusted(held, ARGV[2]) or above(held, owner)) then
              redis.call('SET', key, owner, 'PX', ARGV[1])
              lowered[i] = held
            end
          end
          return lowered"
    ))
});

/// What recording a version found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Newer than any seen: recorded. The one seen before, to put back if
    /// the event cannot be applied after all.
    Newer(Option<u64>),
    /// As old as or older than one seen: the event is stale.
    NotNewer,
}

pub struct Ledger {
    redis: Option<Arc<RedisLink>>,
    retention: Duration,
    /// Event ids, when Redis is away (or not configured).
    seen: moka::sync::Cache<String, Claim>,
    /// Newest versions, likewise.
    versions: moka::sync::Cache<String, u64>,
}

impl Ledger {
    pub fn new(redis: Option<Arc<RedisLink>>, retention: Duration) -> Ledger {
        Ledger {
            redis,
            retention,
            seen: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(retention)
                .build(),
            versions: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(retention)
                .build(),
        }
    }

    /// Claims event `id` of `source` for handling.
    async fn claim(&self, source: &str, id: &str) -> Claim {
        let key = format!("{source}:{id}");
        if let Some(redis) = &self.redis {
            let redis_key = redis.key(&["event", source, id]);
            let claimed = redis
                .run("event.claim", |mut c| async move {
                    let set: Option<String> = redis::cmd("SET")
                        .arg(&redis_key)
                        .arg("busy")
                        .arg("NX")
                        .arg("PX")
                        .arg(CLAIM.as_millis() as u64)
                        .query_async(&mut c)
                        .await?;
                    if set.is_some() {
                        return Ok(None);
                    }
                    let held: Option<String> = redis::cmd("GET")
                        .arg(&redis_key)
                        .query_async(&mut c)
                        .await?;
                    Ok(held)
                })
                .await;
            match claimed {
                Ok(None) => return Claim::New,
                Ok(Some(held)) if held == "done" => return Claim::Done,
                Ok(Some(_)) => return Claim::Busy,
                Err(_) => return self.claim_here(key, Claim::Unavailable),
            }
        }
        self.claim_here(key, Claim::New)
    }

    /// Claims `id`, waiting while another delivery of it is handled: a
    /// copy that arrives mid-apply answers as a duplicate once that one
    /// settles (or takes over if it gives the claim back), rather than a
    /// 503 its sender must retry; Akeneo retries only after 5 minutes and
    /// counts the failure against the subscription. [`Claim::Busy`] only
    /// when the other delivery takes longer than [`PATIENCE`].
    pub async fn claim_patiently(&self, source: &str, id: &str) -> Claim {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let claim = self.claim(source, id).await;
            if claim != Claim::Busy || tokio::time::Instant::now() >= deadline {
                return claim;
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
    }

    /// Claims in this replica's memory: `new` if it has not seen the id.
    fn claim_here(&self, key: String, new: Claim) -> Claim {
        match self.seen.get(&key) {
            Some(Claim::Done) => Claim::Done,
            Some(_) => Claim::Busy,
            None => {
                self.seen.insert(key, Claim::Busy);
                new
            }
        }
    }

    /// Marks a claimed event handled (applied, stale or parked).
    pub async fn settle(&self, source: &str, id: &str) {
        self.seen.insert(format!("{source}:{id}"), Claim::Done);
        if let Some(redis) = &self.redis {
            let key = redis.key(&["event", source, id]);
            let ms = self.retention.as_millis() as u64;
            let _ = redis
                .run("event.settle", |mut c| async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg("done")
                        .arg("PX")
                        .arg(ms)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        }
    }

    /// Gives a claim back: the event was neither applied nor parked, and
    /// its sender will deliver it again.
    pub async fn release(&self, source: &str, id: &str) {
        self.seen.invalidate(&format!("{source}:{id}"));
        if let Some(redis) = &self.redis {
            let key = redis.key(&["event", source, id]);
            let _ = redis
                .run("event.release", |mut c| async move {
                    redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await
                })
                .await;
        }
    }

    /// Records `version` for `entity` if it is newer than the newest seen.
    pub async fn advance(&self, entity: &str, version: u64) -> Advance {
        if let Some(redis) = &self.redis {
            let args = [version.to_string(), self.keep_ms(), MAX_VERSION.to_string()];
            let held = version_script::<String>(redis, &ADVANCE, entity, args).await;
            if let Ok(held) = held {
                if held == "stale" {
                    return Advance::NotNewer;
                }
                self.versions.insert(entity.to_string(), version);
                return Advance::Newer(held.parse().ok());
            }
        }
        let mut before = None;
        let entry = self
            .versions
            .entry(entity.to_string())
            .and_compute_with(|held| match held.map(|e| e.into_value()) {
                Some(held) if held >= version => moka::ops::compute::Op::Nop,
                held => {
                    before = held;
                    moka::ops::compute::Op::Put(version)
                }
            });
        match entry {
            moka::ops::compute::CompResult::Inserted(_)
            | moka::ops::compute::CompResult::ReplacedWith(_) => Advance::Newer(before),
            _ => Advance::NotNewer,
        }
    }

    /// Undoes `advance` when the event could not be applied, so its
    /// redelivery (or replay) is not taken for stale.
    pub async fn retreat(&self, entity: &str, version: u64, before: Option<u64>) {
        match before {
            Some(b) => self.versions.insert(entity.to_string(), b),
            None => self.versions.invalidate(entity),
        }
        if let Some(redis) = &self.redis {
            let before = before.map(|b| b.to_string()).unwrap_or_default();
            let args = [version.to_string(), before, self.keep_ms()];
            let _ = version_script::<i64>(redis, &RETREAT, entity, args).await;
        }
    }

    /// Sets each `(_, vkey, owner)` to `owner` where the version held is
    /// ahead of it; per entry, the version held before when it was lowered
    /// (`u64::MAX` for text no version could be).
    async fn lower(&self, vkeys: &[(usize, String, u64)]) -> Vec<Option<u64>> {
        let mut lowered = vec![None; vkeys.len()];
        for ((_, vkey, owner), slot) in vkeys.iter().zip(lowered.iter_mut()) {
            if let Some(held) = self.versions.get(vkey)
                && held > *owner
            {
                self.versions.insert(vkey.clone(), *owner);
                *slot = Some(held);
            }
        }
        let Some(redis) = &self.redis else {
            return lowered;
        };
        if vkeys.is_empty() {
            return lowered;
        }
        let keys: Vec<String> = vkeys
            .iter()
            .map(|(_, vkey, _)| redis.key(&["version", vkey]))
            .collect();
        let owners: Vec<String> = vkeys.iter().map(|(_, _, v)| v.to_string()).collect();
        let ms = self.retention.as_millis() as u64;
        // One call per cluster slot: each key is lowered on its own.
        let groups = redis.by_slot(&keys);
        let shared = redis
            .run("event.version", |c| async move {
                let calls = groups.iter().map(|group| {
                    let mut c = c.clone();
                    let mut call = LOWER.prepare_invoke();
                    for &i in group {
                        call.key(&keys[i]);
                    }
                    call.arg(ms).arg(MAX_VERSION.to_string());
                    for &i in group {
                        call.arg(&owners[i]);
                    }
                    async move { call.invoke_async::<Vec<String>>(&mut c).await }
                });
                let replies = futures_util::future::try_join_all(calls).await?;
                let mut held = vec![String::new(); keys.len()];
                for (group, reply) in groups.iter().zip(replies) {
                    for (&i, h) in group.iter().zip(reply) {
                        held[i] = h;
                    }
                }
                Ok(held)
            })
            .await;
        if let Ok(shared) = shared {
            for (held, slot) in shared.into_iter().zip(lowered.iter_mut()) {
                if !held.is_empty() {
                    let held = held.parse().unwrap_or(u64::MAX);
                    *slot = Some(slot.map_or(held, |s| s.max(held)));
                }
            }
        }
        lowered
    }
}

/// The key of the newest version seen of one entity: `key` is a cache
/// key's text, or an id's for events that name every key of it.
pub fn version_key(entity: Entity, key: &str) -> String {
    format!("{}:{key}", entity.name())
}

/// The newest versions events announced, as reconciliation sees them: the
/// owner is the truth, so a version seen ahead of what the owner says is
/// lowered to it (and reported), and the record's next event applies.
#[derive(Clone)]
pub struct SeenVersions {
    ledger: Arc<Ledger>,
}

impl SeenVersions {
    pub(super) fn new(ledger: Arc<Ledger>) -> SeenVersions {
        SeenVersions { ledger }
    }

    /// Lowers what events recorded of each key (and of its id, which thin
    /// events about every key of an id record) to the owner's version
    /// where it is ahead. The keys whose seen version was ahead, with it.
    pub async fn correct<K: Key>(&self, entity: Entity, owner: &[(K, u64)]) -> Vec<(K, u64)> {
        let mut vkeys: Vec<(usize, String, u64)> = Vec::new();
        for (i, (key, version)) in owner.iter().enumerate() {
            let own = version_key(entity, &key.encode());
            let of_id = version_key(entity, &key.id().to_string().encode());
            if of_id != own {
                vkeys.push((i, of_id, *version));
            }
            vkeys.push((i, own, *version));
        }
        let lowered = self.ledger.lower(&vkeys).await;
        let mut ahead: Vec<(K, u64)> = Vec::new();
        for ((i, _, _), held) in vkeys.iter().zip(lowered) {
            let Some(held) = held else { continue };
            match ahead.iter_mut().find(|(k, _)| *k == owner[*i].0) {
                Some((_, seen)) => *seen = (*seen).max(held),
                None => ahead.push((owner[*i].0.clone(), held)),
            }
        }
        ahead
    }
}

impl Ledger {
    /// How long a recorded version is kept, as the scripts take it.
    fn keep_ms(&self) -> String {
        self.retention.as_millis().to_string()
    }
}

/// Runs a version script (`ADVANCE`, `RETREAT`) on `entity`'s key.
async fn version_script<T: redis::FromRedisValue>(
    redis: &RedisLink,
    script: &'static redis::Script,
    entity: &str,
    args: [String; 3],
) -> Result<T, crate::redis_link::Unavailable> {
    let key = redis.key(&["version", entity]);
    redis
        .run("event.version", |mut c| async move {
            script
                .key(&key)
                .arg(&args[..])
                .invoke_async::<T>(&mut c)
                .await
        })
        .await
}
