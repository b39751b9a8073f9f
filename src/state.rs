//! What every request handler shares, on both listeners: the settings in
//! force, the schema and its document cache, the catalog and customer
//! caches, the upstream clients, checkout, and the limits. `app` builds it
//! and swaps its config on reload; `http` and `admin` read it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

use crate::cache::{AnyTier, Invalidator, ResponseCache};
use crate::catalog::Catalog;
use crate::checkout::Checkout;
use crate::config::{Config, Secrets};
use crate::customers::Customers;
use crate::edge::Purges;
use crate::events::Events;
use crate::exceptions::Exceptions;
use crate::fleet::Fleet;
use crate::graphql::{Documents, Persisted, Schemas};
use crate::reconcile::Reconciler;
use crate::redis_link::RedisLink;
use crate::resilience::client_limit::ClientLimits;
use crate::upstream::Upstreams;

pub struct AppState {
    /// The settings in force; swapped whole on reload (read them with
    /// `config()`).
    pub(crate) config: ArcSwap<Config>,
    pub secrets: Secrets,
    pub schema: Schemas,
    /// Parsed documents by query text (see `graphql::prepare`).
    pub documents: Documents,
    /// Queries sent by hash, and the allow-list.
    pub persisted: Persisted,
    /// Whole answers to anonymous queries (see `cache::responses`).
    pub responses: ResponseCache,
    /// Products, prices, stock: the storefront read model.
    pub catalog: Arc<Catalog>,
    /// Signed-in shoppers and their orders.
    pub customers: Arc<Customers>,
    /// Drops entries here, in L2 and on every replica.
    pub invalidator: Arc<Invalidator>,
    /// Purges of the CDNs and HTTP caches in front (`[[edge.purge]]`).
    pub purges: Arc<Purges>,
    pub upstreams: Upstreams,
    pub client_limits: Arc<ClientLimits>,
    /// `verifyCheckout`, and the price token signer it trusts.
    pub checkout: Arc<Checkout>,
    /// Change events and their dead letters.
    pub events: Arc<Events>,
    /// Mismatches found, for the systems' owners.
    pub exceptions: Arc<Exceptions>,
    /// Drift checks against the systems of record.
    pub reconciler: Arc<Reconciler>,
    /// Operators' limit and breaker changes, shared by every replica.
    pub fleet: Arc<Fleet>,
    /// The shared Redis, when configured.
    pub redis: Option<Arc<RedisLink>>,
    /// False once shutdown begins, so `/readyz` turns load balancers away.
    pub ready: AtomicBool,
}

impl AppState {
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Puts a reloaded config in force (what it changes is `app`'s to apply).
    pub fn set_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// Every cache tier of the gateway: the catalog's and the customers'.
    pub fn tiers(&self) -> Vec<Arc<dyn AnyTier>> {
        let mut tiers: Vec<Arc<dyn AnyTier>> = self.catalog.tiers().into();
        tiers.extend(self.customers.tiers());
        tiers
    }
}
