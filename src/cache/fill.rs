//! The shared side of a tier: what a flight does for the keys it leads,
//! once L1 has missed.
//!
//! 1. L2: a value another replica fetched (fresh, or stale for a plain miss)
//!    saves the upstream call;
//! 2. the fill lease: of several replicas missing the same key, the one that
//!    takes the lease fetches, the others wait briefly for its value to
//!    land in L2, and fetch themselves if the holder gives up or dies;
//! 3. the upstream fetch, whose results go to L1 (by the tier) and then L2;
//!    a key that failed keeps its last good value up to max-stale
//!    (stale-if-error).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use metrics::Counter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::freshness::{Cached, Policy, State};
use super::key::Key;
use super::key::escape;
use super::l2::{L2, Put};
use crate::domain::Timestamp;
use crate::error::Error;
use crate::redis_link::Unavailable;
use crate::telemetry::traces::trace_span;
use crate::vocab::{CacheHasher, CacheMap, Entity, Priority};

/// What a fetcher returns for a batch: `Err` when the whole call failed;
/// otherwise each key found (or `Err` for an item that broke the contract).
/// A key absent from the map does not exist upstream.
pub type Batch<K, V> = Result<CacheMap<K, Result<V, Error>>, Error>;

/// Each key's outcome of one flight.
pub(super) type Outcomes<K, V> = CacheMap<K, Outcome<V>>;

/// How a tier reads its upstream. Implemented in `catalog` and `customers`.
pub trait Fetch<K, V>: Send + Sync + 'static {
    fn fetch(&self, keys: Vec<K>, priority: Priority) -> BoxFuture<'static, Batch<K, V>>;
}

/// What a tier can hold: cloneable, and storable in Redis.
pub trait Value: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Value for T {}

/// One key's result for the flight's waiters.
pub(super) type Outcome<V> = Result<Arc<Cached<V>>, Error>;

/// How a flight may use what it finds in L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A miss: a stale L2 value will do (and gets refreshed afterwards).
    ReadThrough,
    /// A background refresh: only a fresh L2 value saves the upstream call.
    Refresh,
}

/// How often a replica waiting on another's fill looks at L2.
const FOLLOW_POLL: Duration = Duration::from_millis(15);

/// Prometheus counters for the shared side, resolved once (hot path).
struct Counters {
    hit: Counter,
    stale: Counter,
    miss: Counter,
    error: Counter,
}

/// L2 and the upstream of one entity.
pub(super) struct Filler<K, V> {
    entity: Entity,
    /// The shared tier, when Redis is configured.
    l2: Option<Arc<L2>>,
    fetch: Box<dyn Fetch<K, V>>,
    counters: Counters,
}

/// What a flight found, before it lands.
pub(super) struct Filled<K, V> {
    /// Each key's outcome, for the flight's waiters.
    pub results: Outcomes<K, V>,
    /// Entries for L1: from L2, from other replicas' fills, from upstream.
    pub for_l1: Vec<(K, Arc<Cached<V>>)>,
    /// Keys served stale from L2, to refresh in the background.
    pub stale: Vec<K>,
    /// What this replica fetched itself (for L2) and the leases it holds.
    fetched: Vec<(K, Arc<Cached<V>>)>,
    leased: Vec<K>,
}

impl<K: Key, V: Value> Filler<K, V> {
    pub(super) fn new(
        entity: Entity,
        l2: Option<Arc<L2>>,
        fetch: impl Fetch<K, V>,
    ) -> Filler<K, V> {
        let c = |result: &'static str| metrics::counter!(crate::telemetry::CACHE_REQUESTS, "entity" => entity.name(), "tier" => "l2", "result" => result);
        Filler {
            entity,
            l2,
            fetch: Box::new(fetch),
            counters: Counters {
                hit: c("hit"),
                stale: c("stale"),
                miss: c("miss"),
                error: c("error"),
            },
        }
    }

