//! The tiered cache: per entity an L1 in process (moka, bounded by bytes)
//! and the shared L2 in Redis, single-flight fetching within a replica and
//! fill leases across replicas, freshness rules (soft TTL, hard TTL,
//! max-stale, negative TTL, jitter), and invalidation broadcast to every
//! replica. `Tier::get_many` is the read path; `catalog` says what each
//! tier holds and how it fills.

mod fill;
mod freshness;
pub mod invalidation;
pub mod key;
mod l2;
mod tier;

pub use freshness::{Cached, Freshness, Policy, State};
pub use invalidation::Invalidator;
pub use key::Key;
pub use l2::L2;
pub use tier::{Batch, Fetch, Found, Hit, Tier, Value};
