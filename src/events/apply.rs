//! Applying an event to the caches, through the same invalidation path as
//! purges and checkout repairs. An event only ever makes answers more
//! correct; it never takes away a value Moat knows:
//!
//! - a *fat* event's item is written through L1 and L2, as of the event's
//!   time, and the other replicas drop their L1 copy and read it from L2;
//! - a *thin* event's keys (the one it names, or every key held of a bare
//!   id: a sku's prices in each segment and currency) are marked changed at
//!   their source on every replica, then refetched at event priority (one
//!   upstream call for the fleet) and written the same way. Until the new
//!   values land, readers keep getting the held ones, as stale
//!   (`CHANGED_AT_SOURCE`); if the refetch keeps failing, the caller parks
//!   the event and the marks stay.
//!
//! Either way a version not newer than the one held or seen is `Stale` and
//! changes nothing; that one check (`admit`) serves every kind of event.

use std::sync::Arc;

use super::envelope::{EntityRef, Event, EventType};
use super::ledger::{Advance, Ledger, version_key};
use crate::cache::{Invalidator, Key, Target, Tier, Value};
use crate::catalog::{Catalog, PriceKey};
use crate::customers::{Customers, OrderAccess, OrderKey};
use crate::domain::{Currency, Timestamp, Versioned};
use crate::error::Error;
use crate::upstream::Item;
use crate::vocab::{Entity, Priority};

/// What applying found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Not newer than what is held or was seen: nothing changed.
    Stale,
}

pub struct Applier {
    pub catalog: Arc<Catalog>,
    pub customers: Arc<Customers>,
    pub invalidator: Arc<Invalidator>,
}

/// What a thin event names in a tier.
enum Named<K> {
    /// One cache key.
    Key(K),
    /// Every key held of an id (a bare sku, an order).
    Id(String),
}

/// An event let through by `admit`.
struct Admitted<K> {
    /// The keys held older than the event (or not held at all, for a key
    /// the event names): what it changes.
    keys: Vec<K>,
    /// The version the ledger held before, put back if applying fails.
    before: Option<u64>,
}

impl Applier {
    /// Applies `event` once; `Err` when it cannot be applied now (a
    /// refetch failed), which the caller may retry.
    pub async fn apply(&self, event: &Event, ledger: &Ledger) -> Result<Applied, Error> {
        let at = event.occurred_at;
        match (&event.item, event.kind) {
            (_, EventType::ProductDeleted) => self.product_deleted(event, ledger).await,
            (Some(Item::Price(price)), _) => {
                let key = PriceKey {
                    sku: price.sku.clone(),
                    segment: price.segment.clone(),
                    currency: price.currency,
                };
                let tier = &self.catalog.prices;
                self.write(tier, Entity::Price, key, price.clone(), at, ledger)
                    .await
            }
            (Some(Item::Stock(stock)), _) => {
                let tier = &self.catalog.stock;
                let key = stock.sku.clone();
                self.write(tier, Entity::Inventory, key, stock.clone(), at, ledger)
                    .await
            }
            (Some(Item::Product(product)), _) => {
                let before = self.held_product(&product.id).await;
                let tier = &self.catalog.products;
                let id = product.id.clone();
                let applied = self
                    .write(tier, Entity::Product, id, product.clone(), at, ledger)
                    .await?;
                if applied == Applied::Applied {
                    let moved = before.is_some_and(|b| b.category_ids != product.category_ids);
                    self.after_product(&product.id, &product.sku, moved, at)
                        .await?;
                }
                Ok(applied)
            }
            (Some(Item::Customer(customer)), _) => {
                self.customer(&customer.id, customer.version, at, ledger)
                    .await
            }
            (Some(Item::Order(order)), _) => {
                let key = OrderKey {
                    order_id: order.id.clone(),
                    customer_id: order.customer_id.clone(),
                };
                let vkey = version_key(Entity::Order, &order.id.encode());
                if self.newer(&vkey, order.version, ledger).await.is_none() {
                    return Ok(Applied::Stale);
                }
                // Other customers' entries of this order say "not yours";
                // they stay true, but drop them all with the owner's.
                self.invalidator
                    .invalidate(Entity::Order, Target::Ids(vec![order.id.clone()]), Some(at))
                    .await?;
                let access = OrderAccess::Owned(order.clone());
                let tier = &self.customers.orders;
                tier.insert_many(vec![(key.clone(), Some(access))], at)
                    .await;
                self.invalidator
                    .refreshed(Entity::Order, Target::Keys(vec![key.encode()]), Some(at))
                    .await?;
                Ok(Applied::Applied)
            }
            (None, _) => self.thin(event, ledger).await,
        }
    }

