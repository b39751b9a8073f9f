//! Per-request batching. Resolvers of one GraphQL request ask for keys one
//! at a time (`product.price` for each of 20 products); the loader gathers
//! the keys that miss L1 and hands them to the cache as one batch, so a page
//! of 20 products costs one upstream call per endpoint.
//!
//! The batch window is one scheduler yield, not a timer: async-graphql polls
//! sibling fields in the same pass, so by the time the first one resumes,
//! its siblings have queued their keys. A cache hit skips the batch and the
//! yield entirely. The tier then puts the batch on its open flight, where
//! the batches of other requests in progress may join it (`Tier`).
//!
//! A loader may follow another one of the same request ([`Ahead`]): its
//! batch then waits for the other's to land, when one fetch fills both
//! (stock that comes with the prices).
//!
//! Every wait is bounded by the request's [`Deadline`], one timer for all
//! of its fields.

use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cache::{Hit, Key, Reads, Sources, Tier, Value};
use crate::error::Error;
use crate::vocab::{CacheMap, Priority};

type Results<K, V> = Arc<CacheMap<K, Result<Hit<V>, Error>>>;
type Done<K, V> = Shared<oneshot::Receiver<Results<K, V>>>;
type Answer<K, V> = oneshot::Sender<Results<K, V>>;

struct Pending<K, V> {
    keys: Vec<K>,
    done: Done<K, V>,
}

/// The batch a loader of one request has started, for a loader of the same
/// request that waits for it to land before it fetches its own.
#[derive(Clone, Default)]
pub struct Ahead(Arc<Mutex<Option<Shared<BoxFuture<'static, ()>>>>>);

impl Ahead {
    fn set(&self, landed: Shared<BoxFuture<'static, ()>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(landed);
    }

    fn current(&self) -> Option<Shared<BoxFuture<'static, ()>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Batches one request's reads of one tier.
pub struct Loader<K, V> {
    tier: Arc<Tier<K, V>>,
    pending: Mutex<Option<Pending<K, V>>>,
    /// What the request read, for the response cache.
    reads: Arc<Reads>,
    /// What the answer is built from, for HTTP caches (`edge`).
    sources: Arc<Sources>,
    deadline: Deadline,
    /// Where this loader's batches are announced, for a loader that
    /// follows it.
    leads: Option<Ahead>,
    /// The loader whose batch this one's waits for.
    follows: Option<Ahead>,
}

impl<K: Key, V: Value> Loader<K, V> {
    pub fn new(
        tier: Arc<Tier<K, V>>,
        deadline: Deadline,
        reads: Arc<Reads>,
        sources: Arc<Sources>,
    ) -> Loader<K, V> {
        Loader {
            tier,
            pending: Mutex::new(None),
            reads,
            sources,
            deadline,
            leads: None,
            follows: None,
        }
    }

    /// Announces each batch on `ahead`, if any.
    pub fn leading(mut self, ahead: Option<Ahead>) -> Self {
        self.leads = ahead;
        self
    }

    /// Waits for the batch announced on `ahead`, if any, before fetching:
    /// its fetch may bring this loader's keys too.
    pub fn following(mut self, ahead: Option<Ahead>) -> Self {
        self.follows = ahead;
        self
    }

    pub async fn load(&self, key: K) -> Result<Hit<V>, Error> {
        let loaded = self.load_unnoted(&key).await;
        if let Ok(hit) = &loaded {
            self.tier.note(&key, hit, &self.sources);
        }
        loaded
    }

    async fn load_unnoted(&self, key: &K) -> Result<Hit<V>, Error> {
        if let Some(hit) = self.tier.get_recorded(key, &self.reads) {
            return Ok(hit);
        }
        loop {
            let (leader, done) = self.join(key);
            if let Some(tx) = leader {
                Leading {
                    loader: self,
                    done: Some(done.clone()),
                }
                .fetch(tx)
                .await?;
            }
            match self.deadline.bound(done).await {
                Ok(Ok(results)) => {
                    return results.get(key).cloned().unwrap_or_else(|| {
                        Err(Error::internal(format!("batch lost key {key:?}")))
                    });
                }
                // The leader was cancelled before it answered (its field
                // was dropped): start a new batch, or join one started by
                // another waiter.
                Ok(Err(_)) => continue,
                Err(past) => return Err(past),
            }
        }
    }

    /// Adds `key` to the pending batch, or starts one: then the caller
    /// leads it and holds its sender.
    fn join(&self, key: &K) -> (Option<Answer<K, V>>, Done<K, V>) {
        let mut pending = self.lock();
        match pending.as_mut() {
            Some(batch) => {
                batch.keys.push(key.clone());
                (None, batch.done.clone())
            }
            None => {
                let (tx, rx) = oneshot::channel();
                let done = rx.shared();
                if let Some(ahead) = &self.leads {
                    ahead.set(done.clone().map(drop).boxed().shared());
                }
                *pending = Some(Pending {
                    keys: vec![key.clone()],
                    done: done.clone(),
                });
                (Some(tx), done)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pending<K, V>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A batch's leader. If it is dropped before it took the batch (its field
/// was cancelled during the yield), the guard takes the batch away, so the
/// waiters, whose receivers then fail, start a new one instead of finding
/// a batch nobody will ever send.
struct Leading<'a, K, V> {
    loader: &'a Loader<K, V>,
    /// The batch led, until it is taken.
    done: Option<Done<K, V>>,
}

impl<K: Key, V: Value> Leading<'_, K, V> {
    /// Yields once so sibling fields queue their keys, then fetches the
    /// batch and hands every waiter the results.
    async fn fetch(mut self, tx: Answer<K, V>) -> Result<(), Error> {
        tokio::task::yield_now().await;
        let loader = self.loader;
        // Announced before this one's yield ended, so it is seen here
        // whichever sibling field was polled first.
        if let Some(ahead) = loader.follows.as_ref().and_then(Ahead::current) {
            let _ = loader.deadline.bound(ahead).await;
        }
        let keys = self.take().map(|batch| batch.keys).unwrap_or_default();
        let results = loader.tier.get_many(keys, Priority::Browse);
        let results = loader.deadline.bound(results).await?;
        let _ = tx.send(Arc::new(results));
        Ok(())
    }

    /// The pending batch, if it is still the one this leader started.
    fn take(&mut self) -> Option<Pending<K, V>> {
        let done = self.done.take()?;
        let mut pending = self.loader.lock();
        match pending.as_ref() {
            Some(batch) if batch.done.ptr_eq(&done) => pending.take(),
            _ => None,
        }
    }
}

impl<K, V> Drop for Leading<'_, K, V> {
    fn drop(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        let mut pending = self
            .loader
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pending
            .as_ref()
            .is_some_and(|batch| batch.done.ptr_eq(&done))
        {
            *pending = None;
        }
    }
}

/// When a request stops waiting on upstream data: a field still waiting
/// then fails alone (the fetch goes on and fills the cache for the next
/// request). Its fields share one timer, set when the first of them
/// waits: a timer per wait costs a page three or more, and each one the
/// runtime takes may wake its driver (a write to its eventfd).
#[derive(Clone)]
pub struct Deadline(Arc<Timer>);

struct Timer {
    at: Instant,
    passed: OnceLock<Shared<BoxFuture<'static, ()>>>,
}

impl Deadline {
    pub fn at(at: Instant) -> Deadline {
        Deadline(Arc::new(Timer {
            at,
            passed: OnceLock::new(),
        }))
    }

    /// `work`'s output, or a field error if the deadline passes first.
    /// Like `tokio::time::timeout_at`, `work` is polled first, and the
    /// timer is only set when it has to wait.
    pub async fn bound<F: Future>(&self, work: F) -> Result<F::Output, Error> {
        let mut work = pin!(work);
        let mut passed = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            let passed = passed.get_or_insert_with(|| self.passed());
            passed.poll_unpin(cx).map(|()| Err(past_deadline()))
        })
        .await
    }

    fn passed(&self) -> Shared<BoxFuture<'static, ()>> {
        let at = self.0.at;
        self.0
            .passed
            .get_or_init(|| tokio::time::sleep_until(at).boxed().shared())
            .clone()
    }
}

