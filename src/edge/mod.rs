//! The edge: HTTP caches and CDNs in front of Moat (Varnish, Fastly,
//! Cloudflare). Moat tells them how long an answer may be kept, from the
//! freshness it already tracks of every record in it, and names those
//! records; when a record changes, the same change that repairs Moat's own
//! tiers purges the edge.
//!
//! - `headers`: `Cache-Control`, `ETag`/304, `Vary`, `Surrogate-Key` and
//!   `Cache-Tag` of an answer, from the records it was built from
//!   (`cache::Sources`);
//! - `keys`: how records are named, in answers and in purges;
//! - `purge`: the durable outbox (a Redis stream per target) and its
//!   senders, told of changes by the invalidator;
//! - `targets`: each vendor's purge API.

pub mod headers;
pub mod keys;
pub mod purge;
pub mod targets;

pub use purge::{Purges, TargetStatus};
