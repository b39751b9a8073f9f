//! What one flight does for the keys it leads:
//!
//! 1. L2: a value another replica fetched (fresh, or stale for a plain miss)
//!    saves the upstream call;
//! 2. the fill lease: of several replicas missing the same key, the one that
//!    takes the lease fetches, the others wait briefly for its value to
//!    land in L2, and fetch themselves if the holder gives up or dies;
//! 3. the upstream fetch, whose results go to L1 and L2; a key that failed
//!    keeps its last good value up to max-stale (stale-if-error).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::freshness::{Cached, State};
use super::key::Key;
use super::tier::{Fill, Outcome, Tier, Value, weight};
use crate::domain::Timestamp;
use crate::error::Error;
use crate::upstream::Priority;

/// How often a replica waiting on another's fill looks at L2.
const FOLLOW_POLL: Duration = Duration::from_millis(15);

impl<K: Key, V: Value> Tier<K, V> {
    pub(super) async fn load(
        self: &Arc<Self>,
        id: u64,
        keys: Vec<K>,
        priority: Priority,
        fill: Fill,
    ) -> HashMap<K, Outcome<V>> {
        let policy = **self.policy.load();
        let mut results: HashMap<K, Outcome<V>> = HashMap::with_capacity(keys.len());
        // Entries past their hard TTL, kept to serve if the upstream fails.
        let mut fallback: HashMap<K, Arc<Cached<V>>> = HashMap::new();
        let mut from_l2 = Vec::new();
        let mut stale_from_l2 = Vec::new();
        let mut need = keys;

        if let Some(l2) = &self.l2 {
            let encoded: Vec<String> = need.iter().map(Key::encode).collect();
            match l2.get::<V>(self.entity, &encoded).await {
                Ok(found) => {
                    let now = Timestamp::now();
                    let mut still = Vec::new();
                    for (key, entry) in need.into_iter().zip(found) {
                        let Some(entry) = entry else {
                            self.metrics.l2_miss.increment(1);
                            still.push(key);
                            continue;
                        };
                        let entry = Arc::new(entry);
                        match policy.state(&entry, now) {
                            State::Fresh => {
                                self.metrics.l2_hit.increment(1);
                                from_l2.push((key, entry));
                            }
                            State::Stale if fill == Fill::ReadThrough => {
                                self.metrics.l2_stale.increment(1);
                                stale_from_l2.push(key.clone());
                                from_l2.push((key, entry));
                            }
                            State::Stale | State::Expired => {
                                self.metrics.l2_miss.increment(1);
                                fallback.insert(key.clone(), entry);
                                still.push(key);
                            }
                            State::Dead => {
                                self.metrics.l2_miss.increment(1);
                                still.push(key);
                            }
                        }
                    }
                    need = still;
                }
                Err(_) => self.metrics.l2_error.increment(len(&need)),
            }
        }

        // Lease: fetch ours, wait for theirs; fetch theirs too if they fail us.
        let (mine, theirs) = match &self.l2 {
            Some(l2) if !need.is_empty() => {
                let encoded: Vec<String> = need.iter().map(Key::encode).collect();
                let leases = l2.lease(self.entity, &encoded).await;
                let mut mine = Vec::new();
                let mut theirs = Vec::new();
                for (key, ours) in need.into_iter().zip(leases) {
                    if ours {
                        mine.push(key)
                    } else {
                        theirs.push(key)
                    }
                }
                // A holder may have filled and let go between our L2 read
                // and our lease: look once more before calling upstream.
                let (landed, mine) = self.fresh_in_l2(mine).await;
                if !landed.is_empty() {
                    let keys: Vec<String> = landed.iter().map(|(k, _)| k.encode()).collect();
                    l2.release(self.entity, &keys).await;
                    from_l2.extend(landed);
                }
                (mine, theirs)
            }
            _ => (need, Vec::new()),
        };
        let (mut fetched, (followed, orphaned)) = tokio::join!(
            self.fetch_upstream(mine.clone(), priority),
            self.follow(theirs)
        );
        if !orphaned.is_empty() {
            fetched.extend(self.fetch_upstream(orphaned, priority).await);
        }

        let now = Timestamp::now();
        let mut fills = from_l2.clone();
        fills.extend(followed.iter().cloned());
        let mut to_l2 = Vec::new();
        for (key, outcome) in fetched {
            let outcome = match outcome {
                Ok(value) => {
                    let entry = Arc::new(Cached::new(value.clone(), now, weight(&value)));
                    fills.push((key.clone(), entry.clone()));
                    to_l2.push((key.clone(), entry.clone()));
                    Ok(entry)
                }
                Err(e) => self.last_good(&key, fallback.remove(&key), e),
            };
            results.insert(key, outcome);
        }
        for (key, entry) in from_l2.into_iter().chain(followed) {
            results.insert(key, Ok(entry));
        }

        // L1 first (the flight's keys must be servable the moment it lands),
        // then L2 for what is still wanted, then the leases go back.
        let landed = self.land(id, fills);
        if let Some(l2) = &self.l2 {
            let keep: Vec<(String, &Cached<V>, Duration)> = to_l2
                .iter()
                .filter(|(k, _)| landed.iter().any(|(l, _)| l == k))
                .map(|(k, e)| (k.encode(), &**e, policy.retention(e, now)))
                .collect();
            let _ = l2.put(self.entity, &keep).await;
            let mine: Vec<String> = mine.iter().map(Key::encode).collect();
            l2.release(self.entity, &mine).await;
        }
        for key in stale_from_l2 {
            self.queue_refresh(key);
        }
        results
    }

