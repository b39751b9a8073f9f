//! One entity's cache: L1 (moka, bounded by bytes) in front of single-flight
//! fetches. `get_many` is the read path of every storefront query: L1 hit?
//! return it. Else join the fetch already running for that key, or put the
//! keys nobody is fetching yet on the open flight: it takes keys until the
//! worker has run what was queued and what came in meanwhile, from every
//! request then in progress, and then makes as few upstream calls as the
//! fetcher allows for all of them.
//!
//! Fetches run as background work of their own, so a client that hangs up
//! never cancels the fetch that other requests are waiting on (the leader
//! cannot strand its followers), and the cache is filled before the flight
//! is let go, so there is no gap in which a second fetch could start. What
//! a flight does past L1 (L2, fill lease, upstream) is the `Filler`'s.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use metrics::Counter;
use moka::notification::RemovalCause;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::fill::{Fetch, Filler, Mode, Outcomes, Value, weight};
use super::freshness::{Cached, Policy, Reason, State};
use super::hit::Hit;
use super::ids::{self, Ids};
use super::key::{Key, escape};
use super::l2::L2;
use super::responses::{Read, Reads};
use super::sources::{Source, Sources};
use crate::background::Background;
use crate::config;
use crate::domain::{Timestamp, Versioned};
use crate::error::Error;
use crate::telemetry::traces::{self, trace_span};
use crate::vocab::{CacheHasher, CacheMap, Entity, Priority};

type Flight<K, V> = Shared<BoxFuture<'static, Arc<Outcomes<K, V>>>>;

/// Keys being fetched right now, each with the id of its flight so a
/// finishing flight can tell whether an invalidation has superseded it.
struct Flights<K, V> {
    next_id: u64,
    by_key: HashMap<K, (u64, Flight<K, V>), CacheHasher>,
    /// Flights still taking keys: each stays open until its driver lets it
    /// go (`take_off`), so misses that other requests meet in the meantime
    /// ride the same upstream call.
    open: Vec<Open<K, V>>,
}

/// A flight that has not taken off yet, and the keys it will fetch.
struct Open<K, V> {
    id: u64,
    priority: Priority,
    mode: Mode,
    keys: Vec<K>,
    /// Whether another batch than the first joined it.
    joined: bool,
    flight: Flight<K, V>,
}

/// L1 counters for one entity, resolved once (hot path).
struct Counters {
    hit: Counter,
    stale: Counter,
    miss: Counter,
}

/// How long stale keys are gathered before one background refresh fetches
/// them together (so a page of stale products costs one upstream call).
const REFRESH_WINDOW: Duration = Duration::from_millis(2);

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

/// A tier with its key and value types erased: what invalidation, reloads
/// and the status page need of every tier alike.
pub trait AnyTier: Send + Sync {
    fn entity(&self) -> Entity;
    /// Whether purging by id must match key prefixes.
    fn composite(&self) -> bool;
    /// Drops `target` from this replica's L1 (and detaches its fetches).
    fn drop_local(&self, target: &Target);
    /// Marks what this replica's L1 holds of `target` as changed at its
    /// source (served stale until the new value lands), and detaches its
    /// fetches, which may have started before the change.
    fn mark_local(&self, target: &Target);
    /// What `Key::id` names each of these encoded keys by (a price key's
    /// sku); text no key encodes to is left out.
    fn ids_of(&self, keys: &[String]) -> Vec<String>;
    /// Takes the freshness rules of its `[cache]` section anew.
    fn reload(&self, cache: &config::Cache);
    /// Entries and bytes held in L1.
    fn usage(&self) -> (u64, u64);
    /// L1's byte budget.
    fn max_bytes(&self) -> u64;
}

/// The cache of one entity.
pub struct Tier<K, V> {
    entity: Entity,
    l1: moka::sync::Cache<K, Arc<Cached<V>>, CacheHasher>,
    /// The keys of each id in L1, when keys are composite.
    ids: Option<Arc<Ids<K>>>,
    /// Counts `invalidate_all`s (which moka applies lazily, so an entry
    /// read under an older epoch may be gone although not yet retired) and
    /// policy changes (which may end an entry's freshness sooner).
    epoch: AtomicU64,
    policy: Arc<ArcSwap<Policy>>,
    flights: Mutex<Flights<K, V>>,
    /// Stale keys waiting for the next background refresh.
    refresh_queue: Mutex<Vec<K>>,
    /// L2 and the upstream.
    filler: Filler<K, V>,
    /// Where flights and refreshes run, owned by the gateway.
    background: Background,
    counters: Counters,
}

/// What every tier of one gateway is built with: the `[cache]` settings,
/// the shared L2 (with Redis) and the gateway's background work.
pub struct Tiers {
    cache: config::Cache,
    l2: Option<Arc<L2>>,
    background: Background,
}