    /// A fat item: written through L1 and L2 unless something as new is
    /// held or was seen, then announced to the other replicas.
    async fn write<K: Key, V: Value + Versioned>(
        &self,
        tier: &Arc<Tier<K, V>>,
        entity: Entity,
        key: K,
        value: V,
        at: Timestamp,
        ledger: &Ledger,
    ) -> Result<Applied, Error> {
        let named = Named::Key(key.clone());
        let Some(_) = self
            .admit(tier, entity, &named, value.version(), ledger)
            .await
        else {
            return Ok(Applied::Stale);
        };
        tier.insert_many(vec![(key.clone(), Some(value))], at).await;
        self.invalidator
            .refreshed(entity, Target::Keys(vec![key.encode()]), Some(at))
            .await?;
        Ok(Applied::Applied)
    }

    /// A thin event: what it names is marked changed, then refetched.
    async fn thin(&self, event: &Event, ledger: &Ledger) -> Result<Applied, Error> {
        let (Some(entity), Some(version)) = (&event.entity, event.version) else {
            return Err(Error::internal("a thin event without entity and version"));
        };
        let at = event.occurred_at;
        match event.kind {
            EventType::PriceUpdated => {
                let named = match price_key(entity) {
                    Some(key) => Named::Key(key),
                    // Every segment and currency held of the sku.
                    None => Named::Id(entity.id.clone()),
                };
                let tier = &self.catalog.prices;
                self.refetch(tier, Entity::Price, named, version, at, ledger)
                    .await
            }
            EventType::InventoryUpdated => {
                let tier = &self.catalog.stock;
                let named = Named::Key(entity.id.clone());
                self.refetch(tier, Entity::Inventory, named, version, at, ledger)
                    .await
            }
            EventType::ProductUpdated => {
                let before = self.held_product(&entity.id).await;
                let tier = &self.catalog.products;
                let named = Named::Key(entity.id.clone());
                let applied = self
                    .refetch(tier, Entity::Product, named, version, at, ledger)
                    .await?;
                if applied == Applied::Applied {
                    let after = self.held_product(&entity.id).await;
                    let moved = match (&before, &after) {
                        (Some(b), Some(a)) => b.category_ids != a.category_ids,
                        _ => true,
                    };
                    let sku = after.or(before).map(|p| p.sku).unwrap_or_default();
                    self.after_product(&entity.id, &sku, moved, at).await?;
                }
                Ok(applied)
            }
            EventType::CustomerUpdated => self.customer(&entity.id, version, at, ledger).await,
            EventType::OrderUpdated => {
                let tier = &self.customers.orders;
                let named = Named::Id(entity.id.clone());
                self.refetch(tier, Entity::Order, named, version, at, ledger)
                    .await
            }
            EventType::ProductDeleted => self.product_deleted(event, ledger).await,
        }
    }

    /// The one version check of every event: whether `version` is newer
    /// than what the cache holds of what the event names, and than the
    /// newest the fleet has seen of it (recorded now, when it is). `None`:
    /// the event is stale.
    async fn admit<K: Key, V: Value + Versioned>(
        &self,
        tier: &Arc<Tier<K, V>>,
        entity: Entity,
        named: &Named<K>,
        version: u64,
        ledger: &Ledger,
    ) -> Option<Admitted<K>> {
        let (keys, vkey) = match named {
            Named::Key(key) => (vec![key.clone()], version_key(entity, &key.encode())),
            Named::Id(id) => {
                let keys = tier.keys_of(std::slice::from_ref(id)).await;
                (keys, version_key(entity, &id.encode()))
            }
        };
        let held = tier.peek(&keys).await;
        let older = |key: &K| {
            held.get(key)
                .and_then(|e| e.value.as_ref())
                .is_none_or(|v| v.version() < version)
        };
        let changed: Vec<K> = keys.iter().filter(|k| older(k)).cloned().collect();
        if !keys.is_empty() && changed.is_empty() {
            return None;
        }
        let before = self.newer(&vkey, version, ledger).await?;
        Some(Admitted {
            keys: changed,
            before,
        })
    }

    /// Refetches at event priority what a thin event names, unless what is
    /// held is as new. What is held stays served, as changed at its source,
    /// until the new values land; `Err` (the ledger put back) when the
    /// upstream could not answer.
    async fn refetch<K: Key, V: Value + Versioned>(
        &self,
        tier: &Arc<Tier<K, V>>,
        entity: Entity,
        named: Named<K>,
        version: u64,
        at: Timestamp,
        ledger: &Ledger,
    ) -> Result<Applied, Error> {
        let Some(admitted) = self.admit(tier, entity, &named, version, ledger).await else {
            return Ok(Applied::Stale);
        };
        if admitted.keys.is_empty() {
            // A bare id nobody holds: nothing to correct, nothing to fetch.
            return Ok(Applied::Applied);
        }
        let encoded: Vec<String> = admitted.keys.iter().map(Key::encode).collect();
        self.invalidator
            .changed(entity, Target::Keys(encoded.clone()), Some(at))
            .await?;
        if let Err(e) = tier.refresh(admitted.keys, Priority::EventRefresh).await {
            // Not applied: a retry or a replay must not find it stale.
            let vkey = match &named {
                Named::Key(key) => version_key(entity, &key.encode()),
                Named::Id(id) => version_key(entity, &id.encode()),
            };
            ledger.retreat(&vkey, version, admitted.before).await;
            return Err(e);
        }
        self.invalidator
            .refreshed(entity, Target::Keys(encoded), Some(at))
            .await?;
        Ok(Applied::Applied)
    }