    /// Calls the upstream for `keys`: each one found, absent (None) or failed.
    async fn fetch_upstream(
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
    async fn follow(&self, keys: Vec<K>) -> (Vec<(K, Arc<Cached<V>>)>, Vec<K>) {
        let Some(l2) = &self.l2 else {
            return (Vec::new(), keys);
        };
        let deadline = tokio::time::Instant::now() + l2.lease_ttl();
        let mut waiting = keys;
        let mut landed = Vec::new();
        let mut orphaned = Vec::new();
        while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(FOLLOW_POLL).await;
            let (found, still) = self.fresh_in_l2(waiting).await;
            landed.extend(found);
            if still.is_empty() {
                return (landed, orphaned);
            }
            let encoded: Vec<String> = still.iter().map(Key::encode).collect();
            let Ok(held) = l2.leased(self.entity, &encoded).await else {
                orphaned.extend(still);
                return (landed, orphaned); // Redis went away: fetch ourselves
            };
            let (held, gone): (Vec<_>, Vec<_>) = still.into_iter().zip(held).partition(|(_, h)| *h);
            if !gone.is_empty() {
                // A holder let go: either it wrote its value just after we
                // looked (look again), or its fetch failed (fetch ourselves).
                let (found, lost) = self
                    .fresh_in_l2(gone.into_iter().map(|(k, _)| k).collect())
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
    async fn fresh_in_l2(&self, keys: Vec<K>) -> (Vec<(K, Arc<Cached<V>>)>, Vec<K>) {
        let Some(l2) = self.l2.as_ref().filter(|_| !keys.is_empty()) else {
            return (Vec::new(), keys);
        };
        let encoded: Vec<String> = keys.iter().map(Key::encode).collect();
        let Ok(found) = l2.get::<V>(self.entity, &encoded).await else {
            return (Vec::new(), keys);
        };
        let now = Timestamp::now();
        let policy = **self.policy.load();
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

    /// Stale-if-error: the last good value (from L1, or an expired one read
    /// from L2), up to max-stale, else the error.
    fn last_good(&self, key: &K, from_l2: Option<Arc<Cached<V>>>, error: Error) -> Outcome<V> {
        let policy = **self.policy.load();
        let now = Timestamp::now();
        let usable = |e: &Arc<Cached<V>>| e.value.is_some() && policy.state(e, now) != State::Dead;
        match self.l1.get(key).filter(usable).or(from_l2.filter(usable)) {
            Some(entry) => Ok(entry),
            None => Err(error),
        }
    }
}

fn len<T>(v: &[T]) -> u64 {
    v.len() as u64
}
