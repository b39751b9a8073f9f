//! One entity's cache: L1 (moka, bounded by bytes) in front of single-flight
//! fetches. `get_many` is the read path of every storefront query: L1 hit?
//! return it. Else join the fetch already running for that key, or lead a
//! new one for all the keys of the batch that nobody is fetching yet.
//!
//! Fetches run in their own task, so a client that hangs up never cancels
//! the fetch that other requests are waiting on (the leader cannot strand its
//! followers), and the cache is filled before the flight is let go, so there
//! is no gap in which a second fetch could start. What a flight does (L2,
//! fill lease, upstream) is in `fill.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use metrics::Counter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::freshness::{Cached, Freshness, Policy, State};
use super::key::Key;
use super::l2::L2;
use crate::domain::Timestamp;
use crate::error::Error;
use crate::upstream::Priority;

/// What a fetcher returns for a batch: `Err` when the whole call failed;
/// otherwise each key found (or `Err` for an item that broke the contract).
/// A key absent from the map does not exist upstream.
pub type Batch<K, V> = Result<HashMap<K, Result<V, Error>>, Error>;

/// How a tier reads its upstream. Implemented in `catalog` and friends.
pub trait Fetch<K, V>: Send + Sync + 'static {
    fn fetch(&self, keys: Vec<K>, priority: Priority) -> BoxFuture<'static, Batch<K, V>>;
}

/// A cached value handed to a resolver.
#[derive(Debug)]
pub struct Hit<V> {
    entry: Arc<Cached<V>>,
    stale: bool,
}

impl<V> Clone for Hit<V> {
    fn clone(&self) -> Self {
        Hit {
            entry: self.entry.clone(),
            stale: self.stale,
        }
    }
}

impl<V> Hit<V> {
    /// `None`: the upstream says this key does not exist.
    pub fn value(&self) -> Option<&V> {
        self.entry.value.as_ref()
    }

    pub fn freshness(&self, now: Timestamp) -> Freshness {
        Freshness {
            as_of: self.entry.fetched_at,
            age: self.entry.fetched_at.age(now),
            stale: self.stale,
        }
    }
}

/// A hit whose value exists (the upstream did not say "no such key").
#[derive(Debug)]
pub struct Found<V>(Hit<V>);

impl<V> Clone for Found<V> {
    fn clone(&self) -> Self {
        Found(self.0.clone())
    }
}

impl<V> Hit<V> {
    pub fn found(self) -> Option<Found<V>> {
        self.entry.value.is_some().then_some(Found(self))
    }
}

impl<V> Found<V> {
    pub fn freshness(&self, now: Timestamp) -> Freshness {
        self.0.freshness(now)
    }
}

impl<V> std::ops::Deref for Found<V> {
    type Target = V;

    fn deref(&self) -> &V {
        match &self.0.entry.value {
            Some(v) => v,
            None => unreachable!("Found is only made from a Hit with a value"),
        }
    }
}

pub(super) type Outcome<V> = Result<Arc<Cached<V>>, Error>;
type Flight<K, V> = Shared<BoxFuture<'static, Arc<HashMap<K, Outcome<V>>>>>;

/// Keys being fetched right now, each with the id of its flight so a
/// finishing flight can tell whether an invalidation has superseded it.
struct Flights<K, V> {
    next_id: u64,
    by_key: HashMap<K, (u64, Flight<K, V>)>,
}

/// Prometheus counters for one entity, resolved once (hot path).
pub(super) struct TierMetrics {
    l1_hit: Counter,
    l1_stale: Counter,
    l1_miss: Counter,
    pub(super) l2_hit: Counter,
    pub(super) l2_stale: Counter,
    pub(super) l2_miss: Counter,
    pub(super) l2_error: Counter,
}

impl TierMetrics {
    fn new(entity: &'static str) -> TierMetrics {
        let c = |tier: &'static str, result: &'static str| metrics::counter!(crate::telemetry::CACHE_REQUESTS, "entity" => entity, "tier" => tier, "result" => result);
        TierMetrics {
            l1_hit: c("l1", "hit"),
            l1_stale: c("l1", "stale"),
            l1_miss: c("l1", "miss"),
            l2_hit: c("l2", "hit"),
            l2_stale: c("l2", "stale"),
            l2_miss: c("l2", "miss"),
            l2_error: c("l2", "error"),
        }
    }
}

/// How long stale keys are gathered before one background refresh fetches
/// them together (so a page of stale products costs one upstream call).
const REFRESH_WINDOW: Duration = Duration::from_millis(2);