    /// The product the cache holds, if any.
    async fn held_product(&self, id: &str) -> Option<crate::domain::Product> {
        let tier = &self.catalog.products;
        let held = tier.peek(&[id.to_string()]).await;
        held.into_values().find_map(|e| e.value.clone())
    }

    /// The sku index follows the product; listings are dropped when the
    /// product changed category (or is gone).
    async fn after_product(
        &self,
        id: &str,
        sku: &str,
        moved: bool,
        at: Timestamp,
    ) -> Result<(), Error> {
        if !sku.is_empty() {
            let tier = &self.catalog.product_ids;
            tier.insert_many(vec![(sku.to_string(), Some(id.to_string()))], at)
                .await;
            self.invalidator
                .refreshed(
                    Entity::ProductSku,
                    Target::Keys(vec![sku.to_string().encode()]),
                    Some(at),
                )
                .await?;
        }
        if moved {
            self.invalidator
                .invalidate(Entity::ProductPage, Target::All, Some(at))
                .await?;
        }
        Ok(())
    }

    async fn product_deleted(&self, event: &Event, ledger: &Ledger) -> Result<Applied, Error> {
        let at = event.occurred_at;
        let (id, sku, version) = match (&event.item, &event.entity) {
            (Some(Item::Product(p)), _) => (p.id.clone(), Some(p.sku.clone()), Some(p.version)),
            (_, Some(e)) => (e.id.clone(), None, event.version),
            _ => return Err(Error::internal("a deletion without the product")),
        };
        if let Some(version) = version {
            let vkey = version_key(Entity::Product, &id.encode());
            if self.newer(&vkey, version, ledger).await.is_none() {
                return Ok(Applied::Stale);
            }
        }
        let sku = sku.or(self.held_product(&id).await.map(|p| p.sku));
        // "Does not exist", cached as an upstream's answer would be: the
        // owner said so, so this is what Moat now knows.
        let tier = &self.catalog.products;
        tier.insert_many(vec![(id.clone(), None)], at).await;
        self.invalidator
            .refreshed(Entity::Product, Target::Keys(vec![id.encode()]), Some(at))
            .await?;
        if let Some(sku) = sku {
            self.invalidator
                .invalidate(
                    Entity::ProductSku,
                    Target::Keys(vec![sku.encode()]),
                    Some(at),
                )
                .await?;
        }
        self.invalidator
            .invalidate(Entity::ProductPage, Target::All, Some(at))
            .await?;
        Ok(Applied::Applied)
    }

    /// Every cached sign-in of the customer is marked changed everywhere
    /// (served until refreshed, so a shopper is never signed out by a CRM
    /// outage), and refetched here where this replica holds the token. A
    /// sign-in known elsewhere only by its digest is refreshed at its next
    /// use, which brings the token.
    async fn customer(
        &self,
        id: &str,
        version: u64,
        at: Timestamp,
        ledger: &Ledger,
    ) -> Result<Applied, Error> {
        let vkey = version_key(Entity::Customer, id);
        let Some(before) = self.newer(&vkey, version, ledger).await else {
            return Ok(Applied::Stale);
        };
        let keys = self.customers.tokens_of(id).await;
        if keys.is_empty() {
            return Ok(Applied::Applied);
        }
        let encoded: Vec<String> = keys.iter().map(Key::encode).collect();
        self.invalidator
            .changed(Entity::Customer, Target::Keys(encoded), Some(at))
            .await?;
        let here: Vec<_> = keys.into_iter().filter(|k| k.has_token()).collect();
        if here.is_empty() {
            return Ok(Applied::Applied);
        }
        let refetched: Vec<String> = here.iter().map(Key::encode).collect();
        let tier = &self.customers.by_token;
        if let Err(e) = tier.refresh(here, Priority::EventRefresh).await {
            ledger.retreat(&vkey, version, before).await;
            return Err(e);
        }
        self.invalidator
            .refreshed(Entity::Customer, Target::Keys(refetched), Some(at))
            .await?;
        Ok(Applied::Applied)
    }

    /// Records `version` for `vkey` if it is newer than any seen: the
    /// version seen before, to put back if applying fails; `None` if not
    /// newer.
    async fn newer(&self, vkey: &str, version: u64, ledger: &Ledger) -> Option<Option<u64>> {
        match ledger.advance(vkey, version).await {
            Advance::Newer(before) => Some(before),
            Advance::NotNewer => None,
        }
    }
}

/// The one price a thin event names, when it names segment and currency.
fn price_key(entity: &EntityRef) -> Option<PriceKey> {
    Some(PriceKey {
        sku: entity.id.clone(),
        segment: entity.segment.clone()?,
        currency: Currency::from_code(entity.currency.as_deref()?)?,
    })
}