    fn name(&self) -> &'static str {
        self.entity.name()
    }

    /// What L2 holds of `keys`, in order.
    async fn read_l2(&self, l2: &L2, keys: &[K]) -> Result<Vec<Option<Cached<V>>>, Unavailable> {
        let encoded: Vec<String> = keys.iter().map(Key::encode).collect();
        let previous: Vec<String> = keys.iter().map(Key::encode_previous).collect();
        l2.get::<V>(self.name(), &encoded, &previous).await
    }

    /// Finds `keys` in L2, through leases, or upstream. `held` reads L1, for
    /// the last good value of a key whose fetch failed.
    pub(super) async fn fill(
        &self,
        keys: Vec<K>,
        priority: Priority,
        mode: Mode,
        policy: Policy,
        held: impl Fn(&K) -> Option<Arc<Cached<V>>>,
    ) -> Filled<K, V> {
        let mut results = Outcomes::with_capacity_and_hasher(keys.len(), CacheHasher::default());
        // Entries past their hard TTL, kept to serve if the upstream fails.
        let mut fallback: HashMap<K, Arc<Cached<V>>, CacheHasher> = HashMap::default();
        let mut from_l2 = Vec::new();
        let mut stale = Vec::new();
        let mut need = keys;

        if let Some(l2) = &self.l2 {
            let encoded: Vec<String> = need.iter().map(Key::encode).collect();
            let span = trace_span!(
                "cache.l2",
                otel.name = %format_args!("l2 {}", self.entity),
                moat.cache.entity = %self.entity,
                moat.cache.keys = encoded.len(),
                moat.cache.l2_found = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let read = self.read_l2(l2, &need).instrument(span.clone()).await;
            match &read {
                Ok(found) => span.record("moat.cache.l2_found", found.iter().flatten().count()),
                Err(_) => span.record("otel.status_code", "ERROR"),
            };
            drop(span);
            match read {
                Ok(found) => {
                    let now = Timestamp::now();
                    let mut still = Vec::new();
                    for (key, entry) in need.into_iter().zip(found) {
                        let Some(entry) = entry else {
                            self.counters.miss.increment(1);
                            still.push(key);
                            continue;
                        };
                        let entry = Arc::new(entry);
                        match policy.state(&entry, now) {
                            State::Fresh => {
                                self.counters.hit.increment(1);
                                from_l2.push((key, entry));
                            }
                            State::Stale if mode == Mode::ReadThrough => {
                                self.counters.stale.increment(1);
                                stale.push(key.clone());
                                from_l2.push((key, entry));
                            }
                            State::Stale | State::Expired => {
                                self.counters.miss.increment(1);
                                fallback.insert(key.clone(), entry);
                                still.push(key);
                            }
                            State::Dead => {
                                self.counters.miss.increment(1);
                                still.push(key);
                            }
                        }
                    }
                    need = still;
                }
                Err(_) => self.counters.error.increment(need.len() as u64),
            }
        }

        // Lease: fetch ours, wait for theirs; fetch theirs too if they fail us.
        let (mine, theirs) = match &self.l2 {
            Some(l2) if !need.is_empty() => {
                let encoded: Vec<String> = need.iter().map(Key::encode).collect();
                let leases = l2.lease(self.name(), &encoded).await;
                let (mut mine, mut theirs) = (Vec::new(), Vec::new());
                for (key, ours) in need.into_iter().zip(leases) {
                    if ours {
                        mine.push(key)
                    } else {
                        theirs.push(key)
                    }
                }
                // A holder may have filled and let go between our L2 read
                // and our lease: look once more before calling upstream.
                let (landed, mine) = self.fresh_in_l2(mine, policy).await;
                if !landed.is_empty() {
                    let keys: Vec<String> = landed.iter().map(|(k, _)| k.encode()).collect();
                    l2.release(self.name(), &keys).await;
                    from_l2.extend(landed);
                }
                (mine, theirs)
            }
            _ => (need, Vec::new()),
        };
        // The leases taken, to give back once the flight has landed.
        let leased = if self.l2.is_some() {
            mine.clone()
        } else {
            Vec::new()
        };
        let (mut upstream, (followed, orphaned)) = tokio::join!(
            self.fetch_upstream(mine, priority),
            self.follow(theirs, policy)
        );
        if !orphaned.is_empty() {
            upstream.extend(self.fetch_upstream(orphaned, priority).await);
        }

        let now = Timestamp::now();
        let mut for_l1 = from_l2.clone();
        for_l1.extend(followed.iter().cloned());
        let mut fetched = Vec::new();
        for (key, outcome) in upstream {
            let outcome = match outcome {
                Ok(value) => {
                    let weight = weight(&value);
                    let entry = Arc::new(Cached::new(value, now, weight));
                    for_l1.push((key.clone(), entry.clone()));
                    if self.l2.is_some() {
                        fetched.push((key.clone(), entry.clone()));
                    }
                    Ok(entry)
                }
                Err(e) => last_good(policy, held(&key), fallback.remove(&key), e),
            };
            results.insert(key, outcome);
        }
        for (key, entry) in from_l2.into_iter().chain(followed) {
            results.insert(key, Ok(entry));
        }
        Filled {
            results,
            for_l1,
            stale,
            fetched,
            leased,
        }
    }

    /// After the tier landed a flight in L1: shares what this replica
    /// fetched (and is still wanted) through L2, and gives the leases back.
    pub(super) async fn finish(
        &self,
        landed: &[(K, Arc<Cached<V>>)],
        filled: Filled<K, V>,
        policy: Policy,
    ) {
        let Some(l2) = &self.l2 else {
            return;
        };
        let kept: Vec<(K, Arc<Cached<V>>)> = filled
            .fetched
            .iter()
            .filter(|(k, _)| landed.iter().any(|(l, _)| l == k))
            .cloned()
            .collect();
        let _ = l2.put(self.name(), &puts(&kept, policy)).await;
        let leased: Vec<String> = filled.leased.iter().map(Key::encode).collect();
        l2.release(self.name(), &leased).await;
    }

    /// What L2 holds for `keys`, whatever its age (absent keys are not
    /// there, or Redis is away).
    pub(super) async fn peek(&self, keys: Vec<K>) -> Vec<(K, Arc<Cached<V>>)> {
        let Some(l2) = self.l2.as_ref().filter(|_| !keys.is_empty()) else {
            return Vec::new();
        };
        match self.read_l2(l2, &keys).await {
            Ok(found) => keys
                .into_iter()
                .zip(found)
                .filter_map(|(k, e)| Some((k, Arc::new(e?))))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Every key of this entity in L2 (none when Redis is away).
    pub(super) async fn shared_keys(&self) -> Vec<K> {
        let Some(l2) = &self.l2 else {
            return Vec::new();
        };
        l2.keys(self.name())
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|k| K::decode(k))
            .collect()
    }

    /// Writes entries made elsewhere (a listing, a quote, an event) to L2.
    pub(super) async fn put(&self, entries: &[(K, Arc<Cached<V>>)], policy: Policy) {
        let Some(l2) = &self.l2 else {
            return;
        };
        let _ = l2.put(self.name(), &puts(entries, policy)).await;
    }

    /// The keys L2 lists under each of `ids` (composite keys only; none
    /// when Redis is away).
    pub(super) async fn listed(&self, ids: &[String]) -> Vec<K> {
        let Some(l2) = self.l2.as_ref().filter(|_| K::COMPOSITE && !ids.is_empty()) else {
            return Vec::new();
        };
        let escaped: Vec<String> = ids.iter().map(|id| escape(id)).collect();
        l2.listed(self.name(), &escaped)
            .await
            .unwrap_or_default()
            .iter()
            .flatten()
            .filter_map(|k| K::decode(k))
            .collect()
    }

    /// Calls the upstream for `keys`: each one found, absent (None) or failed.
    pub(super) async fn fetch_upstream(
        &self,
        keys: Vec<K>,
        priority: Priority,
    ) -> Vec<(K, Result<Option<V>, Error>)> {
        if keys.is_empty() {
            return Vec::new();
        }
        match self.fetch.fetch(keys.clone(), priority).await {
            Ok(mut found) => keys
                .into_iter()
                .map(|k| {
                    let outcome = match found.remove(&k) {
                        Some(Ok(v)) => Ok(Some(v)),
                        Some(Err(e)) => Err(e),
                        None => Ok(None),
                    };
                    (k, outcome)
                })
                .collect(),
            Err(e) => keys.into_iter().map(|k| (k, Err(e.clone()))).collect(),
        }
    }

    /// Waits for other replicas' fills of `keys` to land in L2. Returns what
    /// landed, and the keys whose lease holder went away without a value
    /// (or that outlived the lease), which this replica must fetch itself.
    async fn follow(&self, keys: Vec<K>, policy: Policy) -> (Vec<(K, Arc<Cached<V>>)>, Vec<K>) {
        let Some(l2) = &self.l2 else {
            return (Vec::new(), keys);
        };
        let deadline = tokio::time::Instant::now() + l2.lease_ttl();
        let mut waiting = keys;
        let mut landed = Vec::new();
        let mut orphaned = Vec::new();
        while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(FOLLOW_POLL).await;
            let (found, still) = self.fresh_in_l2(waiting, policy).await;
            landed.extend(found);
            if still.is_empty() {
                return (landed, orphaned);
            }
            let encoded: Vec<String> = still.iter().map(Key::encode).collect();
            let Ok(held) = l2.leased(self.name(), &encoded).await else {
                orphaned.extend(still);
                return (landed, orphaned); // Redis went away: fetch ourselves
            };
            let (held, gone): (Vec<_>, Vec<_>) = still.into_iter().zip(held).partition(|(_, h)| *h);
            if !gone.is_empty() {
                // A holder let go: either it wrote its value just after we
                // looked (look again), or its fetch failed (fetch ourselves).
                let (found, lost) = self
                    .fresh_in_l2(gone.into_iter().map(|(k, _)| k).collect(), policy)
                    .await;
                landed.extend(found);
                orphaned.extend(lost);
            }
            waiting = held.into_iter().map(|(k, _)| k).collect();
        }
        orphaned.extend(waiting);
        (landed, orphaned)
    }

    /// Splits `keys` into those with a fresh value in L2 and the rest.
    /// Redis being unavailable means "the rest".
    async fn fresh_in_l2(
        &self,
        keys: Vec<K>,
        policy: Policy,
    ) -> (Vec<(K, Arc<Cached<V>>)>, Vec<K>) {
        let Some(l2) = self.l2.as_ref().filter(|_| !keys.is_empty()) else {
            return (Vec::new(), keys);
        };
        let Ok(found) = self.read_l2(l2, &keys).await else {
            return (Vec::new(), keys);
        };
        let now = Timestamp::now();
        let mut fresh = Vec::new();
        let mut rest = Vec::new();
        for (key, entry) in keys.into_iter().zip(found) {
            match entry {
                Some(e) if policy.state(&e, now) == State::Fresh => fresh.push((key, Arc::new(e))),
                _ => rest.push(key),
            }
        }
        (fresh, rest)
    }
}