impl Tiers {
    pub fn new(cache: &config::Cache, l2: Option<Arc<L2>>, background: Background) -> Tiers {
        Tiers {
            cache: cache.clone(),
            l2,
            background,
        }
    }

    /// The tier of `entity`, filled by `fetch`.
    pub fn build<K: Key, V: Value>(
        &self,
        entity: Entity,
        fetch: impl Fetch<K, V>,
    ) -> Arc<Tier<K, V>> {
        // Personal records reach Redis only sealed under a data key.
        let l2 = self.l2.clone().filter(|l2| l2.holds(entity));
        Tier::new(entity, &self.cache, l2, self.background.clone(), fetch)
    }
}

impl<K: Key, V: Value> Tier<K, V> {
    /// The tier of `entity`, sized and timed by its `[cache]` section.
    pub fn new(
        entity: Entity,
        cache: &config::Cache,
        l2: Option<Arc<L2>>,
        background: Background,
        fetch: impl Fetch<K, V>,
    ) -> Arc<Tier<K, V>> {
        let section = cache.section(entity.cache_section());
        let policy = Arc::new(ArcSwap::from_pointee(Policy::from_config(
            section,
            cache.jitter,
        )));
        // The sku index holds short strings beside the products it names.
        let max_bytes = match entity {
            Entity::ProductSku => section.l1_max_bytes.bytes() / 8,
            _ => section.l1_max_bytes.bytes(),
        };
        let ids = K::COMPOSITE.then(|| Arc::new(Ids::<K>::new()));
        let listed = ids.clone();
        let l1 = moka::sync::Cache::builder()
            .name(entity.name())
            .max_capacity(max_bytes)
            // The value, the key (its text, rounded up by the allocator),
            // what moka keeps per entry, and the key's place in `ids`.
            .weigher(|k: &K, v: &Arc<Cached<V>>| {
                let listed = if K::COMPOSITE { ids::weight(k) } else { 0 };
                let bytes = v.weight as usize
                    + size_of::<K>()
                    + 2 * k.weight()
                    + super::ENTRY_BYTES
                    + listed;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(Retention {
                policy: policy.clone(),
            })
            // Called at once for a replaced or invalidated key, so a stored
            // response never outlives the entry it was built from. A
            // replaced key stays listed: its new entry is.
            .eviction_listener(move |key: Arc<K>, entry: Arc<Cached<V>>, cause| {
                entry.retire();
                if let Some(ids) = listed.as_ref().filter(|_| cause != RemovalCause::Replaced) {
                    ids.remove(&*key, &entry);
                }
            })
            .build_with_hasher(CacheHasher::default());
        let c = |result: &'static str| metrics::counter!(crate::telemetry::CACHE_REQUESTS, "entity" => entity.name(), "tier" => "l1", "result" => result);
        Arc::new(Tier {
            entity,
            l1,
            ids,
            epoch: AtomicU64::new(0),
            policy,
            flights: Mutex::new(Flights {
                next_id: 0,
                by_key: HashMap::default(),
                open: Vec::new(),
            }),
            refresh_queue: Mutex::new(Vec::new()),
            filler: Filler::new(entity, l2, fetch),
            background,
            counters: Counters {
                hit: c("hit"),
                stale: c("stale"),
                miss: c("miss"),
            },
        })
    }

    pub fn entity(&self) -> Entity {
        self.entity
    }

    /// The freshness rules in force.
    pub fn policy(&self) -> Policy {
        **self.policy.load()
    }

    /// Swaps the freshness rules; entries already cached follow the new ones
    /// at their next read.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The fast path: a fresh or stale-but-servable L1 entry, without
    /// batching or waiting. A stale entry is returned at once and queued for
    /// one background refresh.
    pub fn get_cached(self: &Arc<Self>, key: &K) -> Option<Hit<V>> {
        let entry = self.l1.get(key)?;
        let policy = self.policy.load();
        let now = Timestamp::now();
        match policy.state(&entry, now) {
            State::Fresh => {
                self.counters.hit.increment(1);
                Some(Hit {
                    entry,
                    reason: Reason::Fresh,
                })
            }
            State::Stale => {
                self.counters.stale.increment(1);
                self.queue_refresh(key.clone());
                let reason = policy.reason(&entry, now);
                Some(Hit { entry, reason })
            }
            State::Expired | State::Dead => None,
        }
    }

    /// `get_cached` for a request whose answer may be stored: a fresh hit
    /// is recorded in `reads`; a stale hit or a miss spoils them (no stored
    /// answer rests on a stale entry, and an answer with a miss lists its
    /// fields in the order their fetches finished; the next one is stored).
    pub fn get_recorded(self: &Arc<Self>, key: &K, reads: &Reads) -> Option<Hit<V>> {
        if !reads.wanted() {
            return self.get_cached(key);
        }
        // Before the read: an `invalidate_all` after it must spoil it.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let hit = self.get_cached(key);
        match &hit {
            Some(h) if !h.stale() => reads.record(Some(Box::new(L1Read {
                tier: self.clone(),
                epoch,
                fresh_until: self.policy.load().fresh_until(&h.entry),
                entry: h.entry.clone(),
            }))),
            _ => reads.record(None),
        }
        hit
    }

    /// Records in `sources` that `hit` (of `key`) went into an answer, with
    /// how long it stays fresh under the rules in force.
    pub fn note(&self, key: &K, hit: &Hit<V>, sources: &Sources) {
        if !sources.wanted() {
            return;
        }
        let policy = self.policy.load();
        let fresh_until = if hit.stale() {
            Timestamp::now()
        } else {
            policy.fresh_until(&hit.entry)
        };
        sources.record(Source {
            entity: self.entity,
            id: key.id().to_string(),
            fresh_until,
            stale_while_revalidate: policy.hard_ttl.saturating_sub(policy.soft_ttl),
            stale_if_error: policy.max_stale.saturating_sub(policy.soft_ttl),
        });
    }

    /// Gets every key, fetching what L1 cannot serve in as few upstream
    /// calls as the fetcher allows, and joining fetches already running.
    pub async fn get_many(
        self: &Arc<Self>,
        keys: Vec<K>,
        priority: Priority,
    ) -> CacheMap<K, Result<Hit<V>, Error>> {
        let span = trace_span!(
            "cache",
            otel.name = %format_args!("cache {}", self.entity),
            moat.cache.entity = %self.entity,
            moat.cache.keys = keys.len(),
            moat.cache.l1_hits = tracing::field::Empty,
            moat.cache.l1_stale = tracing::field::Empty,
            moat.cache.misses = tracing::field::Empty,
        );
        self.lookup(keys, priority).instrument(span).await
    }

    async fn lookup(
        self: &Arc<Self>,
        keys: Vec<K>,
        priority: Priority,
    ) -> CacheMap<K, Result<Hit<V>, Error>> {
        let now = Timestamp::now();
        let policy = **self.policy.load();
        let keys = distinct(keys);
        let mut out = CacheMap::with_capacity_and_hasher(keys.len(), Default::default());
        let mut missing = Vec::new();
        for key in keys {
            match self.l1.get(&key).map(|e| (policy.state(&e, now), e)) {
                Some((State::Fresh, entry)) => {
                    self.counters.hit.increment(1);
                    let reason = Reason::Fresh;
                    out.insert(key, Ok(Hit { entry, reason }));
                }
                Some((State::Stale, entry)) => {
                    self.counters.stale.increment(1);
                    self.queue_refresh(key.clone());
                    let reason = policy.reason(&entry, now);
                    out.insert(key, Ok(Hit { entry, reason }));
                }
                _ => {
                    self.counters.miss.increment(1);
                    missing.push(key);
                }
            }
        }
        if traces::on() {
            let span = tracing::Span::current();
            let stale = out.values().filter(|h| h.as_ref().is_ok_and(Hit::stale));
            span.record("moat.cache.l1_stale", stale.count());
            span.record("moat.cache.l1_hits", out.len());
            span.record("moat.cache.misses", missing.len());
        }
        if missing.is_empty() {
            return out;
        }
        for (key, flight) in self.join_or_lead(missing, priority, Mode::ReadThrough) {
            let results = flight.await;
            let outcome = match results.get(&key) {
                Some(Ok(entry)) => Ok(Hit {
                    reason: policy.reason(entry, Timestamp::now()),
                    entry: entry.clone(),
                }),
                Some(Err(e)) => Err(e.clone()),
                None => Err(Error::internal(format!(
                    "{} fetch lost key {key:?}",
                    self.entity
                ))),
            };
            out.insert(key, outcome);
        }
        out
    }

    /// What the cache holds for `keys` right now (L1, else L2), whatever
    /// its age, without fetching: for checking a cached value against an
    /// authoritative one. A key absent from the result is not cached.
    pub async fn peek(&self, keys: &[K]) -> HashMap<K, Arc<Cached<V>>> {
        let mut held = HashMap::with_capacity(keys.len());
        let mut missing = Vec::new();
        for key in keys {
            match self.l1.get(key) {
                Some(entry) => {
                    held.insert(key.clone(), entry);
                }
                None => missing.push(key.clone()),
            }
        }
        held.extend(self.filler.peek(missing).await);
        held
    }

    /// Puts values fetched elsewhere (a listing, a checkout quote, an event)
    /// into L1 and L2. A fetch of the same keys still running will not
    /// overwrite them.
    pub async fn insert_many(&self, values: Vec<(K, Option<V>)>, fetched_at: Timestamp) {
        let policy = **self.policy.load();
        let entries: Vec<(K, Arc<Cached<V>>)> = values
            .into_iter()
            .map(|(k, v)| {
                let weight = weight(&v);
                (k, Arc::new(Cached::new(v, fetched_at, weight)))
            })
            .collect();
        {
            let mut flights = self.lock_flights();
            for (key, entry) in &entries {
                flights.by_key.remove(key);
                self.put_l1(key, entry);
            }
        }
        self.filler.put(&entries, policy).await;
    }

    /// Values that came with another entity's (stock with its prices),
    /// into L1 and L2 as `insert_many` puts them, except where L1 holds a
    /// newer version (an event applied while the call was out).
    pub async fn insert_fetched(&self, values: Vec<(K, V)>, fetched_at: Timestamp)
    where
        V: Versioned,
    {
        let newer = |key: &K, value: &V| {
            self.l1
                .get(key)
                .and_then(|held| held.value.as_ref().map(Versioned::version))
                .is_none_or(|held| held <= value.version())
        };
        let values = values
            .into_iter()
            .filter(|(k, v)| newer(k, v))
            .map(|(k, v)| (k, Some(v)))
            .collect();
        self.insert_many(values, fetched_at).await;
    }

    /// Into L1, listed under its id.
    fn put_l1(&self, key: &K, entry: &Arc<Cached<V>>) {
        self.l1.insert(key.clone(), entry.clone());
        if let Some(ids) = &self.ids {
            ids.insert(key, entry);
        }
    }

    /// The keys held of each of `ids`, in this replica's L1 and in L2 (a
    /// sku's prices in every segment and currency; for keys that are not
    /// composite, the id is the key).
    pub async fn keys_of(&self, ids: &[String]) -> Vec<K> {
        let mut keys: HashSet<K> = self.local_keys(ids).into_iter().collect();
        keys.extend(self.filler.listed(ids).await);
        keys.into_iter().collect()
    }

    /// The keys of `ids` this replica's L1 may hold.
    fn local_keys(&self, ids: &[String]) -> Vec<K> {
        match &self.ids {
            Some(listed) => ids.iter().flat_map(|id| listed.keys(id)).collect(),
            None => ids.iter().filter_map(|id| K::decode(&escape(id))).collect(),
        }
    }

    /// Marks `keys` in L1 as changed at their source and detaches their
    /// fetches: a fetch that started before the change must not land an
    /// older value as fresh.
    pub fn mark_changed(&self, keys: &[K]) {
        let mut flights = self.lock_flights();
        for key in keys {
            flights.by_key.remove(key);
            if let Some(entry) = self.l1.get(key) {
                entry.mark_changed();
            }
        }
    }

    /// Fetches `keys` from the upstream now, whatever the cache holds, and
    /// writes what came back through L1 and L2: how a thin change event is
    /// applied. `Err` when the upstream could not answer for any of them
    /// (nothing is written then).
    pub async fn refresh(
        &self,
        keys: Vec<K>,
        priority: Priority,
    ) -> Result<HashMap<K, Option<V>>, Error> {
        let values = self.authoritative(keys, priority).await?;
        self.insert_many(
            values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Timestamp::now(),
        )
        .await;
        Ok(values)
    }

    /// What the upstream says about `keys` now (`None`: no such key),
    /// without touching the cache; `Err` when it could not answer for any
    /// of them.
    pub async fn authoritative(
        &self,
        keys: Vec<K>,
        priority: Priority,
    ) -> Result<HashMap<K, Option<V>>, Error> {
        let fetched = self.filler.fetch_upstream(keys, priority).await;
        let mut values = HashMap::with_capacity(fetched.len());
        for (key, outcome) in fetched {
            values.insert(key, outcome?);
        }
        Ok(values)
    }

    /// Every key the cache holds: this replica's L1, and L2 (walked with
    /// SCAN, so Redis is never blocked) when it is reachable.
    pub async fn held_keys(&self) -> Vec<K> {
        let mut keys: HashSet<K> = self.l1.iter().map(|(k, _)| (*k).clone()).collect();
        keys.extend(self.filler.shared_keys().await);
        keys.into_iter().collect()
    }

    /// Keys held in this replica's L1 whose value `matches` (a walk: for
    /// rare lookups by something other than the key).
    pub fn find(&self, matches: impl Fn(&V) -> bool) -> Vec<K> {
        self.l1
            .iter()
            .filter(|(_, e)| e.value.as_ref().is_some_and(&matches))
            .map(|(k, _)| (*k).clone())
            .collect()
    }

    /// Drops keys from L1 and detaches any fetch of them that is running,
    /// so its (possibly older) result is not cached.
    pub fn invalidate(&self, keys: &[K]) {
        let mut flights = self.lock_flights();
        for key in keys {
            flights.by_key.remove(key);
            self.l1.invalidate(key);
        }
    }

    pub fn invalidate_all(&self) {
        let mut flights = self.lock_flights();
        flights.by_key.clear();
        self.l1.invalidate_all();
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn lock_flights(&self) -> MutexGuard<'_, Flights<K, V>> {
        // A panic while holding this lock leaves the map consistent (every
        // change is a single insert or remove), so poisoning is ignored.
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn join_or_lead(
        self: &Arc<Self>,
        keys: Vec<K>,
        priority: Priority,
        mode: Mode,
    ) -> Vec<(K, Flight<K, V>)> {
        let mut flights = self.lock_flights();
        let mut joined = Vec::with_capacity(keys.len());
        let mut leading = Vec::new();
        let mut landed = Outcomes::default();
        let now = Timestamp::now();
        for key in keys {
            match flights.by_key.get(&key) {
                Some((_, flight)) => joined.push((key, flight.clone())),
                None => match self.l1.get(&key) {
                    // A flight landed between the caller's look at L1 and
                    // this lock (a flight lands in L1 under it): no second
                    // fetch for what just arrived.
                    Some(entry)
                        if mode == Mode::ReadThrough
                            && self.policy.load().state(&entry, now) == State::Fresh =>
                    {
                        landed.insert(key, Ok(entry));
                    }
                    _ => leading.push(key),
                },
            }
        }
        if !landed.is_empty() {
            let keys: Vec<K> = landed.keys().cloned().collect();
            let ready = futures_util::future::ready(Arc::new(landed))
                .boxed()
                .shared();
            joined.extend(keys.into_iter().map(|k| (k, ready.clone())));
        }
        if leading.is_empty() {
            return joined;
        }
        let open = flights
            .open
            .iter_mut()
            .find(|o| o.priority == priority && o.mode == mode);
        let mut driver = None;
        let (id, flight) = match open {
            Some(open) => {
                open.keys.extend(leading.iter().cloned());
                open.joined = true;
                (open.id, open.flight.clone())
            }
            None => {
                let id = flights.next_id;
                flights.next_id += 1;
                let (flight, drive) = self.take_off(id, priority, mode);
                flights.open.push(Open {
                    id,
                    priority,
                    mode,
                    keys: leading.clone(),
                    joined: false,
                    flight: flight.clone(),
                });
                driver = Some(drive);
                (id, flight)
            }
        };
        for key in leading {
            flights.by_key.insert(key.clone(), (id, flight.clone()));
            joined.push((key, flight.clone()));
        }
        drop(flights);
        if let Some(driver) = driver {
            self.background.spawn(driver);
        }
        joined
    }

    /// Flight `id`, and the background work that drives it: the flight
    /// fetches every key it was given once its driver lets it (or is
    /// gone). The driver does once the worker has run out of queued work
    /// and looked for more (requests handed over meanwhile, answers that
    /// came in), and those tasks have had one more turn: requests' loaders
    /// hand their batches over after a yield, so the pages in progress
    /// share their upstream calls. A lone miss waits for nothing but that
    /// look (one non-blocking poll); under load a flight takes off at the
    /// latest after the worker's periodic look (every 61 tasks). On a
    /// thread that reads requests itself (`looks_before_take_off`) it
    /// waits for that many looks instead.
    fn take_off(
        self: &Arc<Self>,
        id: u64,
        priority: Priority,
        mode: Mode,
    ) -> (Flight<K, V>, impl Future<Output = ()> + Send + 'static) {
        let (closing, closed) = oneshot::channel::<()>();
        let tier = self.clone();
        // Its span is the leader's child, and it passes on the leader's
        // trace context, whoever ends up driving it.
        let span = trace_span!(
            "cache.fill",
            otel.name = %format_args!("fill {}", self.entity),
            moat.cache.entity = %self.entity,
            moat.cache.keys = tracing::field::Empty,
            moat.cache.mode = ?mode,
        );
        let fly = async move {
            let _ = closed.await;
            let keys = tier.close(id);
            tracing::Span::current().record("moat.cache.keys", keys.len());
            Arc::new(tier.fly(id, keys, priority, mode).await)
        };
        let flight = traces::carried(fly).instrument(span).boxed().shared();
        let driven = flight.clone();
        let looks = LOOKS.get();
        let driver = async move {
            // In this task, not in the flight: any of its waiters may poll
            // the flight, and this wait ends at a second poll. Waiting
            // behind the queue alone closed flights before requests that
            // had arrived meanwhile reached their loaders (0.79 against
            // 0.62 upstream calls a cold page at 4 connections).
            for _ in 0..looks {
                tokio::task::yield_now().await;
            }
            behind_the_queue().await;
            let _ = closing.send(());
            driven.await;
        };
        (flight, driver)
    }

    /// The keys open flight `id` was given, each once; it takes no more.
    /// (A batch's keys are distinct, but a key an invalidation dropped
    /// while the flight was open may come again in a later batch.)
    fn close(&self, id: u64) -> Vec<K> {
        let mut flights = self.lock_flights();
        let Some(at) = flights.open.iter().position(|o| o.id == id) else {
            return Vec::new();
        };
        let Open { keys, joined, .. } = flights.open.swap_remove(at);
        drop(flights);
        if joined { distinct(keys) } else { keys }
    }

    /// One flight: fill the keys past L1, land them in L1, then share them.
    async fn fly(
        self: &Arc<Self>,
        id: u64,
        keys: Vec<K>,
        priority: Priority,
        mode: Mode,
    ) -> Outcomes<K, V> {
        let policy = **self.policy.load();
        let mut filled = self
            .filler
            .fill(keys, priority, mode, policy, |k| self.l1.get(k))
            .await;
        // L1 first (the flight's keys must be servable the moment it lands),
        // then L2 for what is still wanted, then the leases go back.
        let landed = self.land(id, std::mem::take(&mut filled.for_l1));
        for key in std::mem::take(&mut filled.stale) {
            self.queue_refresh(key);
        }
        let results = std::mem::take(&mut filled.results);
        self.filler.finish(&landed, filled, policy).await;
        results
    }

    /// Lets a flight's keys go, filling L1 with what it fetched unless an
    /// invalidation detached the key meanwhile. Returns the keys still
    /// registered to this flight (whose results may go to L2 too).
    fn land(&self, id: u64, fills: Vec<(K, Arc<Cached<V>>)>) -> Vec<(K, Arc<Cached<V>>)> {
        let mut flights = self.lock_flights();
        let mut kept = Vec::with_capacity(fills.len());
        for (key, entry) in fills {
            if flights.by_key.get(&key).is_some_and(|(f, _)| *f == id) {
                self.put_l1(&key, &entry);
                kept.push((key, entry));
            }
        }
        flights.by_key.retain(|_, (f, _)| *f != id);
        kept
    }

    fn queue_refresh(self: &Arc<Self>, key: K) {
        let mut queue = self.refresh_queue.lock().unwrap_or_else(|p| p.into_inner());
        let first = queue.is_empty();
        queue.push(key);
        drop(queue);
        if first {
            let tier = self.clone();
            self.background.spawn(async move {
                tokio::time::sleep(REFRESH_WINDOW).await;
                let keys = std::mem::take(
                    &mut *tier.refresh_queue.lock().unwrap_or_else(|p| p.into_inner()),
                );
                let unique: HashSet<K> = keys.into_iter().collect();
                // Joining an existing flight is a no-op: that fetch refreshes it.
                let keys = unique.into_iter().collect();
                for (_, flight) in tier.join_or_lead(keys, Priority::Browse, Mode::Refresh) {
                    flight.await;
                }
            });
        }
    }
}

thread_local! {
    /// How many looks for new work a flight opened on this thread waits
    /// for before it takes off (`take_off`).
    static LOOKS: Cell<u8> = const { Cell::new(1) };
}

/// Flights opened on the calling thread wait for `looks` looks for new
/// work before they take off, instead of one. For the threads that read
/// requests themselves: on the full path's threads one is enough, since
/// the door, which outranks them, has handed over every request it read
/// before they run; on the door's own threads a page's misses meet the
/// requests that arrive while they run only when the worker looks for
/// them (at 4 connections, 0.59 upstream calls a cold page with three
/// looks, 0.91 with one).
pub fn looks_before_take_off(looks: u8) {
    LOOKS.set(looks.max(1));
}

/// `keys` without repeats, in order, each kept where it first came.
fn distinct<K: Key>(mut keys: Vec<K>) -> Vec<K> {
    if keys.len() < 2 {
        return keys;
    }
    let mut seen = HashSet::with_capacity_and_hasher(keys.len(), CacheHasher::default());
    let first: Vec<bool> = keys.iter().map(|k| seen.insert(k)).collect();
    drop(seen);
    let mut first = first.into_iter();
    keys.retain(|_| first.next().unwrap_or(true));
    keys
}

/// Returns once every task already queued on this worker has run: a task
/// that wakes itself goes to the back of the run queue. (`yield_now`
/// waits longer: until the worker has nothing queued, or its periodic
/// look, and has polled for new work.)
async fn behind_the_queue() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if queued {
            return std::task::Poll::Ready(());
        }
        queued = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// One L1 entry a stored response was built from. Checking it costs a few
/// atomic loads, not a lookup: L1 retires every entry it lets go of, and
/// the epoch moves with anything else that could make the read wrong.
struct L1Read<K, V> {
    tier: Arc<Tier<K, V>>,
    epoch: u64,
    fresh_until: Timestamp,
    entry: Arc<Cached<V>>,
}

impl<K: Key, V: Value> Read for L1Read<K, V> {
    fn still_fresh(&self, now: Timestamp) -> bool {
        let fresh = now < self.fresh_until
            && !self.entry.retired()
            && !self.entry.changed()
            && self.tier.epoch.load(Ordering::SeqCst) == self.epoch;
        if fresh {
            self.tier.counters.hit.increment(1);
        }
        fresh
    }
}

impl<K: Key, V: Value> AnyTier for Tier<K, V> {
    fn entity(&self) -> Entity {
        self.entity
    }

    fn composite(&self) -> bool {
        K::COMPOSITE
    }

    fn ids_of(&self, keys: &[String]) -> Vec<String> {
        let mut ids: Vec<String> = keys
            .iter()
            .filter_map(|k| K::decode(k))
            .map(|k| k.id().to_string())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn drop_local(&self, target: &Target) {
        match target {
            Target::Keys(keys) => {
                let keys: Vec<K> = keys.iter().filter_map(|k| K::decode(k)).collect();
                self.invalidate(&keys);
            }
            Target::Ids(ids) => self.invalidate(&self.local_keys(ids)),
            Target::All => self.invalidate_all(),
        }
    }

    fn mark_local(&self, target: &Target) {
        match target {
            Target::Keys(keys) => {
                let keys: Vec<K> = keys.iter().filter_map(|k| K::decode(k)).collect();
                self.mark_changed(&keys);
            }
            Target::Ids(ids) => self.mark_changed(&self.local_keys(ids)),
            // A change is always announced for what it names.
            Target::All => {}
        }
    }

    fn reload(&self, cache: &config::Cache) {
        let section = cache.section(self.entity.cache_section());
        self.set_policy(Policy::from_config(section, cache.jitter));
    }

    fn usage(&self) -> (u64, u64) {
        self.l1.run_pending_tasks();
        (self.l1.entry_count(), self.l1.weighted_size())
    }

    fn max_bytes(&self) -> u64 {
        self.l1.policy().max_capacity().unwrap_or(u64::MAX)
    }
}

/// Tells moka how long to keep each entry: up to max-stale, so it can still
/// be served if the upstream fails.
struct Retention {
    policy: Arc<ArcSwap<Policy>>,
}

impl<K, V> moka::Expiry<K, Arc<Cached<V>>> for Retention {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Arc<Cached<V>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.policy.load().retention(value, Timestamp::now()))
    }

    fn expire_after_update(
        &self,
        key: &K,
        value: &Arc<Cached<V>>,
        updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, updated_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{Counted, Lengths};

    fn tier() -> Arc<Tier<String, u32>> {
        let cache = config::Cache {
            jitter: 0.0,
            ..config::Cache::default()
        };
        Tier::new(Entity::Price, &cache, None, Background::new(), Lengths)
    }

    /// A read of `key` as a stored response would keep it.
    async fn read(tier: &Arc<Tier<String, u32>>, key: &str) -> Box<dyn Read> {
        tier.get_many(vec![key.to_string()], Priority::Browse).await;
        let reads = Reads::recording();
        assert!(tier.get_recorded(&key.to_string(), &reads).is_some());
        let mut recorded = reads.take().expect("a fresh hit is recorded");
        recorded.pop().expect("one read")
    }

    #[tokio::test]
    async fn a_read_holds_until_l1_lets_go_of_its_entry() {
        let tier = tier();
        let now = Timestamp::now();
        let kept = read(&tier, "kept").await;
        assert!(kept.still_fresh(now));

        let replaced = read(&tier, "replaced").await;
        tier.insert_many(vec![("replaced".into(), Some(1))], now)
            .await;
        assert!(!replaced.still_fresh(now), "replaced by an event or repair");

        let dropped = read(&tier, "dropped").await;
        tier.invalidate(&["dropped".to_string()]);
        assert!(!dropped.still_fresh(now), "dropped by a purge");

        let matched = read(&tier, "matched").await;
        tier.drop_local(&Target::Ids(vec!["matched".into()]));
        assert!(!matched.still_fresh(now), "dropped by a purge by id");

        let marked = read(&tier, "marked").await;
        tier.mark_local(&Target::Keys(vec!["marked".into()]));
        assert!(!marked.still_fresh(now), "changed at its source");
        let hit = tier.get_cached(&"marked".to_string()).expect("still held");
        assert_eq!(hit.value(), Some(&6), "the held value is still served");
        assert_eq!(hit.freshness(now).reason, Reason::ChangedAtSource);

        let past_soft_ttl = tier.policy.load().soft_ttl + Duration::from_secs(1);
        assert!(
            !kept.still_fresh(now.plus(past_soft_ttl)),
            "past its soft TTL"
        );
        assert!(kept.still_fresh(now), "untouched so far");

        tier.invalidate_all();
        assert!(!kept.still_fresh(now), "dropped with the whole entity");

        let kept = read(&tier, "kept").await;
        assert!(kept.still_fresh(now));
        tier.set_policy(**tier.policy.load());
        assert!(!kept.still_fresh(now), "judged by rules that changed");
    }

    fn counted_tier(upstream: &Counted) -> Arc<Tier<String, u32>> {
        let cache = config::Cache::default();
        Tier::new(
            Entity::Price,
            &cache,
            None,
            Background::new(),
            upstream.clone(),
        )
    }

    fn keys(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    type Found = CacheMap<String, Result<Hit<u32>, Error>>;

    /// A read of `key`, polled once: it waits on the open flight.
    fn waiting<'a>(
        tier: &'a Arc<Tier<String, u32>>,
        key: &str,
    ) -> std::pin::Pin<Box<impl Future<Output = Found> + 'a>> {
        let mut read = Box::pin(tier.get_many(keys(&[key]), Priority::Browse));
        assert!(read.as_mut().now_or_never().is_none(), "waiting");
        read
    }

    fn value(found: &Found, key: &str) -> Option<u32> {
        found[key].as_ref().unwrap().value().copied()
    }

    #[tokio::test]
    async fn the_misses_of_one_turn_share_one_upstream_call() {
        let upstream = Counted::default();
        let tier = counted_tier(&upstream);

        // Two requests' batches, in one turn of the scheduler.
        let (first, second) = tokio::join!(
            tier.get_many(keys(&["a", "abc"]), Priority::Browse),
            tier.get_many(keys(&["abc", "abcdefg"]), Priority::Browse),
        );
        assert_eq!(value(&first, "a"), Some(1));
        assert_eq!(value(&second, "abc"), Some(3));
        assert_eq!(value(&second, "abcdefg"), Some(7));
        assert_eq!(upstream.batches(), vec![keys(&["a", "abc", "abcdefg"])]);

        // Held now: no call. A miss in a later turn is a call of its own,
        // and so is one of another priority in the same turn.
        tier.get_many(keys(&["abc"]), Priority::Browse).await;
        let (_, _) = tokio::join!(
            tier.get_many(keys(&["ab"]), Priority::Browse),
            tier.get_many(keys(&["abcd"]), Priority::Checkout),
        );
        let mut later = upstream.batches().split_off(1);
        later.sort();
        assert_eq!(later, vec![keys(&["ab"]), keys(&["abcd"])]);
    }

    #[tokio::test]
    async fn a_thread_that_looks_longer_gathers_the_misses_of_later_turns() {
        let upstream = Counted::default();
        let tier = counted_tier(&upstream);
        // A miss that comes two turns after the first, as the next request
        // read from a socket does.
        let later = |key: &'static str| {
            let tier = tier.clone();
            async move {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                tier.get_many(keys(&[key]), Priority::Browse).await
            }
        };

        tokio::join!(tier.get_many(keys(&["a"]), Priority::Browse), later("ab"));
        assert_eq!(upstream.batches().len(), 2, "one look: two calls");

        looks_before_take_off(3);
        let (first, second) = tokio::join!(
            tier.get_many(keys(&["abc"]), Priority::Browse),
            later("abcd")
        );
        looks_before_take_off(1);
        assert_eq!(
            [value(&first, "abc"), value(&second, "abcd")],
            [Some(3), Some(4)]
        );
        assert_eq!(upstream.batches()[2..], [keys(&["abc", "abcd"])]);
    }

    #[tokio::test]
    async fn a_key_asked_twice_in_one_read_is_fetched_once() {
        let upstream = Counted::default();
        let tier = counted_tier(&upstream);

        let found = tier
            .get_many(keys(&["abc", "a", "abc"]), Priority::Browse)
            .await;
        assert_eq!(found.len(), 2);
        assert_eq!(
            [value(&found, "abc"), value(&found, "a")],
            [Some(3), Some(1)]
        );
        assert_eq!(upstream.batches(), vec![keys(&["a", "abc"])]);
    }

    #[tokio::test]
    async fn a_dropped_reader_does_not_cancel_the_call_others_wait_on() {
        let upstream = Counted::default();
        let tier = counted_tier(&upstream);

        // The first reader opens the flight and is dropped (its client
        // hung up) before the call went out; another request joined it.
        let first = waiting(&tier, "abc");
        let second = waiting(&tier, "hello");
        drop(first);

        assert_eq!(value(&second.await, "hello"), Some(5));
        assert_eq!(upstream.batches(), vec![keys(&["abc", "hello"])]);
        let held = tier.get_cached(&"abc".to_string());
        assert_eq!(held.expect("filled all the same").value(), Some(&3));
    }

    #[tokio::test]
    async fn a_key_asked_again_after_an_invalidation_is_sent_once() {
        let upstream = Counted::default();
        let tier = counted_tier(&upstream);

        // Detached from the open flight by an invalidation, then missed
        // again before the flight closed: it joins the same flight.
        let first = waiting(&tier, "abc");
        tier.invalidate(&keys(&["abc"]));
        let (first, again) = tokio::join!(first, waiting(&tier, "abc"));
        assert_eq!([value(&first, "abc"), value(&again, "abc")], [Some(3); 2]);
        assert_eq!(upstream.batches(), vec![keys(&["abc"])]);
        assert!(tier.get_cached(&"abc".to_string()).is_some(), "and held");
    }
}
