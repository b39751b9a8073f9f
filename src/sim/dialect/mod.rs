//! The seeded catalog in the shapes of systems that do not speak protocol
//! v1, for Moat's connectors (`config/connectors/`) to be run end to end on
//! one machine: `moat sim --dialect akeneo|commercetools|shopify` serves
//! the same products, categories, prices, stock, customers and orders as
//! protocol v1 does, in that vendor's documented shapes, paging, errors and
//! auth flow, and sends its change events the way that vendor does.
//! Faults, counters (`/_sim/stats`, under protocol v1's endpoint names),
//! drift and the `/_sim` controls work the same in every dialect.
//!
//! Each dialect is one module: `routes` (its API and token endpoint, in
//! place of protocol v1's) and `event` (one change as its system sends it).

mod akeneo;
mod commercetools;
mod shopify;

use axum::Router;
use serde_json::Value;

use super::Simulator;

/// Whose API the simulator speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Moat's protocol v1.
    #[default]
    V1,
    Akeneo,
    Commercetools,
    Shopify,
}

/// The dialects `--dialect` takes.
pub const DIALECTS: [&str; 4] = ["v1", "akeneo", "commercetools", "shopify"];

impl Dialect {
    pub fn parse(name: &str) -> Option<Dialect> {
        match name {
            "v1" => Some(Dialect::V1),
            "akeneo" => Some(Dialect::Akeneo),
            "commercetools" => Some(Dialect::Commercetools),
            "shopify" => Some(Dialect::Shopify),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::V1 => "v1",
            Dialect::Akeneo => "akeneo",
            Dialect::Commercetools => "commercetools",
            Dialect::Shopify => "shopify",
        }
    }
}

/// The dialect's API routes, token endpoint included.
pub fn routes(sim: &Simulator, dialect: Dialect) -> Router<Simulator> {
    match dialect {
        Dialect::V1 => Router::new(),
        Dialect::Akeneo => akeneo::routes(sim),
        Dialect::Commercetools => commercetools::routes(sim),
        Dialect::Shopify => shopify::routes(sim),
    }
}

/// One change of the catalog, as protocol v1 has it.
pub struct Change<'a> {
    /// Moat's event type: `price.updated`, `inventory.updated`,
    /// `product.updated`.
    pub kind: &'static str,
    /// The changed item, protocol v1's shape.
    pub item: &'a Value,
    /// Unique per delivery (kept across a chaos copy).
    pub id: &'a str,
    /// Thin (what changed, no data) or fat, where the vendor has both.
    pub thin: bool,
}

/// A change event as a vendor's system sends it: where below the events
/// URL (`/events/{system}`), with which headers (its signature among them).
pub struct Delivery {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// `change` as the dialect's system sends it, signed with `secret`; `None`
/// when that system sends no event for such a change.
pub fn event(
    sim: &Simulator,
    dialect: Dialect,
    change: &Change<'_>,
    secret: Option<&str>,
) -> Option<Delivery> {
    match dialect {
        Dialect::V1 => None,
        Dialect::Akeneo => akeneo::event(sim, change, secret),
        Dialect::Commercetools => commercetools::event(sim, change, secret),
        Dialect::Shopify => shopify::event(sim, change, secret),
    }
}