/// What L2 is asked to write for `entries`: composite keys are listed
/// under their ids, and each entry is kept as long as it may be served.
fn puts<K: Key, V>(entries: &[(K, Arc<Cached<V>>)], policy: Policy) -> Vec<Put<'_, V>> {
    let now = Timestamp::now();
    entries
        .iter()
        .map(|(k, e)| Put {
            key: k.encode(),
            id: K::COMPOSITE.then(|| escape(k.id())),
            entry: e,
            keep: policy.retention(e, now),
        })
        .collect()
}

/// Stale-if-error: the last good value (from L1, or an expired one read
/// from L2), up to max-stale, else the error. A value served so is marked:
/// its source could not answer for it.
fn last_good<V>(
    policy: Policy,
    in_l1: Option<Arc<Cached<V>>>,
    from_l2: Option<Arc<Cached<V>>>,
    error: Error,
) -> Outcome<V> {
    let now = Timestamp::now();
    let usable = |e: &Arc<Cached<V>>| e.value.is_some() && policy.state(e, now) != State::Dead;
    match in_l1.filter(usable).or(from_l2.filter(usable)) {
        Some(entry) => {
            entry.mark_unanswered();
            Ok(entry)
        }
        None => Err(error),
    }
}

/// Approximate bytes an entry's value holds: the shared entry itself, and
/// the heap behind it, which runs to about three times the value's compact
/// serialized size (`String` and `Vec` headers, allocator size classes).
/// `tests/l1_memory.rs` holds this to what real entries take.
pub(super) fn weight<V: Serialize>(value: &Option<V>) -> usize {
    let serialized = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .unwrap_or(256);
    // The `Arc` header: two counts.
    size_of::<Cached<V>>() + 16 + 3 * serialized
}
