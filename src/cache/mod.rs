//! The tiered cache: per entity an L1 in process (moka, bounded by bytes)
//! and the shared L2 in Redis, single-flight fetching within a replica and
//! fill leases across replicas, freshness rules (soft TTL, hard TTL,
//! max-stale, negative TTL, jitter), and invalidation broadcast to every
//! replica. `Tier::get_many` is the read path; `catalog` and `customers`
//! say what each tier holds and how it fills.
//!
//! - `tier`: [`Tier`], L1 and single-flight; [`AnyTier`], a tier with its
//!   types erased; [`Target`], what an invalidation drops;
//! - `fill`: what a flight does past L1 (L2, leases, the upstream [`Fetch`]);
//! - `hit`: [`Hit`] and [`Found`], what a resolver gets;
//! - `freshness`: [`Policy`] and the age of an entry;
//! - `key`, `l2`, `invalidation`: keys, the Redis tier, the broadcast;
//! - `responses`: whole answers to anonymous queries, valid while the L1
//!   entries they were built from are;
//! - `sources`: the records an answer was built from and how long each
//!   stays fresh, for HTTP caches in front of Moat.

mod fill;
mod freshness;
mod hit;
mod ids;
pub mod invalidation;
pub mod key;
mod l2;
pub mod responses;
pub mod sources;
mod tier;

/// What moka 0.12 keeps per entry besides the key and value, for the
/// weighers of L1 and the response cache: the hash table's slot, entry
/// info, access-order and timer-wheel nodes, the key's shared copy (about
/// 280 bytes, counted with a counting allocator; `tests/l1_memory.rs`
/// holds whole entries' weights to what they take).
const ENTRY_BYTES: usize = 288;

pub use fill::{Batch, Fetch, Value};
pub use freshness::{Cached, Freshness, Policy, Reason, State};
pub use hit::{Found, Hit};
pub use invalidation::Invalidator;
pub use key::Key;
pub use l2::L2;
pub use responses::{Asked, Audience, Reads, ResponseCache, Sent};
pub use sources::{Shareable, Source, Sources};
pub use tier::{AnyTier, Target, Tier, Tiers, looks_before_take_off};

/// What the cache's own tests (and the loader's) fill tiers from.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;

    use super::{Batch, Fetch};
    use crate::vocab::Priority;

    /// An upstream whose every key's value is its length.
    pub struct Lengths;

    impl Fetch<String, u32> for Lengths {
        fn fetch(&self, keys: Vec<String>, _: Priority) -> BoxFuture<'static, Batch<String, u32>> {
            let values = keys.into_iter().map(|k| (k.clone(), Ok(k.len() as u32)));
            let batch = Ok(values.collect());
            async move { batch }.boxed()
        }
    }

    /// `Lengths`, keeping each call's keys (sorted) in the order made.
    #[derive(Clone, Default)]
    pub struct Counted(Arc<Mutex<Vec<Vec<String>>>>);

    impl Counted {
        pub fn batches(&self) -> Vec<Vec<String>> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Fetch<String, u32> for Counted {
        fn fetch(&self, keys: Vec<String>, p: Priority) -> BoxFuture<'static, Batch<String, u32>> {
            let mut sorted = keys.clone();
            sorted.sort();
            self.0.lock().unwrap().push(sorted);
            Lengths.fetch(keys, p)
        }
    }
}
