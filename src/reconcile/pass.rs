//! One pass over one tier: every key Moat holds (L1, and L2 by SCAN),
//! re-read from the system of record in batches at reconciliation
//! priority, compared, and what differs repaired through the same path as
//! a checkout repair (written through L1 and L2, announced on the
//! invalidation stream) and recorded as an exception for the owner.
//!
//! The pass takes only idle upstream capacity: when the limiter says no,
//! it waits and tries the batch again, so under load it is slow rather
//! than in anyone's way.
//!
//! The owner is the truth, whatever the versions say: a held value that
//! differs from the owner's is repaired even when its version is ahead
//! (a forged or buggy version would otherwise never heal), and the newest
//! version events announced is lowered to the owner's where it ran ahead,
//! so the record's next event is not taken for stale. Either kind of
//! version ahead is an exception for the owner.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Example, Report};
use crate::cache::{Invalidator, Key, Target, Tier, Value};
use crate::domain::{Timestamp, Versioned};
use crate::error::{Error, Kind};
use crate::events::SeenVersions;
use crate::exceptions::{Exception, Exceptions, FoundBy};
use crate::vocab::{Entity, Priority, System};

/// How many drifted keys a report shows.
const EXAMPLES: usize = 10;

/// What a pass may spend.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub batch_size: usize,
    pub max_calls: usize,
    pub deadline: Instant,
}

/// Where a pass writes what it found.
pub struct Sinks<'a> {
    pub invalidator: &'a Invalidator,
    pub exceptions: &'a Exceptions,
    /// The versions events announced, corrected to the owner's.
    pub versions: &'a SeenVersions,
    /// Called after each batch; false: the pass must stop (its lease is
    /// gone).
    pub keep_going: &'a (dyn Fn() -> futures_util::future::BoxFuture<'a, bool> + Sync),
}

/// Runs the pass over `tier`, filling `report`.
pub async fn run<K, V>(
    tier: &Arc<Tier<K, V>>,
    entity: Entity,
    owner: System,
    budget: Budget,
    sinks: &Sinks<'_>,
    report: &mut Report,
) -> Result<(), Error>
where
    K: Key,
    V: Value + PartialEq + Versioned + Serialize + Debug,
{
    let keys = tier.held_keys().await;
    let mut calls = 0;
    for batch in keys.chunks(budget.batch_size.max(1)) {
        if calls >= budget.max_calls || Instant::now() >= budget.deadline {
            report.complete = false;
            break;
        }
        let held = tier.peek(batch).await;
        let authoritative = loop {
            calls += 1;
            match tier
                .authoritative(batch.to_vec(), Priority::Reconcile)
                .await
            {
                Ok(found) => break found,
                // Every other lane goes first: wait for idle capacity.
                Err(e) if e.kind() == Kind::RateLimited && Instant::now() < budget.deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let now = Timestamp::now();
        let mut repairs = Vec::new();
        let mut owner_versions = Vec::new();
        for key in batch {
            let Some(entry) = held.get(key) else {
                continue; // gone from the cache since the walk
            };
            report.checked += 1;
            let owner_says = authoritative.get(key).cloned().flatten();
            if let Some(theirs) = &owner_says {
                owner_versions.push((key.clone(), theirs.version()));
            }
            if entry.value == owner_says {
                continue;
            }
            report.drifted += 1;
            let (cached, says) = (show(&entry.value), show(&owner_says));
            if report.examples.len() < EXAMPLES {
                report.examples.push(Example {
                    key: key.encode(),
                    cached: cached.clone(),
                    authoritative: says.clone(),
                    age_seconds: entry.fetched_at.age(now).as_secs(),
                });
            }
            let kind = if owner_says.is_some() {
                "drift"
            } else {
                "missing"
            };
            sinks.exceptions.record(
                Exception::new(
                    owner.name(),
                    entity.name(),
                    &key.encode(),
                    Some(as_object(&entry.value)),
                    Some(as_object(&owner_says)),
                    FoundBy::Reconcile,
                )
                .of_kind(kind),
            );
            repairs.push((key.clone(), owner_says));
        }
        let drifted: Vec<K> = repairs.iter().map(|(k, _)| k.clone()).collect();
        for (key, seen) in sinks.versions.correct(entity, &owner_versions).await {
            if drifted.contains(&key) {
                continue; // recorded above, with the value held
            }
            let says = owner_versions
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(0, |(_, v)| *v);
            sinks.exceptions.record(
                Exception::new(
                    owner.name(),
                    entity.name(),
                    &key.encode(),
                    Some(serde_json::json!({ "version": seen, "announcedBy": "event" })),
                    Some(serde_json::json!({ "version": says })),
                    FoundBy::Reconcile,
                )
                .of_kind("version"),
            );
        }
        if !repairs.is_empty() {
            let keys: Vec<String> = repairs.iter().map(|(k, _)| k.encode()).collect();
            report.repaired += repairs.len() as u64;
            tier.insert_many(repairs, now).await;
            sinks
                .invalidator
                .refreshed(entity, Target::Keys(keys), None)
                .await?;
        }
        if !(sinks.keep_going)().await {
            report.complete = false;
            break;
        }
    }
    report.calls = calls as u64;
    Ok(())
}

/// A value as an exception and a report show it.
/// A value for an exception (put in outside form there); none: the
/// owner has no such record.
fn as_object<V: Serialize + Debug>(value: &Option<V>) -> serde_json::Value {
    match value {
        None => serde_json::json!({ "found": false }),
        Some(v) => serde_json::to_value(v).unwrap_or_else(|_| serde_json::json!(format!("{v:?}"))),
    }
}

fn show<V: Serialize + Debug>(value: &Option<V>) -> String {
    match value {
        None => "not found".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}")),
    }
}