/// What a tier can hold: cloneable, and storable in Redis.
pub trait Value: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Value for T {}

/// The cache of one entity.
pub struct Tier<K, V> {
    pub(super) entity: &'static str,
    pub(super) l1: moka::sync::Cache<K, Arc<Cached<V>>>,
    pub(super) policy: Arc<ArcSwap<Policy>>,
    flights: Mutex<Flights<K, V>>,
    /// Stale keys waiting for the next background refresh.
    refresh_queue: Mutex<Vec<K>>,
    pub(super) fetch: Box<dyn Fetch<K, V>>,
    /// The shared tier, when Redis is configured.
    pub(super) l2: Option<Arc<L2>>,
    pub(super) metrics: TierMetrics,
}

/// How a flight may use what it finds in L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    /// A miss: a stale L2 value will do (and gets refreshed afterwards).
    ReadThrough,
    /// A background refresh: only a fresh L2 value saves the upstream call.
    Refresh,
}

impl<K: Key, V: Value> Tier<K, V> {
    pub fn new(
        entity: &'static str,
        policy: Policy,
        max_bytes: u64,
        l2: Option<Arc<L2>>,
        fetch: impl Fetch<K, V>,
    ) -> Arc<Tier<K, V>> {
        let policy = Arc::new(ArcSwap::from_pointee(policy));
        let l1 = moka::sync::Cache::builder()
            .name(entity)
            .max_capacity(max_bytes)
            // The key's text, and about 96 bytes of key, Arc and entry
            // overhead besides.
            .weigher(|k: &K, v: &Arc<Cached<V>>| {
                let bytes = v.weight as usize + k.weight() + 96;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(Retention {
                policy: policy.clone(),
            })
            .build();
        Arc::new(Tier {
            entity,
            l1,
            policy,
            flights: Mutex::new(Flights {
                next_id: 0,
                by_key: HashMap::new(),
            }),
            refresh_queue: Mutex::new(Vec::new()),
            fetch: Box::new(fetch),
            l2,
            metrics: TierMetrics::new(entity),
        })
    }

    pub fn entity(&self) -> &'static str {
        self.entity
    }

    /// Swaps the freshness rules; entries already cached follow the new ones
    /// at their next read.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// The fast path: a fresh or stale-but-servable L1 entry, without
    /// batching or waiting. A stale entry is returned at once and queued for
    /// one background refresh.
    pub fn get_cached(self: &Arc<Self>, key: &K) -> Option<Hit<V>> {
        let entry = self.l1.get(key)?;
        match self.policy.load().state(&entry, Timestamp::now()) {
            State::Fresh => {
                self.metrics.l1_hit.increment(1);
                Some(Hit {
                    entry,
                    stale: false,
                })
            }
            State::Stale => {
                self.metrics.l1_stale.increment(1);
                self.queue_refresh(key.clone());
                Some(Hit { entry, stale: true })
            }
            State::Expired | State::Dead => None,
        }
    }

    /// Gets every key, fetching what L1 cannot serve in as few upstream
    /// calls as the fetcher allows, and joining fetches already running.
    pub async fn get_many(
        self: &Arc<Self>,
        keys: Vec<K>,
        priority: Priority,
    ) -> HashMap<K, Result<Hit<V>, Error>> {
        let now = Timestamp::now();
        let policy = **self.policy.load();
        let mut out = HashMap::with_capacity(keys.len());
        let mut missing = Vec::new();
        let mut seen = HashSet::with_capacity(keys.len());
        for key in keys {
            if !seen.insert(key.clone()) {
                continue;
            }
            match self.l1.get(&key).map(|e| (policy.state(&e, now), e)) {
                Some((State::Fresh, entry)) => {
                    self.metrics.l1_hit.increment(1);
                    out.insert(
                        key,
                        Ok(Hit {
                            entry,
                            stale: false,
                        }),
                    );
                }
                Some((State::Stale, entry)) => {
                    self.metrics.l1_stale.increment(1);
                    self.queue_refresh(key.clone());
                    out.insert(key, Ok(Hit { entry, stale: true }));
                }
                _ => {
                    self.metrics.l1_miss.increment(1);
                    missing.push(key);
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        for (key, flight) in self.join_or_lead(missing, priority, Fill::ReadThrough) {
            let results = flight.await;
            let outcome = match results.get(&key) {
                Some(Ok(entry)) => Ok(Hit {
                    stale: policy.state(entry, Timestamp::now()) != State::Fresh,
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
        if let Some(l2) = self.l2.as_ref().filter(|_| !missing.is_empty()) {
            let encoded: Vec<String> = missing.iter().map(Key::encode).collect();
            if let Ok(found) = l2.get::<V>(self.entity, &encoded).await {
                for (key, entry) in missing.into_iter().zip(found) {
                    if let Some(entry) = entry {
                        held.insert(key, Arc::new(entry));
                    }
                }
            }
        }
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
                self.l1.insert(key.clone(), entry.clone());
            }
        }
        if let Some(l2) = &self.l2 {
            let now = Timestamp::now();
            let shared: Vec<(String, &Cached<V>, Duration)> = entries
                .iter()
                .map(|(k, e)| (k.encode(), &**e, policy.retention(e, now)))
                .collect();
            let _ = l2.put(self.entity, &shared).await;
        }
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

    /// Drops every key `matches` accepts (walks L1: for operators' purges).
    pub fn invalidate_where(&self, matches: impl Fn(&K) -> bool) {
        let mut flights = self.lock_flights();
        flights.by_key.retain(|k, _| !matches(k));
        let doomed: Vec<K> = self
            .l1
            .iter()
            .map(|(k, _)| (*k).clone())
            .filter(|k| matches(k))
            .collect();
        for key in doomed {
            self.l1.invalidate(&key);
        }
    }

    pub fn invalidate_all(&self) {
        let mut flights = self.lock_flights();
        flights.by_key.clear();
        self.l1.invalidate_all();
    }

    /// Entry count and bytes held, for `/admin/status`.
    pub fn usage(&self) -> (u64, u64) {
        self.l1.run_pending_tasks();
        (self.l1.entry_count(), self.l1.weighted_size())
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
        fill: Fill,
    ) -> Vec<(K, Flight<K, V>)> {
        let mut flights = self.lock_flights();
        let mut joined = Vec::with_capacity(keys.len());
        let mut leading = Vec::new();
        for key in keys {
            match flights.by_key.get(&key) {
                Some((_, flight)) => joined.push((key, flight.clone())),
                None => leading.push(key),
            }
        }
        if leading.is_empty() {
            return joined;
        }
        let id = flights.next_id;
        flights.next_id += 1;
        let tier = self.clone();
        let batch = leading.clone();
        let flight = async move { Arc::new(tier.load(id, batch, priority, fill).await) }
            .boxed()
            .shared();
        for key in leading {
            flights.by_key.insert(key.clone(), (id, flight.clone()));
            joined.push((key, flight.clone()));
        }
        drop(flights);
        tokio::spawn(flight);
        joined
    }

    /// Lets a flight's keys go, filling L1 with what it fetched unless an
    /// invalidation detached the key meanwhile. Returns the keys still
    /// registered to this flight (whose results may go to L2 too).
    pub(super) fn land(
        &self,
        id: u64,
        fills: Vec<(K, Arc<Cached<V>>)>,
    ) -> Vec<(K, Arc<Cached<V>>)> {
        let mut flights = self.lock_flights();
        let mut kept = Vec::with_capacity(fills.len());
        for (key, entry) in fills {
            if flights.by_key.get(&key).is_some_and(|(f, _)| *f == id) {
                self.l1.insert(key.clone(), entry.clone());
                kept.push((key, entry));
            }
        }
        flights.by_key.retain(|_, (f, _)| *f != id);
        kept
    }

    pub(super) fn queue_refresh(self: &Arc<Self>, key: K) {
        let mut queue = self.refresh_queue.lock().unwrap_or_else(|p| p.into_inner());
        let first = queue.is_empty();
        queue.push(key);
        drop(queue);
        if first {
            let tier = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REFRESH_WINDOW).await;
                let keys = std::mem::take(
                    &mut *tier.refresh_queue.lock().unwrap_or_else(|p| p.into_inner()),
                );
                let unique: HashSet<K> = keys.into_iter().collect();
                // Joining an existing flight is a no-op: that fetch refreshes it.
                let keys = unique.into_iter().collect();
                for (_, flight) in tier.join_or_lead(keys, Priority::Browse, Fill::Refresh) {
                    flight.await;
                }
            });
        }
    }
}

/// Approximate bytes of a value: its compact serialized size.
pub(super) fn weight<V: Serialize>(value: &Option<V>) -> usize {
    postcard::to_allocvec(value).map(|b| b.len()).unwrap_or(256)
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
