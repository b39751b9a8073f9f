//! What a tier hands a resolver: a cached entry and why it is served as it
//! is, with freshness computed at the reader's clock.

use std::sync::Arc;

use super::freshness::{Cached, Freshness, Reason};
use crate::domain::Timestamp;

/// A cached value handed to a resolver.
#[derive(Debug)]
pub struct Hit<V> {
    pub(super) entry: Arc<Cached<V>>,
    pub(super) reason: Reason,
}

impl<V> Clone for Hit<V> {
    fn clone(&self) -> Self {
        Hit {
            entry: self.entry.clone(),
            reason: self.reason,
        }
    }
}

impl<V> Hit<V> {
    /// `None`: the upstream says this key does not exist.
    pub fn value(&self) -> Option<&V> {
        self.entry.value.as_ref()
    }

    /// Served past its freshness (for whatever `reason`).
    pub fn stale(&self) -> bool {
        self.reason != Reason::Fresh
    }

    pub fn freshness(&self, now: Timestamp) -> Freshness {
        Freshness {
            as_of: self.entry.fetched_at,
            age: self.entry.fetched_at.age(now),
            stale: self.stale(),
            reason: self.reason,
        }
    }

    pub fn found(self) -> Option<Found<V>> {
        self.entry.value.is_some().then_some(Found(self))
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