/// A field that ran out of the request's time.
fn past_deadline() -> Error {
    Error::unavailable("the upstream did not answer within the request deadline")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::background::Background;
    use crate::cache::Tier;
    use crate::cache::testing::Lengths;
    use crate::config;
    use crate::vocab::Entity;

    #[tokio::test]
    async fn a_cancelled_leader_leaves_no_batch_behind() {
        let tier = Tier::new(
            Entity::Price,
            &config::Cache::default(),
            None,
            Background::new(),
            Lengths,
        );
        let deadline = Deadline::at(Instant::now() + std::time::Duration::from_secs(5));
        let loader = Loader::new(
            tier,
            deadline,
            Arc::new(Reads::ignored()),
            Arc::new(Sources::ignored()),
        );

        // The leader starts a batch and yields; a sibling joins it; then
        // the leader's field is dropped before it fetched anything.
        let mut leader = Box::pin(loader.load("abc".to_string()));
        assert!(leader.as_mut().now_or_never().is_none(), "leading, yielded");
        let mut waiter = Box::pin(loader.load("hello".to_string()));
        assert!(waiter.as_mut().now_or_never().is_none(), "waiting on it");
        drop(leader);

        let hit = waiter.await.expect("the waiter leads a batch of its own");
        assert_eq!(hit.value(), Some(&5));
        let hit = loader.load("later".to_string()).await.expect("a new batch");
        assert_eq!(hit.value(), Some(&5));
    }

    #[tokio::test(start_paused = true)]
    async fn every_wait_of_a_request_ends_at_its_one_deadline() {
        let deadline = Deadline::at(Instant::now() + std::time::Duration::from_secs(5));
        let (first, second) = tokio::join!(
            deadline.bound(std::future::pending::<()>()),
            deadline.bound(std::future::pending::<()>()),
        );
        let code = |r: Result<(), Error>| r.expect_err("past the deadline").kind().code();
        assert_eq!(code(first), "UPSTREAM_UNAVAILABLE");
        assert_eq!(code(second), "UPSTREAM_UNAVAILABLE");
        assert_eq!(
            Instant::now() - deadline.0.at,
            std::time::Duration::ZERO,
            "both ended when it passed"
        );
        // What is ready is taken, deadline or not (as `timeout_at` does).
        assert_eq!(deadline.bound(async { 7 }).await.ok(), Some(7));
    }
}
