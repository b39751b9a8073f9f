//! Per-request batching. Resolvers of one GraphQL request ask for keys one
//! at a time (`product.price` for each of 20 products); the loader gathers
//! the keys that miss L1 and hands them to the cache as one batch, so a page
//! of 20 products costs one upstream call per endpoint.
//!
//! The batch window is one scheduler yield, not a timer: async-graphql polls
//! sibling fields in the same pass, so by the time the first one resumes,
//! its siblings have queued their keys. A cache hit skips the batch and the
//! yield entirely.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cache::{Hit, Key, Reads, Tier, Value};
use crate::error::Error;
use crate::vocab::Priority;

type Results<K, V> = Arc<HashMap<K, Result<Hit<V>, Error>>>;

struct Pending<K, V> {
    keys: Vec<K>,
    done: Shared<oneshot::Receiver<Results<K, V>>>,
}

/// Batches one request's reads of one tier.
pub struct Loader<K, V> {
    tier: Arc<Tier<K, V>>,
    pending: Mutex<Option<Pending<K, V>>>,
    /// What the request read, for the response cache.
    reads: Arc<Reads>,
    /// The request's deadline: a field still waiting then fails alone
    /// (the fetch goes on and fills the cache for the next request).
    deadline: Instant,
}

impl<K: Key, V: Value> Loader<K, V> {
    pub fn new(tier: Arc<Tier<K, V>>, deadline: Instant, reads: Arc<Reads>) -> Loader<K, V> {
        Loader {
            tier,
            pending: Mutex::new(None),
            reads,
            deadline,
        }
    }

    pub async fn load(&self, key: K) -> Result<Hit<V>, Error> {
        if let Some(hit) = self.tier.get_recorded(&key, &self.reads) {
            return Ok(hit);
        }
        let (leader, done) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match pending.as_mut() {
                Some(batch) => {
                    batch.keys.push(key.clone());
                    (None, batch.done.clone())
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    let done = rx.shared();
                    *pending = Some(Pending {
                        keys: vec![key.clone()],
                        done: done.clone(),
                    });
                    (Some(tx), done)
                }
            }
        };
        if let Some(tx) = leader {
            tokio::task::yield_now().await;
            let keys = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(|batch| batch.keys)
                .unwrap_or_default();
            let results = self.tier.get_many(keys, Priority::Browse);
            match tokio::time::timeout_at(self.deadline, results).await {
                Ok(results) => {
                    let _ = tx.send(Arc::new(results));
                }
                Err(_) => return Err(past_deadline()),
            }
        }
        match tokio::time::timeout_at(self.deadline, done).await {
            Ok(Ok(results)) => results
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Err(Error::internal(format!("batch lost key {key:?}")))),
            Ok(Err(_)) => Err(past_deadline()),
            Err(_) => Err(past_deadline()),
        }
    }
}

/// A field that ran out of the request's time.
pub fn past_deadline() -> Error {
    Error::unavailable("the upstream did not answer within the request deadline")
}
